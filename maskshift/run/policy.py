"""A trained editing policy as a reusable editor: saved by every PPO run, applied to new edits in
one rollout with no training.

Every finished PPO run (``algo='ppo'``) writes ``OUT/policy/`` (the network's parameters) and
``OUT/policy.json`` (the run's config and the shapes it was trained on). :func:`edit_with_policy`
applies such a policy to another forget class of the same model: one deterministic rollout of
its mean actions, the best step chosen on the val split, the test report. A policy with unit
heads (``PPOConfig.heads='units'``) has no parameter that depends on the edited layer's shape
and reads each class's gradient factors in its observation, so it can serve any class, and any
layer width with the same number of edited matrices and rank; a flat-head policy only serves
the shapes it was trained on. A policy refuses, with a ``ValueError`` naming the problem,
whatever it cannot serve.
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
from maskshift.agents.common import policy_act, rollout_fn
from maskshift.agents.ppo import policy_network
from maskshift.checkpoint import save_edited
from maskshift.data import check_forget_classes
from maskshift.hosts import host_copy, is_primary
from maskshift.run.build import build_env, resolve_task
from maskshift.run.chain import continue_from, edited_meta
from maskshift.run.config import RunConfig, select_tolerance
from maskshift.run.select import select_and_report
from maskshift.tasks import forget_examples_task

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
    params = host_copy(params)
    if not is_primary():  # several processes: process 0 writes (maskshift.hosts)
        return
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
    """The policy a finished PPO run saved in ``path`` (``ValueError`` if there is
    none, or it is corrupt)."""
    path = Path(path)
    meta_path = path / "policy.json"
    if path.is_file():
        raise ValueError(f"The policy directory {path} is a file, not a directory; pass the "
                         "`out` directory of a finished PPO run (`algo='ppo'`).")
    if not path.is_dir():
        raise ValueError(f"The policy directory {path} does not exist; pass the `out` directory "
                         "of a finished PPO run (`algo='ppo'`).")
    if not meta_path.is_file() or not (path / "policy").is_dir():
        raise ValueError(f"The policy directory {path} holds no trained policy (policy.json and "
                         "policy/); only finished PPO runs (`algo='ppo'`) save one.")
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != POLICY_FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, not {POLICY_FORMAT!r}")
        cfg = RunConfig.from_json(meta["config"])
        shapes = tuple(tuple(s) for s in meta["shapes"])
    except (ValueError, KeyError, TypeError, json.JSONDecodeError) as err:
        raise ValueError(f"The policy in {path}: policy.json is corrupt ({err}); train the policy "
                         "again.") from None
    return Policy(cfg, meta, shapes, path)


def restore_policy_params(policy: Policy, network, env) -> dict:
    like = network.init(jax.random.key(0), jnp.zeros((1, env.obs_size)))
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), like)
    try:
        params = restore_pytree(policy.path / "policy", abstract)
    except Exception as err:  # orbax raises several types for a missing or mismatched tree
        raise ValueError(f"The policy in {policy.path}: cannot restore its parameters "
                         f"({type(err).__name__}: {str(err).splitlines()[0][:160]}); the files "
                         "are corrupt or from another model.") from None
    if tree_checksum(jax.tree.map(np.asarray, params)) != policy.meta["checksum"]:
        raise ValueError(f"The policy in {policy.path}: the parameters do not match policy.json's "
                         "checksum (corrupt); train the policy again.")
    return params


def _check_unlearning(policy: Policy) -> None:
    if policy.config.task != "unlearn":
        raise ValueError(f"The policy in {policy.path} was trained on the {policy.config.task!r} "
                         "task; a policy edit is an unlearning edit: pass an unlearning run.")


def _check_servable(policy: Policy, env) -> None:
    cfg = policy.config
    if cfg.editor.heads == "flat" and tuple(env.shapes) != policy.shapes:
        raise ValueError(f"The policy in {policy.path} has flat heads trained on edited shapes "
                         f"{list(policy.shapes)}, but this model's are {list(env.shapes)}; a "
                         "flat head serves only its own shapes (train with `heads='units'`).")
    if cfg.editor.heads == "flat" and env.obs_size != policy.meta.get("obs_size", env.obs_size):
        raise ValueError(f"The policy in {policy.path} reads {policy.meta['obs_size']} "
                         f"observation features; {env.task.name!r} gives {env.obs_size} (a flat "
                         "head serves only its own observation; train with `heads='units'`).")
    if len(env.shapes) != len(policy.shapes):
        raise ValueError(f"The policy in {policy.path} edits {len(policy.shapes)} matrices, this "
                         f"model {len(env.shapes)}; the policy cannot serve it.")


class PolicyEditor:
    """A policy bound to a model for many edits, with no training.

    One environment holds every forget set in ``targets`` as a target (default: each class of
    the model alone), and the policy's rollout is compiled once: each :meth:`edit` after the
    first runs compiled code on new data (one rollout, selection on val, the test report).

    Args:
      policy: from :func:`load_policy`.
      targets: the forget sets this editor serves (tuples of classes); default every class.
      task: your own unlearning :class:`~maskshift.tasks.Task`; default: the policy run's
        built-in model and dataset.
    """

    def __init__(self, policy: Policy, targets=None, task=None):
        _check_unlearning(policy)
        cfg = policy.config
        task = policy_task(policy) if task is None else task
        num_classes = task.dataset.num_classes
        targets = ([(c,) for c in range(num_classes)] if targets is None
                   else [tuple(int(c) for c in t) for t in targets])
        targets = [check_forget_classes(t, num_classes) for t in targets]
        union = tuple(sorted({c for t in targets for c in t}))
        obj = dataclasses.replace(task.objective, forget_classes=union if len(targets) > 1
                                  else targets[0], pool=tuple(targets) if len(targets) > 1 else ())
        self.task = dataclasses.replace(task, objective=obj)
        self.policy, self.targets = policy, targets
        self.config = dataclasses.replace(cfg, amortized=False, forget_classes=targets[0])
        self.env, self.env_params, self.params, self._run = bind_policy(policy, self.config,
                                                                  self.task)

    def edit(self, forget_classes, out=None, log=print) -> dict:
        """Forget ``forget_classes`` (one of the editor's targets): returns ``{"before": report,
        "after": report, "best_step", "seconds", ...}``, ``seconds`` covering the rollout, the
        selection and the reports. ``out``: write ``edited/``, ``edited.json`` and
        ``edit.json`` there."""
        classes = tuple(int(c) for c in np.atleast_1d(forget_classes))
        if classes not in self.targets:
            raise ValueError(f"This editor serves the forget sets {self.targets}, not "
                             f"{list(classes)}; build one with targets=[{list(classes)}].")
        t = self.targets.index(classes)
        env, env_params = self.env, self.env_params
        t0 = time.perf_counter()
        edits = self._run(self.params, env_params, jax.random.key(0), jnp.int32(t))
        ep = select_and_report(env, env_params, edits, select_tolerance(self.config), t)
        best, edited, before, after = ep["best_step"], ep["edited"], ep["before"], ep["after"]
        seconds = time.perf_counter() - t0
        result = {"policy": str(self.policy.path), "env": env.name, "task": "unlearn",
                  "dataset": self.task.dataset.name, "forget_classes": list(classes),
                  "best_step": int(best), "seconds": round(seconds, 3),
                  "before": before, "after": after}
        if out is not None:
            out = Path(out)
            task = dataclasses.replace(self.task, objective=dataclasses.replace(
                self.task.objective, forget_classes=classes, pool=()))
            save_edited(out, host_copy(edited), edited_meta(
                task, env=env.name, algo="policy", seed=self.config.seed))
            atomic_write_json(out / "edit.json", result)
        log(f"edited with {self.policy.path}: best step {best} of "
            f"{int(env_params.max_steps_in_episode)}, {seconds:.2f} s")
        return result


def check_builtin_policy(policy: Policy) -> Policy:
    """``policy``, or a ``ValueError`` where it was trained on your own task (only you can build
    its model and data)."""
    cfg = policy.config
    # a fingerprint marks your own task or objective; a run started `from_run` records one too
    if cfg.task_factory is not None or (cfg.task_fingerprint is not None
                                        and cfg.from_run is None):
        raise ValueError(f"The policy in {policy.path} was trained on your own task; "
                         "pass the task to edit (edit_with_policy(..., task=...)).")
    return policy


def policy_task(policy: Policy):
    """The built-in task the policy was trained on (its model and dataset); ``ValueError`` for a
    policy trained on your own task, which only you can build."""
    cfg = check_builtin_policy(policy).config
    return resolve_task(dataclasses.replace(cfg, amortized=False, from_run=None,
                                            task_fingerprint=None))[1]


def bind_policy(policy: Policy, cfg: RunConfig, task):
    """The policy bound to ``task`` under ``cfg``: ``(env, env_params, network params, rollout)``,
    the rollout compiled once for every target of ``task``; ``ValueError`` where the policy cannot
    serve the task's shapes or observation."""
    env, env_params = build_env(cfg, task)
    _check_servable(policy, env)
    network = policy_network(cfg.editor, env)
    params = restore_policy_params(policy, network, env)
    return (env, env_params, params,
            rollout_fn(env, policy_act(network), int(env_params.max_steps_in_episode)))


def edit_with_policy(policy: Policy, forget_classes, *, task=None, from_run=None, out=None,
                     log=print) -> dict:
    """Edit with a trained policy and no training: one rollout, selection on val, the test
    report (a :class:`PolicyEditor` for this one forget set; keep an editor for many edits).

    Args:
      policy: from :func:`load_policy`.
      forget_classes: the class(es) to forget together; any the model has.
      task: your own unlearning :class:`~maskshift.tasks.Task`; default: the policy run's
        built-in model and dataset.
      from_run: the ``out`` of an unlearning edit of that model: edit its edited model, the next
        request of a sequence (:mod:`maskshift.run.chain`).
      out: write the edited params there (``edited/``, ``edited.json``) and ``edit.json``.

    Returns ``{"before": report, "after": report, "best_step", "seconds", ...}``: ``seconds``
    covers the rollout, the selection and the reports (compilation included).
    """
    classes = tuple(int(c) for c in np.atleast_1d(forget_classes))
    if from_run is not None:
        if task is not None:
            raise ValueError("Give `task` or `from_run`, not both (next_request_task continues "
                             "your own task).")
        _check_unlearning(policy)
        base = policy_task(policy)
        task = continue_from(dataclasses.replace(base, objective=dataclasses.replace(
            base.objective, forget_classes=classes, pool=())), from_run)
    return PolicyEditor(policy, [classes], task).edit(classes, out, log)


def zero_shot_edit(policy: Policy, task, log=print) -> dict:
    """One deterministic rollout of ``policy`` on ``task``, which may have another objective (a
    policy trained to unlearn, tried on backdoor removal): no training; the best step chosen on
    val by ``task``'s own rule, its test report. The policy sees ``task``'s observation (its
    reward terms' gradient factors and metrics), so it serves any objective with as many metrics
    and the same number of edited matrices; otherwise a ``ValueError`` says why.

    Returns ``{"before", "after", "best_step", "seconds", ...}`` (``seconds``: rollout,
    selection and reports, compilation included)."""
    result, _ = _zero_shot(policy, task, log)
    return result


def _zero_shot(policy: Policy, task, log) -> tuple[dict, object]:
    """:func:`zero_shot_edit`'s result and the selected edited params."""
    cfg = dataclasses.replace(policy.config, amortized=False, task=task.objective.name,
                              task_factory=None, task_fingerprint=None, from_run=None)
    env, env_params, params, run = bind_policy(policy, cfg, task)
    t0 = time.perf_counter()
    edits = run(params, env_params, jax.random.key(0), jnp.int32(0))
    ep = select_and_report(env, env_params, edits, select_tolerance(cfg), 0)
    seconds = time.perf_counter() - t0
    log(f"zero-shot edit of {task.name} with {policy.path}: best step {ep['best_step']}, "
        f"{seconds:.2f} s")
    return ({"policy": str(policy.path), "env": env.name, "task": task.name,
             "best_step": int(ep["best_step"]), "seconds": round(seconds, 3),
             "before": ep["before"], "after": ep["after"]}, ep["edited"])


def edit_examples_with_policy(policy: Policy, indices, *, out=None, log=print) -> dict:
    """Forget the train examples ``indices`` with a trained unlearning policy and no training
    (one rollout, selection on val, the test report): a policy trained over random forget sets
    (``amortized`` with ``forget_fraction``) edits a set it never saw. The policy run's model and
    data; the edit term is the run's ``forget_reward``. ``out``: write ``edited/``,
    ``edited.json`` and ``edit.json`` there."""
    _check_unlearning(policy)
    cfg = policy.config
    base = resolve_task(dataclasses.replace(
        cfg, amortized=False, from_run=None, task_fingerprint=None, forget_fraction=None,
        forget_indices=None))[1]
    task = forget_examples_task(base, indices, cfg.forget_reward,
                                warn=lambda m: log(f"warning: {m}"))
    return edit_examples_task_with_policy(policy, task, out=out, log=log)


def edit_examples_task_with_policy(policy: Policy, task, *, out=None, log=print) -> dict:
    """:func:`edit_examples_with_policy` on a forget-examples ``task`` already built (the next
    request of a sequence of example sets: :func:`~maskshift.tasks.next_examples_task`, on the
    model the earlier requests left). ``out``: write ``edited/``, ``edited.json`` and
    ``edit.json`` there."""
    result, edited = _zero_shot(policy, task, log)
    result = {**result, "dataset": task.dataset.name, "forget_size": len(
        task.objective.forget_indices), "forget_classes": None}
    if out is not None:
        out = Path(out)
        save_edited(out, host_copy(edited), edited_meta(task, env=result["env"], algo="policy",
                                                        seed=policy.config.seed))
        atomic_write_json(out / "edit.json", result)
    return result
