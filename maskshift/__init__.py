"""maskshift: edit pretrained neural networks with reinforcement learning, in pure-functional JAX.

The public API is re-exported here; everything else may change.
"""

from maskshift.checkpoint import CheckpointError, load_edited, save_edited
from maskshift.data import Dataset, Split, load_dataset
from maskshift.evaluate import evaluate
from maskshift.models import pretrained

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "Dataset",
    "Split",
    "evaluate",
    "load_dataset",
    "load_edited",
    "pretrained",
    "save_edited",
]
