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

**Observation** (a fixed-size vector in [-1, 1], whatever the layer size): for each edited matrix,
``tanh`` of the mean, mean-absolute and max-absolute deviation from the original (``M - 1``, or
``S / rms(W0)``) and of the mean-absolute deviation of its rows and of its columns pooled into
``obs_bins`` bins each; then ``tanh`` of the objective's 4 metrics on the last minibatch; then
``t / T``.

With ``observation="gradient"`` a **unit block** follows, for each edited matrix: ``F`` features
per input unit (row) and per output unit (column), ``F = 2 r + 2``, so it grows with ``m + n``, not
``m * n``. They are MEND-style factors of the gradients of the two reward terms with respect to the
current edit, on the step's train minibatch: for each term's gradient ``G [m, n]``, ``V = G^T G P``
and ``U = G V`` for a fixed probe matrix ``P [n, r]`` (one step of subspace iteration; each
column scaled to unit RMS, so ``U V^T`` spans ``G``'s leading directions), then each row's and
column's mean and mean-absolute deviation. At reset they are those of the original weights on
the whole train split (``EnvParams.reset_units``, computed once by ``make_params``).

``observation="controller"`` adds ``r`` features per unit (``F = 3 r + 2``, after the edit term's):
the same factors of the greedy gradient controller's direction on the minibatch,
``g_edit / |g_edit| + w g_utility / |g_utility|`` (norms over every edited matrix, ``w`` the
objective's ``control_utility_weight``; :mod:`maskshift.control`). A unit-head policy starts out
following them (:class:`~maskshift.ppo.networks.UnitHead`): PPO learns corrections to the fixed
rule rather than the rule itself.

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
serves every target and a vmapped batch trains on many at once. The observation never names the
target: a policy learns which units to edit from the gradient factors of the unit block, which
exist for a class it never saw. :meth:`EditWorld.reset_to` starts an episode on a given target.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from gymnax.environments import environment, spaces

from maskshift._types import Array, Params, PRNGKey
from maskshift.tasks import Task, TaskArrays, set_leaves


@struct.dataclass
class EnvState(environment.EnvState):
    """``edit``: one mask or shift ``[m, n]`` per edited matrix; ``metrics``: the objective's
    metrics on the last minibatch; ``time``: the step count within the episode; ``target``: the
    episode's target (int32; an index into an unlearning pool's forget sets, drawn at reset)."""

    edit: tuple
    metrics: Array
    target: Array


@struct.dataclass
class EnvParams(environment.EnvParams):
    """Everything a sweep may ``vmap`` over, and the task's arrays.

    Attributes:
      lambda_utility, lambda_edit: reward coefficients.
      step_size: the largest change of one mask entry (MaskWorld, default 0.25) or, in units of
        ``rms(W0)``, of one shift entry (ShiftWorld, default 0.1) per step.
      mask_max: MaskWorld's upper bound on a mask entry.
      shift_cap: ShiftWorld's bound on ``||S||_F / ||W0||_F``.
      max_steps_in_episode: the episode length ``T``.
      task: the :class:`~maskshift.tasks.TaskArrays`.
    """

    lambda_utility: float = 2.0
    lambda_edit: float = 1.0
    step_size: float = 0.25
    mask_max: float = 2.0
    shift_cap: float = 1.0
    max_steps_in_episode: int = 8
    task: TaskArrays | None = None
    # the unit block at reset, per target [P, units] (observation="gradient" only)
    reset_units: Array | None = None
    # minibatch="shared": the key of this step's one minibatch for every environment (set per
    # step by the caller: EditWorld.step_params)
    batch_key: Array | None = None


# field -> (lowest allowed value, whether the lowest value itself is allowed)
_ENV_PARAM_RANGES = {"lambda_utility": (0.0, True), "lambda_edit": (0.0, True),
                     "step_size": (0.0, False), "mask_max": (1.0, True), "shift_cap": (0.0, False),
                     "max_steps_in_episode": (1, True)}


def check_env_params(fields: dict) -> None:
    """Refuse ``EnvParams`` values that make no sense, naming the field (``ValueError``).

    Values may be arrays (a sweep ``vmap``s over them): every entry is checked."""
    for name, value in fields.items():
        if name not in _ENV_PARAM_RANGES:
            continue
        low, inclusive = _ENV_PARAM_RANGES[name]
        v = np.asarray(value, dtype=np.float64)
        ok = np.isfinite(v) & ((v >= low) if inclusive else (v > low))
        if name == "max_steps_in_episode":
            ok &= v == np.round(v)
        if not np.all(ok):
            bound = f">= {low}" if inclusive else f"> {low}"
            kind = "a whole number" if name == "max_steps_in_episode" else "a finite number"
            raise ValueError(f"EnvParams.{name} must be {kind} {bound}, got {value!r}.")


class EditWorld(environment.Environment[EnvState, EnvParams]):
    """Base of MaskWorld and ShiftWorld. Holds only static structure: the task's callables,
    the edited paths, shapes, the rank and the observation size. All arrays live in ``EnvParams``.

    Args:
      task: the editing :class:`~maskshift.tasks.Task`.
      rank: ``r``, the rank of each step's change (checked against every edited matrix).
      obs_bins: bins for the pooled row and column summaries in the observation.
      observation: ``"summary"`` (fixed size), ``"gradient"`` (the summary, then per-unit
        gradient factors; see the module docstring) or ``"controller"`` (those, then the factors
        of the gradient controller's direction).
    """

    kind = "edit"
    # EnvParams defaults of this kind of edit (a shift needs a smaller step than a mask: a
    # column-coherent shift adds up over every input of a unit).
    env_defaults: dict = {}

    def __init__(self, task: Task, rank: int = 4, obs_bins: int = 8,
                 observation: str = "summary", minibatch: str = "per_env"):
        super().__init__()
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
        self.unit_features = {"summary": 0, "gradient": 2 * rank + 2,
                              "controller": 3 * rank + 2}[observation]
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
            units = jax.jit(lambda e, batch, p, t: self._unit_block(
                e, self._metrics_and_grads(e, batch, p, t)[1], p))
            per_target = [units(edit, obj.target_sets(params.task.train, t), params, t)
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
    def edited_params(self, state: EnvState, params: EnvParams) -> Params:
        """The full params pytree of the model that ``state`` describes."""
        return self.params_for_edit(state.edit, params)

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

    def _metrics_and_grads(self, edit: tuple, batch: dict, params: EnvParams, target: Array):
        """The metrics on ``batch`` and the gradients of the ``(utility, edit)`` reward terms with
        respect to ``edit``: a tuple, per edited matrix, of ``[2, m, n]``."""
        def terms(e):
            metrics = self.metrics_on(e, batch, params)
            utility, edit_term = self.task.objective.terms(metrics,
                                                           params.task.base_metrics[target])
            return jnp.stack([utility, edit_term]), metrics

        grads, metrics = jax.jacrev(terms, has_aux=True)(edit)
        return metrics, grads

    def _unit_block(self, edit: tuple, grads: tuple, params: EnvParams) -> Array:
        """The flat per-unit features of every edited matrix (see the module docstring)."""
        feats = []
        if self.observation == "controller":  # the controller's direction on this minibatch
            combined = controller_direction(tuple(g[0] for g in grads), tuple(g[1] for g in grads),
                                            self.task.objective.control_utility_weight)
        for k, (e, g, w0) in enumerate(zip(edit, grads, params.task.originals, strict=True)):
            rows, cols = [], []
            terms = [*g, combined[k]] if self.observation == "controller" else list(g)
            for term in terms:  # utility, edit (, the controller's direction)
                u, v = _gradient_factors(term, _probes(term.shape[1], self.rank))
                rows.append(u)
                cols.append(v)
            dev = self.deviation(e, w0)
            a = jnp.abs(dev)
            rows.append(jnp.tanh(jnp.stack([dev.mean(1), a.mean(1)], 1)))
            cols.append(jnp.tanh(jnp.stack([dev.mean(0), a.mean(0)], 1)))
            feats += [jnp.concatenate(rows, 1).ravel(), jnp.concatenate(cols, 1).ravel()]
        return jnp.concatenate(feats)

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
        # "gradient" and "controller" read the reward terms' gradients
        metrics, grads = self._metrics_and_grads(edit, batch, params, target)
        return metrics, self._unit_block(edit, grads, params)

    def _obs(self, edit: tuple, metrics: Array, time, params: EnvParams, units=None) -> Array:
        feats = []
        for e, w0 in zip(edit, params.task.originals, strict=True):
            dev = self.deviation(e, w0)  # [m, n]
            a = jnp.abs(dev)
            feats.append(jnp.stack([dev.mean(), a.mean(), a.max()]))
            feats.append(_pool(a.mean(1), self.obs_bins))
            feats.append(_pool(a.mean(0), self.obs_bins))
        structure = jnp.tanh(jnp.concatenate(feats))
        t = jnp.asarray(time, jnp.float32) / params.max_steps_in_episode
        parts = [structure, jnp.tanh(metrics), t[None]]
        return jnp.concatenate(parts if units is None else [*parts, units])

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
        edit = tuple(self.initial_edit(w0) for w0 in params.task.originals)
        state = EnvState(time=jnp.int32(0), edit=edit, metrics=params.task.base_metrics[target],
                         target=target)
        # The original weights deviate by exactly 0 everywhere, so every structure feature is
        # tanh(0) = 0: the same vector _obs gives, without a pass over the matrices (gymnax
        # computes a reset on every step to auto-reset).
        structure = jnp.zeros(self.summary_size - len(self.task.objective.metric_names) - 1)
        parts = [structure, jnp.tanh(state.metrics), jnp.zeros(1)]
        if self.observation != "summary":
            parts.append(params.reset_units[target])
        return jnp.concatenate(parts), state

    def next_edit(self, edit: tuple, action: Array, params: EnvParams) -> tuple:
        """The edit after one step's ``action`` (no minibatch, reward or observation)."""
        factors = self.unflatten_action(action)
        return tuple(self.update_edit(e, self.direction(u, v), w0, params)
                     for e, (u, v), w0 in zip(edit, factors, params.task.originals, strict=True))

    def step_env(self, key: PRNGKey, state: EnvState, action: Array, params: EnvParams):
        edit = self.next_edit(state.edit, action, params)
        metrics, units = self._measure(key, edit, params, state.target)
        utility, edit_term = self.task.objective.terms(metrics,
                                                       params.task.base_metrics[state.target])
        reward = params.lambda_utility * utility + params.lambda_edit * edit_term
        time = state.time + 1
        new_state = EnvState(time=time, edit=edit, metrics=metrics, target=state.target)
        obs = self._obs(edit, metrics, time, params, units)
        info = {"utility": utility, "edit": edit_term, "metrics": metrics}
        return obs, new_state, reward, jnp.asarray(False), info

    def is_terminated(self, state: EnvState, params: EnvParams) -> Array:
        return jnp.asarray(False)

    def action_space(self, params: EnvParams | None = None) -> spaces.Box:
        """Unbounded factors (the environment squashes them); sampled in [-1, 1]."""
        return spaces.Box(-1.0, 1.0, (self.action_size,), jnp.float32)

    def observation_space(self, params: EnvParams | None = None) -> spaces.Box:
        return spaces.Box(-1.0, 1.0, (self.obs_size,), jnp.float32)


OBSERVATIONS = ("summary", "gradient", "controller")


def controller_direction(g_utility: tuple, g_edit: tuple, utility_weight: float) -> tuple:
    """``g_edit / |g_edit| + w * g_utility / |g_utility|`` per edited matrix, each norm over every
    edited matrix: the greedy gradient controller's step direction (:mod:`maskshift.control`),
    which the controller observation also factors."""
    nu, ne = optax.tree.norm(g_utility), optax.tree.norm(g_edit)
    return tuple(e / jnp.maximum(ne, 1e-30) + utility_weight * u / jnp.maximum(nu, 1e-30)
                 for u, e in zip(g_utility, g_edit, strict=True))
MINIBATCHES = ("per_env", "shared")


@functools.cache
def _probes(n: int, k: int) -> np.ndarray:
    """A fixed ``[n, k]`` Gaussian probe matrix (seeded: the same for every run)."""
    return np.random.default_rng(0).standard_normal((n, k)).astype(np.float32)


def _gradient_factors(g: Array, probes) -> tuple[Array, Array]:
    """``U = G V``, ``V = G^T G P`` (``[m, k]``, ``[n, k]``), each column at unit RMS."""
    v = g.T @ (g @ jnp.asarray(probes))
    u = g @ v

    def unit_rms(x):
        return x / jnp.maximum(jnp.sqrt(jnp.mean(x * x, 0, keepdims=True)), 1e-30)

    return unit_rms(u), unit_rms(v)


def _pool(x: Array, bins: int) -> Array:
    """Mean of ``x [k]`` over ``bins`` contiguous, nearly equal bins (``[bins]``; empty bins 0).

    A product with a constant ``[k, bins]`` averaging matrix: under ``vmap`` a segment sum
    becomes a scatter, which XLA:CPU runs element by element."""
    return x @ jnp.asarray(pool_matrix(x.shape[0], bins))


@functools.cache
def pool_matrix(k: int, bins: int) -> np.ndarray:
    """``[k, bins]``: column ``b`` averages the entries of bin ``b``."""
    ids = (np.arange(k) * bins) // k
    onehot = (ids[:, None] == np.arange(bins)[None, :]).astype(np.float32)
    return onehot / np.maximum(onehot.sum(0, keepdims=True), 1.0)


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
