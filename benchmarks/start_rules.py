"""What a residual policy's start needs: the greedy controller's step rule, taken apart.

    python benchmarks/start_rules.py --dataset fashion_mnist --edit Conv_1 --envs shift mask \\
        --json benchmarks/results/start-rules-fashion-Conv_1.json

A residual policy starts out following the gradient controller computed on each step's train
minibatch; the controller itself reads the whole train split. Each *rule* here is a fixed action
rule (no network, no training) rolled out for one episode from the original weights, selected on
val and reported on test exactly as every editor is. A rule is ``SOURCE:FACTORS:SIZE``:

- ``SOURCE``: ``whole`` (the whole train split, as the controller) or a share of each step's
  minibatch rows (``0.25``: the controller observation's default; ``1.0``: every row);
- ``FACTORS``: ``svd`` (the direction's top-r SVD scaled so the step's largest entry is ``SIZE``:
  the controller's action, and the controller-step observation's features) or ``iteration`` (the
  controller observation's factors, one step of subspace iteration at unit RMS, times ``SIZE``:
  what a fresh residual policy at skip gain ``SIZE`` takes).

So ``whole:svd:3`` is the greedy controller, ``0.25:iteration:0.5`` a fresh residual policy
over the controller observation, and ``1.0:svd:3`` one over the controller-step observation.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp

from maskshift._io import atomic_write_json
from maskshift.agents.common import rollout_edits
from maskshift.controls.gradient import low_rank_action, term_gradients
from maskshift.envs.observe import (
    controller_direction,
    controller_mix,
    gradient_rows,
    probes,
    term_factors,
)
from maskshift.metrics import meets_unlearning_target
from maskshift.run.build import build_env, resolve_task
from maskshift.run.config import make_run_config, select_tolerance
from maskshift.run.select import select_best_step

DEFAULT_RULES = ["whole:svd:3", "1.0:svd:3", "0.25:svd:3", "whole:iteration:0.5",
                 "1.0:iteration:0.5", "1.0:iteration:1.0", "0.25:iteration:0.5",
                 "0.25:iteration:1.0"]
FACTORS = ("svd", "iteration")


def parse_rule(rule: str) -> tuple[float | None, str, float]:
    """``SOURCE:FACTORS:SIZE`` as ``(share or None for the whole split, factors, size)``;
    ``ValueError`` naming the part that is wrong."""
    parts = rule.split(":")
    if len(parts) != 3:
        raise ValueError(f"rule {rule!r} is not SOURCE:FACTORS:SIZE (e.g. 1.0:svd:3)")
    source, factors, size = parts
    try:
        share = None if source == "whole" else float(source)
        size = float(size)
    except ValueError:
        raise ValueError(f"rule {rule!r}: SOURCE is 'whole' or a share in (0, 1], SIZE a "
                         "number") from None
    if share is not None and not 0 < share <= 1 or factors not in FACTORS or size <= 0:
        raise ValueError(f"rule {rule!r}: SOURCE is 'whole' or a share in (0, 1], FACTORS one "
                         f"of {', '.join(FACTORS)}, SIZE > 0")
    return share, factors, size


def rule_act(env, rule: str, key: jax.Array):
    """The action rule of ``rule`` for :func:`maskshift.agents.common.rollout_edits`; its
    minibatch at step ``t`` is drawn with ``fold_in(key, t)``."""
    share, factors, size = parse_rule(rule)
    weight = env.task.objective.control_utility_weight

    def grads(state, env_params, t):
        if share is None:
            return term_gradients(env, state.edit, env_params, target=state.target)
        params = env.at_target(env_params, state.target)
        batch = env.task.objective.sample(jax.random.fold_in(key, t), params.task.train,
                                          state.target)
        return env.metrics_and_gradients(state.edit, gradient_rows(batch, share), params,
                                         state.target)[1]

    def act(_, t, obs, state, env_params):
        g_u, g_e = grads(state, env_params, t)
        if factors == "svd":
            return low_rank_action(env, controller_direction(g_u, g_e, weight), size)
        mix = controller_mix(g_u, g_e, weight)
        parts = []
        for gu, ge in zip(g_u, g_e, strict=True):
            u, v = term_factors([gu, ge], probes(gu.shape[1], env.rank), mix)[-1]
            parts += [(size * u).ravel(), (size * v).ravel()]
        return jnp.concatenate(parts)

    return act


def rule_rows(env_name: str, args) -> list[dict]:
    cfg = make_run_config(env=env_name, dataset=args.dataset, data_dir=args.data_dir,
                          forget_classes=(args.forget_class,), edit=tuple(args.edit),
                          episode_length=args.episode_length)
    cfg, task = resolve_task(cfg, None)
    env, p = build_env(cfg, task)
    before = env.task.report(p.task.params, "test")
    rows = []
    for rule in args.rules:
        start = time.perf_counter()
        edits = rollout_edits(env, p, rule_act(env, rule, jax.random.key(args.seed)))
        best, edited, vals = select_best_step(env, p, edits, select_tolerance(cfg))
        after = env.task.report(edited, "test")
        row = {"env": env_name, "rule": rule, "best_step": best, "before": before,
               "after": after, "meets_target": meets_unlearning_target(before, after),
               "val_forget": [v["forget_acc"] for v in vals],
               "val_retain": [v["retain_acc"] for v in vals],
               "seconds": time.perf_counter() - start}
        rows.append(row)
        print(f"{env_name:5s} {rule:20s} step {best}  test forget {after['forget_acc']:.3f}  "
              f"retain {after['retain_acc']:.3f} (original {before['retain_acc']:.3f})  "
              f"meets {row['meets_target']}  {row['seconds']:.0f} s", flush=True)
    return rows


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="benchmarks/start_rules.py",
                                description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default=None, help="default: the embedded digits")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--edit", nargs="+", default=["Dense_0"], metavar="LAYER")
    p.add_argument("--envs", nargs="+", default=["shift", "mask"], choices=["mask", "shift"])
    p.add_argument("--forget-class", type=int, default=7)
    p.add_argument("--episode-length", type=int, default=None)
    p.add_argument("--rules", nargs="+", default=DEFAULT_RULES, metavar="SOURCE:FACTORS:SIZE")
    p.add_argument("--seed", type=int, default=0, help="the minibatch draws' key")
    p.add_argument("--json", default=None)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        for rule in args.rules:
            parse_rule(rule)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows = [r for env_name in args.envs for r in rule_rows(env_name, args)]
    if args.json:
        atomic_write_json(args.json, {"args": vars(args), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
