"""``python -m maskshift.sequence``: forget classes, or sets of train examples, one request after
another, each edit starting from the last edited model, and report after each what a stream of
requests puts at risk (relapse of earlier requests, erosion of the rest). This module parses
and prints; :func:`maskshift.run.sequence.run_sequence` does the work.

Examples::

    python -m maskshift.sequence --env mask --requests 3 5 8 --algo gradient --out runs/seq
    python -m maskshift.sequence --requests 3 5 8 --policy runs/amortized --out runs/seq-policy
    python -m maskshift.sequence --requests 3 5 8 --algo salun --json
    python -m maskshift.sequence --example-requests 5 --forget-fraction 0.05 --algo gradient
    python -m maskshift.sequence --example-requests 5 --forget-seed 1 --policy runs/pool

``--algo``: an editor of the action space (ppo, the default RL editor, apg, gradient, oracle;
one run per request with ``maskshift.train``'s defaults), or a baseline at its default setting
(salun, retrain, finetune, ...); ``--policy DIR``: a trained PPO policy edits every request with
no training (example requests: a policy trained over random sets, ``maskshift.train --amortized
--forget-fraction F``; each request the share it was trained on unless ``--forget-fraction``
says otherwise, drawn with a ``--forget-seed`` other than its training sets'). ``--out``
receives ``plan.json``, ``request-K/`` per request (its ``edited/`` model: ``maskshift.evaluate
--from`` and ``maskshift.train --from`` read it), ``sequence.json`` and ``sequence.png``. A
killed sequence resumes with the same command.
"""

from __future__ import annotations

import argparse
import json
import sys

from maskshift.checkpoint import CheckpointError
from maskshift.cli.args import (
    Parser,
    add_dataset_arguments,
    add_forget_set_arguments,
    fail,
    nonneg_int,
    path,
    positive_int,
    seed_int,
)
from maskshift.cli.launch import DISTRIBUTED_FLAGS
from maskshift.cli.train import (
    add_editor_options,
    add_reward_and_selection,
    check_combinations,
    config_from_args,
)
from maskshift.cli.train import build_parser as train_parser
from maskshift.run import ALGOS, OutputDirError, TrainingError
from maskshift.run.sequence import METHODS, make_plan, run_sequence

# the editor flags (argparse destinations, default None) a baseline or a policy does not read
EDITOR_FLAGS = ("total_steps", "num_envs", "observation", "heads", "skip_gain", "minibatch",
                "lambda_utility", "lambda_edit", "step_size", "eval_batch", "lr",
                "oracle_restarts", "oracle_iterations", "select_tolerance", "updates_per_chunk")


def build_parser() -> Parser:
    p = Parser(prog="python -m maskshift.sequence",
               description="Forget classes, or sets of train examples, one request after "
                           "another with one editor; report relapse and erosion after each "
                           "request.")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--requests", type=nonneg_int, nargs="+", metavar="CLASS",
                      help="the classes to forget, in the order the requests arrive")
    what.add_argument("--example-requests", type=positive_int, metavar="N",
                      help="N requests to forget sets of train examples instead: disjoint "
                           "random sets of --forget-fraction of the train split each, drawn "
                           "with --forget-seed (docs/sequences.md)")
    p.add_argument("--env", default=None, choices=("mask", "shift"),
                   help="mask (MaskWorld, default) or shift (ShiftWorld)")
    p.add_argument("--algo", default=None, choices=METHODS, metavar="METHOD",
                   help="the editor of every request: ppo (default), apg, gradient, oracle, or a "
                        "baseline at its default setting: "
                        + ", ".join(m for m in METHODS if m not in (*ALGOS, "policy")))
    p.add_argument("--policy", type=path, default=None, metavar="DIR",
                   help="a finished `maskshift.train --algo ppo` run: its policy edits every "
                        "request with no training (its own env and model); example requests "
                        "take one trained with --amortized --forget-fraction, drawn with "
                        "another --forget-seed")
    add_dataset_arguments(p)
    add_forget_set_arguments(p)
    p.add_argument("--edit", nargs="+", default=None, metavar="LAYER",
                   help="layer names or leaf paths to edit (default Dense_0)")
    p.add_argument("--seed", type=seed_int, default=0)
    add_editor_options(p)
    add_reward_and_selection(p)
    p.add_argument("--out", type=path, default=None,
                   help="output directory (default runs/sequence-<method>-<requests>-s<seed>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object at the end: before, and after_each request")
    return p


def _as_train_args(args, algo: str) -> argparse.Namespace:
    """The flags as ``maskshift.train`` reads them, for one request's run: every train flag at
    its default, then this command's own."""
    ns = train_parser().parse_args([])
    for name, value in vars(args).items():
        setattr(ns, name, value)
    ns.algo, ns.env = algo, args.env or "mask"
    for name in ("task_factory", "objective_factory", "from_run", "forget_class", "env_chunk",
                 "target_class", "trigger_size", "poison_rate", "backdoor_reward",
                 *DISTRIBUTED_FLAGS):
        setattr(ns, name, None)
    ns.task, ns.amortized, ns.distributed = "unlearn", False, False
    return ns


def check_args(args, parser: Parser) -> None:
    """Refuse flags that have no effect with the others given (one line, exit 2)."""
    method = "policy" if args.policy is not None else (args.algo or "ppo")
    _check_example_args(args, parser)
    if args.policy is not None and args.algo not in (None, "policy"):
        parser.error(f"argument --policy: the policy edits every request; drop --algo "
                     f"{args.algo}")
    if method == "policy" and args.policy is None:
        parser.error("argument --algo: policy needs --policy DIR (a finished PPO run)")
    if method in ALGOS:
        check_combinations(_as_train_args(args, method), parser)
        return
    why = ("the policy brings its own env, model and settings" if method == "policy"
           else f"{method} is a baseline at its default setting")
    given = [f for f in EDITOR_FLAGS if getattr(args, f) is not None]
    given += [f for f in ("env", "dataset", "data_dir", "edit") if method == "policy"
              and getattr(args, f) is not None]
    if given:
        parser.error(f"argument --{given[0].replace('_', '-')}: {why}; drop it")


def _check_example_args(args, parser: Parser) -> None:
    """Example requests: a drawn share per request (one line, exit 2, for what does not fit)."""
    for flag in ("forget_indices", "forget_stratified"):
        if getattr(args, flag) is not None:
            parser.error(f"argument --{flag.replace('_', '-')}: a sequence draws its example "
                         "requests (--example-requests N --forget-fraction F); drop it")
    if args.example_requests is None:
        given = [f for f in ("forget_fraction", "forget_seed", "forget_reward")
                 if getattr(args, f) is not None]
        if given:
            parser.error(f"argument --{given[0].replace('_', '-')}: applies to "
                         "--example-requests N; class requests forget whole classes")
        return
    if args.forget_fraction is None and args.policy is None:
        parser.error("argument --example-requests: needs --forget-fraction F, each request's "
                     "share of the train split (e.g. 0.05)")
    if args.policy is not None and args.forget_reward is not None:
        parser.error("argument --forget-reward: the policy edits with the reward term it was "
                     "trained on; drop it")


def _default_out(args, method: str) -> str:
    if args.example_requests is not None:
        return (f"runs/sequence-{method}-examples{args.example_requests}x{args.forget_fraction:g}"
                f"-s{args.seed}")
    return f"runs/sequence-{method}-{'-'.join(map(str, args.requests))}-s{args.seed}"


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(args, parser)
    method = "policy" if args.policy is not None else (args.algo or "ppo")
    out = args.out or _default_out(args, method)
    log = (lambda s: None) if args.json else (lambda s: print(s, flush=True))
    try:
        cfg = config_from_args(_as_train_args(args, method if method in ALGOS else "gradient"))
        plan = make_plan(cfg, args.requests or (), method, args.policy,
                         examples=args.example_requests)
        result = run_sequence(plan, out, overwrite=args.overwrite, log=log)
    except (ValueError, OutputDirError, CheckpointError) as err:
        fail(parser, err, 2)
    except TrainingError as err:
        fail(parser, err, 3)
    except KeyboardInterrupt:
        print(f"\ninterrupted: rerun the same command to resume the sequence in {out}",
              file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps({"before": result["before"], "after_each": result["after_each"],
                          "requests": result["requests"], "method": result["method"],
                          "total_seconds": result["total_seconds"], "out": str(out)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
