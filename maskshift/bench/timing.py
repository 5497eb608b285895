"""The timed modes of the throughput benchmark (:mod:`maskshift.bench`): each runs the same
step ``N`` environments wide and returns the median, min and max of ``reps`` timed repetitions,
compile time apart."""

from __future__ import annotations

import os
import platform
import statistics
import time
import tracemalloc
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments import environment

from maskshift.bench.numpy_world import NumpyEditWorld
from maskshift.envs import EditWorld, EnvParams, EnvState
from maskshift.sharding import (
    check_chunk,
    check_divisible,
    constrain_envs,
    device_memory_bytes,
    env_mesh,
    mesh_size,
    put_envs,
    put_replicated,
    step_envs,
)

DEFAULT_MODES = ("vmap", "chunked", "loop", "numpy", "matmul")
MODES = (*DEFAULT_MODES, "parts")
PARTS = ("update", "observe")
STEPS_PER_CALL = 8  # batched steps per jitted call (a rollout under lax.scan)
DEFAULT_CHUNK = 8  # environments per group (per device) in the chunked mode
DEFAULT_NS = (1, 16, 256, 1024, 4096, 16384)


def _timed(fn: Callable[[], object], reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        out.append(time.perf_counter() - t0)
    return out


def _summary(n: int, seconds: list[float], env_steps: int | None = None, **extra) -> dict:
    """Figures for ``env_steps`` environment-steps (default ``n``) timed ``len(seconds)`` times."""
    sps = [(env_steps or n) / s for s in seconds]
    return {"n": n, "seconds": seconds, "steps_per_s": statistics.median(sps),
            "steps_per_s_min": min(sps), "steps_per_s_max": max(sps), **extra}


def _xla_bytes(compiled) -> int | None:
    ma = compiled.memory_analysis()
    if ma is None:
        return None
    return int(ma.argument_size_in_bytes + ma.output_size_in_bytes + ma.temp_size_in_bytes
               - ma.alias_size_in_bytes)


def _flops(stage) -> float | None:
    """XLA's FLOP count of a lowered or compiled program."""
    ca = stage.cost_analysis()
    if isinstance(ca, list | tuple):
        ca = ca[0] if ca else None
    return float(ca["flops"]) if ca and "flops" in ca else None


def memory_budget_bytes() -> int:
    """Bytes one benchmark program may plan to use: half the first device's memory on an
    accelerator, half the host's RAM on CPU."""
    return device_memory_bytes() // 2


def _device_peak() -> int | None:
    stats = jax.devices()[0].memory_stats() or {}
    return int(stats["peak_bytes_in_use"]) if "peak_bytes_in_use" in stats else None


def _inputs(env: EditWorld, env_params: EnvParams, n: int, seed: int = 0):
    keys = jax.random.split(jax.random.key(seed), n)
    _, state = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(keys, env_params)
    actions = 0.5 * jax.random.normal(jax.random.key(seed + 1), (n, env.action_size))
    return keys, state, actions


def bench_vmap(env, env_params, n: int, reps: int, devices=None, chunk: int | None = None,
               steps: int = STEPS_PER_CALL) -> dict:
    """``jit(vmap(step))`` over ``n`` environments, split over ``devices`` (default: all), each
    device's environments in groups of ``chunk`` (default: one group).

    One call runs ``steps`` batched steps under ``lax.scan`` (a rollout, as a PureJaxRL trainer
    runs it; gymnax auto-resets episodes inside it). The state and observation are donated and
    carried from call to call, so the state is updated in place rather than written to fresh
    memory, which on this kind of host costs more than the step itself. ``steps=1`` times single
    calls of ``jit(vmap(step))``. Figures are per environment-step (``n * steps`` per call);
    ``flops`` is one batched step's, as XLA counts them.
    """
    mesh = env_mesh(devices)
    check_divisible(n, mesh)
    shards = mesh_size(mesh)
    check_chunk(n, chunk, shards)
    keys, state, actions = put_envs(_inputs(env, env_params, n), mesh)
    p = put_replicated(env_params, mesh)

    def v_step(k, s, a, p):
        return step_envs(env, k, s, a, p, chunk, mesh)

    def rollout(key, state, obs, actions, p):
        def body(carry, _):
            key, state, _ = carry
            key, k_env, k_batch = jax.random.split(key, 3)
            keys = constrain_envs(jax.random.split(k_env, n), mesh)
            obs, state, reward, terminated, truncated, _ = v_step(
                keys, state, actions, env.step_params(p, k_batch))
            return (key, state, obs), (reward, terminated | truncated)

        return jax.lax.scan(body, (key, state, obs), None, steps)

    # one batched step's FLOPs, counted on the single vmap: in the chunked program XLA counts the
    # loop body (one group) once
    flops = _flops(jax.jit(lambda k, s, a, q: step_envs(
        env, k, s, a, env.step_params(q, k[0]), None, mesh)).lower(keys, state, actions, p))
    obs = put_envs(jnp.zeros((n, env.obs_size)), mesh)
    key = jax.random.key(0)
    fn = jax.jit(rollout, donate_argnums=(1, 2))
    t0 = time.perf_counter()
    compiled = fn.lower(key, state, obs, actions, p).compile()
    compile_s = time.perf_counter() - t0
    need = _xla_bytes(compiled)
    if need is not None and need > memory_budget_bytes():
        return {"n": n, "skipped": f"needs {need / 2**30:.1f} GiB, over half the memory"}
    carry = [(key, state, obs)]

    def call():
        c, out = compiled(*carry[0], actions, p)
        carry[0] = c
        return out

    jax.block_until_ready(call())  # warm-up
    seconds = _timed(call, reps)
    return _summary(n, seconds, env_steps=n * steps, steps_per_call=steps, compile_s=compile_s,
                    flops=flops, xla_bytes=need, device_peak_bytes=_device_peak(),
                    devices=shards, chunk=chunk)


class PartialStep:
    """``env`` with ``step_env`` cut down to ``part`` of its work (:data:`PARTS`); gymnax's
    ``step`` (auto-reset and all) and every other attribute are ``env``'s."""

    step = environment.Environment.step

    def __init__(self, env: EditWorld, part: str):
        self.env, self.part = env, part

    def __getattr__(self, name):
        return getattr(self.env, name)

    def step_env(self, key, state: EnvState, action, params: EnvParams):
        edit = self.env.next_edit(state.edit, action, params)
        time = state.time + 1
        obs = (jnp.zeros(self.env.obs_size) if self.part == "update"
               else self.env.observe(edit, state.metrics, time, params))
        return (obs, state.replace(edit=edit, time=time), jnp.float32(0.0), jnp.asarray(False),
                {})


def bench_parts(env, env_params, n: int, reps: int, devices=None, chunk: int | None = None,
                steps: int = STEPS_PER_CALL) -> dict:
    """:func:`bench_vmap`'s figures (``chunk``: the chunked mode's) for each of :data:`PARTS` of
    the step (summary observation only: the gradient observations' unit block needs the forward
    and backward passes)."""
    if env.observation != "summary":
        raise ValueError("The parts mode measures the summary observation's step only.")
    return {part: bench_vmap(PartialStep(env, part), env_params, n, reps, devices, chunk, steps)
            for part in PARTS}


def roofline_bound(step: dict, observe: dict, mm: dict) -> float:
    """The roofline fraction the whole step (a ``vmap`` or ``chunked`` entry) would reach if
    its edit update and observation kept their measured time (``observe``) and the rest of its
    FLOPs (the minibatch's forward pass and the reward) ran at the matmul's rate (``mm``)."""
    rate = mm["flops"] / mm["median_s"]
    n = step["n"]
    at_roofline = step["flops"] / rate
    return at_roofline / (n / observe["steps_per_s"] + (step["flops"] - observe["flops"]) / rate)


def bench_loop(env, env_params, n: int, reps: int) -> dict:
    """A Python loop over ``n`` environments, one jitted single-environment step each."""
    keys, state, actions = _inputs(env, env_params, n)
    keys = list(keys)
    states = [jax.tree.map(lambda x, i=i: x[i], state) for i in range(n)]
    acts = list(actions)
    step = jax.jit(env.step)
    t0 = time.perf_counter()
    compiled = step.lower(keys[0], states[0], acts[0], env_params).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(keys[0], states[0], acts[0], env_params))

    def run():
        return [compiled(keys[i], states[i], acts[i], env_params) for i in range(n)]

    seconds = _timed(run, reps)
    return _summary(n, seconds, compile_s=compile_s, xla_bytes_per_env=_xla_bytes(compiled))


def bench_numpy(env, env_params, n: int, reps: int) -> dict:
    """The NumPy reference step, environment by environment."""
    ref = NumpyEditWorld(env, env_params)
    _, state = ref.reset()
    states = [state] * n
    acts = np.asarray(_inputs(env, env_params, n)[2])
    rng = np.random.default_rng(0)

    def run():
        return [ref.step(rng, states[i], acts[i]) for i in range(n)]

    run()
    tracemalloc.start()
    seconds = _timed(run, reps)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return _summary(n, seconds, compile_s=0.0, python_peak_bytes=int(peak))


def bench_matmul(flops: float, reps: int) -> dict:
    """One ``[k, k] @ [k, k]`` float32 matmul with ``2 k^3`` close to ``flops``."""
    k = max(1, round((flops / 2) ** (1 / 3)))
    a = jax.random.normal(jax.random.key(0), (k, k))
    mm = jax.jit(jnp.matmul).lower(a, a).compile()
    jax.block_until_ready(mm(a, a))
    seconds = _timed(lambda: mm(a, a), reps)
    med = statistics.median(seconds)
    return {"k": k, "flops": 2.0 * k**3, "seconds": seconds, "median_s": med,
            "gflops": 2.0 * k**3 / med / 1e9}


def machine() -> dict:
    dev = jax.devices()
    return {"platform": dev[0].platform, "device_kind": dev[0].device_kind,
            "device_count": len(dev), "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "jax": jax.__version__, "python": platform.python_version()}
