"""More than one process (a TPU pod slice, several GPU hosts): start-up, who writes, host copies.

JAX runs one process per host, every process runs the same program, and a mesh over
``jax.devices()`` spans every host's devices (:mod:`maskshift.sharding`). maskshift adds three
rules on top:

- :func:`initialize` checks the coordinator address, process count and id (arguments, else the
  environment variables ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``;
  none at all leaves them to JAX's own cluster detection on TPU pods and SLURM) before
  calling :func:`jax.distributed.initialize`, and turns a coordinator that does not answer within
  ``timeout`` seconds into a one-line error;
- only process 0 writes (:func:`is_primary`; :mod:`maskshift._io` refuses every other process's
  writes), so every process may run the same host code; resuming reads the same ``out``
  directory in every process, so it must be on a filesystem every host sees;
- :func:`host_copy` brings a pytree of (possibly sharded over several processes) arrays to NumPy on
  every process: a collective, so every process calls it at the same point.

With one process every function here is the single-host behaviour.
"""

from __future__ import annotations

import os
import socket
import time

import jax
import numpy as np

ENV_VARS = {"coordinator": "JAX_COORDINATOR_ADDRESS", "num_processes": "JAX_NUM_PROCESSES",
            "process_id": "JAX_PROCESS_ID"}


def is_primary() -> bool:
    """Whether this process writes outputs (process 0; the only process of a one-host run)."""
    return jax.process_index() == 0


def host_copy(tree):
    """``tree`` with every array as a NumPy array holding its global value, on every process (a
    collective for arrays sharded over several processes: call it in every process)."""
    from jax.experimental import multihost_utils

    def one(a):
        if isinstance(a, jax.Array) and not a.is_fully_addressable and not a.is_fully_replicated:
            return np.asarray(multihost_utils.process_allgather(a, tiled=True))
        return np.asarray(a)

    return jax.tree.map(one, tree)


def sync(name: str) -> None:
    """Wait until every process reaches the barrier ``name`` (nothing with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def distributed_settings(coordinator: str | None = None, num_processes: int | None = None,
                         process_id: int | None = None, environ=os.environ) -> dict:
    """The settings :func:`initialize` passes to JAX: each argument, else its environment
    variable (:data:`ENV_VARS`); all three, or none (JAX's cluster detection). Raises
    ``ValueError`` naming the problem and the fix."""
    given = {"coordinator": coordinator, "num_processes": num_processes,
             "process_id": process_id}
    for name, var in ENV_VARS.items():
        if given[name] is None and environ.get(var):
            given[name] = environ[var]
    missing = [n for n, v in given.items() if v is None]
    if len(missing) == len(given):
        return {}
    if missing:
        raise ValueError(f"Distributed runs need the coordinator address, the process count and "
                         f"this process's id; {', '.join(f'`{m}`' for m in missing)} missing "
                         f"(give them, or set {', '.join(ENV_VARS[m] for m in missing)}).")
    try:
        n, i = int(given["num_processes"]), int(given["process_id"])
    except ValueError:
        raise ValueError(f"The process count and id must be integers, got "
                         f"{given['num_processes']!r} and {given['process_id']!r}.") from None
    if n < 2:
        raise ValueError(f"A distributed run needs at least 2 processes (`num_processes` is {n}); "
                         "for one process drop the distributed option.")
    if not 0 <= i < n:
        raise ValueError(f"Process id {i} is outside 0..{n - 1} for {n} processes; give each "
                         f"process its own id from 0 to {n - 1} (`process_id`).")
    address = str(given["coordinator"])
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"The coordinator address {address!r} is not host:port; give it as, "
                         "e.g., 10.0.0.1:1234 (`coordinator`).")
    return {"coordinator_address": address, "num_processes": n, "process_id": i}


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, timeout: int = 60) -> None:
    """Join a multi-process run (see the module docstring) before anything else touches JAX.

    Raises ``ValueError`` for bad settings, and ``TimeoutError`` (one line) when the coordinator
    does not answer within ``timeout`` seconds. Process 0 hosts the coordinator: when the other
    processes do not all join within ``timeout``, JAX itself ends process 0 (an abort, not an
    exception); the train command turns that into one line (:mod:`maskshift.cli.launch`)."""
    settings = distributed_settings(coordinator, num_processes, process_id)
    if timeout < 1:
        raise ValueError(f"The distributed start-up timeout must be at least 1 second, got "
                         f"{timeout} (`timeout`).")
    where = settings.get("coordinator_address", "the detected coordinator")
    if settings.get("process_id", 0) != 0:  # JAX aborts the process on a dead coordinator
        wait_for_coordinator(settings["coordinator_address"], timeout)
    # CPU hosts exchange collectives through gloo (GPUs and TPUs use their own)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        # JAX's own limit a little later than ours, so that ours is the one a person reads
        jax.distributed.initialize(**settings, initialization_timeout=int(timeout) + 10)
    except Exception as err:  # JAX raises XlaRuntimeError / RuntimeError with a long message
        first = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise TimeoutError(f"{unreachable(where, timeout)} ({first})") from None


def unreachable(where: str, timeout: float) -> str:
    """The one-line message for a run that could not be joined."""
    return (f"Could not join the distributed run at {where} within {timeout:g} s; start every "
            "process with the same coordinator address and process count, and check the "
            "coordinator (process 0) is up and reachable")


def wait_for_coordinator(address: str, timeout: float) -> None:
    """Wait until ``address`` (process 0's coordinator) accepts a TCP connection; raise
    ``TimeoutError`` after ``timeout`` seconds."""
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=1.0).close()
            return
        except OSError:
            if time.monotonic() >= deadline:
                raise TimeoutError(unreachable(address, timeout) + ".") from None
            time.sleep(0.2)
