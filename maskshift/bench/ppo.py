"""End-to-end PPO training throughput: env-steps/s of whole updates (rollout, GAE, epochs of
minibatch SGD), the figure PureJaxRL reports, compile time apart. ``benchmarks/ppo_throughput.py``
sweeps it; the accelerator report and the Colab notebook call it for the default editor."""

from __future__ import annotations

import statistics
import time

import jax

from maskshift.agents import ppo
from maskshift.envs import ENV_ALIASES, make
from maskshift.run.config import editor_config
from maskshift.sharding import env_mesh
from maskshift.tasks import make_task

# a PPO policy by name: (heads, observation); "residual" is maskshift.train's default editor
POLICIES = {"residual": ("units", "controller"), "flat": ("flat", "summary")}


def ppo_steps_per_s(env_name: str, task: str, num_envs: int, minibatch: str = "per_env",
                    chunk: int | None = None, updates: int = 1, reps: int = 3,
                    policy: str = "residual", devices=None) -> dict:
    """Env-steps/s of ``updates`` PPO updates per compiled call (median of ``reps`` calls after
    one warm-up), the environment batch over ``devices`` (``None``: one device, as the CPU
    tables were measured; ``"all"``: every visible device)."""
    heads, observation = POLICIES[policy]
    env, p = make(ENV_ALIASES[env_name], task=make_task(task), minibatch=minibatch,
                  observation=observation)
    config = editor_config("ppo", task, num_envs=num_envs, heads=heads, observation=observation,
                           total_steps=num_envs * 8 * updates)
    chunk = chunk if chunk is not None and chunk < num_envs else None
    mesh = None if devices is None else env_mesh(None if devices == "all" else devices)
    trainer = ppo.make_train(config, env, mesh, chunk)
    rs = jax.jit(trainer.init)(jax.random.key(0), p)
    t0 = time.perf_counter()
    run = jax.jit(trainer.run, static_argnums=2).lower(rs, p, updates).compile()
    compile_s = time.perf_counter() - t0
    rs, _ = jax.block_until_ready(run(rs, p))  # warm-up
    seconds = []
    for _ in range(reps):
        t0 = time.perf_counter()
        rs, _ = jax.block_until_ready(run(rs, p))
        seconds.append(time.perf_counter() - t0)
    steps = num_envs * 8 * updates
    med = statistics.median(seconds)
    return {"policy": policy, "env": env_name, "task": task, "num_envs": num_envs,
            "minibatch": minibatch, "env_chunk": chunk, "updates_per_call": updates,
            "env_steps_per_call": steps, "devices": 1 if mesh is None else int(mesh.devices.size),
            "seconds": seconds, "median_s": med, "env_steps_per_s": steps / med,
            "compile_s": compile_s}
