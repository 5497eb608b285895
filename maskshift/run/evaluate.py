"""The held-out figures of the pretrained model, or of an edited checkpoint, by task name: what
``python -m maskshift.evaluate`` prints."""

from __future__ import annotations

from maskshift.checkpoint import CheckpointError, load_edited, read_meta
from maskshift.data import check_forget_classes, load_dataset, resolve_dataset
from maskshift.metrics import bias_report, unlearning_report
from maskshift.models import pretrained


def evaluate_model(task: str, *, dataset: str | None = None, forget_classes=(7,), checkpoint=None,
                   seed: int = 0, split: str = "test", data_dir=None) -> dict:
    """Metrics of the pretrained model, or of the edited checkpoint in ``checkpoint``, on ``split``.

    Returns a dict with ``task``, ``dataset``, ``source`` ("pretrained" or the checkpoint path) and
    the metric keys of :func:`maskshift.metrics.unlearning_report` or ``bias_report``.
    """
    name = resolve_dataset(task, dataset)
    data = load_dataset(name, data_dir=data_dir)
    if task == "unlearn":
        forget_classes = check_forget_classes(forget_classes, data.num_classes)
    target = pretrained(data, seed=seed)
    params, source = target.params, "pretrained"
    if checkpoint is not None:
        meta = read_meta(checkpoint)
        if meta.get("task") not in (None, task) or meta.get("dataset") not in (None, name):
            raise CheckpointError(f"Checkpoint {checkpoint} is for task {meta.get('task')!r} on "
                                  f"{meta.get('dataset')!r}, not {task!r} on {name!r}.")
        params, meta = load_edited(checkpoint, like=target.params)
        if task == "unlearn" and meta.get("forget_classes") is not None:
            forget_classes = tuple(meta["forget_classes"])
        source = str(checkpoint)
    out = {"task": task, "dataset": name, "source": source, "split": split}
    if task == "unlearn":
        out["forget_classes"] = list(forget_classes)
        out.update(unlearning_report(target.model.apply, params, data, forget_classes, split))
    else:
        out.update(bias_report(target.model.apply, params, data, split))
    return out
