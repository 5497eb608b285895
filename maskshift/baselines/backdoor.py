"""Backdoor-removal baselines. Each takes a :class:`~maskshift.tasks.Task` with a
:class:`~maskshift.tasks.BackdoorObjective` and a key and returns edited params of the same model,
reported by the same code as every editor (:func:`maskshift.metrics.backdoor_report`):

- **clean fine-tuning**: fine-tune the backdoored model on the clean train split;
- **fine-pruning** (Liu, Dolan-Gavitt and Garg, RAID 2018): prune the units of the last hidden
  layer least active on clean data (the backdoor hides in units clean inputs leave dormant), then
  fine-tune on clean data with the pruned units held at zero. The paper prunes until clean
  accuracy drops; here the pruned share is a grid chosen on val (maskshift.baselines.GRIDS) whose
  values start above the digits CNN's dead units (26 of its 64 hidden units never fire on clean
  data, so pruning fewer than 40% changes nothing);
- **clean retraining**: the same architecture trained from scratch on the clean train split (the
  reference a removal method is measured against; it never saw the trigger).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from maskshift._types import Params, PRNGKey
from maskshift.baselines.field import masked_gradients
from maskshift.models.pretrain import cross_entropy_loss, default_model, fit, train_classifier
from maskshift.tasks import BackdoorObjective, Task, set_leaves

PRUNED_LAYER = "Dense_0"


def _check(task: Task) -> None:
    if not isinstance(task.objective, BackdoorObjective):
        raise ValueError(f"Task {task.name!r} is not a backdoor-removal task.")
    if task.model is None:
        raise ValueError("The backdoor baselines need the task's Flax module (Task.model); the "
                         "built-in backdoor task carries it.")


def clean_finetune(task: Task, key: PRNGKey, epochs: int = 5,
                   learning_rate: float = 1e-3) -> Params:
    """Fine-tune the backdoored model on the clean train split."""
    _check(task)
    tr = task.dataset.train
    return fit(task.params, cross_entropy_loss(task.apply_fn), (tr.x, tr.y), key, epochs=epochs,
               batch_size=64, learning_rate=learning_rate)


def unit_activity(task: Task, layer: str = PRUNED_LAYER, batch_size: int = 512) -> np.ndarray:
    """Mean activation of each unit of ``layer`` (after its nonlinearity) on the clean train
    split, ``[units]``."""
    stop = task.model.STAGE_OF[layer] + 1
    hidden = jax.jit(lambda p, x: task.model.apply(p, x, stop=stop))
    x = task.dataset.train.x
    total = sum(np.asarray(hidden(task.params, jnp.asarray(x[i : i + batch_size]))).sum(0)
                for i in range(0, len(x), batch_size))
    return total / len(x)


def prune_mask(task: Task, prune_fraction: float, layer: str = PRUNED_LAYER) -> Params:
    """1.0 everywhere but on the ``prune_fraction`` least active units of ``layer`` (their
    kernel column and bias), 0.0 there."""
    if not 0.0 <= prune_fraction < 1.0:
        raise ValueError(f"Fine-pruning's prune fraction must lie in [0, 1), got "
                         f"{prune_fraction}.")
    activity = unit_activity(task, layer)
    pruned = np.argsort(activity, kind="stable")[: int(round(prune_fraction * activity.size))]
    keep = np.ones(activity.size, np.float32)
    keep[pruned] = 0.0
    ones = jax.tree.map(jnp.ones_like, task.params)
    paths = (("params", layer, "kernel"), ("params", layer, "bias"))
    kernel = jnp.broadcast_to(jnp.asarray(keep), task.params["params"][layer]["kernel"].shape)
    return set_leaves(ones, paths, (kernel, jnp.asarray(keep)))


def fine_pruning(task: Task, key: PRNGKey, prune_fraction: float = 0.75, epochs: int = 5,
                 learning_rate: float = 1e-3) -> Params:
    """Fine-pruning: prune the least active hidden units on clean data, then fine-tune on clean
    data with them held at zero (module docstring)."""
    _check(task)
    mask = prune_mask(task, prune_fraction)
    pruned = jax.tree.map(jnp.multiply, task.params, mask)
    tr = task.dataset.train
    return fit(pruned, cross_entropy_loss(task.apply_fn), (tr.x, tr.y), key, epochs=epochs,
               batch_size=64, learning_rate=learning_rate,
               gradient_transform=masked_gradients(mask))


def clean_retrain(task: Task, key: PRNGKey) -> Params:
    """The architecture trained from scratch on the clean train split."""
    _check(task)
    _, config = default_model(task.dataset)
    return train_classifier(task.model, task.dataset, key, config)


BACKDOOR_BASELINES = {
    "clean_retrain": clean_retrain,
    "clean_finetune": clean_finetune,
    "fine_pruning": fine_pruning,
}
