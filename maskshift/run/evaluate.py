"""The held-out figures of the pretrained model, or of an edited checkpoint, by task name: what
``python -m maskshift.evaluate`` prints."""

from __future__ import annotations

from maskshift.checkpoint import CheckpointError, load_edited, read_meta
from maskshift.data import check_forget_classes, load_dataset, resolve_dataset
from maskshift.run.build import builtin_task
from maskshift.run.config import RunConfig


def evaluate_model(task: str, *, dataset: str | None = None, forget_classes=(7,), checkpoint=None,
                   seed: int = 0, split: str = "test", data_dir=None, **task_options) -> dict:
    """Metrics of the pretrained model, or of the edited checkpoint in ``checkpoint``, on ``split``.

    A checkpoint of an unlearning edit is reported against its forget classes, and those of every
    earlier request it continued (``edited.json``'s ``forgotten``).

    Returns a dict with ``task``, ``dataset``, ``source`` ("pretrained" or the checkpoint path) and
    the keys of the task's report (:meth:`maskshift.tasks.Objective.report`: the unlearning,
    bias or backdoor report). ``task_options``: the backdoor task's RunConfig fields
    (``target_class``, ``trigger_size``, ``poison_rate``).
    """
    name = resolve_dataset(task, dataset)
    if task == "unlearn":
        data = load_dataset(name, data_dir=data_dir)
        forget_classes = check_forget_classes(forget_classes, data.num_classes)
    meta = read_meta(checkpoint) if checkpoint is not None else {}
    if checkpoint is not None:
        if meta.get("task") not in (None, task) or meta.get("dataset") not in (None, name):
            raise CheckpointError(f"Checkpoint {checkpoint} is for task {meta.get('task')!r} on "
                                  f"{meta.get('dataset')!r}, not {task!r} on {name!r}.")
        if meta.get("forget_size") is not None:
            raise CheckpointError(f"Checkpoint {checkpoint} forgot {meta['forget_size']} train "
                                  "examples, not classes; its figures are in its results.json "
                                  "(or edit.json): evaluate reports class-wise edits.")
        if task == "unlearn" and meta.get("forget_classes") is not None:
            # the last request of a sequence: reported against every class forgotten so far
            forget_classes = tuple(meta.get("forgotten", ())) + tuple(meta["forget_classes"])
    cfg = RunConfig(task=task, dataset=name, data_dir=data_dir,
                    forget_classes=tuple(forget_classes), **task_options)
    edit_task = builtin_task(cfg, model_seed=seed)
    params, source = edit_task.params, "pretrained"
    if checkpoint is not None:
        params, meta = load_edited(checkpoint, like=edit_task.params)
        source = str(checkpoint)
    out = {"task": task, "dataset": name, "source": source, "split": split}
    if task == "unlearn":
        out["forget_classes"] = list(forget_classes)
    out.update(edit_task.report(params, split))
    return out
