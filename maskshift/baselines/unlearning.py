"""Unlearning baselines. Each takes a :class:`~maskshift.tasks.Task` (with an unlearning objective)
and a PRNG key and returns edited params of the same model, to be reported by the same code as
every other method."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from maskshift._types import Params, PRNGKey
from maskshift.data import Dataset, Split
from maskshift.models.pretrain import (
    cross_entropy_loss,
    default_model,
    fit,
    pretrained,
    train_classifier,
)
from maskshift.tasks import ExampleObjective, Task, UnlearnObjective


def forget_rows(task: Task) -> np.ndarray:
    """The request's forget set as a boolean mask over the train rows (a class's examples, or
    the named examples)."""
    if not isinstance(task.objective, UnlearnObjective | ExampleObjective):
        raise ValueError(f"Task {task.name!r} is not an unlearning task.")
    return task.objective.train_forget(task.dataset)


def retain_dataset(task: Task) -> Dataset:
    """The task's dataset with every forget example removed from the train split."""
    tr = task.dataset.train
    keep = ~forget_rows(task)
    return dataclasses.replace(task.dataset, train=Split(tr.x[keep], tr.y[keep]))


def retrain(task: Task, key: PRNGKey) -> Params:
    """The gold reference: the same architecture trained from scratch on the retain set only."""
    if task.model is None:
        raise ValueError("Retraining needs the task's Flax module (Task.model); built-in tasks "
                         "carry it, for your own model pass model=... to the Task.")
    _, config = default_model(task.dataset)
    return train_classifier(task.model, retain_dataset(task), key, config)


def retrained(task: Task, seed: int, *, use_cache: bool = True) -> Params:
    """The retrained reference every Avg. Gap is measured against: :func:`retrain` with
    ``jax.random.key(seed)``, computed once per (model, data, forget set, seed) and cached like
    the pretrained models (the retain set's data fingerprint keys the entry)."""
    if task.model is None:
        raise ValueError("The retrained reference needs the task's Flax module (Task.model) to "
                         "train from scratch; your own Task has none, so the Avg. Gap cannot be "
                         "computed (pass model=... to the Task, or read the other figures).")
    _, config = default_model(task.dataset)
    return pretrained(retain_dataset(task), seed, model=task.model, config=config,
                      use_cache=use_cache).params


def finetune(task: Task, key: PRNGKey, epochs: int = 5, learning_rate: float = 1e-3) -> Params:
    """Fine-tune the original on the retain set (catastrophic forgetting of the rest)."""
    data = retain_dataset(task).train
    return fit(task.params, cross_entropy_loss(task.apply_fn), (data.x, data.y), key,
               epochs=epochs, batch_size=64, learning_rate=learning_rate)


def gradient_ascent(task: Task, key: PRNGKey, epochs: int = 20, learning_rate: float = 1e-4,
                    graddiff: bool = False) -> Params:
    """Ascend the cross-entropy on the forget set; with ``graddiff`` also descend it on a retain
    minibatch of the same size at every step (GradDiff)."""
    tr = task.dataset.train
    f = forget_rows(task)
    xf, yf = tr.x[f], tr.y[f]
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel()[-1])
    r_idx = rng.choice(np.flatnonzero(~f), size=len(yf), replace=len(yf) > (~f).sum())
    ce = cross_entropy_loss(task.apply_fn)

    def loss(params, xf, yf, xr, yr):
        return -ce(params, xf, yf) + (ce(params, xr, yr) if graddiff else 0.0)

    return fit(task.params, loss, (xf, yf, tr.x[r_idx], tr.y[r_idx]), key, epochs=epochs,
               batch_size=32, learning_rate=learning_rate)


def random_relabel(task: Task, key: PRNGKey, num_classes: int) -> np.ndarray:
    """A label for every train example: forget examples get a random *wrong* class."""
    y = np.asarray(task.dataset.train.y).copy()
    f = forget_rows(task)
    shift = np.asarray(jax.random.randint(key, (int(f.sum()),), 1, num_classes))
    y[f] = (y[f] + shift) % num_classes
    return y


def random_labels(task: Task, key: PRNGKey, epochs: int = 3,
                  learning_rate: float = 1e-3) -> Params:
    """Amnesiac-style: relabel the forget set with random wrong labels and fine-tune on it
    together with the retain set."""
    k_lab, k_fit = jax.random.split(key)
    y = random_relabel(task, k_lab, task.dataset.num_classes)
    return fit(task.params, cross_entropy_loss(task.apply_fn), (task.dataset.train.x, y), k_fit,
               epochs=epochs, batch_size=64, learning_rate=learning_rate)


def diagonal_fisher(apply_fn, params: Params, x, y, batch_size: int = 64) -> Params:
    """SSD's importance: the squared gradient of the batch-mean loss, averaged over batches."""
    ce = cross_entropy_loss(apply_fn)
    grad = jax.jit(jax.grad(ce))
    n = len(y)
    total = jax.tree.map(jnp.zeros_like, params)
    batches = 0
    for i in range(0, n, batch_size):
        g = grad(params, jnp.asarray(x[i : i + batch_size]), jnp.asarray(y[i : i + batch_size]))
        total = jax.tree.map(lambda t, gi: t + gi * gi, total, g)
        batches += 1
    return jax.tree.map(lambda t: t / batches, total)


def dampen(params: Params, imp_full: Params, imp_forget: Params, alpha: float = 10.0,
           lam: float = 1.0) -> Params:
    """SSD's rule: where ``I_Df > alpha * I_D``, scale the weight by ``min(lam * I_D / I_Df, 1)``;
    leave every other weight untouched."""
    def one(p, i_d, i_f):
        selected = i_f > alpha * i_d
        beta = jnp.minimum(lam * i_d / jnp.where(selected, i_f, 1.0), 1.0)
        return jnp.where(selected, p * beta, p)

    return jax.tree.map(one, params, imp_full, imp_forget)


def ssd(task: Task, key: PRNGKey, alpha: float = 10.0, lam: float = 1.0) -> Params:
    """Selective Synaptic Dampening (Foster et al. 2024): diagonal-Fisher importances on the full
    train set and on the forget set, then :func:`dampen` (defaults as its reference code)."""
    del key  # deterministic
    tr = task.dataset.train
    f = forget_rows(task)
    imp_d = diagonal_fisher(task.apply_fn, task.params, tr.x, tr.y)
    imp_f = diagonal_fisher(task.apply_fn, task.params, tr.x[f], tr.y[f])
    return dampen(task.params, imp_d, imp_f, alpha, lam)


UNLEARNING_BASELINES = {
    "retrain": retrain,
    "finetune": finetune,
    "gradient_ascent": gradient_ascent,
    "graddiff": lambda task, key, **setting: gradient_ascent(task, key, graddiff=True, **setting),
    "random_labels": random_labels,
    "ssd": ssd,
}

__all__ = ["UNLEARNING_BASELINES", "dampen", "diagonal_fisher", "finetune", "forget_rows",
           "gradient_ascent", "random_labels", "random_relabel", "retain_dataset", "retrain",
           "retrained", "ssd"]
