"""Real datasets through TensorFlow Datasets' random-access ``tfds.data_source`` (no TensorFlow).

- ``mnist``, ``fashion_mnist``, ``cifar10`` (unlearning): TFDS ``train`` is split into train/val
  by a seeded permutation (``val_fraction``); TFDS ``test`` is the held-out test split.
- ``civil_comments`` (bias), config ``CivilCommentsIdentities``: label ``toxicity >= 0.5``;
  identity groups as in WILDS (male, female, LGBTQ, christian, muslim, other_religions, black,
  white), a comment's group being the one it mentions most (annotator score >= 0.5), else none.
  TFDS ``train``/``validation``/``test`` are train/val/test. Counterfactual twins swap every
  identity term of the package's word lists for a neutral word.

``tfds.data_source`` reads the ``array_record`` format and never downloads here: prepare a
dataset once on a machine with network (``python -m maskshift.data.prepare mnist``), then point
``data_dir`` (or ``TFDS_DATA_DIR``) at it. A dataset that is not there raises
:class:`DatasetNotFoundError` saying so.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

import numpy as np

from maskshift.data._base import Dataset, Split

IMAGE_DATASETS = ("mnist", "fashion_mnist", "cifar10")
CIVIL_COMMENTS = "civil_comments/CivilCommentsIdentities"
# WILDS CivilComments groups and the TFDS identity columns each one pools.
WILDS_GROUPS: dict[str, tuple[str, ...]] = {
    "male": ("male",),
    "female": ("female",),
    "LGBTQ": ("homosexual_gay_or_lesbian", "bisexual", "other_sexual_orientation",
              "transgender", "other_gender"),
    "christian": ("christian",),
    "muslim": ("muslim",),
    "other_religions": ("jewish", "hindu", "buddhist", "atheist", "other_religion"),
    "black": ("black",),
    "white": ("white",),
}
TOKEN_PATTERN = r"[a-z0-9']+"


class DatasetNotFoundError(ValueError):
    """A TFDS dataset is not prepared where maskshift looked for it."""


def tfds_name(name: str) -> str:
    """The full TFDS name of one of our TFDS datasets, its builder registered with TFDS."""
    if name == "civil_comments":
        import tensorflow_datasets.text.civil_comments  # noqa: F401  (registers the builder)
        return CIVIL_COMMENTS
    return name


def _source(name: str, split: str, data_dir):
    import tensorflow_datasets as tfds

    name = tfds_name(name)
    try:
        return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except Exception as err:  # TFDS raises several types for "not there"
        where = data_dir or "$TFDS_DATA_DIR or ~/tensorflow_datasets"
        short = name.split("/")[0]
        raise DatasetNotFoundError(
            f"The TFDS dataset {name!r} (split {split!r}) is not prepared in {where} "
            f"({type(err).__name__}: {str(err).splitlines()[0][:160]}). maskshift reads it with "
            "tfds.data_source, which needs the array_record format and never downloads. On a "
            f"machine with network, run `python -m maskshift.data.prepare {short} --data-dir DIR` "
            f"(or `tfds build {name} --file_format=array_record --data_dir DIR`), then pass "
            "`data_dir=DIR`."
        ) from None


def _read(src, limit: int | None, fields: tuple[str, ...]) -> dict[str, list]:
    n = len(src) if limit is None else min(limit, len(src))
    out: dict[str, list] = {f: [] for f in fields}
    for i in range(n):
        ex = src[i]
        for f in fields:
            out[f].append(ex[f])
    return out


def _split_val(x, y, val_fraction: float, seed: int):
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}.")
    perm = np.random.default_rng(seed).permutation(len(y))
    n_val = max(1, int(round(len(y) * val_fraction)))
    va, tr = perm[:n_val], perm[n_val:]
    return Split(x[tr], y[tr]), Split(x[va], y[va])


def _tfds_may_hold(name: str) -> bool:
    """Whether a prepared TFDS copy of ``name`` could be in TFDS's default directory (a cheap
    look before importing TFDS, so the IDX path does not pay for the import)."""
    root = Path(os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets")
    return (root.expanduser() / name).is_dir()


def _image_arrays(name: str, data_dir, max_train, max_test):
    """Train and test arrays from IDX files when ``data_dir`` (or, with none given and no TFDS
    copy, the Debian package's directory) holds them, else from TFDS. Returns
    ``(arrays, class names, source)``."""
    from maskshift.data import idx

    if data_dir is not None:
        found = idx.find_idx_dir(name, data_dir)
    else:
        found = None if _tfds_may_hold(name) else idx.find_idx_dir(name)
    if found is not None:
        arrays = {s: idx.read_idx_split(found, s, limit)
                  for s, limit in (("train", max_train), ("test", max_test))}
        return arrays, idx.CLASS_NAMES[name], "idx"
    arrays = {}
    for split, limit in (("train", max_train), ("test", max_test)):
        try:
            src = _source(name, split, data_dir)
        except DatasetNotFoundError as err:
            if name not in idx.DEBIAN_DIRS:
                raise
            package = "dataset-" + name.replace("_", "-")
            raise DatasetNotFoundError(
                f"{err} Or read {name}'s IDX files: `apt-get install {package}`"
                f" (Debian puts them in {idx.DEBIAN_DIRS[name]}), or pass `data_dir` with the "
                "four *-idx?-ubyte[.gz] files.") from None
        raw = _read(src, limit, ("image", "label"))
        arrays[split] = (np.stack(raw["image"]).astype(np.float32) / 255.0,
                         np.asarray(raw["label"], np.int32))
    return arrays, tuple(src.dataset_info.features["label"].names), "tfds"


def load_tfds_images(name: str, *, data_dir=None, val_fraction: float = 0.1, seed: int = 0,
                     max_train: int | None = None, max_test: int | None = None) -> Dataset:
    """``mnist``, ``fashion_mnist`` or ``cifar10`` as a :class:`Dataset` of float32 images in
    [0, 1]. ``max_train``/``max_test`` read only the first examples (quick runs on a CPU).

    ``mnist`` and ``fashion_mnist`` are also read from IDX files: those in ``data_dir`` if it holds
    them, else (no ``data_dir`` and no prepared TFDS copy) Debian's package directory
    (``apt-get install dataset-fashion-mnist`` → ``/usr/share/datasets/fashion-mnist``). The
    split rules are the same either way."""
    if name not in IMAGE_DATASETS:
        raise ValueError(f"Unknown TFDS image dataset {name!r}; choose from {IMAGE_DATASETS}.")
    arrays, names, source = _image_arrays(name, data_dir, max_train, max_test)
    train, val = _split_val(*arrays["train"], val_fraction, seed)
    return Dataset(name=name, kind="image", num_classes=len(names), class_names=names,
                   train=train, val=val, test=Split(*arrays["test"]),
                   config=(("data", source), ("val_fraction", val_fraction), ("seed", seed),
                           ("max_train", max_train), ("max_test", max_test)))


def _tokens(text) -> list[str]:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return re.findall(TOKEN_PATTERN, text.lower())


def wilds_groups(columns: dict) -> np.ndarray:
    """Group id per comment (``0`` = none, ``i`` = ``WILDS_GROUPS``' i-th) from the TFDS identity
    columns: each group's score is the max of its columns; the group with the highest score
    >= 0.5 wins (ties: the first)."""
    scores = np.stack([np.max([np.asarray(columns[c], np.float32) for c in cols], 0)
                       for cols in WILDS_GROUPS.values()], 1)  # [N, groups]
    return np.where(scores.max(1) >= 0.5, scores.argmax(1) + 1, 0).astype(np.int32)


def load_civil_comments(*, data_dir=None, vocab_size: int = 20000, max_len: int = 64,
                        max_train: int | None = None, max_eval: int | None = None) -> Dataset:
    """CivilComments with identity annotations, tokenized for the built-in text classifier.

    Args:
      vocab_size: the most frequent train words kept (ids 0 and 1 are padding and unknown).
      max_len: tokens kept per comment (the rest is cut).
      max_train, max_eval: read only the first examples of train and of validation/test.
    """
    from maskshift.data.text import PAD, UNK, Tokenizer, load_wordlists

    columns = tuple(c for cols in WILDS_GROUPS.values() for c in cols)
    splits = {}
    for ours, theirs, limit in (("train", "train", max_train), ("val", "validation", max_eval),
                                ("test", "test", max_eval)):
        raw = _read(_source("civil_comments", theirs, data_dir), limit,
                    ("text", "toxicity", *columns))
        splits[ours] = raw
    counts = Counter(t for text in splits["train"]["text"] for t in _tokens(text))
    words = sorted(counts, key=lambda w: (-counts[w], w))[: max(vocab_size - 2, 0)]
    tok = Tokenizer(vocab=(PAD, UNK, *words), max_len=max_len)
    identity = {t for terms in load_wordlists().group_terms for t in terms}
    out = {}
    for name, raw in splits.items():
        toks = [_tokens(t) for t in raw["text"]]
        cf = [["person" if t in identity else t for t in ts] for ts in toks]
        group = wilds_groups(raw)
        y = (np.asarray(raw["toxicity"], np.float32) >= 0.5).astype(np.int32)
        out[name] = Split(x=tok.encode([" ".join(t) for t in toks]), y=y, group=group,
                          x_cf=tok.encode([" ".join(t) for t in cf]))
    return Dataset(name="civil_comments", kind="text", num_classes=2,
                   class_names=("non-toxic", "toxic"), train=out["train"], val=out["val"],
                   test=out["test"], group_names=("none", *WILDS_GROUPS), vocab=tok.vocab,
                   config=(("data", "tfds"), ("vocab_size", vocab_size), ("max_len", max_len),
                           ("max_train", max_train), ("max_eval", max_eval)))
