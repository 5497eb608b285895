"""The gradient controllers' whole-split pass, one pass against chunks (Task.pass_size): time
and peak memory, each size in its own process.

    python benchmarks/whole_split.py --dataset fashion_mnist --edit Conv_1 \\
        --pass-sizes 0 524288 2097152 8388608 --episode-length 8 \\
        --json benchmarks/results/whole-split-fashion-Conv_1.json

For each convolution implementation of ``--conv-impls`` (``Task.conv_impl``) and each pass
size (``0``: the whole split in one pass, no chunks), a fresh process builds the
unlearning task (class 7, the edited layers of ``--edit``), then times the jitted gradients of
both reward terms on the whole train split (``maskshift.controls.gradient.term_gradients``: the
first call, compile included, and the median of ``--reps`` more), optionally the greedy gradient
controller's whole ``--episode-length``-step episode (each step one such pass inside a ``scan``),
and reports the process's peak resident memory (``ru_maxrss``: the task's arrays included, so
compare sizes with each other). The gradients of every size are checked against the first
size's (largest relative difference printed). See docs/performance.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import resource
import statistics
import subprocess
import sys
import time

from maskshift._io import atomic_write_json


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="benchmarks/whole_split.py",
                                description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default=None, help="default: the embedded digits")
    p.add_argument("--edit", nargs="+", default=["Conv_1"], metavar="LAYER")
    p.add_argument("--pass-sizes", type=int, nargs="+", default=[0, 2**21],
                   help="input elements per chunk; 0: one pass")
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--episode-length", type=int, default=0,
                   help="also time the controller's episode of this many steps (0: no)")
    p.add_argument("--conv-impls", nargs="+", default=["auto"], choices=["auto", "patches", "lax"],
                   help="how the convolutions compute (Task.conv_impl); each with every size")
    p.add_argument("--json", default=None)
    p.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--one-impl", default="auto", help=argparse.SUPPRESS)
    return p


def measure(args, pass_size: int, conv_impl: str) -> dict:
    """One pass size, in this process: the figures and the gradients themselves (for the
    comparison with the first size)."""
    import jax
    import numpy as np

    from maskshift.controls.gradient import gradient_edits, term_gradients
    from maskshift.envs import make
    from maskshift.models.row_chunks import chunk_rows, num_rows
    from maskshift.run import make_run_config
    from maskshift.run.build import builtin_task

    task = builtin_task(make_run_config(algo="gradient", dataset=args.dataset,
                                        edit=tuple(args.edit)))
    task = dataclasses.replace(task, pass_size=pass_size or 2**62, conv_impl=conv_impl)
    env, params = make("mask", task=task, max_steps_in_episode=max(1, args.episode_length))
    _, state = env.reset_env(jax.random.key(0), params)
    grads = jax.jit(lambda e, p: term_gradients(env, e, p))
    t0 = time.perf_counter()
    g = jax.block_until_ready(grads(state.edit, params))
    first = time.perf_counter() - t0
    runs = []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        jax.block_until_ready(grads(state.edit, params))
        runs.append(time.perf_counter() - t0)
    h = params.task.train["h"]
    row = {"conv_impl": conv_impl, "pass_size": pass_size, "rows": num_rows(h),
           "chunk_rows": chunk_rows(h, pass_size) if pass_size else num_rows(h),
           "first_call_s": first, "pass_s": statistics.median(runs),
           "grads": [np.asarray(x).tolist() for x in jax.tree.leaves(g)]}
    if args.episode_length:
        t0 = time.perf_counter()
        jax.block_until_ready(gradient_edits(env, params))
        row["episode_s"] = time.perf_counter() - t0
    row["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    return row


def run_one(pass_size: int, conv_impl: str) -> dict:
    cmd = [sys.executable, __file__, *sys.argv[1:], "--one", str(pass_size),
           "--one-impl", conv_impl]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"error: pass size {pass_size} ({conv_impl}) failed:\n"
                         f"{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def max_rel_diff(a: list, b: list) -> float:
    import numpy as np
    return max(float(np.abs(np.subtract(x, y)).max() / max(np.abs(y).max(), 1e-30))
               for x, y in zip(a, b, strict=True))


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    if args.one is not None:
        print(json.dumps(measure(args, args.one, args.one_impl)))
        return
    if any(s < 0 for s in args.pass_sizes) or args.reps < 1 or args.episode_length < 0:
        build_parser().error("pass sizes and --episode-length must be >= 0, --reps >= 1")
    rows = []
    for impl, size in itertools.product(args.conv_impls, args.pass_sizes):
        row = run_one(size, impl)
        row["max_rel_diff"] = max_rel_diff(row["grads"], rows[0]["grads"]) if rows else 0.0
        rows.append(row)
        episode = f"  episode {row['episode_s']:7.1f} s" if "episode_s" in row else ""
        print(f"{impl:>7}  pass size {size or 'one pass':>9}  chunk rows {row['chunk_rows']:>6}  "
              f"first {row['first_call_s']:6.1f} s  pass {row['pass_s']:6.2f} s{episode}  "
              f"peak RSS {row['peak_rss_gb']:5.1f} GB  grad diff {row['max_rel_diff']:.1e}",
              flush=True)
    for row in rows:
        del row["grads"]
    if args.json:
        from maskshift.bench import machine
        atomic_write_json(args.json, {"dataset": args.dataset or "digits", "edit": args.edit,
                                      "episode_length": args.episode_length,
                                      "conv_impls": args.conv_impls,
                                      "machine": machine(), "rows": rows})


if __name__ == "__main__":
    main()
