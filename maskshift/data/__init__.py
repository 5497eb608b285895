"""Datasets: embedded defaults (no download) and one interface for TFDS-backed loaders."""

from maskshift.data._base import SPLITS, Dataset, Split
from maskshift.data.digits import load_digits_dataset
from maskshift.data.registry import (
    DATASETS,
    TASK_KINDS,
    check_forget_classes,
    check_task,
    dataset_task,
    load_dataset,
    resolve_dataset,
)
from maskshift.data.text import Tokenizer, load_toxic_templates, load_wordlists

__all__ = [
    "DATASETS",
    "SPLITS",
    "TASK_KINDS",
    "Dataset",
    "Split",
    "Tokenizer",
    "check_forget_classes",
    "check_task",
    "resolve_dataset",
    "dataset_task",
    "load_dataset",
    "load_digits_dataset",
    "load_toxic_templates",
    "load_wordlists",
]
