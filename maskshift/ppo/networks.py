"""Actor-critic with low-rank action heads."""

from __future__ import annotations

from collections.abc import Sequence

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


class ActorCritic(nn.Module):
    """An MLP encoder over the observation; per edited matrix ``[m, n]`` a head for the mean of
    ``U [m, r]`` and one for ``V [n, r]``; a learned state-independent log-std; a value MLP.

    Initialisation gives near-identity edits: the ``V`` heads start at zero mean, so the first
    step's change ``tanh(U V^T / sqrt(r))`` is near zero, while the ``U`` heads start at a fixed
    random direction (scale ``u_init_scale``). Starting both at zero would put the policy at the
    saddle of the bilinear map, where no first-order signal tells ``U`` or ``V`` which way to move.

    Returns ``(pi, value)``: a distrax ``MultivariateNormalDiag`` over the flat action
    (the layout of :meth:`maskshift.envs.EditWorld.unflatten_action`) and ``value [...]``.
    """

    shapes: Sequence[tuple[int, int]]
    rank: int
    hidden: int = 64
    init_log_std: float = -0.5
    u_init_scale: float = 1.0

    @nn.compact
    def __call__(self, obs):
        h = nn.tanh(nn.Dense(self.hidden, kernel_init=nn.initializers.orthogonal(np.sqrt(2)))(obs))
        h = nn.tanh(nn.Dense(self.hidden, kernel_init=nn.initializers.orthogonal(np.sqrt(2)))(h))
        means = []
        small = nn.initializers.orthogonal(0.01)
        for i, (m, n) in enumerate(self.shapes):
            def u_bias(key, shape, dtype=jnp.float32):
                return self.u_init_scale * (1.0 + 0.1 * jax.random.normal(key, shape, dtype))

            means.append(nn.Dense(m * self.rank, kernel_init=small, bias_init=u_bias,
                                  name=f"U_head_{i}")(h))
            means.append(nn.Dense(n * self.rank, kernel_init=small,
                                  bias_init=nn.initializers.zeros, name=f"V_head_{i}")(h))
        mean = jnp.concatenate(means, axis=-1)
        log_std = self.param("log_std", nn.initializers.constant(self.init_log_std),
                             (mean.shape[-1],))
        pi = distrax.MultivariateNormalDiag(mean, jnp.exp(log_std))
        v = nn.tanh(nn.Dense(self.hidden, kernel_init=nn.initializers.orthogonal(np.sqrt(2)))(obs))
        v = nn.tanh(nn.Dense(self.hidden, kernel_init=nn.initializers.orthogonal(np.sqrt(2)))(v))
        value = nn.Dense(1, kernel_init=nn.initializers.orthogonal(1.0))(v)
        return pi, jnp.squeeze(value, -1)
