"""End-to-end PPO training throughput: env-steps/s of whole PPO updates (rollout, GAE, epochs of
minibatch SGD), the figure PureJaxRL reports, with compilation timed apart.

    python benchmarks/ppo_throughput.py --json benchmarks/results/ppo-throughput-cpu.json
    python benchmarks/ppo_throughput.py --num-envs 64 256 --envs mask --tasks unlearn   # quick

For each policy (``default``: the default editor of that env and task, ``residual`` for MaskWorld
unlearning, ``residual-step`` for ShiftWorld unlearning and bias; or a name in
``maskshift.run.compare.POLICIES``: ``residual``, unit heads over the controller observation,
``residual-step``, over the controller-step one, ``flat``, flat heads over the summary) × env ×
task × ``--num-envs`` × minibatch draw (``per_env``, ``shared``) × env chunk: ``ppo.make_train``
with the PPO config ``maskshift.run.config.editor_config`` builds at that batch size (one episode
per environment per update at the editor's episode length: 8 steps, 16 for the bias default; 4
minibatches, 4 epochs), ``--updates`` updates per compiled call; one warm-up call, then ``--reps``
timed calls (median). Prints one line each and writes every figure to ``--json``.
"""

from __future__ import annotations

import argparse
import itertools
import sys

from maskshift._io import atomic_write_json
from maskshift.bench import machine
from maskshift.bench.ppo import POLICIES, ppo_steps_per_s


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--policies", nargs="+", default=["default", "flat"],
                   choices=["default", *POLICIES])
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
        print(f"{r['policy']:<13} {env_name:<5} {task:<7} N={n:<5} {draw:<7} chunk={str(chunk):<4} "
              f"{r['env_steps_per_s']:>9,.0f} env-steps/s (compile {r['compile_s']:.1f} s)",
              flush=True)
        if args.json:
            atomic_write_json(args.json, {"machine": machine(), "args": vars(args),
                                          "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
