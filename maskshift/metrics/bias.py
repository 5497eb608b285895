"""Bias metrics for a binary classifier over identity groups. Pure, jittable, ``vmap``-able.

Conventions: ``labels`` are 0/1 (1 = positive/toxic); ``groups`` are integer identity-group ids with
0 meaning "no identity term"; ``scores`` are the positive-class probabilities or logits (AUCs only
need their order).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from maskshift._types import Array
from maskshift.metrics.unlearning import _safe_div


def predictions(logits: Array) -> Array:
    return jnp.argmax(logits, -1)


def positive_score(logits: Array) -> Array:
    """Log-odds of the positive class, ``[..., N, 2] -> [..., N]`` (monotone in its probability)."""
    return logits[..., 1] - logits[..., 0]


def group_accuracies(pred: Array, labels: Array, groups: Array, num_groups: int) -> Array:
    """Accuracy of every (group, label) cell, ``[..., num_groups, 2]``; NaN for an empty cell."""
    cell = jax.nn.one_hot(groups * 2 + labels, num_groups * 2)  # [N, 2G]
    ok = (pred == labels).astype(jnp.float32)
    counts = cell.sum(0)
    acc = jnp.where(counts > 0, (ok @ cell) / jnp.maximum(counts, 1), jnp.nan)
    return acc.reshape(acc.shape[:-1] + (num_groups, 2))


def worst_group_accuracy(pred: Array, labels: Array, groups: Array, num_groups: int) -> Array:
    """Lowest accuracy over the non-empty (group, label) cells."""
    acc = group_accuracies(pred, labels, groups, num_groups)
    return jnp.nanmin(acc.reshape(acc.shape[:-2] + (-1,)), axis=-1)


def fpr_gap(pred: Array, labels: Array, groups: Array) -> Array:
    """False-positive rate on identity examples minus that on non-identity examples (signed)."""
    neg = (labels == 0).astype(jnp.float32)
    ident = (groups > 0).astype(jnp.float32)
    fp = (pred == 1).astype(jnp.float32)
    fpr_id = _safe_div((fp * neg * ident).sum(-1), (neg * ident).sum(-1))
    fpr_bg = _safe_div((fp * neg * (1 - ident)).sum(-1), (neg * (1 - ident)).sum(-1))
    return fpr_id - fpr_bg


def flip_rate(pred: Array, pred_counterfactual: Array) -> Array:
    """Fraction of examples whose prediction changes when identity terms are swapped."""
    return (pred != pred_counterfactual).astype(jnp.float32).mean(-1)


def masked_auc(scores: Array, pos: Array, neg: Array) -> Array:
    """ROC AUC of ``scores`` with positives ``pos`` and negatives ``neg`` (0/1 weights over the
    same examples), ties counted one half: ``P(s_pos > s_neg) + 0.5 P(s_pos = s_neg)``.
    O(N log N) by sorting, so it stays cheap under ``vmap``. NaN if either set is empty.
    """
    order = jnp.argsort(scores)
    sorted_s = scores[order]
    cum_neg = jnp.concatenate([jnp.zeros(1), jnp.cumsum(neg[order])])
    lo = jnp.searchsorted(sorted_s, scores, side="left")
    hi = jnp.searchsorted(sorted_s, scores, side="right")
    neg_below = cum_neg[lo]
    neg_equal = cum_neg[hi] - cum_neg[lo]
    n_pos, n_neg = pos.sum(), neg.sum()
    auc = (pos * (neg_below + 0.5 * neg_equal)).sum() / jnp.maximum(n_pos * n_neg, 1.0)
    return jnp.where((n_pos > 0) & (n_neg > 0), auc, jnp.nan)


def bias_aucs(scores: Array, labels: Array, groups: Array, num_groups: int) -> dict[str, Array]:
    """Borkan et al. (2019) per-identity-group AUCs, each ``[num_groups - 1]`` (groups 1..G-1):

    - ``subgroup_auc``: positives and negatives both within the group;
    - ``bpsn_auc`` (background positive, subgroup negative);
    - ``bnsp_auc`` (background negative, subgroup positive).
    """
    if scores.ndim > 1:
        return jax.vmap(bias_aucs, in_axes=(0, None, None, None))(scores, labels, groups,
                                                                  num_groups)
    y = labels.astype(jnp.float32)

    def one(g):
        sub = (groups == g).astype(jnp.float32)
        bg = 1.0 - sub
        return (masked_auc(scores, sub * y, sub * (1 - y)),
                masked_auc(scores, bg * y, sub * (1 - y)),
                masked_auc(scores, sub * y, bg * (1 - y)))

    sub, bpsn, bnsp = jax.vmap(one)(jnp.arange(1, num_groups))
    return {"subgroup_auc": sub, "bpsn_auc": bpsn, "bnsp_auc": bnsp}
