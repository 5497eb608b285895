"""Editing tasks: what is edited, on which data, toward which objective.

A :class:`Task` bundles a model (``apply_fn`` and original ``params``), the leaves to edit (paths
into the params pytree), the data splits, and an :class:`Objective` that turns logits on a sampled
*train* minibatch into a utility term, an edit term and a few observable metrics.

Static structure (paths, shapes, callables, batch sizes) stays on the Python objects; every array
an environment needs goes into :class:`TaskArrays`, a pytree carried in ``EnvParams`` (so jitted
code never bakes data in as constants, and a ``vmap`` over tasks is possible).

If the task has a ``prefix_fn``/``suffix_fn`` split (the built-in models do), the frozen network
below the first edited layer is run once over the train data and its activations are cached; a
step then runs only ``suffix_fn``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from maskshift._types import Array, Params, PRNGKey
from maskshift.data import Dataset, Split, check_forget_classes, check_task, load_dataset
from maskshift.metrics import unlearning as U

Path = tuple[str, ...]
ApplyFn = Callable[[Params, Array], Array]


# --------------------------------------------------------------------------- pytree paths
def _path_str(path: Path) -> str:
    return "/".join(path)


def get_leaf(params: Params, path: Path):
    node = params
    for i, k in enumerate(path):
        if not isinstance(node, dict) and not hasattr(node, "keys"):
            raise KeyError(_path_str(path[:i]))
        if k not in node:
            raise KeyError(_path_str(path[: i + 1]))
        node = node[k]
    return node


def set_leaves(params: Params, paths: Sequence[Path], values: Sequence) -> Params:
    """A copy of ``params`` with the leaf at each path replaced; other leaves are shared."""
    def put(node, path, value):
        if not path:
            return value
        new = dict(node)
        new[path[0]] = put(node[path[0]], path[1:], value)
        return new

    for path, value in zip(paths, values, strict=True):
        params = put(params, path, value)
    return params


def leaf_paths(params: Params) -> list[Path]:
    out = []
    for kp, _ in jax.tree_util.tree_flatten_with_path(params)[0]:
        out.append(tuple(getattr(k, "key", str(k)) for k in kp))
    return out


def resolve_paths(params: Params, edit: Sequence[str | Path]) -> tuple[Path, ...]:
    """Turn layer names (``"Dense_0"``) or full paths (``("params", "Dense_0", "kernel")`` or
    ``"params/Dense_0/kernel"``) into full leaf paths, with a clear error for a wrong one."""
    if not edit:
        raise ValueError("Choose at least one leaf to edit.")
    known = leaf_paths(params)
    out = []
    for e in edit:
        path = tuple(e.split("/")) if isinstance(e, str) else tuple(e)
        candidates = [p for p in known if p == path]
        if not candidates and len(path) == 1:  # a layer name: its matrix-shaped weight
            candidates = [p for p in known if len(p) >= 2 and p[-2] == path[0]
                          and np.ndim(get_leaf(params, p)) >= 2]
        if len(candidates) != 1:
            matrices = sorted({_path_str(p) for p in known if np.ndim(get_leaf(params, p)) >= 2})
            raise ValueError(f"Unknown layer or leaf {_path_str(path)!r} to edit. Editable leaves "
                             f"of this model: {', '.join(matrices)}.")
        p = candidates[0]
        if np.ndim(get_leaf(params, p)) < 2:
            raise ValueError(f"Leaf {_path_str(p)!r} has shape {np.shape(get_leaf(params, p))}; "
                             "only matrices and conv kernels (2-D or more) can be edited.")
        out.append(p)
    if len(set(out)) != len(out):
        raise ValueError(f"A leaf is listed twice in {list(edit)}.")
    return tuple(out)


def matrix_shape(shape: Sequence[int]) -> tuple[int, int]:
    """A leaf viewed as a matrix: a conv kernel ``[kh, kw, cin, cout]`` is ``[kh*kw*cin, cout]``."""
    return int(np.prod(shape[:-1])), int(shape[-1])


# --------------------------------------------------------------------------- objectives
class Objective:
    """How a task measures a model on a minibatch. Subclasses are frozen dataclasses (static).

    An objective has one or more **targets** (an unlearning pool: one forget set per target; the
    bias objective: one). Every array method takes the target as data (an int32 index), so one
    compiled program serves every target and a ``vmap`` over environments may hold a different
    target in each.
    """

    name: str
    metric_names: tuple[str, ...]
    # The gradient controller's step direction is normalised grad(edit term) plus this weight times
    # normalised grad(utility term) (maskshift.control.gradient_act).
    control_utility_weight: float = 1.0
    # EnvParams defaults that suit this objective (reward coefficients); overrides win.
    env_defaults: tuple[tuple[str, float], ...] = ()

    def arrays(self, encode: Callable[[np.ndarray], np.ndarray], split: Split) -> dict:
        """The arrays an environment samples from: ``encode`` maps inputs to the cached
        activations below the edited layers."""
        raise NotImplementedError

    @property
    def num_targets(self) -> int:
        return 1

    def sample(self, key: PRNGKey, arrays: dict, target: Array) -> dict:
        """A fresh minibatch of ``arrays`` for ``target``."""
        raise NotImplementedError

    def whole(self, arrays: dict, target: Array) -> dict:
        """The whole split as one batch for ``measure`` (``target`` may be traced)."""
        return arrays

    def sample_shared(self, key: PRNGKey, arrays: dict) -> dict:
        """One minibatch for every environment of a step, whatever its target (the shared
        draw); :meth:`for_target` adapts it to one environment's target. With one target it is
        :meth:`sample`'s minibatch."""
        return self.sample(key, arrays, 0)

    def for_target(self, batch: dict, target: Array) -> dict:
        """A shared minibatch as ``target`` reads it (cheap: weights, never a gather)."""
        return batch

    def target_sets(self, arrays: dict, target: int) -> dict:
        """The whole split for a concrete ``target``, in ``sample``'s layout (host side: the
        original's metrics are computed on it, exactly as on a minibatch)."""
        return arrays

    def measure(self, logits_fn: Callable[[Array], Array], batch: dict) -> Array:
        """Metrics ``[len(metric_names)]`` of a model (given as ``h -> logits``) on ``batch``."""
        raise NotImplementedError

    def terms(self, metrics: Array, base: Array) -> tuple[Array, Array]:
        """``(utility, edit)`` terms of the reward from metrics and the original's metrics."""
        raise NotImplementedError


def _ce(logits, y):
    """Cross-entropy of each row, ``[..., N, C], [N] -> [..., N]``."""
    return -jnp.take_along_axis(jax.nn.log_softmax(logits, -1), y[..., None], -1)[..., 0]


def _draw(key, n_avail: int, batch: int):
    return jax.random.randint(key, (batch,), 0, n_avail)


def _logits_of_parts(logits_fn, *hs):
    """``logits_fn`` of each of ``hs``, computed in one pass over their concatenation.

    One ``[sum of rows, m] @ [m, n]`` product instead of one per part: under ``vmap`` on XLA:CPU
    the unlearning step's forward pass (its largest cost) took 127 instead of 197 µs per
    environment; the logits are bit-identical."""
    sizes = [h.shape[0] for h in hs]
    logits = logits_fn(jnp.concatenate(hs, axis=0))
    return jnp.split(logits, np.cumsum(sizes)[:-1].tolist(), axis=0)


@dataclasses.dataclass(frozen=True)
class UnlearnObjective(Objective):
    """Forget ``forget_classes`` while keeping the rest.

    Metrics (on a fresh train minibatch of ``batch_size`` retain and ``batch_size`` forget
    examples): ``retain_ce`` (mean cross-entropy on retain examples), ``forget_ce`` (mean
    cross-entropy on forget examples, each capped at ``ce_cap``), ``retain_acc``, ``forget_acc``.
    Reward terms, relative to the original model's values on the whole train split:
    ``utility = retain_ce0 - retain_ce`` and ``edit = forget_ce - forget_ce0``.

    Cross-entropy rather than accuracy or probability: a confident model's probabilities sit on a
    plateau, so small edits would earn no signal at all; cross-entropy moves from the first step.
    The cap (default 5, a true-class probability of 0.7%) stops the agent from chasing ever
    larger losses on examples it has already forgotten.

    ``pool``: a distribution of unlearning tasks (amortized training), one forget set per target;
    each episode draws one. Empty (default): one target, ``forget_classes``. The train arrays are
    laid out once for every target: all activations ``h [N, ...]`` and labels, and per target the
    row indices of its retain and forget examples (``[P, N]``, padded) with their counts, so a
    per-environment draw is two gathers, whatever the target.
    """

    forget_classes: tuple[int, ...] = (7,)
    batch_size: int = 64
    ce_cap: float = 5.0
    pool: tuple[tuple[int, ...], ...] = ()
    name: str = "unlearn"
    metric_names: tuple[str, ...] = ("retain_ce", "forget_ce", "retain_acc", "forget_acc")
    # retain cross-entropy moves ~40x less than the forget one: weigh it up to keep utility
    env_defaults: tuple[tuple[str, float], ...] = (("lambda_utility", 10.0), ("lambda_edit", 1.0))
    # the gradient controller's weight on the normalised utility gradient (maskshift.control)
    control_utility_weight: float = 1.0

    @property
    def targets(self) -> tuple[tuple[int, ...], ...]:
        """The forget set of each target: ``pool``, or ``(forget_classes,)``."""
        return self.pool or (tuple(self.forget_classes),)

    @property
    def num_targets(self) -> int:
        return len(self.targets)

    def arrays(self, encode, split):
        member = np.stack([np.isin(split.y, t) for t in self.targets])  # [P, N]
        for t, f in zip(self.targets, member, strict=True):
            if f.all() or not f.any():
                raise ValueError(f"Forget classes {list(t)} leave an empty forget or retain set "
                                 "in the train split.")
        return {"h": encode(split.x), "y": split.y, "forget": member,
                "retain_idx": _row_indices(~member), "forget_idx": _row_indices(member),
                "n_retain": (~member).sum(1).astype(np.int32),
                "n_forget": member.sum(1).astype(np.int32)}

    def sample(self, key, arrays, target):
        kr, kf = jax.random.split(key)
        ir = arrays["retain_idx"][target, _draw(kr, arrays["n_retain"][target], self.batch_size)]
        i_f = arrays["forget_idx"][target, _draw(kf, arrays["n_forget"][target],
                                                 self.batch_size)]
        return {"h_retain": arrays["h"][ir], "y_retain": arrays["y"][ir],
                "h_forget": arrays["h"][i_f], "y_forget": arrays["y"][i_f]}

    def whole(self, arrays, target):
        return {"h": arrays["h"], "y": arrays["y"], "forget": arrays["forget"][target]}

    def sample_shared(self, key, arrays):
        """One target: :meth:`sample`. A pool of ``P``: class-stratified, ``batch_size // P``
        forget rows of each target and ``batch_size`` rows of the whole split; each environment
        weighs its own target's forget block as forget rows and the whole-split rows not in its
        forget set as retain rows (:meth:`for_target`), so every environment runs the same rows
        (the same number as :meth:`sample`'s) through its own weights."""
        num = self.num_targets
        if num == 1:
            return self.sample(key, arrays, 0)
        per = max(1, self.batch_size // num)
        kr, kf = jax.random.split(key)
        draws = jax.random.randint(kf, (num, per), 0, arrays["n_forget"][:, None])
        i_f = jnp.take_along_axis(arrays["forget_idx"], draws, 1).reshape(-1)  # [P * per]
        ir = _draw(kr, arrays["y"].shape[0], self.batch_size)
        return {"h_retain": arrays["h"][ir], "y_retain": arrays["y"][ir],
                "h_forget": arrays["h"][i_f], "y_forget": arrays["y"][i_f],
                "block": jnp.repeat(jnp.arange(num), per), "member": arrays["forget"][:, ir]}

    def for_target(self, batch, target):
        if "block" not in batch:
            return batch
        return {"h_retain": batch["h_retain"], "y_retain": batch["y_retain"],
                "h_forget": batch["h_forget"], "y_forget": batch["y_forget"],
                "w_retain": (~batch["member"][target]).astype(jnp.float32),
                "w_forget": (batch["block"] == target).astype(jnp.float32)}

    def target_sets(self, arrays, target):
        f = np.asarray(arrays["forget"][target])
        h, y = arrays["h"], arrays["y"]
        return {"h_retain": h[~f], "y_retain": y[~f], "h_forget": h[f], "y_forget": y[f]}

    def measure(self, logits_fn, batch):
        if "forget" in batch:  # the whole split, the target's forget rows marked
            logits, y = logits_fn(batch["h"]), batch["y"]
            f = batch["forget"].astype(jnp.float32)
            ce = _ce(logits, y)
            return jnp.stack([_weighted_mean(ce, 1.0 - f),
                              _weighted_mean(jnp.minimum(ce, self.ce_cap), f),
                              U.accuracy(logits, y, 1.0 - f), U.accuracy(logits, y, f)])
        lr, lf = _logits_of_parts(logits_fn, batch["h_retain"], batch["h_forget"])
        if "w_retain" in batch:  # a shared minibatch, weighted for one target
            wr, wf, yr, yf = batch["w_retain"], batch["w_forget"], batch["y_retain"], \
                batch["y_forget"]
            return jnp.stack([_weighted_mean(_ce(lr, yr), wr),
                              _weighted_mean(jnp.minimum(_ce(lf, yf), self.ce_cap), wf),
                              U.accuracy(lr, yr, wr), U.accuracy(lf, yf, wf)])
        return jnp.stack([_ce(lr, batch["y_retain"]).mean(),
                          jnp.minimum(_ce(lf, batch["y_forget"]), self.ce_cap).mean(),
                          U.accuracy(lr, batch["y_retain"]), U.accuracy(lf, batch["y_forget"])])

    def terms(self, metrics, base):
        return base[0] - metrics[0], metrics[1] - base[1]


def _row_indices(mask: np.ndarray) -> np.ndarray:
    """``[P, N]`` bool -> ``[P, N]`` int32: row ``p`` lists the indices where ``mask[p]`` is
    true, then zeros (never drawn: draws stop at the count)."""
    out = np.zeros(mask.shape, np.int32)
    for p, m in enumerate(mask):
        idx = np.flatnonzero(m)
        out[p, : idx.size] = idx
    return out


def _weighted_mean(x, w):
    return (x * w).sum() / jnp.maximum(w.sum(), 1e-12)


@dataclasses.dataclass(frozen=True)
class BiasObjective(Objective):
    """Remove the classifier's dependence on identity terms while keeping its accuracy.

    Metrics (on a fresh train minibatch and its counterfactual twins): ``acc_p`` (mean probability
    of the label), ``cf_gap`` (mean |p(positive | x) - p(positive | twin)|, a smooth flip rate),
    ``accuracy`` and ``flip_rate``. The edit term needs no labels, so annotator bias in the train
    labels cannot reward keeping the bias.
    Reward terms: ``utility = acc_p - acc_p0`` and ``edit = cf_gap0 - cf_gap``.
    """

    batch_size: int = 128
    name: str = "bias"
    metric_names: tuple[str, ...] = ("acc_p", "cf_gap", "accuracy", "flip_rate")
    env_defaults: tuple[tuple[str, float], ...] = (("lambda_utility", 2.0), ("lambda_edit", 4.0))
    # the train labels carry the annotator bias: a full-weight label gradient pulls the edit back
    # toward the shortcut (measured: worst-group accuracy stayed 0.000 at 1.0)
    control_utility_weight: float = 0.3

    def arrays(self, encode, split):
        if split.x_cf is None:
            raise ValueError("The bias objective needs counterfactual twins (Split.x_cf) in the "
                             "data.")
        return {"h": encode(split.x), "h_cf": encode(split.x_cf), "y": split.y}

    def sample(self, key, arrays, target):
        del target  # one target
        i = _draw(key, arrays["y"].shape[0], self.batch_size)
        return {"h": arrays["h"][i], "h_cf": arrays["h_cf"][i], "y": arrays["y"][i]}

    def measure(self, logits_fn, batch):
        lg, lc = _logits_of_parts(logits_fn, batch["h"], batch["h_cf"])
        p, pc = jax.nn.softmax(lg, -1)[..., 1], jax.nn.softmax(lc, -1)[..., 1]
        flips = (jnp.argmax(lg, -1) != jnp.argmax(lc, -1)).astype(jnp.float32)
        return jnp.stack([U.true_class_probability(lg, batch["y"]), jnp.abs(p - pc).mean(),
                          U.accuracy(lg, batch["y"]), flips.mean()])

    def terms(self, metrics, base):
        return metrics[0] - base[0], base[1] - metrics[1]


# --------------------------------------------------------------------------- task
@struct.dataclass
class TaskArrays:
    """Every array an environment reads, as one pytree (it lives in ``EnvParams``).

    Attributes:
      params: the original params pytree (edited leaves included; never copied per environment).
      originals: the original edited leaves viewed as matrices, one ``[m, n]`` per edited leaf.
      train: the objective's train-split arrays (cached activations ``h``, labels, ...).
      base_metrics: the original model's objective metrics on the whole train split, one row
        per target ``[P, num_metrics]``.
    """

    params: Params
    originals: tuple
    train: dict
    base_metrics: Array


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
    """An editing problem. Build one with :func:`unlearning_task`, :func:`bias_task` or
    :func:`task_from_model`.

    Attributes:
      name: a label for logs and results.
      apply_fn: ``(params, x) -> logits`` for the whole model.
      params: the original params.
      edit_paths: full paths of the edited leaves.
      objective: the :class:`Objective`.
      dataset: the data (train for rewards, val for model selection, test for reporting).
      model: the Flax module (set by the built-in tasks; optional for your own).
      prefix_fn, suffix_fn: ``(params, x) -> h`` and ``(params, h) -> logits`` with
        ``suffix_fn(p, prefix_fn(p, x)) == apply_fn(p, x)``; ``prefix_fn`` must not read the edited
        leaves. Without a split, ``prefix_fn`` is the identity and every step runs ``apply_fn``.
    """

    name: str
    apply_fn: ApplyFn
    params: Params
    edit_paths: tuple[Path, ...]
    objective: Objective
    dataset: Dataset
    prefix_fn: ApplyFn | None = None
    suffix_fn: ApplyFn | None = None
    model: object | None = None  # the Flax module, where known (retraining baselines need it)

    def __post_init__(self):
        for path, leaf in zip(leaf_paths(self.params), jax.tree.leaves(self.params), strict=True):
            if not np.all(np.isfinite(np.asarray(leaf))):
                raise ValueError(f"The original weights are not finite at {_path_str(path)!r}; "
                                 "edit a model whose params are all finite.")
        if (self.prefix_fn is None) != (self.suffix_fn is None):
            raise ValueError("Give both prefix_fn and suffix_fn, or neither.")

    @property
    def leaf_shapes(self) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(np.shape(get_leaf(self.params, p))) for p in self.edit_paths)

    @property
    def matrix_shapes(self) -> tuple[tuple[int, int], ...]:
        return tuple(matrix_shape(s) for s in self.leaf_shapes)

    def prefix(self, params, x):
        return x if self.prefix_fn is None else self.prefix_fn(params, x)

    def suffix(self, params, h):
        return self.apply_fn(params, h) if self.suffix_fn is None else self.suffix_fn(params, h)

    def split_arrays(self, split: str = "train") -> dict:
        """The objective's arrays for ``split``, with activations below the edit cached."""
        prefix = jax.jit(self.prefix)
        return self.objective.arrays(lambda x: np.asarray(prefix(self.params, jnp.asarray(x))),
                                     self.dataset.split(split))

    def report(self, params: Params, split: str = "test", with_mia: bool = True,
               target: int = 0) -> dict:
        """The task's figures for ``params`` on ``split``: the unlearning or bias report of
        :mod:`maskshift.metrics`, the same code for every method (``with_mia=False``: no
        unlearning MIA, which needs passes over the whole train and test splits). ``target``:
        which of an unlearning pool's forget sets the report is about."""
        from maskshift.metrics import bias_report, unlearning_report

        if isinstance(self.objective, UnlearnObjective):
            return unlearning_report(self.apply_fn, params, self.dataset,
                                     self.objective.targets[target], split, with_mia)
        return bias_report(self.apply_fn, params, self.dataset, split)

    def arrays(self) -> TaskArrays:
        """Build the :class:`TaskArrays` (runs the frozen prefix once over the train split)."""
        train = jax.tree.map(jnp.asarray, self.split_arrays("train"))
        params = jax.tree.map(jnp.asarray, self.params)
        originals = tuple(jnp.reshape(get_leaf(params, p), matrix_shape(s))
                          for p, s in zip(self.edit_paths, self.leaf_shapes, strict=True))
        # The original's metrics on the whole train split, per target: the whole set is one
        # "batch" in the minibatches' layout.
        measure = jax.jit(self.objective.measure, static_argnums=0)
        base = jnp.stack([measure(lambda h: self.suffix(params, h),
                                  self.objective.target_sets(train, t))
                          for t in range(self.objective.num_targets)])
        return TaskArrays(params=params, originals=originals, train=train, base_metrics=base)


# --------------------------------------------------------------------------- builders
def pool_task(task: Task, classes: Sequence[int]) -> Task:
    """``task`` (an unlearning task) as a distribution of tasks: each episode forgets one of
    ``classes`` (at least two; a single class is the ordinary task)."""
    if not isinstance(task.objective, UnlearnObjective):
        raise ValueError(f"A pool of forget classes needs an unlearning task, not "
                         f"{task.objective.name!r}.")
    classes = check_forget_classes(np.atleast_1d(classes), task.dataset.num_classes)
    if len(set(classes)) < 2:
        raise ValueError(f"--amortized trains over a pool of forget classes and got "
                         f"{list(classes)}; give at least two (--forget-class 0 1 2 3 4), or "
                         "drop --amortized to forget one class.")
    obj = dataclasses.replace(task.objective, forget_classes=tuple(classes),
                              pool=tuple((c,) for c in classes))
    name = task.name.split("-forget")[0] + f"-pool{'-'.join(map(str, classes))}"
    return dataclasses.replace(task, name=name, objective=obj)


def _staged_fns(model, params, edit_paths):
    stages = {p[1] if p[0] == "params" else p[0] for p in edit_paths}
    unknown = [s for s in stages if s not in model.STAGE_OF]
    if unknown:
        raise ValueError(f"Layer {unknown[0]!r} is not a stage of {type(model).__name__}.")
    k = min(model.STAGE_OF[s] for s in stages)
    return (lambda p, x: model.apply(p, x, stop=k)), (lambda p, h: model.apply(p, h, start=k))


def unlearning_task(forget_classes: int | Sequence[int] = 7, *, dataset: str | Dataset = "digits",
                    edit: Sequence[str | Path] = ("Dense_0",), seed: int = 0,
                    batch_size: int = 64, amortized: bool = False) -> Task:
    """Class unlearning on the built-in CNN.

    By default the hidden dense layer ``Dense_0`` (``[512, 64]``) is edited, not the output layer:
    on the output layer, zeroing one column is a trivial edit that teaches nothing about editing
    internal representations. ``amortized``: each of ``forget_classes`` is its own target, one
    drawn per episode (:func:`pool_task`); otherwise they are forgotten together.
    """
    from maskshift.models import pretrained

    data = load_dataset(dataset) if isinstance(dataset, str) else dataset
    classes = check_forget_classes(np.atleast_1d(forget_classes), data.num_classes)
    target = pretrained(data, seed=seed)
    paths = resolve_paths(target.params, edit)
    prefix, suffix = _staged_fns(target.model, target.params, paths)
    task = Task(name=f"unlearn-{data.name}-forget{'-'.join(map(str, classes))}",
                apply_fn=target.model.apply, params=target.params, edit_paths=paths,
                objective=UnlearnObjective(forget_classes=classes, batch_size=batch_size),
                dataset=data, prefix_fn=prefix, suffix_fn=suffix, model=target.model)
    return pool_task(task, classes) if amortized else task


def bias_task(*, dataset: str | Dataset = "toxic_templates",
              edit: Sequence[str | Path] = ("Dense_0",), seed: int = 0,
              batch_size: int = 128) -> Task:
    """Bias mitigation on the built-in text classifier.

    By default the hidden layer ``Dense_0`` (``[32, 64]``, right after the embedding bag) is edited:
    it is where identity-term directions in the pooled embedding are mapped into the features the
    output layer reads.
    """
    from maskshift.models import pretrained

    data = load_dataset(dataset) if isinstance(dataset, str) else dataset
    target = pretrained(data, seed=seed)
    paths = resolve_paths(target.params, edit)
    prefix, suffix = _staged_fns(target.model, target.params, paths)
    return Task(name=f"bias-{data.name}", apply_fn=target.model.apply, params=target.params,
                edit_paths=paths, objective=BiasObjective(batch_size=batch_size), dataset=data,
                prefix_fn=prefix, suffix_fn=suffix, model=target.model)


def task_from_model(apply_fn: ApplyFn, params: Params, edit: Sequence[str | Path], *,
                    train: tuple, test: tuple, val: tuple | None = None, objective: str = "unlearn",
                    forget_classes: int | Sequence[int] = 0, num_classes: int | None = None,
                    prefix_fn: ApplyFn | None = None, suffix_fn: ApplyFn | None = None,
                    batch_size: int = 64, name: str = "custom") -> Task:
    """A task from your own Flax model and arrays.

    Args:
      apply_fn: ``(params, x) -> logits``, e.g. ``model.apply``.
      params: your trained params.
      edit: layer names or leaf paths to edit.
      train, val, test: ``(x, y)`` tuples, or ``(x, y, group, x_counterfactual)`` for the bias
        objective. ``val`` defaults to ``train``: model selection must never see ``test``.
      objective: ``"unlearn"`` or ``"bias"``.
      forget_classes: classes to forget (unlearn).
      prefix_fn, suffix_fn: an optional split of ``apply_fn`` below the first edited layer.
    """
    def split(t):
        t = tuple(np.asarray(a) for a in t)
        return Split(*t)

    tr, te = split(train), split(test)
    va = split(val) if val is not None else tr
    n_classes = num_classes or int(max(tr.y.max(), te.y.max())) + 1
    data = Dataset(name=name, kind="custom", num_classes=n_classes,
                   class_names=tuple(map(str, range(n_classes))), train=tr, val=va, test=te)
    paths = resolve_paths(params, edit)
    if objective == "unlearn":
        obj = UnlearnObjective(check_forget_classes(np.atleast_1d(forget_classes), n_classes),
                               batch_size=batch_size)
    elif objective == "bias":
        obj = BiasObjective(batch_size=batch_size)
    else:
        raise ValueError(f"Unknown objective {objective!r}; choose 'unlearn' or 'bias'.")
    return Task(name=name, apply_fn=apply_fn, params=params, edit_paths=paths, objective=obj,
                dataset=data, prefix_fn=prefix_fn, suffix_fn=suffix_fn)


TASKS = {"unlearn": unlearning_task, "bias": bias_task}


def make_task(name: str, **kwargs) -> Task:
    return TASKS[check_task(name)](**kwargs)
