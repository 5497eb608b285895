"""Unlearning on real Fashion-MNIST: every forget class, every method, the retrained model beside.

    apt-get install dataset-fashion-mnist  # once: the IDX files, no download later
    python benchmarks/real_data.py --rl-total-steps 5120 --out runs/real-data
    python benchmarks/real_data.py --classes 7 --seeds 0 \\
        --methods retrain MaskWorld-gradient MaskWorld-residual --out runs/real-data-7

For each forget class this is ``python -m maskshift.compare --task unlearn --dataset
fashion_mnist --forget-class C --seeds ...`` into ``OUT/class-C``, on the full training set
(54,000 train / 6,000 val / 10,000 test images) and the built-in 28x28 CNN (edited layer
``[1568, 128]``). A restarted run, with the same or more seeds or methods, reuses every finished
editor run and baseline (a trained run made under other selection settings is re-selected, not
retrained). It writes ``OUT/real_data.md`` and ``OUT/real_data.json``: per
class and method the test forget, retain and overall accuracy, the MIA with the retrained model's
beside it, and the wall time; and, per method, how many (class, seed) runs meet forget <= 0.02
with retain >= the original's - 0.03, with the mean forget, retain change, distance of the MIA
from the retrained model's and wall time over those runs. Every method runs at its documented
defaults (``--rl-total-steps`` changes the trained editors' budget for all of them alike). The
gradient controls in the RL editors' own action space (same env, 8 steps, rank 4, selection on
val) run beside them by default: the greedy controller (``-gradient``) and the open-loop oracle
(``-oracle``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from maskshift._io import atomic_write_json, atomic_write_text
from maskshift.baselines import BASELINES
from maskshift.data import load_dataset
from maskshift.metrics import meets_unlearning_target
from maskshift.run.compare import RL_METHODS, compare

DATASET = "fashion_mnist"
KEYS = ("forget_acc", "retain_acc", "test_acc", "mia", "wall_seconds")
# the unlearning literature's figures (points; maskshift.metrics.field), Avg. Gap to retrain
FIELD = ("ua", "ra", "ta", "mia_efficacy", "avg_gap")
# per editor, means over every (class, seed) run
SUMMARY = ("forget_acc", "retain_change", "mia_gap_to_retrain", *FIELD, "wall_seconds")


def class_result(out: Path, cls: int, args) -> dict:
    """``maskshift.compare`` for one forget class (it reuses every finished editor run and
    baseline report in ``OUT/class-C``, and re-selects a trained run made under other selection
    settings)."""
    print(f"class {cls}: {', '.join(args.methods)} for seeds {args.seeds}", flush=True)
    return compare("unlearn", args.seeds, out=out / f"class-{cls}", dataset=DATASET,
                   forget_classes=(cls,), methods=["original", *args.methods],
                   rl_total_steps=args.rl_total_steps, overwrite=True, data_dir=args.data_dir,
                   log=lambda s: print("  " + s, flush=True))


def tabulate(results: dict[int, dict], methods: list[str]) -> dict:
    """Per (class, method) means over seeds, and per method the runs that meet the target."""
    rows, hits = [], {m: [] for m in methods if m not in ("original", "retrain")}
    for cls, res in sorted(results.items()):
        runs = res["runs"]
        retrain_mia = [r["mia"] for r in runs.get("retrain", [])]
        for m in methods:
            reps = runs[m]
            row = {"class": cls, "method": m, "seeds": len(reps),
                   **{k: float(np.mean([r[k] for r in reps])) for k in KEYS if k in reps[0]},
                   "retrain_mia": float(np.mean(retrain_mia)) if retrain_mia else None}
            if m in hits:
                ok = [meets_unlearning_target(o, r)
                      for o, r in zip(runs["original"], reps, strict=True)]
                row["meets"] = int(sum(ok))
                hits[m] += [{"class": cls, "seed": s, "meets": k,
                             **{x: r[x] for x in (*KEYS, *FIELD)},
                             "retain_change": r["retain_acc"] - o["retain_acc"],
                             "mia_gap_to_retrain": abs(r["mia"] - t["mia"])}
                            for s, k, r, o, t in zip(res["seeds"], ok, reps, runs["original"],
                                                     runs["retrain"], strict=True)]
            rows.append(row)
    return {"rows": rows, "runs": hits,
            "meets": {m: [sum(h["meets"] for h in v), len(v)] for m, v in hits.items()},
            "summary": {m: {k: float(np.mean([h[k] for h in v])) for k in SUMMARY}
                        for m, v in hits.items()}}


def markdown(table: dict) -> str:
    lines = ["| class | method | forget | retain | test acc | MIA | retrained MIA | wall s "
             "| meets |", "|---|---|---|---|---|---|---|---|---|"]

    def f(v):
        return "–" if v is None else f"{v:.3f}"

    for r in table["rows"]:
        meets_cell = f"{r['meets']}/{r['seeds']}" if "meets" in r else ""
        lines.append(f"| {r['class']} | {r['method']} | {f(r['forget_acc'])} | "
                     f"{f(r['retain_acc'])} | {f(r['test_acc'])} | {f(r['mia'])} | "
                     f"{f(r['retrain_mia'])} | {r.get('wall_seconds', 0):.1f} | {meets_cell} |")
    lines += ["", "Per method over every (class, seed) run, test split: runs meeting forget <= "
              "0.02 and retain >= original - 0.03, and means; UA, RA, TA, MIA-Efficacy and Avg. "
              "Gap (to the retrained model of the same seed) in points; sorted by Avg. Gap.", "",
              "| method | meets | forget | retain change | abs(MIA - retrained MIA) | UA | RA | TA "
              "| MIA-Efficacy | Avg. Gap | wall s |", "|---" * 11 + "|"]
    for m, (k, n) in sorted(table["meets"].items(),
                            key=lambda item: table["summary"][item[0]]["avg_gap"]):
        sm = table["summary"][m]
        lines.append(f"| {m} | {k}/{n} | {sm['forget_acc']:.3f} | {sm['retain_change']:+.3f} | "
                     f"{sm['mia_gap_to_retrain']:.3f} | "
                     + " | ".join(f"{sm[x]:.2f}" for x in FIELD) + f" | {sm['wall_seconds']:.1f} |")
    misses = [h for v in table["runs"].values() for h in v if not h["meets"]]
    if misses:
        lines += ["", "Misses:", ""]
        lines += [f"- {m} class {h['class']} seed {h['seed']}: forget {h['forget_acc']:.3f}, "
                  f"retain {h['retain_acc']:.3f}" for m, v in table["runs"].items() for h in v
                  if not h["meets"]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    methods = [*BASELINES["unlearn"], *RL_METHODS]
    default = ["retrain", *[m for m in BASELINES["unlearn"] if m != "retrain"],
               "MaskWorld", "ShiftWorld", "MaskWorld-gradient", "ShiftWorld-gradient",
               "MaskWorld-oracle", "ShiftWorld-oracle", "MaskWorld-residual", "ShiftWorld-residual",
               "ShiftWorld-residual-step"]  # the last: ShiftWorld's default RL editor
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/real-data")
    p.add_argument("--classes", type=int, nargs="+", default=list(range(10)))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--methods", nargs="+", default=default, choices=methods, metavar="METHOD",
                   help=f"default: {' '.join(default)}")
    p.add_argument("--rl-total-steps", type=int, default=None,
                   help="env steps per PPO/APG run, every trained editor alike (default: "
                        "maskshift.train's)")
    p.add_argument("--data-dir", default=None,
                   help="a directory of the Fashion-MNIST IDX files (default: the Debian "
                        "package's, or a prepared TFDS copy)")
    args = p.parse_args(argv)
    if "retrain" not in args.methods:
        args.methods = ["retrain", *args.methods]  # every MIA is read beside it
    try:
        data = load_dataset(DATASET, data_dir=args.data_dir)
    except ValueError as err:
        p.exit(2, f"error: {err}\n")
    bad = [c for c in args.classes if not 0 <= c < data.num_classes]
    if bad:
        p.error(f"argument --classes: {bad[0]} is outside 0..{data.num_classes - 1}")
    out = Path(args.out)
    results = {c: class_result(out, c, args) for c in args.classes}
    table = tabulate(results, ["original", *args.methods])
    md = markdown(table)
    atomic_write_json(out / "real_data.json", {"dataset": DATASET, "classes": args.classes,
                                               "seeds": args.seeds, "methods": args.methods,
                                               "rl_total_steps": args.rl_total_steps, **table})
    atomic_write_text(out / "real_data.md", md)
    print("\n" + md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
