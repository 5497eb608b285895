"""Target models and their pretraining cache."""

from maskshift.models.networks import (
    DigitsCNN,
    ImageCNN,
    StagedModule,
    TextClassifier,
    TransformerClassifier,
    is_builtin_convolution,
)
from maskshift.models.pretrain import (
    MODELS,
    Pretrained,
    TrainConfig,
    cache_dir,
    check_model,
    default_model,
    model_shapes,
    pretrained,
    train_classifier,
)

__all__ = [
    "DigitsCNN",
    "ImageCNN",
    "Pretrained",
    "StagedModule",
    "TextClassifier",
    "TransformerClassifier",
    "TrainConfig",
    "cache_dir",
    "MODELS",
    "check_model",
    "default_model",
    "is_builtin_convolution",
    "model_shapes",
    "pretrained",
    "train_classifier",
]
