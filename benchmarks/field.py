"""Class-wise forgetting measured as the unlearning literature measures it: every class × seeds,
every editor of the action space and every baseline, UA / RA / TA / MIA-Efficacy / entropy MIA /
Avg. Gap to the retrained model, wall time and how many runs meet the target.

    python benchmarks/field.py --classes 0 1 2 3 4 5 6 7 8 9 --seeds 0 1 2 \\
        --out runs/field-digits --json benchmarks/results/field-digits.json
    python benchmarks/field.py --dataset fashion_mnist --seeds 0 1 --out runs/field-fashion \\
        --json benchmarks/results/field-fashion.json
    python benchmarks/field.py --classes 7 --edit Conv_1 --methods original retrain \
        MaskWorld-gradient ShiftWorld-gradient MaskWorld-oracle ShiftWorld-oracle \
        MaskWorld-residual ShiftWorld-residual MaskWorld ShiftWorld \
        --out runs/conv-digits-Conv_1 --json benchmarks/results/conv-digits-Conv_1.json

Seeds or classes run apart (one process each, side by side, or in other sessions) merge into one
table without running anything, each (class, seed) run counted once:

    python benchmarks/field.py --merge runs/field-digits-s0.json runs/field-digits-s1.json \
        runs/field-digits-s2.json --json benchmarks/results/field-digits-seeds.json

One ``maskshift.compare`` per forget class (``OUT/class<c>/``, reused when finished, so a killed
run picks up where it was; asking for more methods at the same setting adds them to it, and a
class's comparison of another setting is replaced only with ``--overwrite``), then every
(class, seed) run of each method pooled: mean ± std of each figure, the mean wall seconds, and
the runs that meet the target (forget accuracy ≤ 0.02, retain within 0.03 of the original's,
test split). Writes the table as Markdown next to the JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from maskshift._io import atomic_write_json, atomic_write_text
from maskshift.metrics import meets_unlearning_target
from maskshift.run.compare import TABLE_KEYS, compare

# the controls, the default RL editor (MaskWorld-residual, ShiftWorld-residual-step) and the
# start it replaced in ShiftWorld (ShiftWorld-residual), flat PPO
EDITORS = ["MaskWorld-gradient", "ShiftWorld-gradient", "MaskWorld-oracle", "ShiftWorld-oracle",
           "MaskWorld-residual", "ShiftWorld-residual-step", "ShiftWorld-residual", "MaskWorld",
           "ShiftWorld"]
BASELINES = ["retrain", "finetune", "gradient_ascent", "graddiff", "random_labels", "ssd",
             "salun", "l1_sparse", "scrub"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="benchmarks/field.py", description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default=None, help="default: the embedded digits")
    p.add_argument("--classes", type=int, nargs="+", default=list(range(10)))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=["original", *BASELINES, *EDITORS])
    p.add_argument("--edit", nargs="+", default=None, metavar="LAYER",
                   help="the edited layers of every editor (default: train's, Dense_0)")
    p.add_argument("--episode-length", type=int, default=None,
                   help="every editor's episode length (default: train's)")
    p.add_argument("--step-size", type=float, default=None,
                   help="every editor's step size (default: the environment's)")
    p.add_argument("--rl-total-steps", type=int, default=None,
                   help="every trained editor's budget in env steps (default: train's)")
    p.add_argument("--out", default="runs/field")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a class's saved comparison of other seeds, options or budget")
    p.add_argument("--json", default=None, help="write the pooled figures here (and a .md)")
    p.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                   help="run nothing: pool these saved --json files of one setting and other "
                        "seeds into one table (written to --json)")
    return p


def options(args) -> dict:
    """The RunConfig fields every editor (and the task) takes from the flags."""
    given = {"edit": tuple(args.edit) if args.edit else None,
             "episode_length": args.episode_length, "step_size": args.step_size}
    return {k: v for k, v in given.items() if v is not None}


def same_setting(saved: dict, args) -> bool:
    """Whether a saved comparison ran at ``args``' seeds, task options and RL budget."""
    return (saved["seeds"] == args.seeds
            and saved.get("task_options", {}) == json.loads(json.dumps(options(args)))
            and saved.get("rl_total_steps") == args.rl_total_steps)


def planned_methods(saved: dict | None, args) -> list[str] | None:
    """The methods a class's comparison must hold: ``None`` where ``saved`` holds every one asked
    for already; else the saved ones, then the new ones (their finished runs are reused, so a
    wider table costs only the new methods, and no saved method drops out of the class's
    ``comparison.json``). A saved comparison of another setting is replaced only with
    ``--overwrite`` (``ValueError`` otherwise)."""
    if saved is None or args.overwrite:
        return list(args.methods)
    if not same_setting(saved, args):
        raise ValueError(f"{args.out} holds a comparison at seeds {saved['seeds']}, options "
                         f"{saved.get('task_options', {})}, RL budget "
                         f"{saved.get('rl_total_steps')}: pass another --out, or --overwrite to "
                         "replace it.")
    if set(args.methods) <= set(saved["methods"]):
        return None
    return [*saved["methods"], *(m for m in args.methods if m not in saved["methods"])]


def saved_comparison(c: int, args) -> dict | None:
    path = Path(args.out) / f"class{c}" / "comparison.json"
    return json.loads(path.read_text()) if path.exists() else None


def class_result(c: int, saved: dict | None, methods: list[str] | None, args) -> dict:
    """Class ``c``'s comparison of ``methods`` (``None``: ``saved``, as read when planning)."""
    if methods is None:
        return saved
    return compare("unlearn", tuple(args.seeds), out=Path(args.out) / f"class{c}",
                   dataset=args.dataset, forget_classes=(c,), methods=methods, overwrite=True,
                   rl_total_steps=args.rl_total_steps, task_options=options(args) or None,
                   log=lambda s: print(f"[class {c}] {s}", flush=True))


def pooled(results: list[dict], methods: list[str]) -> dict:
    keys = (*TABLE_KEYS["unlearn"], "forget_acc", "retain_acc", "wall_seconds")
    table = {}
    for m in methods:
        runs = [r for res in results for r in res["runs"][m]]
        originals = [r for res in results for r in res["runs"]["original"]]
        table[m] = {k: {"mean": float(np.mean([r[k] for r in runs])),
                        "std": float(np.std([r[k] for r in runs]))} for k in keys}
        table[m]["runs"] = len(runs)
        table[m]["meets_target"] = int(sum(meets_unlearning_target(o, r)
                                           for r, o in zip(runs, originals, strict=True)))
        settings = [json.dumps(r["setting"]) for r in runs if "setting" in r]
        if settings:
            table[m]["settings"] = {s: settings.count(s) for s in sorted(set(settings))}
    return table


def merged(tables: list[dict]) -> dict:
    """Pooled tables of disjoint runs (other seeds, run apart) as one: each method's mean and
    (population) std over all its runs, exactly as ``pooled`` gives them over the runs together;
    counts and chosen settings add up. A method missing from some tables pools the ones that
    hold it (its ``runs`` says how many)."""
    out = {}
    for m in dict.fromkeys(m for t in tables for m in t):
        rows = [t[m] for t in tables if m in t]
        n = np.array([r["runs"] for r in rows], float)
        stats = [k for k in rows[0] if isinstance(rows[0][k], dict) and "mean" in rows[0][k]]
        out[m] = {}
        for k in stats:
            mean = np.array([r[k]["mean"] for r in rows])
            square = np.array([r[k]["std"] ** 2 for r in rows]) + mean ** 2
            grand = float(n @ mean / n.sum())
            out[m][k] = {"mean": grand,
                         "std": float(np.sqrt(max(n @ square / n.sum() - grand ** 2, 0.0)))}
        out[m]["runs"] = int(n.sum())
        out[m]["meets_target"] = int(sum(r["meets_target"] for r in rows))
        settings: dict[str, int] = {}
        for r in rows:
            for s, c in r.get("settings", {}).items():
                settings[s] = settings.get(s, 0) + c
        if settings:
            out[m]["settings"] = dict(sorted(settings.items()))
    return out


SETTING_ARGS = ("dataset", "edit", "episode_length", "step_size", "rl_total_steps")


def cells_of(saved_args: dict) -> set[tuple[int, int]]:
    """The (class, seed) runs a saved table pools: its ``cells`` where it is itself a merge of
    runs that do not fill a grid, else every class × every seed."""
    if "cells" in saved_args:
        return {tuple(c) for c in saved_args["cells"]}
    return {(c, s) for c in saved_args["classes"] for s in saved_args["seeds"]}


def merge_files(paths: list[str]) -> tuple[dict, argparse.Namespace]:
    """The pooled table of saved ``--json`` files of the same setting and other (class, seed)
    runs, and the arguments that describe it. Files may share runs only for methods whose
    figures they hold alike (the original and retrained models a supplement re-runs beside a
    method it adds): those count once. ``ValueError`` where the files differ in setting, or share
    a run of a method with other figures."""
    saved = [json.loads(Path(p).read_text()) for p in paths]
    missing = [f"{p} has no '{k}'" for p, s in zip(paths, saved, strict=True)
               for k in ("args", "table") if k not in s]
    if missing:
        raise ValueError(f"{missing[0]}: merge only the --json files field.py writes.")
    first = saved[0]["args"]
    for p, s in zip(paths, saved, strict=True):
        differ = [k for k in SETTING_ARGS if s["args"].get(k) != first.get(k)]
        if differ:
            raise ValueError(f"{p} differs from {paths[0]} in {', '.join(differ)}: merge only "
                             "runs of one setting.")
    tables, held = [], {}  # method -> (cells, row, path) already taken
    for p, s in zip(paths, saved, strict=True):
        cells = cells_of(s["args"])
        table = {}
        for m, row in s["table"].items():
            taken = [(cs, r, q) for cs, r, q in held.get(m, []) if cs & cells]
            if not taken:
                table[m] = row
                held.setdefault(m, []).append((cells, row, p))
            elif not any(cs == cells and same_figures(r, row) for cs, r, _ in taken):
                raise ValueError(f"{taken[0][2]} and {p} both hold {m} at (class, seed) "
                                 f"{sorted(taken[0][0] & cells)[0]} with other figures: each run "
                                 "must be merged once.")
        tables.append(table)
    cells = set().union(*(cells_of(s["args"]) for s in saved))
    classes, seeds = sorted({c for c, _ in cells}), sorted({s for _, s in cells})
    grid = len(cells) == len(classes) * len(seeds)
    args = argparse.Namespace(**{k: first.get(k) for k in SETTING_ARGS}, classes=classes,
                              seeds=seeds, **({} if grid else {"cells": sorted(cells)}),
                              merged_from=list(paths))
    return merged(tables), args


def same_figures(a: dict, b: dict) -> bool:
    """Whether two pooled rows hold the same runs: every figure alike but the wall time."""
    keys = [k for k in a if isinstance(a[k], dict) and "mean" in a[k] and k != "wall_seconds"]
    return a["runs"] == b["runs"] and all(
        k in b and np.allclose([a[k]["mean"], a[k]["std"]], [b[k]["mean"], b[k]["std"]],
                               rtol=1e-6, atol=1e-9) for k in keys)


def markdown(table: dict, args) -> str:
    keys = TABLE_KEYS["unlearn"]
    edit = "".join(f", {k.replace('_', ' ')} {' + '.join(map(str, v)) if k == 'edit' else v}"
                   for k, v in options(args).items())
    data = args.dataset or "digits"
    runs = (f"classes {args.classes} × seeds {args.seeds}" if not getattr(args, "cells", None)
            else f"{len(args.cells)} (class, seed) runs of classes {args.classes} × seeds "
                 f"{args.seeds} (" + ", ".join(f"{c}/{s}" for c, s in args.cells) + ")")
    lines = [f"Class-wise forgetting on `{data}`{edit}, {runs}, test split (UA, RA on train). "
             "Points except the entropy MIA (0–1); mean ± std over every (class, seed) run; "
             "sorted by Avg. Gap.", "",
             "| method | " + " | ".join(keys) + " | meets target | wall s |",
             "|---|" + "---|" * (len(keys) + 2)]
    for m in sorted(table, key=lambda m: table[m]["avg_gap"]["mean"]):
        t = table[m]
        digits = {k: 3 if k == "mia" else 2 for k in keys}
        cells = [f"{t[k]['mean']:.{digits[k]}f} ± {t[k]['std']:.{digits[k]}f}" for k in keys]
        lines.append(f"| {m} | " + " | ".join(cells)
                     + f" | {t['meets_target']}/{t['runs']} | {t['wall_seconds']['mean']:.1f} |")
    chosen = {m: t["settings"] for m, t in table.items() if "settings" in t}
    if chosen:
        lines += ["", "Settings the val grid chose (runs): " + "; ".join(
            f"{m} " + ", ".join(f"{s} ×{n}" for s, n in c.items()) for m, c in chosen.items())]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.merge:
        return write_merged(args)
    saved = {c: saved_comparison(c, args) for c in args.classes}
    try:  # every class's plan before anything runs
        plans = {c: planned_methods(saved[c], args) for c in args.classes}
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    results = [class_result(c, saved[c], plans[c], args) for c in args.classes]
    write_table(pooled(results, args.methods), args, args.json)
    return 0


def write_merged(args) -> int:
    """``--merge``: one table of saved ``--json`` files of other seeds or classes."""
    defaults = build_parser().parse_args([])
    ignored = [k for k, v in vars(args).items() if k not in ("merge", "json")
               and v != getattr(defaults, k)]
    if ignored:
        print(f"error: --merge runs nothing, so --{ignored[0].replace('_', '-')} has no effect: "
              "drop it (the merged files carry their own settings).", file=sys.stderr)
        return 2
    try:
        table, merged_args = merge_files(args.merge)
    except (OSError, ValueError, KeyError) as e:
        print(f"error: cannot merge {' '.join(args.merge)}: {e}", file=sys.stderr)
        return 2
    write_table(table, merged_args, args.json)
    return 0


def write_table(table: dict, args, json_path: str | None) -> None:
    md = markdown(table, args)
    print(md)
    if json_path:
        atomic_write_json(json_path, {"args": vars(args), "table": table})
        atomic_write_text(Path(json_path).with_suffix(".md"), md)


if __name__ == "__main__":
    sys.exit(main())
