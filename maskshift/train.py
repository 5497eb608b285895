"""``python -m maskshift.train``: edit a model with RL and report it on held-out data.

Examples::

    python -m maskshift.train --env mask --task unlearn --forget-class 7 --out runs/mask-unlearn
    python -m maskshift.train --env shift --task bias --seed 1

A run trains PPO in jitted chunks of updates (progress is printed after each), checkpoints the
runner state with Orbax after every chunk (a killed run restarted with the same command resumes),
rolls the trained policy out deterministically, picks the best step of that episode on the
validation split, and writes to ``--out``:

- ``results.json``: env, task, dataset, seed, config, ``before``/``after`` test metrics, and
  train stats;
- ``edited/`` + ``edited.json``: the edited params (``maskshift.evaluate --checkpoint DIR``);
- ``ckpt/``: policy, optimizer state and runner state;
- ``learning_curve.png`` and ``before_after.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from maskshift._io import (
    atomic_write_json,
    replace_dir,
    restore_pytree,
    save_figure,
    save_pytree,
)
from maskshift.checkpoint import save_edited
from maskshift.data import add_dataset_arguments, check_task, load_dataset, resolve_dataset
from maskshift.envs import ENV_ALIASES, EnvParams, make
from maskshift.evaluate import SUMMARY_KEYS
from maskshift.ppo import PPOConfig, RunnerState, make_train
from maskshift.ppo.rollout import deterministic_rollout, report, select_best_step, to_host
from maskshift.sharding import check_chunk, check_divisible, env_mesh, mesh_size, num_shards
from maskshift.tasks import bias_task, unlearning_task

# Budgets that reach the README's targets on the embedded data (measured, see README).
DEFAULT_TOTAL_STEPS = {"unlearn": 64 * 8 * 160, "bias": 64 * 8 * 640}
DEFAULT_TOLERANCE = {"unlearn": 0.03, "bias": 0.02}
CKPT_FORMAT = "maskshift-train-v1"


class TrainingError(RuntimeError):
    """A run cannot go on (non-finite values, or an output directory it must not touch)."""


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run; a resumed run must have the same one."""

    env: str = "mask"
    task: str = "unlearn"
    dataset: str | None = None
    data_dir: str | None = None
    seed: int = 0
    forget_classes: tuple[int, ...] = (7,)
    rank: int = 4
    episode_length: int = 8
    lambda_utility: float | None = None
    lambda_edit: float | None = None
    step_size: float | None = None
    eval_batch: int | None = None
    select_tolerance: float | None = None
    updates_per_chunk: int = 20
    ppo: PPOConfig = PPOConfig()

    def to_json(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))


def build_env(cfg: RunConfig):
    if cfg.env not in ENV_ALIASES:
        raise ValueError(f"Unknown env {cfg.env!r}; choose 'mask' or 'shift'.")
    data = load_dataset(resolve_dataset(cfg.task, cfg.dataset), data_dir=cfg.data_dir)
    if cfg.task == "unlearn":
        batch = cfg.eval_batch or 64
        task = unlearning_task(cfg.forget_classes, dataset=data, batch_size=batch)
    else:
        batch = cfg.eval_batch or 128
        task = bias_task(dataset=data, batch_size=batch)
    overrides = {"max_steps_in_episode": cfg.episode_length}
    if cfg.step_size is not None:
        overrides["step_size"] = cfg.step_size
    if cfg.lambda_utility is not None:
        overrides["lambda_utility"] = cfg.lambda_utility
    if cfg.lambda_edit is not None:
        overrides["lambda_edit"] = cfg.lambda_edit
    return make(ENV_ALIASES[cfg.env], task=task, rank=cfg.rank, **overrides)


# ------------------------------------------------------------------ checkpoints of the runner
def _runner_to_disk(rs: RunnerState) -> dict:
    return {"runner": rs._replace(key=jax.random.key_data(rs.key))}


def _save_runner(out: Path, rs: RunnerState, history: dict, cfg: RunConfig) -> None:
    tmp = Path(tempfile.mkdtemp(dir=out, prefix=".ckpt."))
    try:
        save_pytree(tmp / "state", _runner_to_disk(rs))
        atomic_write_json(tmp / "meta.json", {"format": CKPT_FORMAT, "update": int(rs.update),
                                              "config": cfg.to_json(), "history": history})
        replace_dir(tmp, out / "ckpt")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load_runner(out: Path, like: RunnerState, cfg: RunConfig):
    meta_path = out / "ckpt" / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise TrainingError(f"The checkpoint in {out / 'ckpt'} is corrupt ({err}); pass "
                            "--overwrite to start the run again.") from None
    if meta.get("format") != CKPT_FORMAT:
        raise TrainingError(f"{meta_path} has format {meta.get('format')!r}, not {CKPT_FORMAT!r}; "
                            "pass --overwrite to start the run again.")
    if meta.get("config") != cfg.to_json():
        raise TrainingError(f"{out} holds an unfinished run with a different config; rerun it "
                            "with the same flags to resume, or pass --overwrite to replace it.")
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype),
                            _runner_to_disk(like))
    try:
        restored = restore_pytree(out / "ckpt" / "state", abstract)["runner"]
    except Exception as err:
        raise TrainingError(f"Cannot restore {out / 'ckpt'} ({type(err).__name__}: "
                            f"{str(err)[:200]}); pass --overwrite to start again.") from None
    rs = restored._replace(key=jax.random.wrap_key_data(restored.key))
    # back onto the layout the compiled program expects (the mesh may differ from the saved one)
    rs = jax.device_put(rs, jax.tree.map(lambda a: a.sharding, like))
    return rs, meta["history"]


def finished_run(run_dir, cfg: RunConfig) -> dict | None:
    """The results of a finished run in ``run_dir`` made with exactly ``cfg``, else ``None``."""
    path = Path(run_dir) / "results.json"
    if not path.exists():
        return None
    res = json.loads(path.read_text())
    saved = {k: v for k, v in res["config"].items() if k != "env_params"}
    return res if saved == cfg.to_json() else None


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse an output directory the run must not touch (changes nothing on disk)."""
    if overwrite or not out.exists():
        return
    if (out / "results.json").exists():
        raise TrainingError(f"{out} already holds a finished run (results.json). Choose another "
                            "--out, or pass --overwrite to replace it.")
    if any(out.iterdir()) and not (out / "ckpt").exists():
        raise TrainingError(f"{out} exists and is not a maskshift run; choose another --out, or "
                            "pass --overwrite to replace its contents.")


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and overwrite:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


# ------------------------------------------------------------------ the run
def _shown(labels) -> list[int]:
    """Indices of the metrics a person reads (accuracies, flip rate, counterfactual gap)."""
    return [i for i, k in enumerate(labels) if "acc" in k or "flip" in k or "gap" in k]


def _fmt_progress(u, n_updates, env_steps, m, labels, sps) -> str:
    fm = m["final_metrics"]
    shown = "  ".join(f"{labels[i]} {fm[i]:.3f}" for i in _shown(labels))
    return (f"update {u:>5}/{n_updates}  env steps {env_steps:>9,}  "
            f"return {m['episode_return']:8.3f}  {shown}  {sps:,.0f} steps/s")


def train_and_evaluate(cfg: RunConfig, out, *, overwrite: bool = False, log=print,
                       stop_after_chunks: int | None = None, devices=None,
                       env_chunk: int | None = None) -> dict:
    """Train, select, evaluate and write a run to ``out``; returns the results dict.

    ``devices``: how many devices (or which) to split the environment batch over; ``None`` uses
    every visible device. The device count is not part of the run's config: a run may resume on
    another count, and gives the same numbers up to float rounding. ``env_chunk``: step the
    environments of each device in groups of this many (faster on CPU; see
    :func:`maskshift.sharding.map_envs`).
    ``stop_after_chunks`` ends the process-side loop early, as a kill would (for tests): the
    checkpoint is left for the next call to resume from.
    """
    out = Path(out)
    _check_out(out, overwrite)
    mesh = env_mesh(devices)
    check_divisible(cfg.ppo.num_envs, mesh)
    check_chunk(cfg.ppo.num_envs, env_chunk, mesh_size(mesh))
    env, env_params = build_env(cfg)  # validates env, task, dataset, classes, rank
    _prepare_out(out, overwrite)
    trainer = make_train(cfg.ppo, env, mesh, env_chunk)
    n_updates = cfg.ppo.num_updates
    steps_per_update = cfg.ppo.num_envs * cfg.ppo.num_steps
    labels = env.task.objective.metric_names
    run = jax.jit(trainer.run, static_argnums=2)
    rs = jax.jit(trainer.init)(jax.random.key(cfg.seed), env_params)
    history: dict = {"update": [], "env_steps": [], "episode_return": [], "final_metrics": []}
    if (out / "ckpt").exists():
        rs, history = _load_runner(out, rs, cfg)
        log(f"resuming {out} from update {int(rs.update)}/{n_updates}")
    log(f"maskshift train: env={env.name} task={env.task.name} rank={env.rank} "
        f"action_size={env.action_size} num_envs={cfg.ppo.num_envs} updates={n_updates} "
        f"seed={cfg.seed} devices={mesh.devices.size}x{mesh.devices.flat[0].platform}")
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
            bad = int(rs.update) + 1 + int(np.argmax(~np.isfinite(m["reward"]) |
                                                     ~np.isfinite(m["actor_loss"])))
            raise TrainingError(f"Non-finite loss or reward at update {bad} (chunk of updates "
                                f"{int(rs.update) + 1}-{int(rs.update) + n}); the run stopped. The "
                                f"last good checkpoint (update {int(rs.update)}) is kept in "
                                f"{out / 'ckpt'}. Lower --lr or --step-size and rerun with "
                                "--overwrite.")
        rs = new_rs
        u = int(rs.update)
        for i in range(n):
            history["update"].append(u - n + i + 1)
            history["env_steps"].append((u - n + i + 1) * steps_per_update)
            history["episode_return"].append(float(m["episode_return"][i]))
            history["final_metrics"].append([float(x) for x in m["final_metrics"][i]])
        _save_runner(out, rs, history, cfg)
        chunks_done += 1
        last = jax.tree.map(lambda v: v[-1], m)
        log(_fmt_progress(u, n_updates, u * steps_per_update, last, labels,
                          n * steps_per_update / max(elapsed, 1e-9)))
    train_wall = time.perf_counter() - wall0

    # The product: deterministic rollout, best step on validation, figures on test.
    tolerance = cfg.select_tolerance if cfg.select_tolerance is not None else \
        DEFAULT_TOLERANCE[cfg.task]
    edits = deterministic_rollout(env, env_params, trainer.network, rs.params)
    best, edited, val_steps = select_best_step(env, env_params, edits, tolerance)
    before = report(env, env_params.task.params, "test")
    after = report(env, edited, "test")
    meta = {"task": cfg.task, "dataset": env.task.dataset.name, "env": env.name,
            "seed": cfg.seed, "edit_paths": ["/".join(p) for p in env.task.edit_paths]}
    if cfg.task == "unlearn":
        meta["forget_classes"] = list(env.task.objective.forget_classes)
    save_edited(out, to_host(edited), meta)
    results = {
        "env": env.name, "task": cfg.task, "dataset": env.task.dataset.name, "seed": cfg.seed,
        "config": {**cfg.to_json(), "env_params": _env_params_json(env_params)},
        "before": before, "after": after, "best_step": best, "select_tolerance": tolerance,
        "val_per_step": val_steps,
        "train": {"wall_seconds": round(train_wall, 2), "compile_seconds": round(compile_s, 2),
                  "env_steps": int(rs.update) * steps_per_update, "updates": int(rs.update),
                  "devices": mesh_size(mesh),
                  # how many devices the environment batch was really split over
                  "env_batch_shards": num_shards(rs.obs),
                  "platform": mesh.devices.flat[0].platform},
        "history": history,
    }
    _plots(out, results, env)
    atomic_write_json(out / "results.json", results)
    log(summary_table(results))
    return results


def _env_params_json(p: EnvParams) -> dict:
    return {k: float(getattr(p, k)) for k in ("lambda_utility", "lambda_edit", "step_size",
                                              "mask_max", "shift_cap", "max_steps_in_episode")}


def summary_table(results: dict) -> str:
    keys = SUMMARY_KEYS[results["task"]]
    b, a = results["before"], results["after"]
    lines = [f"\nmaskshift: {results['env']} on {results['dataset']} ({results['task']}), "
             f"seed {results['seed']}: held-out test split, best step {results['best_step']} "
             "chosen on validation",
             f"  {'metric':<16}{'before':>10}{'after':>10}{'change':>10}"]
    for k in keys:
        lines.append(f"  {k:<16}{b[k]:>10.4f}{a[k]:>10.4f}{a[k] - b[k]:>+10.4f}")
    t = results["train"]
    lines.append(f"  trained {t['env_steps']:,} env steps in {t['wall_seconds']:.1f} s "
                 f"({t['compile_seconds']:.1f} s compiling)")
    return "\n".join(lines)


def _plots(out: Path, results: dict, env) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = results["history"]
    labels = env.task.objective.metric_names
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    axes[0].plot(h["env_steps"], h["episode_return"])
    axes[0].set(xlabel="env steps", ylabel="mean episode return", title="Learning curve")
    fm = np.asarray(h["final_metrics"]).reshape(len(h["env_steps"]), -1)
    for i in _shown(labels):
        axes[1].plot(h["env_steps"], fm[:, i], label=labels[i])
    axes[1].set(xlabel="env steps", ylabel="end-of-episode metric (train minibatch)",
                title="Metrics at episode end", ylim=(-0.02, 1.02))
    axes[1].legend()
    fig.tight_layout()
    save_figure(fig, out / "learning_curve.png")

    b, a = results["before"], results["after"]
    fig, ax = plt.subplots(figsize=(9, 4))
    if results["task"] == "unlearn":
        names = [str(i) for i in range(len(b["per_class_acc"]))]
        vb, va = b["per_class_acc"], a["per_class_acc"]
        forget = list(env.task.objective.forget_classes)
        ax.set(xlabel="class", ylabel="test accuracy",
               title=f"Per-class test accuracy, before vs after (forget {forget})")
    else:
        names = [f"{g}/{y}" for g in b["group_acc"] for y in ("non-tox", "tox")]
        vb = [v for g in b["group_acc"].values() for v in g]
        va = [v for g in a["group_acc"].values() for v in g]
        ax.set(ylabel="test accuracy",
               title="Test accuracy per (identity group, label), before vs after")
    x = np.arange(len(names))
    ax.bar(x - 0.2, vb, 0.4, label="before")
    ax.bar(x + 0.2, va, 0.4, label="after")
    ax.set_xticks(x, names, rotation=60 if len(names) > 10 else 0, ha="right" if len(names) > 10
                  else "center", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, out / "before_after.png")


# ------------------------------------------------------------------ CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m maskshift.train",
                                description="Edit a pretrained model with RL (PPO).")
    p.add_argument("--env", default="mask", help="mask (MaskWorld) or shift (ShiftWorld)")
    p.add_argument("--task", default="unlearn", help="unlearn or bias")
    add_dataset_arguments(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--forget-class", type=int, nargs="+", default=[7])
    p.add_argument("--total-steps", type=int, default=None,
                   help=f"env steps to train (default: {DEFAULT_TOTAL_STEPS})")
    p.add_argument("--num-envs", type=int, default=64)
    p.add_argument("--rank", type=int, default=4)
    p.add_argument("--episode-length", type=int, default=8)
    p.add_argument("--lambda-utility", type=float, default=None,
                   help="utility coefficient (default: 10 unlearn, 2 bias)")
    p.add_argument("--lambda-edit", type=float, default=None,
                   help="edit coefficient (default: 1 unlearn, 4 bias)")
    p.add_argument("--step-size", type=float, default=None,
                   help="largest change per step (default 0.25 mask, 0.1 shift)")
    p.add_argument("--eval-batch", type=int, default=None,
                   help="train examples per set per step (default 64 unlearn, 128 bias)")
    p.add_argument("--lr", type=float, default=PPOConfig.learning_rate)
    p.add_argument("--select-tolerance", type=float, default=None,
                   help="utility drop allowed when choosing the best step on validation "
                        "(default 0.03 unlearn, 0.02 bias)")
    p.add_argument("--updates-per-chunk", type=int, default=20)
    p.add_argument("--out", default=None,
                   help="output directory (default runs/<env>-<task>-s<seed>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    p.add_argument("--devices", type=int, default=None,
                   help="devices to split the environments over (default: all visible)")
    p.add_argument("--env-chunk", type=int, default=None,
                   help="step each device's environments in groups of this many: faster on "
                        "CPU, e.g. 8 (default: one vmap over all of them, best on GPU/TPU)")
    p.add_argument("--distributed", action="store_true",
                   help="call jax.distributed.initialize() first (multi-host: TPU pods, "
                        "multi-node GPU); run the same command on every host")
    return p


def config_from_args(args) -> RunConfig:
    total = args.total_steps or DEFAULT_TOTAL_STEPS[check_task(args.task)]
    num_steps = args.episode_length
    ppo = PPOConfig(num_envs=args.num_envs, num_steps=num_steps,
                    total_timesteps=max(total, args.num_envs * num_steps),
                    learning_rate=args.lr, num_minibatches=math.gcd(4, args.num_envs * num_steps))
    return RunConfig(env=args.env, task=args.task, dataset=args.dataset, data_dir=args.data_dir,
                     seed=args.seed,
                     forget_classes=tuple(args.forget_class), rank=args.rank,
                     episode_length=args.episode_length, lambda_utility=args.lambda_utility,
                     lambda_edit=args.lambda_edit, step_size=args.step_size,
                     eval_batch=args.eval_batch, select_tolerance=args.select_tolerance,
                     updates_per_chunk=args.updates_per_chunk, ppo=ppo)


def main(argv=None) -> int:
    from maskshift.checkpoint import CheckpointError

    parser = build_parser()
    args = parser.parse_args(argv)
    out = args.out or f"runs/{args.env}-{args.task}-s{args.seed}"
    if args.distributed:
        jax.distributed.initialize()
    try:
        cfg = config_from_args(args)
        train_and_evaluate(cfg, out, overwrite=args.overwrite, devices=args.devices,
                           env_chunk=args.env_chunk, log=lambda s: print(s, flush=True))
    except (ValueError, TrainingError, CheckpointError) as err:
        parser.exit(2 if not isinstance(err, TrainingError) else 3, f"error: {err}\n")
    except KeyboardInterrupt:
        print(f"\ninterrupted: rerun the same command to resume from {out}/ckpt",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
