"""Forget sets of examples: which rows of the train split a "forget my data" request names.

A forget set is a sorted ``int`` array of train-split row indices. It is drawn at random
(:func:`random_forget_set`: a seeded fraction, optionally the same fraction of every class, as
SalUn's and ℓ1-sparse's random-forgetting benchmarks) or read from a user's file
(:func:`read_forget_indices`: one integer per line or whitespace-separated, ``#`` comments);
:func:`check_forget_set` refuses what cannot be a forget set and says what a set that swallows a
class's retain examples means.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def random_forget_set(num_train: int, fraction: float, seed: int | tuple[int, ...] = 0,
                      labels: np.ndarray | None = None) -> np.ndarray:
    """``round(fraction * num_train)`` distinct train rows drawn with ``seed`` (an int, or a
    tuple of ints: NumPy's seed sequence); with ``labels``,
    stratified: ``round(fraction * n_c)`` rows of each class ``c`` (at least one where the class
    has any), so the forget set has the train split's class balance."""
    check_fraction(fraction)
    rng = np.random.default_rng(seed)
    if labels is None:
        size = max(1, round(fraction * num_train))
        return np.sort(rng.choice(num_train, size=size, replace=False)).astype(np.int64)
    labels = np.asarray(labels)
    picks = []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        picks.append(rng.choice(rows, size=max(1, round(fraction * rows.size)), replace=False))
    return np.sort(np.concatenate(picks)).astype(np.int64)


def random_forget_sets(num_train: int, fraction: float, count: int, seed: int = 0,
                       labels: np.ndarray | None = None) -> list[tuple[int, ...]]:
    """``count`` independent :func:`random_forget_set` draws (they may overlap), set ``i`` drawn
    with the seed ``(seed, i)``: an amortized pool of forget sets."""
    return [tuple(int(r) for r in random_forget_set(num_train, fraction, (seed, i), labels))
            for i in range(count)]


def disjoint_forget_sets(num_train: int, fraction: float, count: int,
                         seed: int | tuple[int, ...] = 0) -> tuple[np.ndarray, ...]:
    """``count`` disjoint forget sets of ``round(fraction * num_train)`` train rows each, for
    requests that arrive one after another: set ``k`` is drawn with the seed ``(seed, k)`` (a
    tuple ``seed`` is spread: ``(*seed, k)``) from the rows no earlier set took (``ValueError``
    where the sets would leave nothing to retain)."""
    check_fraction(fraction)
    if count < 1:
        raise ValueError(f"A sequence of example requests needs at least one request, got "
                         f"{count}.")
    size = max(1, round(fraction * num_train))
    if count * size >= num_train:
        raise ValueError(f"{count} requests of {size} examples ({fraction:g} of {num_train}) "
                         "leave nothing to retain; ask for fewer requests or a smaller fraction.")
    free, sets = np.arange(num_train), []
    head = tuple(seed) if isinstance(seed, tuple) else (seed,)
    for k in range(count):  # a handful of requests, each one draw
        pick = np.sort(free[np.random.default_rng((*head, k)).choice(free.size, size,
                                                                     replace=False)])
        sets.append(pick.astype(np.int64))
        free = np.setdiff1d(free, pick)
    return tuple(sets)


def check_fraction(fraction: float) -> float:
    if not 0.0 < float(fraction) < 1.0:
        raise ValueError(f"The forget fraction must be in (0, 1), got {fraction}; e.g. 0.1 "
                         "forgets a random 10% of the train split.")
    return float(fraction)


def read_forget_indices(path: str | Path) -> np.ndarray:
    """The train-row indices listed in ``path`` (integers separated by whitespace or commas,
    ``#`` starts a comment); ``ValueError`` naming the first entry that is not an integer."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"The forget-indices file {str(path)!r} does not exist; give a text "
                         "file with one train-row index per line.")
    values = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        for token in line.split("#", 1)[0].replace(",", " ").split():
            try:
                values.append(int(token))
            except ValueError:
                raise ValueError(f"{path}:{lineno}: {token!r} is not an integer; the file lists "
                                 "train-row indices, one integer per entry.") from None
    return np.asarray(values, np.int64)


def check_forget_set(indices, labels: np.ndarray, *, warn=None) -> tuple[int, ...]:
    """``indices`` as a sorted tuple of train rows, or ``ValueError`` for an empty set, an entry
    outside ``0..len(labels) - 1``, a duplicate, or a set that holds every train example.
    ``warn`` (a callable, e.g. ``print``) hears which classes the set empties from the retain
    set: their retain accuracy is then undefined and a retrained model never sees them."""
    idx = np.asarray(indices)
    n = len(labels)
    if idx.size == 0:
        raise ValueError("The forget set is empty; name at least one train example.")
    if not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"Forget indices must be integers, got {idx.dtype} values.")
    bad = idx[(idx < 0) | (idx >= n)]
    if bad.size:
        raise ValueError(f"Forget index {int(bad[0])} is outside the train split's rows "
                         f"0..{n - 1}.")
    uniq, counts = np.unique(idx, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"Forget index {int(uniq[counts > 1][0])} is listed twice; list each "
                         "example once.")
    if uniq.size == n:
        raise ValueError("The forget set holds every train example; nothing is left to retain.")
    if warn is not None:
        labels = np.asarray(labels)
        member = np.zeros(n, bool)
        member[uniq] = True
        gone = [int(c) for c in np.unique(labels) if member[labels == c].all()]
        if gone:
            warn(f"the forget set holds every train example of class(es) {gone}: the "
                 "retain set has none of them, so retain accuracy says nothing about them and a "
                 "retrained model never learns them (this is class-wise forgetting of those "
                 "classes; `--forget-class` says so directly)")
    return tuple(int(i) for i in uniq)
