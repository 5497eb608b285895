"""The registry of editing environments: :func:`make`, like ``gymnax.make``."""

from __future__ import annotations

from maskshift.envs.state import EnvParams
from maskshift.envs.worlds import EditWorld, MaskWorld, ShiftWorld
from maskshift.tasks import Task, make_task

REGISTERED_ENVS: dict[str, type[EditWorld]] = {
    "MaskWorld-v0": MaskWorld,
    "ShiftWorld-v0": ShiftWorld,
}
ENV_ALIASES = {"mask": "MaskWorld-v0", "shift": "ShiftWorld-v0"}


def make(env_id: str, task: str | Task = "unlearn", *, rank: int = 4, obs_bins: int = 8,
         observation: str = "summary", minibatch: str = "per_env",
         task_kwargs: dict | None = None,
         **env_params) -> tuple[EditWorld, EnvParams]:
    """Build an environment and its default ``EnvParams``, like ``gymnax.make``.

    Args:
      env_id: ``"MaskWorld-v0"`` or ``"ShiftWorld-v0"`` (or the short ``"mask"``/``"shift"``).
      task: ``"unlearn"``, ``"bias"``, or a :class:`~maskshift.tasks.Task` you built.
      rank: rank of each step's low-rank change.
      observation: ``"summary"``, ``"gradient"`` (adds per-unit gradient factors) or
        ``"controller"`` (adds those of the gradient controller's direction too); see
        :mod:`maskshift.envs.observe`.
      minibatch: ``"per_env"`` (each environment draws its own train minibatch) or ``"shared"``
        (one draw per batched step for every environment; see :meth:`EditWorld.step_params`).
      task_kwargs: options for the built-in task (e.g. ``{"forget_classes": 3}``).
      **env_params: overrides of :class:`EnvParams` fields (``lambda_edit=2.0``, ...).

    Example:
      >>> env, env_params = maskshift.make("MaskWorld-v0", task="unlearn")
      >>> obs, state = jax.jit(env.reset)(jax.random.key(0), env_params)
    """
    cls = REGISTERED_ENVS.get(ENV_ALIASES.get(env_id, env_id))
    if cls is None:
        raise ValueError(f"Unknown environment {env_id!r}; registered: "
                         f"{', '.join(REGISTERED_ENVS)} (or 'mask', 'shift').")
    if isinstance(task, str):
        task = make_task(task, **(task_kwargs or {}))
    elif task_kwargs:
        raise ValueError("task_kwargs only applies to a built-in task given by name.")
    internal = {"task", "reset_units", "batch_key"}  # built by make_params, never overridden
    known = set(EnvParams.__dataclass_fields__) - internal
    unknown = set(env_params) - known
    if unknown:
        known = sorted(known)
        raise ValueError(f"Unknown EnvParams field(s) {sorted(unknown)}; known: {known}.")
    env = cls(task, rank=rank, obs_bins=obs_bins, observation=observation, minibatch=minibatch)
    return env, env.make_params(**env_params)
