"""scikit-learn's 8x8 handwritten digits: the embedded image default (no download ever)."""

from __future__ import annotations

import numpy as np

from maskshift.data._base import Dataset, Split


def load_digits_dataset(seed: int = 0, fractions=(0.6, 0.2, 0.2)) -> Dataset:
    """The 1,797 8x8 digits in a fixed, seeded, class-stratified train/val/test split.

    Pixels are scaled to [0, 1]; images are ``[N, 8, 8, 1]`` float32, labels int32 0..9.
    """
    from sklearn.datasets import load_digits  # ships the data inside the package

    raw = load_digits()
    x = (raw.images.astype(np.float32) / 16.0)[..., None]
    y = raw.target.astype(np.int32)
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_train = int(round(fractions[0] * len(idx)))
        n_val = int(round(fractions[1] * len(idx)))
        for p, chunk in zip(parts, (idx[:n_train], idx[n_train : n_train + n_val],
                                    idx[n_train + n_val :]), strict=True):
            p.append(chunk)
    train, val, test = (np.sort(np.concatenate(p)) for p in parts)
    return Dataset(
        name="digits",
        kind="image",
        num_classes=10,
        class_names=tuple(str(i) for i in range(10)),
        train=Split(x[train], y[train]),
        val=Split(x[val], y[val]),
        test=Split(x[test], y[test]),
        config=(("seed", seed), ("fractions", tuple(fractions))),
    )
