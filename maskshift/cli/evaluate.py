"""``python -m maskshift.evaluate``: held-out test metrics of the pretrained model or of an edited
checkpoint.

Examples::

    python -m maskshift.evaluate --task unlearn --forget-class 7
    python -m maskshift.evaluate --task bias --json
    python -m maskshift.evaluate --task unlearn --checkpoint runs/mask-unlearn
"""

from __future__ import annotations

import json
import sys

from maskshift.checkpoint import CheckpointError
from maskshift.cli.args import (
    BACKDOOR_FLAGS,
    TASKS,
    Parser,
    add_backdoor_arguments,
    add_dataset_arguments,
    backdoor_fields,
    fail,
    nonneg_int,
    path,
    refuse_unused,
    seed_int,
)
from maskshift.run.evaluate import evaluate_model
from maskshift.tasks import SUMMARY_KEYS


def format_table(result: dict) -> str:
    """A readable two-column table of the headline metrics, then the per-class/group figures."""
    rows = [(k, result[k]) for k in SUMMARY_KEYS[result["task"]]]
    lines = [f"maskshift evaluate: task={result['task']} dataset={result['dataset']} "
             f"split={result['split']} model={result['source']}"]
    if "forget_classes" in result:
        lines[0] += f" forget={result['forget_classes']}"
    width = max(len(k) for k, _ in rows)
    lines += [f"  {k:<{width}}  {v:8.4f}" for k, v in rows]
    if "per_class_acc" in result:
        accs = " ".join(f"{i}:{a:.3f}" for i, a in enumerate(result["per_class_acc"]))
        lines.append(f"  per-class accuracy  {accs}")
    elif "group_acc" in result:
        lines.append("  group accuracy (label 0 / label 1):")
        for g, (a0, a1) in result["group_acc"].items():
            lines.append(f"    {g:<16} {a0:.3f} / {a1:.3f}")
    return "\n".join(lines)


def build_parser() -> Parser:
    p = Parser(prog="python -m maskshift.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--task", required=True, choices=TASKS)
    add_dataset_arguments(p)
    add_backdoor_arguments(p, reward=False)
    p.add_argument("--forget-class", type=nonneg_int, nargs="+", default=None,
                   help="class(es) to forget, unlearn task only (default: 7)")
    p.add_argument("--checkpoint", "--from", dest="checkpoint", type=path, default=None,
                   metavar="DIR",
                   help="a run directory written by maskshift.train (or .edit, or a sequence's "
                        "request): an edit of an edited model is reported against every class "
                        "forgotten so far")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the pretrained target model")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.task != "unlearn":
        refuse_unused(args, parser, {"forget_class": "applies to --task unlearn only"})
    if args.task != "backdoor":
        refuse_unused(args, parser, {k: "applies to --task backdoor only" for k in BACKDOOR_FLAGS
                                     if k != "backdoor_reward"})
    try:
        result = evaluate_model(args.task, dataset=args.dataset,
                                forget_classes=tuple(args.forget_class or (7,)),
                                checkpoint=args.checkpoint, seed=args.seed, split=args.split,
                                data_dir=args.data_dir, **backdoor_fields(args))
    except (ValueError, CheckpointError) as err:
        fail(parser, err, 2)
    print(json.dumps(result) if args.json else format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
