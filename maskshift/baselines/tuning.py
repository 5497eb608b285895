"""One small grid per unlearning and backdoor baseline, chosen on the **val** split by the rule
every editor's step selection uses (:meth:`~maskshift.tasks.Objective.selection_key`). For
unlearning: among settings whose val retain accuracy stays within ``tolerance`` of the
original's, the lowest val forget accuracy, then the lowest forget confidence down to the reward's
floor, then the higher retain accuracy; for backdoor removal: among settings whose clean accuracy
stays within ``tolerance``, the lowest attack success rate.

Each grid is three values of the method's main setting around its paper's default (the middle
value). The chosen setting is reported beside the figures, so a table says which one won.
"""

from __future__ import annotations

import itertools
import time

import jax

from maskshift._types import Params, PRNGKey
from maskshift.tasks import Task

GRIDS: dict[str, dict[str, tuple]] = {
    "finetune": {"learning_rate": (3e-4, 1e-3, 3e-3)},
    "gradient_ascent": {"learning_rate": (3e-5, 1e-4, 3e-4)},
    "graddiff": {"learning_rate": (3e-5, 1e-4, 3e-4)},
    "random_labels": {"learning_rate": (3e-4, 1e-3, 3e-3)},
    "ssd": {"alpha": (5.0, 10.0, 20.0)},
    "salun": {"learning_rate": (3e-4, 1e-3, 3e-3)},
    "l1_sparse": {"gamma": (1e-4, 5e-4, 2e-3)},
    "scrub": {"learning_rate": (5e-4, 1e-3, 2e-3)},
    "clean_finetune": {"learning_rate": (3e-4, 1e-3, 3e-3)},
    "fine_pruning": {"prune_fraction": (0.6, 0.75, 0.9)},
}


def settings(method: str) -> list[dict]:
    """Every setting of ``method``'s grid (one empty setting for a method without one)."""
    grid = GRIDS.get(method, {})
    return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


def tuned(task: Task, method: str, fn, key: PRNGKey, tolerance: float,
          log=lambda s: None) -> tuple[Params, dict, list[dict]]:
    """``fn(task, key, **setting)`` for every setting of ``method``'s grid, the same key each;
    returns the params of the setting the val rule prefers, that setting, and every setting's
    val report and wall seconds (``{"setting", "val", "seconds"}``)."""
    original = task.report(task.params, "val", with_mia=False)
    tried, ranked = [], []
    for setting in settings(method):
        t0 = time.perf_counter()
        params = jax.block_until_ready(fn(task, key, **setting))
        seconds = time.perf_counter() - t0
        val = task.report(params, "val", with_mia=False)
        ranked.append((task.objective.selection_key(val, original, tolerance), params))
        tried.append({"setting": setting, "val": val, "seconds": seconds})
        shown = ("forget_acc", "retain_acc", "worst_group_acc", "accuracy", "clean_acc", "asr")
        log(f"    {method} {setting}: " + "  ".join(
            f"{k} {val[k]:.3f}" for k in shown if k in val) + f"  {seconds:.1f} s")
    best = max(range(len(tried)), key=lambda i: ranked[i][0])  # ties: the earliest setting
    return ranked[best][1], tried[best]["setting"], tried
