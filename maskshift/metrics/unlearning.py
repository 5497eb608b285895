"""Unlearning metrics. Pure, jittable, and ``vmap``-able over a leading batch of logits (i.e. over
many edited parameter sets: ``jax.vmap(lambda p: metric(apply(p, x), ...))(params_batch)``).

Sets are given as 0/1 weights over a fixed array of examples, never by boolean indexing, so the
shapes stay static under ``jit``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from maskshift._types import Array


def _safe_div(num, den):
    return num / jnp.maximum(den, 1e-12)


def correct(logits: Array, labels: Array) -> Array:
    """1.0 where ``argmax(logits) == labels``. ``[..., N, C], [N] -> [..., N]``."""
    return (jnp.argmax(logits, -1) == labels).astype(jnp.float32)


def accuracy(logits: Array, labels: Array, weights: Array | None = None) -> Array:
    """(Weighted) accuracy. ``weights [N]`` selects a subset with 0/1 entries."""
    c = correct(logits, labels)
    if weights is None:
        return c.mean(-1)
    return _safe_div((c * weights).sum(-1), weights.sum(-1))


def forget_mask(labels: Array, forget_classes) -> Array:
    """1.0 where the label is one of ``forget_classes`` (an int or a sequence of ints)."""
    classes = jnp.atleast_1d(jnp.asarray(forget_classes))
    return jnp.any(labels[:, None] == classes[None, :], axis=-1).astype(jnp.float32)


def per_class_accuracy(logits: Array, labels: Array, num_classes: int) -> Array:
    """Accuracy of each class ``[..., num_classes]`` (NaN for a class with no examples)."""
    onehot = jax.nn.one_hot(labels, num_classes)  # [N, C]
    c = correct(logits, labels)  # [..., N]
    counts = onehot.sum(0)
    return jnp.where(counts > 0, (c @ onehot) / jnp.maximum(counts, 1), jnp.nan)


def forget_retain_accuracy(logits: Array, labels: Array, forget_classes) -> tuple[Array, Array]:
    """``(forget_acc, retain_acc)``: accuracy on the forget classes and on all others."""
    f = forget_mask(labels, forget_classes)
    return accuracy(logits, labels, f), accuracy(logits, labels, 1.0 - f)


def true_class_probability(logits: Array, labels: Array, weights: Array | None = None) -> Array:
    """Mean softmax probability of the true class, ``weights``-weighted like :func:`accuracy`."""
    p = jnp.take_along_axis(jax.nn.softmax(logits, -1), labels[..., None], -1)[..., 0]
    if weights is None:
        return p.mean(-1)
    return _safe_div((p * weights).sum(-1), weights.sum(-1))


def softmax_entropy(logits: Array) -> Array:
    """Entropy of the softmax of each row, ``[..., N, C] -> [..., N]``."""
    logp = jax.nn.log_softmax(logits, -1)
    return -(jnp.exp(logp) * logp).sum(-1)


def fit_logistic_1d(x: Array, y: Array, weights: Array, l2: float = 1.0, iters: int = 25):
    """Binary logistic regression on one feature by Newton's method, as scikit-learn's
    ``LogisticRegression(class_weight="balanced")`` with ``C = 1 / l2``: minimises
    ``0.5 * l2 * w**2 + sum_i s_i * logloss_i``, where ``s_i`` is the balanced class weight of
    example ``i`` times ``weights[i]`` (0/1 membership in the fitting set). The intercept is not
    penalised. Returns ``(w, b)``.
    """
    n = weights.sum()
    n_pos = (weights * y).sum()
    n_neg = n - n_pos
    s = weights * jnp.where(y > 0, _safe_div(n, 2 * n_pos), _safe_div(n, 2 * n_neg))

    def newton(theta, _):
        w, b = theta
        p = jax.nn.sigmoid(w * x + b)
        r = s * (p - y)
        g = jnp.array([l2 * w + (r * x).sum(), r.sum()])
        h_diag = s * p * (1 - p)
        hess = jnp.array([[l2 + (h_diag * x * x).sum(), (h_diag * x).sum()],
                          [(h_diag * x).sum(), h_diag.sum() + 1e-12]])
        return theta - jnp.linalg.solve(hess, g), None

    theta, _ = jax.lax.scan(newton, jnp.zeros(2), None, length=iters)
    return theta[0], theta[1]


def membership_inference(
    logits_members: Array,
    logits_nonmembers: Array,
    logits_target: Array,
    w_members: Array | None = None,
    w_nonmembers: Array | None = None,
    w_target: Array | None = None,
) -> Array:
    """SSD / Bad-Teacher style membership-inference score.

    A logistic-regression attack on the softmax entropy is fitted to tell ``members`` (retain-train)
    from ``nonmembers`` (test); the score is the mean member rate it predicts on ``target``
    (forget-train). A model that never saw the forget set scores like one on unseen data.
    The optional ``w_*`` are 0/1 weights selecting rows of each logits array.

    Shapes: ``[..., Nm, C], [..., Nn, C], [..., Nt, C] -> [...]``.
    """
    if logits_members.ndim > 2:  # batch of models: map over the leading axes
        return jax.vmap(membership_inference, in_axes=(0, 0, 0, None, None, None))(
            logits_members, logits_nonmembers, logits_target, w_members, w_nonmembers, w_target)
    nm, nn_, nt = logits_members.shape[0], logits_nonmembers.shape[0], logits_target.shape[0]
    w_m = jnp.ones(nm) if w_members is None else w_members
    w_n = jnp.ones(nn_) if w_nonmembers is None else w_nonmembers
    w_t = jnp.ones(nt) if w_target is None else w_target
    feat = jnp.concatenate([softmax_entropy(logits_members), softmax_entropy(logits_nonmembers)])
    # Centring the feature leaves the fit unchanged (the intercept is not penalised) and keeps
    # Newton's method well conditioned.
    mean = _safe_div((feat * jnp.concatenate([w_m, w_n])).sum(), (w_m.sum() + w_n.sum()))
    y = jnp.concatenate([jnp.ones(nm), jnp.zeros(nn_)])
    w, b = fit_logistic_1d(feat - mean, y, jnp.concatenate([w_m, w_n]))
    pred = (w * (softmax_entropy(logits_target) - mean) + b) > 0
    return _safe_div((pred * w_t).sum(), w_t.sum())
