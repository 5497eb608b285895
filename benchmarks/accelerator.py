"""The accelerator figures to JSON: the environment step (unlearning and bias, summary and
controller observations), end-to-end PPO with the default editor, and one amortized edit, each
with compile time apart and the device, JAX version and device count beside it
(:mod:`maskshift.bench.accelerator`).

    python benchmarks/accelerator.py --json benchmarks/results/accelerator-gpu.json   # full
    python benchmarks/accelerator.py --small --json /tmp/accelerator.json            # CPU, CI

Bad input (a ``--json`` directory that does not exist, an environment count that does not split
over the devices, an accelerator extra on a machine whose JAX sees no accelerator) stops with one
line and exit status 2 before anything runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from maskshift._io import atomic_write_json
from maskshift.bench.accelerator import (
    FULL,
    SMALL,
    accelerator_report,
    check_accelerator,
    check_counts,
    summary_lines,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="benchmarks/accelerator.py",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--small", action="store_true",
                   help=f"the small setting (N {SMALL['ns']}, PPO {SMALL['ppo_envs']}); default: "
                        f"N {FULL['ns']}, PPO {FULL['ppo_envs']}")
    p.add_argument("--ns", type=int, nargs="+", default=None, help="environment counts (step)")
    p.add_argument("--ppo-envs", type=int, nargs="+", default=None,
                   help="environment counts (PPO training)")
    p.add_argument("--reps", type=int, default=None)
    p.add_argument("--no-amortized", action="store_true", help="skip the amortized edit")
    p.add_argument("--json", default=None, help="write every figure here")
    return p


def main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    setting = SMALL if args.small else FULL
    ns, ppo_envs = args.ns or setting["ns"], args.ppo_envs or setting["ppo_envs"]
    if args.json and not Path(args.json).absolute().parent.is_dir():
        p.exit(2, f"error: --json {args.json}: the directory {Path(args.json).parent} does not "
                  "exist; create it or choose another path\n")
    if args.reps is not None and args.reps < 1:
        p.exit(2, f"error: --reps must be at least 1, got {args.reps}\n")
    import jax

    try:
        check_accelerator()
        check_counts([*ns, *ppo_envs], len(jax.devices()))
    except ValueError as err:
        p.exit(2, f"error: {str(err).replace('`ns`', '--ns / --ppo-envs')}\n")
    report = accelerator_report(ns, ppo_envs, args.reps or setting["reps"],
                                None if args.no_amortized else setting["amortized_steps"],
                                envs=FULL["envs"], tasks=FULL["tasks"],
                                log=lambda s: print(s, flush=True))
    print("\n".join(summary_lines(report)))
    if args.json:
        atomic_write_json(args.json, report)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
