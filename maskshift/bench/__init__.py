"""Throughput of the editing environments, measured five ways on the same step,
and where its time goes.

- ``vmap``: ``jax.jit(jax.vmap(env.step))`` over ``N`` environments (the environment batch split
  over a device mesh when there are several devices), ``steps`` batched steps per call under
  ``lax.scan`` with the state donated, as a PureJaxRL-style trainer runs it (``steps=1``: one
  call per batched step);
- ``chunked``: the same, each device's environments stepped as a loop over groups of ``chunk``
  vmapped environments whose states are updated in place (:func:`maskshift.sharding.map_envs`),
  which keeps each group's working set in the CPU caches;
- ``loop``: a Python loop over ``N`` single-environment jitted steps, as a gym-style user runs it;
- ``numpy``: :class:`NumpyEditWorld`, a plain NumPy implementation of the same step (same
  update, same reward, same observation), environment by environment;
- ``matmul``: one dense ``[k, k] @ [k, k]`` matmul with the FLOPs of one batched step (as XLA
  counts them): the roofline this process reaches on this machine. Each mode's
  ``roofline_fraction`` is ``matmul time / its time`` for the same FLOPs;
- ``parts`` (not in the default sweep): where the step's time goes. The same program
  with the step cut down to the edit update (``update``: action to new mask or shift, and
  gymnax's auto-reset select) and to the update and the summary observation (``observe``), no
  minibatch and no forward pass; for ``vmap`` and, where it runs, ``chunked``. With ``matmul``
  it gives ``roofline_bound`` per mode: the fraction of the roofline that mode's whole step would
  reach if everything but the update and observation ran at the roofline
  (:func:`roofline_bound`).

Modules: :mod:`~maskshift.bench.timing` (the modes), :mod:`~maskshift.bench.numpy_world`
(the NumPy step), :mod:`~maskshift.bench.throughput` (the sweep and its plot). It lives in the
package, not in ``benchmarks/``, because the Colab notebook, installed with ``pip`` from the
source alone, calls :func:`run_throughput`.

Every clock read follows ``block_until_ready``; compile time is measured apart from run time;
each figure is the median of ``reps`` repetitions, with the min and max as its spread.
``benchmarks/throughput.py`` is the command-line front end; the notebooks call
:func:`run_throughput` directly.
"""

from maskshift.bench.numpy_world import NumpyEditWorld
from maskshift.bench.throughput import plot_throughput, run_throughput
from maskshift.bench.timing import (
    DEFAULT_CHUNK,
    DEFAULT_MODES,
    DEFAULT_NS,
    MODES,
    PARTS,
    STEPS_PER_CALL,
    PartialStep,
    bench_loop,
    bench_matmul,
    bench_numpy,
    bench_parts,
    bench_vmap,
    machine,
    memory_budget_bytes,
    roofline_bound,
)

__all__ = ["DEFAULT_CHUNK", "DEFAULT_MODES", "DEFAULT_NS", "MODES", "PARTS", "STEPS_PER_CALL",
           "NumpyEditWorld", "PartialStep", "bench_loop", "bench_matmul", "bench_numpy",
           "bench_parts", "bench_vmap", "machine", "memory_budget_bytes", "plot_throughput",
           "roofline_bound", "run_throughput"]
