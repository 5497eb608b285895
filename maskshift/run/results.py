"""What every run writes, whichever editor made the edit: the best step on validation, the test
report, ``edited/``, ``results.json``, the plots (:mod:`maskshift.run.plots`) and the printed
summary; and how a finished run is recognised."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np

from maskshift._io import atomic_write_json
from maskshift.checkpoint import save_edited
from maskshift.envs import EnvParams
from maskshift.hosts import host_copy
from maskshift.run.chain import edited_meta
from maskshift.run.config import RunConfig, canonical_config, select_tolerance
from maskshift.run.plots import plots, target_label
from maskshift.run.select import select_and_report
from maskshift.tasks import SUMMARY_KEYS


def finished_run(run_dir, cfg: RunConfig, objective=None) -> dict | None:
    """The results of a finished run in ``run_dir`` made with exactly ``cfg`` (and, given
    ``objective``, under an objective of the same settings: a change to an objective's defaults
    is not in the config), else ``None``. A run made before results recorded the objective
    (``objective_repr``) is taken at its config."""
    path = Path(run_dir) / "results.json"
    if not path.exists():
        return None
    res = json.loads(path.read_text())
    saved = canonical_config({k: v for k, v in res["config"].items() if k != "env_params"})
    if objective is not None and res.get("objective_repr") not in (None, repr(objective)):
        return None
    return res if saved == cfg.to_json() else None


class EpisodeMismatch(RuntimeError):
    """A re-rolled episode is not the one a run recorded (checked before anything is written)."""


def _check_episode(val_per_step: list, expected: list | None) -> None:
    """``expected``: the validation figures a run recorded for this episode; raise
    :class:`EpisodeMismatch` unless ``val_per_step`` repeats them."""
    if expected is None:
        return
    got, want = (json.loads(json.dumps(v)) for v in (val_per_step, expected))
    same = (jax.tree.structure(got) == jax.tree.structure(want)
            and np.allclose(jax.tree.leaves(got), jax.tree.leaves(want), rtol=0, atol=1e-6))
    if not same:
        raise EpisodeMismatch("the re-rolled episode differs from the recorded one")


def write_run(out: Path, cfg: RunConfig, env, env_params: EnvParams, edits, history: dict,
              stats: dict, log=print, expected_val: list | None = None) -> dict:
    """Select the best step of ``edits`` on validation, report it on test and write the run
    (an amortized run: :func:`write_amortized_run`). ``expected_val``: the per-step validation
    figures (per target, for an amortized run) the episode must repeat, else
    :class:`EpisodeMismatch` and nothing is written."""
    if cfg.amortized:
        return write_amortized_run(out, cfg, env, env_params, edits, history, stats, log,
                                   expected_val)
    tolerance = select_tolerance(cfg)
    ep = select_and_report(env, env_params, edits, tolerance)
    _check_episode(ep["val_per_step"], expected_val)
    meta = edited_meta(env.task, task=cfg.task, env=env.name, seed=cfg.seed, algo=cfg.algo)
    save_edited(out, host_copy(ep["edited"]), meta)
    results = {
        "env": env.name, "task": cfg.task, "objective": env.task.objective.name,
        "objective_repr": repr(env.task.objective),
        "summary_keys": list(env.task.objective.summary_keys), "algo": cfg.algo,
        "dataset": env.task.dataset.name, "seed": cfg.seed,
        "config": {**cfg.to_json(), "env_params": _env_params_json(env_params)},
        "before": ep["before"], "after": ep["after"], "best_step": ep["best_step"],
        "select_tolerance": tolerance, "val_per_step": ep["val_per_step"], "train": stats,
        "history": history,
    }
    atomic_write_json(out / "results.json", results)
    plots(out, results, env)
    log(summary_table(results))
    return results


def write_amortized_run(out: Path, cfg: RunConfig, env, env_params: EnvParams, episodes: list,
                        history: dict, stats: dict, log=print,
                        expected_val: list | None = None) -> dict:
    """An amortized policy's run: each target's episode selected on validation and reported on
    test (``results.json`` holds ``targets``, one entry per forget set of the pool). No
    ``edited/``: :func:`maskshift.run.policy.edit_with_policy` with ``out`` writes any class's."""
    tolerance = select_tolerance(cfg)
    targets = []
    obj = env.task.objective
    for t, (rows, edits) in enumerate(zip(obj.targets, episodes, strict=True)):
        ep = select_and_report(env, env_params, edits, tolerance, t)
        _check_episode(ep["val_per_step"], None if expected_val is None else expected_val[t])
        # a pool of classes names each target's classes; a pool of example sets, its size
        which = ({"forget_set": t, "forget_size": len(rows)} if obj.forget_classes == () else
                 {"forget_classes": list(rows)})
        targets.append({**which, "label": obj.target_label(t), "best_step": ep["best_step"],
                        "before": ep["before"], "after": ep["after"],
                        "val_per_step": ep["val_per_step"]})
    results = {
        "env": env.name, "task": cfg.task, "algo": cfg.algo, "dataset": env.task.dataset.name,
        "seed": cfg.seed, "amortized": True,
        "config": {**cfg.to_json(), "env_params": _env_params_json(env_params)},
        "targets": targets, "select_tolerance": tolerance, "train": stats, "history": history,
    }
    atomic_write_json(out / "results.json", results)
    plots(out, results, env)
    log(summary_table(results))
    return results


def _env_params_json(p: EnvParams) -> dict:
    return {k: float(getattr(p, k)) for k in ("lambda_utility", "lambda_edit", "step_size",
                                              "mask_max", "shift_cap", "max_steps_in_episode")}


def summary_table(results: dict) -> str:
    if results.get("amortized"):
        return _amortized_table(results)
    keys = results.get("summary_keys") or SUMMARY_KEYS[results["task"]]
    b, a = results["before"], results["after"]
    lines = [f"\nmaskshift: {results['env']} on {results['dataset']} "
             f"({results.get('objective', results['task'])}), "
             f"{results.get('algo', 'ppo')}, seed {results['seed']}: held-out test split, "
             f"best step {results['best_step']} chosen on validation",
             f"  {'metric':<16}{'before':>10}{'after':>10}{'change':>10}"]
    for k in keys:
        lines.append(f"  {k:<16}{b[k]:>10.4f}{a[k]:>10.4f}{a[k] - b[k]:>+10.4f}")
    return "\n".join(lines + [_train_line(results["train"])])


def _amortized_table(results: dict) -> str:
    sets = "forget_classes" not in results["targets"][0]
    width = max(20 if sets else 8, *(len(target_label(r)) + 2 for r in results["targets"]))
    lines = [f"\nmaskshift: {results['env']} on {results['dataset']} (unlearn, amortized over "
             f"{len(results['targets'])} targets), seed {results['seed']}: held-out test split, "
             "each target's best step chosen on validation",
             f"  {'':<{width}}{'forget acc':>16}{'retain acc':>16}{'MIA':>14}",
             f"  {'set' if sets else 'class':<{width}}" + f"{'before':>8}{'after':>8}" * 2
             + f"{'before':>7}{'after':>7}{'step':>6}"]
    for r in results["targets"]:
        b, a = r["before"], r["after"]
        lines.append(f"  {target_label(r):<{width}}"
                     f"{b['forget_acc']:>8.3f}{a['forget_acc']:>8.3f}"
                     f"{b['retain_acc']:>8.3f}{a['retain_acc']:>8.3f}"
                     f"{b['mia']:>7.3f}{a['mia']:>7.3f}{r['best_step']:>6}")
    return "\n".join(lines + [_train_line(results["train"])])


def _train_line(t: dict) -> str:
    if t.get("compile_seconds") is None:  # a controller: one call, compilation included
        return (f"  edited with {t['env_steps']:,} env steps in {t['wall_seconds']:.1f} s "
                "(compilation included)")
    return (f"  trained {t['env_steps']:,} env steps in {t['wall_seconds']:.1f} s "
            f"({t['compile_seconds']:.1f} s compiling)")
