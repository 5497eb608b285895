"""Atomic file output and Orbax pytree storage shared by the cache, checkpoints and results.

In a run of several processes (:mod:`maskshift.hosts`) only process 0 writes: every writer here
returns without touching the disk in the others, so all processes may run the same code."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import jax
import numpy as np

from maskshift.hosts import is_primary


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and ``os.replace`` (never half-written)."""
    if not is_primary():
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(o):
    if isinstance(o, np.generic | np.ndarray | jax.Array):
        return np.asarray(o).tolist()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serialisable")


def file_in_the_way(directory: str | os.PathLike) -> Path | None:
    """The first existing path among ``directory`` and its parents that is a file, not a
    directory (a directory could never be made there), or ``None``."""
    directory = Path(directory).absolute()
    return next((p for p in (directory, *directory.parents) if p.exists() and not p.is_dir()),
                None)


def tree_checksum(tree) -> str:
    """SHA-256 over every leaf's dtype, shape and bytes, in tree order."""
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(tree):
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_pytree(directory: str | os.PathLike, tree) -> None:
    """Save a pytree of arrays with Orbax into ``directory`` (which must not exist yet).

    Host arrays (NumPy, or arrays one process holds whole: :func:`maskshift.hosts.host_copy`);
    process 0 writes them alone."""
    if not is_primary():
        return
    with _checkpointer() as ckptr:
        ckptr.save(Path(directory).absolute(), tree)
        ckptr.wait_until_finished()


def restore_pytree(directory: str | os.PathLike, abstract_tree):
    """Restore a pytree saved by :func:`save_pytree`, checked against ``abstract_tree``'s
    structure, shapes and dtypes (Orbax raises on a mismatch)."""
    with _checkpointer() as ckptr:
        return ckptr.restore(Path(directory).absolute(), abstract_tree)


def _checkpointer():
    """An Orbax checkpointer that reads and writes in this process alone (every pytree saved here
    is a host copy; Orbax would otherwise wait for every process at each save)."""
    import orbax.checkpoint as ocp

    me = jax.process_index()
    return ocp.StandardCheckpointer(multiprocessing_options=ocp.options.MultiprocessingOptions(
        primary_host=me, active_processes={me}))


def replace_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Move a fully written ``tmp_dir`` into place as ``final_dir``, replacing an old one."""
    if not is_primary():
        return
    if final_dir.exists():
        old = final_dir.with_name(f".{final_dir.name}.old-{os.getpid()}")
        os.replace(final_dir, old)
        os.replace(tmp_dir, final_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp_dir, final_dir)


def save_figure(fig, path) -> None:
    """Save a matplotlib figure as a PNG atomically (written aside, then renamed), and close it."""
    import matplotlib.pyplot as plt

    if not is_primary():
        plt.close(fig)
        return
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
