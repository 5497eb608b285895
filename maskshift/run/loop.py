"""The checkpointed host loop that trains any policy trainer (PPO, APG) in compiled chunks.

A trainer is a :class:`maskshift.agents.common.Trainer` of pure functions:
``init(key, env_params)`` and
``run(state, env_params, n)`` (``n`` updates in one compiled program, returning per-update
metrics with at least ``episode_return`` and ``final_metrics``). After every chunk the loop checks
that every metric and parameter is finite, prints a progress line, and saves the trainer state
with Orbax (atomically: a kill leaves the previous checkpoint); a later call with the same config
resumes from it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from maskshift._io import atomic_write_json, replace_dir, restore_pytree, save_pytree
from maskshift.hosts import host_copy, is_primary
from maskshift.run.config import RunConfig, TrainingError, training_fields
from maskshift.sharding import num_shards

CKPT_FORMAT = "maskshift-train-v1"


def _runner_to_disk(rs) -> dict:
    return {"runner": rs._replace(key=jax.random.key_data(rs.key))}


def save_runner(out: Path, rs, history: dict, cfg: RunConfig) -> None:
    """Write ``out/ckpt`` atomically. Every process calls it (the state's host copy is a
    collective); process 0 writes."""
    state = host_copy(_runner_to_disk(rs))
    if not is_primary():
        return
    tmp = Path(tempfile.mkdtemp(dir=out, prefix=".ckpt."))
    try:
        save_pytree(tmp / "state", state)
        atomic_write_json(tmp / "meta.json", {"format": CKPT_FORMAT, "update": int(rs.update),
                                              "config": cfg.to_json(), "history": history})
        replace_dir(tmp, out / "ckpt")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_runner(out: Path, like, cfg: RunConfig):
    meta_path = out / "ckpt" / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise TrainingError(f"The checkpoint in {out / 'ckpt'} is corrupt ({err}); pass "
                            "`overwrite=True` to start the run again.") from None
    if meta.get("format") != CKPT_FORMAT:
        raise TrainingError(f"{meta_path} has format {meta.get('format')!r}, not {CKPT_FORMAT!r}; "
                            "pass `overwrite=True` to start the run again.")
    # the selection settings do not touch training: a run may finish under other ones
    if training_fields(meta.get("config") or {}) != training_fields(cfg.to_json()):
        raise TrainingError(f"{out} holds an unfinished run with a different config; rerun it "
                            "with the same config to resume, or pass `overwrite=True` to replace "
                            "it.")
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype),
                            _runner_to_disk(like))
    try:
        restored = restore_pytree(out / "ckpt" / "state", abstract)["runner"]
    except Exception as err:
        raise TrainingError(f"Cannot restore {out / 'ckpt'} ({type(err).__name__}: "
                            f"{str(err)[:200]}); pass `overwrite=True` to start again.") from None
    rs = restored._replace(key=jax.random.wrap_key_data(restored.key))
    # back onto the layout the compiled program expects (the mesh may differ from the saved one)
    rs = jax.device_put(rs, jax.tree.map(lambda a: a.sharding, like))
    return rs, meta["history"]


def shown_metrics(labels) -> list[int]:
    """Indices of the metrics a person reads (accuracies, flip rate, counterfactual gap)."""
    return [i for i, k in enumerate(labels) if "acc" in k or "flip" in k or "gap" in k]


def _fmt_progress(u, n_updates, env_steps, m, labels, sps) -> str:
    fm = m["final_metrics"]
    shown = "  ".join(f"{labels[i]} {fm[i]:.3f}" for i in shown_metrics(labels))
    return (f"update {u:>5}/{n_updates}  env steps {env_steps:>9,}  "
            f"return {m['episode_return']:8.3f}  {shown}  {sps:,.0f} steps/s")


def _first_bad_update(m: dict) -> int:
    """Index of the first update whose metrics hold a non-finite value."""
    bad = np.zeros(len(m["episode_return"]), bool)
    for v in m.values():
        bad |= ~np.isfinite(np.asarray(v).reshape(len(bad), -1)).all(1)
    return int(np.argmax(bad))


def train_checkpointed(trainer, env_params, cfg: RunConfig, out: Path, *, log=print,
                       stop_after_chunks: int | None = None, init_params=None):
    """Train ``trainer`` for ``cfg``'s updates, checkpointing into ``out/ckpt``; returns
    ``(state, history, stats)``, or ``{"stopped_at_update": u}`` when ``stop_after_chunks`` ended
    it early (as a kill would: the checkpoint is left for the next call to resume from).
    ``init_params``: the network's parameters to start from instead of a fresh initialisation
    (a policy trained further; the optimizer starts afresh); a resumed run reads its own."""
    config = trainer.config
    n_updates = config.num_updates
    steps_per_update = config.num_envs * config.num_steps
    labels = trainer.env.task.objective.metric_names
    run = jax.jit(trainer.run, static_argnums=2)
    rs = jax.jit(trainer.init)(jax.random.key(cfg.seed), env_params)
    if init_params is not None:
        rs = rs._replace(params=jax.tree.map(lambda a, b: jax.device_put(jnp.asarray(b),
                                                                         a.sharding),
                                             rs.params, init_params))
    history: dict = {"update": [], "env_steps": [], "episode_return": [], "final_metrics": []}
    if (out / "ckpt").exists():
        rs, history = load_runner(out, rs, cfg)
        log(f"resuming {out} from update {int(rs.update)}/{n_updates}")
    compile_s, wall0, chunks_done = 0.0, time.perf_counter(), 0
    compiled_runs: dict = {}  # chunk length -> compiled program (at most two lengths)
    while int(rs.update) < n_updates:
        if stop_after_chunks is not None and chunks_done >= stop_after_chunks:
            return {"stopped_at_update": int(rs.update)}
        n = min(cfg.updates_per_chunk, n_updates - int(rs.update))
        t0 = time.perf_counter()
        if n not in compiled_runs:
            compiled_runs[n] = run.lower(rs, env_params, n).compile()
        t1 = time.perf_counter()
        compile_s += t1 - t0
        new_rs, m = compiled_runs[n](rs, env_params)
        m = jax.tree.map(np.asarray, m)
        elapsed = time.perf_counter() - t1
        finite = all(np.all(np.isfinite(v)) for v in jax.tree.leaves(m)) and all(
            bool(jnp.all(jnp.isfinite(p))) for p in jax.tree.leaves(new_rs.params))
        if not finite:
            bad = int(rs.update) + 1 + _first_bad_update(m)
            raise TrainingError(f"Non-finite loss or reward at update {bad} (chunk of updates "
                                f"{int(rs.update) + 1}-{int(rs.update) + n}); the run stopped. The "
                                f"last good checkpoint (update {int(rs.update)}) is kept in "
                                f"{out / 'ckpt'}. Lower `lr` or `step_size` and rerun with "
                                "`overwrite=True`.")
        rs = new_rs
        u = int(rs.update)
        for i in range(n):
            history["update"].append(u - n + i + 1)
            history["env_steps"].append((u - n + i + 1) * steps_per_update)
            history["episode_return"].append(float(m["episode_return"][i]))
            history["final_metrics"].append([float(x) for x in m["final_metrics"][i]])
        save_runner(out, rs, history, cfg)
        chunks_done += 1
        last = jax.tree.map(lambda v: v[-1], m)
        log(_fmt_progress(u, n_updates, u * steps_per_update, last, labels,
                          n * steps_per_update / max(elapsed, 1e-9)))
    stats = {"wall_seconds": round(time.perf_counter() - wall0, 2),
             "compile_seconds": round(compile_s, 2),
             "env_steps": int(rs.update) * steps_per_update, "updates": int(rs.update)}
    if hasattr(rs, "obs"):  # how many devices the environment batch was really split over
        stats["env_batch_shards"] = num_shards(rs.obs)
    return rs, history, stats
