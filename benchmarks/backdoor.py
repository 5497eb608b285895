"""Backdoor removal on the digits CNN: every editor of the action space and the baselines, seeds
0 1 2, and an amortized unlearning policy tried zero-shot on the backdoor.

    python benchmarks/backdoor.py --out runs/compare-backdoor \\
        --json benchmarks/results/backdoor-digits.json

One ``maskshift.compare --task backdoor`` (its runs reused when finished, so a killed benchmark
picks up where it was): the original, clean retraining, clean fine-tuning and fine-pruning (each
chosen from its val grid), and the gradient controller, the oracle, the default RL editor
(residual PPO), flat PPO and APG in MaskWorld and ShiftWorld. Columns: clean accuracy, attack
success rate and accuracy on triggered images (test split), wall seconds, env steps and the runs
that meet the task's target (attack success <= 5%, clean accuracy within 2 points of the
original's). Then, per env, one amortized policy trained by ``maskshift.train --amortized`` on
the unlearning pool ``--pool`` (default budget, seed 0, reused when finished) edits the backdoored
model zero-shot (:func:`maskshift.run.policy.zero_shot_edit`): no target, what happens is
reported. Writes the JSON and a Markdown table beside it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from maskshift._io import atomic_write_json, atomic_write_text
from maskshift.run import make_run_config, reuse_or_run
from maskshift.run.compare import compare
from maskshift.run.policy import load_policy, zero_shot_edit
from maskshift.tasks import backdoor_task

METHODS = ["original", "clean_retrain", "clean_finetune", "fine_pruning",
           "MaskWorld-gradient", "ShiftWorld-gradient", "MaskWorld-oracle", "ShiftWorld-oracle",
           "MaskWorld-residual", "ShiftWorld-residual", "MaskWorld-apg", "ShiftWorld-apg",
           "MaskWorld", "ShiftWorld"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="benchmarks/backdoor.py", description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=METHODS)
    p.add_argument("--pool", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5],
                   help="the amortized policy's forget classes (empty: no zero-shot rows)")
    p.add_argument("--envs", nargs="+", default=["mask", "shift"])
    p.add_argument("--rl-total-steps", type=int, default=None)
    p.add_argument("--pool-total-steps", type=int, default=None,
                   help="the amortized policy's budget (default maskshift.train's)")
    p.add_argument("--out", default="runs/compare-backdoor")
    p.add_argument("--json", default=None, help="write the figures here (and a .md)")
    return p


def zero_shot_rows(args) -> list[dict]:
    task = backdoor_task()
    rows = []
    for env in args.envs if args.pool else ():
        cfg = make_run_config(env=env, amortized=True, forget_classes=tuple(args.pool),
                              total_steps=args.pool_total_steps)
        run_dir = Path(args.out) / "amortized" / f"{env}-pool{'-'.join(map(str, args.pool))}"
        trained = reuse_or_run(cfg, run_dir, log=lambda s: print("  " + s, flush=True))
        res = zero_shot_edit(load_policy(run_dir), task)
        rows.append({"env": env, "pool": list(args.pool),
                     "train_env_steps": trained["train"]["env_steps"],
                     "before": res["before"], "after": res["after"],
                     "best_step": res["best_step"], "seconds": res["seconds"],
                     "meets_target": task.objective.meets_target(res["before"], res["after"])})
    return rows


def markdown(comparison_md: str, zero_shot: list[dict]) -> str:
    lines = [comparison_md.rstrip("\n")]
    if zero_shot:
        lines += ["", "An amortized unlearning policy (unit heads, controller observation, "
                  "trained on forget classes " + str(zero_shot[0]["pool"]) + ") applied "
                  "zero-shot to the backdoored model, one rollout, best step on val:", "",
                  "| env | clean_acc | asr | triggered_acc | best step | s | meets target |",
                  "|---|---|---|---|---|---|---|"]
        for r in zero_shot:
            a = r["after"]
            lines.append(f"| {r['env']} | {a['clean_acc']:.3f} | {a['asr']:.3f} | "
                         f"{a['triggered_acc']:.3f} | {r['best_step']} | {r['seconds']:.1f} | "
                         f"{'yes' if r['meets_target'] else 'no'} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    result = compare("backdoor", tuple(args.seeds), out=args.out, methods=args.methods,
                     rl_total_steps=args.rl_total_steps, overwrite=True,
                     log=lambda s: print(s, flush=True))
    zero_shot = zero_shot_rows(args)
    md = markdown((Path(args.out) / "comparison.md").read_text(), zero_shot)
    print("\n" + md)
    if args.json:
        atomic_write_json(Path(args.json), {"comparison": result, "zero_shot": zero_shot})
        atomic_write_text(Path(args.json).with_suffix(".md"), md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
