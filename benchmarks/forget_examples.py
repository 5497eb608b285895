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
from maskshift.data import load_dataset, resolve_dataset
from maskshift.data.forget_sets import random_forget_set
from maskshift.metrics import avg_gap
from maskshift.run import make_run_config
from maskshift.run.compare import TABLE_KEYS, compare
from maskshift.run.pipeline import reuse_or_run
from maskshift.run.policy import edit_examples_with_policy, load_policy
from maskshift.tasks import FORGET_REWARDS

# the amortized policies' pool of forget sets: set i drawn with (POOL_SEED, i), never the
# table's set (drawn with the int --forget-seed)
POOL_SEED = 1000

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
    p.add_argument("--amortized-rewards", nargs="*", default=["confidence", "accuracy_gap"],
                   choices=FORGET_REWARDS,
                   help="train an amortized MaskWorld policy per seed on each of these rewards "
                        "and edit the table's set zero-shot (none: skip)")
    p.add_argument("--forget-sets", type=int, default=16, help="the amortized policy's pool")
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


def amortized_runs(reward: str, args, retrain_reports: list[dict]) -> list[dict]:
    """Per seed: a MaskWorld policy trained over ``--forget-sets`` random sets (drawn with
    seeds ``(POOL_SEED, i)``, none of them the table's set), then its zero-shot edit of the
    table's forget set; each report with its Avg. Gap to that seed's retrained model."""
    data = load_dataset(resolve_dataset("unlearn", args.dataset))
    rows = random_forget_set(len(data.train.y), args.fraction, args.forget_seed)
    reports = []
    for seed, ref in zip(args.seeds, retrain_reports, strict=True):
        cfg = make_run_config(env="mask", task="unlearn", dataset=args.dataset, seed=seed,
                              amortized=True, forget_fraction=args.fraction,
                              forget_seed=POOL_SEED, forget_sets=args.forget_sets,
                              forget_reward=reward)
        run_dir = Path(args.out) / "amortized" / f"{reward}-s{seed}"
        trained = reuse_or_run(cfg, run_dir, log=lambda s: print(f"[amortized {reward}] {s}",
                                                                   flush=True))
        res = edit_examples_with_policy(load_policy(run_dir), rows, log=print)
        rep = {**res["after"], "wall_seconds": res["seconds"],
               "train_seconds": trained["train"]["wall_seconds"]}
        rep["avg_gap"] = avg_gap(rep, ref)
        reports.append(rep)
    return reports


KEYS = (*TABLE_KEYS["unlearn"], "forget_acc", "retain_acc", "test_acc", "wall_seconds")


def row(runs: list[dict]) -> dict:
    """Mean ± std over seeds of every figure."""
    out = {k: {"mean": float(np.mean([r[k] for r in runs])),
               "std": float(np.std([r[k] for r in runs]))} for k in KEYS}
    out["runs"] = len(runs)
    if "setting" in runs[0]:
        out["settings"] = [r["setting"] for r in runs]
    return out


def pooled(results: dict[str, dict], amortized: dict[str, list[dict]]) -> dict:
    """Every (method, reward) row. A method that does not depend on the reward (the
    baselines, the original) is listed once."""
    table = {}
    for reward, res in results.items():
        for m in res["methods"]:
            reward_free = m == "original" or m in BASELINES
            name = m if reward_free else f"{m} [{reward}]"
            if name not in table:
                table[name] = row(res["runs"][m])
    for reward, runs in amortized.items():
        table[f"MaskWorld-residual amortized, zero-shot [{reward}]"] = row(runs)
    return table


def stand_in_agreement(results: dict[str, dict], amortized: dict[str, list[dict]]) -> dict:
    """How well the reward's cheap attack (a confidence threshold fitted once on the original)
    stands in for MIA-Efficacy (an SVC fitted on each model): the Pearson correlation over every
    run in the table of ``100 (1 - attack_member_rate)`` (the share it calls non-members) with
    MIA-Efficacy, and the mean absolute difference in points."""
    runs = [r for res in results.values() for m in res["methods"] for r in res["runs"][m]]
    runs += [r for reports in amortized.values() for r in reports]
    pairs = np.array([(100.0 * (1.0 - r["attack_member_rate"]), r["mia_efficacy"])
                      for r in runs if "attack_member_rate" in r])
    r = float(np.corrcoef(pairs.T)[0, 1]) if len(pairs) > 2 and pairs.std(0).min() > 0 else None
    return {"runs": len(pairs), "pearson_r": r,
            "mean_abs_diff": float(np.abs(pairs[:, 0] - pairs[:, 1]).mean())}


def markdown(table: dict, args, size: int) -> str:
    keys = TABLE_KEYS["unlearn"]
    data = args.dataset or "digits"
    lines = [f"Forgetting a random {args.fraction:.0%} of `{data}`'s train split ({size} "
             f"examples, forget seed {args.forget_seed}), seeds {args.seeds}. Points except "
             "the entropy MIA (0–1); UA = 100 − accuracy on the forget set, RA on the retain "
             "set (train), TA on the test split; mean ± std over seeds; sorted by Avg. Gap to "
             "the retrained model of the same seed. `[reward]`: the editor's edit term. The "
             "amortized rows: a policy trained over random forget sets that never include this "
             "one, editing it zero-shot (wall s: the edit alone).", "",
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
    retrain = next(iter(results.values()))["runs"]["retrain"]
    amortized = {r: amortized_runs(r, args, retrain) for r in args.amortized_rewards}
    table = pooled(results, amortized)
    size = next(iter(results.values())).get("forget_examples", 0)
    agree = stand_in_agreement(results, amortized)
    md = markdown(table, args, size)
    if agree["pearson_r"] is not None:
        md += (f"\nThe reward's threshold attack against MIA-Efficacy over these {agree['runs']} "
               f"runs: Pearson r {agree['pearson_r']:.2f}, mean |difference| "
               f"{agree['mean_abs_diff']:.2f} points.\n")
    print(md)
    if args.json:
        atomic_write_json(args.json, {"args": vars(args), "table": table,
                                      "attack_stand_in": agree})
        atomic_write_text(Path(args.json).with_suffix(".md"), md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
