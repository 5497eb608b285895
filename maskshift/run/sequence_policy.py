"""A policy trained for sequences of requests: amortized episodes that start from a model the
policy itself already edited for 0 to K earlier requests.

An amortized policy (``amortized``) learns to forget any class of its pool, always from the
pretrained model. In a sequence, each request starts from the model the earlier ones left, whose
edited matrices the policy has never seen, and a step that forgets the new class may undo an
earlier edit. :func:`train_sequence_policy` (``RunConfig.sequence_depth = K``) trains for that in
two stages, both in ``out``:

1. ``out/stage-1/``: the ordinary amortized run on the pool (``sequence_depth = 0``), with the
   config's budget.
2. Start models: ``len(pool)`` random orders of ``K + 1`` pool classes (drawn with the run's
   seed); the stage-1 policy edits each order's first ``K`` requests one after another (one
   rollout per request, the best step on val, as :func:`~maskshift.run.policy.edit_with_policy`
   does), each from the model the last one left. Then ``out/``: the stage-1 policy trained
   further, with the config's budget again, on a pool of targets (:func:`maskshift.tasks.
   sequence_pool_task`): every pool class from the pretrained model, and every order's request
   ``k + 1`` from the model its first ``k`` requests left (``k = 1..K``), each target's retain
   set without its earlier classes. One compiled step serves every target (each one's starting
   matrices are gathered per environment: :meth:`~maskshift.envs.EditWorld.at_target`).

``out`` then holds a policy like any PPO run's (``policy/``, ``policy.json``), which
``maskshift.sequence --policy`` and ``maskshift.edit --policy --from`` apply request by request,
and ``results.json`` with each target's test report (``label``: the class, then the earlier
requests it starts after). A killed run resumes where it stopped: stage 1 from its checkpoint
or its results, the start models made again (deterministic), stage 2 from its checkpoint.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from maskshift.agents.ppo import policy_network
from maskshift.run.build import build_env, resolve_task
from maskshift.run.config import OutputDirError, RunConfig, select_tolerance
from maskshift.run.pipeline import check_out_dir, prepare_out, run_editor, train_and_evaluate
from maskshift.run.policy import bind_policy, load_policy, restore_policy_params
from maskshift.run.results import finished_run
from maskshift.run.select import select_best_step
from maskshift.tasks import Task, get_leaf, sequence_pool_task

STAGE_ONE = "stage-1"


def check_sequence_depth(cfg: RunConfig) -> None:
    """Refuse a ``sequence_depth`` that means nothing (``ValueError``, naming the fix)."""
    depth = cfg.sequence_depth
    if depth == 0:
        return
    if not isinstance(depth, int) or depth < 0:
        raise ValueError(f"`sequence_depth` is how many earlier requests an episode may start "
                         f"after: a whole number >= 0, got {depth!r}.")
    if not cfg.amortized or cfg.forgets_examples:
        raise ValueError("`sequence_depth` trains an amortized policy over a pool of classes for "
                         "sequences: it needs `amortized=True` with a class pool "
                         "(`forget_classes=(0, 1, 2, 3, 4, 5)`), not a forget set of examples.")
    if cfg.task_factory is not None or cfg.from_run is not None:
        raise ValueError("`sequence_depth` edits the built-in model from its pretrained weights; "
                         "drop `task_factory`/`from_run`.")
    if depth >= len(cfg.forget_classes):
        raise ValueError(f"`sequence_depth` {depth} needs a pool of at least {depth + 1} classes "
                         f"(each order holds {depth + 1} requests); the pool has "
                         f"{len(cfg.forget_classes)}: lower it or add classes.")


def sequence_orders(pool, depth: int, seed: int) -> list[tuple[int, ...]]:
    """``len(pool)`` random orders of ``depth + 1`` distinct pool classes, drawn with ``seed``:
    the sequences whose first ``depth`` requests make the start models."""
    rng = np.random.default_rng(seed)
    pool = np.asarray(pool)
    return [tuple(int(c) for c in rng.permutation(pool)[: depth + 1]) for _ in range(len(pool))]


def _edited_leaves(task: Task, params) -> tuple:
    return tuple(np.asarray(get_leaf(params, p)) for p in task.edit_paths)


def policy_starts(policy, base: Task, pool, orders, depth: int,
                  log=print) -> tuple[list, list]:
    """The stage-2 pool: ``(requests, starts)`` for :func:`~maskshift.tasks.sequence_pool_task`,
    every class of ``pool`` from the pretrained model, then each order's request ``k + 1`` from the
    model ``policy`` left after its first ``k`` (``k = 1..depth``), each request edited by one
    rollout and its best step on val. One compiled rollout per depth serves every order."""
    pool = tuple(int(c) for c in pool)
    pretrained = _edited_leaves(base, base.params)
    requests = [((), c) for c in pool]
    starts = [pretrained] * len(pool)
    current = [pretrained] * len(orders)
    cfg = dataclasses.replace(policy.config, amortized=False, sequence_depth=0)
    tolerance = select_tolerance(cfg)
    for k in range(depth):
        task = sequence_pool_task(base, [(o[:k], o[k]) for o in orders], current)
        env, env_params, params, run = bind_policy(policy, cfg, task)
        for i in range(len(orders)):
            edits = run(params, env_params, jax.random.key(0), jnp.int32(i))
            best, edited, _ = select_best_step(env, env_params, edits, tolerance, i)
            current[i] = _edited_leaves(base, edited)
        log(f"start models after {k + 1} request(s): {len(orders)} orders edited by the "
            "stage-1 policy")
        requests += [(o[: k + 1], o[k + 1]) for o in orders]
        starts += list(current)
    return requests, starts


def _check_out(out: Path, overwrite: bool) -> None:
    if overwrite or not (out / STAGE_ONE).is_dir():
        check_out_dir(out, overwrite)
    elif (out / "results.json").exists():
        raise OutputDirError(f"{out} already holds a finished run (results.json). Choose another "
                             "`out`, or pass `overwrite=True` to replace it.")


def train_sequence_policy(cfg: RunConfig, out, *, overwrite: bool = False, log=print,
                          stop_after_chunks: int | None = None, **kwargs) -> dict:
    """Train a policy for sequences (module docstring) into ``out``; returns the stage-2 run's
    results, or ``{"stopped_at_update": u, "stage": 1 or 2}`` when ``stop_after_chunks`` ended a
    stage early (as a kill would). ``kwargs``: passed to both stages' runs (``devices``,
    ``env_chunk``)."""
    out = Path(out)
    check_sequence_depth(cfg)
    _check_out(out, overwrite)
    prepare_out(out, overwrite)
    first = dataclasses.replace(cfg, sequence_depth=0)
    stage_one = out / STAGE_ONE
    if finished_run(stage_one, first) is None:
        log(f"stage 1: the amortized policy on the pool {list(cfg.forget_classes)}")
        res = train_and_evaluate(first, stage_one, overwrite=not (stage_one / "ckpt").is_dir(),
                                 log=log, stop_after_chunks=stop_after_chunks, **kwargs)
        if "stopped_at_update" in res:
            return {**res, "stage": 1}
    policy = load_policy(stage_one)
    base = resolve_task(dataclasses.replace(cfg, amortized=False, sequence_depth=0,
                                            forget_classes=cfg.forget_classes[:1]))[1]
    orders = sequence_orders(cfg.forget_classes, cfg.sequence_depth, cfg.seed)
    requests, starts = policy_starts(policy, base, cfg.forget_classes, orders,
                                     cfg.sequence_depth, log)
    task = sequence_pool_task(base, requests, starts)
    env, env_params = build_env(cfg, task)
    init = restore_policy_params(policy, policy_network(cfg.editor, env), env)
    log(f"stage 2: the stage-1 policy trained further on {len(requests)} requests, "
        f"{len(requests) - len(set(cfg.forget_classes))} of them after earlier ones")
    res = run_editor(cfg, env, env_params, out, log=log, stop_after_chunks=stop_after_chunks,
                     init_params=init, **kwargs)
    return {**res, "stage": 2} if "stopped_at_update" in res else res
