"""The figures a user of an accelerator needs, in one call: the environment step (unlearning and
bias; summary and controller observations) up to large N, end-to-end PPO training with the
default editor, and the time of one amortized edit, each with compile time apart and the machine
(device kind and count, JAX version) beside it.

``benchmarks/accelerator.py`` writes it to JSON from the command line; the Colab notebook
(``notebooks/throughput_colab_tpu.ipynb``) calls it and shows the same numbers. Before anything
runs, :func:`check_accelerator` refuses an accelerator JAX install on a machine whose JAX sees no
accelerator (it would measure the CPU and say nothing), and :func:`check_counts` an environment
count that does not split evenly over the devices.
"""

from __future__ import annotations

import importlib.metadata
import tempfile
import time
from collections.abc import Sequence

import jax

from maskshift.bench.ppo import ppo_steps_per_s
from maskshift.bench.throughput import run_throughput
from maskshift.bench.timing import machine

# the small setting (CPU, CI) and the full one (an accelerator)
# (the small one, what CI runs of the notebook: one env and one task, every part once)
SMALL = {"ns": (16,), "ppo_envs": (16,), "reps": 1, "amortized_steps": 128, "envs": ("mask",),
         "tasks": ("unlearn",)}
FULL = {"ns": (1024, 4096, 16384, 65536), "ppo_envs": (64, 256, 1024, 4096), "reps": 5,
        "amortized_steps": 81_920, "envs": ("mask", "shift"), "tasks": ("unlearn", "bias")}
# pip distributions an accelerator extra installs -> the platform JAX must then see
ACCELERATOR_PLUGINS = {"jax-cuda12-plugin": "gpu", "jax-cuda13-plugin": "gpu", "libtpu": "tpu"}


def installed_accelerators() -> dict[str, str]:
    """``{distribution: platform}`` of the accelerator JAX plugins installed here."""
    found = {}
    for dist, platform in ACCELERATOR_PLUGINS.items():
        try:
            importlib.metadata.version(dist)
            found[dist] = platform
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def check_accelerator(platform: str | None = None, installed: dict | None = None) -> None:
    """Refuse (``ValueError``, one line) an accelerator plugin whose platform JAX does not show:
    a ``maskshift[cuda12]`` install on a machine with no GPU measures the CPU."""
    platform = platform or jax.devices()[0].platform
    for dist, want in (installed_accelerators() if installed is None else installed).items():
        if want != platform:
            raise ValueError(f"{dist} is installed (the {want} extra) but JAX runs on {platform}: "
                             f"this machine's {want.upper()} is missing or not visible; install "
                             "plain maskshift here, or run on the accelerator.")


def check_counts(ns: Sequence[int], devices: int) -> None:
    """Every environment count must split evenly over ``devices``."""
    bad = [n for n in ns if n < 1 or n % devices]
    if bad:
        raise ValueError(f"{bad[0]} environments cannot be split evenly over {devices} devices; "
                         f"give multiples of {devices} (`ns`).")


def amortized_edit_seconds(steps: int, env: str = "mask", log=print) -> dict:
    """Train a small amortized policy on classes 0-5 (``steps`` env steps), then time edits of
    held-out class 8 with it: the first (compile included) and a second one."""
    from maskshift.run import make_run_config, train_and_evaluate
    from maskshift.run.policy import PolicyEditor, load_policy

    with tempfile.TemporaryDirectory() as out:
        cfg = make_run_config(env=env, amortized=True, forget_classes=(0, 1, 2, 3, 4, 5),
                              total_steps=steps, num_envs=16)
        t0 = time.perf_counter()
        train_and_evaluate(cfg, out, overwrite=True, log=lambda s: None)
        train_s = time.perf_counter() - t0
        editor = PolicyEditor(load_policy(out), [(8,)])
        t0 = time.perf_counter()
        first = editor.edit((8,), log=lambda s: None)
        first_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        editor.edit((8,), log=lambda s: None)
        second_s = time.perf_counter() - t0
    log(f"amortized edit of class 8: {first_s:.2f} s (compile included), then {second_s:.2f} s")
    return {"env": env, "train_env_steps": steps, "train_seconds": train_s,
            "first_edit_seconds": first_s, "edit_seconds": second_s,
            "forget_acc": first["after"]["forget_acc"], "retain_acc": first["after"]["retain_acc"]}


def accelerator_report(ns: Sequence[int] = SMALL["ns"],
                       ppo_envs: Sequence[int] = SMALL["ppo_envs"], reps: int = SMALL["reps"],
                       amortized_steps: int | None = SMALL["amortized_steps"],
                       envs: Sequence[str] = ("mask", "shift"),
                       tasks: Sequence[str] = ("unlearn", "bias"), log=print) -> dict:
    """Every figure of the module docstring for ``envs``, on every visible device (checked
    first)."""
    devices = len(jax.devices())
    check_accelerator()
    check_counts([*ns, *ppo_envs], devices)
    info = machine()
    log(f"{info['device_count']}x {info['device_kind']} ({info['platform']}), jax {info['jax']}")
    steps = run_throughput(envs=envs, tasks=tasks, ns=ns,
                           modes=("vmap",), reps=reps, observations=("summary", "controller"),
                           log=log)
    ppo = []
    for env in envs:
        for n in ppo_envs:
            r = ppo_steps_per_s(env, "unlearn", n, reps=reps, devices="all")
            log(f"PPO (default editor, {r['policy']}) {env} unlearn N={n}: "
                f"{r['env_steps_per_s']:,.0f} env-steps/s (compile {r['compile_s']:.1f} s)")
            ppo.append(r)
    amortized = None if not amortized_steps else amortized_edit_seconds(amortized_steps, log=log)
    return {"machine": info, "steps": steps, "ppo": ppo, "amortized": amortized}


def _step_figure(entry: dict) -> str:
    if "skipped" in entry:
        return f"N={entry['n']}: skipped ({entry['skipped']})"
    return f"N={entry['n']}: {entry['steps_per_s']:,.0f} ({entry['compile_s']:.1f})"


def summary_lines(report: dict) -> list[str]:
    """The report of :func:`accelerator_report` as readable lines: the machine, steps/s per
    (env, task, observation) and N with compile seconds in brackets (an N skipped for memory says
    so), PPO env-steps/s per N, and the amortized edit's seconds."""
    m = report["machine"]
    lines = [f"{m['device_count']}x {m['device_kind']} ({m['platform']}), jax {m['jax']}",
             "environment step, steps/s (compile s):"]
    lines += [f"  {label:<28} " + "  ".join(_step_figure(e) for e in r["vmap"])
              for label, r in report["steps"]["results"].items()]
    lines.append("PPO, default editor, env-steps/s (compile s):")
    lines += [f"  {r['env']} N={r['num_envs']}: {r['env_steps_per_s']:,.0f} ({r['compile_s']:.1f})"
              for r in report["ppo"]]
    a = report["amortized"]
    if a:
        lines.append(f"amortized edit: {a['edit_seconds']:.2f} s "
                     f"({a['first_edit_seconds']:.2f} s with compile)")
    return lines
