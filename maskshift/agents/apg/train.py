"""APG in the PureJaxRL style: ``make_train(config, env) -> Trainer`` of pure functions.

- ``init(key, env_params) -> APGState``
- ``update(state, env_params) -> (state, metrics)``: ``num_envs`` whole episodes under ``vmap``
  from the original weights, the policy's mean action at every step, ``jax.grad`` of the mean
  summed reward through the rollout, one clipped Adam step;
- ``run(state, env_params, n)``: ``n`` updates in one ``lax.scan``;
- ``train(key, env_params)``: the whole run.

The network is the PPO actor-critic's (the same low-rank heads; APG reads only the action mean),
so a trained APG policy rolls out, selects and reports through the same code as a PPO one.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from maskshift.agents.apg.config import APGConfig
from maskshift.agents.common import Trainer, policy_act, unroll
from maskshift.agents.networks import make_network
from maskshift.envs import EditWorld, EnvParams
from maskshift.sharding import check_divisible, constrain_envs


class APGState(NamedTuple):
    params: Any
    opt_state: Any
    key: jax.Array
    update: jax.Array  # number of updates done


def make_train(config: APGConfig, env: EditWorld, mesh: Mesh | None = None) -> Trainer:
    """Build the pure APG functions for ``env``. ``mesh``: split the episodes over devices, as
    :func:`maskshift.agents.ppo.make_train` does."""
    config.validate()
    if mesh is not None:
        check_divisible(config.num_envs, mesh)
    network = make_network(env, hidden=config.hidden, u_init_scale=config.u_init_scale)
    T = config.num_steps
    lr = (optax.linear_schedule(config.learning_rate, 0.0, config.num_updates)
          if config.anneal_lr else config.learning_rate)
    tx = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(lr))
    weights = config.discount ** jnp.arange(T, dtype=jnp.float32)  # [T]

    def episode(params, key, env_params):
        """One episode's weighted return, plain return and last metrics (differentiable)."""
        obs, state = env.reset_env(key, env_params)
        mean_action = policy_act(network)

        def act(t, obs, state, _):
            return mean_action(params, t, obs, state, env_params)

        def truncate(t, state):
            cut = (t + 1) % config.truncation == 0
            return jax.tree.map(lambda x: jnp.where(cut, jax.lax.stop_gradient(x), x), state)

        rewards, metrics = unroll(env, env_params, act, obs, state, key, T,
                                  record=lambda s, reward, info: (reward, info["metrics"]),
                                  after_step=None if config.truncation is None else truncate)
        return (rewards * weights).sum(), (rewards.sum(), metrics[-1])

    def loss(params, keys, env_params):
        objective, (returns, final) = jax.vmap(episode, in_axes=(None, 0, None))(
            params, keys, env_params)
        return -objective.mean(), (returns, final)

    def init(key, env_params: EnvParams) -> APGState:
        k_net, key = jax.random.split(key)
        params = network.init(k_net, jnp.zeros((1, env.obs_size)))
        return APGState(params, tx.init(params), key, jnp.int32(0))

    def update(s: APGState, env_params: EnvParams):
        key, k = jax.random.split(s.key)
        keys = constrain_envs(jax.random.split(k, config.num_envs), mesh)
        (value, (returns, final)), grads = jax.value_and_grad(loss, has_aux=True)(
            s.params, keys, env_params)
        updates, opt_state = tx.update(grads, s.opt_state, s.params)
        metrics = {"loss": value, "episode_return": returns.mean(),
                   "final_metrics": final.mean(0), "grad_norm": optax.tree.norm(grads)}
        return APGState(optax.apply_updates(s.params, updates), opt_state, key,
                        s.update + 1), metrics

    def run(s: APGState, env_params: EnvParams, num_updates: int):
        return jax.lax.scan(lambda c, _: update(c, env_params), s, None, num_updates)

    def train(key, env_params: EnvParams):
        return run(init(key, env_params), env_params, config.num_updates)

    return Trainer(config, env, network, init, update, run, train)
