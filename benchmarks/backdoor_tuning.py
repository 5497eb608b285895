"""How the backdoor objective's reward settings were chosen: on the **val** split only.

    python benchmarks/backdoor_tuning.py --json benchmarks/results/backdoor-tuning.json

For each setting of the objective's edit term (``edit_term``), its utility temperature
(``utility_temperature``), the controller's weight on the clean-loss gradient
(``control_utility_weight``) and the reward's ``lambda_utility``: the gradient controller (seed 0;
it reads no seed or coefficient) and the default RL editor (residual PPO, seeds 0 1 2) in
MaskWorld and ShiftWorld, each run's selected step read on val: its attack success rate, clean
accuracy, and whether it meets the task's target there (attack success <= 5%, clean accuracy
within 2 points of the original's val accuracy). The setting with the most val hits of both
editors (ties: the lower mean val attack success) becomes the objective's default; the test
split is never read. Every editor of the action space shares the reward, so they are all tuned
by this one choice; the baselines have their own val grids.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import tempfile
from pathlib import Path

import numpy as np

from maskshift._io import atomic_write_json
from maskshift.run import make_run_config, train_and_evaluate
from maskshift.tasks import backdoor_task


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="benchmarks/backdoor_tuning.py",
                                description=__doc__.split("\n")[0])
    p.add_argument("--edit-terms", nargs="+", default=["away", "true_label"])  # measured order
    p.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 4.0])
    p.add_argument("--weights", type=float, nargs="+", default=[1.0])
    p.add_argument("--lambda-utility", type=float, nargs="+", default=[10.0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--envs", nargs="+", default=["mask", "shift"])
    p.add_argument("--json", default=None)
    return p


SETTING = ("edit_term", "utility_temperature", "control_utility_weight", "lambda_utility")


def settings(args) -> list[tuple]:
    return list(itertools.product(args.edit_terms, args.temperatures, args.weights,
                                  args.lambda_utility))


def label(setting: tuple) -> str:
    term, temp, w, lu = setting
    return f"{term:<10} T {temp:<4} weight {w:<4} lambda_utility {lu:<6}"


def val_figures(res: dict) -> dict:
    val, before = res["val_per_step"][res["best_step"]], res["val_per_step"][0]
    return {"asr": val["asr"], "clean_acc": val["clean_acc"],
            "meets": bool(val["asr"] <= 0.05 and val["clean_acc"] >= before["clean_acc"] - 0.02)}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    base = backdoor_task()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for setting in settings(args):
            term, temp, w, lu = setting
            task = dataclasses.replace(base, objective=dataclasses.replace(
                base.objective, edit_term=term, utility_temperature=temp,
                control_utility_weight=w))
            for algo, env, seed in itertools.product(("gradient", "ppo"), args.envs, args.seeds):
                if algo == "gradient" and (lu != args.lambda_utility[0] or seed != args.seeds[0]):
                    continue  # the controller reads neither the coefficients nor the seed
                cfg = make_run_config(env=env, algo=algo, task="backdoor", seed=seed,
                                      lambda_utility=lu)
                res = train_and_evaluate(cfg, Path(tmp) / "run", task=task, overwrite=True,
                                         log=lambda s: None)
                row = {"setting": list(setting), "algo": algo, "env": env, "seed": seed,
                       **val_figures(res)}
                rows.append(row)
                print(f"{label(setting)}  {algo:<8} {env:<5} seed {seed}: "
                      f"val asr {row['asr']:.3f} clean {row['clean_acc']:.3f} "
                      f"{'meets' if row['meets'] else '-'}", flush=True)
    print("\nsetting: val hits (controller, residual PPO), mean val asr over both")
    best = None
    for setting in settings(args):
        mine = [r for r in rows if r["setting"] == list(setting)]
        hits = {a: sum(r["meets"] for r in mine if r["algo"] == a) for a in ("gradient", "ppo")}
        runs = {a: sum(r["algo"] == a for r in mine) for a in ("gradient", "ppo")}
        asr = float(np.mean([r["asr"] for r in mine]))
        print(f"  {label(setting)}: controller {hits['gradient']}/{runs['gradient']}, "
              f"PPO {hits['ppo']}/{runs['ppo']}, {asr:.3f}")
        if best is None or (sum(hits.values()), -asr) > best[0]:
            best = ((sum(hits.values()), -asr), setting)
    chosen = dict(zip(SETTING, best[1], strict=True))
    print(f"chosen: {chosen}")
    if args.json:
        atomic_write_json(Path(args.json), {"rows": rows, "setting_fields": list(SETTING),
                                            "chosen": chosen})
    return 0


if __name__ == "__main__":
    sys.exit(main())
