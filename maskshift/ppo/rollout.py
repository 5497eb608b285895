"""The product of a run: a deterministic rollout of the trained policy, and the best step of that
episode chosen on the validation split (never the test split)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from maskshift.envs import EditWorld, EnvParams
from maskshift.tasks import UnlearnObjective


def deterministic_rollout(env: EditWorld, env_params: EnvParams, network, policy_params):
    """Run the policy's mean actions from the original weights for one episode.

    Returns the edits of every step, original included: a tuple (one per edited matrix) of
    ``[T + 1, m, n]`` arrays. Jit-compiled; ``T`` is ``env_params.max_steps_in_episode``.
    """
    T = int(env_params.max_steps_in_episode)

    @jax.jit
    def run(policy_params, env_params, key):
        obs, state = env.reset_env(key, env_params)

        def step(carry, k):
            obs, state = carry
            pi, _ = network.apply(policy_params, obs[None])
            obs, state, *_ = env.step_env(k, state, pi.mean()[0], env_params)
            return (obs, state), state.edit

        _, edits = jax.lax.scan(step, (obs, state), jax.random.split(key, T))
        return tuple(jnp.concatenate([e0[None], e], 0) for e0, e in zip(state.edit, edits,
                                                                         strict=True))

    return run(policy_params, env_params, jax.random.key(0))


def edited_params_at(env: EditWorld, env_params: EnvParams, edits, t: int):
    return env.params_for_edit(tuple(e[t] for e in edits), env_params)


def report(env: EditWorld, params, split: str) -> dict:
    return env.task.report(params, split)


def selection_key(metrics: dict, original: dict, unlearn: bool, tolerance: float):
    """Sort key of a candidate step on validation metrics (larger is better).

    Unlearning: among steps whose retain accuracy is within ``tolerance`` of the original's, the
    lowest forget accuracy (ties: higher retain accuracy). Bias: among steps whose accuracy is
    within ``tolerance``, the highest worst-group accuracy (ties: higher accuracy). A step that
    breaks the tolerance ranks below every step that keeps it.
    """
    if unlearn:
        ok = metrics["retain_acc"] >= original["retain_acc"] - tolerance
        return (ok, -metrics["forget_acc"], metrics["retain_acc"])
    ok = metrics["accuracy"] >= original["accuracy"] - tolerance
    return (ok, metrics["worst_group_acc"], metrics["accuracy"])


def select_best_step(env: EditWorld, env_params: EnvParams, edits, tolerance: float):
    """Evaluate every step of the rollout on the validation split and pick the best.

    Returns ``(t, params, per_step_val_metrics)``; ``t = 0`` is the original model.
    """
    unlearn = isinstance(env.task.objective, UnlearnObjective)
    T = edits[0].shape[0]
    vals = [report(env, edited_params_at(env, env_params, edits, t), "val") for t in range(T)]
    keys = [selection_key(v, vals[0], unlearn, tolerance) for v in vals]
    best = max(range(T), key=lambda t: keys[t])
    return best, edited_params_at(env, env_params, edits, best), vals


def to_host(tree):
    return jax.tree.map(np.asarray, tree)
