"""What every way of acting in an environment shares: one episode unroll, the roll-out of an
action rule from the original weights, and the :class:`Trainer` a policy trainer returns.

:func:`unroll` is the one episode scan (brax's ``acting.generate_unroll`` plays the same role):
a trained policy's final rollout, the greedy gradient controller, APG's differentiable episodes
and the oracle's optimised episodes all run through it, so every editor steps the environment
with the same code.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from maskshift.envs import EditWorld, EnvParams, EnvState

# act(editor_params, t, obs, state, env_params) -> flat action [action_size]
ActFn = Callable[..., jax.Array]


class Trainer(NamedTuple):
    """A policy trainer's pure functions (PPO and APG): ``init(key, env_params)``,
    ``update(state, env_params)``, ``run(state, env_params, n)`` and ``train(key, env_params)``,
    with the config, environment and network they were built for."""

    config: Any
    env: EditWorld
    network: Any
    init: Callable
    update: Callable
    run: Callable
    train: Callable


def unroll(env: EditWorld, env_params: EnvParams, act: Callable, obs, state: EnvState,
           key: jax.Array, T: int, *, record: Callable, after_step: Callable | None = None,
           xs=None):
    """Step ``env`` ``T`` times from ``(obs, state)`` with ``act(t, obs, state, x)``; step ``t``
    draws its minibatch with the ``t``-th split of ``key`` and reads ``x``, the ``t``-th slice of
    ``xs`` (e.g. open-loop actions ``[T, action_size]``; ``None``: nothing).

    ``record(state, reward, info)`` picks what each step keeps (stacked ``[T, ...]`` and
    returned); ``after_step(t, state)`` may rewrite the state after step ``t`` (APG's truncated
    backpropagation). ``obs=None``: the observation is not carried (an open-loop rule never
    reads it, and XLA then drops it). Differentiable in everything ``act``, ``xs`` and
    ``env_params`` hold.
    """
    keep_obs = obs is not None

    def step(carry, inputs):
        obs, state = carry
        t, k, x = inputs
        obs, state, reward, _, info = env.step_env(k, state, act(t, obs, state, x), env_params)
        if after_step is not None:
            state = after_step(t, state)
        return (obs if keep_obs else None, state), record(state, reward, info)

    _, out = jax.lax.scan(step, (obs, state), (jnp.arange(T), jax.random.split(key, T), xs))
    return out


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
        edits = unroll(env, env_params,
                       lambda t, o, s, _: act(editor_params, t, o, s, env_params), obs, state, key,
                       T, record=lambda s, reward, info: s.edit)
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


def check_budget(total_timesteps: int, num_envs: int, num_steps: int, *,
                 field: str = "total_timesteps", of: str = "") -> None:
    """A trainer's step budget must hold at least one update of ``num_envs * num_steps`` steps
    (a smaller one would silently train a whole update anyway). ``field`` names the budget in
    the message (a caller's own option, as `` `rl_total_steps` `` of a comparison), ``of`` the
    trainer (``" of MaskWorld-residual"``)."""
    per_update = num_envs * num_steps
    if total_timesteps < per_update:
        fix = f"give `{field}={per_update}` or more" + (
            ", or fewer `num_envs`" if field == "total_timesteps" else "")
        raise ValueError(f"A budget of {total_timesteps} env steps is less than one update{of} "
                         f"({num_envs} environments x {num_steps} steps = {per_update}); {fix}.")


def check_counts(config, names: tuple[str, ...]) -> None:
    """Every field of ``config`` in ``names`` is a whole number of at least 1 (``ValueError``
    naming the first that is not)."""
    for name in names:
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(config, name)}.")


def check_positive(config, names: tuple[str, ...]) -> None:
    """Every field of ``config`` in ``names`` is a finite number > 0."""
    for name in names:
        v = getattr(config, name)
        if not math.isfinite(v) or v <= 0:
            raise ValueError(f"{name} must be a positive number, got {v}.")
