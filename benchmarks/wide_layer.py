"""Unlearning on a layer 8x the default's: a wide MLP on the digits, through ``task_from_model``.

    python benchmarks/wide_layer.py --out runs/wide-layer        # 2 envs x 3 seeds x 2 editors

The model is ``64 -> Dense_0 1024 -> Dense_1 256 -> Dense_2 10`` (ReLU), trained on the digits'
train split; ``Dense_1`` (``[1024, 256]``, 262,144 entries, 8x the CNN's ``[512, 64]``) is edited
to forget class 7, with the frozen ``Dense_0`` run once (a ``prefix_fn``/``suffix_fn`` split).
Every run is ``maskshift.train_and_evaluate(RunConfig(env=..., algo=..., seed=...), task=...)`` at
the CLI's defaults, beside the default task's PPO run (``--env mask``, the CNN) for the wall-time
ratio. Writes ``OUT/wide_layer.md`` and ``OUT/wide_layer.json``; a finished run is reused.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from maskshift import RunConfig, make_run_config, task_from_model
from maskshift._io import atomic_write_json, atomic_write_text
from maskshift.data import load_dataset
from maskshift.metrics import meets_unlearning_target
from maskshift.run import reuse_or_run

sys.path.insert(0, str(Path(__file__).parent))
from untrained import untrained_report  # noqa: E402

WIDTHS = (1024, 256, 10)
# PPO editors: name -> (observation, heads)
PPO_VARIANTS = {"ppo": ("summary", "flat"), "units": ("gradient", "units"),
                "residual": ("controller", "units")}


class WideMLP(nn.Module):
    """``Dense_0 -> relu -> Dense_1 -> relu -> Dense_2``, staged: ``start``/``stop`` run part."""

    @nn.compact
    def __call__(self, x, start: int = 0, stop: int = 3):
        layers = [nn.Dense(w, name=f"Dense_{i}") for i, w in enumerate(WIDTHS)]
        h = x.reshape(x.shape[0], -1) if start == 0 else x
        for i in range(start, stop):
            h = layers[i](h)
            h = nn.relu(h) if i < 2 else h
        return h


def wide_task(forget: int = 7, steps: int = 400):
    """The trained wide MLP as a ``Task`` editing ``Dense_1``, and its test accuracy."""
    data = load_dataset("digits")
    model = WideMLP()
    x, y = data.train.x.reshape(len(data.train.y), -1), data.train.y
    params = model.init(jax.random.key(0), x[:1])
    tx = optax.adam(1e-3)

    @jax.jit
    def step(params, opt_state, x, y):
        loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(  # noqa: E731
            model.apply(p, x), y).mean()
        updates, opt_state = tx.update(jax.grad(loss)(params), opt_state)
        return optax.apply_updates(params, updates), opt_state

    opt_state = tx.init(params)
    for _ in range(steps):
        params, opt_state = step(params, opt_state, jnp.asarray(x), jnp.asarray(y))
    flat = lambda s: (s.x.reshape(len(s.y), -1), s.y)  # noqa: E731
    task = task_from_model(model.apply, params, ["Dense_1"], train=flat(data.train),
                           val=flat(data.val), test=flat(data.test), forget_classes=forget,
                           num_classes=10, name="digits-wide-mlp",
                           prefix_fn=lambda p, x: model.apply(p, x, stop=1),
                           suffix_fn=lambda p, h: model.apply(p, h, start=1))
    xt, yt = flat(data.test)
    acc = float(np.mean(np.argmax(model.apply(params, xt), -1) == yt))
    return task, acc


def _run(cfg: RunConfig, run_dir: Path, task=None) -> dict:
    return reuse_or_run(cfg, run_dir, task=task, log=lambda s: print(s, flush=True))


def _untrained(cfg: RunConfig, task) -> dict:
    """The residual policy network at its initialisation, rolled out, selected and reported."""
    t0 = time.perf_counter()
    res = untrained_report(cfg, task)
    return {**res, "train": {"wall_seconds": time.perf_counter() - t0, "env_steps": 0}}


def editor_config(algo: str, env: str, seed: int, total_steps: int | None) -> RunConfig:
    """``maskshift.train``'s config for ``algo`` (``untrained``: the residual PPO network's)."""
    variant = "residual" if algo == "untrained" else algo
    if variant not in PPO_VARIANTS:
        return make_run_config(env=env, algo=algo, seed=seed)
    observation, heads = PPO_VARIANTS[variant]
    return make_run_config(env=env, algo="ppo", seed=seed, observation=observation, heads=heads,
                           total_steps=total_steps)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/wide-layer")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--envs", nargs="+", default=["mask", "shift"])
    p.add_argument("--algos", nargs="+", default=["ppo", "gradient"],
                   choices=["ppo", "units", "residual", "untrained", "apg", "gradient",
                            "oracle"],
                   help="editors; units: PPO with --observation gradient --heads units; "
                        "residual: PPO with --observation controller --heads units; "
                        "untrained: the residual policy network before training")
    p.add_argument("--total-steps", type=int, default=None,
                   help="PPO env steps on the wide layer (default: maskshift.train's)")
    args = p.parse_args(argv)
    out = Path(args.out)
    t0 = time.perf_counter()
    task, acc = wide_task()
    print(f"wide MLP: test accuracy {acc:.3f}, edited {task.matrix_shapes[0]} "
          f"({int(np.prod(task.matrix_shapes[0])):,} entries), trained in "
          f"{time.perf_counter() - t0:.1f} s", flush=True)
    default = _run(RunConfig(env="mask"), out / "default-mask-ppo-s0")
    ref_wall = default["train"]["wall_seconds"]
    rows = []
    for algo in args.algos:
        for env in args.envs:
            for seed in args.seeds:
                cfg = editor_config(algo, env, seed, args.total_steps)
                res = (_untrained(cfg, task) if algo == "untrained"
                       else _run(cfg, out / f"{env}-{algo}-s{seed}", task))
                wall = res["train"]["wall_seconds"]
                rows.append({"env": env, "algo": algo, "seed": seed, "before": res["before"],
                             "after": res["after"], "wall_seconds": wall,
                             "env_steps": res["train"].get("env_steps", 0),
                             "ratio_to_default": wall / ref_wall, "best_step": res["best_step"],
                             "meets_target": meets_unlearning_target(res["before"], res["after"],
                                                                     retain_floor=0.90)})
                r = rows[-1]
                print(f"{algo:>8} {env:>5} seed {seed}: forget {r['after']['forget_acc']:.3f} "
                      f"retain {r['after']['retain_acc']:.3f} target "
                      f"{'met' if r['meets_target'] else 'MISSED'} ({wall:.1f} s, "
                      f"{r['ratio_to_default']:.1f}x the default run)", flush=True)
    lines = [f"Wide MLP on the digits (test accuracy {acc:.3f}), `Dense_1` "
             f"{list(task.matrix_shapes[0])} edited, forget class 7; the default run "
             f"(`python -m maskshift.train --env mask`, the CNN's `[512, 64]`) trained in "
             f"{ref_wall:.1f} s.", "",
             "| editor | env | seed | forget | retain | MIA | target | wall s | × default | "
             "env steps |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        a = r["after"]
        lines.append(f"| {r['algo']} | {r['env']} | {r['seed']} | {a['forget_acc']:.3f} | "
                     f"{a['retain_acc']:.3f} | {a['mia']:.3f} | "
                     f"{'met' if r['meets_target'] else 'missed'} | {r['wall_seconds']:.1f} | "
                     f"{r['ratio_to_default']:.2f} | {r['env_steps']:,} |")
    md = "\n".join(lines) + "\n"
    atomic_write_text(out / "wide_layer.md", md)
    atomic_write_json(out / "wide_layer.json", {"test_accuracy": acc, "default_wall": ref_wall,
                                                "rows": rows})
    print(md)
    return 0 if all(r["meets_target"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
