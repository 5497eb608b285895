"""Random-subset forgetting measured as the unlearning literature measures it: forget a random
share of the train split; every baseline, the gradient controls and APG on the differentiable
objective, PPO and Quark on every objective; UA / RA / TA / MIA-Efficacy / entropy MIA / Avg.
Gap to the retrained model, wall time.

    python benchmarks/forget_examples.py --fraction 0.1 --seeds 0 1 2 \\
        --out runs/forget10-digits --json benchmarks/results/forget10-digits.json

One ``maskshift.compare`` per reward (``OUT/<reward>/``; the baselines and the gradient editors
only under ``confidence``, the differentiable one; finished runs are reused, so a killed run
picks up where it was), then every method's runs pooled into one table, sorted by Avg. Gap. The
forget set is the same for every seed (``--forget-seed``); each seed has its own retrained
reference, baseline and editor runs. Writes the table as Markdown next to the JSON.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from maskshift._io import atomic_write_json, atomic_write_text
from maskshift.run.compare import TABLE_KEYS, compare
from maskshift.tasks import FORGET_REWARDS

BASELINES = ["retrain", "finetune", "gradient_ascent", "random_labels", "salun", "l1_sparse",
             "scrub"]
GRADIENT_EDITORS = ["MaskWorld-gradient", "ShiftWorld-gradient", "MaskWorld-oracle",
                    "ShiftWorld-oracle", "MaskWorld-apg", "ShiftWorld-apg"]
# trained on every reward, differentiable or not
RL_EDITORS = ["MaskWorld-residual", "ShiftWorld-residual", "MaskWorld", "ShiftWorld",
              "MaskWorld-quark", "ShiftWorld-quark"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="benchmarks/forget_examples.py",
                                description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default=None, help="default: the embedded digits")
    p.add_argument("--fraction", type=float, default=0.1, help="forget share of train")
    p.add_argument("--forget-seed", type=int, default=0)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--baselines", nargs="*", default=BASELINES)
    p.add_argument("--gradient-editors", nargs="*", default=GRADIENT_EDITORS)
    p.add_argument("--rl-editors", nargs="*", default=RL_EDITORS)
    p.add_argument("--rewards", nargs="+", default=list(FORGET_REWARDS),
                   choices=FORGET_REWARDS)
    p.add_argument("--out", default="runs/forget-examples")
    p.add_argument("--json", default=None, help="write the pooled figures here (and a .md)")
    return p


def reward_result(reward: str, args) -> dict:
    """The comparison of ``reward``'s methods (the baselines and gradient editors only with the
    differentiable reward)."""
    methods = ["original", "retrain", *args.rl_editors]
    if reward == "confidence":
        methods = ["original", *dict.fromkeys([*args.baselines, "retrain"]),
                   *args.gradient_editors, *args.rl_editors]
    options = {"forget_fraction": args.fraction, "forget_seed": args.forget_seed,
               "forget_reward": reward}
    return compare("unlearn", tuple(args.seeds), out=Path(args.out) / reward,
                   dataset=args.dataset, methods=methods, overwrite=True, task_options=options,
                   log=lambda s: print(f"[{reward}] {s}", flush=True))


def pooled(results: dict[str, dict]) -> dict:
    """Every (method, reward) row: mean ± std of each figure over seeds. A method that does
    not depend on the reward (the baselines, the original) is listed once."""
    keys = (*TABLE_KEYS["unlearn"], "forget_acc", "retain_acc", "test_acc", "wall_seconds")
    table = {}
    for reward, res in results.items():
        for m in res["methods"]:
            reward_free = m == "original" or m in BASELINES
            name = m if reward_free else f"{m} [{reward}]"
            if name in table:
                continue
            runs = res["runs"][m]
            table[name] = {k: {"mean": float(np.mean([r[k] for r in runs])),
                               "std": float(np.std([r[k] for r in runs]))} for k in keys}
            table[name]["runs"] = len(runs)
            if "setting" in runs[0]:
                table[name]["settings"] = [r["setting"] for r in runs]
    return table


def markdown(table: dict, args, size: int) -> str:
    keys = TABLE_KEYS["unlearn"]
    data = args.dataset or "digits"
    lines = [f"Forgetting a random {args.fraction:.0%} of `{data}`'s train split ({size} "
             f"examples, forget seed {args.forget_seed}), seeds {args.seeds}. Points except "
             "the entropy MIA (0–1); UA = 100 − accuracy on the forget set, RA on the retain "
             "set (train), TA on the test split; mean ± std over seeds; sorted by Avg. Gap to "
             "the retrained model of the same seed. `[reward]`: the editor's edit term.", "",
             "| method | " + " | ".join(keys) + " | wall s |", "|---|" + "---|" * (len(keys) + 1)]
    for m in sorted(table, key=lambda m: table[m]["avg_gap"]["mean"]):
        t = table[m]
        cells = [f"{t[k]['mean']:.{3 if k == 'mia' else 2}f} ± "
                 f"{t[k]['std']:.{3 if k == 'mia' else 2}f}" for k in keys]
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {t['wall_seconds']['mean']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    results = {r: reward_result(r, args) for r in args.rewards}
    table = pooled(results)
    size = next(iter(results.values())).get("forget_examples", 0)
    md = markdown(table, args, size)
    print(md)
    if args.json:
        atomic_write_json(args.json, {"args": vars(args), "table": table})
        atomic_write_text(Path(args.json).with_suffix(".md"), md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
