"""maskshift: edit pretrained neural networks with reinforcement learning, in pure-functional JAX.

The public API is re-exported here; everything else may change.
"""

from maskshift.apg import APGConfig
from maskshift.checkpoint import CheckpointError, load_edited, save_edited
from maskshift.data import Dataset, Split, load_dataset
from maskshift.envs import REGISTERED_ENVS, EnvParams, EnvState, MaskWorld, ShiftWorld, make
from maskshift.models import pretrained
from maskshift.ppo import PPOConfig
from maskshift.tasks import Task, bias_task, pool_task, task_from_model, unlearning_task

__version__ = "0.1.0"


def __getattr__(name):
    # The CLI modules load on first use, so `python -m maskshift.evaluate` / `.train` run them
    # fresh instead of finding them half-imported by this package.
    if name == "evaluate_model":
        from maskshift.evaluate import evaluate_model

        return evaluate_model
    if name in ("PolicyEditor", "edit_with_policy", "load_policy"):
        import maskshift.policy

        return getattr(maskshift.policy, name)
    if name in ("train_and_evaluate", "RunConfig"):
        import maskshift.run

        return getattr(maskshift.run, name)
    raise AttributeError(f"module 'maskshift' has no attribute {name!r}")

__all__ = [
    "REGISTERED_ENVS",
    "APGConfig",
    "PPOConfig",
    "PolicyEditor",
    "RunConfig",
    "CheckpointError",
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
    "pool_task",
    "pretrained",
    "save_edited",
    "task_from_model",
    "unlearning_task",
]
