"""End-to-end PPO training throughput: env-steps/s of whole updates (rollout, GAE, epochs of
minibatch SGD), the figure PureJaxRL reports, compile time apart. ``benchmarks/ppo_throughput.py``
sweeps it; the accelerator report and the Colab notebook call it for the default editor."""

from __future__ import annotations

import dataclasses
import statistics
import time

import jax

from maskshift.agents import ppo
from maskshift.envs import ENV_ALIASES, make
from maskshift.run.compare import POLICIES
from maskshift.run.config import default_observation, editor_config
from maskshift.sharding import env_mesh
from maskshift.tasks import make_task


def default_policy(env_name: str, task: str) -> str:
    """The name in ``POLICIES`` of ``maskshift.train``'s default PPO policy for ``env_name`` on
    ``task``'s dense layer (unit heads over the observation ``default_observation`` picks)."""
    observation = default_observation("ppo", "units", {"task": task, "env": env_name})
    return next(name for name, (heads, obs) in POLICIES.items()
                if heads == "units" and obs == observation)


def ppo_steps_per_s(env_name: str, task: str, num_envs: int, minibatch: str = "per_env",
                    chunk: int | None = None, updates: int = 1, reps: int = 3,
                    policy: str = "default", devices=None) -> dict:
    """Env-steps/s of ``updates`` PPO updates per compiled call (median of ``reps`` calls after
    one warm-up), the environment batch over ``devices`` (``None``: one device, as the CPU
    tables were measured; ``"all"``: every visible device). ``policy``: a name in ``POLICIES``,
    or ``"default"``, the default editor's (:func:`default_policy`)."""
    policy = default_policy(env_name, task) if policy == "default" else policy
    heads, observation = POLICIES[policy]
    # the editor's own episode length (bias: 16 steps), one episode per PPO update
    config = editor_config("ppo", task, env=env_name, num_envs=num_envs, heads=heads,
                           observation=observation)
    steps = num_envs * config.num_steps * updates
    config = dataclasses.replace(config, total_timesteps=steps)
    env, p = make(ENV_ALIASES[env_name], task=make_task(task), minibatch=minibatch,
                  observation=observation, max_steps_in_episode=config.num_steps)
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
    med = statistics.median(seconds)
    return {"policy": policy, "env": env_name, "task": task, "num_envs": num_envs,
            "minibatch": minibatch, "env_chunk": chunk, "updates_per_call": updates,
            "episode_length": config.num_steps,
            "env_steps_per_call": steps, "devices": 1 if mesh is None else int(mesh.devices.size),
            "seconds": seconds, "median_s": med, "env_steps_per_s": steps / med,
            "compile_s": compile_s}
