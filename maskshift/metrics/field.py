"""The unlearning literature's yardstick (SalUn, ℓ1-sparse): UA, RA, TA, MIA-Efficacy and the
average gap to a retrained model.

- **UA** (unlearning accuracy): ``1 - accuracy`` on the forget set (train split: the examples the
  request names); **RA**: accuracy on the retain set (train split); **TA**: accuracy on the test
  split's examples outside the forget classes (class-wise forgetting: a retrained model cannot
  classify a class it never saw, so TA leaves it out, as SalUn's class-wise tables do).
- **MIA-Efficacy**: an RBF support-vector classifier (``C=3``, ``gamma="auto"``, scikit-learn's
  ``SVC``) on one feature per example, the softmax probability of the true class, fitted to tell
  *members* (retain-train examples, as many as the test set, drawn with a fixed seed) from
  *non-members* (the test set); applied to the forget set, MIA-Efficacy is the share it predicts
  non-member (higher = more forgotten). SalUn's ``SVC_MIA`` with the ``confidence`` feature.
- **Avg. Gap**: the mean of ``|method - retrain|`` over UA, RA, TA and MIA-Efficacy, in points,
  against a model retrained without the forget set (:func:`maskshift.baselines.retrained`).

Every figure is in points (0-100), as the literature prints them. The attack is host code (the
classifier is scikit-learn's), run once per model report; the features are computed by the same
jitted model call as every other report.
"""

from __future__ import annotations

import numpy as np

FIELD_KEYS = ("ua", "ra", "ta", "mia_efficacy")
MEMBERS_SEED = 0


def true_class_confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Softmax probability of the true class per example, ``[N, C], [N] -> [N]`` (float64)."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(-1, keepdims=True)
    return np.take_along_axis(p, np.asarray(labels)[:, None], -1)[:, 0]


def mia_efficacy(conf_retain: np.ndarray, conf_test: np.ndarray, conf_forget: np.ndarray,
                 seed: int = MEMBERS_SEED) -> float:
    """MIA-Efficacy in points (see the module docstring) from true-class confidences of the
    retain-train, test and forget examples. Members: ``len(conf_test)`` retain examples drawn
    without replacement with ``seed`` (all of them when there are fewer)."""
    from sklearn.svm import SVC

    conf_retain, conf_test = np.asarray(conf_retain), np.asarray(conf_test)
    if len(conf_forget) == 0 or len(conf_test) == 0 or len(conf_retain) == 0:
        raise ValueError("MIA-Efficacy needs retain, test and forget examples; one set is empty.")
    rng = np.random.default_rng(seed)
    members = conf_retain[rng.choice(len(conf_retain), min(len(conf_test), len(conf_retain)),
                                     replace=False)]
    x = np.concatenate([members, conf_test])[:, None]
    y = np.concatenate([np.ones(len(members)), np.zeros(len(conf_test))])
    attack = SVC(C=3, gamma="auto", kernel="rbf").fit(x, y)
    return float(100.0 * np.mean(attack.predict(np.asarray(conf_forget)[:, None]) == 0))


def field_figures(train_logits, train_y, forget_train, test_logits, test_y,
                  forget_test) -> dict:
    """UA, RA, TA and MIA-Efficacy in points from one model's logits on the train and test
    splits; ``forget_*``: boolean masks of the forget examples."""
    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    f, ft = np.asarray(forget_train, bool), np.asarray(forget_test, bool)
    if f.all() or not f.any():
        raise ValueError("The forget set must hold some, but not all, train examples.")
    correct = np.argmax(np.asarray(train_logits), -1) == train_y
    correct_test = np.argmax(np.asarray(test_logits), -1) == test_y
    conf = true_class_confidence(train_logits, train_y)
    return {"ua": float(100.0 * (1.0 - correct[f].mean())),
            "ra": float(100.0 * correct[~f].mean()),
            "ta": float(100.0 * correct_test[~ft].mean()) if (~ft).any() else float("nan"),
            "mia_efficacy": mia_efficacy(conf[~f], true_class_confidence(test_logits, test_y),
                                         conf[f])}


def avg_gap(report: dict, reference: dict) -> float:
    """The mean of ``|report[k] - reference[k]|`` over UA, RA, TA and MIA-Efficacy (points)."""
    return float(np.mean([abs(report[k] - reference[k]) for k in FIELD_KEYS]))


def confidence_threshold(conf_members: np.ndarray, conf_nonmembers: np.ndarray) -> float:
    """The threshold attack's cut on true-class confidence: predict *member* where the confidence
    is at least the returned value, chosen to maximise balanced accuracy between ``members`` and
    ``nonmembers`` (Yeom et al.'s attack with a fitted threshold: one sort, no model)."""
    m, n = np.asarray(conf_members, np.float64), np.asarray(conf_nonmembers, np.float64)
    if m.size == 0 or n.size == 0:
        raise ValueError("The threshold attack needs members and non-members; one set is empty.")
    cuts = np.unique(np.concatenate([m, n]))
    # members at or above each cut (true positives), non-members below it (true negatives)
    tpr = 1.0 - np.searchsorted(np.sort(m), cuts, side="left") / m.size
    tnr = np.searchsorted(np.sort(n), cuts, side="left") / n.size
    return float(cuts[np.argmax(tpr + tnr)])
