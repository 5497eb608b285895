"""The state and parameters of an editing environment (gymnax's ``EnvState``/``EnvParams``)."""

from __future__ import annotations

import numpy as np
from flax import struct
from gymnax.environments import environment

from maskshift._types import Array
from maskshift.tasks import TaskArrays


@struct.dataclass
class EnvState(environment.EnvState):
    """``edit``: one mask or shift ``[m, n]`` per edited matrix; ``metrics``: the objective's
    metrics on the last minibatch; ``time``: the step count within the episode; ``target``: the
    episode's target (int32; an index into an unlearning pool's forget sets, drawn at reset)."""

    edit: tuple
    metrics: Array
    target: Array


@struct.dataclass
class EnvParams(environment.EnvParams):
    """Everything a sweep may ``vmap`` over, and the task's arrays.

    Attributes:
      lambda_utility, lambda_edit: reward coefficients.
      step_size: the largest change of one mask entry (MaskWorld, default 0.25) or, in units of
        ``rms(W0)``, of one shift entry (ShiftWorld, default 0.1) per step.
      mask_max: MaskWorld's upper bound on a mask entry.
      shift_cap: ShiftWorld's bound on ``||S||_F / ||W0||_F``.
      max_steps_in_episode: the episode length ``T``.
      task: the :class:`~maskshift.tasks.TaskArrays`.
    """

    lambda_utility: float = 2.0
    lambda_edit: float = 1.0
    step_size: float = 0.25
    mask_max: float = 2.0
    shift_cap: float = 1.0
    max_steps_in_episode: int = 8
    task: TaskArrays | None = None
    # the unit block at reset, per target [P, units] (observation="gradient" only)
    reset_units: Array | None = None
    # minibatch="shared": the key of this step's one minibatch for every environment (set per
    # step by the caller: EditWorld.step_params)
    batch_key: Array | None = None


# field -> (lowest allowed value, whether the lowest value itself is allowed)
_ENV_PARAM_RANGES = {"lambda_utility": (0.0, True), "lambda_edit": (0.0, True),
                     "step_size": (0.0, False), "mask_max": (1.0, True), "shift_cap": (0.0, False),
                     "max_steps_in_episode": (1, True)}


def check_env_params(fields: dict) -> None:
    """Refuse ``EnvParams`` values that make no sense, naming the field (``ValueError``).

    Values may be arrays (a sweep ``vmap``s over them): every entry is checked."""
    for name, value in fields.items():
        if name not in _ENV_PARAM_RANGES:
            continue
        low, inclusive = _ENV_PARAM_RANGES[name]
        v = np.asarray(value, dtype=np.float64)
        ok = np.isfinite(v) & ((v >= low) if inclusive else (v > low))
        if name == "max_steps_in_episode":
            ok &= v == np.round(v)
        if not np.all(ok):
            bound = f">= {low}" if inclusive else f"> {low}"
            kind = "a whole number" if name == "max_steps_in_episode" else "a finite number"
            raise ValueError(f"EnvParams.{name} must be {kind} {bound}, got {value!r}.")
