"""The trainer's acceptance runs: both environments on both tasks, seeds 0, 1, 2, with the
defaults of ``python -m maskshift.train``, and a table of the held-out test figures.

    python benchmarks/acceptance.py --out runs/acceptance          # 12 runs, ~20 min on 2 cores

Each run is exactly ``python -m maskshift.train --env ENV --task TASK --seed S --out
OUT/ENV-TASK-sS``; a finished run with the same config is reused. Writes ``OUT/acceptance.md`` and
``OUT/acceptance.json``. Targets (from the project's issue): unlearning, test forget accuracy
<= 0.02 and retain accuracy >= 0.90 and at most 3 points below the original's; bias,
worst-group accuracy up by >= 5 points and accuracy at most 2 points below the original's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from maskshift._io import atomic_write_json, atomic_write_text
from maskshift.train import build_parser, config_from_args, finished_run, train_and_evaluate


def meets_target(task: str, before: dict, after: dict) -> bool:
    if task == "unlearn":
        return (after["forget_acc"] <= 0.02 and after["retain_acc"] >= 0.90
                and after["retain_acc"] >= before["retain_acc"] - 0.03)
    return (after["worst_group_acc"] >= before["worst_group_acc"] + 0.05
            and after["accuracy"] >= before["accuracy"] - 0.02)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/acceptance")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--tasks", nargs="+", default=["unlearn", "bias"])
    p.add_argument("--envs", nargs="+", default=["mask", "shift"])
    args = p.parse_args(argv)
    rows = []
    for task in args.tasks:
        for env in args.envs:
            for seed in args.seeds:
                cfg = config_from_args(build_parser().parse_args(
                    ["--env", env, "--task", task, "--seed", str(seed)]))
                run_dir = Path(args.out) / f"{env}-{task}-s{seed}"
                res = finished_run(run_dir, cfg)
                if res is None:
                    print(f"running {run_dir}", flush=True)
                    res = train_and_evaluate(cfg, run_dir, overwrite=True, log=lambda s: None)
                rows.append({"env": env, "task": task, "seed": seed, "before": res["before"],
                             "after": res["after"], "best_step": res["best_step"],
                             "train": res["train"],
                             "meets_target": meets_target(task, res["before"], res["after"])})
                print(f"{env:>5} {task:>7} seed {seed}: target "
                      f"{'met' if rows[-1]['meets_target'] else 'MISSED'}", flush=True)
    lines = ["| env | task | seed | before | after (test) | target | train s (compile) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["task"] == "unlearn":
            keys = ("forget_acc", "retain_acc", "mia")
        else:
            keys = ("worst_group_acc", "accuracy", "flip_rate")
        b = ", ".join(f"{k} {r['before'][k]:.3f}" for k in keys)
        a = ", ".join(f"{k} {r['after'][k]:.3f}" for k in keys)
        lines.append(f"| {r['env']} | {r['task']} | {r['seed']} | {b} | {a} | "
                     f"{'met' if r['meets_target'] else 'missed'} | "
                     f"{r['train']['wall_seconds']:.0f} ({r['train']['compile_seconds']:.0f}) |")
    md = "\n".join(lines) + "\n"
    atomic_write_text(Path(args.out) / "acceptance.md", md)
    atomic_write_json(Path(args.out) / "acceptance.json", rows)
    print(md)
    return 0 if all(r["meets_target"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
