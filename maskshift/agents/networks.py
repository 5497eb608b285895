"""Actor-critics with low-rank action heads, shared by PPO and APG: flat heads (one vector for
all of ``U`` and ``V``) and unit heads (one small network shared over the rows of ``U`` and one
over the rows of ``V``); :func:`make_network` builds the one a config names."""

from __future__ import annotations

from collections.abc import Sequence

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from maskshift.envs import EditWorld
from maskshift.envs.observe import CONTROLLER_OBSERVATIONS

HEADS = ("flat", "units")
# unit heads: the skip path's initial gain on the factors it follows (PPOConfig.skip_gain)
DEFAULT_SKIP_GAIN = 0.5
# ... on the controller-step observation's, which are the controller's step itself: at gain 1 the
# policy starts as the minibatch controller
STEP_SKIP_GAIN = 1.0


def default_skip_gain(observation: str | None) -> float:
    """The skip path's default gain for ``observation``: :data:`STEP_SKIP_GAIN` on the
    controller-step observation, else :data:`DEFAULT_SKIP_GAIN`."""
    return STEP_SKIP_GAIN if observation == "controller-step" else DEFAULT_SKIP_GAIN


def _mlp(x, hidden: int, layers: int = 2):
    """``layers`` tanh Dense layers (orthogonal sqrt(2) init), created in the caller's scope."""
    for _ in range(layers):
        x = nn.tanh(nn.Dense(hidden, kernel_init=nn.initializers.orthogonal(np.sqrt(2)))(x))
    return x


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
        h = _mlp(obs, self.hidden)
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
        v = _mlp(obs, self.hidden)
        value = nn.Dense(1, kernel_init=nn.initializers.orthogonal(1.0))(v)
        return pi, jnp.squeeze(value, -1)


class UnitHead(nn.Module):
    """Rows of one factor from per-unit features ``[..., k, F]`` and a context ``[..., H]``:
    ``row_i = skip(f_i) + out(tanh(in(f_i) + ctx_proj))`` (``[..., k, r]``), the same weights for
    every unit, so the head serves any layer width.

    ``skip`` starts as ``skip_gain`` times the identity on the features ``follow`` ..
    ``follow + r``: pointed at the gradient observation's edit-term factors (or the controller
    direction's), the initial mean edit follows that direction, and PPO learns from there. The
    gain sets the size of the first edit (see :class:`~maskshift.agents.ppo.PPOConfig`)."""

    rank: int
    hidden: int
    follow: int
    skip_gain: float = DEFAULT_SKIP_GAIN

    @nn.compact
    def __call__(self, feats, ctx):
        r = self.rank

        def skip_init(key, shape, dtype=jnp.float32):
            eye = self.skip_gain * jnp.eye(r, dtype=dtype)
            return jnp.zeros(shape, dtype).at[self.follow:self.follow + r].set(eye)

        h = nn.Dense(self.hidden)(feats) + nn.Dense(self.hidden, use_bias=False)(ctx)[..., None, :]
        out = nn.Dense(r, kernel_init=nn.initializers.orthogonal(0.01))(nn.tanh(h))
        return out + nn.Dense(r, use_bias=False, kernel_init=skip_init)(feats)


class UnitActorCritic(nn.Module):
    """Shared per-unit action heads over the gradient observation
    (:class:`maskshift.envs.EditWorld` with ``observation="gradient"``).

    The observation's summary part feeds a context MLP; each edited matrix's unit block gives
    ``F`` features per input unit and per output unit, and :class:`UnitHead` maps each unit's
    features (with the context) to its row of ``U`` or ``V``. The parameter count does not depend
    on ``m`` or ``n``: one trained policy runs on any layer widths (with the same number of edited
    matrices, rank and objective). One learned log-std per factor (``U``/``V`` of each matrix),
    likewise shape-free. The value MLP reads the summary and the units' mean absolute features.
    """

    shapes: Sequence[tuple[int, int]]
    rank: int
    summary_size: int
    unit_features: int
    hidden: int = 64
    init_log_std: float = -0.5
    follow: int | None = None  # the features the skip path starts on; None: the edit term's
    skip_gain: float = DEFAULT_SKIP_GAIN  # the skip path's initial gain on them

    @nn.compact
    def __call__(self, obs):
        r, f = self.rank, self.unit_features
        follow = r if self.follow is None else self.follow
        summary = obs[..., : self.summary_size]
        ctx = _mlp(summary, self.hidden)
        means, stds, pooled = [], [], []
        i = self.summary_size
        log_std = self.param("log_std", nn.initializers.constant(self.init_log_std),
                             (2 * len(self.shapes),))
        for k, (m, n) in enumerate(self.shapes):
            for j, units in enumerate((m, n)):
                feats = obs[..., i : i + units * f].reshape(obs.shape[:-1] + (units, f))
                i += units * f
                # features: utility factors [0, r), edit factors [r, 2r), (the controller's
                # [2r, 3r),) deviation stats
                head = UnitHead(r, self.hidden, follow=follow, skip_gain=self.skip_gain,
                                name=f"{'UV'[j]}_units_{k}")
                means.append(head(feats, ctx).reshape(obs.shape[:-1] + (units * r,)))
                stds.append(jnp.broadcast_to(jnp.exp(log_std[2 * k + j]), (units * r,)))
                pooled.append(jnp.abs(feats).mean(-2))
        pi = distrax.MultivariateNormalDiag(jnp.concatenate(means, -1), jnp.concatenate(stds))
        v = _mlp(jnp.concatenate([summary, *pooled], -1), self.hidden)
        value = nn.Dense(1, kernel_init=nn.initializers.orthogonal(1.0))(v)
        return pi, jnp.squeeze(value, -1)


def make_network(env: EditWorld, *, heads: str = "flat", hidden: int = 64,
                 init_log_std: float = -0.5, u_init_scale: float = 1.0,
                 skip_gain: float = DEFAULT_SKIP_GAIN) -> ActorCritic | UnitActorCritic:
    """The actor-critic for ``env`` with ``heads`` (``"flat"`` or ``"units"``), PPO's and APG's
    alike (APG reads only the action mean)."""
    if heads not in HEADS:
        raise ValueError(f"Unknown heads {heads!r}; choose one of {', '.join(HEADS)}.")
    if heads == "units":
        if env.observation == "summary":
            raise ValueError("Unit heads read per-unit features: they need the gradient or "
                             "controller observation (RunConfig.observation), not 'summary'.")
        # the skip path starts on the controller's factors where the observation has them,
        # else on the edit term's
        follow = 2 * env.rank if env.observation in CONTROLLER_OBSERVATIONS else env.rank
        return UnitActorCritic(shapes=tuple(env.shapes), rank=env.rank,
                               summary_size=env.summary_size, unit_features=env.unit_features,
                               hidden=hidden, init_log_std=init_log_std, follow=follow,
                               skip_gain=skip_gain)
    return ActorCritic(shapes=tuple(env.shapes), rank=env.rank, hidden=hidden,
                       init_log_std=init_log_std, u_init_scale=u_init_scale)
