"""Edited-model checkpoints: the edited params of a run plus metadata, saved with Orbax.

Layout of a run directory ``DIR``::

    DIR/edited/          Orbax checkpoint of the edited params pytree
    DIR/edited.json      {"format", "task", "dataset", "dataset_options", "forget_classes",
                          "model", "checksum", ...}

Every run writes it; :func:`maskshift.run.evaluate.evaluate_model` (``checkpoint``) reads it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import jax

from maskshift._io import atomic_write_json, replace_dir, restore_pytree, save_pytree, tree_checksum
from maskshift._types import Params
from maskshift.hosts import is_primary

FORMAT = "maskshift-edited-v1"


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or does not fit the model it is loaded into."""


def save_edited(directory, params: Params, meta: dict) -> Path:
    """Atomically write ``params`` and ``meta`` as an edited-model checkpoint in ``directory``."""
    directory = Path(directory)
    if not is_primary():  # several processes: process 0 writes (maskshift.hosts)
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory, prefix=".edited."))
    try:
        save_pytree(tmp / "params", params)
        replace_dir(tmp / "params", directory / "edited")
        atomic_write_json(directory / "edited.json",
                          {**meta, "format": FORMAT, "checksum": tree_checksum(params)})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def read_meta(directory) -> dict:
    """The metadata of the checkpoint in ``directory``, with clear errors for a bad path."""
    directory = Path(directory)
    if not directory.exists():
        raise CheckpointError(f"Checkpoint directory {str(directory)!r} does not exist. Pass the "
                              "`out` directory of a finished run.")
    meta_path = directory / "edited.json"
    if not meta_path.is_file() or not (directory / "edited").is_dir():
        raise CheckpointError(f"{str(directory)!r} holds no maskshift checkpoint (expected "
                              "edited.json and edited/ inside it).")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{meta_path} is corrupt ({err}).") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path} has format {meta.get('format')!r}; this version of "
                              f"maskshift reads {FORMAT!r}.")
    return meta


def load_edited(directory, like: Params) -> tuple[Params, dict]:
    """Load the edited params in ``directory``, checked against the structure of ``like``.

    Raises:
      CheckpointError: missing directory, not a checkpoint, corrupt data, or params whose tree
        structure, shapes or dtypes differ from ``like``'s (a checkpoint of another model).
    """
    meta = read_meta(directory)
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), like)
    try:
        params = restore_pytree(Path(directory) / "edited", abstract)
    except Exception as err:
        raise CheckpointError(f"Cannot restore {directory}/edited into this model: it is corrupt "
                              f"or from another model ({type(err).__name__}: "
                              f"{str(err)[:300]}).") from None
    if tree_checksum(params) != meta.get("checksum"):
        raise CheckpointError(f"{directory}/edited does not match its recorded checksum: the "
                              "checkpoint is corrupt.")
    return params, meta
