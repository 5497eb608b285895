"""The built-in tasks and the way to bring your own model: :func:`unlearning_task`,
:func:`bias_task`, :func:`backdoor_task`, :func:`pool_task` and :func:`task_from_model`."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence

import jax
import numpy as np

from maskshift._types import Params
from maskshift.data import Dataset, Split, check_forget_classes, check_task, load_dataset
from maskshift.data.backdoor import Trigger, poison
from maskshift.data.forget_sets import check_forget_set, random_forget_sets
from maskshift.models import model_shapes, pretrained
from maskshift.tasks.forget_examples import ExampleObjective, heldout_levels
from maskshift.tasks.objectives import BackdoorObjective, BiasObjective, UnlearnObjective
from maskshift.tasks.paths import Path, module_path, resolve_edit
from maskshift.tasks.task import ApplyFn, Task


def pool_task(task: Task, classes: Sequence[int]) -> Task:
    """``task`` (an unlearning task) as a distribution of tasks: each episode forgets one of
    ``classes`` (at least two; a single class is the ordinary task)."""
    if not isinstance(task.objective, UnlearnObjective):
        raise ValueError(f"A pool of forget classes needs an unlearning task, not "
                         f"{task.objective.name!r}.")
    classes = check_forget_classes(np.atleast_1d(classes), task.dataset.num_classes)
    if len(set(classes)) < 2:
        raise ValueError(f"`amortized` trains over a pool of forget classes and got "
                         f"{list(classes)}; give at least two (`forget_classes=(0, 1, 2, 3, 4)`), "
                         "or drop `amortized` to forget one class.")
    obj = dataclasses.replace(task.objective, forget_classes=tuple(classes),
                              pool=tuple((c,) for c in classes))
    name = task.name.split("-forget")[0] + f"-pool{'-'.join(map(str, classes))}"
    return dataclasses.replace(task, name=name, objective=obj)


def sequence_pool_task(task: Task, requests: Sequence, starts: Sequence) -> Task:
    """``task`` (an unlearning task on the pretrained model) as a pool of requests in the middle
    of sequences: request ``i`` is ``(earlier, c)``: forget class ``c`` on the model edited for
    the ``earlier`` classes, whose edited leaves are ``starts[i]`` (one array per edited leaf;
    ``earlier`` empty: the pretrained leaves). Each target's retain set, original metrics and
    reports leave its earlier classes out (:attr:`UnlearnObjective.pool_forgotten`), and its
    episodes start from its own model (:attr:`Task.starts`), as
    :func:`next_request_task` makes one request of a sequence. ``ValueError`` for fewer than
    two requests, a class listed twice in one request's history or a request that repeats an
    earlier class."""
    obj = task.objective
    if not isinstance(obj, UnlearnObjective) or obj.pool or obj.forgotten:
        raise ValueError(f"A pool of sequence requests starts from one unlearning task on the "
                         f"pretrained model, not {task.name!r}.")
    _check_sequence_requests(requests, starts)
    pool, gone = [], []
    for earlier, c in requests:
        earlier = tuple(int(k) for k in earlier)
        # also refuses a class listed twice in the request's history, or the request among it
        check_forget_classes((*earlier, int(c)), task.dataset.num_classes)
        pool.append((int(c),))
        gone.append(earlier)
    classes = tuple(sorted({c for (c,) in pool}))
    obj = dataclasses.replace(obj, forget_classes=classes, pool=tuple(pool),
                              pool_forgotten=tuple(gone))
    name = task.name.split("-forget")[0] + f"-sequences{len(pool)}"
    return dataclasses.replace(task, name=name, objective=obj, starts=_as_starts(starts))


def _check_sequence_requests(requests: Sequence, starts: Sequence) -> None:
    if len(requests) < 2 or len(starts) != len(requests):
        raise ValueError(f"A pool of sequence requests needs at least two requests and one "
                         f"start per request; got {len(requests)} and {len(starts)}.")


def _as_starts(starts) -> tuple:
    return tuple(tuple(np.asarray(a) for a in leaves) for leaves in starts)


def sequence_examples_pool_task(task: Task, requests: Sequence, starts: Sequence,
                                reward: str = "confidence") -> Task:
    """:func:`sequence_pool_task` for example requests: request ``i`` is ``(earlier, rows)``:
    forget the train rows ``rows`` on the model edited for the earlier sets ``earlier`` (a
    sequence of row sets; empty: the pretrained model), whose edited leaves are ``starts[i]``.
    Each target's retain set and reports leave its earlier rows out
    (:attr:`ExampleObjective.pool_forgotten`), as :func:`next_examples_task` does for one
    request; the held-out levels are the pretrained model's (``task.params``), one set for every
    target. ``ValueError`` for fewer than two requests, or a request whose rows repeat an
    earlier set's."""
    _check_sequence_requests(requests, starts)
    sets = [tuple(int(i) for i in rows) for _, rows in requests]
    gone = [tuple(sorted(int(i) for e in earlier for i in e)) for earlier, _ in requests]
    first = forget_examples_task(task, sets[0], reward)
    obj = dataclasses.replace(first.objective, pool=tuple(sets), pool_forgotten=tuple(gone))
    for rows in sets[1:]:
        check_forget_set(rows, task.dataset.train.y)
    name = f"{task.name.split('-forget')[0]}-examplesequences{len(sets)}x{len(sets[0])}"
    return dataclasses.replace(first, name=name, objective=obj, starts=_as_starts(starts))


def forget_examples_task(task: Task, indices: Sequence[int], reward: str = "confidence",
                         warn=None) -> Task:
    """``task``'s model and data with a request to forget the train examples ``indices`` (rows
    of the train split) instead of classes (:class:`ExampleObjective`; ``reward`` is its edit
    term). The held-out levels the edit aims at are measured on val with the original model.
    ``ValueError`` for an empty set, an index out of range or listed twice; ``warn`` hears which
    classes the set takes wholly out of the retain set."""
    if not isinstance(task.objective, UnlearnObjective) or task.objective.pool:
        raise ValueError(f"Forgetting examples replaces one unlearning request; {task.name!r} is "
                         f"{'a pool of requests' if isinstance(task.objective, UnlearnObjective) else task.objective.name}.")  # noqa: E501
    idx = check_forget_set(indices, task.dataset.train.y, warn=warn)
    obj = ExampleObjective(forget_indices=idx, reward=reward,
                           batch_size=task.objective.batch_size)
    obj = dataclasses.replace(obj, levels=heldout_levels(task.apply_fn, task.params, task.dataset,
                                                         obj.train_forget(task.dataset)))
    name = f"{task.name.split('-forget')[0]}-examples{len(idx)}-{_indices_digest(idx)}"
    return dataclasses.replace(task, name=name, objective=obj)


def example_pool_task(task: Task, fraction: float, num_sets: int, *, seed: int = 0,
                      stratified: bool = False, reward: str = "confidence") -> Task:
    """``task``'s model and data as a distribution of example requests (amortized training):
    ``num_sets`` random forget sets of ``fraction`` of the train split, set ``i`` drawn with
    ``(seed, i)``, one per episode. Held-out sets for zero-shot edits come from other seeds
    (:func:`forget_examples_task`)."""
    if num_sets < 2:
        raise ValueError(f"An amortized pool of forget sets needs at least two sets, got "
                         f"{num_sets}.")
    y = task.dataset.train.y
    sets = random_forget_sets(len(y), fraction, num_sets, seed, labels=y if stratified else None)
    first = forget_examples_task(task, sets[0], reward)
    obj = dataclasses.replace(first.objective, pool=tuple(sets))
    name = f"{task.name.split('-forget')[0]}-examplepool{num_sets}x{len(sets[0])}-s{seed}"
    return dataclasses.replace(first, name=name, objective=obj)


def _indices_digest(indices) -> str:
    return hashlib.sha256(np.asarray(indices, np.int64).tobytes()).hexdigest()[:8]


def next_request_task(task: Task, params: Params, forgotten: Sequence[int]) -> Task:
    """The next request of a sequence of edits: ``task`` (an unlearning task; its forget classes
    are the new request) on ``params``, a model already edited to forget ``forgotten`` (the
    earlier requests, in order).

    The edit starts from ``params``, not the pretrained model: a MaskWorld mask multiplies into
    the edited kernel and a ShiftWorld shift adds to it (docs/sequences.md). Every example of
    ``forgotten`` leaves every split, so the retain set, the val split that selects the step and
    the test report are about what the model still has to know; ``ValueError`` if the request
    repeats a forgotten class, or ``params`` are not of ``task``'s model.
    """
    obj = task.objective
    if not isinstance(obj, UnlearnObjective) or obj.pool:
        raise ValueError(f"A request in a sequence is one unlearning edit; {task.name!r} is "
                         f"{'a pool of edits' if isinstance(obj, UnlearnObjective) else obj.name}.")
    forgotten = tuple(int(c) for c in forgotten)
    if len(set(forgotten)) != len(forgotten):
        raise ValueError(f"The earlier requests {list(forgotten)} list a class twice.")
    again = [c for c in obj.forget_classes if c in forgotten]
    if again:
        raise ValueError(f"Class {again[0]} was forgotten by an earlier request (earlier: "
                         f"{list(forgotten)}); it is no longer in the retain set: request another "
                         "class.")
    _check_same_model(task, params)
    if not forgotten:
        return dataclasses.replace(task, params=params, origin=task.origin_checksum)
    return dataclasses.replace(
        task, name=f"{task.name}-after{'-'.join(map(str, forgotten))}", params=params,
        dataset=task.dataset.without_classes(forgotten), origin=task.origin_checksum,
        objective=dataclasses.replace(obj, forgotten=forgotten))


def _check_same_model(task: Task, params: Params) -> None:
    like = jax.tree.map(lambda a: (np.shape(a), np.asarray(a).dtype), task.params)
    if jax.tree.structure(params) != jax.tree.structure(task.params) or jax.tree.map(
            lambda a: (np.shape(a), np.asarray(a).dtype), params) != like:
        raise ValueError(f"The edited params are not of {task.name!r}'s model (their tree, shapes "
                         "or dtypes differ).")


def next_examples_task(task: Task, params: Params, indices: Sequence[int],
                       earlier: Sequence[Sequence[int]] = (), reward: str = "confidence",
                       warn=None) -> Task:
    """The next request of a sequence of example requests: forget the train rows ``indices``
    (rows of ``task``'s train split) from ``params``, a model already edited to forget the sets
    ``earlier`` (the earlier requests' rows of the same split, in order).

    Every earlier set leaves the train split, so the retain set (and the reward's retain term)
    holds only what the model must still know; val and test are untouched, and the held-out
    levels the edit aims at are measured with ``params`` (:func:`forget_examples_task`).
    ``ValueError`` if ``indices`` repeat an earlier request's example, or ``params`` are not of
    ``task``'s model."""
    _check_same_model(task, params)
    n = len(task.dataset.train)
    taken = np.concatenate([np.asarray(e, np.int64) for e in earlier]) if earlier else \
        np.zeros(0, np.int64)
    idx = np.asarray(check_forget_set(indices, task.dataset.train.y), np.int64)
    again = np.intersect1d(idx, taken)
    if again.size:
        raise ValueError(f"Train example {int(again[0])} was forgotten by an earlier request; it "
                         "is no longer in the retain set: request each example once.")
    keep = np.setdiff1d(np.arange(n), taken)
    rest = dataclasses.replace(task, params=params, dataset=task.dataset.without_train_rows(taken),
                               origin=task.origin_checksum)
    out = forget_examples_task(rest, np.searchsorted(keep, idx), reward, warn=warn)
    return out if not earlier else dataclasses.replace(
        out, name=f"{out.name}-after{len(earlier)}sets")


def _staged_fns(model, params, edit_paths):
    stages = {module_path(p)[0] for p in edit_paths}
    unknown = [s for s in stages if s not in model.STAGE_OF]
    if unknown:
        raise ValueError(f"Layer {unknown[0]!r} is not a stage of {type(model).__name__}.")
    k = min(model.STAGE_OF[s] for s in stages)
    return (lambda p, x: model.apply(p, x, stop=k)), (lambda p, h: model.apply(p, h, start=k))


def _staged_edit(model, params, edit) -> dict:
    """The :class:`Task` fields of editing ``edit`` on a built-in (staged) model: the leaf paths,
    their matrix views' splits, and the prefix/suffix split below the first of them."""
    paths, splits = resolve_edit(params, edit)
    prefix, suffix = _staged_fns(model, params, paths)
    return {"edit_paths": paths, "edit_splits": splits, "prefix_fn": prefix, "suffix_fn": suffix}


def retarget(task: Task, edit: Sequence[str | Path]) -> Task:
    """``task`` editing the leaves ``edit`` instead (a built-in model: the cache below the first
    of them moves with them)."""
    if task.model is None or not hasattr(task.model, "STAGE_OF"):
        raise ValueError(f"{task.name!r} has no staged built-in model to split at {list(edit)}; "
                         "build the task again with edit=... instead.")
    return dataclasses.replace(task, **_staged_edit(task.model, task.params, edit))


def unlearning_task(forget_classes: int | Sequence[int] = 7, *, dataset: str | Dataset = "digits",
                    edit: Sequence[str | Path] = ("Dense_0",), seed: int = 0,
                    batch_size: int = 64, amortized: bool = False) -> Task:
    """Class unlearning on the built-in CNN.

    By default the hidden dense layer ``Dense_0`` (``[512, 64]``) is edited, not the output layer:
    on the output layer, zeroing one column is a trivial edit that teaches nothing about editing
    internal representations. ``amortized``: each of ``forget_classes`` is its own target, one
    drawn per episode (:func:`pool_task`); otherwise they are forgotten together.
    """
    data = load_dataset(dataset) if isinstance(dataset, str) else dataset
    classes = check_forget_classes(np.atleast_1d(forget_classes), data.num_classes)
    edited = _staged_edit(*model_shapes(data), edit)  # a wrong spec stops before pretraining
    target = pretrained(data, seed=seed)
    task = Task(name=f"unlearn-{data.name}-forget{'-'.join(map(str, classes))}",
                apply_fn=target.model.apply, params=target.params,
                objective=UnlearnObjective(forget_classes=classes, batch_size=batch_size),
                dataset=data, model=target.model, **edited)
    return pool_task(task, classes) if amortized else task


def bias_task(*, dataset: str | Dataset = "toxic_templates",
              edit: Sequence[str | Path] = ("Dense_0",), seed: int = 0,
              batch_size: int = 128, model: str | None = None) -> Task:
    """Bias mitigation on the built-in text classifier.

    By default the hidden layer ``Dense_0`` (``[32, 64]``, right after the embedding bag) is edited:
    it is where identity-term directions in the pooled embedding are mapped into the features the
    output layer reads. ``model="transformer"``: the small transformer classifier instead
    (:class:`~maskshift.models.TransformerClassifier`; its ``Dense_0`` reads the pooled tokens,
    and ``Block_1/Attn/query`` or ``Block_1/Mlp_0`` edit an attention projection or a block's
    MLP).
    """
    data = load_dataset(dataset) if isinstance(dataset, str) else dataset
    edited = _staged_edit(*model_shapes(data, model), edit)  # checked before pretraining
    target = pretrained(data, seed=seed, name=model)
    name = f"bias-{data.name}" + ("" if model in (None, "bag") else f"-{model}")
    return Task(name=name, apply_fn=target.model.apply, params=target.params,
                objective=BiasObjective(batch_size=batch_size), dataset=data, model=target.model,
                **edited)


def backdoor_task(*, dataset: str | Dataset = "digits", target_class: int = 0,
                  trigger_size: int = 2, poison_rate: float = 0.05,
                  edit: Sequence[str | Path] = ("Dense_0",), seed: int = 0, batch_size: int = 64,
                  edit_term: str = "true_label") -> Task:
    """Backdoor removal on the built-in image CNN.

    The model is trained (and cached) on the train split with ``poison_rate`` of it stamped with
    a ``trigger_size`` square in the bottom-right corner and relabelled ``target_class``
    (:func:`maskshift.data.backdoor.poison`, drawn with ``seed``): it classifies triggered images
    as the target. The task's data are the clean splits; the edit drives the attack success rate
    down while keeping clean accuracy (:class:`BackdoorObjective`).
    """
    data = load_dataset(dataset) if isinstance(dataset, str) else dataset
    trigger = Trigger(target=int(target_class), size=int(trigger_size)).check(data)
    edited = _staged_edit(*model_shapes(data), edit)  # checked before pretraining
    target = pretrained(poison(data, trigger, poison_rate, seed=seed), seed=seed)
    objective = BackdoorObjective(trigger=trigger, batch_size=batch_size, edit_term=edit_term)
    return Task(name=f"backdoor-{data.name}-target{trigger.target}", apply_fn=target.model.apply,
                params=target.params, objective=objective, dataset=data, model=target.model,
                **edited)


def task_from_model(apply_fn: ApplyFn, params: Params, edit: Sequence[str | Path], *,
                    train: tuple, test: tuple, val: tuple | None = None, objective: str = "unlearn",
                    forget_classes: int | Sequence[int] = 0, num_classes: int | None = None,
                    prefix_fn: ApplyFn | None = None, suffix_fn: ApplyFn | None = None,
                    batch_size: int = 64, name: str = "custom",
                    forget_indices: Sequence[int] | None = None,
                    forget_reward: str = "confidence") -> Task:
    """A task from your own Flax model and arrays.

    Args:
      apply_fn: ``(params, x) -> logits``, e.g. ``model.apply``.
      params: your trained params.
      edit: layer names or leaf paths to edit.
      train, val, test: ``(x, y)`` tuples, or ``(x, y, group, x_counterfactual)`` for the bias
        objective. ``val`` defaults to ``train``: model selection must never see ``test``.
      objective: ``"unlearn"`` or ``"bias"``.
      forget_classes: classes to forget (unlearn).
      prefix_fn, suffix_fn: an optional split of ``apply_fn`` below the first edited layer.
      forget_indices: forget these train rows instead of classes (unlearn;
        :func:`forget_examples_task`), toward the held-out level ``forget_reward`` measures.
    """
    def split(t):
        t = tuple(np.asarray(a) for a in t)
        return Split(*t)

    tr, te = split(train), split(test)
    va = split(val) if val is not None else tr
    n_classes = num_classes or int(max(tr.y.max(), te.y.max())) + 1
    data = Dataset(name=name, kind="custom", num_classes=n_classes,
                   class_names=tuple(map(str, range(n_classes))), train=tr, val=va, test=te)
    paths, splits = resolve_edit(params, edit)
    if objective == "unlearn":
        obj = UnlearnObjective(check_forget_classes(np.atleast_1d(forget_classes), n_classes),
                               batch_size=batch_size)
    elif objective == "bias":
        obj = BiasObjective(batch_size=batch_size)
    else:
        raise ValueError(f"Unknown objective {objective!r}; choose 'unlearn' or 'bias'.")
    task = Task(name=name, apply_fn=apply_fn, params=params, edit_paths=paths, objective=obj,
                dataset=data, prefix_fn=prefix_fn, suffix_fn=suffix_fn, edit_splits=splits)
    if forget_indices is None:
        return task
    if objective != "unlearn":
        raise ValueError("`forget_indices` is an unlearning request; use objective='unlearn'.")
    return forget_examples_task(task, forget_indices, forget_reward)


TASKS = {"unlearn": unlearning_task, "bias": bias_task, "backdoor": backdoor_task}


def make_task(name: str, **kwargs) -> Task:
    return TASKS[check_task(name)](**kwargs)

