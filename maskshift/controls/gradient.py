"""Gradient controls in the environments' own action space: no learning, no policy.

MaskWorld and ShiftWorld are pure JAX and both tasks' reward terms are smooth, so ``jax.grad``
goes from a reward term to the mask or shift. The **greedy gradient controller** uses that at
every step of an ordinary episode:

1. on the whole *train* split, take the gradients of the edit term and of the utility term of the
   reward with respect to the current edit (one mask or shift ``[m, n]`` per edited matrix);
2. normalise each by its Frobenius norm over all edited matrices, and add them:
   ``G = g_edit / |g_edit| + w * g_utility / |g_utility|`` with ``w`` the objective's
   ``control_utility_weight`` (1.0 unlearning: forget cross-entropy up, retain cross-entropy down;
   0.3 bias: counterfactual gap down, label probability up);
3. act with the top-``r`` SVD of each ``G``, scaled so that the largest entry of
   ``U V^T / sqrt(r)`` is ``saturation`` (the step's ``tanh`` then saturates there).

The action is an ordinary ``[action_size]`` vector fed to ``env.step``: the controller is held to
the same episode length, rank and step bounds as a trained policy, and its episode is selected
on validation and reported on test by the same code (:mod:`maskshift.run.select`).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from maskshift.agents.common import ActFn, rollout_edits
from maskshift.envs import EditWorld, EnvParams, EnvState
from maskshift.envs.observe import STEP_SATURATION, controller_direction, saturated_factors


@dataclasses.dataclass(frozen=True)
class GradientConfig:
    """The greedy gradient controller's options.

    Attributes:
      saturation: the largest entry of one step's ``U V^T / sqrt(r)`` (``tanh(3) = 0.995``).
      utility_weight: weight of the normalised utility gradient; ``None``: the objective's
        ``control_utility_weight``.
    """

    saturation: float = STEP_SATURATION
    utility_weight: float | None = None

    def validate(self) -> GradientConfig:
        if not math.isfinite(self.saturation) or self.saturation <= 0:
            raise ValueError(f"saturation must be a positive number, got {self.saturation}.")
        if self.utility_weight is not None and (not math.isfinite(self.utility_weight)
                                                or self.utility_weight < 0):
            raise ValueError(f"utility_weight must be >= 0, got {self.utility_weight}.")
        return self


def term_gradients(env: EditWorld, edit: tuple, env_params: EnvParams,
                   batch: dict | None = None, target: jax.Array = 0) -> tuple[tuple, tuple]:
    """Gradients of the ``(utility, edit)`` reward terms for ``target`` with respect to ``edit``
    on ``batch`` (default: the whole train split); each a tuple of ``[m, n]``, one per edited
    matrix."""
    batch = env.train_split(env_params, target) if batch is None else batch
    return env.metrics_and_gradients(edit, batch, env_params, target)[1]


def gradient_direction(env: EditWorld, edit: tuple, env_params: EnvParams,
                       utility_weight: float, target: jax.Array = 0) -> tuple:
    """``g_edit / |g_edit| + w * g_utility / |g_utility|`` per edited matrix (an ascent
    direction of the reward for ``target``)."""
    return controller_direction(*term_gradients(env, edit, env_params, target=target),
                                utility_weight)


def low_rank_action(env: EditWorld, directions: tuple, saturation: float) -> jax.Array:
    """The flat action whose ``U V^T / sqrt(r)`` is the top-``r`` SVD approximation of each
    direction, scaled so its largest entry is ``saturation``."""
    parts = []
    r = env.rank
    for g in directions:
        u, s, vt = jnp.linalg.svd(g, full_matrices=False)
        parts += [f.ravel() for f in saturated_factors(u[:, :r], s[:r], vt[:r].T, saturation)]
    return jnp.concatenate(parts)


def gradient_act(env: EditWorld, config: GradientConfig = GradientConfig()) -> ActFn:
    """The controller as an action rule for :func:`maskshift.agents.common.rollout_edits`."""
    config.validate()
    weight = (env.task.objective.control_utility_weight if config.utility_weight is None
              else config.utility_weight)

    def act(_, t, obs, state: EnvState, env_params: EnvParams):
        direction = gradient_direction(env, state.edit, env_params, weight, state.target)
        return low_rank_action(env, direction, config.saturation)

    return act


def gradient_edits(env: EditWorld, env_params: EnvParams,
                   config: GradientConfig = GradientConfig(), target: int = 0):
    """One episode of the greedy gradient controller on ``target``: the edits of every step
    ``[T + 1, m, n]`` (see :func:`maskshift.agents.common.rollout_edits`)."""
    return rollout_edits(env, env_params, gradient_act(env, config), target=target)


def gradient_step(env: EditWorld, state: EnvState, env_params: EnvParams,
                  config: GradientConfig = GradientConfig()) -> jax.Array:
    """The controller's action in ``state`` (one flat ``[action_size]`` vector)."""
    return gradient_act(env, config)(None, state.time, None, state, env_params)


def check_differentiable(env: EditWorld, env_params: EnvParams, algo: str) -> None:
    """Refuse a reward whose terms have no gradient with respect to the edit (an accuracy-based
    term, say): a gradient editor would train on zeros. Checked at the original weights on the
    whole train split; raises ``ValueError`` naming the term."""
    _, state = env.reset_env(jax.random.key(0), env_params)
    grads = jax.jit(lambda e, p: term_gradients(env, e, p))(state.edit, env_params)
    for name, g in zip(("utility", "edit"), grads, strict=True):
        norm = float(optax.tree.norm(g))
        if not np.isfinite(norm) or norm == 0.0:
            raise ValueError(f"The {name} term of the {env.task.objective.name!r} reward has "
                             f"{'no finite' if not np.isfinite(norm) else 'a zero'} gradient "
                             f"with respect to the edit; the {algo!r} editor needs a "
                             "differentiable reward: use `algo='ppo'` or `algo='quark'`"
                             + (f", or the differentiable objective, {hint}"
                                if (hint := env.task.objective.differentiable_hint) else "")
                             + ".")
