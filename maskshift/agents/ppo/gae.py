"""Generalised advantage estimation that bootstraps on truncation, and the PPO loss."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def compute_gae(rewards, values, next_values, terminated, episode_end, gamma: float, lam: float):
    """GAE over a rollout, shapes ``[T, B]`` (time first).

    Args:
      rewards: ``r_t``.
      values: ``V(s_t)``.
      next_values: ``V(s_{t+1})`` of the state the step reached, *before* any auto-reset (for a
        truncated step, the value of the final observation: the episode would have gone on).
      terminated: 1 where ``s_{t+1}`` is a true terminal state (no bootstrap).
      episode_end: 1 where the episode ended at step ``t`` (terminated or truncated): the
        advantage recursion does not run across the boundary.

    Returns:
      ``(advantages, returns)``, each ``[T, B]``, with ``returns = advantages + values``.

    ``delta_t = r_t + gamma * (1 - terminated_t) * next_values_t - values_t`` and
    ``A_t = delta_t + gamma * lam * (1 - episode_end_t) * A_{t+1}``, with ``A_T = 0``.
    """
    deltas = rewards + gamma * (1.0 - terminated) * next_values - values

    def step(next_adv, xs):
        delta, end = xs
        adv = delta + gamma * lam * (1.0 - end) * next_adv
        return adv, adv

    _, adv = jax.lax.scan(step, jnp.zeros_like(deltas[0]), (deltas, episode_end), reverse=True)
    return adv, adv + values


def ppo_loss(network, params, batch, clip_eps: float, vf_coef: float, ent_coef: float):
    """Clipped-surrogate PPO loss with a clipped value loss (PureJaxRL's form).

    ``batch`` has ``obs``, ``action``, ``log_prob``, ``value``, ``advantage``, ``target``.
    Returns ``(loss, aux)``.
    """
    pi, value = network.apply(params, batch["obs"])
    log_prob = pi.log_prob(batch["action"])
    v_clipped = batch["value"] + jnp.clip(value - batch["value"], -clip_eps, clip_eps)
    value_loss = 0.5 * jnp.maximum((value - batch["target"]) ** 2,
                                   (v_clipped - batch["target"]) ** 2).mean()
    # Clamp the log-ratio before exp: in a high-dimensional action space one large step can
    # overflow the ratio to inf, and inf * 0 poisons the gradient with NaN.
    log_ratio = jnp.clip(log_prob - batch["log_prob"], -20.0, 20.0)
    ratio = jnp.exp(log_ratio)
    adv = batch["advantage"]
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    actor_loss = -jnp.minimum(ratio * adv, jnp.clip(ratio, 1 - clip_eps, 1 + clip_eps) * adv).mean()
    entropy = pi.entropy().mean()
    loss = actor_loss + vf_coef * value_loss - ent_coef * entropy
    return loss, {"actor_loss": actor_loss, "value_loss": value_loss, "entropy": entropy,
                  "approx_kl": ((ratio - 1) - log_ratio).mean()}
