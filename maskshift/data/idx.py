"""MNIST-style IDX files (as Debian's ``dataset-fashion-mnist`` ships them), read with NumPy.

The IDX format is tiny: two zero bytes, a type byte, a dimension count, the dimensions as
big-endian uint32, then the raw values in C order. NumPy reads it in a few lines, so no extra
dependency is taken (``idx2numpy`` would add a package for twenty lines and no gzip support).

``apt-get install dataset-fashion-mnist`` puts the four files under
``/usr/share/datasets/fashion-mnist/``; :func:`find_idx_dir` looks there (and in a directory the
user names) and :func:`load_idx_images` turns them into a :class:`Dataset` with the same split
rules as the TFDS path (train/val from the IDX train files by a seeded permutation, test from
``t10k``).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

# Where Debian's packages install each dataset's IDX files.
DEBIAN_DIRS = {"fashion_mnist": Path("/usr/share/datasets/fashion-mnist"),
}
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
CLASS_NAMES = {
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"),
    "mnist": tuple(str(d) for d in range(10)),
}
# IDX type byte -> NumPy dtype (big-endian where it matters).
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class IDXFormatError(ValueError):
    """A file is not a readable IDX file."""


def _idx_path(directory: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def read_idx(path: str | Path) -> np.ndarray:
    """One IDX file (optionally gzipped) as a NumPy array of its stored dtype and shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise IDXFormatError(f"Cannot read IDX file {path}: {err}.") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise IDXFormatError(f"{path} is not an IDX file (bad magic number).")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw[4:header], ">u4"))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    count = int(np.prod(shape, dtype=np.int64))
    if len(raw) - header != count * dtype.itemsize:
        raise IDXFormatError(f"{path} holds {len(raw) - header} data bytes, but its header "
                             f"{shape} needs {count * dtype.itemsize}: the file is truncated.")
    return np.frombuffer(raw, dtype, count, header).reshape(shape)


def find_idx_dir(name: str, data_dir: str | Path | None = None) -> Path | None:
    """The directory holding ``name``'s four IDX files: ``data_dir`` if it has them (directly or
    in a ``fashion-mnist``-style subdirectory), else the Debian package's directory if installed."""
    candidates = []
    if data_dir is not None:
        data_dir = Path(data_dir).expanduser()
        candidates += [data_dir, data_dir / name.replace("_", "-")]
    elif name in DEBIAN_DIRS:
        candidates.append(DEBIAN_DIRS[name])
    for directory in candidates:
        stems = [s for pair in IDX_FILES.values() for s in pair]
        if all(_idx_path(directory, s) is not None for s in stems):
            return directory
    return None


def read_idx_split(directory: Path, split: str, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Images ``[N, H, W, 1]`` float32 in [0, 1] and labels ``[N]`` int32 of one IDX split."""
    image_stem, label_stem = IDX_FILES[split]
    images = read_idx(_idx_path(directory, image_stem))
    labels = read_idx(_idx_path(directory, label_stem))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise IDXFormatError(f"{directory}: {split} images {images.shape} and labels "
                             f"{labels.shape} do not pair up as [N, H, W] and [N].")
    n = len(labels) if limit is None else min(limit, len(labels))
    x = images[:n, :, :, None].astype(np.float32) / 255.0
    return x, labels[:n].astype(np.int32)
