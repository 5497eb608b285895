"""MaskWorld and ShiftWorld: gymnax 1.x environments whose state is an edit of a network's weights.

Both share :class:`EditWorld`; they differ only in how an edit is stored and applied:

- **MaskWorld**: the state holds a mask ``M`` per edited matrix (all ones at reset);
  ``M <- clip(M + step_size * D, 0, mask_max)`` and the effective weight is ``W0 * M``. The mask can
  reach exactly 0 (prune a weight) or scale it up to ``mask_max``.
- **ShiftWorld**: the state holds a shift ``S`` (zeros at reset);
  ``S <- S + step_size * rms(W0) * D``, then ``S`` is rescaled so that
  ``||S||_F <= shift_cap * ||W0||_F``; the effective weight is ``W0 + S``.

An action is a flat vector holding, for each edited matrix ``[m, n]``, factors ``U [m, r]`` then
``V [n, r]`` (row-major); :meth:`EditWorld.unflatten_action` splits it. The per-step direction is
``D = tanh(U @ V.T / sqrt(r))``, so every entry of one step's change is bounded by ``step_size``
(times ``rms(W0)`` in ShiftWorld), and a zero action changes nothing, bit for bit.

**Reward** (level form, evaluated after the step on a fresh *train* minibatch)::

    reward = lambda_utility * utility + lambda_edit * edit

with the task objective's terms, each measured relative to the original model on the whole train
split, so the original model scores 0. For unlearning, ``utility = retain_ce0 - retain_ce`` and
``edit = forget_ce - forget_ce0`` (mean cross-entropy, capped per forget example); for bias,
``utility = acc_p - acc_p0`` and ``edit = cf_gap0 - cf_gap`` (``cf_gap``: mean absolute change of
the toxic probability when identity terms are swapped). Test splits are never touched.

**Observation**: :mod:`maskshift.envs.observe`.

**Minibatch draw** (``minibatch``, static): ``"per_env"`` (default): each environment draws its
own train minibatch with its step key. ``"shared"``: one minibatch per batched step for every
environment (common random numbers), drawn with ``EnvParams.batch_key``, which the caller sets
each step through :meth:`EditWorld.step_params` and passes unbatched to the ``vmap``; the edited
layer's forward pass is then one ``[rows, m] x [N, m, n]`` product instead of a gather and a
product per environment. With a pool of targets the shared draw is class-stratified
(:meth:`~maskshift.tasks.UnlearnObjective.sample_shared`). Without a ``batch_key`` (a single
environment's rollout) a shared env draws with its step key, as ``"per_env"`` does.

**Episode**: ``EnvParams.max_steps_in_episode`` steps, then truncation and gymnax's auto-reset to
the original weights.

**Targets** (amortized editing): an unlearning task may hold a pool of forget sets
(:func:`~maskshift.tasks.pool_task`). Each reset draws one into ``EnvState.target``; the minibatch,
the original's metrics and the reset unit block are then gathered for it, so one compiled step
serves every target and a vmapped batch trains on many at once. A pool may also give each target
its own starting model (``TaskArrays.starts``: requests in the middle of sequences,
:func:`~maskshift.tasks.sequence_pool_task`); :meth:`EditWorld.at_target` then reads the
target's edited matrices as the originals, so a mask multiplies into, and a shift adds to, the
model that target starts from. The observation never names the
target: a policy learns which units to edit from the gradient factors of the unit block, which
exist for a class it never saw. :meth:`EditWorld.reset_to` starts an episode on a given target.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from gymnax.environments import environment, spaces

from maskshift._types import Array, Params, PRNGKey
from maskshift.envs.observe import (
    OBSERVATIONS,
    gradient_rows,
    observation_vector,
    reset_observation,
    unit_block,
    unit_features,
)
from maskshift.envs.state import EnvParams, EnvState, check_env_params
from maskshift.tasks import Task, set_leaves

MINIBATCHES = ("per_env", "shared")


class EditWorld(environment.Environment[EnvState, EnvParams]):
    """Base of MaskWorld and ShiftWorld. Holds only static structure: the task's callables,
    the edited paths, shapes, the rank and the observation size. All arrays live in ``EnvParams``.

    Args:
      task: the editing :class:`~maskshift.tasks.Task`.
      rank: ``r``, the rank of each step's change (checked against every edited matrix).
      obs_bins: bins for the pooled row and column summaries in the observation.
      observation: ``"summary"`` (fixed size), ``"gradient"`` (the summary, then per-unit
        gradient factors; see the module docstring), ``"controller"`` (those, then the factors
        of the gradient controller's direction) or ``"controller-step"`` (those, then the
        factors of the controller's own step on the minibatch).
      gradient_share: the share of each step's minibatch rows (the first ``ceil(share * rows)``
        of each part) whose gradients the unit block factors; the metrics and the reward read
        every row. ``0.25`` (default) cut the controller observation's step from 3.2-4.1x to
        about 2.8x the summary step's at N = 1,024 on a 2-core CPU, and every default command
        still met its target (docs/performance.md); ``1.0`` is the whole minibatch (the
        default of ``"controller-step"``, whose start the quarter's noisy utility gradient
        spoils: docs/layers.md), read in the metrics' own pass.
    """

    kind = "edit"
    # EnvParams defaults of this kind of edit (a shift needs a smaller step than a mask: a
    # column-coherent shift adds up over every input of a unit).
    env_defaults: dict = {}

    def __init__(self, task: Task, rank: int = 4, obs_bins: int = 8,
                 observation: str = "summary", minibatch: str = "per_env",
                 gradient_share: float | None = None):
        super().__init__()
        if gradient_share is None:
            gradient_share = 1.0 if observation == "controller-step" else 0.25
        if not 0.0 < gradient_share <= 1.0:
            raise ValueError(f"gradient_share must be in (0, 1], got {gradient_share!r}.")
        self.gradient_share = gradient_share
        if observation not in OBSERVATIONS:
            raise ValueError(f"Unknown observation {observation!r}; choose one of "
                             f"{', '.join(OBSERVATIONS)}.")
        if minibatch not in MINIBATCHES:
            raise ValueError(f"Unknown minibatch draw {minibatch!r}; choose one of "
                             f"{', '.join(MINIBATCHES)}.")
        self.minibatch = minibatch
        self.task = task
        self.paths = task.edit_paths
        self.leaf_shapes = task.leaf_shapes
        self.shapes = task.matrix_shapes
        if not isinstance(rank, int) or rank < 1:
            raise ValueError(f"rank must be a positive integer, got {rank!r}.")
        for path, (m, n) in zip(self.paths, self.shapes, strict=True):
            if rank > min(m, n):
                raise ValueError(f"rank {rank} is larger than min(m, n) = {min(m, n)} for the "
                                 f"edited leaf {'/'.join(path)} viewed as [{m}, {n}]; choose "
                                 f"rank <= {min(m, n)}.")
        self.rank = rank
        self.obs_bins = obs_bins
        self.action_size = sum((m + n) * rank for m, n in self.shapes)
        self.observation = observation
        self.summary_size = (len(self.shapes) * (3 + 2 * obs_bins)
                             + len(task.objective.metric_names) + 1)
        self.unit_features = unit_features(observation, rank)
        self.obs_size = self.summary_size + sum((m + n) * self.unit_features
                                                for m, n in self.shapes)

    # ------------------------------------------------------------------ construction helpers
    @property
    def name(self) -> str:
        return f"{type(self).__name__}-v0"

    def make_params(self, **overrides) -> EnvParams:
        """``EnvParams`` for this env's task (runs the frozen prefix over the train data once).

        Fields default to the task objective's ``env_defaults`` (its reward coefficients) and the
        environment's (its step size), then to the :class:`EnvParams` defaults; ``overrides`` win.
        """
        fields = {**self.env_defaults, **dict(self.task.objective.env_defaults), **overrides}
        check_env_params(fields)
        params = EnvParams(task=self.task.arrays(), **fields)
        if self.observation != "summary":
            edit = tuple(self.initial_edit(w0) for w0 in params.task.originals)
            obj = self.task.objective
            units = jax.jit(lambda e, batch, p, t: unit_block(
                self, e, self.metrics_and_gradients(e, batch, p, t)[1], p))
            per_target = [units(edit, obj.target_sets(params.task.train, t),
                                self.at_target(params, t), t)
                          for t in range(obj.num_targets)]
            params = params.replace(reset_units=jnp.stack(per_target))
        return params

    @property
    def default_params(self) -> EnvParams:
        return self.make_params()

    # ------------------------------------------------------------------ subclass hooks
    def initial_edit(self, w0: Array) -> Array:
        raise NotImplementedError

    def update_edit(self, edit: Array, d: Array, w0: Array, params: EnvParams) -> Array:
        raise NotImplementedError

    def effective(self, edit: Array, w0: Array) -> Array:
        raise NotImplementedError

    def deviation(self, edit: Array, w0: Array) -> Array:
        raise NotImplementedError

    # ------------------------------------------------------------------ actions
    def unflatten_action(self, action: Array) -> tuple[tuple[Array, Array], ...]:
        """Split a flat action ``[action_size]`` into ``((U [m, r], V [n, r]), ...)``."""
        action = jnp.asarray(action)
        if action.shape != (self.action_size,):
            raise ValueError(f"{self.name} expects an action of shape ({self.action_size},) "
                             f"(U [m, r] and V [n, r] for each edited matrix {list(self.shapes)}, "
                             f"rank {self.rank}), got shape {action.shape}.")
        out, i = [], 0
        for m, n in self.shapes:
            u = action[i : i + m * self.rank].reshape(m, self.rank)
            i += m * self.rank
            v = action[i : i + n * self.rank].reshape(n, self.rank)
            i += n * self.rank
            out.append((u, v))
        return tuple(out)

    def direction(self, u: Array, v: Array) -> Array:
        """``D = tanh(U V^T / sqrt(r))`` ``[m, n]``, every entry in (-1, 1)."""
        return jnp.tanh(u @ v.T / math.sqrt(self.rank))

    # ------------------------------------------------------------------ model
    def at_target(self, params: EnvParams, target) -> EnvParams:
        """``params`` as ``target``'s episodes read them: with per-target starting models
        (``TaskArrays.starts``), the target's in ``originals``, so every edit is applied to,
        and measured against, the model that target starts from; else ``params`` unchanged.
        ``target`` may be traced (a gather per edited matrix)."""
        starts = params.task.starts
        if starts is None:
            return params
        return params.replace(task=params.task.replace(
            originals=tuple(s[target] for s in starts)))

    def edited_params(self, state: EnvState, params: EnvParams) -> Params:
        """The full params pytree of the model that ``state`` describes."""
        return self.params_for_edit(state.edit, self.at_target(params, state.target))

    def params_for_edit(self, edit: tuple, params: EnvParams) -> Params:
        """The full params pytree for an edit (one mask or shift per edited matrix)."""
        ws = [self.effective(e, w0).reshape(s) for e, w0, s in
              zip(edit, params.task.originals, self.leaf_shapes, strict=True)]
        return set_leaves(params.task.params, self.paths, ws)

    def metrics_on(self, edit: tuple, batch: dict, params: EnvParams) -> Array:
        """The objective's metrics of the model that ``edit`` describes on ``batch`` (a sampled
        minibatch, or ``params.task.train`` for the whole train split). Differentiable in
        ``edit``: the controllers, the oracle and APG take ``jax.grad`` through it."""
        model_params = self.params_for_edit(edit, params)
        return self.task.objective.measure(lambda h: self.task.suffix(model_params, h), batch)

    def reward_terms(self, edit: tuple, batch: dict, params: EnvParams,
                     target: Array = 0) -> tuple[Array, Array]:
        """``(utility, edit)`` reward terms of ``edit`` on ``batch`` for ``target`` (see the
        module docstring)."""
        return self.task.objective.terms(self.metrics_on(edit, batch, params),
                                         params.task.base_metrics[target])

    def train_split(self, params: EnvParams, target: Array = 0) -> dict:
        """The whole train split as one batch for ``target`` (``target`` may be traced)."""
        return self.task.objective.whole(params.task.train, target)

    def metrics_and_gradients(self, edit: tuple, batch: dict, params: EnvParams,
                              target: Array) -> tuple[Array, tuple[tuple, tuple]]:
        """The metrics on ``batch`` and the gradients of the ``(utility, edit)`` reward terms with
        respect to ``edit``: ``(g_utility, g_edit)``, each a tuple of ``[m, n]``, one per edited
        matrix."""
        def terms(e):
            metrics = self.metrics_on(e, batch, params)
            utility, edit_term = self.task.objective.terms(metrics,
                                                           params.task.base_metrics[target])
            return jnp.stack([utility, edit_term]), metrics

        # one forward pass, pulled back once per term and never stacked: jax.jacrev would vmap
        # the pullbacks, and XLA:CPU runs the batched products and the copies that makes far
        # slower (docs/performance.md)
        _, pullback, metrics = jax.vjp(terms, edit, has_aux=True)
        (g_u,), (g_e,) = pullback(jnp.array([1.0, 0.0])), pullback(jnp.array([0.0, 1.0]))
        return metrics, (g_u, g_e)

    def step_params(self, params: EnvParams, key: PRNGKey) -> EnvParams:
        """``params`` for one batched step: with ``minibatch="shared"``, ``key`` draws the step's
        one minibatch for every environment (pass ``params`` unbatched to the ``vmap``); with
        ``"per_env"``, ``params`` unchanged."""
        return params.replace(batch_key=key) if self.minibatch == "shared" else params

    def _sample(self, key: PRNGKey, params: EnvParams, target: Array) -> dict:
        """This step's train minibatch for ``target``: the environment's own draw (``key``), or
        the step's shared draw (``params.batch_key``) weighted for ``target``."""
        obj = self.task.objective
        if self.minibatch == "shared" and params.batch_key is not None:
            return obj.for_target(obj.sample_shared(params.batch_key, params.task.train), target)
        return obj.sample(key, params.task.train, target)

    def _measure(self, key: PRNGKey, edit: tuple, params: EnvParams, target: Array):
        """The metrics of ``edit`` on a fresh train minibatch for ``target``, and the unit block
        (``None`` with the summary observation)."""
        batch = self._sample(key, params, target)
        if self.observation == "summary":
            return self.metrics_on(edit, batch, params), None
        # the unit block reads the reward terms' gradients, on a share of the rows
        if self.gradient_share == 1.0:  # every row: the metrics come from the gradients' pass
            metrics, grads = self.metrics_and_gradients(edit, batch, params, target)
            return metrics, unit_block(self, edit, grads, params)
        metrics = self.metrics_on(edit, batch, params)
        _, grads = self.metrics_and_gradients(edit, gradient_rows(batch, self.gradient_share),
                                           params, target)
        return metrics, unit_block(self, edit, grads, params)

    def observe(self, edit: tuple, metrics: Array, time, params: EnvParams, units=None) -> Array:
        """The observation after a step (:func:`maskshift.envs.observe.observation_vector`)."""
        return observation_vector(self, edit, metrics, time, params, units)

    # ------------------------------------------------------------------ gymnax API
    def reset_env(self, key: PRNGKey, params: EnvParams) -> tuple[Array, EnvState]:
        """The original weights, and the episode's target drawn uniformly from the task's
        (always 0 for a single target, the key unused)."""
        num_targets = params.task.base_metrics.shape[0]
        target = (jnp.int32(0) if num_targets == 1
                  else jax.random.randint(key, (), 0, num_targets, jnp.int32))
        return self.reset_to(target, params)

    def reset_to(self, target: Array, params: EnvParams) -> tuple[Array, EnvState]:
        """The original weights with ``target`` (int32, may be traced) as the episode's target."""
        target = jnp.asarray(target, jnp.int32)
        params = self.at_target(params, target)
        edit = tuple(self.initial_edit(w0) for w0 in params.task.originals)
        state = EnvState(time=jnp.int32(0), edit=edit, metrics=params.task.base_metrics[target],
                         target=target)
        units = None if self.observation == "summary" else params.reset_units[target]
        return reset_observation(self, state.metrics, units), state

    def next_edit(self, edit: tuple, action: Array, params: EnvParams) -> tuple:
        """The edit after one step's ``action`` (no minibatch, reward or observation)."""
        factors = self.unflatten_action(action)
        return tuple(self.update_edit(e, self.direction(u, v), w0, params)
                     for e, (u, v), w0 in zip(edit, factors, params.task.originals, strict=True))

    def step_env(self, key: PRNGKey, state: EnvState, action: Array, params: EnvParams):
        params = self.at_target(params, state.target)
        edit = self.next_edit(state.edit, action, params)
        metrics, units = self._measure(key, edit, params, state.target)
        utility, edit_term = self.task.objective.terms(metrics,
                                                       params.task.base_metrics[state.target])
        reward = params.lambda_utility * utility + params.lambda_edit * edit_term
        time = state.time + 1
        new_state = EnvState(time=time, edit=edit, metrics=metrics, target=state.target)
        obs = self.observe(edit, metrics, time, params, units)
        info = {"utility": utility, "edit": edit_term, "metrics": metrics}
        return obs, new_state, reward, jnp.asarray(False), info

    def is_terminated(self, state: EnvState, params: EnvParams) -> Array:
        return jnp.asarray(False)

    def action_space(self, params: EnvParams | None = None) -> spaces.Box:
        """Unbounded factors (the environment squashes them); sampled in [-1, 1]."""
        return spaces.Box(-1.0, 1.0, (self.action_size,), jnp.float32)

    def observation_space(self, params: EnvParams | None = None) -> spaces.Box:
        return spaces.Box(-1.0, 1.0, (self.obs_size,), jnp.float32)


class MaskWorld(EditWorld):
    """Multiplicative editing: ``W = W0 * M`` with ``M <- clip(M + step_size * D, 0, mask_max)``."""

    kind = "mask"
    env_defaults = {"step_size": 0.25}

    def initial_edit(self, w0):
        return jnp.ones_like(w0)

    def update_edit(self, edit, d, w0, params):
        return jnp.clip(edit + params.step_size * d, 0.0, params.mask_max)

    def effective(self, edit, w0):
        return w0 * edit

    def deviation(self, edit, w0):
        return edit - 1.0


class ShiftWorld(EditWorld):
    """Additive editing: ``W = W0 + S`` with ``S <- S + step_size * rms(W0) * D``, capped at
    ``||S||_F <= shift_cap * ||W0||_F``."""

    kind = "shift"
    env_defaults = {"step_size": 0.1}

    def initial_edit(self, w0):
        return jnp.zeros_like(w0)

    def update_edit(self, edit, d, w0, params):
        norm0 = jnp.sqrt(jnp.sum(w0 * w0))
        rms0 = norm0 / math.sqrt(w0.size)
        s = edit + params.step_size * rms0 * d
        norm = jnp.sqrt(jnp.sum(s * s))
        cap = params.shift_cap * norm0
        # scale is exactly 1.0 inside the cap, so a zero action leaves S bit for bit
        scale = jnp.where(norm > cap, cap / jnp.maximum(norm, 1e-30), 1.0)
        return s * scale

    def effective(self, edit, w0):
        return w0 + edit

    def deviation(self, edit, w0):
        rms0 = jnp.sqrt(jnp.mean(w0 * w0))
        return edit / jnp.maximum(rms0, 1e-30)
