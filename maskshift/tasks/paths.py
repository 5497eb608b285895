"""Paths into a Flax params pytree: find, read and replace the leaves an edit touches."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np

from maskshift._types import Params

Path = tuple[str, ...]


def path_str(path: Path) -> str:
    return "/".join(path)


def module_path(path: Path) -> Path:
    """The module a leaf belongs to: ``("Conv_1",)`` for ``("params", "Conv_1", "kernel")``."""
    return path[1:-1] if path[0] == "params" else path[:-1]


def get_leaf(params: Params, path: Path):
    node = params
    for i, k in enumerate(path):
        if not isinstance(node, dict) and not hasattr(node, "keys"):
            raise KeyError(path_str(path[:i]))
        if k not in node:
            raise KeyError(path_str(path[: i + 1]))
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


def editable_leaves(params: Params) -> str:
    """Every leaf an edit can take, with its shape and matrix view, for error messages."""
    out = []
    for p in leaf_paths(params):
        shape = tuple(np.shape(get_leaf(params, p)))
        if len(shape) >= 2:
            m, n = matrix_shape(shape)
            out.append(f"{path_str(p)} {list(shape)}" + (f" as [{m}, {n}]" if len(shape) > 2
                                                        else ""))
    return ", ".join(sorted(out))


def _candidates(known: list[Path], params: Params, path: Path) -> list[Path]:
    exact = [p for p in known if p == path]
    if exact:
        return exact
    if len(path) == 1:  # a layer name: its matrix-shaped weight
        return [p for p in known if len(p) >= 2 and p[-2] == path[0]
                and np.ndim(get_leaf(params, p)) >= 2]
    return [p for p in known if p[-len(path):] == path]  # a path without its collection


def resolve_paths(params: Params, edit: Sequence[str | Path]) -> tuple[Path, ...]:
    """Turn layer names (``"Dense_0"``) or full paths (``("params", "Dense_0", "kernel")`` or
    ``"params/Dense_0/kernel"``, or ``"Dense_0/kernel"``) into full leaf paths, with a clear
    error for a wrong one."""
    if not edit:
        raise ValueError("Choose at least one leaf to edit.")
    known = leaf_paths(params)
    out = []
    for e in edit:
        path = tuple(e.split("/")) if isinstance(e, str) else tuple(e)
        candidates = _candidates(known, params, path)
        if len(candidates) != 1:
            raise ValueError(f"Unknown layer or leaf {path_str(path)!r} to edit. Editable "
                             f"kernels of this model (shape, matrix view): "
                             f"{editable_leaves(params)}.")
        p = candidates[0]
        if np.ndim(get_leaf(params, p)) < 2:
            raise ValueError(f"Leaf {path_str(p)!r} has shape {np.shape(get_leaf(params, p))} "
                             "(a bias or a normalisation scale, not a kernel); edit a kernel: "
                             f"{editable_leaves(params)}.")
        out.append(p)
    if len(set(out)) != len(out):
        raise ValueError(f"A leaf is listed twice in {list(edit)}; list each layer once.")
    return tuple(out)


def matrix_shape(shape: Sequence[int]) -> tuple[int, int]:
    """A leaf viewed as a matrix: a conv kernel ``[kh, kw, cin, cout]`` is ``[kh*kw*cin, cout]``."""
    return int(np.prod(shape[:-1])), int(shape[-1])

