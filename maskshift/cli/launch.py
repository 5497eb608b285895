"""Joining a multi-process run from the command line, before the library touches JAX.

``python -m maskshift.train ... --distributed`` calls :func:`join_from_argv` first (in the
``maskshift.train`` entry module), so that :func:`maskshift.hosts.initialize` runs before any
import starts a JAX backend; the train command's own parser declares the same flags
(:func:`add_distributed_arguments`) for its help and checks.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading

from maskshift import hosts
from maskshift.cli.args import fail

DEFAULT_TIMEOUT = 60
# the flags that only --distributed reads (argparse destinations)
DISTRIBUTED_FLAGS = ("coordinator", "num_processes", "process_id", "distributed_timeout")


def add_distributed_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--distributed", action="store_true",
                   help="join a multi-process run first (TPU pod slices, several GPU hosts; one "
                        "process per host, the same command on each; only process 0 writes); "
                        "without the three flags below JAX detects the cluster (TPU, SLURM)")
    p.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help=f"process 0's address (default ${hosts.ENV_VARS['coordinator']})")
    p.add_argument("--num-processes", default=None, metavar="N",
                   help=f"how many processes (default ${hosts.ENV_VARS['num_processes']})")
    p.add_argument("--process-id", default=None, metavar="I",
                   help=f"this process, 0..N-1 (default ${hosts.ENV_VARS['process_id']})")
    p.add_argument("--distributed-timeout", type=int, default=None, metavar="S",
                   help=f"give up joining after this many seconds (default {DEFAULT_TIMEOUT})")


def join_from_argv(argv: list[str], prog: str) -> None:
    """With ``--distributed`` in ``argv``, join the run (exit 2 with one line if it cannot)."""
    p = argparse.ArgumentParser(prog=prog, add_help=False)
    add_distributed_arguments(p)
    args, _ = p.parse_known_args(argv)
    if args.distributed:
        join(args, p)


def join(args, parser: argparse.ArgumentParser) -> None:
    """:func:`maskshift.hosts.initialize` with the parsed flags; a refusal exits 2, one line."""
    timeout = DEFAULT_TIMEOUT if args.distributed_timeout is None else args.distributed_timeout

    def give_up():  # JAX aborts a process whose peers never join: say so in one line first
        where = args.coordinator or "the coordinator"
        print(f"error: {hosts.unreachable(where, timeout)} (the other processes did not all "
              "join).", file=sys.stderr, flush=True)
        os._exit(2)

    watchdog = threading.Timer(timeout + 1, give_up)
    watchdog.daemon = True
    watchdog.start()
    try:
        hosts.initialize(args.coordinator, args.num_processes, args.process_id, timeout=timeout)
    except (ValueError, TimeoutError) as err:
        fail(parser, err, 2)
    finally:
        watchdog.cancel()


