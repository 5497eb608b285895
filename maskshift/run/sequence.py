"""Requests that arrive one after another: :func:`run_sequence` applies a list of class requests,
or of example requests (disjoint random sets of train examples), in order with one editor, each
edit starting from the last edited model (:func:`~maskshift.tasks.next_request_task`,
:func:`~maskshift.tasks.next_examples_task`), and reports after each request what a stream of
requests puts at risk: the forget accuracy of **every** request so far (an earlier one that
comes back is a relapse: a class above 0, a set above the held-out accuracy), retain and test
accuracy (erosion), MIA-Efficacy and the Avg. Gap to a model retrained without every request so
far.

``out`` holds ``plan.json`` (what the sequence is), one directory per request
(``request-K/``: the editor's own files, ``edited/`` among them, and ``request.json`` once the
request is done), ``sequence.json`` (the reports) and ``sequence.png``. A sequence killed part
way is resumed by the same call: finished requests are read back from their ``edited/``
(checksummed, bit-identical), a trained editor's unfinished request resumes from its checkpoint,
any other editor's is made again (they are deterministic).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from maskshift._io import atomic_write_json, save_figure
from maskshift.baselines import BASELINES, retrained
from maskshift.checkpoint import load_edited, save_edited
from maskshift.data import check_forget_classes
from maskshift.data.forget_sets import disjoint_forget_sets
from maskshift.hosts import host_copy
from maskshift.metrics import example_unlearning_report, unlearning_report
from maskshift.metrics.field import avg_gap
from maskshift.metrics.unlearning import accuracy
from maskshift.run.build import builtin_task
from maskshift.run.chain import edited_meta
from maskshift.run.config import ALGOS, OutputDirError, RunConfig
from maskshift.run.pipeline import refuse_file_in_the_way, train_and_evaluate
from maskshift.run.policy import (
    check_builtin_policy,
    edit_examples_task_with_policy,
    edit_with_policy,
    load_policy,
    policy_task,
)
from maskshift.tasks import (
    ExampleObjective,
    Task,
    UnlearnObjective,
    next_examples_task,
    next_request_task,
)

FORMAT = "maskshift-sequence-v1"
# an editor of the same action space (a run per request), a trained policy, or a baseline
METHODS = (*ALGOS, "policy", *BASELINES["unlearn"])


@dataclasses.dataclass(frozen=True)
class SequencePlan:
    """What a sequence is: its requests in order, the method that edits each and the run config
    the edits share (``forget_classes`` is replaced by each request). ``policy``: the directory
    of the trained policy where ``method`` is ``"policy"``. ``examples``: the requests are sets
    of train examples, numbered ``1..N`` in ``requests``: disjoint random sets of
    ``config.forget_fraction`` of the train split, drawn with ``config.forget_seed``
    (:func:`~maskshift.data.forget_sets.disjoint_forget_sets`), each edit's reward term
    ``config.forget_reward``."""

    requests: tuple[int, ...]
    method: str
    config: RunConfig
    policy: str | None = None
    examples: bool = False

    def to_json(self) -> dict:
        out = {"format": FORMAT, "requests": list(self.requests), "method": self.method,
               "config": self.config.to_json(), "policy": self.policy}
        return {**out, "examples": True} if self.examples else out

    @property
    def noun(self) -> str:
        return "set" if self.examples else "class"


def check_requests(requests, num_classes: int) -> tuple[int, ...]:
    """The requests as classes, in order (``ValueError`` for an empty list, a repeat, a class
    the model does not have, or a list of every class, which leaves nothing to retain)."""
    requests = tuple(int(c) for c in requests)
    if not requests:
        raise ValueError("`requests` is empty; give the classes to forget in order (e.g. 3 5 8).")
    for k, c in enumerate(requests):
        if c in requests[:k]:
            raise ValueError(f"Request {k + 1} (class {c}) repeats request "
                             f"{requests.index(c) + 1}: a class forgotten earlier is no longer in "
                             "the retain set; list each class once.")
    check_forget_classes(requests, num_classes)  # also: every class requested, none retained
    return requests


def check_sequence_out(out: Path, plan: SequencePlan, overwrite: bool) -> bool:
    """Refuse an ``out`` the sequence must not touch (nothing is changed); ``True`` where it
    holds this same sequence, unfinished, to resume."""
    refuse_file_in_the_way(out)
    if overwrite or not out.exists() or not any(out.iterdir()):
        return False
    if (out / "sequence.json").exists():
        raise OutputDirError(f"{out} already holds a finished sequence (sequence.json); choose "
                             "another `out`, or pass `overwrite=True` to replace it.")
    try:
        saved = json.loads((out / "plan.json").read_text())
    except (OSError, json.JSONDecodeError):
        raise OutputDirError(f"{out} exists and is not a maskshift sequence; choose another "
                             "`out`, or pass `overwrite=True` to replace its contents.") from None
    if saved != plan.to_json():
        raise OutputDirError(f"{out} holds an unfinished sequence of other requests or settings; "
                             "rerun that one to resume it, choose another `out`, or pass "
                             "`overwrite=True` to replace it.")
    return True


def request_task(base: Task, requests, k: int, params) -> Task:
    """Request ``k`` (0-based) of ``requests`` on ``params``, the model edited for the earlier
    ones."""
    obj = dataclasses.replace(base.objective, forget_classes=(requests[k],), pool=())
    return next_request_task(dataclasses.replace(base, objective=obj), params, requests[:k])


def reference_figures(base: Task, classes, seed: int) -> dict:
    """The test report of the model retrained without every class of ``classes`` (cached,
    :func:`maskshift.baselines.retrained`): what each request's Avg. Gap is measured against."""
    task = dataclasses.replace(base, objective=dataclasses.replace(
        base.objective, forget_classes=tuple(classes), pool=()))
    return unlearning_report(base.apply_fn, retrained(task, seed), base.dataset, tuple(classes))


def example_reference_figures(base: Task, sets, seed: int) -> dict:
    """The figures of the model retrained without every example of ``sets`` (cached, as
    :func:`reference_figures`), on the same forget set: each example request's Avg. Gap is
    measured against it."""
    union = np.concatenate([np.asarray(s) for s in sets])
    task = dataclasses.replace(base, objective=ExampleObjective(
        forget_indices=tuple(int(i) for i in np.sort(union))))
    return example_unlearning_report(base.apply_fn, retrained(task, seed), base.dataset,
                                     _rows(len(base.dataset.train), sets))


def _rows(n: int, sets) -> np.ndarray:
    mask = np.zeros(n, bool)
    for s in sets:
        mask[np.asarray(s)] = True
    return mask


def _reference(make, what: tuple, seed: int, references: dict | None,
               model_key: tuple) -> dict:
    """``make()`` (the reference figures of the requests ``what``), kept in ``references``
    (when given) per model and data (``model_key``, computed once per sequence), requests and
    seed."""
    if references is None:
        return make()
    key = (*model_key, what, seed)
    if key not in references:
        references[key] = make()
    return references[key]


def sequence_report(base: Task, params, classes, reference: dict | None = None) -> dict:
    """A model's test figures after the requests ``classes`` (in order), on the whole dataset:
    ``forget_acc_by_request`` (each request's class), ``worst_relapse`` (the highest of the
    earlier requests'; ``None`` after the first), ``forget_acc`` (every request so far together),
    ``retain_acc`` (the classes not requested so far) beside ``retain_acc_original`` (the
    pretrained model's on the same classes: the erosion is their difference), ``test_acc``,
    ``mia_efficacy``, ``mia``, UA/RA/TA and, given ``reference`` (:func:`reference_figures`),
    ``avg_gap``."""
    classes = tuple(classes)
    rep = unlearning_report(base.apply_fn, params, base.dataset, classes)
    original = unlearning_report(base.apply_fn, base.params, base.dataset, classes,
                                 with_mia=False)
    per = rep["per_class_acc"]
    out = {"forget_acc_by_request": {str(c): per[c] for c in classes},
           "worst_relapse": max((per[c] for c in classes[:-1]), default=None),
           **{k: rep[k] for k in ("forget_acc", "retain_acc", "test_acc", "mia_efficacy", "mia",
                                  "ua", "ra", "ta")},
           "retain_acc_original": original["retain_acc"]}
    if reference is not None:
        out["avg_gap"] = avg_gap(rep, reference)
    return out


def example_sequence_report(base: Task, params, sets, reference: dict | None = None) -> dict:
    """A model's figures after the example requests ``sets`` (train rows of the original split,
    in order), as :func:`sequence_report`: ``forget_acc_by_request`` (each set's accuracy, keyed
    ``"1".."k"``), ``worst_relapse`` (the highest of the earlier sets'; above ``test_acc``, the
    held-out level, an earlier set looks like training data again), ``forget_acc`` (every set so
    far together), ``retain_acc`` (the train examples no request named) beside
    ``retain_acc_original``, ``test_acc``, ``mia_efficacy``, ``mia``, UA/RA/TA and, given
    ``reference`` (:func:`example_reference_figures`), ``avg_gap``."""
    n = len(base.dataset.train)
    union = _rows(n, sets)
    rep = example_unlearning_report(base.apply_fn, params, base.dataset, union)
    original = example_unlearning_report(base.apply_fn, base.params, base.dataset, union,
                                         with_mia=False)
    # each set's accuracy from one pass over the train split (a report per set made k more)
    train = base.dataset.train
    logits, y = jax.jit(base.apply_fn)(params, jnp.asarray(train.x)), jnp.asarray(train.y)
    per = [float(accuracy(logits, y, jnp.asarray(_rows(n, [s]), jnp.float32))) for s in sets]
    out = {"forget_acc_by_request": {str(k): a for k, a in enumerate(per, 1)},
           "worst_relapse": max(per[:-1], default=None),
           **{k: rep[k] for k in ("forget_acc", "retain_acc", "test_acc", "mia_efficacy", "mia",
                                  "ua", "ra", "ta")},
           "retain_acc_original": original["retain_acc"]}
    if reference is not None:
        out["avg_gap"] = avg_gap(rep, reference)
    return out


def _edit(plan: SequencePlan, task: Task, directory: Path, log, stop_after_chunks) -> bool:
    """Make one request's edit into ``directory``; ``False`` if a trained editor was stopped
    early (its checkpoint left to resume from)."""
    c = task.objective.forget_classes
    if plan.method in ALGOS:
        if (directory / "results.json").is_file():  # finished, killed before request.json
            return True
        resume = (directory / "ckpt").is_dir()
        cfg = (dataclasses.replace(plan.config, forget_fraction=None) if plan.examples
               else dataclasses.replace(plan.config, forget_classes=c))
        res = train_and_evaluate(cfg, directory, task=task, overwrite=not resume, log=log,
                                 stop_after_chunks=stop_after_chunks)
        return "stopped_at_update" not in res
    shutil.rmtree(directory, ignore_errors=True)
    if plan.method == "policy" and plan.examples:
        edit_examples_task_with_policy(load_policy(plan.policy), task, out=directory, log=log)
        return True
    if plan.method == "policy":
        edit_with_policy(load_policy(plan.policy), c, task=task, out=directory, log=log)
        return True
    edited = BASELINES["unlearn"][plan.method](task, jax.random.key(plan.config.seed))
    save_edited(directory, host_copy(edited), edited_meta(task, algo=plan.method,
                                                          seed=plan.config.seed))
    return True


def _base_task(plan: SequencePlan) -> Task:
    if plan.examples:  # the model and data; each request's task names its own set
        return builtin_task(dataclasses.replace(plan.config, forget_fraction=None))
    if plan.method == "policy":
        return policy_task(load_policy(plan.policy))
    return builtin_task(dataclasses.replace(plan.config, forget_classes=plan.requests[:1]))


def make_plan(cfg: RunConfig, requests=(), method: str | None = None,
              policy=None, examples: int | None = None) -> SequencePlan:
    """The plan of a sequence of class ``requests``, or of ``examples`` example requests
    (``cfg.forget_fraction`` of the train split each; :class:`SequencePlan`; with ``policy``,
    one trained over random example sets: :func:`_policy_example_config`). ``ValueError`` for a
    method that does not exist, a policy without ``method='policy'`` or the reverse, or a config
    that is not a built-in unlearning one."""
    if examples is not None:
        return _example_plan(cfg, requests, method, policy, examples)
    if not len(requests):
        raise ValueError("`requests` is empty; give the classes to forget in order (e.g. 3 5 8).")
    method, cfg = _method_and_config(cfg, method, policy)
    return SequencePlan(tuple(int(c) for c in requests), method, cfg,
                        None if policy is None else str(policy))


def _method_and_config(cfg: RunConfig, method, policy) -> tuple[str, RunConfig]:
    """The method that edits every request and the config the edits share (a policy's own),
    checked: a known method, a policy exactly with ``method='policy'``, a built-in unlearning
    task."""
    method = method or ("policy" if policy is not None else cfg.algo)
    if method not in METHODS:
        raise ValueError(f"Unknown sequence method {method!r}; choose one of "
                         f"{', '.join(METHODS)}.")
    if (method == "policy") != (policy is not None):
        raise ValueError("A trained policy edits with `method='policy'` and a `policy` "
                         "directory; give both or neither.")
    if policy is not None:
        cfg = load_policy(policy).config
        cfg = dataclasses.replace(cfg, amortized=False, from_run=None)
    if cfg.task != "unlearn" or cfg.task_factory or cfg.objective_factory or cfg.from_run:
        raise ValueError("A sequence forgets classes of a built-in unlearning model: it needs "
                         "`task='unlearn'`, without `task_factory`, `objective_factory` or "
                         "`from_run`.")
    return method, cfg


def _example_plan(cfg: RunConfig, requests, method, policy, examples: int) -> SequencePlan:
    if len(requests):
        raise ValueError("Give class `requests` or a number of `examples` requests, not both.")
    if policy is not None:
        cfg = _policy_example_config(cfg, load_policy(policy))
    if cfg.forget_fraction is None:
        raise ValueError("Example requests need `forget_fraction` (each request's share of the "
                         "train split, e.g. 0.05).")
    if int(examples) < 1:
        raise ValueError(f"A sequence needs at least one request, got {examples} example "
                         "requests.")
    method, _ = _method_and_config(cfg, method, policy)
    return SequencePlan(tuple(range(1, int(examples) + 1)), method, cfg,
                        None if policy is None else str(policy), examples=True)


def _policy_example_config(cfg: RunConfig, policy) -> RunConfig:
    """The config a trained policy edits a sequence of example requests under: the policy's own
    (its env, model, settings and reward term), each request ``cfg.forget_fraction`` of the
    train split (default: the share the policy was trained on), drawn with ``cfg.forget_seed``,
    which must not be the seed its training sets were drawn with (those sets it has seen)."""
    own = check_builtin_policy(policy).config
    if own.forget_fraction is None:
        raise ValueError(f"The policy in {policy.path} was trained to forget classes; example "
                         "requests need a policy trained over random example sets "
                         "(maskshift.train --amortized --forget-fraction F).")
    if cfg.forget_seed == own.forget_seed:
        raise ValueError(f"The policy in {policy.path} was trained on sets drawn with forget "
                         f"seed {own.forget_seed}; draw the requests with another "
                         f"(--forget-seed {own.forget_seed + 1}) so that it edits sets it never "
                         "saw.")
    return dataclasses.replace(own, amortized=False, from_run=None, forget_indices=None,
                               forget_stratified=False, forget_seed=cfg.forget_seed,
                               forget_fraction=cfg.forget_fraction or own.forget_fraction)


def finished_sequence(out, plan: SequencePlan) -> dict | None:
    """The results of ``plan`` if ``out`` holds it finished, else ``None`` (for benchmarks that
    pick up where they stopped)."""
    out = Path(out)
    try:
        if json.loads((out / "plan.json").read_text()) != plan.to_json():
            return None
        return json.loads((out / "sequence.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None


def run_sequence(plan: SequencePlan, out, *, overwrite: bool = False, log=print,
                 stop_during: tuple[int, int] | None = None,
                 references: dict | None = None) -> dict:
    """Apply ``plan``'s requests in order, each to the model the last one left; report after
    each (:func:`sequence_report`) and write ``out`` (module docstring). Returns ``{"before":
    the original's report, "requests": [one report per request, with its class and seconds],
    ...}``. Everything is checked before anything runs or is written.

    ``stop_during=(k, chunks)``: stop request ``k`` (1-based) after ``chunks`` compiled chunks of
    a trained editor, as a kill would (for tests); returns ``{"stopped_at_request": k}``.
    ``references``: a dict the caller shares between sequences of one model and seed (a
    benchmark): each retrained model's figures (:func:`reference_figures`) are computed once.
    """
    out = Path(out)
    base = _base_task(plan)
    if not isinstance(base.objective, UnlearnObjective):
        raise ValueError(f"A sequence forgets classes; {base.name!r} is not an unlearning task.")
    cfg = plan.config
    if plan.examples:
        sets = disjoint_forget_sets(len(base.dataset.train), cfg.forget_fraction,
                                    len(plan.requests), cfg.forget_seed)
        requests = plan.requests
    else:
        sets, requests = None, check_requests(plan.requests, base.dataset.num_classes)
    resuming = check_sequence_out(out, plan, overwrite)
    if not resuming and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "plan.json", plan.to_json())
    seed, n = plan.config.seed, len(requests)
    before = (example_sequence_report(base, base.params, sets) if plan.examples
              else sequence_report(base, base.params, requests))
    before["worst_relapse"] = None
    params, steps = base.params, []
    # what a shared reference is kept under: hashed once, not per request (the data's hash
    # reads every array: 60,000 Fashion-MNIST images)
    model_key = ((base.origin_checksum, base.dataset.fingerprint()) if references is not None
                 else ())
    for k, c in enumerate(requests):
        directory = out / f"request-{k + 1}"
        if not (directory / "request.json").is_file():
            what = (f"set {c} ({len(sets[k])} train examples)" if plan.examples
                    else f"class {c}")
            log(f"request {k + 1}/{n}: forget {what} with {plan.method}"
                + (f" (forgotten before: {plan.noun} {list(requests[:k])})" if k else ""))
            t0 = time.perf_counter()
            stop = stop_during[1] if stop_during and stop_during[0] == k + 1 else None
            task = (next_examples_task(base, params, sets[k], sets[:k], cfg.forget_reward)
                    if plan.examples else request_task(base, requests, k, params))
            if not _edit(plan, task, directory, lambda s: None, stop):
                log(f"stopped during request {k + 1}; the same call resumes it")
                return {"stopped_at_request": k + 1}
            atomic_write_json(directory / "request.json", {
                "request": c, "earlier": list(requests[:k]), "method": plan.method,
                "seconds": round(time.perf_counter() - t0, 3)})
        params, _ = load_edited(directory, like=base.params)
        done = json.loads((directory / "request.json").read_text())
        so_far = requests[:k + 1]
        if plan.examples:
            ref = _reference(partial(example_reference_figures, base, sets[:k + 1], seed),
                             ("sets", cfg.forget_fraction, cfg.forget_seed, k + 1), seed,
                             references, model_key)
            rep = example_sequence_report(base, params, sets[:k + 1], ref)
        else:
            ref = _reference(partial(reference_figures, base, so_far, seed), tuple(so_far), seed,
                             references, model_key)
            rep = sequence_report(base, params, so_far, ref)
        steps.append({"request": c, "seconds": done["seconds"], **rep})
        log(_request_line(k + 1, n, steps[-1]))
    result = {"format": FORMAT, "plan": plan.to_json(), "dataset": base.dataset.name,
              "method": plan.method, "requests": [int(c) for c in requests], "before": before,
              "after_each": steps, "total_seconds": round(sum(s["seconds"] for s in steps), 3)}
    if plan.examples:
        result["examples"] = {"fraction": cfg.forget_fraction, "seed": cfg.forget_seed,
                              "reward": cfg.forget_reward, "sizes": [len(s) for s in sets]}
    atomic_write_json(out / "sequence.json", result)
    plot_sequence(out / "sequence.png", result)
    log(summary_table(result))
    return result


def _request_line(k: int, n: int, s: dict) -> str:
    forgot = " ".join(f"{c}:{a:.2f}" for c, a in s["forget_acc_by_request"].items())
    return (f"request {k}/{n} done in {s['seconds']:.1f} s: forget acc by request {forgot}, "
            f"retain {s['retain_acc']:.3f}, test {s['test_acc']:.3f}, MIA-Efficacy "
            f"{s['mia_efficacy']:.1f}, Avg. Gap {s['avg_gap']:.2f}")


def summary_table(result: dict) -> str:
    """The sequence as a table: one row per request (test split)."""
    b, noun = result["before"], "set" if "examples" in result else "class"
    where = ("forget and retain sets: train split; test: test split; relapse: the highest "
             "accuracy of an earlier set, held out at the test accuracy" if noun == "set" else
             "test split; relapse: the highest forget accuracy of an earlier request")
    lines = [f"\nmaskshift sequence: {result['method']} on {result['dataset']}, {noun} requests "
             f"{result['requests']} ({where})",
             f"  {'after':<12}{'forget':>8}{'relapse':>9}{'retain':>8}{'(orig)':>8}{'test':>8}"
             f"{'MIA-Eff':>9}{'AvgGap':>8}{'seconds':>9}",
             f"  {'(original)':<12}{'':>8}{'':>9}{'':>8}{'':>8}{b['test_acc']:>8.3f}"]
    for k, s in enumerate(result["after_each"], 1):
        relapse = "-" if s["worst_relapse"] is None else f"{s['worst_relapse']:.3f}"
        latest = s["forget_acc_by_request"][str(s["request"])]
        label = f"{k}: {noun} {s['request']}"
        lines.append(f"  {label:<12}{latest:>8.3f}{relapse:>9}"
                     f"{s['retain_acc']:>8.3f}{s['retain_acc_original']:>8.3f}"
                     f"{s['test_acc']:>8.3f}{s['mia_efficacy']:>9.1f}"
                     f"{s['avg_gap']:>8.2f}{s['seconds']:>9.1f}")
    lines.append(f"  total editing time {result['total_seconds']:.1f} s")
    return "\n".join(lines)


def plot_sequence(path: Path, result: dict) -> None:
    """``sequence.png``: each request's forget accuracy from its request on (relapse), retain
    and test accuracy, and the Avg. Gap, against the request number."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, requests = result["after_each"], result["requests"]
    noun = "set" if "examples" in result else "class"
    x = np.arange(1, len(steps) + 1)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for k, c in enumerate(requests):
        ys = [s["forget_acc_by_request"][str(c)] for s in steps[k:]]
        axes[0].plot(x[k:], ys, marker="o", label=f"{noun} {c}")
    if noun == "set":  # the level a set should sit at: held out
        axes[0].plot(x, [s["test_acc"] for s in steps], "k--", label="held out (test)")
    axes[0].set(xlabel="request", ylabel="forget accuracy (train set)" if noun == "set" else
                "forget accuracy (test)", ylim=(-0.02, 1.02),
                title="Each request's forget accuracy (relapse)")
    axes[0].legend(fontsize=8)
    for key, style in (("retain_acc", "-"), ("retain_acc_original", "--"), ("test_acc", "-")):
        axes[1].plot(x, [s[key] for s in steps], style, marker="o", label=key)
    axes[1].set(xlabel="request", ylabel="accuracy (test)", title="Utility (erosion)")
    axes[1].legend(fontsize=8)
    axes[2].plot(x, [s["avg_gap"] for s in steps], marker="o")
    axes[2].set(xlabel="request", ylabel="Avg. Gap (points)",
                title="Gap to the model retrained without all so far")
    for ax in axes:
        ax.set_xticks(x)
    fig.suptitle(f"{result['method']} on {result['dataset']}, requests {requests}")
    fig.tight_layout()
    save_figure(fig, path)
