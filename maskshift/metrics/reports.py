"""Whole-model metric reports on a dataset split, as plain Python numbers (for CLIs and JSON).

Every method (RL editors, baselines, the original model) is reported by these two functions, so
all figures are computed by the same code. Logits are computed by one jitted ``apply_fn`` call per
split; data enter as arguments, not as closed-over constants.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from maskshift._types import Params
from maskshift.data import Dataset
from maskshift.data.backdoor import Trigger, victims
from maskshift.metrics import bias as B
from maskshift.metrics import unlearning as U
from maskshift.metrics.backdoor import attack_success_rate
from maskshift.metrics.field import field_figures, true_class_confidence

ApplyFn = Callable[[Params, jax.Array], jax.Array]


def _logits(apply_fn: ApplyFn, params: Params, x: np.ndarray) -> jax.Array:
    return jax.jit(apply_fn)(params, jnp.asarray(x))


# compiled once per split shape: op by op, its Newton fit took 0.25 s of a 0.27 s report (the
# scores are bit-identical on the digits' 10 classes, original and edited models)
_membership_inference = jax.jit(U.membership_inference)


def unlearning_report(apply_fn: ApplyFn, params: Params, dataset: Dataset, forget_classes,
                      split: str = "test", with_mia: bool = True) -> dict:
    """Unlearning figures of one model on ``split``.

    Returns ``forget_acc``, ``retain_acc``, ``test_acc`` (overall accuracy on ``split``),
    ``forget_confidence`` (mean softmax probability of the true class on the forget examples: how
    far from the decision boundary they were forgotten), ``per_class_acc`` and ``mia`` (attack
    fitted on retain-train vs test, scored on forget-train). ``with_mia=False`` leaves the MIA
    out: it runs the model over the whole train and test splits, which selecting a step on val
    does not need. With the MIA come the field's figures (:mod:`maskshift.metrics.field`), in
    points: ``ua``, ``ra`` (train forget and retain sets), ``ta`` (test, outside the forget
    classes) and ``mia_efficacy``.
    """
    ev = dataset.split(split)
    logits = _logits(apply_fn, params, ev.x)
    y = jnp.asarray(ev.y)
    forget, retain = U.forget_retain_accuracy(logits, y, forget_classes)
    f = U.forget_mask(y, forget_classes)
    out = {
        "forget_acc": float(forget),
        "retain_acc": float(retain),
        "test_acc": float(U.accuracy(logits, y)),
        "forget_confidence": float(U.true_class_probability(logits, y, f)),
        "per_class_acc": [float(a) for a in U.per_class_accuracy(logits, y, dataset.num_classes)],
    }
    if with_mia:
        train_logits = _logits(apply_fn, params, dataset.train.x)
        train_forget = U.forget_mask(jnp.asarray(dataset.train.y), forget_classes)
        test_logits = logits if split == "test" else _logits(apply_fn, params, dataset.test.x)
        out["mia"] = float(_membership_inference(train_logits, test_logits, train_logits,
                                                  w_members=1.0 - train_forget,
                                                  w_target=train_forget))
        out.update(field_figures(train_logits, dataset.train.y, np.asarray(train_forget) > 0,
                                 test_logits, dataset.test.y,
                                 np.isin(dataset.test.y, np.atleast_1d(forget_classes))))
    return out


def example_unlearning_report(apply_fn: ApplyFn, params: Params, dataset: Dataset,
                              train_forget: np.ndarray, split: str = "test",
                              with_mia: bool = True, attack_threshold: float | None = None) -> dict:
    """Figures of one model for forgetting a set of train examples (``train_forget``: a boolean
    mask over the train split's rows).

    ``forget_acc`` and ``forget_confidence`` (mean true-class probability) are measured on the
    forget examples and ``retain_acc`` on the other train examples; ``test_acc`` and
    ``heldout_confidence`` on ``split`` (val selects a step, test reports it), the level a model
    that never saw the forget set reaches on them. ``attack_member_rate`` (with
    ``attack_threshold``): the share of forget examples the threshold attack calls members. With
    the MIA come ``mia`` (the entropy attack) and the field's figures, as in
    :func:`unlearning_report` (TA: all of the test split; it holds no forget example).
    """
    f = np.asarray(train_forget, bool)
    train_logits = _logits(apply_fn, params, dataset.train.x)
    ev = dataset.split(split)
    logits = _logits(apply_fn, params, ev.x)
    ty, y = jnp.asarray(dataset.train.y), jnp.asarray(ev.y)
    w = jnp.asarray(f, jnp.float32)
    conf = true_class_confidence(np.asarray(train_logits), dataset.train.y)
    out = {
        "forget_acc": float(U.accuracy(train_logits, ty, w)),
        "retain_acc": float(U.accuracy(train_logits, ty, 1.0 - w)),
        "test_acc": float(U.accuracy(logits, y)),
        "forget_confidence": float(conf[f].mean()),
        "heldout_confidence": float(U.true_class_probability(logits, y)),
        "forget_size": int(f.sum()),
    }
    if attack_threshold is not None:
        out["attack_member_rate"] = float((conf[f] >= attack_threshold).mean())
    if with_mia:
        test_logits = logits if split == "test" else _logits(apply_fn, params, dataset.test.x)
        out["mia"] = float(_membership_inference(train_logits, test_logits, train_logits,
                                                  w_members=1.0 - w, w_target=w))
        out.update(field_figures(train_logits, dataset.train.y, f, test_logits, dataset.test.y,
                                 np.zeros(len(dataset.test.y), bool)))
    return out


def bias_report(apply_fn: ApplyFn, params: Params, dataset: Dataset, split: str = "test") -> dict:
    """Bias figures of one binary classifier on ``split``: ``accuracy``, ``worst_group_acc``,
    ``fpr_gap``, ``flip_rate``, ``group_acc`` ({group: [acc on label 0, acc on label 1]}) and
    Borkan et al.'s ``subgroup_auc``/``bpsn_auc``/``bnsp_auc`` ({group: auc})."""
    ev = dataset.split(split)
    if ev.group is None or ev.x_cf is None:
        raise ValueError(f"Dataset {dataset.name!r} has no identity groups or counterfactuals; "
                         "the bias task needs a text dataset such as 'toxic_templates'.")
    logits = _logits(apply_fn, params, ev.x)
    pred = B.predictions(logits)
    pred_cf = B.predictions(_logits(apply_fn, params, ev.x_cf))
    y, g = jnp.asarray(ev.y), jnp.asarray(ev.group)
    num_groups = len(dataset.group_names)
    gacc = np.asarray(B.group_accuracies(pred, y, g, num_groups))
    aucs = B.bias_aucs(B.positive_score(logits), y, g, num_groups)
    names = dataset.group_names
    return {
        "accuracy": float(U.accuracy(logits, y)),
        "worst_group_acc": float(B.worst_group_accuracy(pred, y, g, num_groups)),
        "fpr_gap": float(B.fpr_gap(pred, y, g)),
        "flip_rate": float(B.flip_rate(pred, pred_cf)),
        "group_acc": {names[i]: [float(a) for a in gacc[i]] for i in range(num_groups)},
        **{k: {names[i + 1]: float(v[i]) for i in range(num_groups - 1)} for k, v in aucs.items()},
    }


def backdoor_report(apply_fn: ApplyFn, params: Params, dataset: Dataset, trigger: Trigger,
                    split: str = "test") -> dict:
    """Backdoor figures of one model on ``split`` (clean data; the trigger is stamped here):
    ``clean_acc`` (accuracy on the clean split), ``asr`` (attack success rate: the share of the
    split's images of other classes that, triggered, are classified as the target) and
    ``triggered_acc`` (accuracy on those triggered images against their true labels)."""
    ev = dataset.split(split)
    idx = victims(ev, trigger)
    triggered = _logits(apply_fn, params, trigger.stamp(ev.x[idx]))
    y_victims = jnp.asarray(ev.y[idx])
    return {
        "clean_acc": float(U.accuracy(_logits(apply_fn, params, ev.x), jnp.asarray(ev.y))),
        "asr": float(attack_success_rate(triggered, trigger.target)),
        "triggered_acc": float(U.accuracy(triggered, y_victims)),
    }


def meets_unlearning_target(before: dict, after: dict, *, forget: float = 0.02,
                            retain_drop: float = 0.03, retain_floor: float = 0.0) -> bool:
    """Whether an unlearning edit reached the target, from two :func:`unlearning_report`
    dicts of one split: ``after``'s forget accuracy at most ``forget`` and its retain accuracy at
    most ``retain_drop`` below ``before``'s and at least ``retain_floor``.

    The project's targets: a single edit ``forget=0.02`` (the digits' acceptance table adds
    ``retain_floor=0.90``); a zero-shot edit by an amortized policy ``forget=0.05``.
    """
    return bool(after["forget_acc"] <= forget
                and after["retain_acc"] >= before["retain_acc"] - retain_drop
                and after["retain_acc"] >= retain_floor)
