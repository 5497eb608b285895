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

Every clock read follows ``block_until_ready``; compile time is measured apart from run time;
each figure is the median of ``reps`` repetitions, with the min and max as its spread.
``benchmarks/throughput.py`` is the command-line front end; the notebooks call
:func:`run_throughput` directly.
"""

from __future__ import annotations

import itertools
import math
import os
import platform
import statistics
import time
import tracemalloc
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments import environment

from maskshift._io import save_figure
from maskshift.envs import ENV_ALIASES, EditWorld, EnvParams, make
from maskshift.envs.worlds import EnvState, pool_matrix
from maskshift.sharding import (
    check_chunk,
    check_divisible,
    constrain_envs,
    env_mesh,
    mesh_size,
    put_envs,
    put_replicated,
    step_envs,
)
from maskshift.tasks import BiasObjective, UnlearnObjective, get_leaf, make_task

DEFAULT_MODES = ("vmap", "chunked", "loop", "numpy", "matmul")
MODES = (*DEFAULT_MODES, "parts")
PARTS = ("update", "observe")
STEPS_PER_CALL = 8  # batched steps per jitted call (a rollout under lax.scan)
DEFAULT_CHUNK = 8  # environments per group (per device) in the chunked mode
DEFAULT_NS = (1, 16, 256, 1024, 4096, 16384)


# ------------------------------------------------------------------ the NumPy reference step
class NumpyEditWorld:
    """The same step as :class:`~maskshift.envs.MaskWorld` / :class:`~maskshift.envs.ShiftWorld`
    in plain NumPy, one environment at a time.

    Supports the built-in objectives and a suffix that is a chain of ``Dense`` layers (ReLU
    between them) starting at the one edited matrix, which is what the built-in tasks edit. The
    chain is checked against the JAX suffix when it is built.
    """

    def __init__(self, env: EditWorld, env_params: EnvParams):
        if len(env.paths) != 1:
            raise ValueError("The NumPy reference step supports one edited matrix.")
        path = env.paths[0]
        layer = path[-2]
        if not (layer.startswith("Dense_") and path[-1] == "kernel"):
            raise ValueError(f"The NumPy reference step needs an edited Dense kernel, not "
                             f"{'/'.join(path)}.")
        self.env, self.kind = env, env.kind
        p = env_params
        self.lu, self.le = float(p.lambda_utility), float(p.lambda_edit)
        self.step_size, self.mask_max = float(p.step_size), float(p.mask_max)
        self.shift_cap, self.T = float(p.shift_cap), int(p.max_steps_in_episode)
        self.w0 = np.asarray(p.task.originals[0], np.float32)
        self.norm0 = float(np.sqrt(np.sum(self.w0 * self.w0)))
        self.rms0 = self.norm0 / math.sqrt(self.w0.size)
        self.obj = env.task.objective
        # the first target's whole train split, in the minibatches' layout
        self.train = self.obj.target_sets(jax.tree.map(np.asarray, p.task.train), 0)
        self.base = np.asarray(p.task.base_metrics[0])
        if not isinstance(self.obj, UnlearnObjective | BiasObjective):
            raise ValueError("The NumPy reference step supports the built-in objectives only.")
        params = jax.tree.map(np.asarray, env.task.params)
        scope = path[:-2]
        start = int(layer.split("_")[1])
        self.bias0 = get_leaf(params, (*scope, layer, "bias"))
        self.rest = []
        k = start + 1
        while True:
            try:
                self.rest.append((get_leaf(params, (*scope, f"Dense_{k}", "kernel")),
                                  get_leaf(params, (*scope, f"Dense_{k}", "bias"))))
            except KeyError:
                break
            k += 1
        h = next(v for v in self.train.values() if v.ndim == 2)[:8]
        want = np.asarray(env.task.suffix(env.task.params, jnp.asarray(h)))
        if not np.allclose(self._logits(h, self.w0), want, atol=1e-4):
            raise ValueError("The model's suffix above the edited layer is not a chain of Dense "
                             "layers; the NumPy reference step cannot reproduce it.")

    def _logits(self, h, w):
        h = h @ w + self.bias0
        for kernel, bias in self.rest:
            h = np.maximum(h, 0.0) @ kernel + bias
        return h

    def reset(self):
        e = np.ones_like(self.w0) if self.kind == "mask" else np.zeros_like(self.w0)
        return self._obs(e, self.base, 0), (e, 0)

    def draw(self, rng) -> dict:
        """Row indices of a fresh train minibatch, per array of the objective."""
        obj, a = self.obj, self.train
        if isinstance(obj, UnlearnObjective):
            ir = rng.integers(0, len(a["y_retain"]), obj.batch_size)
            i_f = rng.integers(0, len(a["y_forget"]), obj.batch_size)
            return {"h_retain": ir, "y_retain": ir, "h_forget": i_f, "y_forget": i_f}
        i = rng.integers(0, len(a["y"]), obj.batch_size)
        return {"h": i, "h_cf": i, "y": i}

    def metrics(self, w, idx: dict) -> np.ndarray:
        """The objective's metrics of weights ``w`` on the rows ``idx``."""
        b = {k: self.train[k][i] for k, i in idx.items()}
        if isinstance(self.obj, UnlearnObjective):
            lr, yr = self._logits(b["h_retain"], w), b["y_retain"]
            lf, yf = self._logits(b["h_forget"], w), b["y_forget"]
            return np.array([_ce(lr, yr).mean(), np.minimum(_ce(lf, yf), self.obj.ce_cap).mean(),
                             (lr.argmax(-1) == yr).mean(), (lf.argmax(-1) == yf).mean()],
                            np.float32)
        lg, lc, y = self._logits(b["h"], w), self._logits(b["h_cf"], w), b["y"]
        pg, pc = _softmax(lg), _softmax(lc)
        return np.array([pg[np.arange(len(y)), y].mean(), np.abs(pg[:, 1] - pc[:, 1]).mean(),
                         (lg.argmax(-1) == y).mean(),
                         (lg.argmax(-1) != lc.argmax(-1)).mean()], np.float32)

    def _obs(self, e, metrics, t):
        dev = e - 1.0 if self.kind == "mask" else e / max(self.rms0, 1e-30)
        a = np.abs(dev)
        bins = self.env.obs_bins
        m, n = a.shape
        feats = np.concatenate([[dev.mean(), a.mean(), a.max()], a.mean(1) @ pool_matrix(m, bins),
                                a.mean(0) @ pool_matrix(n, bins)])
        return np.concatenate([np.tanh(feats), np.tanh(metrics), [t / self.T]]).astype(np.float32)

    def update(self, e, action):
        """The new edit and effective weights after ``action``."""
        m, n = self.w0.shape
        r = self.env.rank
        u, v = action[: m * r].reshape(m, r), action[m * r :].reshape(n, r)
        d = np.tanh(u @ v.T / math.sqrt(r))
        if self.kind == "mask":
            e = np.clip(e + self.step_size * d, 0.0, self.mask_max)
            w = self.w0 * e
        else:
            e = e + self.step_size * self.rms0 * d
            norm, cap = float(np.sqrt(np.sum(e * e))), self.shift_cap * self.norm0
            if norm > cap:
                e = e * (cap / norm)
            w = self.w0 + e
        return e, w

    def step(self, rng, state, action):
        """``(obs, state, reward, done)``; the episode auto-resets after ``T`` steps, as in
        gymnax."""
        e, t = state
        e, w = self.update(e, action)
        metrics = self.metrics(w, self.draw(rng))
        utility, edit = self.obj.terms(metrics, self.base)
        reward = self.lu * utility + self.le * edit
        t += 1
        if t >= self.T:
            obs, state = self.reset()
            return obs, state, reward, True
        return self._obs(e, metrics, t), (e, t), reward, False


def _softmax(x):
    z = np.exp(x - x.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def _ce(logits, y):
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return -logp[np.arange(len(y)), y]


# ------------------------------------------------------------------ timing helpers
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
    stats = jax.devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"]) // 2
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2


def _device_peak() -> int | None:
    stats = jax.devices()[0].memory_stats() or {}
    return int(stats["peak_bytes_in_use"]) if "peak_bytes_in_use" in stats else None


def _inputs(env: EditWorld, env_params: EnvParams, n: int, seed: int = 0):
    keys = jax.random.split(jax.random.key(seed), n)
    _, state = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(keys, env_params)
    actions = 0.5 * jax.random.normal(jax.random.key(seed + 1), (n, env.action_size))
    return keys, state, actions


# ------------------------------------------------------------------ the modes
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


class _PartialStep:
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
               else self.env._obs(edit, state.metrics, time, params))
        return (obs, state.replace(edit=edit, time=time), jnp.float32(0.0), jnp.asarray(False),
                {})


def bench_parts(env, env_params, n: int, reps: int, devices=None, chunk: int | None = None,
                steps: int = STEPS_PER_CALL) -> dict:
    """:func:`bench_vmap`'s figures (``chunk``: the chunked mode's) for each of :data:`PARTS` of
    the step (summary observation only: the gradient observations' unit block needs the forward
    and backward passes)."""
    if env.observation != "summary":
        raise ValueError("The parts mode measures the summary observation's step only.")
    return {part: bench_vmap(_PartialStep(env, part), env_params, n, reps, devices, chunk, steps)
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


# ------------------------------------------------------------------ the sweep
def machine() -> dict:
    dev = jax.devices()
    return {"platform": dev[0].platform, "device_kind": dev[0].device_kind,
            "device_count": len(dev), "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "jax": jax.__version__, "python": platform.python_version()}


def build_env(env: str, task: str, observation: str = "summary", minibatch: str = "per_env",
              **task_kwargs):
    """A built-in editing environment (``env``: mask/shift, ``task``: unlearn/bias)."""
    if env not in ENV_ALIASES:
        raise ValueError(f"Unknown env {env!r}; choose 'mask' or 'shift'.")
    return make(ENV_ALIASES[env], task=make_task(task, **task_kwargs), observation=observation,
                minibatch=minibatch)


def run_throughput(envs: Sequence[str] = ("mask", "shift"),
                   tasks: Sequence[str] = ("unlearn", "bias"),
                   ns: Sequence[int] = DEFAULT_NS, modes: Sequence[str] = DEFAULT_MODES,
                   reps: int = 5,
                   max_serial_n: int = 1024, devices=None, chunk: int = DEFAULT_CHUNK,
                   steps: int = STEPS_PER_CALL, observations: Sequence[str] = ("summary",),
                   minibatches: Sequence[str] = ("per_env",), pool: Sequence[int] = (),
                   log=print) -> dict:
    """Steps/s of every mode for every (env, task, observation) and environment count ``n``.

    ``observations``: ``"gradient"`` measures the gradient observation too (label suffix
    ``-gradient``; the NumPy reference implements the summary observation only, so its mode is
    skipped there). ``minibatches``: ``"shared"`` measures the shared minibatch draw too (label
    suffix ``-shared``; the serial modes step one environment, where the draws are the same, so
    they run for ``per_env`` only). ``pool``: also the unlearning task as a pool of these forget
    classes, one drawn per environment (label suffix ``-pool``).

    The serial modes (``loop``, ``numpy``) scale linearly in ``n`` and run only up to
    ``max_serial_n``; ``chunked`` runs where each device's share of ``n`` is a multiple of
    ``chunk`` larger than it. The batched modes run ``steps`` steps per call.
    Returns a JSON-ready dict; ``results[f"{env}-{task}"][mode]`` is a list of
    per-``n`` entries, and ``ratios`` holds vmap's speed-up over the serial modes at each ``n``
    both ran.
    """
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise ValueError(f"Unknown mode {bad[0]!r}; choose from {', '.join(MODES)}.")
    shards = mesh_size(env_mesh(devices))
    out = {"machine": machine(), "reps": reps, "ns": list(ns), "chunk": chunk,
           "steps_per_call": steps, "results": {}}
    pools = [None] + ([tuple(pool)] if pool else [])
    for env_name, task, observation, draw, classes in itertools.product(
            envs, tasks, observations, minibatches, pools):
        if classes is not None and task != "unlearn":
            continue
        kwargs = {} if classes is None else {"forget_classes": classes, "amortized": True}
        env, p = build_env(env_name, task, observation, draw, **kwargs)
        label = (f"{env_name}-{task}" + ("" if observation == "summary" else f"-{observation}")
                 + ("" if draw == "per_env" else f"-{draw}") + ("" if classes is None else "-pool"))
        res: dict = {m: [] for m in modes}
        res["action_size"] = env.action_size
        for n in ns:
            line = [f"{label:<14} N={n:<6}"]
            vm = ch = mm = None
            if "vmap" in modes or "matmul" in modes:
                vm = bench_vmap(env, p, n, reps, devices, steps=steps)
                if "vmap" in modes:
                    res["vmap"].append(vm)
                if "skipped" in vm:
                    line.append(f"vmap skipped ({vm['skipped']})")
                else:
                    line.append(f"vmap {vm['steps_per_s']:>11,.0f}/s "
                                f"(compile {vm['compile_s']:.2f} s)")
            per_device = n // shards
            if "chunked" in modes and per_device > chunk and per_device % chunk == 0:
                ch = bench_vmap(env, p, n, reps, devices, chunk, steps)
                res["chunked"].append(ch)
                if "skipped" not in ch:
                    line.append(f"chunked {ch['steps_per_s']:>11,.0f}/s")
            if "matmul" in modes and vm and "skipped" not in vm and vm["flops"]:
                mm = bench_matmul(vm["flops"], reps)
                mm["n"], mm["step_flops"] = n, vm["flops"]
                res["matmul"].append(mm)
                _set_roofline(vm, mm)
                _set_roofline(ch, mm)
                line.append(f"matmul {mm['gflops']:.1f} GFLOP/s "
                            f"(vmap at {vm['roofline_fraction']:.0%} of it)")
            if "parts" in modes and observation == "summary":
                parts = {"n": n}
                for mode, whole, group in (("vmap", vm, None), ("chunked", ch, chunk)):
                    if whole is None or "skipped" in whole:
                        continue
                    parts[mode] = bench_parts(env, p, n, reps, devices, group, steps)
                    if any("skipped" in parts[mode][k] for k in PARTS):
                        continue
                    ms = {k: 1e3 * n / parts[mode][k]["steps_per_s"] for k in PARTS}
                    line.append(f"{mode} parts: update {ms['update']:.1f} ms, +observe "
                                f"{ms['observe'] - ms['update']:.1f} ms of "
                                f"{1e3 * n / whole['steps_per_s']:.1f} ms")
                    if mm is not None:
                        bound = roofline_bound(whole, parts[mode]["observe"], mm)
                        parts.setdefault("roofline_bound", {})[mode] = bound
                        line.append(f"(roofline bound {bound:.0%})")
                res["parts"].append(parts)
            for mode, fn in (("loop", bench_loop), ("numpy", bench_numpy)):
                if ((mode == "numpy" and (observation != "summary" or classes is not None))
                        or draw != "per_env"):
                    continue
                if mode in modes and n <= max_serial_n:
                    r = fn(env, p, n, reps)
                    _set_roofline(r, mm)
                    res[mode].append(r)
                    line.append(f"{mode} {r['steps_per_s']:>9,.0f}/s")
            log("  ".join(line))
        res["ratios"] = _ratios(res)
        out["results"][label] = res
    return out


def _set_roofline(r: dict | None, mm: dict | None) -> None:
    """``r["roofline_fraction"]``: the matmul's time for the FLOPs of one environment-step (one
    batched step of ``mm["n"]`` environments has ``mm["step_flops"]``) over ``r``'s median time
    per environment-step."""
    if r is not None and mm is not None and "skipped" not in r:
        per_step = mm["median_s"] * mm["step_flops"] / mm["flops"] / mm["n"]
        r["roofline_fraction"] = per_step * r["steps_per_s"]


def _ratios(res: dict) -> dict:
    """Speed-ups of the batched modes over the serial ones, per ``n`` both ran."""
    out = {}
    for fast in ("vmap", "chunked"):
        f = {r["n"]: r["steps_per_s"] for r in res.get(fast, []) if "skipped" not in r}
        for mode in ("loop", "numpy"):
            out[f"{fast}_over_{mode}"] = {str(r["n"]): f[r["n"]] / r["steps_per_s"]
                                          for r in res.get(mode, []) if r["n"] in f}
    return out


def plot_throughput(results: dict, path) -> None:
    """Steps/s against ``N`` on log-log axes, one panel per (env, task), one line per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = list(results["results"].items())
    fig, axes = plt.subplots(1, len(items), figsize=(4.2 * len(items), 3.8), squeeze=False)
    for ax, (label, res) in zip(axes[0], items, strict=True):
        for mode in ("vmap", "chunked", "loop", "numpy"):
            pts = [(r["n"], r["steps_per_s"], r["steps_per_s_min"], r["steps_per_s_max"])
                   for r in res.get(mode, []) if "skipped" not in r]
            if pts:
                n, s, lo, hi = map(np.asarray, zip(*pts, strict=True))
                ax.errorbar(n, s, yerr=[s - lo, hi - s], marker="o", capsize=3, label=mode)
        # the steps/s the matmul's rate would give: a step's time there over vmap's
        rows = [(r["n"], r["steps_per_s"] / r["roofline_fraction"])
                for r in res.get("vmap", []) if r.get("roofline_fraction")]
        if rows:
            n, s = zip(*rows, strict=True)
            ax.plot(n, s, "k--", lw=1, label="matmul, same FLOPs")
        ax.set(xscale="log", yscale="log", xlabel="parallel environments N",
               ylabel="environment steps / s", title=label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    m = results["machine"]
    fig.suptitle(f"{m['device_count']}x {m['device_kind']} ({m['platform']}), "
                 f"{m['cpu_count']} CPU cores", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
