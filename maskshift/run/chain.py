"""Edits of an edited model: what an edited checkpoint records about the model it edited
(:func:`edited_meta`), and the task that continues from it (:func:`continue_from`), so a new
request starts from the last edit, not from the pretrained model.

``edited.json`` records ``forget_classes`` (this edit's request), ``forgotten`` (the requests
before it, in order) and ``origin`` (the checksum of the pretrained params the chain started
from): a run started ``--from`` it forgets its next request with every earlier one out of its data.
"""

from __future__ import annotations

from pathlib import Path

from maskshift._types import Params
from maskshift.checkpoint import CheckpointError, load_edited, read_meta
from maskshift.tasks import Task, UnlearnObjective, next_request_task


def edited_meta(task: Task, /, **fields) -> dict:
    """The ``edited.json`` metadata of an edit of ``task`` (``fields``: env, algo, seed...)."""
    meta = {"task": task.objective.name, "dataset": task.dataset.name, **fields,
            "edit_paths": ["/".join(p) for p in task.edit_paths], "origin": task.origin_checksum}
    if isinstance(task.objective, UnlearnObjective):
        meta["forget_classes"] = list(task.objective.forget_classes)
        meta["forgotten"] = list(task.objective.forgotten)
    elif getattr(task.objective, "forget_indices", None):  # a set of examples
        meta["forget_size"] = len(task.objective.forget_indices)
    return meta


def read_chain(directory, task: Task) -> tuple[Params, tuple[int, ...]]:
    """The edited params in ``directory`` (a finished unlearning run's ``out``) and every class
    they were edited to forget so far, in order; checked to be an edit of ``task``'s model and
    data (``CheckpointError``/``ValueError`` naming the problem otherwise)."""
    directory = Path(directory)
    meta = read_meta(directory)  # missing, not a checkpoint, corrupt
    if meta.get("task") != "unlearn" or not meta.get("forget_classes"):
        raise ValueError(f"`from_run` {directory} holds a {meta.get('task')!r} edit; a request "
                         "continues an unlearning edit: pass an unlearning run's `out`.")
    if meta.get("dataset") != task.dataset.name:
        raise ValueError(f"`from_run` {directory} edited a model of {meta.get('dataset')!r}, not "
                         f"{task.dataset.name!r}; pass a run on the same dataset.")
    params, meta = load_edited(directory, like=task.params)  # another architecture, corrupt
    if meta.get("origin") not in (None, task.origin_checksum):
        raise CheckpointError(f"`from_run` {directory} edited another model than this task's "
                              "(its pretrained weights differ: another seed or training); pass "
                              "an edit of the same model.")
    return params, tuple(meta.get("forgotten", ())) + tuple(meta["forget_classes"])


def continue_from(task: Task, directory) -> Task:
    """``task``'s request on the edited model in ``directory``, every class it has forgotten so
    far out of the data (:func:`~maskshift.tasks.next_request_task`)."""
    params, forgotten = read_chain(directory, task)
    return next_request_task(task, params, forgotten)
