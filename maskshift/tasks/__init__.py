"""Editing tasks: what is edited, on which data, toward which objective.

- :mod:`~maskshift.tasks.paths`: leaves of a params pytree, found by layer name or path;
- :mod:`~maskshift.tasks.objectives`: :class:`Objective` and the built-in ones;
- :mod:`~maskshift.tasks.forget_examples`: forgetting a set of train examples;
- :mod:`~maskshift.tasks.task`: :class:`Task` and the :class:`TaskArrays` an environment reads;
- :mod:`~maskshift.tasks.builders`: the built-in tasks, :func:`task_from_model` and
  :func:`next_request_task` (the next edit of an edited model).
"""

from maskshift.tasks.builders import (
    TASKS,
    backdoor_task,
    bias_task,
    example_pool_task,
    forget_examples_task,
    make_task,
    next_examples_task,
    next_request_task,
    pool_task,
    retarget,
    sequence_examples_pool_task,
    sequence_pool_task,
    task_from_model,
    unlearning_task,
)
from maskshift.tasks.forget_examples import FORGET_REWARDS, ExampleObjective, HeldoutLevels
from maskshift.tasks.objectives import (
    OBJECTIVES,
    SUMMARY_KEYS,
    BackdoorObjective,
    BiasObjective,
    Objective,
    UnlearnObjective,
)
from maskshift.tasks.paths import (
    Path,
    default_split,
    get_leaf,
    leaf_paths,
    matrix_shape,
    path_str,
    resolve_edit,
    resolve_paths,
    set_leaves,
)
from maskshift.tasks.task import ApplyFn, Task, TaskArrays

__all__ = ["FORGET_REWARDS", "OBJECTIVES", "SUMMARY_KEYS", "TASKS", "ApplyFn",
           "BackdoorObjective", "BiasObjective", "ExampleObjective", "HeldoutLevels", "Objective",
           "Path", "Task", "TaskArrays", "UnlearnObjective", "backdoor_task", "bias_task",
           "example_pool_task", "forget_examples_task", "get_leaf", "leaf_paths", "make_task",
           "default_split", "matrix_shape", "next_examples_task", "next_request_task", "path_str",
           "pool_task", "resolve_edit", "resolve_paths", "retarget",
           "sequence_examples_pool_task", "sequence_pool_task", "set_leaves", "task_from_model",
           "unlearning_task"]
