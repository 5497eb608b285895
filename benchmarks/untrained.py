"""What RL adds: a PPO run's policy network before training, rolled out, selected and reported
like the trained one (the same env, selection and test report).

    python benchmarks/untrained.py --task bias --envs mask shift --seeds 0 1 2 \
        --observation controller --heads units --json benchmarks/results/untrained-bias.json
    python benchmarks/untrained.py --classes 0 1 2 3 4 5 6 7 8 9 --skip-gains 1.0 0.5 0.3 \
        --json benchmarks/results/skip-gain.json       # how the default skip gain was chosen
    python benchmarks/untrained.py --dataset fashion_mnist --classes 0 1 2 3 4 5 6 7 8 9 \
        --seeds 0 1 --forget 0.02 --json benchmarks/results/untrained-fashion.json

Unit heads over the controller observation start out following the gradient controller's
direction on each step's minibatch; this measures that start, so that a trained policy's figures
can be read as what training added to it. With several ``--skip-gains`` it counts, per env and
gain, the (class, seed) pairs whose selected step meets the unlearning target (forget <= 0.05,
``--forget`` to change it; retain >= the original's - 0.03) on the validation split, which is
how ``PPOConfig.skip_gain`` was chosen, and on the test split beside it. ``--dataset`` runs it on
a real dataset (Fashion-MNIST: beside ``benchmarks/real_data.py``'s trained residual policies).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import jax

from maskshift._io import atomic_write_json
from maskshift.agents import ppo
from maskshift.agents.common import deterministic_rollout
from maskshift.metrics import meets_unlearning_target
from maskshift.run.build import build_env, resolve_task
from maskshift.run.config import RunConfig, make_run_config, select_tolerance
from maskshift.run.select import select_best_step

ZERO_SHOT_FORGET = 0.05


def untrained_reports(cfg: RunConfig, seeds, gains, task=None) -> list[dict]:
    """For each skip gain and seed, ``cfg``'s PPO network at its initialisation on ``task``
    (default ``cfg``'s built-in one): best step on val, val figures, test before and after."""
    cfg, task = resolve_task(cfg, task)
    env, p = build_env(cfg, task)
    before = env.task.report(p.task.params, "test")
    rows = []
    for gain in gains:
        trainer = ppo.make_train(dataclasses.replace(cfg.editor, skip_gain=gain), env)
        init = jax.jit(trainer.init)
        for seed in seeds:
            params = init(jax.random.key(seed), p).params
            edits = deterministic_rollout(env, p, trainer.network, params)
            best, edited, vals = select_best_step(env, p, edits, select_tolerance(cfg))
            rows.append({"skip_gain": gain, "seed": seed, "best_step": best,
                         "val_before": vals[0], "val": vals[best], "before": before,
                         "after": env.task.report(edited, "test")})
    return rows


def untrained_report(cfg: RunConfig, task=None) -> dict:
    """The test report of ``cfg``'s PPO network at its initialisation for ``cfg.seed`` (on
    ``task``, default ``cfg``'s built-in one)."""
    return untrained_reports(cfg, [cfg.seed], [cfg.editor.skip_gain], task)[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="unlearn", choices=["unlearn", "bias"])
    ap.add_argument("--envs", nargs="+", default=["mask", "shift"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--classes", type=int, nargs="+", default=[7],
                    help="forget classes, one task each (--task unlearn)")
    ap.add_argument("--skip-gains", type=float, nargs="+", default=[ppo.PPOConfig.skip_gain])
    ap.add_argument("--observation", default="controller")
    ap.add_argument("--heads", default="units")
    ap.add_argument("--dataset", default=None,
                    help="a dataset name (e.g. fashion_mnist); default: the task's embedded one")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--edit", nargs="+", default=None, metavar="LAYER",
                    help="the edited layers (default: the task's own)")
    ap.add_argument("--episode-length", type=int, default=None,
                    help="steps per episode (default: the editor's own)")
    ap.add_argument("--forget", type=float, default=ZERO_SHOT_FORGET,
                    help="the target's largest forget accuracy (real_data.py's table: 0.02)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    unlearn = args.task == "unlearn"
    figures = ("forget_acc", "retain_acc", "mia") if unlearn else ("accuracy", "worst_group_acc")
    rows = []
    for env in args.envs:
        for cls in args.classes if unlearn else [None]:
            cfg = make_run_config(env=env, task=args.task, observation=args.observation,
                                  dataset=args.dataset, data_dir=args.data_dir, heads=args.heads,
                                  forget_classes=(cls,) if unlearn else (7,),
                                  edit=tuple(args.edit) if args.edit else None,
                                  episode_length=args.episode_length)
            for r in untrained_reports(cfg, args.seeds, args.skip_gains):
                r = {"env": env, "class": cls, **r}
                if unlearn:
                    r["val_target"] = meets_unlearning_target(r["val_before"], r["val"],
                                                              forget=args.forget)
                    r["test_target"] = meets_unlearning_target(r["before"], r["after"],
                                                               forget=args.forget)
                rows.append(r)
                a = r["after"]
                print(f"{env} {'' if cls is None else f'class {cls} '}gain {r['skip_gain']} "
                      f"seed {r['seed']}: step {r['best_step']} "
                      + "  ".join(f"{k} {a[k]:.3f}" for k in figures), flush=True)
    summary = []
    if unlearn:
        for env in args.envs:
            for gain in args.skip_gains:
                sel = [r for r in rows if r["env"] == env and r["skip_gain"] == gain]
                summary.append({"env": env, "skip_gain": gain, "pairs": len(sel),
                                "val_target": sum(r["val_target"] for r in sel),
                                "test_target": sum(r["test_target"] for r in sel)})
                s = summary[-1]
                print(f"{env} gain {gain}: target met on val {s['val_target']}/{s['pairs']}, "
                      f"on test {s['test_target']}/{s['pairs']}", flush=True)
    if args.json:
        atomic_write_json(args.json, {"args": vars(args), "summary": summary, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
