"""Objectives: how a task measures a model on a minibatch, turns that into reward terms, reports
an edit and ranks the steps of an episode.

An :class:`Objective` is a frozen dataclass (static: it lives on the environment, never in a
traced argument). A new editing goal is one new subclass: :class:`UnlearnObjective`,
:class:`BiasObjective` and :class:`BackdoorObjective` are the built-in ones (docs/objectives.md
writes one of your own).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from maskshift._types import Array, PRNGKey
from maskshift.data import Split
from maskshift.data.backdoor import Trigger, victims
from maskshift.metrics import (
    attack_success_rate,
    backdoor_report,
    bias_report,
    meets_unlearning_target,
    unlearning_report,
)
from maskshift.metrics import unlearning as U


class Objective:
    """How a task measures a model on a minibatch. Subclasses are frozen dataclasses (static).

    An objective has one or more **targets** (an unlearning pool: one forget set per target; the
    bias objective: one). Every array method takes the target as data (an int32 index), so one
    compiled program serves every target and a ``vmap`` over environments may hold a different
    target in each.
    """

    name: str
    metric_names: tuple[str, ...]
    # The gradient controller's step direction is normalised grad(edit term) plus this weight times
    # normalised grad(utility term) (maskshift.controls.gradient_act).
    control_utility_weight: float = 1.0
    # EnvParams defaults that suit this objective (reward coefficients); overrides win.
    env_defaults: tuple[tuple[str, float], ...] = ()
    # the report's headline keys, in the order a summary table prints them
    summary_keys: tuple[str, ...] = ()

    def arrays(self, encode: Callable[[np.ndarray], np.ndarray], split: Split) -> dict:
        """The arrays an environment samples from: ``encode`` maps inputs to the cached
        activations below the edited layers."""
        raise NotImplementedError

    @property
    def num_targets(self) -> int:
        return 1

    def target_label(self, target: int) -> str:
        """How a report names ``target`` (one of :attr:`num_targets`)."""
        return str(target)

    def sample(self, key: PRNGKey, arrays: dict, target: Array) -> dict:
        """A fresh minibatch of ``arrays`` for ``target``."""
        raise NotImplementedError

    def whole(self, arrays: dict, target: Array) -> dict:
        """The whole split as one batch for ``measure`` (``target`` may be traced)."""
        return arrays

    def sample_shared(self, key: PRNGKey, arrays: dict) -> dict:
        """One minibatch for every environment of a step, whatever its target (the shared
        draw); :meth:`for_target` adapts it to one environment's target. With one target it is
        :meth:`sample`'s minibatch."""
        return self.sample(key, arrays, 0)

    def for_target(self, batch: dict, target: Array) -> dict:
        """A shared minibatch as ``target`` reads it (cheap: weights, never a gather)."""
        return batch

    def target_sets(self, arrays: dict, target: int) -> dict:
        """The whole split for a concrete ``target``, in ``sample``'s layout (host side: the
        original's metrics are computed on it, exactly as on a minibatch)."""
        return arrays

    def measure(self, logits_fn: Callable[[Array], Array], batch: dict) -> Array:
        """Metrics ``[len(metric_names)]`` of a model (given as ``h -> logits``) on ``batch``."""
        raise NotImplementedError

    def terms(self, metrics: Array, base: Array) -> tuple[Array, Array]:
        """``(utility, edit)`` terms of the reward from metrics and the original's metrics."""
        raise NotImplementedError

    def report(self, apply_fn, params, dataset, split: str, with_mia: bool, target: int) -> dict:
        """The held-out figures of ``params`` on ``split`` (host side; :mod:`maskshift.metrics`),
        the same code for every editor and baseline."""
        raise NotImplementedError

    def selection_key(self, metrics: dict, original: dict, tolerance: float) -> tuple:
        """Sort key of an episode's step from its :meth:`report` on val (larger is better)
        against the original's; a step that costs more than ``tolerance`` of utility ranks below
        every step that keeps it."""
        raise NotImplementedError

    @property
    def differentiable_hint(self) -> str:
        """Where this objective's reward has no gradient, the setting that gives a
        differentiable one (named in the gradient editors' refusal); else empty."""
        return ""

    def meets_target(self, before: dict, after: dict) -> bool | None:
        """Whether an edit reached the objective's goal, from two :meth:`report` dicts of one
        split (``None``: the objective states no target)."""
        return None


def row_ce(logits, y):
    """Cross-entropy of each row, ``[..., N, C], [N] -> [..., N]``."""
    return -jnp.take_along_axis(jax.nn.log_softmax(logits, -1), y[..., None], -1)[..., 0]


def _draw(key, n_avail: int, batch: int):
    return jax.random.randint(key, (batch,), 0, n_avail)


def logits_of_parts(logits_fn, *hs):
    """``logits_fn`` of each of ``hs``, computed in one pass over their concatenation.

    One ``[sum of rows, m] @ [m, n]`` product instead of one per part: under ``vmap`` on XLA:CPU
    the unlearning step's forward pass (its largest cost) took 127 instead of 197 µs per
    environment; the logits are bit-identical."""
    sizes = [h.shape[0] for h in hs]
    logits = logits_fn(jnp.concatenate(hs, axis=0))
    return jnp.split(logits, np.cumsum(sizes)[:-1].tolist(), axis=0)


class SequencePool:
    """What a pool of requests in the middle of sequences adds to an objective with a ``pool``
    (:class:`UnlearnObjective`: classes; ``ExampleObjective``: train rows): ``pool_forgotten``,
    per target, what earlier requests took out of that target's retain set."""

    pool: tuple[tuple[int, ...], ...]
    pool_forgotten: tuple[tuple[int, ...], ...]

    def _check_pool_forgotten(self, what: str) -> None:
        """``ValueError`` unless there is one entry per target and no target asks to forget a
        ``what`` (``"class"``, ``"train example"``) its earlier requests already took out."""
        if self.pool_forgotten and len(self.pool_forgotten) != len(self.pool):
            raise ValueError(f"pool_forgotten has {len(self.pool_forgotten)} entries for a pool "
                             f"of {len(self.pool)} targets; give one per target.")
        for i, (t, gone) in enumerate(zip(self.pool, self.pool_forgotten, strict=False)):
            again = set(t) & set(gone)
            if again:
                raise ValueError(f"Target {i} asks to forget {what} {min(again)}, which its "
                                 "earlier requests already took out of the retain set.")

    def left_out(self, target: int) -> tuple[int, ...]:
        """What earlier requests took out of ``target``'s retain set (:attr:`pool_forgotten`;
        nothing without)."""
        return tuple(self.pool_forgotten[target]) if self.pool_forgotten else ()


@dataclasses.dataclass(frozen=True)
class UnlearnObjective(SequencePool, Objective):
    """Forget ``forget_classes`` while keeping the rest.

    Metrics (on a fresh train minibatch of ``batch_size`` retain and ``batch_size`` forget
    examples): ``retain_ce`` (mean cross-entropy on retain examples), ``forget_ce`` (mean
    cross-entropy on forget examples, each capped at ``ce_cap``), ``retain_acc``, ``forget_acc``.
    Reward terms, relative to the original model's values on the whole train split:
    ``utility = retain_ce0 - retain_ce`` and ``edit = forget_ce - forget_ce0``.

    Cross-entropy rather than accuracy or probability: a confident model's probabilities sit on a
    plateau, so small edits would earn no signal at all; cross-entropy moves from the first step.
    The cap (default 5, a true-class probability of 0.7%) stops the agent from chasing ever
    larger losses on examples it has already forgotten.

    ``pool``: a distribution of unlearning tasks (amortized training), one forget set per target;
    each episode draws one. Empty (default): one target, ``forget_classes``. The train arrays are
    laid out once for every target: all activations ``h [N, ...]`` and labels, and per target the
    row indices of its retain and forget examples (``[P, N]``, padded) with their counts, so a
    per-environment draw is two gathers, whatever the target.

    ``forgotten``: classes an earlier request already made the model forget (a sequence of edits,
    :func:`~maskshift.tasks.next_request_task`); the task's data hold none of their examples, so
    they are in neither the forget nor the retain set, and the edit neither pays for keeping them
    forgotten nor for bringing them back (docs/sequences.md measures whether they come back).

    ``pool_forgotten``: with a ``pool``, per target, the classes earlier requests took out of
    that target's retain set (a pool of requests in the middle of sequences, each starting from
    the model those requests left: :func:`~maskshift.tasks.sequence_pool_task`). The data keep
    their rows; each target's retain rows, its original's metrics and its reports leave them
    out, as :attr:`forgotten` does for one request. Empty (default): nothing left out.
    """

    forget_classes: tuple[int, ...] = (7,)
    batch_size: int = 64
    ce_cap: float = 5.0
    pool: tuple[tuple[int, ...], ...] = ()
    forgotten: tuple[int, ...] = ()
    # not in the repr, so the objectives of every other task keep their repr (and the runs and
    # fingerprints that record it); task_fingerprint adds it where it is set
    pool_forgotten: tuple[tuple[int, ...], ...] = dataclasses.field(default=(), repr=False)
    name: str = "unlearn"
    metric_names: tuple[str, ...] = ("retain_ce", "forget_ce", "retain_acc", "forget_acc")
    # retain cross-entropy moves ~40x less than the forget one: weigh it up to keep utility
    env_defaults: tuple[tuple[str, float], ...] = (("lambda_utility", 10.0), ("lambda_edit", 1.0))
    # the gradient controller's weight on the normalised utility gradient (maskshift.controls)
    control_utility_weight: float = 1.0
    summary_keys: tuple[str, ...] = ("forget_acc", "retain_acc", "test_acc", "mia", "mia_efficacy")

    def __post_init__(self):
        self._check_pool_forgotten("class")

    @property
    def targets(self) -> tuple[tuple[int, ...], ...]:
        """The forget set of each target: ``pool``, or ``(forget_classes,)``."""
        return self.pool or (tuple(self.forget_classes),)

    @property
    def num_targets(self) -> int:
        return len(self.targets)

    def target_label(self, target: int) -> str:
        label = ",".join(map(str, self.targets[target]))
        gone = self.left_out(target)
        return f"{label} after {','.join(map(str, gone))}" if gone else label

    def train_forget(self, dataset) -> np.ndarray:
        """The forget set (every target's classes) as a boolean mask over the train rows."""
        return np.isin(np.asarray(dataset.train.y), self.forget_classes)

    def arrays(self, encode, split):
        member = np.stack([np.isin(split.y, t) for t in self.targets])  # [P, N]
        retain = np.stack([~f & ~np.isin(split.y, self.left_out(k))
                           for k, f in enumerate(member)])
        for t, f, r in zip(self.targets, member, retain, strict=True):
            if not r.any() or not f.any():
                raise ValueError(f"Forget classes {list(t)} leave an empty forget or retain set "
                                 "in the train split.")
        return forget_retain_arrays(encode(split.x), split.y, member, retain)

    def sample(self, key, arrays, target):
        return sample_forget_retain(key, arrays, target, self.batch_size)

    def whole(self, arrays, target):
        return {"h": arrays["h"], "y": arrays["y"], "forget": arrays["forget"][target],
                "retain": arrays["retain"][target]}

    def sample_shared(self, key, arrays):
        """One target: :meth:`sample`. A pool of ``P``: class-stratified, ``batch_size // P``
        forget rows of each target and ``batch_size`` rows of the whole split; each environment
        weighs its own target's forget block as forget rows and the whole-split rows not in its
        forget set as retain rows (:meth:`for_target`), so every environment runs the same rows
        (the same number as :meth:`sample`'s) through its own weights."""
        num = self.num_targets
        if num == 1:
            return self.sample(key, arrays, 0)
        per = max(1, self.batch_size // num)
        kr, kf = jax.random.split(key)
        draws = jax.random.randint(kf, (num, per), 0, arrays["n_forget"][:, None])
        i_f = jnp.take_along_axis(arrays["forget_idx"], draws, 1).reshape(-1)  # [P * per]
        ir = _draw(kr, arrays["y"].shape[0], self.batch_size)
        return {"h_retain": arrays["h"][ir], "y_retain": arrays["y"][ir],
                "h_forget": arrays["h"][i_f], "y_forget": arrays["y"][i_f],
                "block": jnp.repeat(jnp.arange(num), per), "retain": arrays["retain"][:, ir]}

    def for_target(self, batch, target):
        if "block" not in batch:
            return batch
        return {"h_retain": batch["h_retain"], "y_retain": batch["y_retain"],
                "h_forget": batch["h_forget"], "y_forget": batch["y_forget"],
                "w_retain": batch["retain"][target].astype(jnp.float32),
                "w_forget": (batch["block"] == target).astype(jnp.float32)}

    def target_sets(self, arrays, target):
        return whole_forget_retain(arrays, target)

    def measure(self, logits_fn, batch):
        if "forget" in batch:  # the whole split, the target's forget and retain rows marked
            logits, y = logits_fn(batch["h"]), batch["y"]
            f, r = batch["forget"].astype(jnp.float32), batch["retain"].astype(jnp.float32)
            ce = row_ce(logits, y)
            return jnp.stack([weighted_mean(ce, r),
                              weighted_mean(jnp.minimum(ce, self.ce_cap), f),
                              U.accuracy(logits, y, r), U.accuracy(logits, y, f)])
        lr, lf = logits_of_parts(logits_fn, batch["h_retain"], batch["h_forget"])
        if "w_retain" in batch:  # a shared minibatch, weighted for one target
            wr, wf, yr, yf = batch["w_retain"], batch["w_forget"], batch["y_retain"], \
                batch["y_forget"]
            return jnp.stack([weighted_mean(row_ce(lr, yr), wr),
                              weighted_mean(jnp.minimum(row_ce(lf, yf), self.ce_cap), wf),
                              U.accuracy(lr, yr, wr), U.accuracy(lf, yf, wf)])
        return jnp.stack([row_ce(lr, batch["y_retain"]).mean(),
                          jnp.minimum(row_ce(lf, batch["y_forget"]), self.ce_cap).mean(),
                          U.accuracy(lr, batch["y_retain"]), U.accuracy(lf, batch["y_forget"])])

    def terms(self, metrics, base):
        return base[0] - metrics[0], metrics[1] - base[1]

    def report(self, apply_fn, params, dataset, split, with_mia, target):
        gone = self.left_out(target)
        if gone:  # what the model still has to know, as a request of a sequence reports it
            dataset = dataset.without_classes(gone)
        return unlearning_report(apply_fn, params, dataset, self.targets[target], split, with_mia)

    @property
    def confidence_floor(self) -> float:
        """The forget confidence below which selection treats steps as equally forgotten: the
        true-class probability at the reward's cross-entropy cap, ``exp(-ce_cap)`` (0.0067 at
        the default cap of 5). The reward pays nothing for forgetting past it, and selection
        follows."""
        return float(np.exp(-self.ce_cap))

    def selection_key(self, metrics, original, tolerance):
        """Among steps whose retain accuracy is within ``tolerance`` of the original's, the lowest
        forget accuracy; among those, the lowest forget confidence (true-class probability on
        the forget examples) down to :attr:`confidence_floor`, then the higher retain accuracy.
        The confidence breaks the tie between steps that all forget the few val examples (an
        early step at the decision boundary leaked on test); the floor ends that race once every
        step is past where the reward stops paying (docs/training.md, "What a run does and
        writes")."""
        ok = metrics["retain_acc"] >= original["retain_acc"] - tolerance
        return (ok, -metrics["forget_acc"],
                -max(metrics["forget_confidence"], self.confidence_floor), metrics["retain_acc"])

    def meets_target(self, before, after):
        """Forget accuracy at most 0.02, retain accuracy at most 3 points below the original's
        (:func:`maskshift.metrics.meets_unlearning_target`)."""
        return meets_unlearning_target(before, after)


# the backdoor objective's edit terms (BackdoorObjective.edit_term)
BACKDOOR_EDIT_TERMS = ("true_label", "away", "success_rate")


def forget_retain_arrays(h, y, member: np.ndarray, retain: np.ndarray | None = None) -> dict:
    """The train arrays of forgetting ``member`` (``[P, N]`` bool, a forget set per target):
    activations, labels, the membership, each target's retain rows (``retain``, default every
    row not in its forget set) and per target the row indices of its retain and forget examples
    (padded) with their counts, so a per-environment draw is two gathers."""
    retain = ~member if retain is None else retain
    return {"h": h, "y": y, "forget": member, "retain": retain,
            "retain_idx": _row_indices(retain), "forget_idx": _row_indices(member),
            "n_retain": retain.sum(1).astype(np.int32),
            "n_forget": member.sum(1).astype(np.int32)}


def sample_forget_retain(key: PRNGKey, arrays: dict, target: Array, batch_size: int) -> dict:
    """``batch_size`` retain and ``batch_size`` forget rows of ``target``, drawn with
    replacement from :func:`forget_retain_arrays`' layout."""
    kr, kf = jax.random.split(key)
    ir = arrays["retain_idx"][target, _draw(kr, arrays["n_retain"][target], batch_size)]
    i_f = arrays["forget_idx"][target, _draw(kf, arrays["n_forget"][target], batch_size)]
    return {"h_retain": arrays["h"][ir], "y_retain": arrays["y"][ir],
            "h_forget": arrays["h"][i_f], "y_forget": arrays["y"][i_f]}


def whole_forget_retain(arrays: dict, target: int) -> dict:
    """Every retain and forget row of a concrete ``target``, in the minibatch's layout."""
    f, r = np.asarray(arrays["forget"][target]), np.asarray(arrays["retain"][target])
    h, y = arrays["h"], arrays["y"]
    return {"h_retain": h[r], "y_retain": y[r], "h_forget": h[f], "y_forget": y[f]}


def _row_indices(mask: np.ndarray) -> np.ndarray:
    """``[P, N]`` bool -> ``[P, N]`` int32: row ``p`` lists the indices where ``mask[p]`` is
    true, then zeros (never drawn: draws stop at the count)."""
    out = np.zeros(mask.shape, np.int32)
    for p, m in enumerate(mask):
        idx = np.flatnonzero(m)
        out[p, : idx.size] = idx
    return out


def weighted_mean(x, w):
    return (x * w).sum() / jnp.maximum(w.sum(), 1e-12)


@dataclasses.dataclass(frozen=True)
class BiasObjective(Objective):
    """Remove the classifier's dependence on identity terms while keeping its accuracy.

    Metrics (on a fresh train minibatch and its counterfactual twins): ``acc_p`` (mean probability
    of the label), ``cf_gap`` (mean |p(positive | x) - p(positive | twin)|, a smooth flip rate),
    ``accuracy`` and ``flip_rate``. The edit term needs no labels, so annotator bias in the train
    labels cannot reward keeping the bias.
    Reward terms: ``utility = acc_p - acc_p0`` and ``edit = cf_gap0 - cf_gap``.
    """

    batch_size: int = 128
    name: str = "bias"
    metric_names: tuple[str, ...] = ("acc_p", "cf_gap", "accuracy", "flip_rate")
    env_defaults: tuple[tuple[str, float], ...] = (("lambda_utility", 2.0), ("lambda_edit", 4.0))
    # the train labels carry the annotator bias: a full-weight label gradient pulls the edit back
    # toward the shortcut (measured: worst-group accuracy stayed 0.000 at 1.0)
    control_utility_weight: float = 0.3
    summary_keys: tuple[str, ...] = ("accuracy", "worst_group_acc", "fpr_gap", "flip_rate")

    def arrays(self, encode, split):
        if split.x_cf is None:
            raise ValueError("The bias objective needs counterfactual twins (Split.x_cf) in the "
                             "data.")
        return {"h": encode(split.x), "h_cf": encode(split.x_cf), "y": split.y}

    def sample(self, key, arrays, target):
        del target  # one target
        i = _draw(key, arrays["y"].shape[0], self.batch_size)
        return {"h": arrays["h"][i], "h_cf": arrays["h_cf"][i], "y": arrays["y"][i]}

    def measure(self, logits_fn, batch):
        lg, lc = logits_of_parts(logits_fn, batch["h"], batch["h_cf"])
        p, pc = jax.nn.softmax(lg, -1)[..., 1], jax.nn.softmax(lc, -1)[..., 1]
        flips = (jnp.argmax(lg, -1) != jnp.argmax(lc, -1)).astype(jnp.float32)
        return jnp.stack([U.true_class_probability(lg, batch["y"]), jnp.abs(p - pc).mean(),
                          U.accuracy(lg, batch["y"]), flips.mean()])

    def terms(self, metrics, base):
        return metrics[0] - base[0], base[1] - metrics[1]

    def report(self, apply_fn, params, dataset, split, with_mia, target):
        del with_mia, target  # no attack; one target
        return bias_report(apply_fn, params, dataset, split)

    def selection_key(self, metrics, original, tolerance):
        """Among steps whose accuracy is within ``tolerance`` of the original's, the highest
        worst-group accuracy (ties: the higher accuracy)."""
        ok = metrics["accuracy"] >= original["accuracy"] - tolerance
        return (ok, metrics["worst_group_acc"], metrics["accuracy"])


@dataclasses.dataclass(frozen=True)
class BackdoorObjective(Objective):
    """Remove a backdoor: images carrying ``trigger`` stop being classified as its target class
    while clean accuracy stays.

    The defender knows the trigger (as after trigger reconstruction, e.g. Neural Cleanse) and
    holds clean data: the train arrays are the clean train split and, stamped here, its images of
    other classes. Metrics (on a fresh train minibatch of ``batch_size`` clean and
    ``batch_size`` triggered images): ``clean_ce`` (cross-entropy of the clean images at
    temperature ``utility_temperature``), ``trigger_loss`` (the edit term's loss on the
    triggered images), ``clean_acc`` and ``asr`` (the share of triggered images classified as
    the target).

    Reward terms: ``utility = clean_ce0 - clean_ce`` and ``edit = trigger_loss0 - trigger_loss``,
    where ``trigger_loss`` is, by ``edit_term``:

    - ``"true_label"`` (default, differentiable): their cross-entropy to their true labels,
      capped at ``ce_cap``;
    - ``"away"`` (differentiable, needs no labels): ``-log(1 - p(target))``, pushing triggered
      images off the target class;
    - ``"success_rate"``: the attack success rate itself, which no gradient can follow (the
      gradient editors refuse it).

    The temperature (default 4): the backdoored model fits its clean train images almost
    perfectly, so their plain cross-entropy stays flat until predictions flip and the edit
    is blind to the clean accuracy it costs on held-out data; tempered logits move from the
    first step. Measured on val with the gradient controller and residual PPO
    (``benchmarks/backdoor_tuning.py``): docs/objectives.md, "The built-in third task".
    """

    trigger: Trigger = Trigger()
    batch_size: int = 64
    edit_term: str = "true_label"
    utility_temperature: float = 4.0
    ce_cap: float = 10.0
    name: str = "backdoor"
    metric_names: tuple[str, ...] = ("clean_ce", "trigger_loss", "clean_acc", "asr")
    env_defaults: tuple[tuple[str, float], ...] = (("lambda_utility", 10.0), ("lambda_edit", 1.0))
    control_utility_weight: float = 1.0
    summary_keys: tuple[str, ...] = ("clean_acc", "asr", "triggered_acc")
    # the goal of the task: attack success at most this, clean accuracy at most this far below
    target_asr: float = 0.05
    target_clean_drop: float = 0.02

    def __post_init__(self):
        if self.edit_term not in BACKDOOR_EDIT_TERMS:
            raise ValueError(f"Unknown backdoor edit term {self.edit_term!r}; choose one of "
                             f"{', '.join(map(repr, BACKDOOR_EDIT_TERMS))}.")
        if not self.utility_temperature > 0:
            raise ValueError(f"The utility temperature must be > 0, got "
                             f"{self.utility_temperature}.")

    @property
    def differentiable_hint(self):
        return "`backdoor_reward='true_label'`" if self.edit_term == "success_rate" else ""

    def arrays(self, encode, split):
        idx = victims(split, self.trigger)
        return {"h": encode(split.x), "y": split.y,
                "h_trigger": encode(self.trigger.stamp(split.x[idx])), "y_trigger": split.y[idx]}

    def sample(self, key, arrays, target):
        del target  # one target
        kc, kt = jax.random.split(key)
        ic = _draw(kc, arrays["y"].shape[0], self.batch_size)
        it = _draw(kt, arrays["y_trigger"].shape[0], self.batch_size)
        return {"h": arrays["h"][ic], "y": arrays["y"][ic],
                "h_trigger": arrays["h_trigger"][it], "y_trigger": arrays["y_trigger"][it]}

    def measure(self, logits_fn, batch):
        lc, lt = logits_of_parts(logits_fn, batch["h"], batch["h_trigger"])
        asr = attack_success_rate(lt, self.trigger.target)
        if self.edit_term == "away":
            p_target = jax.nn.softmax(lt, -1)[..., self.trigger.target]
            loss = -jnp.log1p(-jnp.minimum(p_target, 1.0 - 1e-6)).mean()
        elif self.edit_term == "true_label":
            loss = jnp.minimum(row_ce(lt, batch["y_trigger"]), self.ce_cap).mean()
        else:
            loss = asr
        return jnp.stack([row_ce(lc / self.utility_temperature, batch["y"]).mean(), loss,
                          U.accuracy(lc, batch["y"]), asr])

    def terms(self, metrics, base):
        return base[0] - metrics[0], base[1] - metrics[1]

    def report(self, apply_fn, params, dataset, split, with_mia, target):
        del with_mia, target  # no attack on membership; one target
        return backdoor_report(apply_fn, params, dataset, self.trigger, split)

    def selection_key(self, metrics, original, tolerance):
        """Among steps whose clean accuracy is within ``tolerance`` of the original's, the lowest
        attack success rate; ties: the higher accuracy on triggered images, then on clean."""
        ok = metrics["clean_acc"] >= original["clean_acc"] - tolerance
        return (ok, -metrics["asr"], metrics["triggered_acc"], metrics["clean_acc"])

    def meets_target(self, before, after):
        """Attack success at most ``target_asr`` (5%) with clean accuracy at most
        ``target_clean_drop`` (2 points) below the original's."""
        return bool(after["asr"] <= self.target_asr
                    and after["clean_acc"] >= before["clean_acc"] - self.target_clean_drop)



# the built-in objectives by name, and the headline keys of each one's report
OBJECTIVES: dict[str, type[Objective]] = {"unlearn": UnlearnObjective, "bias": BiasObjective,
                                          "backdoor": BackdoorObjective}
SUMMARY_KEYS = {name: cls.summary_keys for name, cls in OBJECTIVES.items()}
