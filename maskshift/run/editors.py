"""Every editor behind one signature: ``edit(env, env_params, cfg, out, ...) -> (edits, history,
stats)`` where ``edits`` are one episode's masks or shifts ``[T + 1, m, n]`` per edited matrix
(:func:`maskshift.agents.common.rollout_edits`), then selected and written by the same code. A
policy trained over a pool of targets (``cfg.amortized``) gives a list: one episode per
target."""

from __future__ import annotations

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from maskshift._io import tree_checksum
from maskshift.agents import apg, ppo, quark
from maskshift.agents.common import policy_act, rollout_fn
from maskshift.controls import gradient_edits, oracle_edits
from maskshift.hosts import host_copy
from maskshift.run.config import RunConfig, TrainingError
from maskshift.run.loop import train_checkpointed
from maskshift.run.policy import save_policy


def trained_policy(cfg: RunConfig, env, env_params, out: Path, *, mesh, env_chunk, log,
                   stop_after_chunks, init_params=None):
    """PPO, APG or Quark trained in checkpointed chunks, then its mean actions rolled out (a
    Quark policy's under the best quantile's token). ``init_params``: the network to start
    from (a policy trained further)."""
    if cfg.algo == "ppo":
        trainer = ppo.make_train(cfg.editor, env, mesh, env_chunk)
    else:
        trainer = {"apg": apg, "quark": quark}[cfg.algo].make_train(cfg.editor, env, mesh)
    done = train_checkpointed(trainer, env_params, cfg, out, log=log,
                              stop_after_chunks=stop_after_chunks, init_params=init_params)
    if isinstance(done, dict):  # stopped early
        return done
    rs, history, stats = done
    # every process of a multi-process run prints the same checksum (maskshift.hosts)
    stats = {**stats, "policy_checksum": tree_checksum(host_copy(rs.params))}
    log(f"policy checksum {stats['policy_checksum'][:16]}")
    if cfg.algo == "ppo":  # reusable with maskshift.run.policy.edit_with_policy
        save_policy(out, cfg, env, rs.params)
    run = rollout_fn(env, policy_act(trainer.network), int(env_params.max_steps_in_episode))
    episodes = [run(rs.params, env_params, jax.random.key(0), jnp.int32(t))
                for t in range(env.task.objective.num_targets)]
    return (episodes if cfg.amortized else episodes[0]), history, stats


def _timed(fn):
    """``fn()``'s value and its wall seconds, compilation included."""
    t0 = time.perf_counter()
    value = jax.block_until_ready(fn())
    return value, time.perf_counter() - t0


def gradient_controller(cfg: RunConfig, env, env_params, out: Path, *, log, **_):
    """The greedy gradient controller's episode; its history is the episode itself, step by
    step (reward terms on the whole train split)."""
    edits, wall = _timed(lambda: gradient_edits(env, env_params, cfg.editor))
    T = int(env_params.max_steps_in_episode)
    metrics = [np.asarray(env.metrics_on(tuple(e[t] for e in edits), env.train_split(env_params),
                                         env_params)) for t in range(T + 1)]
    base = np.asarray(env_params.task.base_metrics[0])
    lam = (float(env_params.lambda_utility), float(env_params.lambda_edit))
    rewards = [float(sum(c * float(x) for c, x in zip(lam, env.task.objective.terms(m, base),
                                                      strict=True))) for m in metrics]
    log(f"gradient controller: {T} steps in {wall:.1f} s")
    history = {"x_label": "step of the controller's episode",
               "return_label": "reward (whole train split)",
               "env_steps": list(range(T + 1)), "episode_return": rewards,
               "final_metrics": [m.tolist() for m in metrics]}
    # one episode: T environment steps, each with two gradients on the whole train split
    stats = {"wall_seconds": round(wall, 2), "compile_seconds": None, "env_steps": T,
             "gradient_evaluations": 2 * T}
    return edits, history, stats


def gradient_oracle(cfg: RunConfig, env, env_params, out: Path, *, log, **_):
    """Open-loop optimisation of one episode's actions (:mod:`maskshift.controls.oracle`)."""
    t0 = time.perf_counter()
    try:
        edits, hist = oracle_edits(env, env_params, jax.random.key(cfg.seed), cfg.editor, log)
    except FloatingPointError as err:
        raise TrainingError(str(err)) from None
    wall = time.perf_counter() - t0
    T = int(env_params.max_steps_in_episode)
    its = list(range(1, len(hist["episode_return"]) + 1))
    history = {"x_label": "oracle iteration", "return_label": "mean episode return (restarts)",
               "env_steps": [i * cfg.editor.restarts * T for i in its],
               "episode_return": hist["episode_return"],
               "final_metrics": [],  # an open-loop optimisation has no per-iteration metrics
               "best_restart": hist["best_restart"], "final_returns": hist["final_returns"]}
    stats = {"wall_seconds": round(wall, 2), "compile_seconds": None,
             "env_steps": cfg.editor.env_steps(T), "iterations": cfg.editor.iterations}
    return edits, history, stats


EDITORS = {"ppo": trained_policy, "apg": trained_policy, "quark": trained_policy,
           "gradient": gradient_controller,
           "oracle": gradient_oracle}
