"""The gradient oracle: open-loop trajectory optimisation in the environments' own action space.

The ``T`` actions of one episode (each step's ``U``, ``V`` factors) are free parameters, optimised
with optax (Adam, global-norm clipping) on the episode's summed reward through ``jax.grad`` of
the rollout: the same environment, the same ``EnvParams`` and a fresh train minibatch per step
drawn exactly as in an RL episode (new keys every iteration). ``restarts`` random starts run
side by side in one ``vmap``. The restart with the highest return on the final rollout's
minibatches is kept; the best step of its episode is then chosen on validation, as for every
other editor (:mod:`maskshift.run.select`).

It answers "what can this action space reach at all?": an RL policy that makes worse edits than
the oracle in its own space has room to improve; one that makes better edits in one rollout (or
for targets it never trained on) earns its place.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from maskshift.agents.common import rollout_edits, unroll
from maskshift.envs import EditWorld, EnvParams


@dataclasses.dataclass(frozen=True)
class OracleConfig:
    """Attributes:
      restarts: random starts optimised side by side (one ``vmap``).
      iterations: optimiser steps, each one episode per restart.
      learning_rate: Adam's step size on the action factors.
      max_grad_norm: global-norm clip of each restart's gradient.
      init_scale: standard deviation of the initial ``U`` factors (``V`` starts at 1% of it, so
        the first episode barely changes the weights).
      iterations_per_chunk: iterations per compiled call (progress is printed after each).
    """

    restarts: int = 4
    iterations: int = 60
    learning_rate: float = 0.1
    max_grad_norm: float = 1.0
    init_scale: float = 1.0
    iterations_per_chunk: int = 20

    def validate(self) -> OracleConfig:
        for name in ("restarts", "iterations", "iterations_per_chunk"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")
        for name in ("learning_rate", "max_grad_norm", "init_scale"):
            v = getattr(self, name)
            if not math.isfinite(v) or v <= 0:
                raise ValueError(f"{name} must be a positive number, got {v}.")
        return self

    def env_steps(self, episode_length: int) -> int:
        """Environment steps (reward evaluations) the optimisation takes."""
        return self.restarts * self.iterations * episode_length


def episode_return(env: EditWorld, env_params: EnvParams, actions: jax.Array,
                   key: jax.Array) -> jax.Array:
    """Summed reward of one episode from the original weights with ``actions [T, action_size]``;
    step ``t`` draws its minibatch with the ``t``-th split of ``key``."""
    T = actions.shape[0]
    _, state = env.reset_env(key, env_params)
    rewards = unroll(env, env_params, lambda t, o, s, a: a, None, state, key, T,
                     record=lambda s, reward, info: reward, xs=actions)
    return rewards.sum()


def _initial_actions(env: EditWorld, key, restarts: int, T: int, scale: float) -> jax.Array:
    """``[restarts, T, action_size]``: ``U ~ N(0, scale)``, ``V ~ N(0, scale / 100)``."""
    is_u = np.concatenate([np.r_[np.ones(m * env.rank), np.zeros(n * env.rank)]
                           for m, n in env.shapes]).astype(bool)
    std = jnp.where(jnp.asarray(is_u), scale, scale / 100)
    return std * jax.random.normal(key, (restarts, T, env.action_size))


def optimise_actions(env: EditWorld, env_params: EnvParams, key: jax.Array,
                     config: OracleConfig = OracleConfig(),
                     log: Callable[[str], None] = lambda s: None):
    """Optimise every restart's actions; returns ``(actions [T, action_size] of the best restart,
    history)`` where ``history["episode_return"]`` is the mean return over restarts per iteration.
    """
    config.validate()
    T = int(env_params.max_steps_in_episode)
    tx = optax.chain(optax.clip_by_global_norm(config.max_grad_norm),
                     optax.adam(config.learning_rate))
    k_init, key = jax.random.split(key)
    actions = _initial_actions(env, k_init, config.restarts, T, config.init_scale)
    opt_state = jax.vmap(tx.init)(actions)
    value_and_grad = jax.value_and_grad(lambda a, k, p: episode_return(env, p, a, k))

    # env_params must stay an argument (its arrays are data, not constants): bind it per call
    @jax.jit
    def run_chunk(actions, opt_state, keys, env_params):
        def it(carry, k):
            actions, opt_state = carry
            ret, grads = jax.vmap(value_and_grad, in_axes=(0, 0, None))(
                actions, jax.random.split(k, config.restarts), env_params)
            updates, opt_state = jax.vmap(tx.update)(jax.tree.map(jnp.negative, grads),
                                                     opt_state, actions)
            return (optax.apply_updates(actions, updates), opt_state), ret

        return jax.lax.scan(it, (actions, opt_state), keys)

    returns = []
    done = 0
    while done < config.iterations:
        n = min(config.iterations_per_chunk, config.iterations - done)
        key, k = jax.random.split(key)
        (actions, opt_state), ret = run_chunk(actions, opt_state, jax.random.split(k, n),
                                              env_params)
        ret = np.asarray(ret)  # [n, restarts]
        if not np.all(np.isfinite(ret)) or not bool(jnp.all(jnp.isfinite(actions))):
            raise FloatingPointError(f"The oracle's return or actions became non-finite by "
                                     f"iteration {done + n}; lower its learning rate.")
        returns.extend(ret.mean(1).tolist())
        done += n
        log(f"oracle iteration {done:>4}/{config.iterations}  mean return {ret[-1].mean():8.3f}"
            f"  best restart {ret[-1].max():8.3f}")
    final = jax.jit(jax.vmap(lambda a, p: episode_return(env, p, a, jax.random.key(0)),
                             in_axes=(0, None)))(actions, env_params)
    best = int(np.argmax(np.asarray(final)))
    return actions[best], {"episode_return": returns, "best_restart": best,
                           "final_returns": np.asarray(final).tolist()}


def oracle_edits(env: EditWorld, env_params: EnvParams, key: jax.Array,
                 config: OracleConfig = OracleConfig(), log=lambda s: None):
    """The best restart's episode as edits ``[T + 1, m, n]`` per edited matrix (see
    :func:`maskshift.agents.common.rollout_edits`), and the optimisation history."""
    actions, history = optimise_actions(env, env_params, key, config, log)
    edits = rollout_edits(env, env_params, lambda a, t, obs, state, p: a[t], actions)
    return edits, history
