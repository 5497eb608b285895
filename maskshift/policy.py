"""A trained editing policy as a reusable editor: saved by every PPO run, applied to new edits in
one rollout with no training.

Every finished ``--algo ppo`` run writes ``OUT/policy/`` (the network's parameters) and
``OUT/policy.json`` (the run's config and the shapes it was trained on). :func:`edit_with_policy`
applies such a policy to another forget class of the same model: one deterministic rollout of
its mean actions, the best step chosen on the val split, the test report. A policy with unit
heads (``--heads units``) has no parameter that depends on the edited layer's shape and reads
each class's gradient factors in its observation, so it can serve any class, and any layer width
with the same number of edited matrices and rank; a flat-head policy only serves the shapes it
was trained on. A policy refuses, with a ``ValueError`` naming the problem, whatever it cannot
serve.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from maskshift._io import (
    atomic_write_json,
    replace_dir,
    restore_pytree,
    save_pytree,
    tree_checksum,
)
from maskshift.checkpoint import save_edited
from maskshift.ppo import make_network
from maskshift.rollout import deterministic_rollout, report, select_best_step, to_host
from maskshift.run.config import RunConfig, build_env, resolve_task, select_tolerance

POLICY_FORMAT = "maskshift-policy-v1"


@dataclasses.dataclass(frozen=True)
class Policy:
    """A loaded policy: the config of the run that trained it, its network parameters and the
    edited shapes it was trained on."""

    config: RunConfig
    meta: dict
    shapes: tuple[tuple[int, int], ...]
    path: Path


def save_policy(out: Path, cfg: RunConfig, env, params) -> None:
    """Write ``out/policy/`` and ``out/policy.json`` atomically (after a trained PPO run)."""
    params = jax.tree.map(np.asarray, params)
    tmp = Path(tempfile.mkdtemp(dir=out, prefix=".policy."))
    try:
        save_pytree(tmp / "params", params)
        replace_dir(tmp / "params", out / "policy")
        atomic_write_json(out / "policy.json", {
            "format": POLICY_FORMAT, "config": cfg.to_json(), "env": env.name,
            "shapes": [list(s) for s in env.shapes], "obs_size": env.obs_size,
            "checksum": tree_checksum(params)})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_policy(path) -> Policy:
    """The policy a finished ``--algo ppo`` run saved in ``path`` (``ValueError`` if there is
    none, or it is corrupt)."""
    path = Path(path)
    meta_path = path / "policy.json"
    if not path.is_dir():
        raise ValueError(f"--policy {path} does not exist; pass the --out directory of a finished "
                         "`maskshift.train --algo ppo` run.")
    if not meta_path.is_file() or not (path / "policy").is_dir():
        raise ValueError(f"--policy {path} holds no trained policy (policy.json and policy/); "
                         "only finished `--algo ppo` runs save one.")
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != POLICY_FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, not {POLICY_FORMAT!r}")
        cfg = RunConfig.from_json(meta["config"])
        shapes = tuple(tuple(s) for s in meta["shapes"])
    except (ValueError, KeyError, TypeError, json.JSONDecodeError) as err:
        raise ValueError(f"--policy {path}: policy.json is corrupt ({err}); train the policy "
                         "again.") from None
    return Policy(cfg, meta, shapes, path)


def _restore_params(policy: Policy, network, env) -> dict:
    like = network.init(jax.random.key(0), jnp.zeros((1, env.obs_size)))
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), like)
    try:
        params = restore_pytree(policy.path / "policy", abstract)
    except Exception as err:  # orbax raises several types for a missing or mismatched tree
        raise ValueError(f"--policy {policy.path}: cannot restore its parameters "
                         f"({type(err).__name__}: {str(err).splitlines()[0][:160]}); the files "
                         "are corrupt or from another model.") from None
    if tree_checksum(jax.tree.map(np.asarray, params)) != policy.meta["checksum"]:
        raise ValueError(f"--policy {policy.path}: the parameters do not match policy.json's "
                         "checksum (corrupt); train the policy again.")
    return params


def _check_unlearning(policy: Policy) -> None:
    if policy.config.task != "unlearn":
        raise ValueError(f"--policy {policy.path} was trained on the {policy.config.task!r} "
                         "task; maskshift.edit makes unlearning edits: pass an unlearning run.")


def _check_servable(policy: Policy, env) -> None:
    cfg = policy.config
    if cfg.ppo.heads == "flat" and tuple(env.shapes) != policy.shapes:
        raise ValueError(f"--policy {policy.path} has flat heads trained on edited shapes "
                         f"{list(policy.shapes)}, but this model's are {list(env.shapes)}; a "
                         "flat head serves only its own shapes (train with --heads units).")
    if len(env.shapes) != len(policy.shapes):
        raise ValueError(f"--policy {policy.path} edits {len(policy.shapes)} matrices, this "
                         f"model {len(env.shapes)}; the policy cannot serve it.")


def edit_with_policy(policy: Policy, forget_classes, *, task=None, out=None,
                     log=print) -> dict:
    """Edit with a trained policy and no training: one rollout, selection on val, the test
    report.

    Args:
      policy: from :func:`load_policy`.
      forget_classes: the class(es) to forget; any the model has.
      task: your own unlearning :class:`~maskshift.tasks.Task`; default: the policy run's
        built-in model and dataset with ``forget_classes``.
      out: write the edited params there (``edited/``, ``edited.json``) and ``edit.json``.

    Returns ``{"before": report, "after": report, "best_step", "seconds", ...}``: ``seconds``
    covers the rollout, the selection and the reports (compilation included).
    """
    _check_unlearning(policy)
    cfg = dataclasses.replace(policy.config, forget_classes=tuple(int(c) for c in forget_classes))
    if task is None:
        if cfg.task_factory is not None or cfg.task_fingerprint is not None:
            raise ValueError(f"--policy {policy.path} was trained on your own task; pass the "
                             "task to edit (edit_with_policy(..., task=...)).")
        cfg, task = resolve_task(cfg)
    env, env_params = build_env(cfg, task)
    _check_servable(policy, env)
    network = make_network(cfg.ppo, env)
    params = _restore_params(policy, network, env)
    t0 = time.perf_counter()
    edits = deterministic_rollout(env, env_params, network, params)
    best, edited, _ = select_best_step(env, env_params, edits, select_tolerance(cfg))
    before = report(env, env_params.task.params, "test")
    after = report(env, edited, "test")
    seconds = time.perf_counter() - t0
    result = {"policy": str(policy.path), "env": env.name, "task": "unlearn",
              "dataset": task.dataset.name, "forget_classes": list(cfg.forget_classes),
              "best_step": int(best), "seconds": round(seconds, 3),
              "before": before, "after": after}
    if out is not None:
        out = Path(out)
        save_edited(out, to_host(edited), {
            "task": "unlearn", "dataset": task.dataset.name, "env": env.name, "algo": "policy",
            "seed": cfg.seed, "edit_paths": ["/".join(p) for p in task.edit_paths],
            "forget_classes": list(cfg.forget_classes)})
        atomic_write_json(out / "edit.json", result)
    log(f"edited with {policy.path}: best step {best} of {int(env_params.max_steps_in_episode)}, "
        f"{seconds:.2f} s")
    return result
