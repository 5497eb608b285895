"""Metrics against values worked out by hand, and against scikit-learn where it has the metric."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from maskshift import metrics as M


def onehot_logits(pred, num_classes):
    return jax.nn.one_hot(jnp.asarray(pred), num_classes) * 5.0


def test_accuracy_forget_retain_per_class_by_hand():
    y = jnp.array([0, 0, 1, 1, 2, 2, 2, 7])
    pred = [0, 1, 1, 1, 2, 0, 2, 7]
    logits = onehot_logits(pred, 8)
    assert float(M.accuracy(logits, y)) == pytest.approx(6 / 8)
    forget, retain = M.forget_retain_accuracy(logits, y, (2, 7))
    assert float(forget) == pytest.approx(3 / 4)  # class 2: 2 of 3 right, class 7: 1 of 1
    assert float(retain) == pytest.approx(3 / 4)  # class 0: 1 of 2, class 1: 2 of 2
    pc = np.asarray(M.per_class_accuracy(logits, y, 8))
    np.testing.assert_allclose(pc[[0, 1, 2, 7]], [0.5, 1.0, 2 / 3, 1.0], rtol=1e-6)
    assert np.isnan(pc[3])  # no examples of class 3


def test_metrics_vmap_over_a_batch_of_models():
    key = jax.random.key(0)
    logits = jax.random.normal(key, (5, 40, 10))  # 5 models
    y = jax.random.randint(jax.random.key(1), (40,), 0, 10)
    batched = jax.jit(jax.vmap(lambda lg: M.forget_retain_accuracy(lg, y, 7)))(logits)
    for i in range(5):
        f, r = M.forget_retain_accuracy(logits[i], y, 7)
        assert float(batched[0][i]) == pytest.approx(float(f))
        assert float(batched[1][i]) == pytest.approx(float(r))


def test_entropy_by_hand():
    logits = jnp.log(jnp.array([[0.5, 0.5], [1.0, 1e-30]]))
    np.testing.assert_allclose(M.softmax_entropy(logits), [np.log(2), 0.0], atol=1e-6)


def test_logistic_regression_matches_sklearn_balanced():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0.0, 1.0, 60), rng.normal(1.5, 1.0, 25)])
    y = np.concatenate([np.ones(60), np.zeros(25)])
    ref = LogisticRegression(class_weight="balanced", C=1.0, tol=1e-10, max_iter=1000)
    ref.fit(x[:, None], y)
    w, b = M.fit_logistic_1d(jnp.asarray(x), jnp.asarray(y), jnp.ones(len(x)))
    assert float(w) == pytest.approx(ref.coef_[0, 0], rel=1e-4)
    assert float(b) == pytest.approx(ref.intercept_[0], rel=1e-4)


def test_membership_inference_matches_the_ssd_recipe():
    """SSD's get_membership_attack_prob: entropy features, balanced logistic regression on
    retain (members, label 1) vs test (non-members, 0), mean predicted label on forget."""
    rng = np.random.default_rng(1)
    members = rng.normal(0, 4, (50, 3))  # confident logits: low entropy
    nonmembers = rng.normal(0, 0.5, (30, 3))  # unsure: high entropy
    target = np.concatenate([rng.normal(0, 4, (10, 3)), rng.normal(0, 0.5, (10, 3))])

    def ent(z):
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        return -(p * np.log(p)).sum(1)

    clf = LogisticRegression(class_weight="balanced", tol=1e-10, max_iter=1000)
    clf.fit(np.concatenate([ent(members), ent(nonmembers)])[:, None],
            np.concatenate([np.ones(50), np.zeros(30)]))
    expected = clf.predict(ent(target)[:, None]).mean()
    got = M.membership_inference(jnp.asarray(members), jnp.asarray(nonmembers), jnp.asarray(target))
    assert float(got) == pytest.approx(expected)
    assert 0.3 < expected < 0.7  # half the target looks like members: a non-trivial case
    # masks select rows: dropping the unsure half of the target leaves only member-like rows
    w_t = jnp.asarray(np.r_[np.ones(10), np.zeros(10)])
    masked = M.membership_inference(jnp.asarray(members), jnp.asarray(nonmembers),
                                    jnp.asarray(target), w_target=w_t)
    assert float(masked) == pytest.approx(clf.predict(ent(target[:10])[:, None]).mean())


def test_group_accuracy_worst_group_fpr_gap_flip_rate_by_hand():
    #            g: 0  0  0  0  1  1  1  2  2
    groups = jnp.array([0, 0, 0, 0, 1, 1, 1, 2, 2])
    labels = jnp.array([0, 0, 1, 1, 0, 0, 1, 0, 1])
    pred = jnp.array([0, 1, 1, 1, 1, 1, 1, 0, 0])
    acc = np.asarray(M.group_accuracies(pred, labels, groups, 3))
    np.testing.assert_allclose(acc, [[0.5, 1.0], [0.0, 1.0], [1.0, 0.0]])
    assert float(M.worst_group_accuracy(pred, labels, groups, 3)) == 0.0
    # FPR: identity negatives are rows 4, 5, 7 -> 2 of 3 flagged; background negatives 0, 1 -> 1/2
    assert float(M.fpr_gap(pred, labels, groups)) == pytest.approx(2 / 3 - 1 / 2)
    pred_cf = jnp.array([0, 1, 1, 0, 0, 1, 1, 0, 0])
    assert float(M.flip_rate(pred, pred_cf)) == pytest.approx(2 / 9)
    # an empty cell is skipped, not counted as 0
    acc4 = np.asarray(M.group_accuracies(pred, labels, groups, 4))
    assert np.isnan(acc4[3]).all()
    assert float(M.worst_group_accuracy(pred, labels, groups, 4)) == 0.0


def test_masked_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(2)
    scores = np.round(rng.normal(size=200), 1)  # many ties
    y = rng.integers(0, 2, 200)
    sel = rng.random(200) < 0.7
    auc = M.masked_auc(jnp.asarray(scores), jnp.asarray(sel * y, jnp.float32),
                       jnp.asarray(sel * (1 - y), jnp.float32))
    assert float(auc) == pytest.approx(roc_auc_score(y[sel], scores[sel]), abs=1e-6)


def test_borkan_aucs_by_definition():
    rng = np.random.default_rng(3)
    n = 300
    groups = rng.integers(0, 3, n)
    y = rng.integers(0, 2, n)
    scores = y + 0.8 * (groups == 1) + rng.normal(0, 0.7, n)  # group 1 is over-scored
    out = M.bias_aucs(jnp.asarray(scores), jnp.asarray(y), jnp.asarray(groups), 3)
    for g in (1, 2):
        sub = groups == g
        assert float(out["subgroup_auc"][g - 1]) == pytest.approx(
            roc_auc_score(y[sub], scores[sub]), abs=1e-6)
        bpsn = (~sub & (y == 1)) | (sub & (y == 0))
        assert float(out["bpsn_auc"][g - 1]) == pytest.approx(
            roc_auc_score(y[bpsn], scores[bpsn]), abs=1e-6)
        bnsp = (sub & (y == 1)) | (~sub & (y == 0))
        assert float(out["bnsp_auc"][g - 1]) == pytest.approx(
            roc_auc_score(y[bnsp], scores[bnsp]), abs=1e-6)
    # the over-scored group's negatives look toxic: BPSN suffers, BNSP benefits
    assert float(out["bpsn_auc"][0]) < float(out["bpsn_auc"][1])
    assert float(out["bnsp_auc"][0]) > float(out["bnsp_auc"][1])
    # batched over models
    batched = M.bias_aucs(jnp.stack([jnp.asarray(scores)] * 2), jnp.asarray(y),
                          jnp.asarray(groups), 3)
    np.testing.assert_allclose(batched["bpsn_auc"][1], out["bpsn_auc"], rtol=1e-6)


@pytest.mark.parametrize("after, kw, expected", [
    ({"forget_acc": 0.02, "retain_acc": 0.92}, {}, True),            # both bounds inclusive
    ({"forget_acc": 0.021, "retain_acc": 0.95}, {}, False),          # forget too high
    ({"forget_acc": 0.0, "retain_acc": 0.919}, {}, False),           # retain 3.1 points down
    ({"forget_acc": 0.04, "retain_acc": 0.95}, {"forget": 0.05}, True),   # zero-shot bound
    ({"forget_acc": 0.0, "retain_acc": 0.89}, {"retain_drop": 0.1}, True),
    ({"forget_acc": 0.0, "retain_acc": 0.89}, {"retain_drop": 0.1, "retain_floor": 0.90}, False),
])
def test_meets_unlearning_target_reads_each_bound(after, kw, expected):
    assert M.meets_unlearning_target({"forget_acc": 0.97, "retain_acc": 0.95}, after,
                                     **kw) is expected
