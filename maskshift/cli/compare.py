"""``python -m maskshift.compare``: the baselines and the RL editors on the same task and seeds,
evaluated by the same code, side by side (:func:`maskshift.run.compare.compare`).

    python -m maskshift.compare --task unlearn --seeds 0 1 2 --out runs/compare-unlearn
    python -m maskshift.compare --task bias
    python -m maskshift.compare --task backdoor --seeds 0 1 2
"""

from __future__ import annotations

import sys
from pathlib import Path

from maskshift.checkpoint import CheckpointError
from maskshift.cli.args import (
    BACKDOOR_FLAGS,
    TASKS,
    Parser,
    add_backdoor_arguments,
    add_dataset_arguments,
    add_forget_set_arguments,
    add_model_arguments,
    backdoor_fields,
    check_forget_set_args,
    fail,
    forget_set_fields,
    model_fields,
    nonneg_int,
    one_line_warnings,
    path,
    positive_int,
    refuse_unused,
    seed_int,
)
from maskshift.run import TrainingError
from maskshift.run.compare import compare


def build_parser() -> Parser:
    p = Parser(prog="python -m maskshift.compare",
               description="Baselines vs every editor in the environments' action space, on one "
                           "task.")
    p.add_argument("--task", required=True, choices=TASKS)
    add_dataset_arguments(p)
    add_model_arguments(p)
    add_backdoor_arguments(p)
    add_forget_set_arguments(p)
    p.add_argument("--seeds", type=seed_int, nargs="+", default=[0, 1, 2])
    p.add_argument("--forget-class", type=nonneg_int, nargs="+", default=None,
                   help="class(es) to forget, unlearn only (default 7)")
    p.add_argument("--methods", nargs="+", default=None,
                   help="subset of methods (default: all)")
    p.add_argument("--rl-total-steps", type=positive_int, default=None,
                   help="env steps per PPO/APG run (default: maskshift.train's)")
    p.add_argument("--no-tune", dest="no_tune", action="store_const", const=True, default=None,
                   help="run each unlearning or backdoor baseline at its default setting "
                        "instead of choosing from its small grid on val "
                        "(maskshift.baselines.GRIDS)")
    p.add_argument("--out", type=path, default=None, help="default runs/compare-<task>")
    p.add_argument("--overwrite", action="store_true")
    return p


def main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.task != "unlearn":
        refuse_unused(args, p, {"forget_class": "applies to --task unlearn only"})
    if args.task != "bias":
        refuse_unused(args, p, {"model": "applies to --task bias only (the image tasks have one "
                                         "built-in model)"})
    if args.task == "bias":
        refuse_unused(args, p, {"no_tune": "applies to --task unlearn or backdoor only (bias "
                                           "baselines have no grid)"})
    if args.task != "backdoor":
        refuse_unused(args, p, {k: "applies to --task backdoor only" for k in BACKDOOR_FLAGS})
    check_forget_set_args(args, p)
    if len(set(args.seeds)) != len(args.seeds):
        p.error(f"argument --seeds: {args.seeds} repeats a seed; list each seed once")
    out = Path(args.out or f"runs/compare-{args.task}")
    if out.exists() and not out.is_dir():
        p.error(f"argument --out: {out} is an existing file, not a directory; choose another")
    try:
        options = {**backdoor_fields(args), **forget_set_fields(args), **model_fields(args)}
        with one_line_warnings():
            compare(args.task, tuple(args.seeds), out=out, dataset=args.dataset,
                    forget_classes=tuple(args.forget_class or (7,)), methods=args.methods,
                    rl_total_steps=args.rl_total_steps, overwrite=args.overwrite,
                    data_dir=args.data_dir, tune=not args.no_tune, task_options=options,
                    log=lambda s: print(s, flush=True))
    except (ValueError, TrainingError, CheckpointError) as err:
        fail(p, err, 2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
