"""Quark in the PureJaxRL style: ``make_train(config, env) -> Trainer`` of pure functions.

- ``init(key, env_params) -> QuarkState``: the policy, a frozen copy of it (the KL reference) and
  an empty pool of episodes;
- ``update(state, env_params) -> (state, metrics)``: ``num_envs`` episodes sampled under the best
  quantile's token into the pool, the pool re-sorted into reward quantiles, then likelihood
  epochs on every pooled episode under its own quantile's token, with a KL penalty to the
  reference (:class:`~maskshift.agents.quark.QuarkConfig`);
- ``run(state, env_params, n)``: ``n`` updates in one ``lax.scan``;
- ``train(key, env_params)``: the whole run.

The policy is the PPO actor-critic with flat heads (:class:`~maskshift.agents.networks.ActorCritic`)
reading the observation with the quantile token appended as a one-hot
(:class:`QuarkPolicy`); called without a token it acts as the best quantile, so a trained Quark
policy rolls out, selects and reports through the same code as a PPO or APG one. Quark needs no
gradient of the reward, only episode returns to sort: any objective, differentiable or not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from maskshift.agents.common import Trainer
from maskshift.agents.networks import ActorCritic
from maskshift.agents.quark.config import QuarkConfig
from maskshift.envs import EditWorld, EnvParams
from maskshift.sharding import check_divisible, constrain_envs


class QuarkPolicy(nn.Module):
    """The actor-critic on ``[obs, one_hot(token)]``; ``token=None``: the best quantile's
    (``num_quantiles - 1``), the policy Quark acts with."""

    shapes: Sequence[tuple[int, int]]
    rank: int
    num_quantiles: int
    hidden: int = 64
    init_log_std: float = -0.5
    u_init_scale: float = 1.0

    @nn.compact
    def __call__(self, obs, token=None):
        if token is None:
            token = jnp.full(obs.shape[:-1], self.num_quantiles - 1, jnp.int32)
        x = jnp.concatenate([obs, jax.nn.one_hot(token, self.num_quantiles, dtype=obs.dtype)],
                            -1)
        return ActorCritic(shapes=self.shapes, rank=self.rank, hidden=self.hidden,
                           init_log_std=self.init_log_std, u_init_scale=self.u_init_scale,
                           name="policy")(x)


class QuarkState(NamedTuple):
    params: Any
    ref_params: Any  # the starting policy: the KL penalty's reference
    opt_state: Any
    key: jax.Array
    update: jax.Array  # number of updates done
    pool_obs: jax.Array  # [P, T, obs_size]
    pool_actions: jax.Array  # [P, T, action_size]
    pool_returns: jax.Array  # [P]
    seen: jax.Array  # episodes added so far (the pool holds the last min(seen, P))


def quantile_tokens(returns: jax.Array, valid: jax.Array, num_quantiles: int) -> jax.Array:
    """Each valid episode's reward quantile ``0..num_quantiles - 1`` (the best: the highest)
    among the valid ones; invalid entries get 0 (their weight is 0 anyway)."""
    n_valid = valid.sum()
    ranks = jnp.argsort(jnp.argsort(jnp.where(valid, returns, -jnp.inf)))
    rank_valid = ranks - (returns.shape[0] - n_valid)  # 0 .. n_valid - 1 for the valid ones
    tokens = (rank_valid * num_quantiles) // jnp.maximum(n_valid, 1)
    return jnp.where(valid, jnp.clip(tokens, 0, num_quantiles - 1), 0).astype(jnp.int32)


def make_train(config: QuarkConfig, env: EditWorld, mesh: Mesh | None = None) -> Trainer:
    """Build the pure Quark functions for ``env``. ``mesh``: split the sampled episodes over
    devices, as :func:`maskshift.agents.ppo.make_train` does."""
    config.validate()
    if mesh is not None:
        check_divisible(config.num_envs, mesh)
    K, T, E, P = config.num_quantiles, config.num_steps, config.num_envs, config.pool_size
    network = QuarkPolicy(shapes=tuple(env.shapes), rank=env.rank, num_quantiles=K,
                          hidden=config.hidden, init_log_std=config.init_log_std,
                          u_init_scale=config.u_init_scale)
    tx = optax.chain(optax.clip_by_global_norm(config.max_grad_norm),
                     optax.adam(config.learning_rate))

    def episode(params, key, env_params):
        """One episode sampled under the best token: its observations, actions, return and
        last metrics."""
        k_reset, k_run = jax.random.split(key)
        obs, state = env.reset_env(k_reset, env_params)

        def step(carry, k):
            obs, state = carry
            k_act, k_env = jax.random.split(k)
            pi, _ = network.apply(params, obs[None])
            action = pi.sample(seed=k_act)[0]
            next_obs, state, reward, _, info = env.step_env(k_env, state, action, env_params)
            return (next_obs, state), (obs, action, reward, info["metrics"])

        _, (obs_seq, actions, rewards, metrics) = jax.lax.scan(
            step, (obs, state), jax.random.split(k_run, T))
        return obs_seq, actions, rewards.sum(), metrics[-1]

    def loss(params, ref_params, obs, actions, tokens, weights):
        tok = jnp.broadcast_to(tokens[:, None], obs.shape[:2])
        pi, _ = network.apply(params, obs, tok)
        ref, _ = network.apply(jax.lax.stop_gradient(ref_params), obs, tok)
        nll = -pi.log_prob(actions)  # [B, T]
        kl = pi.kl_divergence(ref)
        w = weights[:, None] / jnp.maximum(weights.sum() * T, 1.0)
        return (w * (nll + config.kl_coef * kl)).sum(), ((w * nll).sum(), (w * kl).sum())

    def init(key, env_params: EnvParams) -> QuarkState:
        k_net, key = jax.random.split(key)
        params = network.init(k_net, jnp.zeros((1, env.obs_size)))
        return QuarkState(params, params, tx.init(params), key, jnp.int32(0),
                          jnp.zeros((P, T, env.obs_size)), jnp.zeros((P, T, env.action_size)),
                          jnp.zeros(P), jnp.int32(0))

    def update(s: QuarkState, env_params: EnvParams):
        key, k_sample, k_epochs = jax.random.split(s.key, 3)
        keys = constrain_envs(jax.random.split(k_sample, E), mesh)
        obs, actions, returns, final = jax.vmap(episode, in_axes=(None, 0, None))(
            s.params, keys, env_params)
        slots = (s.seen + jnp.arange(E)) % P  # a ring: the oldest episodes leave first
        pool_obs = s.pool_obs.at[slots].set(obs)
        pool_actions = s.pool_actions.at[slots].set(actions)
        pool_returns = s.pool_returns.at[slots].set(returns)
        seen = s.seen + E
        valid = jnp.arange(P) < jnp.minimum(seen, P)
        tokens = quantile_tokens(pool_returns, valid, K)

        def minibatch(carry, idx):
            params, opt_state = carry
            (value, aux), grads = jax.value_and_grad(loss, has_aux=True)(
                params, s.ref_params, pool_obs[idx], pool_actions[idx], tokens[idx],
                valid[idx].astype(jnp.float32))
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), (value, *aux)

        def epoch(carry, k):
            order = jax.random.permutation(k, P).reshape(config.num_minibatches, -1)
            return jax.lax.scan(minibatch, carry, order)

        (params, opt_state), (values, nll, kl) = jax.lax.scan(
            epoch, (s.params, s.opt_state), jax.random.split(k_epochs, config.update_epochs))
        best = valid & (tokens == K - 1)
        metrics = {"loss": values.mean(), "nll": nll.mean(), "kl": kl.mean(),
                   "episode_return": returns.mean(), "final_metrics": final.mean(0),
                   "best_quantile_return": (jnp.where(best, pool_returns, 0.0).sum()
                                            / jnp.maximum(best.sum(), 1))}
        return QuarkState(params, s.ref_params, opt_state, key, s.update + 1, pool_obs,
                          pool_actions, pool_returns, seen), metrics

    def run(s: QuarkState, env_params: EnvParams, num_updates: int):
        return jax.lax.scan(lambda c, _: update(c, env_params), s, None, num_updates)

    def train(key, env_params: EnvParams):
        return run(init(key, env_params), env_params, config.num_updates)

    return Trainer(config, env, network, init, update, run, train)
