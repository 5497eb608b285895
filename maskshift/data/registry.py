"""One entry point for every dataset: the embedded defaults and the TFDS-backed ones."""

from __future__ import annotations

import functools
from collections.abc import Callable

from maskshift.data._base import Dataset
from maskshift.data.digits import load_digits_dataset
from maskshift.data.text import load_toxic_templates
from maskshift.data.tfds import IMAGE_DATASETS, load_civil_comments, load_tfds_images

# name -> (task kind it serves, loader taking keyword options)
DATASETS: dict[str, tuple[str, Callable[..., Dataset]]] = {
    "digits": ("unlearn", load_digits_dataset),
    "toxic_templates": ("bias", load_toxic_templates),
    **{n: ("unlearn", functools.partial(load_tfds_images, n)) for n in IMAGE_DATASETS},
    "civil_comments": ("bias", load_civil_comments),
}
# Datasets read through tfds.data_source (they take ``data_dir``); the others ship in the package.
TFDS_DATASETS = (*IMAGE_DATASETS, "civil_comments")
# The embedded default dataset of each task.
TASK_KINDS: dict[str, str] = {"unlearn": "digits", "bias": "toxic_templates",
                              "backdoor": "digits"}
# Tasks that run on the datasets of another task (a backdoor is planted in image classifiers).
SAME_DATA_AS = {"backdoor": "unlearn"}


def dataset_task(name: str) -> str:
    """The task a dataset serves.

    Raises:
      ValueError: the name is unknown (the message lists the known names).
    """
    if name not in DATASETS:
        known = ", ".join(sorted(DATASETS))
        raise ValueError(f"Unknown dataset {name!r}. Known datasets: {known}.")
    return DATASETS[name][0]


def load_dataset(name: str, data_dir=None, **options) -> Dataset:
    """Load a dataset by registry name (``ValueError`` naming the known ones if it is unknown).

    ``data_dir``: where TFDS datasets are prepared (default ``$TFDS_DATA_DIR`` or
    ``~/tensorflow_datasets``); the embedded datasets need none.
    """
    dataset_task(name)
    if name in TFDS_DATASETS:
        options["data_dir"] = data_dir
    elif data_dir is not None:
        raise ValueError(f"Dataset {name!r} ships inside maskshift; a data directory only applies "
                         f"to the TFDS datasets ({', '.join(TFDS_DATASETS)}).")
    return DATASETS[name][1](**options)


def check_task(task: str) -> str:
    """``task`` if it is a known task, else a ``ValueError`` naming the known ones."""
    if task not in TASK_KINDS:
        raise ValueError(f"Unknown task {task!r}; choose one of {', '.join(TASK_KINDS)}.")
    return task


def resolve_dataset(task: str, dataset: str | None) -> str:
    """The dataset for ``task``: the embedded default, or ``dataset`` checked to fit the task."""
    check_task(task)
    name = dataset or TASK_KINDS[task]
    serves = dataset_task(name)
    if serves != SAME_DATA_AS.get(task, task):
        raise ValueError(f"Dataset {name!r} serves the {serves!r} task, not {task!r}.")
    return name


def check_forget_classes(forget_classes, num_classes: int) -> tuple[int, ...]:
    classes = tuple(int(c) for c in forget_classes)
    if not classes:
        raise ValueError("At least one forget class is needed.")
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad:
        raise ValueError(f"Forget class {bad[0]} is outside the labels 0..{num_classes - 1}.")
    repeated = sorted({c for c in classes if classes.count(c) > 1})
    if repeated:
        raise ValueError(f"Forget class {repeated[0]} is listed twice; list each class once.")
    if len(set(classes)) == num_classes:
        raise ValueError("Forgetting every class leaves no retain set.")
    return classes
