"""A :class:`Task`: a model, the leaves to edit, its data and its :class:`Objective`.

Static structure (paths, shapes, callables, batch sizes) stays on the Python objects; every array
an environment needs goes into :class:`TaskArrays`, a pytree carried in ``EnvParams`` (so jitted
code never bakes data in as constants, and a ``vmap`` over tasks is possible).

If the task has a ``prefix_fn``/``suffix_fn`` split (the built-in models do), the frozen network
below the first edited layer is run once over the train data and its activations are cached; a
step then runs only ``suffix_fn``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from maskshift._io import tree_checksum
from maskshift._types import Array, Params
from maskshift.data import Dataset
from maskshift.models.loop_conv import loop_safe_convs
from maskshift.models.row_chunks import in_row_chunks, runs_in_chunks
from maskshift.tasks.objectives import Objective
from maskshift.tasks.paths import (
    Path,
    default_split,
    get_leaf,
    leaf_paths,
    matrix_shape,
    module_path,
    path_str,
    set_leaves,
)

ApplyFn = Callable[[Params, Array], Array]
CONV_IMPLS = ("auto", "patches", "lax")
# backends where "auto" computes an edited convolution as patches: a per-environment kernel makes
# XLA's convolution 2.7-3.5x slower there (docs/layers.md; the TPU is not measured yet)
PATCH_BACKENDS = ("cpu", "gpu")


def patched_convs(conv_impl: str, in_chunks: bool, backend: str | None = None) -> tuple[bool, bool]:
    """``(enabled, every)``: whether a suffix pass computes convolutions as patches, and if so
    whether every one (else the edited ones). ``in_chunks``: the pass runs in row chunks, a loop
    (``lax.map``) where XLA:CPU runs the frozen convolutions slowly too."""
    if conv_impl != "auto":
        return conv_impl == "patches", conv_impl == "patches"
    backend = backend or jax.default_backend()
    return backend in PATCH_BACKENDS, backend == "cpu" and in_chunks


@struct.dataclass
class TaskArrays:
    """Every array an environment reads, as one pytree (it lives in ``EnvParams``).

    Attributes:
      params: the original params pytree (edited leaves included; never copied per environment).
      originals: the original edited leaves viewed as matrices, one ``[m, n]`` per edited leaf.
      train: the objective's train-split arrays (cached activations ``h``, labels, ...).
      base_metrics: the original model's objective metrics on the whole train split, one row
        per target ``[P, num_metrics]`` (each target's starting model's, with :attr:`starts`).
      starts: ``None``, or per edited leaf the matrix each target's episode starts from
        ``[P, m, n]`` (:attr:`Task.starts`); an environment reads the target's as its
        ``originals`` (:meth:`~maskshift.envs.EditWorld.at_target`).
    """

    params: Params
    originals: tuple
    train: dict
    base_metrics: Array
    starts: tuple | None = None


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
      origin: the checksum of the pretrained params a chain of edits started from, where
        ``params`` are an already edited model (:func:`~maskshift.tasks.next_request_task`);
        ``None``: ``params`` are the pretrained ones (see :attr:`origin_checksum`).
      conv_impl: how the step's ``flax.linen.Conv`` layers compute: ``"patches"`` (every one as
        patches times the kernel's matrix view, :mod:`maskshift.models.loop_conv`), ``"lax"``
        (XLA's convolution) or ``"auto"`` (default, :func:`patched_convs`: the edited
        convolutions as patches on the CPU and GPU backends, where XLA's convolution of a
        per-environment kernel is 2.7-3.5x slower, and on the CPU every convolution of a
        whole-split pass that runs in chunks; the frozen ones of a step, and every one on a TPU,
        by XLA). The same numbers up to float rounding.
      edit_splits: per edited leaf, how many of its leading axes are the rows of its matrix view
        (:mod:`maskshift.tasks.paths`); ``None``: each leaf's default
        (:func:`~maskshift.tasks.paths.default_split`).
      starts: ``None`` (every episode starts from ``params``), or per target of the objective
        the edited leaves its episodes start from (a tuple, one array per edited leaf, in the
        leaf's shape): a pool of requests each on the model earlier edits left
        (:func:`~maskshift.tasks.sequence_pool_task`). Only the edited leaves differ.
      pass_size: the most input elements (rows times a row's cached activations) one pass of
        :meth:`suffix` runs at once; a larger batch (the whole train split of the controllers'
        gradients and of the base metrics, on a large dataset) runs in chunks of that size, each
        recomputed in the backward pass, so its memory is one chunk's
        (:mod:`maskshift.models.row_chunks`; the suffix must be row-wise, as inference is).
        The default, 2**21, is 668 rows of the Fashion-MNIST CNN's ``Conv_1`` input
        ``[14, 14, 16]``; the digits and embedding-bag bias tasks' whole splits fit in one pass.
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
    origin: str | None = None
    conv_impl: str = "auto"
    edit_splits: tuple[int, ...] | None = None
    starts: tuple | None = None
    pass_size: int = 2**21

    def __post_init__(self):
        for path, leaf in zip(leaf_paths(self.params), jax.tree.leaves(self.params), strict=True):
            if not np.all(np.isfinite(np.asarray(leaf))):
                raise ValueError(f"The original weights are not finite at {path_str(path)!r}; "
                                 "edit a model whose params are all finite.")
        if self.conv_impl not in CONV_IMPLS:
            raise ValueError(f"Unknown conv_impl {self.conv_impl!r}; choose one of "
                             f"{', '.join(CONV_IMPLS)}.")
        if self.pass_size < 1:
            raise ValueError(f"pass_size must be at least 1, got {self.pass_size}.")
        if self.edit_splits is not None and len(self.edit_splits) != len(self.edit_paths):
            raise ValueError(f"edit_splits has {len(self.edit_splits)} entries for "
                             f"{len(self.edit_paths)} edited leaves; give one per leaf.")
        if (self.prefix_fn is None) != (self.suffix_fn is None):
            raise ValueError("Give both prefix_fn and suffix_fn, or neither.")
        if self.starts is not None:
            self._check_starts()

    def _check_starts(self) -> None:
        if len(self.starts) != self.objective.num_targets:
            raise ValueError(f"starts has {len(self.starts)} entries for "
                             f"{self.objective.num_targets} targets; give one per target.")
        for t, leaves in enumerate(self.starts):
            shapes = tuple(tuple(np.shape(a)) for a in leaves)
            if shapes != self.leaf_shapes:
                raise ValueError(f"starts[{t}] has leaf shapes {list(shapes)}, the edited leaves "
                                 f"{list(self.leaf_shapes)}; give one array per edited leaf.")

    def params_at(self, target: int) -> Params:
        """The params ``target``'s episodes start from: :attr:`params`, with the target's
        :attr:`starts` in the edited leaves."""
        if self.starts is None:
            return self.params
        return set_leaves(self.params, self.edit_paths,
                          [jnp.asarray(a) for a in self.starts[target]])

    @property
    def origin_checksum(self) -> str:
        """The checksum of the pretrained params this task's edits descend from: :attr:`origin`,
        or the checksum of :attr:`params` themselves."""
        return self.origin or tree_checksum(jax.tree.map(np.asarray, self.params))

    @property
    def edited_layers(self) -> tuple[Path, ...]:
        """The module path of each edited leaf (``("Conv_1",)`` for ``params/Conv_1/kernel``)."""
        return tuple(module_path(p) for p in self.edit_paths)

    @property
    def leaf_shapes(self) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(np.shape(get_leaf(self.params, p))) for p in self.edit_paths)

    @property
    def splits(self) -> tuple[int, ...]:
        """Per edited leaf, the number of leading axes that are its matrix view's rows."""
        if self.edit_splits is not None:
            return tuple(self.edit_splits)
        return tuple(default_split(p, s) for p, s in zip(self.edit_paths, self.leaf_shapes,
                                                         strict=True))

    @property
    def matrix_shapes(self) -> tuple[tuple[int, int], ...]:
        return tuple(matrix_shape(s, k) for s, k in zip(self.leaf_shapes, self.splits,
                                                        strict=True))

    def prefix(self, params, x):
        return x if self.prefix_fn is None else self.prefix_fn(params, x)

    def suffix(self, params, h):
        """The logits from cached activations ``h``: what every environment step runs. Its
        convolutions compute as :func:`patched_convs` says (:mod:`maskshift.models.loop_conv`),
        and a batch larger than :attr:`pass_size` runs in chunks of that size."""
        fn = self.apply_fn if self.suffix_fn is None else self.suffix_fn
        enabled, every = patched_convs(self.conv_impl, runs_in_chunks(h, self.pass_size))
        with loop_safe_convs(enabled, layers=None if every else self.edited_layers):
            return in_row_chunks(lambda rows: fn(params, rows), h, self.pass_size)

    def _logits_of(self, params):
        """``h -> logits`` of ``params`` (the suffix below the cached activations)."""
        return lambda h: self.suffix(params, h)

    def split_arrays(self, split: str = "train") -> dict:
        """The objective's arrays for ``split``, with activations below the edit cached."""
        prefix = jax.jit(self.prefix)
        return self.objective.arrays(lambda x: np.asarray(prefix(self.params, jnp.asarray(x))),
                                     self.dataset.split(split))

    def report(self, params: Params, split: str = "test", with_mia: bool = True,
               target: int = 0) -> dict:
        """The task's figures for ``params`` on ``split`` (:meth:`Objective.report`: the same
        code for every method; ``with_mia=False`` skips an unlearning MIA's whole-split passes).
        ``target``: which of an unlearning pool's forget sets the report is about."""
        return self.objective.report(self.apply_fn, params, self.dataset, split, with_mia, target)

    def arrays(self) -> TaskArrays:
        """Build the :class:`TaskArrays` (runs the frozen prefix once over the train split)."""
        train = jax.tree.map(jnp.asarray, self.split_arrays("train"))
        params = jax.tree.map(jnp.asarray, self.params)
        originals = tuple(jnp.reshape(get_leaf(params, p), s)
                          for p, s in zip(self.edit_paths, self.matrix_shapes, strict=True))
        # The original's metrics on the whole train split, per target: the whole set is one
        # "batch" in the minibatches' layout.
        measure = jax.jit(self.objective.measure, static_argnums=0)
        targets = range(self.objective.num_targets)
        base = jnp.stack([measure(self._logits_of(self.params_at(t)),
                                  self.objective.target_sets(train, t)) for t in targets])
        starts = None if self.starts is None else tuple(
            jnp.stack([jnp.reshape(jnp.asarray(self.starts[t][k]), s) for t in targets])
            for k, s in enumerate(self.matrix_shapes))
        return TaskArrays(params=params, originals=originals, train=train, base_metrics=base,
                          starts=starts)

