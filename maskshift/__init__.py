"""maskshift: edit pretrained neural networks with reinforcement learning, in pure-functional JAX.

The public API is re-exported here; everything else may change.
"""

from maskshift.checkpoint import CheckpointError, load_edited, save_edited
from maskshift.data import Dataset, Split, load_dataset
from maskshift.envs import REGISTERED_ENVS, EnvParams, EnvState, MaskWorld, ShiftWorld, make
from maskshift.evaluate import evaluate_model
from maskshift.models import pretrained
from maskshift.tasks import Task, bias_task, task_from_model, unlearning_task

__version__ = "0.1.0"

__all__ = [
    "REGISTERED_ENVS",
    "CheckpointError",
    "Dataset",
    "EnvParams",
    "EnvState",
    "MaskWorld",
    "ShiftWorld",
    "Split",
    "Task",
    "bias_task",
    "evaluate_model",
    "load_dataset",
    "load_edited",
    "make",
    "pretrained",
    "save_edited",
    "task_from_model",
    "unlearning_task",
]
