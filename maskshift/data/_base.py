"""The dataset interface shared by the embedded defaults and the TFDS loaders.

A :class:`Dataset` is plain host data (NumPy arrays) in three fixed splits. Jitted code receives
the arrays as arguments, never as closed-over constants (see DESIGN.md, "Speed").
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

SPLITS = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class Split:
    """One split of a dataset.

    Attributes:
      x: inputs; images ``[N, H, W, C]`` float32 in [0, 1], or token ids ``[N, L]`` int32.
      y: integer labels ``[N]``.
      group: identity-group id per example ``[N]`` (0 = no identity term), text data only.
      x_cf: counterfactual twin of each input ``[N, L]`` (identity terms swapped), text only.
    """

    x: np.ndarray
    y: np.ndarray
    group: np.ndarray | None = None
    x_cf: np.ndarray | None = None

    def __post_init__(self):
        n = len(self.y)
        for name in ("x", "group", "x_cf"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"Split.{name} has {len(value)} rows but y has {n}.")

    def __len__(self) -> int:
        return len(self.y)


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A classification dataset in fixed train/val/test splits.

    Attributes:
      name: registry name, e.g. ``"digits"`` or ``"toxic_templates"``.
      kind: ``"image"`` or ``"text"``.
      num_classes: number of labels.
      class_names: a name per label.
      train, val, test: the splits. Training and rewards use ``train``; model selection uses
        ``val``; reported figures come from ``test`` only.
      group_names: names of identity groups (index 0 is "none"), text data only.
      vocab: token strings by id (0 = padding, 1 = unknown), text data only.
      config: the options the dataset was built with (part of the pretraining cache key).
    """

    name: str
    kind: str
    num_classes: int
    class_names: tuple[str, ...]
    train: Split
    val: Split
    test: Split
    group_names: tuple[str, ...] = ()
    vocab: tuple[str, ...] = ()
    config: tuple[tuple[str, object], ...] = ()

    def split(self, name: str) -> Split:
        if name not in SPLITS:
            raise ValueError(f"Unknown split {name!r}; choose one of {', '.join(SPLITS)}.")
        return getattr(self, name)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    def without_classes(self, classes) -> Dataset:
        """The dataset with every example of ``classes`` removed from each split (the labels keep
        their numbers): what a model that has forgotten ``classes`` is still asked to know."""
        classes = tuple(int(c) for c in np.atleast_1d(classes))
        if not classes:
            return self
        splits = {}
        for name in SPLITS:
            s = self.split(name)
            keep = ~np.isin(s.y, classes)
            if not keep.any():
                raise ValueError(f"Removing classes {list(classes)} leaves the {name} split of "
                                 f"{self.name!r} empty; some class must remain.")
            splits[name] = Split(*(None if a is None else a[keep]
                                   for a in (s.x, s.y, s.group, s.x_cf)))
        return dataclasses.replace(self, **splits)

    def without_train_rows(self, rows) -> Dataset:
        """The dataset with the train rows ``rows`` removed (val and test untouched): what a
        model that has forgotten those examples is still asked to know."""
        keep = np.ones(len(self.train), bool)
        keep[np.asarray(rows, np.int64)] = False
        tr = self.train
        return dataclasses.replace(self, train=Split(*(None if a is None else a[keep]
                                                       for a in (tr.x, tr.y, tr.group, tr.x_cf))))

    def fingerprint(self) -> str:
        """A short hash of every array, so a cache entry is tied to the exact data."""
        h = hashlib.sha256()
        h.update(repr((self.name, self.kind, self.num_classes, self.config)).encode())
        for split in SPLITS:
            s = self.split(split)
            for arr in (s.x, s.y, s.group, s.x_cf):
                if arr is not None:
                    a = np.ascontiguousarray(arr)
                    h.update(str((a.dtype, a.shape)).encode())
                    h.update(a.tobytes())
        return h.hexdigest()[:16]
