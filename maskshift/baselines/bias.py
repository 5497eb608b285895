"""Bias-mitigation baselines. The linear erasers (PCA projection, INLP, LEACE) act on the
representation that enters the task's first edited layer (for the built-in text models, the pooled
embedding entering ``Dense_0``), or, where that layer is not a dense kernel (an attention
projection, a block's MLP of the transformer), on the one entering the model's ``Dense_0``
(:func:`eraser_site`); an affine eraser ``x' = x A + c`` is folded into that layer's
weights (``kernel' = A @ kernel``, ``bias' = bias + c @ kernel``), so the result is ordinary
params of the same model. Counterfactual data augmentation fine-tunes the whole model.

The erased concept is identity mention (any identity group vs none) for INLP and LEACE; the PCA
projection scores components across all identity groups.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.linear_model import LogisticRegression

from maskshift._types import Params, PRNGKey
from maskshift.models.pretrain import cross_entropy_loss, fit
from maskshift.tasks import BiasObjective, Task, get_leaf, retarget, set_leaves
from maskshift.tasks.paths import module_path


def _is_dense(task: Task) -> bool:
    """Whether the first edited leaf is a top-level dense kernel (one inside a block, like a
    transformer's ``Block_1/Mlp_0``, reads a per-token input the prefix does not give)."""
    path = task.edit_paths[0]
    return (path[-1] == "kernel" and np.ndim(get_leaf(task.params, path)) == 2
            and len(module_path(path)) == 1)


def eraser_site(task: Task) -> Task:
    """The task whose first edited layer an eraser folds into: ``task`` where that layer is a
    top-level dense kernel, else the same model edited at its ``Dense_0`` (the built-in text
    models: the pooled representation)."""
    if not isinstance(task.objective, BiasObjective):
        raise ValueError(f"Task {task.name!r} is not a bias task.")
    if _is_dense(task):
        return task
    names = getattr(task.model, "STAGE_OF", {})
    if "Dense_0" in names:
        return retarget(task, ("Dense_0",))
    raise ValueError(f"Linear erasure folds into a dense kernel; the first edited leaf "
                     f"{'/'.join(task.edit_paths[0])} is not one, and the model has no "
                     "Dense_0 stage to erase at.")


def representations(task: Task, split: str = "train") -> np.ndarray:
    """``[N, d]``: what enters the eraser's layer (:func:`eraser_site`), for every example of
    ``split``."""
    task = eraser_site(task)
    s = task.dataset.split(split)
    return np.asarray(jax.jit(task.prefix)(task.params, jnp.asarray(s.x)), np.float64)


def apply_affine(task: Task, a: np.ndarray, c: np.ndarray | None = None) -> Params:
    """Fold ``x' = x @ a + c`` (``a [d, d]``, ``c [d]``) into the eraser's dense layer
    (:func:`eraser_site`)."""
    task = eraser_site(task)
    path = task.edit_paths[0]
    w = np.asarray(get_leaf(task.params, path), np.float64)
    new = {path: a @ w}
    bias_path = path[:-1] + ("bias",)
    if c is not None:
        b = np.asarray(get_leaf(task.params, bias_path), np.float64)
        new[bias_path] = b + c @ w
    dtype = np.asarray(get_leaf(task.params, path)).dtype
    return set_leaves(task.params, list(new), [jnp.asarray(v, dtype) for v in new.values()])


def group_separation_scores(z: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Per column of ``z [N, k]``: variance of the group means over the mean within-group
    variance (a one-way ANOVA F-style ratio; high = the component tells groups apart)."""
    ids = np.unique(groups)
    means = np.stack([z[groups == g].mean(0) for g in ids])
    within = np.stack([z[groups == g].var(0) for g in ids]).mean(0)
    return means.var(0) / np.maximum(within, 1e-12)


def pca_projection(task: Task, key: PRNGKey, num_components: int = 2) -> Params:
    """Project out the principal components of the representation that best separate identity
    groups (scored by :func:`group_separation_scores`)."""
    del key
    x = representations(task)
    xc = x - x.mean(0)
    _, _, vt = np.linalg.svd(xc, full_matrices=False)  # rows: principal directions
    scores = group_separation_scores(xc @ vt.T, task.dataset.train.group)
    top = vt[np.argsort(scores)[::-1][:num_components]]  # [k, d]
    return apply_affine(task, np.eye(x.shape[1]) - top.T @ top)


def nullspace_projection(directions: np.ndarray, d: int) -> np.ndarray:
    """``I - B B^T`` with ``B`` an orthonormal basis of the span of ``directions [k, d]``."""
    if len(directions) == 0:
        return np.eye(d)
    u, s, _ = np.linalg.svd(directions.T, full_matrices=False)
    basis = u[:, s > 1e-10 * s.max()]
    return np.eye(d) - basis @ basis.T


def inlp(task: Task, key: PRNGKey, iterations: int = 8) -> Params:
    """Iterative nullspace projection (Ravfogel et al. 2020): train a linear identity classifier,
    project the representation onto its nullspace, repeat on the projected data."""
    del key
    x = representations(task)
    z = (task.dataset.train.group > 0).astype(int)
    d = x.shape[1]
    directions, p = [], np.eye(d)
    for _ in range(iterations):
        clf = LogisticRegression(max_iter=2000).fit(x @ p, z)
        directions.append(clf.coef_[0])
        p = nullspace_projection(np.stack(directions), d)
    return apply_affine(task, p)


def leace_eraser(x: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """LEACE (Belrose et al. 2023) for a binary concept, in row-vector form ``x' = x a + c``.

    With ``W = (Sigma_xx^{1/2})^+`` and ``P`` the projection onto the column space of
    ``W Sigma_xz``, the eraser is ``x' = x - (x - mu) (W^+ P W)^T``. For binary ``z``,
    ``Sigma_xz`` is proportional to the class-mean difference, so ``P`` has rank 1.
    """
    mu = x.mean(0)
    xc = x - mu
    cov = xc.T @ xc / len(x)
    evals, evecs = np.linalg.eigh(cov)
    keep = evals > 1e-10 * evals.max()
    w = (evecs[:, keep] / np.sqrt(evals[keep])) @ evecs[:, keep].T  # Sigma^{-1/2}
    w_pinv = (evecs[:, keep] * np.sqrt(evals[keep])) @ evecs[:, keep].T  # Sigma^{1/2}
    sxz = xc.T @ (z - z.mean())[:, None] / len(x)  # [d, 1]
    v = w @ sxz
    proj = v @ v.T / float(np.vdot(v, v))
    m = w_pinv @ proj @ w  # acts on column vectors
    a = np.eye(x.shape[1]) - m.T
    return a, mu @ m.T


def leace(task: Task, key: PRNGKey) -> Params:
    """Closed-form linear concept erasure of identity mention."""
    del key
    x = representations(task)
    a, c = leace_eraser(x, (task.dataset.train.group > 0).astype(float))
    return apply_affine(task, a, c)


def counterfactual_augmentation(task: Task, key: PRNGKey, epochs: int = 5,
                                learning_rate: float = 1e-3) -> Params:
    """Fine-tune on the train split plus every example's counterfactual twin, with the same
    label (Counterfactual Data Augmentation)."""
    tr = task.dataset.train
    if tr.x_cf is None:
        raise ValueError("Counterfactual augmentation needs counterfactual twins in the data.")
    x = np.concatenate([tr.x, tr.x_cf])
    y = np.concatenate([tr.y, tr.y])
    return fit(task.params, cross_entropy_loss(task.apply_fn), (x, y), key, epochs=epochs,
               batch_size=128, learning_rate=learning_rate)


BIAS_BASELINES = {
    "pca_projection": pca_projection,
    "inlp": inlp,
    "leace": leace,
    "cda_finetune": counterfactual_augmentation,
}
