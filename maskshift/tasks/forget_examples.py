"""Forgetting a set of train examples ("forget my data"), not a class: :class:`ExampleObjective`.

A model retrained without the examples still classifies most of them correctly: to it they are
unseen examples like any other. So the goal is not forget accuracy 0 but a forget set that looks
**held out**: its accuracy, confidence and membership verdict at the level of data the model
never saw. Overshooting (forget accuracy far below held-out accuracy) is a membership signal too;
every edit term here is two-sided.

The held-out levels are constants of the original model on the **val** split (its accuracy, its
mean true-class confidence, and the member rate of a confidence-threshold attack fitted on
retain-train vs val), measured once when the task is built (:func:`heldout_levels`); the reward
itself reads only train minibatches.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from maskshift.data import Dataset
from maskshift.metrics import confidence_threshold, example_unlearning_report
from maskshift.metrics import unlearning as U
from maskshift.metrics.field import true_class_confidence
from maskshift.tasks.objectives import (
    Objective,
    SequencePool,
    UnlearnObjective,
    forget_retain_arrays,
    logits_of_parts,
    row_ce,
    sample_forget_retain,
    weighted_mean,
    whole_forget_retain,
)

# the edit term each reward measures the forget set by (ExampleObjective.reward)
FORGET_REWARDS = ("confidence", "accuracy_gap", "attack")
# a gap this small counts as met: the normaliser of the edit term (see ExampleObjective.terms)
GAP_FLOOR = 0.01


@dataclasses.dataclass(frozen=True)
class HeldoutLevels:
    """What the original model does on held-out (val) data: ``accuracy``, mean true-class
    ``confidence``, and the threshold attack's cut (``attack_threshold``, fitted on retain-train
    vs val confidences) with the share of val examples it calls members (``member_rate``)."""

    accuracy: float
    confidence: float
    attack_threshold: float
    member_rate: float


def heldout_levels(apply_fn, params, dataset: Dataset, forget: np.ndarray) -> HeldoutLevels:
    """The :class:`HeldoutLevels` of ``params`` on ``dataset``'s val split, the attack fitted
    on the train examples outside ``forget`` (a boolean mask of train rows)."""
    logits = jax.jit(apply_fn)
    tr, va = dataset.train, dataset.val
    conf_tr = true_class_confidence(np.asarray(logits(params, jnp.asarray(tr.x))), tr.y)
    val_logits = np.asarray(logits(params, jnp.asarray(va.x)))
    conf_va = true_class_confidence(val_logits, va.y)
    cut = confidence_threshold(conf_tr[~forget], conf_va)
    return HeldoutLevels(accuracy=float((val_logits.argmax(-1) == va.y).mean()),
                         confidence=float(conf_va.mean()), attack_threshold=cut,
                         member_rate=float((conf_va >= cut).mean()))


@dataclasses.dataclass(frozen=True)
class ExampleObjective(SequencePool, Objective):
    """Forget the train examples ``forget_indices`` (rows of the train split) while keeping the
    rest: make them look held out.

    Metrics (a fresh train minibatch of ``batch_size`` retain and ``batch_size`` forget
    examples): ``retain_ce``, ``forget_gap`` (how far the forget set is from the held-out level,
    by ``reward``), ``retain_acc`` and ``forget_acc``. ``forget_gap`` by ``reward``:

    - ``"confidence"`` (default, differentiable): |mean true-class probability on the forget
      examples − the held-out confidence|;
    - ``"accuracy_gap"``: |forget accuracy − held-out accuracy| (no gradient: the gradient
      editors refuse it);
    - ``"attack"``: |share of forget examples a confidence-threshold attack calls members − its
      member rate on held-out data| (no gradient).

    Reward terms: ``utility = retain_ce0 - retain_ce`` and ``edit = (gap0 - gap) /
    max(gap0, 0.01)``, where ``0`` marks the original's values on the whole train split: the
    edit term is 1 where the forget set sits exactly at the held-out level, 0 where the original
    sat, negative past it on either side. Normalised because the gaps are small (a confident
    model's forget and held-out confidences differ by a few hundredths) and differ by reward.

    ``pool_forgotten``: with a ``pool``, per target, the train rows earlier requests took out
    of that target's retain set (a pool of example requests in the middle of sequences, each
    starting from the model those requests left: :func:`~maskshift.tasks.
    sequence_examples_pool_task`). Those rows are in neither its forget nor its retain set, and
    its reports leave them out of the train split, as
    :func:`~maskshift.tasks.next_examples_task` does for one request. The held-out ``levels``
    stay one set for every target (the model the pool was built on).
    """

    forget_indices: tuple[int, ...] = ()
    levels: HeldoutLevels = HeldoutLevels(1.0, 1.0, 1.0, 1.0)
    pool: tuple[tuple[int, ...], ...] = ()
    reward: str = "confidence"
    batch_size: int = 64
    # not in the repr (as UnlearnObjective's): task_fingerprint adds it where it is set
    pool_forgotten: tuple[tuple[int, ...], ...] = dataclasses.field(default=(), repr=False)
    name: str = "unlearn"
    metric_names: tuple[str, ...] = ("retain_ce", "forget_gap", "retain_acc", "forget_acc")
    env_defaults: tuple[tuple[str, float], ...] = UnlearnObjective.env_defaults
    control_utility_weight: float = 1.0
    summary_keys: tuple[str, ...] = UnlearnObjective.summary_keys

    def __post_init__(self):
        if self.reward not in FORGET_REWARDS:
            raise ValueError(f"Unknown forget reward {self.reward!r}; choose one of "
                             f"{', '.join(map(repr, FORGET_REWARDS))}.")
        if not self.forget_indices:
            raise ValueError("The forget set is empty; name at least one train example.")
        self._check_pool_forgotten("train example")

    @property
    def forget_classes(self) -> tuple[int, ...]:
        """None: the request names examples, not classes."""
        return ()

    @property
    def targets(self) -> tuple[tuple[int, ...], ...]:
        """The forget set of each target: ``pool`` (amortized training: one set drawn per
        episode), or ``(forget_indices,)``."""
        return self.pool or (self.forget_indices,)

    @property
    def num_targets(self) -> int:
        return len(self.targets)

    def target_label(self, target: int) -> str:
        label = f"set {target} ({len(self.targets[target])} examples)"
        gone = self.left_out(target)
        return f"{label} after {len(gone)} forgotten" if gone else label

    @property
    def differentiable_hint(self) -> str:
        return "`forget_reward='confidence'`" if self.reward != "confidence" else ""

    def train_forget(self, dataset: Dataset, target: int = 0) -> np.ndarray:
        """``target``'s forget set as a boolean mask over ``dataset``'s train rows."""
        return self._members(len(dataset.train.y))[target]

    def _members(self, n: int) -> np.ndarray:
        """``[num_targets, n]``: each target's forget rows marked."""
        return self._mark(self.targets, n)

    def _mark(self, row_sets, n: int) -> np.ndarray:
        member = np.zeros((len(row_sets), n), bool)
        for t, rows in enumerate(row_sets):
            if rows and max(rows) >= n:
                raise ValueError(f"Forget index {max(rows)} is outside the train split's rows "
                                 f"0..{n - 1}.")
            member[t, list(rows)] = True
        return member

    def arrays(self, encode, split):
        member = self._members(len(split.y))
        retain = ~member
        if self.pool_forgotten:
            retain &= ~self._mark(self.pool_forgotten, len(split.y))
        return forget_retain_arrays(encode(split.x), split.y, member, retain)

    def sample(self, key, arrays, target):
        return sample_forget_retain(key, arrays, target, self.batch_size)

    def whole(self, arrays, target):
        return {"h": arrays["h"], "y": arrays["y"], "forget": arrays["forget"][target],
                "retain": arrays["retain"][target]}

    def target_sets(self, arrays, target):
        return whole_forget_retain(arrays, target)

    def _gap(self, logits, y, w):
        """How far the (``w``-weighted) forget rows are from the held-out level."""
        lv = self.levels
        if self.reward == "confidence":
            return jnp.abs(U.true_class_probability(logits, y, w) - lv.confidence)
        if self.reward == "accuracy_gap":
            return jnp.abs(U.accuracy(logits, y, w) - lv.accuracy)
        p = jnp.take_along_axis(jax.nn.softmax(logits, -1), y[:, None], -1)[:, 0]
        members = (p >= lv.attack_threshold).astype(jnp.float32)
        rate = members.mean() if w is None else weighted_mean(members, w)
        return jnp.abs(rate - lv.member_rate)

    def measure(self, logits_fn, batch):
        if "forget" in batch:  # the whole split, the forget rows marked
            logits, y = logits_fn(batch["h"]), batch["y"]
            f, r = batch["forget"].astype(jnp.float32), batch["retain"].astype(jnp.float32)
            return jnp.stack([weighted_mean(row_ce(logits, y), r), self._gap(logits, y, f),
                              U.accuracy(logits, y, r), U.accuracy(logits, y, f)])
        lr, lf = logits_of_parts(logits_fn, batch["h_retain"], batch["h_forget"])
        yr, yf = batch["y_retain"], batch["y_forget"]
        return jnp.stack([row_ce(lr, yr).mean(), self._gap(lf, yf, None), U.accuracy(lr, yr),
                          U.accuracy(lf, yf)])

    def terms(self, metrics, base):
        return base[0] - metrics[0], (base[1] - metrics[1]) / jnp.maximum(base[1], GAP_FLOOR)

    def report(self, apply_fn, params, dataset, split, with_mia, target):
        forget = self.train_forget(dataset, target)
        gone = self.left_out(target)
        if gone:  # what the model still has to know, as a request of a sequence reports it
            forget = np.delete(forget, gone)
            dataset = dataset.without_train_rows(gone)
        return example_unlearning_report(apply_fn, params, dataset, forget, split, with_mia,
                                         self.levels.attack_threshold)

    def selection_key(self, metrics, original, tolerance):
        """Among steps whose held-out accuracy (``test_acc`` of the val report) is within
        ``tolerance`` of the original's, the smallest |forget accuracy − held-out accuracy|,
        then the smallest |forget confidence − held-out confidence|, then the higher held-out
        accuracy: two-sided, as the goal."""
        ok = metrics["test_acc"] >= original["test_acc"] - tolerance
        return (ok, -abs(metrics["forget_acc"] - metrics["test_acc"]),
                -abs(metrics["forget_confidence"] - metrics["heldout_confidence"]),
                metrics["test_acc"])
