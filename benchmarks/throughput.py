"""Environment steps per second: jit(vmap(step)) against a Python loop, NumPy and a matmul roofline.

    python benchmarks/throughput.py --quick                      # about 3 minutes on 2 cores
    python benchmarks/throughput.py --json benchmarks/results/throughput-cpu.json
    python benchmarks/throughput.py --devices 8 --ns 1024 8192 65536   # a GPU/TPU host

Prints one line per (env, task, N) and a summary of vmap's speed-up over the serial modes; writes
every figure (each repetition's time, medians, min/max, compile time, XLA FLOPs and memory) to
``--json`` and a log-log plot of steps/s against N to ``--plot`` (default: next to the JSON).
The modes and how they are measured: :mod:`maskshift.bench`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from maskshift._io import atomic_write_json
from maskshift.bench import (
    DEFAULT_CHUNK,
    DEFAULT_MODES,
    DEFAULT_NS,
    MODES,
    STEPS_PER_CALL,
    plot_throughput,
    run_throughput,
)
from maskshift.envs.observe import OBSERVATIONS

QUICK = {"ns": (16, 1024), "reps": 3}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="benchmarks/throughput.py", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help=f"N in {QUICK['ns']}, {QUICK['reps']} repetitions (2 min 45 s on 2 cores)")
    p.add_argument("--envs", nargs="+", default=["mask", "shift"])
    p.add_argument("--tasks", nargs="+", default=["unlearn", "bias"])
    p.add_argument("--ns", nargs="+", type=int, default=None,
                   help=f"parallel environment counts (default {DEFAULT_NS})")
    p.add_argument("--modes", nargs="+", default=list(DEFAULT_MODES), choices=MODES,
                   help="parts (not run by default): the step's edit update and observation "
                        "timed apart, and the roofline bound they set (with matmul)")
    p.add_argument("--observations", nargs="+", default=["summary"],
                   choices=list(OBSERVATIONS),
                   help="gradient, controller, controller-step: also those observations (no "
                        "NumPy mode)")
    p.add_argument("--minibatches", nargs="+", default=["per_env"], choices=["per_env", "shared"],
                   help="shared: also the shared minibatch draw (one per step for every "
                        "environment)")
    p.add_argument("--pool", type=int, nargs="+", default=[],
                   help="also the unlearning task as a pool of these forget classes, one per "
                        "environment (--amortized's step)")
    p.add_argument("--edits", nargs="+", default=["Dense_0"], metavar="LAYER[+LAYER...]",
                   help="edited layer sets, layers of one set joined by + (Conv_1+Dense_0); "
                        "default Dense_0")
    p.add_argument("--conv-impls", nargs="+", default=["auto"], choices=["auto", "patches", "lax"],
                   help="how the step's convolutions compute (Task.conv_impl): lax and patches "
                        "measure XLA's convolution against patches times the kernel")
    p.add_argument("--models", nargs="+", default=[None],
                   help="the bias task's text models: bag (default), transformer")
    p.add_argument("--reps", type=int, default=None, help="repetitions per figure (default 5)")
    p.add_argument("--chunk", type=int, default=DEFAULT_CHUNK,
                   help="environments per group (on each device) in the chunked mode")
    p.add_argument("--steps-per-call", type=int, default=STEPS_PER_CALL,
                   help="batched steps per jitted call (lax.scan); 1 times single "
                        "jit(vmap(step)) calls")
    p.add_argument("--max-serial-n", type=int, default=1024,
                   help="largest N for the loop and NumPy modes (they scale linearly)")
    p.add_argument("--devices", type=int, default=None,
                   help="devices to split the environments over (default: all visible)")
    p.add_argument("--json", default=None, help="write every figure to this JSON file")
    p.add_argument("--plot", default=None, help="PNG plot (default: the JSON path with .png)")
    return p


def summary(results: dict) -> str:
    m = results["machine"]
    lines = [f"\nthroughput on {m['device_count']}x {m['device_kind']} ({m['platform']}), "
             f"{m['cpu_count']} CPU cores, jax {m['jax']}: speed-up at each N"]
    for label, res in results["results"].items():
        for key, per_n in res["ratios"].items():
            if per_n:
                shown = "  ".join(f"N={n}: {r:.1f}x" for n, r in per_n.items())
                lines.append(f"  {label:<14}{key:<20}{shown}")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    ns = args.ns or (QUICK["ns"] if args.quick else DEFAULT_NS)
    reps = args.reps or (QUICK["reps"] if args.quick else 5)
    if min(ns) < 1 or reps < 1 or args.steps_per_call < 1 or args.chunk < 1:
        print("error: --ns, --reps, --chunk and --steps-per-call must be positive",
              file=sys.stderr)
        return 2
    try:
        results = run_throughput(args.envs, args.tasks, ns, args.modes, reps=reps,
                                 max_serial_n=args.max_serial_n, devices=args.devices,
                                 chunk=args.chunk, steps=args.steps_per_call,
                                 observations=args.observations, minibatches=args.minibatches,
                                 pool=args.pool, edits=[e.split("+") for e in args.edits],
                                 models=args.models,
                                 conv_impls=args.conv_impls,
                                 log=lambda s: print(s, flush=True))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(summary(results))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, results)
        plot = Path(args.plot) if args.plot else path.with_suffix(".png")
        plot_throughput(results, plot)
        print(f"wrote {path} and {plot}")
    elif args.plot:
        plot_throughput(results, Path(args.plot))
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
