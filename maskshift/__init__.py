"""maskshift: edit pretrained neural networks with reinforcement learning, in pure-functional JAX.

The public API is re-exported here; everything else may change.
"""

import importlib

# the public name -> the module that defines it. Imported on first use (PEP 562), so that
# ``import maskshift.hosts`` can join a multi-process run before anything touches a JAX backend
# (gymnax computes at import time).
_EXPORTS = {
    "APGConfig": "maskshift.agents.apg", "PPOConfig": "maskshift.agents.ppo",
    "CheckpointError": "maskshift.checkpoint", "load_edited": "maskshift.checkpoint",
    "save_edited": "maskshift.checkpoint", "GradientConfig": "maskshift.controls",
    "OracleConfig": "maskshift.controls", "Dataset": "maskshift.data", "Split": "maskshift.data",
    "load_dataset": "maskshift.data", "REGISTERED_ENVS": "maskshift.envs",
    "EnvParams": "maskshift.envs", "EnvState": "maskshift.envs", "MaskWorld": "maskshift.envs",
    "ShiftWorld": "maskshift.envs", "make": "maskshift.envs", "pretrained": "maskshift.models",
    "RunConfig": "maskshift.run", "make_run_config": "maskshift.run",
    "train_and_evaluate": "maskshift.run", "evaluate_model": "maskshift.run.evaluate",
    "PolicyEditor": "maskshift.run.policy", "edit_with_policy": "maskshift.run.policy",
    "load_policy": "maskshift.run.policy", "Task": "maskshift.tasks",
    "bias_task": "maskshift.tasks", "pool_task": "maskshift.tasks",
    "task_from_model": "maskshift.tasks", "unlearning_task": "maskshift.tasks",
    "next_request_task": "maskshift.tasks", "run_sequence": "maskshift.run.sequence",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'maskshift' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_EXPORTS])


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
    "next_request_task",
    "pool_task",
    "pretrained",
    "run_sequence",
    "save_edited",
    "task_from_model",
    "unlearning_task",
]
