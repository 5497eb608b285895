"""Ablations as in the paper: episode length, reward coefficients, evaluation samples per step.

Swept values that are ``EnvParams`` leaves (``max_steps_in_episode``, ``lambda_utility``,
``lambda_edit``) train side by side in one program: ``jax.vmap(trainer.train)`` over the stacked
values. The evaluation-batch size fixes array shapes, so each of its values compiles on its own.
Every trained policy is then rolled out deterministically, its best step picked on validation, and
reported on the test split, exactly as ``python -m maskshift.train`` does.

    python benchmarks/ablations.py --task unlearn --env mask          # full budget, ~15 min
    python benchmarks/ablations.py --quick                            # a smoke run, ~2 min

Writes ``OUT/ablations.md`` and ``OUT/ablations.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from maskshift._io import atomic_write_json, atomic_write_text
from maskshift.agents.common import deterministic_rollout
from maskshift.agents.ppo import make_train
from maskshift.run import DEFAULT_TOLERANCE, RunConfig, build_env, make_run_config
from maskshift.run.select import select_best_step

SWEEPS = {
    "max_steps_in_episode": [2, 4, 8],
    "lambda_utility": [2.0, 5.0, 10.0, 20.0],
    "lambda_edit": [0.5, 1.0, 2.0, 4.0],
}
EVAL_BATCHES = [16, 64, 256]


def evaluate_policy(env, env_params, network, policy_params, tolerance):
    edits = deterministic_rollout(env, env_params, network, policy_params)
    best, edited, _ = select_best_step(env, env_params, edits, tolerance)
    return best, env.task.report(edited, "test")


def sweep_leaf(cfg: RunConfig, leaf: str, values, log) -> list[dict]:
    """Train one policy per value of an EnvParams leaf, all in one vmapped program."""
    env, env_params = build_env(cfg)
    trainer = make_train(cfg.editor, env)
    dtype = jnp.int32 if leaf == "max_steps_in_episode" else jnp.float32
    stacked = env_params.replace(**{leaf: jnp.asarray(values, dtype)})
    axes = jax.tree.map(lambda _: None, env_params).replace(**{leaf: 0})
    t0 = time.perf_counter()
    rs, metrics = jax.jit(jax.vmap(trainer.train, in_axes=(None, axes)))(
        jax.random.key(cfg.seed), stacked)
    jax.block_until_ready(metrics)
    wall = time.perf_counter() - t0
    log(f"  {leaf}: trained {len(values)} policies side by side in {wall:.1f} s")
    rows = []
    for i, v in enumerate(values):
        p_i = env_params.replace(**{leaf: jnp.asarray(v, dtype)})
        policy = jax.tree.map(lambda x, i=i: x[i], rs.params)
        best, test = evaluate_policy(env, p_i, trainer.network, policy,
                                     DEFAULT_TOLERANCE[cfg.task])
        rows.append({"sweep": leaf, "value": v, "best_step": best, "test": test,
                     "final_return": float(metrics["episode_return"][i, -1]),
                     "train_seconds_shared": round(wall, 1)})
    return rows


def sweep_eval_batch(cfg: RunConfig, values, log) -> list[dict]:
    rows = []
    for v in values:
        c = dataclasses.replace(cfg, eval_batch=v)
        env, env_params = build_env(c)
        trainer = make_train(c.editor, env)
        t0 = time.perf_counter()
        rs, metrics = jax.jit(trainer.train)(jax.random.key(c.seed), env_params)
        jax.block_until_ready(metrics)
        wall = time.perf_counter() - t0
        log(f"  eval_batch={v}: trained in {wall:.1f} s")
        best, test = evaluate_policy(env, env_params, trainer.network, rs.params,
                                     DEFAULT_TOLERANCE[c.task])
        rows.append({"sweep": "eval_batch", "value": v, "best_step": best, "test": test,
                     "final_return": float(metrics["episode_return"][-1]),
                     "train_seconds_shared": round(wall, 1)})
    return rows


def table(rows, task) -> str:
    keys = ("forget_acc", "retain_acc", "mia") if task == "unlearn" else (
        "accuracy", "worst_group_acc", "flip_rate")
    lines = ["| swept | value | " + " | ".join(keys) + " | best step | final return | train s |",
             "|---|---|" + "---|" * (len(keys) + 3)]
    for r in rows:
        lines.append(f"| {r['sweep']} | {r['value']} | "
                     + " | ".join(f"{r['test'][k]:.3f}" for k in keys)
                     + f" | {r['best_step']} | {r['final_return']:.2f} | "
                     f"{r['train_seconds_shared']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--env", default="mask")
    p.add_argument("--task", default="unlearn")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--total-steps", type=int, default=None)
    p.add_argument("--quick", action="store_true", help="tiny budget and two values per sweep")
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args(argv)
    # flat PPO: the network the documented ablations were measured with
    settings = {"env": args.env, "task": args.task, "seed": args.seed,
                "total_steps": args.total_steps, "heads": "flat"}
    sweeps, batches = SWEEPS, EVAL_BATCHES
    if args.quick:
        settings.update(total_steps=args.total_steps or 16 * 8 * 4, num_envs=16, rank=2)
        sweeps = {k: v[:2] for k, v in SWEEPS.items()}
        batches = EVAL_BATCHES[:1]
    cfg = make_run_config(**settings)
    log = lambda s: print(s, flush=True)  # noqa: E731
    log(f"ablations: env={args.env} task={args.task} updates/policy={cfg.editor.num_updates}")
    t0 = time.perf_counter()
    rows = []
    for leaf, values in sweeps.items():
        rows += sweep_leaf(cfg, leaf, values, log)
    rows += sweep_eval_batch(cfg, batches, log)
    md = (f"# Ablations: {args.env} / {args.task}, seed {args.seed}\n\n"
          f"Test-split figures of the validation-selected step; {cfg.editor.num_updates} PPO "
          f"updates of {cfg.editor.num_envs}x{cfg.editor.num_steps} env steps per policy. Command: "
          f"`python benchmarks/ablations.py {' '.join(argv or sys.argv[1:])}`\n\n"
          + table(rows, args.task) + f"\n\nTotal {time.perf_counter() - t0:.0f} s.\n")
    out = Path(args.out)
    atomic_write_text(out / f"ablations-{args.env}-{args.task}.md", md)
    atomic_write_json(out / f"ablations-{args.env}-{args.task}.json",
                      {"config": cfg.to_json(), "rows": rows})
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
