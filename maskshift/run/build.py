"""The task and environment a :class:`~maskshift.run.config.RunConfig` edits in: your own task,
the one ``task_factory`` builds, or a built-in one."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib

from maskshift._io import tree_checksum
from maskshift.data import load_dataset, resolve_dataset
from maskshift.envs import ENV_ALIASES, make
from maskshift.run.config import RunConfig
from maskshift.tasks import Task, bias_task, pool_task, unlearning_task


def check_amortized(cfg: RunConfig) -> None:
    """Refuse ``amortized`` where it means nothing (``ValueError``, naming the fix)."""
    if not cfg.amortized:
        return
    if cfg.task != "unlearn":
        raise ValueError(f"`amortized` trains over a pool of forget classes: it needs "
                         f"`task='unlearn'`, not {cfg.task!r}.")
    if cfg.algo != "ppo":
        raise ValueError(f"`amortized` trains one policy for many edits: it needs "
                         f"`algo='ppo'`, not {cfg.algo!r} (a controller edits one class per run).")


def load_task_factory(spec: str):
    """``"package.module:function"`` -> the function (a clear error for a wrong spec)."""
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"`task_factory` {spec!r} must look like package.module:function.")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"`task_factory` {spec!r} cannot be loaded ({type(err).__name__}: "
                         f"{err}); check the module is importable and defines {name}.") from None
    if not callable(fn):
        raise ValueError(f"`task_factory` {spec!r} is not a function.")
    return fn


def task_fingerprint(task: Task) -> str:
    """A checksum of what defines a task: its name, objective, edited paths, params and data."""
    d = task.dataset
    splits = [(s.x, s.y) for s in (d.train, d.val, d.test)]
    head = repr((task.name, task.objective, task.edit_paths)).encode()
    return hashlib.sha256(head + tree_checksum((task.params, splits)).encode()).hexdigest()[:16]


def builtin_task(cfg: RunConfig) -> Task:
    data = load_dataset(resolve_dataset(cfg.task, cfg.dataset), data_dir=cfg.data_dir)
    if cfg.task == "unlearn":
        return unlearning_task(cfg.forget_classes, dataset=data, edit=cfg.edit,
                               batch_size=cfg.eval_batch or 64, amortized=cfg.amortized)
    return bias_task(dataset=data, edit=cfg.edit, batch_size=cfg.eval_batch or 128)


def resolve_task(cfg: RunConfig, task: Task | None = None) -> tuple[RunConfig, Task]:
    """The task a run edits and the config that records it: ``task`` (your own), else the one
    ``cfg.task_factory`` builds, else the built-in ``cfg.task`` on ``cfg.dataset``."""
    if task is None and cfg.task_factory is not None:
        task = load_task_factory(cfg.task_factory)()
        if not isinstance(task, Task):
            raise ValueError(f"`task_factory` {cfg.task_factory!r} returned "
                             f"{type(task).__name__}, not a maskshift.Task.")
    check_amortized(cfg)
    if task is None:
        return cfg, builtin_task(cfg)
    if cfg.amortized and task.objective.num_targets == 1:
        task = pool_task(task, cfg.forget_classes)
    if task.objective.num_targets > 1:
        cfg = dataclasses.replace(cfg, amortized=True,
                                  forget_classes=task.objective.forget_classes)
    if cfg.eval_batch is not None:
        task = dataclasses.replace(task, objective=dataclasses.replace(
            task.objective, batch_size=cfg.eval_batch))
    return dataclasses.replace(cfg, task=task.objective.name, dataset=task.dataset.name,
                               task_fingerprint=task_fingerprint(task)), task


def build_env(cfg: RunConfig, task: Task | None = None):
    """The environment and ``EnvParams`` a run edits in (validates env, task, dataset, classes,
    rank). ``task``: your own :class:`~maskshift.tasks.Task` instead of the built-in one."""
    if cfg.env not in ENV_ALIASES:
        raise ValueError(f"Unknown env {cfg.env!r}; choose 'mask' or 'shift'.")
    if task is None:
        _, task = resolve_task(cfg)
    overrides = {"max_steps_in_episode": cfg.episode_length}
    if cfg.step_size is not None:
        overrides["step_size"] = cfg.step_size
    if cfg.lambda_utility is not None:
        overrides["lambda_utility"] = cfg.lambda_utility
    if cfg.lambda_edit is not None:
        overrides["lambda_edit"] = cfg.lambda_edit
    return make(ENV_ALIASES[cfg.env], task=task, rank=cfg.rank, observation=cfg.observation,
                minibatch=cfg.minibatch, **overrides)
