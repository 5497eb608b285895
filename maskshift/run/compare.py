"""The baselines and every editor of the action space on the same task and seeds, evaluated by
the same code, side by side (what ``python -m maskshift.compare`` runs).

Writes ``DIR/comparison.md`` (method, the task's test metrics as mean ± std over seeds, wall
time, environment steps), ``DIR/comparison.json`` and ``DIR/comparison.png``.

Beside the baselines (which act on all weights or on representations) it runs every editor of
``maskshift.train`` in the *same* action space: PPO (``MaskWorld``, ``ShiftWorld``), APG
(``MaskWorld-apg``...), Quark (``MaskWorld-quark``...), the greedy gradient controller
(``MaskWorld-gradient``...) and the open-loop gradient oracle (``MaskWorld-oracle``...), each at
its documented defaults. Those runs
live in ``DIR/rl/<env>[-<algo>]-s<seed>`` as ordinary ``maskshift.train`` runs; a finished one is
reused, so an interrupted comparison restarted with the same command picks up where it was.
Each baseline's report is kept likewise in ``DIR/baselines/<method>-s<seed>.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jax
import numpy as np

from maskshift._io import atomic_write_json, atomic_write_text
from maskshift.agents.common import check_budget
from maskshift.baselines import BASELINES, GRIDS, retrained, tuned
from maskshift.data import resolve_dataset
from maskshift.metrics import FIELD_KEYS, avg_gap
from maskshift.run.build import builtin_task, task_fingerprint
from maskshift.run.config import (
    ALGOS,
    DEFAULT_TOLERANCE,
    TRAINED_ALGOS,
    RunConfig,
    TrainingError,
    make_run_config,
)
from maskshift.run.pipeline import refuse_file_in_the_way, reuse_or_run
from maskshift.tasks import SUMMARY_KEYS, Task

# method name -> (env, algo, policy): every maskshift.train editor in the environments' action
# space; a policy is the PPO network's (heads, observation): "units" reads the gradient
# observation, "residual" the controller observation (unit heads that start on the gradient
# controller's direction), "residual-step" the controller-step one (unit heads that start as the
# controller's own step on each minibatch)
POLICIES = {"flat": ("flat", "summary"), "units": ("units", "gradient"),
            "residual": ("units", "controller"), "residual-step": ("units", "controller-step")}
RL_METHODS = {f"{world}{'' if algo == 'ppo' else '-' + algo}": (env, algo, "flat")
              for algo in ALGOS for world, env in (("MaskWorld", "mask"), ("ShiftWorld", "shift"))}
RL_METHODS.update({f"{world}-{policy}": (env, "ppo", policy)
                   for policy in ("units", "residual", "residual-step")
                   for world, env in (("MaskWorld", "mask"), ("ShiftWorld", "shift"))})

# Editors whose run never reads the seed (the greedy controller: one deterministic episode from
# the original weights): the first seed's run serves every seed, each scored against its own
# seed's retrained model.
SEEDLESS = frozenset({"gradient"})


def rl_config(task: str, method: str, seed: int, forget, dataset, total_steps,
              data_dir=None, **task_options) -> RunConfig:
    """The config a train run with ``method``'s env and algo uses
    (:func:`~maskshift.run.config.make_run_config`); ``total_steps`` overrides a trained editor's
    budget."""
    env, algo, policy = RL_METHODS[method]
    heads, observation = POLICIES[policy]
    return make_run_config(env=env, task=task, dataset=dataset, data_dir=data_dir, seed=seed,
                           forget_classes=tuple(forget), algo=algo, observation=observation,
                           heads=heads if algo == "ppo" else None, total_steps=total_steps,
                           **task_options)


def check_rl_budget(task: str, methods, forget, dataset, total_steps, data_dir=None,
                    task_options=None) -> None:
    """``ValueError`` before anything runs where ``total_steps`` is less than one update (its
    environments x episode length) of a trained method among ``methods``."""
    if total_steps is None:
        return
    for m in (m for m in methods if m in RL_METHODS and RL_METHODS[m][1] in TRAINED_ALGOS):
        editor = rl_config(task, m, 0, forget, dataset, None, data_dir,
                           **(task_options or {})).editor
        check_budget(total_steps, editor.num_envs, editor.num_steps, field="rl_total_steps",
                     of=f" of {m}")


def _run_dir(out: Path, method: str, seed: int) -> Path:
    env, algo, policy = RL_METHODS[method]
    suffix = f"-{policy}" if policy != "flat" else ("" if algo == "ppo" else "-" + algo)
    return out / "rl" / f"{env}{suffix}-s{seed}"


def compare(task_name: str, seeds=(0, 1, 2), *, out="runs/compare", dataset: str | None = None,
            forget_classes=(7,), methods=None, rl_total_steps: int | None = None,
            overwrite: bool = False, data_dir=None, tune: bool = True,
            task: Task | None = None, task_options: dict | None = None, log=print) -> dict:
    """Run every method for every seed; write and return the comparison.

    ``task``: your own :class:`~maskshift.tasks.Task` (``task_name`` must be its objective's
    name; ``dataset`` and ``forget_classes`` come from it). Without its Flax module
    (``Task.model``) no model can be retrained from scratch: the comparison says so in one line
    and reports every figure but the Avg. Gap.

    ``tune``: every unlearning baseline runs its small grid (:data:`maskshift.baselines.GRIDS`)
    and keeps the setting the val rule prefers (the RL editors' step-selection rule); ``False``
    runs each at its default setting. The retrained reference is the cached
    :func:`maskshift.baselines.retrained` model of each seed; every unlearning report carries its
    Avg. Gap to it. ``task_options``: the built-in task's other RunConfig fields (the backdoor
    task's ``target_class``, ``trigger_size``, ``poison_rate``, ``backdoor_reward``)."""
    out = Path(out)
    refuse_file_in_the_way(out)
    if (out / "comparison.json").exists() and not overwrite:
        raise TrainingError(f"{out} already holds a comparison; choose another `out` or pass "
                            "`overwrite=True`.")
    own = task is not None
    task_options = dict(task_options or {})
    if own:
        if task.objective.name != task_name:
            raise ValueError(f"Your task's objective is {task.objective.name!r}, not "
                             f"{task_name!r}; pass `task_name={task.objective.name!r}`.")
        name = task.dataset.name
        if task_name == "unlearn":
            forget_classes = tuple(task.objective.forget_classes)
    else:
        name = resolve_dataset(task_name, dataset)
        task = builtin_task(RunConfig(task=task_name, dataset=name, data_dir=data_dir,
                                      forget_classes=tuple(forget_classes), **task_options))
    all_methods = ["original", *BASELINES.get(task_name, {}), *RL_METHODS]  # yours: no baselines
    methods = list(methods or all_methods)
    unknown = [m for m in methods if m not in all_methods]
    if unknown:
        raise ValueError(f"Unknown method {unknown[0]!r}; choose from {', '.join(all_methods)}.")
    check_rl_budget(task_name, methods, forget_classes, dataset, rl_total_steps, data_dir,
                    task_options)
    if task_name == "unlearn" and "retrain" not in methods:
        methods.insert(1, "retrain")  # the gold reference every MIA is compared with
    if task_name == "unlearn" and task.model is None:  # nothing to retrain from scratch
        methods = [m for m in methods if m != "retrain"]
        log("no retrained reference: your task has no Flax module (Task.model) to train from "
            "scratch, so the Avg. Gap is left out (pass model=... to the Task to get it)")
    out.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[dict]] = {m: [] for m in methods}
    # what a cached baseline report must have been made for to be reused
    made_for = {"task": task_name, "dataset": name, "data_dir": data_dir and str(data_dir),
                "forget_classes": list(forget_classes) if task_name == "unlearn" else None,
                "own_task": task_fingerprint(task) if own else None,
                **({"task_options": task_options} if task_options else {})}
    for seed in seeds:
        for m in methods:
            t0 = time.perf_counter()
            if m == "original":
                rep = task.report(task.params)
            elif m in RL_METHODS and RL_METHODS[m][1] in SEEDLESS and runs[m]:
                rep = {**runs[m][0], "_train_wall": runs[m][0]["wall_seconds"],
                       "same_as_seed": seeds[0]}
                log(f"  {m} uses no seed: seed {seeds[0]}'s run serves seed {seed}")
            elif m in RL_METHODS:
                run_dir = _run_dir(out, m, seed)
                cfg = rl_config(task_name, m, seed, forget_classes, dataset, rl_total_steps,
                                 data_dir, **task_options)
                res = reuse_or_run(cfg, run_dir, task=task if own else None,
                                   log=lambda s: log("  " + s))
                rep = {**res["after"], "_train_wall": res["train"]["wall_seconds"],
                       "env_steps": res["train"]["env_steps"]}
            else:
                rep = _baseline_report(task, task_name, m, seed, out / "baselines", made_for,
                                       tune, log)
            wall = rep.pop("_train_wall", None) or time.perf_counter() - t0
            rep["wall_seconds"] = wall
            runs[m].append(rep)
            keys = task.objective.summary_keys
            log(f"seed {seed}  {m:<24} " + "  ".join(f"{k} {rep[k]:.3f}" for k in keys)
                + f"  {wall:6.1f} s")
    summary = _summarise(runs, task_name, task.objective)
    result = {"task": task_name, "dataset": name, "seeds": list(seeds), "methods": methods,
              "summary_keys": list(task.objective.summary_keys),
              "table_keys": list(TABLE_KEYS.get(task_name, task.objective.summary_keys)),
              "summary": summary, "runs": runs, "task_options": task_options,
              "rl_total_steps": rl_total_steps}
    if task_name == "unlearn":
        examples = getattr(task.objective, "forget_indices", None)
        result["forget_classes"] = None if examples else list(forget_classes)
        if examples:
            result["forget_examples"] = len(examples)
    md = _markdown(result)
    _plot(out / "comparison.png", result)
    atomic_write_json(out / "comparison.json", result)
    atomic_write_text(out / "comparison.md", md)
    log("\n" + md)
    return result


def _baseline_report(task, task_name: str, method: str, seed: int, cache: Path, ident: dict,
                     tune: bool, log) -> dict:
    """``method``'s test report for ``seed``, kept in ``cache/<method>-s<seed>.json`` (with the
    task it was made for) so a restarted comparison reuses it instead of training it again."""
    path = cache / f"{method}-s{seed}.json"
    tune = tune and method in GRIDS
    ident = {**ident, "method": method, "seed": seed, "grid": GRIDS.get(method) if tune else None,
             "format": 2}
    ident = json.loads(json.dumps(ident))  # as saved (a grid's tuples read back as lists)
    if path.exists():
        saved = json.loads(path.read_text())
        if saved.get("identity") == ident:
            log(f"  reusing {path}")
            return {**saved["report"], "_train_wall": saved["wall_seconds"]}
    t0 = time.perf_counter()
    key = jax.random.key(seed)
    if method == "retrain" and task_name == "unlearn":  # the cached reference of every gap
        params = retrained(task, seed)
    elif tune:
        params, setting, tried = tuned(task, method, BASELINES[task_name][method], key,
                                       DEFAULT_TOLERANCE[task_name], log)
    else:
        params = BASELINES[task_name][method](task, key)
    wall = time.perf_counter() - t0
    rep = task.report(params)
    if tune:  # the chosen setting's own time; the whole grid's beside it
        rep.update(setting=setting, grid=tried, grid_seconds=wall)
        wall = next(t["seconds"] for t in tried if t["setting"] == setting)
    atomic_write_json(path, {"identity": ident, "report": rep, "wall_seconds": wall})
    return {**rep, "_train_wall": wall}


TABLE_KEYS = {"unlearn": (*FIELD_KEYS, "mia", "avg_gap"), "bias": SUMMARY_KEYS["bias"],
              "backdoor": SUMMARY_KEYS["backdoor"]}


def _summarise(runs: dict, task_name: str, objective) -> dict:
    """Mean and std over seeds of each method's headline figures (``objective.summary_keys``),
    and how many runs meet the objective's target (``objective.meets_target(original,
    edited)``; ``None`` where it states none); for unlearning also the Avg. Gap of every run to
    the retrained model of its seed."""
    if task_name == "unlearn" and "retrain" in runs:
        ref = runs["retrain"]
        for reps in runs.values():
            for r, r0 in zip(reps, ref, strict=True):
                r["avg_gap"] = avg_gap(r, r0)
    keys = [k for k in dict.fromkeys((*objective.summary_keys, *TABLE_KEYS.get(task_name, ()),
                                      "wall_seconds")) if k in next(iter(runs.values()))[0]]
    summary = {}
    for m, reps in runs.items():
        summary[m] = {k: {"mean": float(np.mean([r[k] for r in reps])),
                          "std": float(np.std([r[k] for r in reps]))} for k in keys}
        if "env_steps" in reps[0]:
            summary[m]["env_steps"] = int(np.mean([r["env_steps"] for r in reps]))
        hits = [objective.meets_target(o, r) for r, o in zip(reps, runs["original"],
                                                              strict=True)] \
            if "original" in runs else []
        if hits and None not in hits:  # the objective states a target
            summary[m]["meets_target"] = sum(hits)
        settings = [r["setting"] for r in reps if "setting" in r]
        if settings:
            summary[m]["settings"] = settings
    return summary


def _markdown(result: dict) -> str:
    task = result["task"]
    keys = [k for k in result.get("table_keys") or TABLE_KEYS[task]
            if k in result["summary"][result["methods"][0]]]
    hit_column = any("meets_target" in s for s in result["summary"].values())
    lines = [f"Task `{task}` on `{result['dataset']}`"
             + (f", forget {result['forget_classes']}" if result.get("forget_classes") else "")
             + (f", forget {result['forget_examples']} train examples"
                if result.get("forget_examples") else "")
             + f"; mean ± std over seeds {result['seeds']}.", ""]
    methods = list(result["methods"])
    if "avg_gap" in keys:
        methods.sort(key=lambda m: result["summary"][m]["avg_gap"]["mean"])
        lines += ["In points, the unlearning literature's definitions (docs/comparison.md, \"The "
                  "field's yardstick\"): UA = 100 − accuracy on the forget set and RA accuracy on "
                  "the retain set (train split), TA test accuracy (less any forget class), "
                  "MIA-Efficacy (SVC on true-class confidence), the entropy MIA (0–1), Avg. Gap = "
                  "mean |method − retrain| over UA, RA, TA, MIA-Efficacy against the retrained "
                  "model of the same seed; sorted "
                  "by Avg. Gap. Baselines: the setting their val grid chose (`settings`).", ""]
    lines.append("| method | " + " | ".join(keys) + " | wall s | env steps |"
                 + (" meets target |" if hit_column else ""))
    lines.append("|---|" + "---|" * (len(keys) + 2 + hit_column))
    for m in methods:
        s = result["summary"][m]
        digits = {k: (2 if k in (*FIELD_KEYS, "avg_gap") else 3) for k in keys}
        cells = [f"{s[k]['mean']:.{digits[k]}f} ± {s[k]['std']:.{digits[k]}f}" for k in keys]
        steps = f"{s['env_steps']:,}" if "env_steps" in s else "—"
        hits = (f" {s['meets_target']}/{len(result['seeds'])} |" if "meets_target" in s else
                (" — |" if hit_column else ""))
        lines.append(f"| {m} | " + " | ".join(cells)
                     + f" | {s['wall_seconds']['mean']:.1f} | {steps} |" + hits)
    return "\n".join(lines) + "\n"


def _plot(path: Path, result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from maskshift._io import save_figure

    task = result["task"]
    xk, yk, title = {
        "unlearn": ("forget_acc", "retain_acc",
                    "Unlearning: forget vs retain accuracy (retrained model: star)"),
        "bias": ("worst_group_acc", "accuracy", "Bias: worst-group accuracy vs accuracy"),
        "backdoor": ("asr", "clean_acc", "Backdoor: attack success vs clean accuracy"),
    }.get(task) or (*result["summary_keys"][:2], f"{task}: its first two headline figures")
    fig, ax = plt.subplots(figsize=(7, 5))
    for m in result["methods"]:
        pts = np.array([[r[xk], r[yk]] for r in result["runs"][m]])
        marker = "*" if m == "retrain" else ("s" if m in RL_METHODS else "o")
        ax.scatter(pts[:, 0], pts[:, 1], s=160 if m == "retrain" else 50, marker=marker, label=m,
                   alpha=0.8)
    ax.set(xlabel=f"{xk} (test)", ylabel=f"{yk} (test)", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


