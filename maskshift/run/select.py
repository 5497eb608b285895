"""The product of an episode: its best step chosen on the validation split (never the test
split), and the test report of the original and of that step, the same code for every editor.

How steps rank is the objective's (:meth:`~maskshift.tasks.Objective.selection_key`); the
utility drop it allows is the run's ``select_tolerance``.
"""

from __future__ import annotations

from maskshift.envs import EditWorld, EnvParams


def edited_params_at(env: EditWorld, env_params: EnvParams, edits, t: int):
    """The full params pytree of step ``t`` of an episode's ``edits`` (``t = 0``: the original)."""
    return env.params_for_edit(tuple(e[t] for e in edits), env_params)


def select_best_step(env: EditWorld, env_params: EnvParams, edits, tolerance: float,
                     target: int = 0):
    """Evaluate every step of the episode on the validation split for ``target`` and pick the
    best. Returns ``(t, params, per_step_val_metrics)``; ``t = 0`` is the original model."""
    objective, task = env.task.objective, env.task
    env_params = env.at_target(env_params, target)
    T = edits[0].shape[0]
    # the selection reads accuracies and confidences only: no MIA (two whole-split passes)
    vals = [task.report(edited_params_at(env, env_params, edits, t), "val", False, target)
            for t in range(T)]
    keys = [objective.selection_key(v, vals[0], tolerance) for v in vals]
    best = max(range(T), key=lambda t: keys[t])
    return best, edited_params_at(env, env_params, edits, best), vals


def select_and_report(env: EditWorld, env_params: EnvParams, edits, tolerance: float,
                      target: int = 0) -> dict:
    """The product of one episode for ``target``: its best step on val
    (:func:`select_best_step`) and the test report of the original and of that step.

    Returns ``{"best_step", "edited", "val_per_step", "before", "after"}``.
    """
    best, edited, vals = select_best_step(env, env_params, edits, tolerance, target)
    return {"best_step": best, "edited": edited, "val_per_step": vals,
            "before": env.task.report(env.task.params_at(target), "test", True, target),
            "after": env.task.report(edited, "test", True, target)}
