"""Each baseline tested for the property that defines it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from maskshift.baselines import bias as BB
from maskshift.baselines import unlearning as UB
from maskshift.tasks import bias_task, get_leaf, unlearning_task


@pytest.fixture(scope="module")
def unlearn(digits_model):
    return unlearning_task(7)


@pytest.fixture(scope="module")
def bias(toxic_model):
    return bias_task()


def test_retraining_never_sees_a_forget_class_example(unlearn, monkeypatch):
    seen = {}

    def spy(model, dataset, key, config):
        seen["y"] = np.asarray(dataset.train.y)
        return "params"

    monkeypatch.setattr(UB, "train_classifier", spy)
    assert UB.retrain(unlearn, jax.random.key(0)) == "params"
    assert 7 not in seen["y"]
    assert len(seen["y"]) == (unlearn.dataset.train.y != 7).sum()


def test_finetune_only_sees_the_retain_set(unlearn, monkeypatch):
    seen = {}

    def spy(params, loss, arrays, key, **kw):
        seen["y"] = np.asarray(arrays[1])
        return params

    monkeypatch.setattr(UB, "fit", spy)
    UB.finetune(unlearn, jax.random.key(0))
    assert 7 not in seen["y"] and len(seen["y"]) > 0


def test_random_relabel_never_keeps_a_forget_label(unlearn):
    y0 = unlearn.dataset.train.y
    y = UB.random_relabel(unlearn, jax.random.key(3), 10)
    f = y0 == 7
    assert np.all(y[f] != 7) and np.all((0 <= y[f]) & (y[f] < 10))
    np.testing.assert_array_equal(y[~f], y0[~f])  # retain labels untouched
    assert len(np.unique(y[f])) > 3  # random, not one fixed class


def test_gradient_ascent_raises_the_forget_loss(unlearn):
    params = UB.gradient_ascent(unlearn, jax.random.key(0))  # defaults: 20 epochs, lr 1e-4
    tr = unlearn.dataset.train
    f = tr.y == 7

    def ce(p):
        logits = unlearn.apply_fn(p, jnp.asarray(tr.x[f]))
        return float(-jax.nn.log_softmax(logits)[np.arange(f.sum()), tr.y[f]].mean())

    assert ce(params) > ce(unlearn.params) + 0.5  # the forget loss climbs


def test_ssd_dampens_exactly_the_selected_weights():
    params = {"w": jnp.array([1.0, 2.0, 3.0, 4.0])}
    imp_d = {"w": jnp.array([1.0, 1.0, 0.1, 2.0])}
    imp_f = {"w": jnp.array([5.0, 20.0, 4.0, 19.0])}
    # alpha 10: selected where I_Df > 10 I_D -> entries 1 (20 > 10) and 2 (4 > 1); not 0, 3
    out = UB.dampen(params, imp_d, imp_f, alpha=10.0, lam=1.0)
    np.testing.assert_allclose(out["w"], [1.0, 2.0 * (1 / 20), 3.0 * (0.1 / 4), 4.0])
    # lambda scales the dampening, capped at 1 (never amplifies)
    out = UB.dampen(params, imp_d, imp_f, alpha=10.0, lam=100.0)
    np.testing.assert_allclose(out["w"], [1.0, 2.0, 3.0, 4.0])


@pytest.mark.long
def test_ssd_leaves_unselected_weights_untouched_on_the_cnn(unlearn):
    tr = unlearn.dataset.train
    f = tr.y == 7
    imp_d = UB.diagonal_fisher(unlearn.apply_fn, unlearn.params, tr.x, tr.y)
    imp_f = UB.diagonal_fisher(unlearn.apply_fn, unlearn.params, tr.x[f], tr.y[f])
    out = UB.dampen(unlearn.params, imp_d, imp_f, alpha=1.0)
    changed = 0
    for p, q, d, fi in zip(*(jax.tree.leaves(t) for t in (unlearn.params, out, imp_d, imp_f)),
                           strict=True):
        sel = np.asarray(fi > 1.0 * d)
        np.testing.assert_array_equal(np.asarray(q)[~sel], np.asarray(p)[~sel])
        changed += int((np.asarray(q) != np.asarray(p)).sum())
    assert changed > 0


def test_pca_projection_zeroes_the_removed_directions(bias):
    x = BB.representations(bias)
    xc = x - x.mean(0)
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    scores = BB.group_separation_scores(xc @ vt.T, bias.dataset.train.group)
    top = vt[np.argsort(scores)[::-1][:2]]
    params = BB.pca_projection(bias, jax.random.key(0), num_components=2)
    w0 = np.asarray(get_leaf(bias.params, ("params", "Dense_0", "kernel")))
    w1 = np.asarray(get_leaf(params, ("params", "Dense_0", "kernel")))
    # the edited layer now reads x P: the removed directions contribute nothing
    np.testing.assert_allclose(top @ w1, 0.0, atol=1e-5)
    # and a direction orthogonal to them passes through unchanged
    other = np.linalg.svd(top, full_matrices=True)[2][-1]
    np.testing.assert_allclose(other @ w1, other @ w0, rtol=1e-4, atol=1e-5)


def test_group_separation_scores_by_hand():
    z = np.array([[0.0, 1.0], [2.0, 1.0], [10.0, 0.0], [12.0, 2.0]])
    g = np.array([0, 0, 1, 1])
    # col 0: group means 1, 11 -> var 25; within vars 1, 1 -> 1; score 25
    # col 1: group means 1, 1 -> var 0; score 0
    np.testing.assert_allclose(BB.group_separation_scores(z, g), [25.0, 0.0])


def test_leace_leaves_no_linear_classifier_above_chance():
    rng = np.random.default_rng(0)
    z = rng.integers(0, 2, 2000)
    x = rng.normal(size=(2000, 6)) + np.outer(z, [2.0, -1.0, 0.5, 0, 0, 1.0])
    assert LogisticRegression().fit(x, z).score(x, z) > 0.9
    a, c = BB.leace_eraser(x, z.astype(float))
    xe = x @ a + c
    # class-conditional means coincide: no linear classifier can beat the majority rate
    np.testing.assert_allclose(xe[z == 0].mean(0), xe[z == 1].mean(0), atol=1e-8)
    majority = max(z.mean(), 1 - z.mean())
    assert LogisticRegression().fit(xe, z).score(xe, z) <= majority + 0.02
    # and it changes x as little as possible along other directions: rank-1 edit
    assert np.linalg.matrix_rank(np.eye(6) - a, tol=1e-8) == 1


def test_inlp_removes_the_linearly_decodable_identity(bias):
    x = BB.representations(bias)
    z = (bias.dataset.train.group > 0).astype(int)
    before = LogisticRegression(max_iter=2000).fit(x, z).score(x, z)
    params = BB.inlp(bias, jax.random.key(0), iterations=8)
    w0 = np.asarray(get_leaf(bias.params, ("params", "Dense_0", "kernel")))
    w1 = np.asarray(get_leaf(params, ("params", "Dense_0", "kernel")))
    p = w1 @ np.linalg.pinv(w0)  # the projection folded into the layer
    xp = x @ p
    after = LogisticRegression(max_iter=2000).fit(xp, z).score(xp, z)
    assert before > 0.95 and after < before - 0.1


def test_cda_trains_on_each_example_and_its_twin_with_the_same_label(bias, monkeypatch):
    seen = {}

    def spy(params, loss, arrays, key, **kw):
        seen["x"], seen["y"] = np.asarray(arrays[0]), np.asarray(arrays[1])
        return params

    monkeypatch.setattr(BB, "fit", spy)
    BB.counterfactual_augmentation(bias, jax.random.key(0))
    n = len(bias.dataset.train)
    np.testing.assert_array_equal(seen["x"][n:], bias.dataset.train.x_cf)
    np.testing.assert_array_equal(seen["y"][:n], seen["y"][n:])
