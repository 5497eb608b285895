"""End-to-end PPO training throughput: env-steps/s of whole PPO updates (rollout, GAE, epochs of
minibatch SGD), the figure PureJaxRL reports, with compilation timed apart.

    python benchmarks/ppo_throughput.py --json benchmarks/results/ppo-throughput-cpu.json
    python benchmarks/ppo_throughput.py --num-envs 64 256 --envs mask --tasks unlearn   # quick

For each policy (``residual``: the default editor, unit heads over the controller observation;
``flat``: flat heads over the summary observation) × env × task × ``--num-envs`` × minibatch draw
(``per_env``, ``shared``) × env chunk: ``ppo.make_train`` with the PPO config
``maskshift.run.config.editor_config`` builds at that batch size (8 steps per environment per
update, 4 minibatches, 4 epochs), ``--updates`` updates per compiled call; one warm-up call, then
``--reps`` timed calls (median). Prints one line each and writes every figure to ``--json``.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time

import jax

from maskshift._io import atomic_write_json
from maskshift.agents import ppo
from maskshift.bench import machine
from maskshift.envs import ENV_ALIASES, make
from maskshift.run.config import editor_config
from maskshift.tasks import make_task

POLICIES = {"residual": ("units", "controller"), "flat": ("flat", "summary")}


def ppo_steps_per_s(env_name: str, task: str, num_envs: int, minibatch: str,
                    chunk: int | None, updates: int, reps: int, policy: str = "residual") -> dict:
    """Env-steps/s of ``updates`` PPO updates per call (median of ``reps`` calls)."""
    heads, observation = POLICIES[policy]
    env, p = make(ENV_ALIASES[env_name], task=make_task(task), minibatch=minibatch,
                  observation=observation)
    config = editor_config("ppo", task, num_envs=num_envs, heads=heads, observation=observation,
                           total_steps=num_envs * 8 * updates)
    chunk = chunk if chunk is not None and chunk < num_envs else None
    trainer = ppo.make_train(config, env, None, chunk)
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
            "env_steps_per_call": steps,
            "seconds": seconds, "median_s": med, "env_steps_per_s": steps / med,
            "compile_s": compile_s}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--policies", nargs="+", default=["residual", "flat"], choices=list(POLICIES))
    p.add_argument("--envs", nargs="+", default=["mask", "shift"])
    p.add_argument("--tasks", nargs="+", default=["unlearn", "bias"])
    p.add_argument("--num-envs", nargs="+", type=int, default=[64, 256, 1024, 4096])
    p.add_argument("--minibatches", nargs="+", default=["per_env", "shared"],
                   choices=["per_env", "shared"])
    p.add_argument("--chunks", nargs="+", default=["none", "8"],
                   help="env chunks to time ('none': one vmap)")
    p.add_argument("--updates", type=int, default=2, help="PPO updates per timed call")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    chunks = [None if c == "none" else int(c) for c in args.chunks]
    rows = []
    for policy, env_name, task, n, draw, chunk in itertools.product(
            args.policies, args.envs, args.tasks, args.num_envs, args.minibatches, chunks):
        if chunk is not None and chunk >= n:
            continue
        r = ppo_steps_per_s(env_name, task, n, draw, chunk, args.updates, args.reps, policy)
        rows.append(r)
        print(f"{policy:<8} {env_name:<5} {task:<7} N={n:<5} {draw:<7} chunk={str(chunk):<4} "
              f"{r['env_steps_per_s']:>9,.0f} env-steps/s (compile {r['compile_s']:.1f} s)",
              flush=True)
        if args.json:
            atomic_write_json(args.json, {"machine": machine(), "args": vars(args),
                                          "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
