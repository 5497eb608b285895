"""Paths into a Flax params pytree: find, read and replace the leaves an edit touches, and the
matrix view under which each edited leaf is edited.

**Matrix views.** Every edited leaf is edited as a matrix ``[m, n]``: its leading ``k`` axes
(the inputs) flattened into rows, the others (the outputs) into columns, a plain reshape. ``k``
is the leaf's *split*: by default every axis but the last (a dense kernel ``[d_in, d_out]``
itself; a convolution ``[kh, kw, c_in, c_out]`` as ``[kh*kw*c_in, c_out]``; an embedding table
``[vocab, d]`` itself; an attention output projection ``[heads, head_dim, d]`` as
``[heads*head_dim, d]``), except Flax's attention input projections (a 3-D kernel of a module named
``query``, ``key`` or ``value``: ``[d, heads, head_dim]`` as ``[d, heads*head_dim]``, split 1).
``LEAF:k`` in an edit spec sets the split of any other ``nn.DenseGeneral`` kernel
(``Block_0/Proj/kernel:1``).
"""

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


ATTENTION_INPUTS = ("query", "key", "value")
NOT_KERNELS = ("bias", "scale")  # leaf names that are never edited, whatever their shape


def is_kernel(path: Path, shape: Sequence[int]) -> bool:
    """Whether the leaf at ``path`` can be edited: at least 2-D, and not a bias (attention's
    ``[heads, head_dim]`` biases are 2-D) or a normalisation scale."""
    return len(shape) >= 2 and path[-1] not in NOT_KERNELS


def default_split(path: Path, shape: Sequence[int]) -> int:
    """How many leading (input) axes of the leaf at ``path`` form its matrix view's rows: 1 for
    Flax attention's ``query``/``key``/``value`` kernels ``[d, heads, head_dim]``, otherwise
    every axis but the last."""
    if len(shape) == 3 and len(path) >= 2 and path[-2] in ATTENTION_INPUTS:
        return 1
    return len(shape) - 1


def editable_leaves(params: Params) -> str:
    """Every leaf an edit can take, with its shape and matrix view, for error messages."""
    out = []
    for p in leaf_paths(params):
        shape = tuple(np.shape(get_leaf(params, p)))
        if is_kernel(p, shape):
            m, n = matrix_shape(shape, default_split(p, shape))
            out.append(f"{path_str(p)} {list(shape)}" + (f" as [{m}, {n}]" if len(shape) > 2
                                                        else ""))
    return ", ".join(sorted(out))


def _candidates(known: list[Path], params: Params, path: Path) -> list[Path]:
    exact = [p for p in known if p == path]
    if exact:
        return exact
    def kernels_of(module):  # the matrix-shaped weights of a module path
        return [p for p in known if len(p) > len(module) and p[-len(module) - 1:-1] == module
                and is_kernel(p, np.shape(get_leaf(params, p)))]

    if len(path) == 1:  # a layer name: its matrix-shaped weight
        return kernels_of(path)
    suffix = [p for p in known if p[-len(path):] == path]  # a path without its collection
    return suffix or kernels_of(path)  # or a nested module (Block_0/Attn/query)


def resolve_paths(params: Params, edit: Sequence[str | Path]) -> tuple[Path, ...]:
    """Turn layer names (``"Dense_0"``), module paths (``"Block_0/Attn/query"``) or full paths
    (``("params", "Dense_0", "kernel")`` or ``"params/Dense_0/kernel"``, or ``"Dense_0/kernel"``)
    into full leaf paths, with a clear error for a wrong one. A ``:k`` suffix (the split of the
    matrix view, :func:`resolve_edit`) is allowed and ignored here."""
    return resolve_edit(params, edit)[0]


def _split_spec(e: str | Path) -> tuple[Path, int | None]:
    if not isinstance(e, str):
        return tuple(e), None
    name, sep, k = e.rpartition(":")
    if not sep:
        return tuple(e.split("/")), None
    if not k.strip().isdigit():
        raise ValueError(f"Edit spec {e!r}: the part after ':' is the number of input axes of "
                         f"the matrix view, an integer (e.g. {name}:1).")
    return tuple(name.split("/")), int(k)


def resolve_edit(params: Params, edit: Sequence[str | Path]) -> tuple[tuple[Path, ...],
                                                                       tuple[int, ...]]:
    """The full leaf paths of ``edit`` (:func:`resolve_paths`) and each one's split: how many
    leading axes form its matrix view's rows (``LEAF:k``, or :func:`default_split`)."""
    if not edit:
        raise ValueError("Choose at least one leaf to edit.")
    known = leaf_paths(params)
    out, splits = [], []
    for e in edit:
        path, split = _split_spec(e)
        candidates = _candidates(known, params, path)
        if len(candidates) != 1:
            raise ValueError(f"Unknown layer or leaf {path_str(path)!r} to edit. Editable "
                             f"kernels of this model (shape, matrix view): "
                             f"{editable_leaves(params)}.")
        p = candidates[0]
        shape = np.shape(get_leaf(params, p))
        if not is_kernel(p, shape):
            raise ValueError(f"Leaf {path_str(p)!r} has shape {shape} "
                             "(a bias or a normalisation scale, not a kernel); edit a kernel: "
                             f"{editable_leaves(params)}.")
        if split is not None and not 1 <= split < len(shape):
            raise ValueError(f"Leaf {path_str(p)!r} has {len(shape)} axes {list(shape)}; its "
                             f"matrix view's split :{split} must be 1 to {len(shape) - 1} "
                             "(the number of input axes).")
        out.append(p)
        splits.append(default_split(p, shape) if split is None else split)
    if len(set(out)) != len(out):
        raise ValueError(f"A leaf is listed twice in {list(edit)}; list each layer once.")
    return tuple(out), tuple(splits)


def matrix_shape(shape: Sequence[int], split: int | None = None) -> tuple[int, int]:
    """A leaf viewed as a matrix: its first ``split`` axes (default: all but the last) as rows,
    the rest as columns; a conv kernel ``[kh, kw, cin, cout]`` is ``[kh*kw*cin, cout]``."""
    k = len(shape) - 1 if split is None else split
    return int(np.prod(shape[:k])), int(np.prod(shape[k:]))

