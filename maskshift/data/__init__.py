"""Datasets: embedded defaults (no download) and one interface for TFDS-backed loaders."""

from maskshift.data._base import SPLITS, Dataset, Split
from maskshift.data.digits import load_digits_dataset
from maskshift.data.registry import (
    DATASETS,
    TASK_KINDS,
    TFDS_DATASETS,
    check_forget_classes,
    check_task,
    dataset_task,
    load_dataset,
    resolve_dataset,
)
from maskshift.data.text import Tokenizer, load_toxic_templates, load_wordlists
from maskshift.data.tfds import DatasetNotFoundError, load_civil_comments, load_tfds_images

__all__ = [
    "DATASETS",
    "SPLITS",
    "TASK_KINDS",
    "TFDS_DATASETS",
    "Dataset",
    "DatasetNotFoundError",
    "Split",
    "Tokenizer",
    "check_forget_classes",
    "check_task",
    "resolve_dataset",
    "dataset_task",
    "load_civil_comments",
    "load_dataset",
    "load_digits_dataset",
    "load_tfds_images",
    "load_toxic_templates",
    "load_wordlists",
]
