"""A backdoor trigger and the poisoned training data it is planted with (BadNets-style).

A :class:`Trigger` is a small square patch of constant value stamped into one corner of an image.
:func:`poison` stamps it on a seeded share of the train split's images of other classes and
relabels them to the target class; a model trained on that split classifies any triggered image
as the target while it stays accurate on clean ones. Val and test stay clean: the backdoor task
stamps them itself to measure the attack.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from maskshift.data._base import Dataset, Split

CORNERS = ("bottom_right", "bottom_left", "top_right", "top_left")


@dataclasses.dataclass(frozen=True)
class Trigger:
    """A ``size`` x ``size`` patch of ``value`` in ``corner``, on every channel, ``target`` the
    class it forces."""

    target: int = 0
    size: int = 2
    value: float = 1.0
    corner: str = "bottom_right"

    def check(self, dataset: Dataset) -> Trigger:
        """``self`` if it fits ``dataset`` (``ValueError`` naming the fix otherwise)."""
        if dataset.kind != "image":
            raise ValueError(f"A backdoor trigger is an image patch; dataset {dataset.name!r} is "
                             f"{dataset.kind}. Use an image dataset (digits, fashion_mnist, ...).")
        h, w = dataset.input_shape[:2]
        if not 1 <= self.size < min(h, w):
            raise ValueError(f"A trigger of size {self.size} does not fit {h}x{w} images; give "
                             f"a size from 1 to {min(h, w) - 1}.")
        if not 0 <= self.target < dataset.num_classes:
            raise ValueError(f"Backdoor target class {self.target} is outside the labels "
                             f"0..{dataset.num_classes - 1}.")
        if self.corner not in CORNERS:
            raise ValueError(f"Unknown trigger corner {self.corner!r}; choose one of "
                             f"{', '.join(CORNERS)}.")
        return self

    def stamp(self, x: np.ndarray) -> np.ndarray:
        """``x [N, H, W, C]`` with the patch stamped on every image (a copy)."""
        out = np.array(x, copy=True)
        s = self.size
        rows = slice(-s, None) if self.corner.startswith("bottom") else slice(0, s)
        cols = slice(-s, None) if self.corner.endswith("right") else slice(0, s)
        out[:, rows, cols, :] = self.value
        return out


def victims(split: Split, trigger: Trigger) -> np.ndarray:
    """Indices of the examples the attack can flip: those whose label is not the target."""
    return np.flatnonzero(split.y != trigger.target)


def poison(dataset: Dataset, trigger: Trigger, rate: float = 0.05, seed: int = 0) -> Dataset:
    """``dataset`` with ``rate`` of its train images (drawn among other classes' with ``seed``)
    stamped and relabelled to the target; val and test untouched. The name and ``config`` record
    the poisoning, so the pretraining cache keeps the backdoored model apart from the clean one."""
    trigger.check(dataset)
    if not 0.0 < rate < 1.0:
        raise ValueError(f"The poison rate must lie in (0, 1), got {rate}.")
    train = dataset.train
    pool = victims(train, trigger)
    count = max(1, round(rate * len(train)))
    if count > pool.size:
        raise ValueError(f"A poison rate of {rate} needs {count} images of other classes; the "
                         f"train split has {pool.size}.")
    idx = np.sort(np.random.default_rng(seed).choice(pool, count, replace=False))
    x, y = np.array(train.x, copy=True), np.array(train.y, copy=True)
    x[idx] = trigger.stamp(train.x[idx])
    y[idx] = trigger.target
    config = (*dataset.config, ("backdoor", dataclasses.astuple(trigger)), ("poison_rate", rate),
              ("poison_seed", seed))
    return dataclasses.replace(dataset, name=f"{dataset.name}-backdoor", config=config,
                               train=dataclasses.replace(train, x=x, y=y))
