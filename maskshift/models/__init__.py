"""Target models and their pretraining cache."""

from maskshift.models.networks import DigitsCNN, ImageCNN, StagedModule, TextClassifier
from maskshift.models.pretrain import (
    Pretrained,
    TrainConfig,
    cache_dir,
    default_model,
    pretrained,
    train_classifier,
)

__all__ = [
    "DigitsCNN",
    "ImageCNN",
    "Pretrained",
    "StagedModule",
    "TextClassifier",
    "TrainConfig",
    "cache_dir",
    "default_model",
    "pretrained",
    "train_classifier",
]
