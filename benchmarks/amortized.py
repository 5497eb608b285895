"""One policy, new edits: an amortized unit-head PPO policy trained over a pool of forget classes
edits each held-out class in one rollout, beside the greedy gradient controller, retraining and
gradient ascent on the same classes.

    python benchmarks/amortized.py --out runs/amortized                  # digits, 2 envs, seed 0
    python benchmarks/amortized.py --seeds 0 1 2 --untrained --fresh-process --out runs/amortized

For each env, seed and pool (default ``0 1 2 3 4`` and ``5 6 7 8 9``): ``maskshift.train --amortized
--forget-class POOL`` (controller observation, unit heads; reused when finished), then one
:class:`maskshift.run.policy.PolicyEditor` over the held-out classes (one compilation; each edit's
seconds cover the rollout, the selection on val and the test reports), and on each held-out class
``--algo gradient`` (same env, episode length, rank and selection), a retrained model and
gradient ascent (their MIA is the reference: a model that never saw the class). The controller
and the baselines do not depend on the policy's seed: they run once per class and are listed
beside every seed. Targets (test split): forget <= 0.05 and retain >= the original's - 0.03 (the
zero-shot target), and forget <= 0.02 likewise (the single-task one). ``--untrained``: also the
same policy network before training (what its start on the controller's features gives with no
RL). Also timed: the controller as an in-process editor compiled once over the same classes, and
(``--fresh-process``) one edit as a fresh process (``python -m maskshift.edit``), start to exit.
Writes ``OUT/amortized.md`` and ``OUT/amortized.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from maskshift import RunConfig, make_run_config, train_and_evaluate
from maskshift._io import atomic_write_json, atomic_write_text
from maskshift.agents import ppo
from maskshift.agents.common import rollout_fn
from maskshift.baselines.unlearning import gradient_ascent, retrain
from maskshift.controls import gradient_act
from maskshift.metrics import meets_unlearning_target
from maskshift.run import reuse_or_run
from maskshift.run.build import build_env, resolve_task
from maskshift.run.config import select_tolerance
from maskshift.run.policy import PolicyEditor, load_policy
from maskshift.run.select import select_and_report


def _run(cfg: RunConfig, out: Path, env_chunk: int | None = None) -> dict:
    if cfg.algo == "ppo" and not (out / "policy.json").exists():  # made before policies were kept
        return train_and_evaluate(cfg, out, overwrite=True, log=lambda s: None,
                                  env_chunk=env_chunk)
    return reuse_or_run(cfg, out, log=lambda s: print(s, flush=True), env_chunk=env_chunk)


def _row(editor: str, cls: int, before: dict, after: dict, seconds: float, **extra) -> dict:
    return {"editor": editor, "class": cls, "forget": after["forget_acc"],
            "retain": after["retain_acc"], "retain_before": before["retain_acc"],
            "mia": after["mia"], "seconds": round(seconds, 3),
            "zero_shot_target": meets_unlearning_target(before, after, forget=0.05),
            "target": meets_unlearning_target(before, after),
            **extra}


def _baselines(env: str, cls: int, args, cache: dict) -> list[dict]:
    """The gradient controller, retraining and gradient ascent on ``cls`` (once per env/class)."""
    if (env, cls) in cache:
        return cache[(env, cls)]
    cfg = RunConfig(env=env, dataset=args.dataset, algo="gradient", forget_classes=(cls,))
    g = _run(cfg, Path(args.out) / f"{env}-gradient-c{cls}")
    rows = [_row("gradient", cls, g["before"], g["after"], g["train"]["wall_seconds"],
                 best_step=g["best_step"])]
    if ("baselines", cls) not in cache:
        _, task = resolve_task(cfg)
        for name, fn in (("retrain", retrain), ("gradient_ascent", gradient_ascent)):
            t0 = time.perf_counter()
            params = jax.block_until_ready(fn(task, jax.random.key(0)))
            seconds = time.perf_counter() - t0
            cache.setdefault(("baselines", cls), []).append(
                _row(name, cls, task.report(task.params), task.report(params), seconds))
    rows += cache[("baselines", cls)]
    cache[(env, cls)] = rows
    return rows


def _controller_seconds(editor: PolicyEditor, held_out: list[int]) -> list[float]:
    """The gradient controller as an in-process editor over the same targets, compiled once (the
    fair time beside a policy editor): seconds per edit (rollout, selection, test reports); the
    first includes compilation."""
    cfg = dataclasses.replace(editor.config, observation="summary")
    env, p = build_env(cfg, editor.task)
    run = rollout_fn(env, gradient_act(env), int(p.max_steps_in_episode))
    seconds = []
    for t in range(len(held_out)):
        t0 = time.perf_counter()
        edits = run(None, p, jax.random.key(0), jnp.int32(t))
        select_and_report(env, p, edits, select_tolerance(cfg), t)
        seconds.append(time.perf_counter() - t0)
    return seconds


def _untrained_editor(run_dir: Path, cfg: RunConfig, held_out: list[int]) -> PolicyEditor:
    """The same policy network before training (PPO's own initialisation for the run's seed):
    what the controller features alone give, with no RL."""
    editor = PolicyEditor(load_policy(run_dir), targets=[(c,) for c in held_out])
    editor.params = ppo.make_train(cfg.editor, editor.env).init(
        jax.random.key(cfg.seed), editor.env_params).params
    return editor


def _fresh_process_seconds(policy_dir: Path, cls: int) -> float:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "maskshift.edit", "--policy", str(policy_dir),
                           "--forget-class", str(cls), "--json"], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    json.loads(done.stdout)
    return time.perf_counter() - t0


def _pool_runs(args, env: str, seed: int, pool: list[int], cache: dict) -> list[dict]:
    cfg = make_run_config(env=env, seed=seed, amortized=True, forget_classes=tuple(pool),
                          dataset=args.dataset, total_steps=args.total_steps,
                          num_envs=args.num_envs, observation=args.observation)
    run_dir = Path(args.out) / f"{env}-pool{''.join(map(str, pool))}-s{seed}"
    trained = _run(cfg, run_dir, args.env_chunk)
    train_s = trained["train"]["wall_seconds"]
    held_out = [c for c in args.classes if c not in pool]
    t0 = time.perf_counter()
    editor = PolicyEditor(load_policy(run_dir), targets=[(c,) for c in held_out])
    setup_s = time.perf_counter() - t0
    print(f"{env} s{seed} pool {pool}: trained in {train_s:.0f} s; editor built in "
          f"{setup_s:.1f} s", flush=True)
    controller_s = _controller_seconds(editor, held_out)
    untrained = _untrained_editor(run_dir, cfg, held_out) if args.untrained else None
    rows = []
    for i, cls in enumerate(held_out):
        res = editor.edit((cls,), log=lambda s: None)
        new = [_row("policy", cls, res["before"], res["after"], res["seconds"],
                    best_step=res["best_step"], first_edit=i == 0, policy_train_seconds=train_s,
                    editor_setup_seconds=setup_s,
                    controller_editor_seconds=round(controller_s[i], 3))]
        if untrained is not None:
            u = untrained.edit((cls,), log=lambda s: None)
            new.append(_row("untrained", cls, u["before"], u["after"], u["seconds"],
                            best_step=u["best_step"]))
        new += _baselines(env, cls, args, cache)
        rows += [{"env": env, "seed": seed, "pool": pool, **r} for r in new]
        p, g = new[0], next(r for r in new if r["editor"] == "gradient")
        print(f"  class {cls}: policy forget {p['forget']:.3f} retain {p['retain']:.3f} MIA "
              f"{p['mia']:.3f} ({p['seconds']:.2f} s) | gradient forget {g['forget']:.3f} retain "
              f"{g['retain']:.3f} MIA {g['mia']:.3f}", flush=True)
    if args.fresh_process:
        rows[0]["fresh_process_seconds"] = round(_fresh_process_seconds(run_dir, held_out[0]), 2)
    return rows


def _markdown(rows: list[dict], args) -> str:
    data = args.dataset or "digits"
    lines = [f"Amortized unit-head PPO policies ({data}): trained over one pool of forget classes,"
             " each held-out class edited in one rollout with no training; "
             "beside them on the same classes the gradient controller (same env, 8 steps, rank "
             "4, selection on val), a retrained model and gradient ascent. Test split.", "",
             "| env | seed | pool | class | editor | forget | retain (orig) | MIA | step | s | "
             "zero-shot target |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        pool = "".join(map(str, r["pool"]))
        lines.append(f"| {r['env']} | {r['seed']} | {pool} | {r['class']} | {r['editor']} | "
                     f"{r['forget']:.3f} | {r['retain']:.3f} ({r['retain_before']:.3f}) | "
                     f"{r['mia']:.3f} | {r.get('best_step', '—')} | {r['seconds']:.2f} | "
                     f"{'yes' if r['zero_shot_target'] else 'no'} |")
    lines += ["", "| env | editor | zero-shot target | forget <= 0.02 | mean forget | mean retain "
              "drop | mean MIA | mean MIA gap to retrain | median s per edit |",
              "|---|---|---|---|---|---|---|---|---|"]
    # per (env, seed, class): |MIA - the retrained model's MIA| on the same class
    def key(r):
        return r["env"], r["seed"], r["class"]

    retrained = {key(r): r["mia"] for r in rows if r["editor"] == "retrain"}
    for env in args.envs:
        for kind in ("policy", "untrained", "gradient", "retrain", "gradient_ascent"):
            sel = [r for r in rows if r["env"] == env and r["editor"] == kind]
            if not sel:
                continue
            steady = [r["seconds"] for r in sel if not r.get("first_edit")] or \
                [r["seconds"] for r in sel]
            lines.append(
                f"| {env} | {kind} | {sum(r['zero_shot_target'] for r in sel)}/{len(sel)} | "
                f"{sum(r['target'] for r in sel)}/{len(sel)} | "
                f"{np.mean([r['forget'] for r in sel]):.3f} | "
                f"{np.mean([r['retain_before'] - r['retain'] for r in sel]):+.3f} | "
                f"{np.mean([r['mia'] for r in sel]):.3f} | "
                f"{np.mean([abs(r['mia'] - retrained[key(r)]) for r in sel]):.3f} | "
                f"{np.median(steady):.2f} |")
    policy = [r for r in rows if r["editor"] == "policy"]
    firsts = [r for r in policy if r.get("first_edit")]
    if firsts:
        def span(key, fmt):
            v = [r[key] for r in firsts]
            return f"{min(v):{fmt}}–{max(v):{fmt}} s"

        lines += ["", f"- Policy training (per pool): {span('policy_train_seconds', '.0f')}; "
                  f"editor setup (load, env over the held-out classes): "
                  f"{span('editor_setup_seconds', '.1f')}; first edit (compiles): "
                  f"{span('seconds', '.2f')}."]
        ctl = [r["controller_editor_seconds"] for r in policy if not r.get("first_edit")]
        if ctl:
            lines.append(f"- The gradient controller as an in-process editor over the same "
                         f"classes, compiled once: median {np.median(ctl):.2f} s per edit after "
                         f"the first (the table's controller *s* is a `train --algo gradient` "
                         f"run's, compilation included).")
        fresh = [r["fresh_process_seconds"] for r in firsts if "fresh_process_seconds" in r]
        if fresh:
            lines.append(f"- One edit as a fresh process (`python -m maskshift.edit`, start to "
                         f"exit): {min(fresh):.1f}–{max(fresh):.1f} s.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/amortized")
    p.add_argument("--dataset", default=None, help="default: the digits")
    p.add_argument("--envs", nargs="+", default=["mask", "shift"], choices=["mask", "shift"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--pools", nargs="+", default=["0 1 2 3 4", "5 6 7 8 9"],
                   help="pools of forget classes to train over, each a quoted list")
    p.add_argument("--classes", type=int, nargs="+", default=list(range(10)),
                   help="the classes: each pool's complement is edited")
    p.add_argument("--total-steps", type=int, default=None, help="default: PPO's")
    p.add_argument("--num-envs", type=int, default=None, help="default: PPO's")
    p.add_argument("--observation", default=None, choices=["gradient", "controller"],
                   help="the policy's observation (default: --amortized's)")
    p.add_argument("--env-chunk", type=int, default=None,
                   help="step the environments in groups of this many (faster on CPU)")
    p.add_argument("--untrained", action="store_true",
                   help="also edit with each policy's network before training (no RL)")
    p.add_argument("--fresh-process", action="store_true",
                   help="also time one edit as a fresh `python -m maskshift.edit` process")
    p.add_argument("--tabulate", action="store_true",
                   help="only rewrite OUT/amortized.md from OUT/amortized.json (no run)")
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.tabulate:
        saved = json.loads((out / "amortized.json").read_text())
        args = argparse.Namespace(**{**saved["args"], "tabulate": True})
        md = _markdown(saved["rows"], args)
        atomic_write_text(out / "amortized.md", md)
        print(md)
        return 0
    pools = [[int(c) for c in s.split()] for s in args.pools]
    rows, cache = [], {}
    for env in args.envs:
        for seed in args.seeds:
            for pool in pools:
                rows += _pool_runs(args, env, seed, pool, cache)
                atomic_write_json(out / "amortized.json", {"args": vars(args), "rows": rows})
    md = _markdown(rows, args)
    atomic_write_text(out / "amortized.md", md)
    print("\n" + md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
