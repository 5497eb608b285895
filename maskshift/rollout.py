"""The product of any editor: one episode's edits, and the best step of that episode chosen on the
validation split (never the test split).

Every way of choosing actions (a PPO or APG policy's mean, the greedy gradient controller, the
open-loop oracle's optimised actions) runs through :func:`rollout_edits`, so every editor is
selected and reported by the same code.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from maskshift.envs import EditWorld, EnvParams, EnvState
from maskshift.tasks import UnlearnObjective

# act(editor_params, t, obs, state, env_params) -> flat action [action_size]
ActFn = Callable[..., jax.Array]


def rollout_edits(env: EditWorld, env_params: EnvParams, act: ActFn, editor_params=None,
                  key: jax.Array | None = None, target: int = 0):
    """One episode from the original weights on ``target`` with actions from ``act``; returns the
    edits of every step, original included: a tuple (one per edited matrix) of ``[T + 1, m, n]``
    arrays.

    ``act(editor_params, t, obs, state, env_params)`` gives the action at step ``t``; it is traced
    once (jit-compiled with the rollout; the target is data, so every target of a pool shares the
    compiled program). ``key`` draws each step's train minibatch (default ``jax.random.key(0)``,
    as every editor's final rollout uses).
    """
    return rollout_fn(env, act, int(env_params.max_steps_in_episode))(
        editor_params, env_params, jax.random.key(0) if key is None else key,
        jnp.int32(target))


def rollout_fn(env: EditWorld, act: ActFn, T: int):
    """The jitted ``run(editor_params, env_params, key, target) -> edits`` behind
    :func:`rollout_edits`; hold on to it to roll out many targets with one compilation."""
    @jax.jit
    def run(editor_params, env_params, key, target):
        obs, state = env.reset_to(target, env_params)

        def step(carry, xs):
            obs, state = carry
            t, k = xs
            obs, state, *_ = env.step_env(k, state, act(editor_params, t, obs, state, env_params),
                                          env_params)
            return (obs, state), state.edit

        _, edits = jax.lax.scan(step, (obs, state), (jnp.arange(T), jax.random.split(key, T)))
        return tuple(jnp.concatenate([e0[None], e], 0) for e0, e in zip(state.edit, edits,
                                                                         strict=True))

    return run


def policy_act(network) -> ActFn:
    """The action rule of a trained actor-critic: its mean action (deterministic)."""
    def act(policy_params, t, obs, state: EnvState, env_params):
        pi, _ = network.apply(policy_params, obs[None])
        return pi.mean()[0]

    return act


def deterministic_rollout(env: EditWorld, env_params: EnvParams, network, policy_params,
                          target: int = 0):
    """Run the policy's mean actions from the original weights for one episode on ``target``
    (see :func:`rollout_edits`)."""
    return rollout_edits(env, env_params, policy_act(network), policy_params, target=target)


def edited_params_at(env: EditWorld, env_params: EnvParams, edits, t: int):
    return env.params_for_edit(tuple(e[t] for e in edits), env_params)


def report(env: EditWorld, params, split: str, with_mia: bool = True, target: int = 0) -> dict:
    return env.task.report(params, split, with_mia, target)


def confidence_floor(env: EditWorld) -> float:
    """The forget confidence below which selection treats steps as equally forgotten: the
    true-class probability at the reward's cross-entropy cap, ``exp(-ce_cap)`` (0.0067 at the
    default cap of 5). The reward pays nothing for forgetting past it, and selection follows."""
    obj = env.task.objective
    return float(np.exp(-obj.ce_cap)) if isinstance(obj, UnlearnObjective) else 0.0


def selection_key(metrics: dict, original: dict, unlearn: bool, tolerance: float,
                  floor: float = 0.0):
    """Sort key of a candidate step on validation metrics (larger is better).

    Unlearning: among steps whose retain accuracy is within ``tolerance`` of the original's, the
    lowest forget accuracy; among those, the lowest forget confidence (true-class probability on
    the forget examples) down to ``floor``, then the higher retain accuracy. The confidence
    breaks the tie between steps that all forget the few validation examples (36 per digit
    class): without it the earliest such step won, one whose forgetting sat at the decision
    boundary and leaked on test (MaskWorld PPO, classes 0, 5, 8, 9: val forget 0.000, test
    0.03–0.19). The floor (:func:`confidence_floor`: where the reward stops paying) ends that
    race once every step is past it: without it a confidence of 1e-6 beat one of 1e-5 whatever
    the retain accuracy, and selection drifted to the boundary of the tolerance (Fashion-MNIST
    residual PPO: test retain 0.9 points lower on average, and retain drops past 3 points).
    Bias: among steps whose accuracy is within ``tolerance``, the highest worst-group accuracy
    (ties: higher accuracy). A step that breaks the tolerance ranks below every step that keeps
    it.
    """
    if unlearn:
        ok = metrics["retain_acc"] >= original["retain_acc"] - tolerance
        return (ok, -metrics["forget_acc"], -max(metrics["forget_confidence"], floor),
                metrics["retain_acc"])
    ok = metrics["accuracy"] >= original["accuracy"] - tolerance
    return (ok, metrics["worst_group_acc"], metrics["accuracy"])


def select_best_step(env: EditWorld, env_params: EnvParams, edits, tolerance: float,
                     target: int = 0):
    """Evaluate every step of the rollout on the validation split for ``target`` and pick the
    best.

    Returns ``(t, params, per_step_val_metrics)``; ``t = 0`` is the original model.
    """
    unlearn = isinstance(env.task.objective, UnlearnObjective)
    T = edits[0].shape[0]
    # the selection reads accuracies and confidences only: no MIA (two whole-split passes)
    vals = [report(env, edited_params_at(env, env_params, edits, t), "val", False, target)
            for t in range(T)]
    floor = confidence_floor(env)
    keys = [selection_key(v, vals[0], unlearn, tolerance, floor) for v in vals]
    best = max(range(T), key=lambda t: keys[t])
    return best, edited_params_at(env, env_params, edits, best), vals


def select_and_report(env: EditWorld, env_params: EnvParams, edits, tolerance: float,
                      target: int = 0) -> dict:
    """The product of one episode for ``target``: its best step on val
    (:func:`select_best_step`) and the test report of the original and of that step.

    Returns ``{"best_step", "edited", "val_per_step", "before", "after"}``.
    """
    best, edited, vals = select_best_step(env, env_params, edits, tolerance, target)
    return {"best_step": best, "edited": edited, "val_per_step": vals,
            "before": report(env, env_params.task.params, "test", True, target),
            "after": report(env, edited, "test", True, target)}


def to_host(tree):
    return jax.tree.map(np.asarray, tree)
