"""The throughput sweep: every mode at every ``N`` for each environment and task, the ratios
between modes, and the plot."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence

import numpy as np

from maskshift._io import save_figure
from maskshift.bench.timing import (
    DEFAULT_CHUNK,
    DEFAULT_MODES,
    DEFAULT_NS,
    MODES,
    PARTS,
    STEPS_PER_CALL,
    bench_loop,
    bench_matmul,
    bench_numpy,
    bench_parts,
    bench_vmap,
    machine,
    roofline_bound,
)
from maskshift.envs import make
from maskshift.sharding import env_mesh, mesh_size
from maskshift.tasks import make_task


def run_throughput(envs: Sequence[str] = ("mask", "shift"),
                   tasks: Sequence[str] = ("unlearn", "bias"),
                   ns: Sequence[int] = DEFAULT_NS, modes: Sequence[str] = DEFAULT_MODES,
                   reps: int = 5,
                   max_serial_n: int = 1024, devices=None, chunk: int = DEFAULT_CHUNK,
                   steps: int = STEPS_PER_CALL, observations: Sequence[str] = ("summary",),
                   minibatches: Sequence[str] = ("per_env",), pool: Sequence[int] = (),
                   edits: Sequence[tuple[str, ...]] = (("Dense_0",),),
                   conv_impls: Sequence[str] = ("auto",), models: Sequence[str | None] = (None,),
                   log=print) -> dict:
    """Steps/s of every mode for every (env, task, observation) and environment count ``n``.

    ``observations``: ``"gradient"`` measures the gradient observation too (label suffix
    ``-gradient``; the NumPy reference implements the summary observation only, so its mode is
    skipped there). ``minibatches``: ``"shared"`` measures the shared minibatch draw too (label
    suffix ``-shared``; the serial modes step one environment, where the draws are the same, so
    they run for ``per_env`` only). ``pool``: also the unlearning task as a pool of these forget
    classes, one drawn per environment (label suffix ``-pool``). ``models``: the bias task's
    built-in text models (``None``: its default; label suffix ``-transformer``); the other
    tasks have one built-in model. An edit a task's model does not have is skipped.

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
    for env_name, task, observation, draw, classes, edit, conv, model in itertools.product(
            envs, tasks, observations, minibatches, pools, edits, conv_impls, models):
        if (classes is not None and task != "unlearn") or (task != "bias" and model != models[0]):
            continue  # a pool is an unlearning task; the other tasks have one built-in model
        model = model if task == "bias" else None
        kwargs = {} if classes is None else {"forget_classes": classes, "amortized": True}
        if model is not None:
            kwargs["model"] = model
        try:
            built = dataclasses.replace(make_task(task, edit=tuple(edit), **kwargs),
                                        conv_impl=conv)
        except ValueError as err:  # a layer this task's model does not have
            log(f"skipped {env_name}-{task} edit={'+'.join(edit)}: {str(err)[:80]}")
            continue
        env, p = make(env_name, task=built, observation=observation, minibatch=draw)
        label = (f"{env_name}-{task}" + ("" if observation == "summary" else f"-{observation}")
                 + ("" if draw == "per_env" else f"-{draw}") + ("" if classes is None else "-pool")
                 + ("" if tuple(edit) == ("Dense_0",) else f"-edit={'+'.join(edit)}")
                 + ("" if conv == "auto" else f"-{conv}")
                 + ("" if model is None else f"-{model}"))
        res: dict = {m: [] for m in modes}
        res["action_size"] = env.action_size
        opts = {"modes": modes, "reps": reps, "devices": devices, "steps": steps, "chunk": chunk,
                "shards": shards, "max_serial_n": max_serial_n,
                "serial": draw == "per_env",
                "numpy": (observation == "summary" and classes is None
                           and tuple(edit) == ("Dense_0",)),
                "parts": observation == "summary"}
        for n in ns:
            log("  ".join([f"{label:<14} N={n:<6}", *_measure_n(env, p, n, res, opts)]))
        res["ratios"] = _ratios(res)
        out["results"][label] = res
    return out


def _measure_n(env, p, n: int, res: dict, o: dict) -> list[str]:
    """Every mode of ``o["modes"]`` at ``n`` environments, appended to ``res``; returns the
    progress line's parts."""
    modes, line = o["modes"], []
    vm = ch = mm = None
    if "vmap" in modes or "matmul" in modes:
        vm = bench_vmap(env, p, n, o["reps"], o["devices"], steps=o["steps"])
        if "vmap" in modes:
            res["vmap"].append(vm)
        if "skipped" in vm:
            line.append(f"vmap skipped ({vm['skipped']})")
        else:
            line.append(f"vmap {vm['steps_per_s']:>11,.0f}/s "
                        f"(compile {vm['compile_s']:.2f} s)")
    per_device = n // o["shards"]
    if "chunked" in modes and per_device > o["chunk"] and per_device % o["chunk"] == 0:
        ch = bench_vmap(env, p, n, o["reps"], o["devices"], o["chunk"], o["steps"])
        res["chunked"].append(ch)
        if "skipped" not in ch:
            line.append(f"chunked {ch['steps_per_s']:>11,.0f}/s")
    if "matmul" in modes and vm and "skipped" not in vm and vm["flops"]:
        mm = bench_matmul(vm["flops"], o["reps"])
        mm["n"], mm["step_flops"] = n, vm["flops"]
        res["matmul"].append(mm)
        _set_roofline(vm, mm)
        _set_roofline(ch, mm)
        line.append(f"matmul {mm['gflops']:.1f} GFLOP/s "
                    f"(vmap at {vm['roofline_fraction']:.0%} of it)")
    if "parts" in modes and o["parts"]:
        res["parts"].append(_measure_parts(env, p, n, vm, ch, mm, o, line))
    for mode, fn in (("loop", bench_loop), ("numpy", bench_numpy)):
        if (mode == "numpy" and not o["numpy"]) or not o["serial"]:
            continue
        if mode in modes and n <= o["max_serial_n"]:
            r = fn(env, p, n, o["reps"])
            _set_roofline(r, mm)
            res[mode].append(r)
            line.append(f"{mode} {r['steps_per_s']:>9,.0f}/s")
    return line


def _measure_parts(env, p, n: int, vm, ch, mm, o: dict, line: list[str]) -> dict:
    """The parts mode at ``n`` beside the whole vmap and chunked steps (``line`` gets the
    figures)."""
    parts = {"n": n}
    for mode, whole, group in (("vmap", vm, None), ("chunked", ch, o["chunk"])):
        if whole is None or "skipped" in whole:
            continue
        parts[mode] = bench_parts(env, p, n, o["reps"], o["devices"], group, o["steps"])
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
    return parts


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
