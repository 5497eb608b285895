"""``python -m maskshift.train``: edit a model with RL (or a gradient control) and report it on
held-out data. This module parses and prints; :func:`maskshift.run.train_and_evaluate` does the
work.

Examples::

    python -m maskshift.train --env mask --task unlearn --forget-class 7 --out runs/mask-unlearn
    python -m maskshift.train --env shift --task bias --seed 1
    python -m maskshift.train --env mask --algo gradient     # the greedy gradient controller
    python -m maskshift.train --env shift --algo apg         # analytic policy gradients

``--algo ppo`` (default) and ``apg`` train a policy in jitted chunks of updates (progress is
printed after each) and checkpoint it with Orbax after every chunk (a killed run restarted with the
same command resumes); ``gradient`` and ``oracle`` need no training. Every editor's episode is
rolled out, its best step picked on the validation split, and ``--out`` receives
``results.json``, ``edited/``, the plots and (trained editors) ``ckpt/``.
"""

from __future__ import annotations

import argparse
import math
import sys

import jax

from maskshift.apg import APGConfig
from maskshift.data import add_dataset_arguments, check_task
from maskshift.oracle import OracleConfig
from maskshift.ppo import PPOConfig
from maskshift.run import (
    ALGOS,
    DEFAULT_LR,
    DEFAULT_TOLERANCE,
    DEFAULT_TOTAL_STEPS,
    RunConfig,
    TrainingError,
    build_env,
    finished_run,
    summary_table,
    train_and_evaluate,
)
from maskshift.run.config import check_algo

__all__ = ["DEFAULT_TOLERANCE", "DEFAULT_TOTAL_STEPS", "RunConfig", "TrainingError", "build_env",
           "build_parser", "config_from_args", "finished_run", "main", "summary_table",
           "train_and_evaluate"]


# ------------------------------------------------------------------ CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m maskshift.train",
                                description="Edit a pretrained model with RL (PPO, APG) or a "
                                            "gradient control in the same action space.")
    p.add_argument("--env", default="mask", help="mask (MaskWorld) or shift (ShiftWorld)")
    p.add_argument("--task", default="unlearn", help="unlearn or bias")
    p.add_argument("--algo", default="ppo",
                   help=f"the editor: {', '.join(ALGOS)} (default ppo; gradient and oracle need "
                        "no training)")
    add_dataset_arguments(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--forget-class", type=int, nargs="+", default=[7])
    p.add_argument("--total-steps", type=int, default=None,
                   help=f"env steps to train, ppo/apg (default: {DEFAULT_TOTAL_STEPS})")
    p.add_argument("--num-envs", type=int, default=64)
    p.add_argument("--rank", type=int, default=4)
    p.add_argument("--episode-length", type=int, default=8)
    p.add_argument("--lambda-utility", type=float, default=None,
                   help="utility coefficient (default: 10 unlearn, 2 bias)")
    p.add_argument("--lambda-edit", type=float, default=None,
                   help="edit coefficient (default: 1 unlearn, 4 bias)")
    p.add_argument("--step-size", type=float, default=None,
                   help="largest change per step (default 0.25 mask, 0.1 shift)")
    p.add_argument("--eval-batch", type=int, default=None,
                   help="train examples per set per step (default 64 unlearn, 128 bias)")
    p.add_argument("--lr", type=float, default=None,
                   help=f"learning rate, ppo/apg (default: {DEFAULT_LR})")
    p.add_argument("--oracle-restarts", type=int, default=OracleConfig.restarts,
                   help="oracle: random starts optimised side by side")
    p.add_argument("--oracle-iterations", type=int, default=OracleConfig.iterations,
                   help="oracle: optimiser steps (one episode per restart each)")
    p.add_argument("--select-tolerance", type=float, default=None,
                   help="utility drop allowed when choosing the best step on validation "
                        "(default 0.03 unlearn, 0.02 bias)")
    p.add_argument("--updates-per-chunk", type=int, default=20)
    p.add_argument("--out", default=None,
                   help="output directory (default runs/<env>-<task>-s<seed>, "
                        "runs/<env>-<task>-<algo>-s<seed> for another algo)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    p.add_argument("--devices", type=int, default=None,
                   help="devices to split the environments over (default: all visible)")
    p.add_argument("--env-chunk", type=int, default=None,
                   help="step each device's environments in groups of this many: faster on "
                        "CPU, e.g. 8 (default: one vmap over all of them, best on GPU/TPU)")
    p.add_argument("--distributed", action="store_true",
                   help="call jax.distributed.initialize() first (multi-host: TPU pods, "
                        "multi-node GPU); run the same command on every host")
    return p


def config_from_args(args) -> RunConfig:
    task, algo = check_task(args.task), check_algo(args.algo)
    trained = DEFAULT_TOTAL_STEPS.get(algo, DEFAULT_TOTAL_STEPS["ppo"])
    total = args.total_steps or trained[task]
    num_steps = args.episode_length
    total = max(total, args.num_envs * num_steps)
    lr = args.lr if args.lr is not None else DEFAULT_LR.get(algo, PPOConfig.learning_rate)
    ppo = PPOConfig(num_envs=args.num_envs, num_steps=num_steps, total_timesteps=total,
                    learning_rate=lr if algo == "ppo" else PPOConfig.learning_rate,
                    num_minibatches=math.gcd(4, args.num_envs * num_steps))
    apg = APGConfig(num_envs=args.num_envs, num_steps=num_steps,
                    total_timesteps=total if algo == "apg" else APGConfig.total_timesteps,
                    learning_rate=lr if algo == "apg" else APGConfig.learning_rate)
    oracle = OracleConfig(restarts=args.oracle_restarts, iterations=args.oracle_iterations)
    return RunConfig(env=args.env, task=args.task, dataset=args.dataset, data_dir=args.data_dir,
                     seed=args.seed,
                     forget_classes=tuple(args.forget_class), rank=args.rank,
                     episode_length=args.episode_length, lambda_utility=args.lambda_utility,
                     lambda_edit=args.lambda_edit, step_size=args.step_size,
                     eval_batch=args.eval_batch, select_tolerance=args.select_tolerance,
                     updates_per_chunk=args.updates_per_chunk, ppo=ppo, algo=algo, apg=apg,
                     oracle=oracle)


def default_out(args) -> str:
    algo = "" if args.algo == "ppo" else f"-{args.algo}"
    return f"runs/{args.env}-{args.task}{algo}-s{args.seed}"


def main(argv=None) -> int:
    from maskshift.checkpoint import CheckpointError

    parser = build_parser()
    args = parser.parse_args(argv)
    out = args.out or default_out(args)
    if args.distributed:
        jax.distributed.initialize()
    try:
        cfg = config_from_args(args)
        train_and_evaluate(cfg, out, overwrite=args.overwrite, devices=args.devices,
                           env_chunk=args.env_chunk, log=lambda s: print(s, flush=True))
    except (ValueError, TrainingError, CheckpointError) as err:
        parser.exit(2 if not isinstance(err, TrainingError) else 3, f"error: {err}\n")
    except KeyboardInterrupt:
        print(f"\ninterrupted: rerun the same command to resume from {out}/ckpt",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
