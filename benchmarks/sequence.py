"""Sequential requests: every method forgets the same classes, or the same sets of train
examples, one request after another; relapse, erosion, Avg. Gap and wall time per method.

    python benchmarks/sequence.py --dataset digits --out runs/sequence-digits \\
        --json benchmarks/results/sequence-digits.json
    python benchmarks/sequence.py --example-requests 5 --fraction 0.05 --draws 0 1 \\
        --out runs/sequence-digits-examples --json benchmarks/results/sequence-digits-examples.json

Each (order, seed, method) is one :func:`maskshift.run.sequence.run_sequence` in its own
directory under ``--out`` (a finished one is read back, an unfinished one resumed, so a killed
benchmark picks up where it was). Methods: the gradient controller and the oracle (``--envs``),
the default RL editor (residual PPO, one training run per request; ``--rl-seeds``, as it costs
the most), a trained policy with no training (``--policy DIR``: e.g. an amortized policy, with the
env it was trained in), and SalUn and retraining from scratch at their default settings (the
retrain chain is the reference every Avg. Gap is measured against, so its gap is 0 by
construction: its row gives the time to beat). Test split. The goal columns: after the last
request, retain accuracy within 3 points of the pretrained model's on the same classes, and every
earlier request's forget accuracy at most 0.05. With ``--example-requests N``: N disjoint random
sets of ``--fraction`` of the train split per draw (``--draws``: the forget seeds, in place of
orders); a set's target is the held-out level, so its relapse is the highest accuracy of an
earlier set minus the test accuracy, and the goal asks it to be at most 0.05 (forget and retain
sets on the train split). Writes the JSON and a Markdown table beside it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from maskshift._io import atomic_write_json, atomic_write_text
from maskshift.run import make_run_config
from maskshift.run.policy import load_policy
from maskshift.run.sequence import finished_sequence, make_plan, run_sequence

ORDERS = ["3 5 8 1 6", "6 1 8 5 3"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="benchmarks/sequence.py", description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="digits")
    p.add_argument("--orders", nargs="+", default=ORDERS,
                   help="request orders, each a quoted list of classes")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rl-seeds", type=int, nargs="*", default=[0],
                   help="seeds of the default RL editor (a PPO training run per request)")
    p.add_argument("--envs", nargs="+", default=["mask", "shift"])
    p.add_argument("--methods", nargs="*", default=["gradient", "oracle", "ppo", "salun",
                                                    "retrain"])
    p.add_argument("--policy", nargs="*", default=[],
                   help="trained policy directories, each edits every order (with "
                        "--example-requests: every draw, at --fraction); policies of one kind "
                        "(env, sequence depth, pool) and several seeds share a row")
    p.add_argument("--example-requests", type=int, default=None, metavar="N",
                   help="N example requests per sequence instead of the orders of classes")
    p.add_argument("--fraction", type=float, default=0.05,
                   help="with --example-requests: each request's share of the train split")
    p.add_argument("--draws", type=int, nargs="+", default=[0, 1],
                   help="with --example-requests: the forget seeds, one sequence of sets each")
    p.add_argument("--out", default="runs/sequence-digits")
    p.add_argument("--json", default=None, help="write the figures here (and a .md)")
    return p


def policy_name(cfg) -> str:
    """How a table names a trained policy: its env, whether it was trained for sequences (for
    how many earlier requests, and in how many rounds past one) and its pool, e.g.
    ``mask-seq4-pool0-1-2-3-4-5``, ``mask-seq4-16sets0.05`` or ``mask-seq4r2-16sets0.05``."""
    kind = f"seq{cfg.sequence_depth}" if cfg.sequence_depth else "amortized"
    kind += f"r{cfg.sequence_rounds}" if cfg.sequence_rounds > 1 else ""
    if cfg.forget_fraction is not None:  # trained over random sets of examples
        return f"{cfg.env}-{kind}-{cfg.forget_sets}sets{cfg.forget_fraction:g}"
    return f"{cfg.env}-{kind}-pool{'-'.join(map(str, cfg.forget_classes))}"


def example_jobs(args):
    """``(label, plan, directory)`` for every sequence of example requests: per draw, method,
    env and seed."""
    for draw in args.draws:
        tag = f"examples{args.example_requests}x{args.fraction:g}-d{draw}"
        for directory in args.policy:  # drawn apart from the sets it trained on (make_plan)
            cfg = make_run_config(forget_fraction=args.fraction, forget_seed=draw)
            plan = make_plan(cfg, policy=directory, examples=args.example_requests)
            name = policy_name(load_policy(directory).config)
            yield (f"policy {name}", plan,
                   Path(args.out) / f"policy-{name}-s{plan.config.seed}-{tag}")
        for method in args.methods:
            envs = args.envs if method in ("gradient", "oracle", "ppo") else ["-"]
            for env in envs:
                for seed in args.rl_seeds if method == "ppo" else args.seeds:
                    algo = method if method in ("gradient", "oracle", "ppo") else "gradient"
                    cfg = make_run_config(algo=algo, env=env if env != "-" else "mask",
                                          dataset=args.dataset, seed=seed,
                                          forget_fraction=args.fraction, forget_seed=draw)
                    plan = make_plan(cfg, method=method, examples=args.example_requests)
                    label = method if env == "-" else f"{env} {method}"
                    yield label, plan, Path(args.out) / f"{env}-{method}-{tag}-s{seed}"


def jobs(args):
    """``(label, plan, directory)`` for every sequence the arguments name."""
    if args.example_requests:
        yield from example_jobs(args)
        return
    for order in args.orders:
        requests = [int(c) for c in order.split()]
        tag = "-".join(map(str, requests))
        for directory in args.policy:
            plan = make_plan(make_run_config(), requests, policy=directory)
            cfg = load_policy(directory).config
            name = policy_name(cfg)  # a row per kind of policy, over the seeds given
            yield (f"policy {name}", plan,
                   Path(args.out) / f"policy-{name}-s{cfg.seed}-{tag}")
        for method in args.methods:
            envs = args.envs if method in ("gradient", "oracle", "ppo") else ["-"]
            seeds = args.rl_seeds if method == "ppo" else args.seeds
            for env in envs:
                for seed in seeds:
                    algo = method if method in ("gradient", "oracle", "ppo") else "gradient"
                    cfg = make_run_config(algo=algo, env=env if env != "-" else "mask",
                                          dataset=args.dataset, seed=seed)
                    plan = make_plan(cfg, requests, method)
                    label = method if env == "-" else f"{env} {method}"
                    yield label, plan, Path(args.out) / f"{env}-{method}-{tag}-s{seed}"


def summarise(label: str, results: list[dict]) -> dict:
    """One method's row over its sequences (orders of any lengths): after the last request of
    each, the retain drop, test accuracy, the latest request's forget accuracy and the worst
    relapse (``None`` where no sequence has an earlier request); the Avg. Gap after each request
    number, over the sequences that have it."""
    last = [r["after_each"][-1] for r in results]
    drop = [100 * (s["retain_acc_original"] - s["retain_acc"]) for s in last]
    # an example set's target is the held-out level: its relapse is the excess over it
    relapse = [None if s["worst_relapse"] is None else
               s["worst_relapse"] - (s["test_acc"] if "examples" in r else 0.0)
               for r, s in zip(results, last, strict=True)]
    seen = [w for w in relapse if w is not None]
    gaps = [[s["avg_gap"] for s in r["after_each"]] for r in results]
    per_request = [float(np.mean([g[k] for g in gaps if len(g) > k]))
                   for k in range(max(map(len, gaps)))]
    met = [d <= 3.0 and (w is None or w <= 0.05) for d, w in zip(drop, relapse, strict=True)]
    return {"method": label, "runs": len(results),
            "retain_drop_points": [float(np.mean(drop)), float(np.max(drop))],
            "test_acc_last": float(np.mean([s["test_acc"] for s in last])),
            "latest_forget_acc": float(np.mean([s["forget_acc_by_request"][str(s["request"])]
                                                for s in last])),
            "worst_relapse": [float(np.mean(seen)), float(np.max(seen))] if seen else None,
            "avg_gap_per_request": [round(g, 2) for g in per_request],
            "avg_gap_last": [float(np.mean([g[-1] for g in gaps])),
                             float(np.std([g[-1] for g in gaps]))],
            "total_seconds": float(np.mean([r["total_seconds"] for r in results])),
            "goal_met": int(sum(met))}


def markdown(rows: list[dict], args, command: str) -> str:
    if args.example_requests:
        what = (f"Sequential example requests on {args.dataset}: {args.example_requests} "
                f"disjoint random sets of {args.fraction:g} of the train split, draws "
                f"{args.draws} (forget and retain sets on the train split, test accuracy on "
                f"the test split; `{command}`). Retain drop: points below the pretrained model "
                "on the train examples no request named (mean / worst run); relapse: the "
                "highest accuracy of an earlier set after the last request minus the test "
                "accuracy, the held-out level (mean / worst); Avg. Gap")
    else:
        what = (f"Sequential class requests on {args.dataset}, orders {args.orders}, test split "
                f"(`{command}`). Retain drop: points below the pretrained model on the classes "
                "not yet requested (mean / worst run); relapse: the highest forget accuracy of "
                "an earlier request after the last one (mean / worst); Avg. Gap")
    lines = [what + " to the model retrained without every request so far, "
             "after each request (mean over runs); time: the whole sequence's editing, mean. "
             "Goal: drop <= 3 and relapse <= 0.05 after the last request.", "",
             "| method | runs | retain drop | test acc | last forget | relapse | Avg. Gap per "
             "request | time (s) | goal |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        gaps = " ".join(f"{g:.2f}" for g in r["avg_gap_per_request"])
        w = r["worst_relapse"]
        relapse = "—" if w is None else f"{w[0]:.3f} / {w[1]:.3f}"
        lines.append(
            f"| {r['method']} | {r['runs']} | {r['retain_drop_points'][0]:.1f} / "
            f"{r['retain_drop_points'][1]:.1f} | {r['test_acc_last']:.3f} | "
            f"{r['latest_forget_acc']:.3f} | {relapse} | {gaps} | {r['total_seconds']:.0f} | "
            f"{r['goal_met']}/{r['runs']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    command = "python benchmarks/sequence.py " + " ".join(
        f'"{a}"' if " " in a else a for a in argv)
    by_label: dict[str, list] = {}
    references: dict = {}  # each retrained model's figures, once for every sequence
    todo = list(jobs(args))
    t0 = time.perf_counter()
    for i, (label, plan, directory) in enumerate(todo, 1):
        res = finished_sequence(directory, plan)
        if res is None:
            print(f"[{i}/{len(todo)}] {label} {list(plan.requests)} seed {plan.config.seed} "
                  f"({time.perf_counter() - t0:.0f} s so far)", flush=True)
            res = run_sequence(plan, directory, log=lambda s: print("  " + s, flush=True),
                               references=references)
        by_label.setdefault(label, []).append(res)
    rows = [summarise(label, results) for label, results in by_label.items()]
    table = markdown(rows, args, command)
    print(table)
    if args.json:
        atomic_write_json(args.json, {"dataset": args.dataset, "orders": args.orders,
                                      "seeds": args.seeds, "rl_seeds": args.rl_seeds,
                                      "example_requests": args.example_requests,
                                      "fraction": args.fraction, "draws": args.draws,
                                      "rows": rows})
        atomic_write_text(Path(args.json).with_suffix(".md"), table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
