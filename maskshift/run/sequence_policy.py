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

A pool of random example sets (``forget_fraction``) trains the same way: stage 1 is the
amortized run over ``forget_sets`` random sets; the start models come from ``forget_sets``
orders of ``K + 1`` disjoint random sets each (:func:`example_orders`), and stage 2's pool
(:func:`maskshift.tasks.sequence_examples_pool_task`) holds every stage-1 set from the pretrained
model and every order's set ``k + 1`` from the model its first ``k`` sets left, each target's
retain set without its earlier rows.

With ``sequence_rounds = R`` above 1 the second stage runs ``R`` times: round ``r`` trains the
last round's policy further on start models that policy made (the orders stay the same), so the
start models are those of a policy that has already learned to edit after earlier requests. Each
round but the last is kept in ``out/stage-{r + 1}/``, exactly the run ``sequence_rounds = r``
would leave in ``out`` (a finished one, copied there, is taken as it is); the last is ``out``.

``out`` then holds a policy like any PPO run's (``policy/``, ``policy.json``), which
``maskshift.sequence --policy`` and ``maskshift.edit --policy --from`` apply request by request,
and ``results.json`` with each target's test report (``label``: the class, then the earlier
requests it starts after). A killed run resumes where it stopped: stage 1 from its checkpoint
or its results, the start models made again (deterministic), stage 2 from its checkpoint.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from maskshift.agents.ppo import policy_network
from maskshift.data.forget_sets import disjoint_forget_sets, random_forget_sets
from maskshift.run.build import build_env, resolve_task
from maskshift.run.config import (
    OutputDirError,
    RunConfig,
    check_sequence_rounds,
    select_tolerance,
)
from maskshift.run.pipeline import check_out_dir, prepare_out, run_editor, train_and_evaluate
from maskshift.run.policy import bind_policy, load_policy, restore_policy_params
from maskshift.run.results import finished_run
from maskshift.run.select import select_best_step
from maskshift.tasks import Task, get_leaf, sequence_examples_pool_task, sequence_pool_task

STAGE_ONE = "stage-1"
# the seed word that keeps the start models' example sets apart from the stage-1 pool's sets
# (seed (forget_seed, i)) and from a sequence's requests (seed (forget_seed, k))
ORDER_STREAM = 7919


def check_sequence_depth(cfg: RunConfig) -> None:
    """Refuse a ``sequence_depth`` that means nothing (``ValueError``, naming the fix)."""
    check_sequence_rounds(cfg)
    depth = cfg.sequence_depth
    if depth == 0:
        return
    if not isinstance(depth, int) or depth < 0:
        raise ValueError(f"`sequence_depth` is how many earlier requests an episode may start "
                         f"after: a whole number >= 0, got {depth!r}.")
    if not cfg.amortized:
        raise ValueError("`sequence_depth` trains an amortized policy for sequences: it needs "
                         "`amortized=True` with a pool of classes (`forget_classes=(0, 1, 2, 3, "
                         "4, 5)`) or of random example sets (`forget_fraction=0.05`).")
    if cfg.task_factory is not None or cfg.from_run is not None:
        raise ValueError("`sequence_depth` edits the built-in model from its pretrained weights; "
                         "drop `task_factory`/`from_run`.")
    if cfg.forgets_examples:
        _check_example_depth(cfg, depth)
        return
    if depth >= len(cfg.forget_classes):
        raise ValueError(f"`sequence_depth` {depth}: orders of {depth + 1} requests need a pool "
                         f"of at least {depth + 1} classes, the pool has "
                         f"{len(cfg.forget_classes)}; lower it or add classes to "
                         "`forget_classes`.")


def _check_example_depth(cfg: RunConfig, depth: int) -> None:
    if cfg.forget_fraction is None:
        raise ValueError("`sequence_depth` over example sets draws random sets: give "
                         "`forget_fraction` (e.g. 0.05), not `forget_indices`.")
    if (depth + 1) * cfg.forget_fraction >= 1.0:
        raise ValueError(f"`sequence_depth` {depth}: orders of {depth + 1} disjoint sets of "
                         f"{cfg.forget_fraction:g} of the train split leave nothing to retain; "
                         "lower it or `forget_fraction`.")


def example_orders(num_train: int, fraction: float, depth: int, count: int,
                   seed: int) -> list[tuple[tuple[int, ...], ...]]:
    """``count`` orders of ``depth + 1`` disjoint random sets of ``fraction`` of the train split,
    order ``i`` drawn with the seed ``(seed, ORDER_STREAM, i)``: the sequences whose first
    ``depth`` requests make the start models of a pool of example sets."""
    return [tuple(tuple(int(r) for r in rows) for rows in disjoint_forget_sets(
        num_train, fraction, depth + 1, (seed, ORDER_STREAM, i))) for i in range(count)]


def sequence_orders(pool, depth: int, seed: int) -> list[tuple[int, ...]]:
    """``len(pool)`` random orders of ``depth + 1`` distinct pool classes, drawn with ``seed``:
    the sequences whose first ``depth`` requests make the start models."""
    rng = np.random.default_rng(seed)
    pool = np.asarray(pool)
    return [tuple(int(c) for c in rng.permutation(pool)[: depth + 1]) for _ in range(len(pool))]


def _edited_leaves(task: Task, params) -> tuple:
    return tuple(np.asarray(get_leaf(params, p)) for p in task.edit_paths)


def policy_starts(policy, base: Task, pool, orders, depth: int, log=print,
                  pool_task=sequence_pool_task, made_by: str = "stage-1") -> tuple[list, list]:
    """The stage-2 pool: ``(requests, starts)`` for ``pool_task``
    (:func:`~maskshift.tasks.sequence_pool_task`, or
    :func:`~maskshift.tasks.sequence_examples_pool_task` for ``orders`` of example sets), every
    request of ``pool`` from the pretrained model, then each order's request ``k + 1`` from the
    model ``policy`` left after its first ``k`` (``k = 1..depth``), each request edited by one
    rollout and its best step on val. One compiled rollout per depth serves every order.
    ``made_by``: how the progress lines name ``policy``."""
    pretrained = _edited_leaves(base, base.params)
    requests = [((), c) for c in pool]
    starts = [pretrained] * len(pool)
    current = [pretrained] * len(orders)
    cfg = dataclasses.replace(policy.config, amortized=False, sequence_depth=0, sequence_rounds=1)
    tolerance = select_tolerance(cfg)
    for k in range(depth):
        task = pool_task(base, [(o[:k], o[k]) for o in orders], current)
        env, env_params, params, run = bind_policy(policy, cfg, task)
        for i in range(len(orders)):
            edits = run(params, env_params, jax.random.key(0), jnp.int32(i))
            best, edited, _ = select_best_step(env, env_params, edits, tolerance, i)
            current[i] = _edited_leaves(base, edited)
        log(f"start models after {k + 1} request(s): {len(orders)} orders edited by the "
            f"{made_by} policy")
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
    """Train a policy for sequences (module docstring) into ``out``; returns the last stage's
    results, or ``{"stopped_at_update": u, "stage": s}`` when ``stop_after_chunks`` ended stage
    ``s`` early (as a kill would). ``kwargs``: passed to every stage's run (``devices``,
    ``env_chunk``)."""
    out = Path(out)
    check_sequence_depth(cfg)
    _check_out(out, overwrite)
    prepare_out(out, overwrite)
    first = dataclasses.replace(cfg, sequence_depth=0, sequence_rounds=1)
    stage_one = out / STAGE_ONE
    if finished_run(stage_one, first) is None:
        pool = (f"{cfg.forget_sets} random sets of {cfg.forget_fraction:g} of the train split"
                if cfg.forgets_examples else f"the pool {list(cfg.forget_classes)}")
        log(f"stage 1: the amortized policy on {pool}")
        res = train_and_evaluate(first, stage_one, overwrite=not (stage_one / "ckpt").is_dir(),
                                 log=log, stop_after_chunks=stop_after_chunks, **kwargs)
        if "stopped_at_update" in res:
            return {**res, "stage": 1}
    policy = load_policy(stage_one)
    base = resolve_task(dataclasses.replace(cfg, amortized=False, sequence_depth=0,
                                            sequence_rounds=1, forget_fraction=None,
                                            forget_classes=cfg.forget_classes[:1]))[1]
    stage_two = _stage_two_requests(cfg, base)
    for r in range(1, cfg.sequence_rounds + 1):
        last = r == cfg.sequence_rounds
        run_cfg = cfg if last else dataclasses.replace(cfg, sequence_rounds=r)
        run_dir = out if last else out / f"stage-{r + 1}"
        if last or finished_run(run_dir, run_cfg) is None:
            if not last:  # a round kept beside the last one: resumed from its checkpoint
                prepare_out(run_dir, overwrite=not (run_dir / "ckpt").is_dir())
            res = _train_round(policy, run_cfg, base, stage_two, run_dir, r + 1, log=log,
                               stop_after_chunks=stop_after_chunks, **kwargs)
            if last or "stopped_at_update" in res:
                return res
        policy = load_policy(run_dir)


def _train_round(policy, cfg: RunConfig, base: Task, stage_two: tuple, run_dir: Path,
                 stage: int, *, log, stop_after_chunks, **kwargs) -> dict:
    """Stage ``stage`` (2 or later) into ``run_dir``: ``policy`` (the last stage's) makes the
    start models of ``stage_two`` (:func:`_stage_two_requests`, the same every round) and trains
    further on them; its results, or where ``stop_after_chunks`` ended it,
    ``{"stopped_at_update": u, "stage": stage}``."""
    firsts, orders, pool_task = stage_two
    made_by = f"stage-{stage - 1}"
    requests, starts = policy_starts(policy, base, firsts, orders, cfg.sequence_depth, log,
                                     pool_task, made_by)
    task = pool_task(base, requests, starts)
    env, env_params = build_env(cfg, task)
    init = restore_policy_params(policy, policy_network(cfg.editor, env), env)
    log(f"stage {stage}: the {made_by} policy trained further on {len(requests)} requests, "
        f"{len(requests) - len(firsts)} of them after earlier ones")
    res = run_editor(cfg, env, env_params, run_dir, log=log, stop_after_chunks=stop_after_chunks,
                     init_params=init, **kwargs)
    return {**res, "stage": stage} if "stopped_at_update" in res else res


def _stage_two_requests(cfg: RunConfig, base: Task) -> tuple[list, list, object]:
    """What stage 2 trains on: the requests made from the pretrained model (the pool's classes,
    or the stage-1 run's example sets), the orders that make the start models, and the pool
    builder for both."""
    if not cfg.forgets_examples:
        pool = [int(c) for c in cfg.forget_classes]
        return pool, sequence_orders(pool, cfg.sequence_depth, cfg.seed), sequence_pool_task
    y = base.dataset.train.y
    # the stage-1 pool's sets (maskshift.tasks.example_pool_task draws them the same way)
    firsts = random_forget_sets(len(y), cfg.forget_fraction, cfg.forget_sets, cfg.forget_seed,
                                labels=y if cfg.forget_stratified else None)
    orders = example_orders(len(y), cfg.forget_fraction, cfg.sequence_depth, len(firsts),
                            cfg.forget_seed)
    return firsts, orders, partial(sequence_examples_pool_task, reward=cfg.forget_reward)
