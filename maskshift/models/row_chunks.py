"""Whole-split passes in chunks of rows, so their memory is one chunk's.

The gradient controllers take ``jax.grad`` of the reward on the whole train split at every step,
and a task's base metrics are measured on it once. On a large split (Fashion-MNIST's 54,000
rows through an edited convolution computed as patches, :mod:`maskshift.models.loop_conv`) one
such pass holds every row's patches and activations at once: 16 GB for the Fashion CNN's
``Conv_1``. :func:`in_row_chunks` runs a row-wise function over chunks of a fixed input size with
``lax.map`` and rematerialises each chunk in the backward pass (``jax.checkpoint``), so a
forward-and-backward pass keeps one chunk's intermediates (the rows' outputs apart) for about a
third more arithmetic. The outputs are the same numbers up to float rounding: only where each
row's products are computed changes, never what is summed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax


def num_rows(tree) -> int:
    """The leading (row) axis shared by every leaf of ``tree``."""
    return jax.tree.leaves(tree)[0].shape[0]


def row_size(tree) -> int:
    """Elements per row of ``tree`` (every leaf's, summed)."""
    return sum(math.prod(a.shape[1:]) for a in jax.tree.leaves(tree))


def chunk_rows(h, max_elements: int) -> int:
    """Rows per chunk so that a chunk of ``h`` holds at most ``max_elements`` (at least one
    row)."""
    return max(1, max_elements // max(1, row_size(h)))


def runs_in_chunks(h, max_elements: int) -> bool:
    """Whether :func:`in_row_chunks` splits ``h`` (more rows than one chunk holds)."""
    return num_rows(h) > chunk_rows(h, max_elements)


def in_row_chunks(fn: Callable, h, max_elements: int):
    """``fn(h)`` for a row-wise ``fn`` (row ``i`` of the output depends on row ``i`` of ``h``
    only, as a model's inference pass does), computed in chunks of at most ``max_elements``
    input elements when ``h`` holds more. ``h`` is an array or a pytree of arrays with a shared
    leading axis.

    Chunks are read with ``dynamic_slice`` (no padded copy of ``h``); the last one starts at
    ``n - rows`` and overlaps the one before, and only its new rows are kept."""
    if not runs_in_chunks(h, max_elements):
        return fn(h)
    n, rows = num_rows(h), chunk_rows(h, max_elements)
    k = -(-n // rows)
    starts = jnp.minimum(jnp.arange(k) * rows, n - rows)

    @jax.checkpoint
    def chunk(start):
        return fn(jax.tree.map(lambda a: lax.dynamic_slice_in_dim(a, start, rows), h))

    out = lax.map(chunk, starts)  # [k, rows, ...]
    tail = k * rows - n  # rows of the last chunk that the one before already computed
    return jax.tree.map(
        lambda o: jnp.concatenate([o[:-1].reshape(-1, *o.shape[2:]), o[-1, tail:]]), out)
