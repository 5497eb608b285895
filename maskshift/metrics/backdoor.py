"""Batched backdoor metrics: how often a trigger still forces its target class."""

from __future__ import annotations

import jax.numpy as jnp

from maskshift._types import Array
from maskshift.metrics.unlearning import _safe_div


def attack_success_rate(triggered_logits: Array, target: int | Array,
                        weights: Array | None = None) -> Array:
    """Share of triggered inputs classified as ``target``, ``[..., N, C] -> [...]``. Give it
    triggered images whose true label is not the target (``weights`` may select a subset)."""
    hit = (jnp.argmax(triggered_logits, -1) == target).astype(jnp.float32)
    if weights is None:
        return hit.mean(-1)
    return _safe_div((hit * weights).sum(-1), weights.sum(-1))
