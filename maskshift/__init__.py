"""maskshift: edit pretrained neural networks with reinforcement learning, in pure-functional JAX.

The public API is re-exported here; everything else may change.
"""

from maskshift.agents.apg import APGConfig
from maskshift.agents.ppo import PPOConfig
from maskshift.checkpoint import CheckpointError, load_edited, save_edited
from maskshift.controls import GradientConfig, OracleConfig
from maskshift.data import Dataset, Split, load_dataset
from maskshift.envs import REGISTERED_ENVS, EnvParams, EnvState, MaskWorld, ShiftWorld, make
from maskshift.models import pretrained
from maskshift.run import RunConfig, make_run_config, train_and_evaluate
from maskshift.run.evaluate import evaluate_model
from maskshift.run.policy import PolicyEditor, edit_with_policy, load_policy
from maskshift.tasks import Task, bias_task, pool_task, task_from_model, unlearning_task

__version__ = "0.1.0"


__all__ = [
    "REGISTERED_ENVS",
    "APGConfig",
    "PPOConfig",
    "PolicyEditor",
    "RunConfig",
    "CheckpointError",
    "GradientConfig",
    "OracleConfig",
    "Dataset",
    "EnvParams",
    "EnvState",
    "MaskWorld",
    "ShiftWorld",
    "Split",
    "Task",
    "bias_task",
    "edit_with_policy",
    "evaluate_model",
    "train_and_evaluate",
    "load_dataset",
    "load_edited",
    "load_policy",
    "make",
    "make_run_config",
    "pool_task",
    "pretrained",
    "save_edited",
    "task_from_model",
    "unlearning_task",
]
