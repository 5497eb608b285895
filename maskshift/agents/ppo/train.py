"""PPO in the PureJaxRL style: pure functions, the whole update one compiled program.

``make_train(config, env)`` returns a :class:`Trainer` whose functions are pure:

- ``init(key, env_params) -> RunnerState``
- ``update(runner_state, env_params) -> (runner_state, metrics)``: one PPO update (a rollout of
  ``num_steps`` over ``num_envs`` vmapped environments, GAE, ``update_epochs`` epochs of shuffled
  minibatches), all ``lax.scan``s;
- ``run(runner_state, env_params, n)``: ``n`` updates in one ``lax.scan`` (``n`` static);
- ``train(key, env_params) -> (runner_state, metrics)``: the whole run, so
  ``jax.jit(jax.vmap(trainer.train, in_axes=(0, None)))(keys, env_params)`` trains several seeds
  at once.

``env_params`` is an argument, never closed over: its arrays (original weights, cached activations)
stay data, not constants baked into the program.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from maskshift.agents.common import Trainer
from maskshift.agents.networks import ActorCritic, UnitActorCritic, make_network
from maskshift.agents.ppo.config import PPOConfig
from maskshift.agents.ppo.gae import compute_gae, ppo_loss
from maskshift.envs import EditWorld, EnvParams
from maskshift.sharding import (
    check_chunk,
    check_divisible,
    constrain_envs,
    mesh_size,
    step_envs,
)


class RunnerState(NamedTuple):
    params: Any
    opt_state: Any
    env_state: Any
    obs: jax.Array  # [num_envs, obs_size]
    key: jax.Array
    update: jax.Array  # number of updates done


class Transition(NamedTuple):  # every field [num_steps, num_envs, ...]
    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array
    next_value: jax.Array
    terminated: jax.Array
    episode_end: jax.Array
    metrics: jax.Array  # the objective's metrics after the step


def policy_network(config: PPOConfig, env: EditWorld) -> ActorCritic | UnitActorCritic:
    """The actor-critic ``config`` names (:func:`maskshift.agents.networks.make_network`)."""
    return make_network(env, heads=config.heads, hidden=config.hidden,
                        init_log_std=config.init_log_std, u_init_scale=config.u_init_scale,
                        skip_gain=config.skip_gain)


def make_train(config: PPOConfig, env: EditWorld, mesh: Mesh | None = None,
               env_chunk: int | None = None) -> Trainer:
    """Build the pure PPO functions for ``env``.

    ``mesh``: a 1-D device mesh (:func:`maskshift.sharding.env_mesh`) over which the environment
    batch is split (``num_envs`` must divide evenly); the policy and the task are replicated.
    ``None`` leaves placement to JAX (one device). The numbers do not depend on the mesh beyond
    float rounding: every random draw is made for the whole batch, then laid out.
    ``env_chunk``: step each device's environments in groups of this many, their states updated in
    place (:func:`maskshift.sharding.map_envs`); faster on CPU, the same numbers up to float
    rounding. ``None``: one ``vmap`` over all of them.
    """
    config.validate()
    if mesh is not None:
        check_divisible(config.num_envs, mesh)
    network = policy_network(config, env)
    steps_per_opt = config.update_epochs * config.num_minibatches
    if config.anneal_lr:
        lr = optax.linear_schedule(config.learning_rate, 0.0, config.num_updates * steps_per_opt)
    else:
        lr = config.learning_rate
    tx = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(lr, eps=1e-5))
    v_reset = jax.vmap(env.reset, in_axes=(0, None))
    check_chunk(config.num_envs, env_chunk, mesh_size(mesh))

    def v_step(keys, state, action, env_params):
        return step_envs(env, keys, state, action, env_params, env_chunk, mesh)

    def init(key, env_params: EnvParams) -> RunnerState:
        k_net, k_env, key = jax.random.split(key, 3)
        params = network.init(k_net, jnp.zeros((1, env.obs_size)))
        obs, env_state = v_reset(
            constrain_envs(jax.random.split(k_env, config.num_envs), mesh), env_params)
        obs, env_state = constrain_envs((obs, env_state), mesh)
        return RunnerState(params, tx.init(params), env_state, obs, key, jnp.int32(0))

    env_step = _env_stepper(env, network, config, mesh, v_step)

    def update(rs: RunnerState, env_params: EnvParams):
        (_, env_state, obs, key), traj = jax.lax.scan(
            lambda c, x: env_step(c, x, env_params), (rs.params, rs.env_state, rs.obs, rs.key),
            None, config.num_steps)
        (params, opt_state, key), aux = _epochs(network, tx, config, rs.params, rs.opt_state,
                                                key, _flat_batch(traj, config))
        metrics = _update_metrics(traj, aux)
        return RunnerState(params, opt_state, env_state, obs, key, rs.update + 1), metrics

    def run(rs: RunnerState, env_params: EnvParams, num_updates: int):
        return jax.lax.scan(lambda r, _: update(r, env_params), rs, None, num_updates)

    def train(key, env_params: EnvParams):
        return run(init(key, env_params), env_params, config.num_updates)

    return Trainer(config, env, network, init, update, run, train)


def _env_stepper(env: EditWorld, network, config: PPOConfig, mesh, v_step):
    """``env_step(carry, _, env_params) -> (carry, Transition)``: one batched step of the
    rollout, actions sampled from the policy; ``carry = (params, env_state, obs, key)``."""
    def env_step(carry, _, env_params):
        params, env_state, obs, key = carry
        key, k_act, k_env = jax.random.split(key, 3)
        pi, value = network.apply(params, obs)
        action = constrain_envs(pi.sample(seed=k_act), mesh)
        log_prob = pi.log_prob(action)
        step_params = env_params
        if env.minibatch == "shared":  # one train minibatch for every environment this step
            k_env, k_batch = jax.random.split(k_env)
            step_params = env.step_params(env_params, k_batch)
        next_obs, env_state, reward, terminated, truncated, info = v_step(
            constrain_envs(jax.random.split(k_env, config.num_envs), mesh), env_state, action,
            step_params)
        next_obs, env_state = constrain_envs((next_obs, env_state), mesh)
        # the value of the state the step reached, before auto-reset: bootstraps truncation
        _, next_value = network.apply(params, info["final_observation"])
        tr = Transition(obs, action, log_prob, value, reward, next_value,
                        terminated.astype(jnp.float32),
                        jnp.logical_or(terminated, truncated).astype(jnp.float32),
                        info["metrics"])
        return (params, env_state, next_obs, key), tr

    return env_step


def _flat_batch(traj: Transition, config: PPOConfig) -> dict:
    """The rollout with its GAE advantages and value targets, flattened to ``[T * B, ...]``."""
    adv, target = compute_gae(traj.reward, traj.value, traj.next_value, traj.terminated,
                              traj.episode_end, config.gamma, config.gae_lambda)
    batch = {"obs": traj.obs, "action": traj.action, "log_prob": traj.log_prob,
             "value": traj.value, "advantage": adv, "target": target}
    n = config.num_steps * config.num_envs
    return jax.tree.map(lambda x: x.reshape((n,) + x.shape[2:]), batch)


def _epochs(network, tx, config: PPOConfig, params, opt_state, key, batch: dict):
    """``update_epochs`` epochs of shuffled minibatches over ``batch``; returns
    ``((params, opt_state, key), aux)`` with the losses ``[epochs, minibatches]``."""
    n = config.num_steps * config.num_envs

    def epoch(carry, _):
        params, opt_state, key = carry
        key, k_perm = jax.random.split(key)
        perm = jax.random.permutation(k_perm, n)
        mbs = jax.tree.map(
            lambda x: x[perm].reshape((config.num_minibatches, -1) + x.shape[1:]), batch)

        def minibatch(carry, mb):
            params, opt_state = carry
            grads, aux = jax.grad(
                lambda p: ppo_loss(network, p, mb, config.clip_eps, config.vf_coef,
                                   config.ent_coef), has_aux=True)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), aux

        (params, opt_state), aux = jax.lax.scan(minibatch, (params, opt_state), mbs)
        return (params, opt_state, key), aux

    return jax.lax.scan(epoch, (params, opt_state, key), None, config.update_epochs)


def _update_metrics(traj: Transition, aux) -> dict:
    """One update's figures: mean reward, mean return and end-of-episode metrics of the episodes
    that ended in the rollout, and the mean losses."""
    ends = traj.episode_end
    n_eps = jnp.maximum(ends.sum(), 1.0)
    return {
        "reward": traj.reward.mean(),
        "episode_return": _episode_returns(traj.reward, ends).sum() / n_eps,
        "final_metrics": (traj.metrics * ends[..., None]).sum((0, 1)) / n_eps,
        "last_metrics": traj.metrics[-1].mean(0),
        **jax.tree.map(jnp.mean, aux),
    }


def _episode_returns(rewards, ends):
    """Sum of rewards of each episode that ends within the rollout, placed at its end step;
    ``[T, B] -> [T, B]`` (0 where no episode ends). Episodes that started before the rollout
    count only their in-rollout part."""
    def step(acc, xs):
        r, end = xs
        acc = acc + r
        return acc * (1.0 - end), acc * end

    _, out = jax.lax.scan(step, jnp.zeros_like(rewards[0]), (rewards, ends))
    return out
