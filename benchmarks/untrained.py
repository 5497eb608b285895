"""What RL adds: a PPO run's policy network before training, rolled out, selected and reported
like the trained one (the same env, selection and test report).

    python benchmarks/untrained.py --task bias --envs mask shift --seeds 0 1 2 \
        --observation controller --heads units --json benchmarks/results/untrained-bias.json

Unit heads over the controller observation start out following the gradient controller's
direction on each step's minibatch; this measures that start, so that a trained policy's figures
can be read as what training added to it.
"""

from __future__ import annotations

import argparse
import sys

import jax

from maskshift import ppo
from maskshift._io import atomic_write_json
from maskshift.rollout import deterministic_rollout, report, select_best_step
from maskshift.run.config import RunConfig, build_env, resolve_task, select_tolerance


def untrained_report(cfg: RunConfig, task=None) -> dict:
    """The test report of ``cfg``'s PPO network at its initialisation for ``cfg.seed`` (on
    ``task``, default ``cfg``'s built-in one)."""
    cfg, task = resolve_task(cfg, task)
    env, p = build_env(cfg, task)
    trainer = ppo.make_train(cfg.ppo, env)
    params = jax.jit(trainer.init)(jax.random.key(cfg.seed), p).params
    edits = deterministic_rollout(env, p, trainer.network, params)
    best, edited, _ = select_best_step(env, p, edits, select_tolerance(cfg))
    return {"best_step": best, "before": report(env, p.task.params, "test"),
            "after": report(env, edited, "test")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="unlearn", choices=["unlearn", "bias"])
    ap.add_argument("--envs", nargs="+", default=["mask", "shift"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--observation", default="controller")
    ap.add_argument("--heads", default="units")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    rows = []
    for env in args.envs:
        for seed in args.seeds:
            cfg = RunConfig(env=env, task=args.task, seed=seed, observation=args.observation,
                            ppo=ppo.PPOConfig(heads=args.heads))
            r = untrained_report(cfg)
            rows.append({"env": env, "seed": seed, **r})
            a = r["after"]
            figures = ("accuracy", "worst_group_acc") if args.task == "bias" else (
                "forget_acc", "retain_acc", "mia")
            print(f"{env} seed {seed}: step {r['best_step']} "
                  + "  ".join(f"{k} {a[k]:.3f}" for k in figures), flush=True)
    if args.json:
        atomic_write_json(args.json, {"args": vars(args), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
