"""``python -m maskshift.edit``: a trained policy makes a new unlearning edit, with no training.

Examples::

    python -m maskshift.train --env mask --observation gradient --heads units --out runs/units
    python -m maskshift.edit --policy runs/units --forget-class 3
    python -m maskshift.edit --policy runs/units --forget-class 3 --out runs/units-forget-3 --json
    python -m maskshift.edit --policy runs/pool --forget-indices my_rows.txt  # examples

One deterministic rollout of the policy's mean actions on the policy run's model with the new
forget class, the best step chosen on the val split, the test report printed (``--json``: one
object with ``before`` and ``after``, each with the keys of ``maskshift.evaluate --json``).
``--out`` writes the edited params like a ``train`` run's ``edited/``, and ``edit.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from maskshift.cli.args import Parser, fail, nonneg_int, path
from maskshift.data.forget_sets import read_forget_indices
from maskshift.run import OutputDirError, check_out_dir
from maskshift.run.policy import edit_examples_with_policy, edit_with_policy, load_policy
from maskshift.tasks import SUMMARY_KEYS


def build_parser() -> Parser:
    p = Parser(prog="python -m maskshift.edit", description=__doc__.split("\n")[0])
    p.add_argument("--policy", type=path, required=True, metavar="DIR",
                   help="the --out directory of a finished `maskshift.train --algo ppo` run")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--forget-class", type=nonneg_int, nargs="+",
                      help="class(es) to forget")
    what.add_argument("--forget-indices", type=path, default=None, metavar="FILE",
                      help="forget the train rows listed in FILE (a policy trained with "
                           "--amortized --forget-fraction; docs/forget-examples.md)")
    p.add_argument("--from", dest="from_run", type=path, default=None, metavar="DIR",
                   help="edit the edited model of the unlearning run (or edit) in DIR, the next "
                        "request of a sequence: every class it has forgotten leaves the data")
    p.add_argument("--out", type=path, default=None, help="write the edited params here (edited/)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return p


def _evaluate_form(result: dict, which: str, source: str) -> dict:
    """``maskshift.evaluate --json``'s shape: task, dataset, source, split, classes, metrics."""
    return {"task": "unlearn", "dataset": result["dataset"], "source": source, "split": "test",
            "forget_classes": result["forget_classes"], **result[which]}


def format_table(result: dict) -> str:
    what = (result["forget_classes"] if result["forget_classes"] is not None
            else f"{result['forget_size']} train examples")
    lines = [f"maskshift edit: {result['env']} on {result['dataset']}, forget "
             f"{what}, policy {result['policy']}: held-out test split, best "
             f"step {result['best_step']} chosen on validation",
             f"  {'metric':<16}{'before':>10}{'after':>10}{'change':>10}"]
    b, a = result["before"], result["after"]
    for k in SUMMARY_KEYS["unlearn"]:
        lines.append(f"  {k:<16}{b[k]:>10.4f}{a[k]:>10.4f}{a[k] - b[k]:>+10.4f}")
    lines.append(f"  one rollout, selection and report in {result['seconds']:.2f} s, no training")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else None
    try:
        if out is not None:  # an existing edit (edited/, edit.json) is not a run: refused
            check_out_dir(out, args.overwrite)
            if args.from_run is not None and Path(args.from_run).absolute() == out.absolute():
                parser.error("argument --out: it is the --from directory; the edit would "
                             "replace the model it edits: choose another --out")
        policy = load_policy(args.policy)
        log = (lambda s: None) if args.json else print
        if args.forget_indices is not None:
            if args.from_run is not None:
                parser.error("argument --from: continues a class-wise sequence; drop it with "
                             "--forget-indices")
            result = edit_examples_with_policy(
                policy, read_forget_indices(args.forget_indices), out=out, log=log)
        else:
            result = edit_with_policy(policy, args.forget_class, out=out,
                                      from_run=args.from_run, log=log)
    except (ValueError, OutputDirError) as err:
        fail(parser, err, 2)
    if args.json:
        source = str(out) if out is not None else f"policy {args.policy}"
        before = "pretrained" if args.from_run is None else args.from_run
        print(json.dumps({"before": _evaluate_form(result, "before", before),
                          "after": _evaluate_form(result, "after", source),
                          "best_step": result["best_step"], "seconds": result["seconds"]}))
    else:
        print(format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
