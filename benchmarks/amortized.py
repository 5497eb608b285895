"""One trained policy, new edits: a unit-head PPO policy trained to forget one class edits every
other class in one rollout (``maskshift.edit``), beside the greedy gradient controller.

    python benchmarks/amortized.py --out runs/amortized                   # digits, 2 envs, seed 0
    python benchmarks/amortized.py --dataset fashion_mnist --envs mask --out runs/amortized-fm

For each env and seed: ``maskshift.train --observation gradient --heads units --forget-class
TRAIN`` (reused when finished), then for every class of ``--eval-classes``
:func:`maskshift.policy.edit_with_policy` (no training; its seconds cover the rollout, the
selection on val and the test reports, compilation included) and ``--algo gradient`` on the same
class. Targets (test split): forget <= 0.05 and retain >= the original's - 0.03 (the zero-shot
target), and forget <= 0.02 likewise (the single-task one). Writes ``OUT/amortized.md`` and
``OUT/amortized.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from maskshift import PPOConfig, RunConfig, train_and_evaluate
from maskshift._io import atomic_write_json, atomic_write_text
from maskshift.policy import edit_with_policy, load_policy
from maskshift.run import finished_run


def meets(before: dict, after: dict, forget: float) -> bool:
    return after["forget_acc"] <= forget and after["retain_acc"] >= before["retain_acc"] - 0.03


def _run(cfg: RunConfig, out: Path) -> dict:
    res = finished_run(out, cfg)
    if res is None or not (out / "policy.json").exists() and cfg.algo == "ppo":
        print(f"running {out}", flush=True)
        res = train_and_evaluate(cfg, out, overwrite=True, log=lambda s: None)
    return res


def _row(kind, cls, res, seconds) -> dict:
    b, a = res["before"], res["after"]
    return {"editor": kind, "class": cls, "forget": a["forget_acc"], "retain": a["retain_acc"],
            "retain_before": b["retain_acc"], "mia": a["mia"], "seconds": seconds,
            "best_step": res["best_step"], "zero_shot_target": meets(b, a, 0.05),
            "target": meets(b, a, 0.02)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/amortized")
    p.add_argument("--dataset", default=None, help="default: the digits")
    p.add_argument("--envs", nargs="+", default=["mask", "shift"], choices=["mask", "shift"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--train-class", type=int, default=7)
    p.add_argument("--eval-classes", type=int, nargs="+", default=list(range(10)))
    args = p.parse_args(argv)
    out = Path(args.out)
    rows = []
    for env in args.envs:
        for seed in args.seeds:
            base = RunConfig(env=env, dataset=args.dataset, seed=seed,
                             forget_classes=(args.train_class,))
            cfg = dataclasses.replace(base, observation="gradient",
                                      ppo=PPOConfig(heads="units"))
            t0 = time.perf_counter()
            trained = _run(cfg, out / f"{env}-units-c{args.train_class}-s{seed}")
            train_s = trained["train"]["wall_seconds"]
            print(f"{env} seed {seed}: policy trained on class {args.train_class} in "
                  f"{train_s:.0f} s ({time.perf_counter() - t0:.0f} s with this call)", flush=True)
            policy = load_policy(out / f"{env}-units-c{args.train_class}-s{seed}")
            for cls in args.eval_classes:
                res = edit_with_policy(policy, [cls], log=lambda s: None)
                rows.append({"env": env, "seed": seed, "policy_train_seconds": train_s,
                             **_row("policy", cls, res, res["seconds"])})
                g = _run(dataclasses.replace(base, algo="gradient", forget_classes=(cls,)),
                         out / f"{env}-gradient-c{cls}")
                rows.append({"env": env, "seed": seed,
                             **_row("gradient", cls, g, g["train"]["wall_seconds"])})
                pr, gr = rows[-2], rows[-1]
                print(f"{env} s{seed} class {cls}: policy forget {pr['forget']:.3f} retain "
                      f"{pr['retain']:.3f} MIA {pr['mia']:.3f} ({pr['seconds']:.1f} s) | gradient "
                      f"forget {gr['forget']:.3f} retain {gr['retain']:.3f} MIA {gr['mia']:.3f} "
                      f"({gr['seconds']:.1f} s)", flush=True)
    lines = [f"Policy trained on class {args.train_class} (unit heads, gradient observation), "
             f"applied to each class with no training, beside the gradient controller "
             f"({args.dataset or 'digits'}; test split).", "",
             "| env | seed | class | editor | forget | retain (orig) | MIA | s | zero-shot "
             "target | target |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['env']} | {r['seed']} | {r['class']} | {r['editor']} | "
                     f"{r['forget']:.3f} | {r['retain']:.3f} ({r['retain_before']:.3f}) | "
                     f"{r['mia']:.3f} | {r['seconds']:.1f} | "
                     f"{'yes' if r['zero_shot_target'] else 'no'} | "
                     f"{'yes' if r['target'] else 'no'} |")
    lines.append("")
    for env in args.envs:
        for kind in ("policy", "gradient"):
            sel = [r for r in rows if r["env"] == env and r["editor"] == kind]
            zero_shot = sum(r["zero_shot_target"] for r in sel)
            lines.append(f"- {env} {kind}: zero-shot target {zero_shot}/{len(sel)}, target "
                         f"{sum(r['target'] for r in sel)}/{len(sel)}")
    md = "\n".join(lines) + "\n"
    atomic_write_json(out / "amortized.json", {"args": vars(args), "rows": rows})
    atomic_write_text(out / "amortized.md", md)
    print("\n" + md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
