"""The one run path of every editor (PPO, APG, the gradient controller, the oracle).

:func:`train_and_evaluate` validates everything, then makes the edit with the chosen editor
(:mod:`maskshift.run.editors`; trained policies through the checkpointed loop of
:mod:`maskshift.run.loop`) and writes the same files for each (:mod:`maskshift.run.results`):

- ``results.json``: env, task, algo, dataset, seed, config, ``before``/``after`` test metrics,
  the best step and the validation figures of every step, train stats and history;
- ``edited/`` + ``edited.json``: the edited params (read by
  :func:`maskshift.run.evaluate.evaluate_model` with ``checkpoint``);
- ``ckpt/`` (trained editors only): policy, optimizer state and runner state;
- ``learning_curve.png`` and ``before_after.png``.

:func:`reuse_or_run` is how the benchmarks and ``maskshift.compare`` get a run: a finished one
is reused, one that differs only in how its best step is chosen is re-selected from its
checkpoint (:func:`reselect`), anything else is made afresh.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax

from maskshift._io import file_in_the_way
from maskshift.controls import check_differentiable
from maskshift.hosts import is_primary, sync
from maskshift.run.build import build_env, resolve_task
from maskshift.run.config import (
    GRADIENT_ALGOS,
    SELECTION_FIELDS,
    TRAINED_ALGOS,
    OutputDirError,
    RunConfig,
    check_algo,
    check_sequence_rounds,
    training_fields,
)
from maskshift.run.editors import EDITORS
from maskshift.run.results import EpisodeMismatch, finished_run, write_run
from maskshift.sharding import (
    check_chunk,
    check_divisible,
    device_memory_bytes,
    env_mesh,
    mesh_size,
)
from maskshift.tasks import Task


def refuse_file_in_the_way(out: Path) -> None:
    """Refuse an output directory that is, or lies under, an existing file."""
    blocker = file_in_the_way(out)
    if blocker == out.absolute():
        raise OutputDirError(f"`out` {out} is an existing file, not a directory; choose another "
                             "`out`.")
    if blocker is not None:
        raise OutputDirError(f"`out` {out} lies under {blocker}, which is a file, not a "
                             "directory; choose another `out`.")


def check_out_dir(out: Path, overwrite: bool) -> None:
    """Refuse an output directory the run must not touch (changes nothing on disk)."""
    refuse_file_in_the_way(out)
    if overwrite or not out.exists():
        return
    if (out / "results.json").exists():
        raise OutputDirError(f"{out} already holds a finished run (results.json). Choose another "
                            "`out`, or pass `overwrite=True` to replace it.")
    if any(out.iterdir()) and not (out / "ckpt").exists():
        raise OutputDirError(f"{out} exists and is not a maskshift run; choose another `out`, or "
                            "pass `overwrite=True` to replace its contents.")


def estimated_bytes(cfg: RunConfig, env) -> int:
    """A lower estimate of the memory a run's batch of episodes needs on each device: the edits
    of every environment (several live copies; more with a gradient observation, whose
    backward passes hold their own), each step's minibatch activations through the edited
    layers, and a PPO rollout's stored observations and actions."""
    edit = sum(m * n for m, n in env.shapes)
    units = sum(m + n for m, n in env.shapes)
    rows = 2 * getattr(env.task.objective, "batch_size", 64)
    if cfg.algo == "oracle":
        envs, steps = cfg.editor.restarts, cfg.episode_length
    elif cfg.algo in TRAINED_ALGOS:
        envs, steps = cfg.editor.num_envs, cfg.editor.num_steps
    else:
        envs, steps = 1, cfg.episode_length
    copies = 4 if env.observation == "summary" else 10
    per_env = edit * copies + rows * units * 2 + steps * (2 * env.obs_size + 3 * env.action_size)
    if cfg.algo in ("apg", "oracle"):  # backpropagation through the whole episode keeps each step
        per_env += steps * edit * copies
    if cfg.algo == "quark":  # the pool of episodes it learns from
        per_env += cfg.editor.pool_factor * steps * (env.obs_size + env.action_size)
    return 4 * envs * per_env


def check_memory(cfg: RunConfig, env, mesh) -> None:
    """Refuse a run whose batch of episodes cannot fit in memory (``ValueError``, before
    anything runs), naming the estimate and the device's memory."""
    need = estimated_bytes(cfg, env) // mesh_size(mesh)
    have = device_memory_bytes()
    if need > have:
        raise ValueError(f"The run needs at least {need / 2**30:.1f} GiB per device for its "
                         f"{cfg.algo} episodes, and the device has {have / 2**30:.1f} GiB: lower "
                         "`num_envs` or `episode_length` (or spread the environments over more "
                         "`devices`).")


def prepare_out(out: Path, overwrite: bool) -> None:
    """Make ``out`` ready (emptied with ``overwrite``): process 0 does, the others wait for it."""
    if is_primary():
        if out.exists() and overwrite:
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        out.mkdir(parents=True, exist_ok=True)
    sync("maskshift-out-ready")


def train_and_evaluate(cfg: RunConfig, out, *, task: Task | None = None,
                       overwrite: bool = False, log=print, stop_after_chunks: int | None = None,
                       devices=None, env_chunk: int | None = None) -> dict:
    """Edit with ``cfg.algo``, select, evaluate and write a run to ``out``; returns the results.

    ``task``: your own :class:`~maskshift.tasks.Task` (from :func:`~maskshift.task_from_model` or
    a built-in builder); it gets everything a built-in run gets (progress, checkpoints and resume,
    selection on its val split, the test report, ``edited/``, plots). The run's config records
    the task's objective, dataset name and a fingerprint of its params and data, so a run resumes
    only onto the same task. ``None``: ``cfg.task_factory``'s task, else the built-in ``cfg.task``.

    ``devices``: how many devices (or which) to split the environment batch over; ``None`` uses
    every visible device. The device count is not part of the run's config: a run may resume on
    another count, and gives the same numbers up to float rounding. ``env_chunk``: step the
    environments of each device in groups of this many (PPO only; faster on CPU; see
    :func:`maskshift.sharding.map_envs`).
    ``stop_after_chunks`` ends a trained editor's loop early, as a kill would (for tests): the
    checkpoint is left for the next call to resume from, and ``{"stopped_at_update": u}`` is
    returned.
    """
    out = Path(out)
    if cfg.sequence_depth:
        raise ValueError("A policy trained for sequences (`sequence_depth`) trains in two stages: "
                         "run it with maskshift.run.train_sequence_policy(cfg, out).")
    check_sequence_rounds(cfg)
    check_algo(cfg.algo)
    cfg.editor.validate()
    check_out_dir(out, overwrite)
    if cfg.from_run is not None and Path(cfg.from_run).absolute() == out.absolute():
        raise OutputDirError(f"`out` {out} is the run this one starts from (`from_run`): the new "
                             "edit would replace the model it edits; choose another `out`.")
    sync("maskshift-out-checked")  # every process has read `out` before process 0 changes it
    mesh = env_mesh(devices)
    if cfg.algo in TRAINED_ALGOS:
        check_divisible(cfg.trainer_config.num_envs, mesh)
    if env_chunk is not None and cfg.algo != "ppo":
        raise ValueError(f"`env_chunk` applies to `algo='ppo'` only (got {cfg.algo!r}); drop "
                         "it.")
    if cfg.algo == "ppo":
        check_chunk(cfg.editor.num_envs, env_chunk, mesh_size(mesh))
    cfg, task = resolve_task(cfg, task)
    env, env_params = build_env(cfg, task)  # validates env, task, dataset, classes, rank
    check_memory(cfg, env, mesh)
    if cfg.algo in GRADIENT_ALGOS:
        check_differentiable(env, env_params, cfg.algo)
    prepare_out(out, overwrite)
    return run_editor(cfg, env, env_params, out, mesh=mesh, env_chunk=env_chunk, log=log,
                      stop_after_chunks=stop_after_chunks)


def run_editor(cfg: RunConfig, env, env_params, out: Path, *, mesh=None, devices=None,
               env_chunk: int | None = None, log=print, stop_after_chunks: int | None = None,
               init_params=None) -> dict:
    """Make the edit with ``cfg.algo`` in ``env`` and write the run into ``out`` (already
    checked and prepared: :func:`train_and_evaluate` does both). ``mesh``: the environment
    mesh (else one over ``devices``); ``init_params``: a trained editor's network to start
    from."""
    mesh = env_mesh(devices) if mesh is None else mesh
    log(f"maskshift train: algo={cfg.algo} env={env.name} task={env.task.name} rank={env.rank} "
        f"action_size={env.action_size} seed={cfg.seed} "
        + (f"num_envs={cfg.trainer_config.num_envs} updates={cfg.trainer_config.num_updates} "
           if cfg.algo in TRAINED_ALGOS else "")
        + f"devices={mesh.devices.size}x{mesh.devices.flat[0].platform}")
    done = EDITORS[cfg.algo](cfg, env, env_params, out, mesh=mesh, env_chunk=env_chunk, log=log,
                             stop_after_chunks=stop_after_chunks, init_params=init_params)
    if isinstance(done, dict):  # stopped early: the checkpoint is left to resume from
        return done
    edits, history, stats = done
    stats = {**stats, "devices": mesh_size(mesh), "platform": mesh.devices.flat[0].platform,
             "processes": jax.process_count()}
    return write_run(out, cfg, env, env_params, edits, history, stats, log)


def reselect(cfg: RunConfig, out, *, task: Task | None = None, log=print) -> dict | None:
    """Re-select a finished trained run in ``out`` under ``cfg``'s selection settings
    (:data:`~maskshift.run.config.SELECTION_FIELDS`), with no training; returns its new results,
    or ``None`` where that cannot be done (then nothing is written).

    It can where ``out`` holds a finished PPO or APG run whose config equals ``cfg`` in every
    other field, with its checkpoint at the last update: the policy is restored from it, rolled
    out as at the end of training, checked to repeat the recorded episode (every step's
    validation figures), and the run's files are rewritten with the best step chosen under
    ``cfg``. The training figures (``train``, ``history``) are the original run's.
    """
    out = Path(out)
    if cfg.algo not in TRAINED_ALGOS or cfg.sequence_depth:  # a sequence policy: two stages
        return None
    try:
        saved = json.loads((out / "results.json").read_text())
        meta = json.loads((out / "ckpt" / "meta.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    want = training_fields(cfg.to_json())
    if (training_fields(saved.get("config") or {}) != want
            or training_fields(meta.get("config") or {}) != want
            or meta.get("update") != cfg.trainer_config.num_updates):
        return None
    cfg, task = resolve_task(cfg, task)
    env, env_params = build_env(cfg, task)
    # the checkpoint is at the last update: the loop restores it and trains nothing
    done = EDITORS[cfg.algo](cfg, env, env_params, out, mesh=env_mesh(None), env_chunk=None,
                             log=lambda s: None, stop_after_chunks=0)
    if isinstance(done, dict):
        return None
    edits, history, _ = done
    expected = ([t["val_per_step"] for t in saved["targets"]] if cfg.amortized
                else saved["val_per_step"])
    was = {k: saved["config"].get(k) for k in SELECTION_FIELDS}
    try:
        res = write_run(out, cfg, env, env_params, edits, history, saved["train"],
                        log=lambda s: None, expected_val=expected)
    except EpisodeMismatch:
        return None
    log(f"re-selected {out} (was {was}) without training")
    return res


def reuse_or_run(cfg: RunConfig, out, *, task: Task | None = None, log=print,
                 **kwargs) -> dict:
    """The run of ``cfg`` in ``out``: reused if finished with exactly ``cfg`` (and its objective's
    settings, which the config does not hold: a backdoor reward's temperature); re-selected
    (:func:`reselect`) if it differs only in its selection settings; else made afresh with
    :func:`train_and_evaluate` (``kwargs``), replacing whatever ``out`` holds."""
    res = finished_run(out, cfg, resolve_task(cfg)[1].objective) if task is None else None
    if res is not None:
        log(f"reusing {out}")
        return res
    res = reselect(cfg, out, task=task, log=log)
    if res is not None:
        return res
    log(f"running {out}")
    return train_and_evaluate(cfg, out, task=task, overwrite=True, log=lambda s: None, **kwargs)
