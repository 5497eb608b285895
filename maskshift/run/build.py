"""The task and environment a :class:`~maskshift.run.config.RunConfig` edits in: your own task,
the one ``task_factory`` builds, or a built-in one."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from maskshift._io import tree_checksum
from maskshift.data import load_dataset, resolve_dataset
from maskshift.data.forget_sets import check_fraction, random_forget_set
from maskshift.envs import ENV_ALIASES, make
from maskshift.models import check_model
from maskshift.run.chain import continue_from
from maskshift.run.config import RunConfig, check_env
from maskshift.tasks import (
    FORGET_REWARDS,
    Objective,
    Task,
    backdoor_task,
    bias_task,
    default_split,
    example_pool_task,
    forget_examples_task,
    pool_task,
    unlearning_task,
)


def check_amortized(cfg: RunConfig) -> None:
    """Refuse ``amortized`` where it means nothing (``ValueError``, naming the fix)."""
    if not cfg.amortized:
        return
    if cfg.task != "unlearn":
        raise ValueError(f"`amortized` trains over a pool of forget classes: it needs "
                         f"`task='unlearn'`, not {cfg.task!r}.")
    if cfg.objective_factory is not None:
        raise ValueError("`amortized` trains over a pool of the built-in unlearning objective's "
                         "forget classes; drop `objective_factory` (or `amortized`).")
    if cfg.algo != "ppo":
        raise ValueError(f"`amortized` trains one policy for many edits: it needs "
                         f"`algo='ppo'`, not {cfg.algo!r} (a controller edits one class per run).")


def check_forget_examples(cfg: RunConfig) -> None:
    """Refuse a forget set of examples where it means nothing (``ValueError``, naming the
    fix)."""
    if not cfg.forgets_examples:
        return
    if cfg.forget_fraction is not None and cfg.forget_indices is not None:
        raise ValueError("Give `forget_fraction` (a random share of the train split) or "
                         "`forget_indices` (your list of train rows), not both.")
    if cfg.amortized and cfg.forget_fraction is None:
        raise ValueError("`amortized` over examples trains on random forget sets: give "
                         "`forget_fraction` (your own list is one set; edit it zero-shot with a "
                         "trained policy).")
    _refuse_outside_unlearning(cfg, "A forget set of examples is an unlearning request",
                               ("from_run", "objective_factory"),
                               "does not combine with `{field}` yet; drop `{field}` (or the "
                               "forget set)")
    if cfg.forget_fraction is not None:
        check_fraction(cfg.forget_fraction)
    if cfg.forget_reward not in FORGET_REWARDS:
        raise ValueError(f"Unknown forget reward {cfg.forget_reward!r}; choose one of "
                         f"{', '.join(map(repr, FORGET_REWARDS))}.")


def forget_set(cfg: RunConfig, task: Task) -> tuple[int, ...] | np.ndarray:
    """The train rows ``cfg`` asks ``task`` to forget (drawn, or as listed)."""
    if cfg.forget_indices is not None:
        return cfg.forget_indices
    y = task.dataset.train.y
    return random_forget_set(len(y), cfg.forget_fraction, cfg.forget_seed,
                             labels=y if cfg.forget_stratified else None)


def _warn(message: str) -> None:
    warnings.warn(message, UserWarning, stacklevel=3)


def check_from_run(cfg: RunConfig) -> None:
    """Refuse ``from_run`` where it means nothing (``ValueError``, naming the fix)."""
    if cfg.from_run is None:
        return
    _refuse_outside_unlearning(cfg, "`from_run` continues a sequence of unlearning requests",
                               ("amortized", "objective_factory", "task_factory"),
                               "edits a built-in model's edited checkpoint; drop `{field}` (or "
                               "`from_run`)", subject="`from_run`")


def _refuse_outside_unlearning(cfg: RunConfig, what: str, fields: tuple[str, ...],
                               clash: str, subject: str = "A forget set of examples") -> None:
    """``ValueError`` unless ``cfg`` is an unlearning run with none of ``fields`` set: ``what``
    names the option, ``clash`` (with ``{field}``) says why a field does not combine."""
    if cfg.task != "unlearn":
        raise ValueError(f"{what}: it needs `task='unlearn'`, not {cfg.task!r}.")
    for field in fields:
        if getattr(cfg, field):
            raise ValueError(f"{subject} {clash.format(field=field)}.")


def load_task_factory(spec: str, field: str = "task_factory"):
    """``"package.module:function"`` -> the function (a clear error, naming ``field``, for a
    wrong spec)."""
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"`{field}` {spec!r} must look like package.module:function.")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"`{field}` {spec!r} cannot be loaded ({type(err).__name__}: "
                         f"{err}); check the module is importable and defines {name}.") from None
    if not callable(fn):
        raise ValueError(f"`{field}` {spec!r} is not a function.")
    return fn


def call_factory(spec: str, field: str):
    """What the user's factory ``spec`` returns; its failure as one ``ValueError`` line."""
    factory = load_task_factory(spec, field)
    try:
        return factory()
    except Exception as err:  # a user's code: its failure in one line, the fix named
        first = str(err).splitlines()[0][:200] if str(err) else ""
        raise ValueError(f"`{field}` {spec!r} failed ({type(err).__name__}: {first}); call it "
                         "yourself to see the traceback.") from None


def load_objective(spec: str) -> Objective:
    """The :class:`~maskshift.tasks.Objective` the factory ``spec`` returns (``ValueError``
    naming the problem otherwise)."""
    objective = call_factory(spec, "objective_factory")
    if not isinstance(objective, Objective):
        raise ValueError(f"`objective_factory` {spec!r} returned {type(objective).__name__}, not "
                         "a maskshift.tasks.Objective.")
    return objective


def check_objective(task: Task) -> None:
    """Run ``task``'s objective once on a train minibatch: its metrics must be a finite vector of
    ``len(metric_names)`` and its reward terms finite scalars (``ValueError`` naming the fault,
    before anything trains)."""
    obj = task.objective
    arrays = task.arrays()
    try:
        batch = obj.sample(jax.random.key(0), arrays.train, 0)
        metrics = obj.measure(lambda h: task.suffix(arrays.params, h), batch)
        terms = obj.terms(metrics, arrays.base_metrics[0])
    except Exception as err:  # a user's objective: say which part failed, in one line
        raise ValueError(f"Objective {obj.name!r} failed on a train minibatch "
                         f"({type(err).__name__}: {str(err).splitlines()[0][:200]}).") from None
    if jnp.shape(metrics) != (len(obj.metric_names),):
        raise ValueError(f"Objective {obj.name!r} measured metrics of shape {jnp.shape(metrics)}; "
                         f"measure() must return one value per metric name "
                         f"({len(obj.metric_names)}).")
    if len(terms) != 2 or any(jnp.shape(t) != () for t in terms):
        raise ValueError(f"Objective {obj.name!r}: terms() must return two scalars (utility, "
                         f"edit), got shapes {[jnp.shape(t) for t in terms]}.")
    if not all(bool(jnp.isfinite(t)) for t in (*terms, *metrics)):
        raise ValueError(f"Objective {obj.name!r} gives a non-finite reward term or metric on the "
                         "original model; its reward must be a finite scalar per environment.")


def task_fingerprint(task: Task) -> str:
    """A checksum of what defines a task: its name, objective, edited paths (and their matrix
    views where not the default), params and data."""
    d = task.dataset
    splits = [(s.x, s.y) for s in (d.train, d.val, d.test)]
    defaults = tuple(default_split(p, s) for p, s in zip(task.edit_paths, task.leaf_shapes,
                                                         strict=True))
    # the matrix views, where a split differs from the default (so older fingerprints stand)
    views = () if task.splits == defaults else (task.splits,)
    # a pool of sequence requests: each target's earlier requests and starting model
    gone = getattr(task.objective, "pool_forgotten", ())
    seq = () if task.starts is None else (gone,)
    head = repr((task.name, task.objective, task.edit_paths, *views, *seq)).encode()
    arrays = (task.params, splits) if task.starts is None else (task.params, splits, task.starts)
    return hashlib.sha256(head + tree_checksum(arrays).encode()).hexdigest()[:16]


def builtin_task(cfg: RunConfig, model_seed: int = 0, warn=None) -> Task:
    """The built-in task ``cfg`` names, on the model pretrained with ``model_seed``; with
    ``cfg.objective_factory``, that task's model and data under the factory's objective; with
    ``cfg.from_run``, its request on that run's edited model (:mod:`maskshift.run.chain`); with
    a forget set of examples, that request (``warn`` hears what the set means for a class it
    takes wholly)."""
    check_forget_examples(cfg)  # before any data is loaded or model trained
    data = load_dataset(resolve_dataset(cfg.task, cfg.dataset), data_dir=cfg.data_dir)
    check_model(cfg.model, data.kind)
    if cfg.task == "unlearn":
        task = unlearning_task(cfg.forget_classes, dataset=data, edit=cfg.edit, seed=model_seed,
                               batch_size=cfg.eval_batch or 64,
                               amortized=cfg.amortized and not cfg.forgets_examples)
    elif cfg.task == "backdoor":
        task = backdoor_task(dataset=data, target_class=cfg.target_class,
                             trigger_size=cfg.trigger_size, poison_rate=cfg.poison_rate,
                             edit=cfg.edit, seed=model_seed, batch_size=cfg.eval_batch or 64,
                             edit_term=cfg.backdoor_reward)
    else:
        task = bias_task(dataset=data, edit=cfg.edit, seed=model_seed,
                         batch_size=cfg.eval_batch or 128, model=cfg.model)
    if cfg.from_run is not None:
        return continue_from(task, cfg.from_run)
    if cfg.forgets_examples:
        if cfg.amortized:
            return example_pool_task(task, cfg.forget_fraction, cfg.forget_sets,
                                     seed=cfg.forget_seed, stratified=cfg.forget_stratified,
                                     reward=cfg.forget_reward)
        return forget_examples_task(task, forget_set(cfg, task), cfg.forget_reward,
                                    warn=warn or _warn)
    if cfg.objective_factory is None:
        return task
    task = dataclasses.replace(task, name=f"{task.name}-own",
                               objective=load_objective(cfg.objective_factory))
    check_objective(task)
    return task


def resolve_task(cfg: RunConfig, task: Task | None = None) -> tuple[RunConfig, Task]:
    """The task a run edits and the config that records it: ``task`` (your own), else the one
    ``cfg.task_factory`` builds, else the built-in ``cfg.task`` on ``cfg.dataset``."""
    if cfg.task_factory is not None and cfg.objective_factory is not None:
        raise ValueError("Give `task_factory` (your own task, objective included) or "
                         "`objective_factory` (your objective on a built-in task), not both.")
    if task is None and cfg.task_factory is not None:
        task = call_factory(cfg.task_factory, "task_factory")
        if not isinstance(task, Task):
            raise ValueError(f"`task_factory` {cfg.task_factory!r} returned "
                             f"{type(task).__name__}, not a maskshift.Task.")
    check_amortized(cfg)
    check_from_run(cfg)
    if task is not None and cfg.forgets_examples:
        raise ValueError("Your own task carries its own request: build it with "
                         "task_from_model(..., forget_indices=...) instead of `forget_fraction`/"
                         "`forget_indices`.")
    if task is not None and cfg.from_run is not None:
        raise ValueError("`from_run` builds the task from its checkpoint; drop it, or drop your "
                         "own task (maskshift.tasks.next_request_task continues your own).")
    if task is None:
        task = builtin_task(cfg)
        if cfg.objective_factory is None and cfg.from_run is None:
            return cfg, task
        return dataclasses.replace(cfg, task_fingerprint=task_fingerprint(task)), task
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
    check_env(cfg.env)
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
