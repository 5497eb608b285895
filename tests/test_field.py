"""The unlearning literature's yardstick (MIA-Efficacy, UA/RA/TA, Avg. Gap) against cases worked
out by hand, and the three field baselines (SalUn, ℓ1-sparse, SCRUB) for what defines each."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from maskshift.baselines import field as FB
from maskshift.baselines import tuning
from maskshift.metrics import avg_gap, field_figures, mia_efficacy
from maskshift.tasks import unlearning_task


def test_mia_efficacy_reads_memorised_examples_as_members_and_unseen_ones_as_the_test_set():
    rng = np.random.default_rng(0)
    members = np.clip(rng.normal(0.85, 0.08, 2000), 0, 1)  # confidences of the training set
    held_out = np.clip(rng.normal(0.55, 0.15, 400), 0, 1)  # of the test set
    memorised = np.clip(rng.normal(0.85, 0.08, 300), 0, 1)  # forget set, trained on
    never_seen = np.clip(rng.normal(0.55, 0.15, 1000), 0, 1)  # forget set, like unseen data
    low = mia_efficacy(members, held_out, memorised)
    high = mia_efficacy(members, held_out, never_seen)
    share_of_test = mia_efficacy(members, held_out, np.clip(rng.normal(0.55, 0.15, 1000), 0, 1))
    assert low < 15.0  # a memorised forget set reads as members
    assert high > 70.0 and abs(high - share_of_test) < 6.0  # as held-out data reads


def test_mia_efficacy_draws_as_many_members_as_test_examples_with_a_fixed_seed():
    rng = np.random.default_rng(1)
    a, b, c = rng.random(500), rng.random(50), rng.random(40)
    assert mia_efficacy(a, b, c) == mia_efficacy(a, b, c)
    with pytest.raises(ValueError, match="one set is empty"):
        mia_efficacy(a, b, c[:0])


def test_ua_ra_ta_and_avg_gap_by_hand():
    # 4 train examples (the first two forgotten), 3 test examples (the last in a forget class)
    eye = np.eye(3) * 5.0
    train_logits, train_y = eye[[0, 1, 2, 2]], np.array([0, 2, 2, 1])  # right, wrong, right, wrong
    test_logits, test_y = eye[[0, 1, 1]], np.array([0, 2, 1])  # right, wrong, right (forgotten)
    fig = field_figures(train_logits, train_y, np.array([1, 1, 0, 0], bool), test_logits, test_y,
                        np.array([0, 0, 1], bool))
    assert fig["ua"] == pytest.approx(50.0)  # 1 of 2 forget examples wrong
    assert fig["ra"] == pytest.approx(50.0)  # 1 of 2 retain examples right
    assert fig["ta"] == pytest.approx(50.0)  # 1 of 2 test examples outside the forget class
    assert 0.0 <= fig["mia_efficacy"] <= 100.0
    ref = {"ua": 5.0, "ra": 100.0, "ta": 85.0, "mia_efficacy": 20.0}
    assert avg_gap({"ua": 10.0, "ra": 90.0, "ta": 80.0, "mia_efficacy": 30.0}, ref) == 7.5


def test_saliency_mask_keeps_the_requested_share_by_forget_gradient(digits_model):
    task = unlearning_task(7)
    mask = FB.saliency_mask(task, 0.5)
    kept = sum(float(m.sum()) for m in jax.tree.leaves(mask))
    total = sum(m.size for m in jax.tree.leaves(mask))
    assert abs(kept / total - 0.5) < 0.01
    with pytest.raises(ValueError, match="saliency share"):
        FB.saliency_mask(task, 0.0)


def test_masked_gradients_and_the_decaying_l1_term():
    mask = {"w": jnp.array([1.0, 0.0])}
    out, _ = FB.masked_gradients(mask).update({"w": jnp.array([3.0, 4.0])}, None, None)
    np.testing.assert_array_equal(out["w"], [3.0, 0.0])
    tx = FB.l1_penalty(lambda t: 0.5 / (1 + t))
    params = {"w": jnp.array([2.0, -1.0, 0.0])}
    state = tx.init(params)
    g1, state = tx.update({"w": jnp.zeros(3)}, state, params)
    g2, _ = tx.update({"w": jnp.zeros(3)}, state, params)
    np.testing.assert_allclose(g1["w"], [0.5, -0.5, 0.0])
    np.testing.assert_allclose(g2["w"], [0.25, -0.25, 0.0])  # the coefficient decays


@pytest.mark.parametrize("method", ["salun", "l1_sparse", pytest.param("scrub",
                                                                     marks=pytest.mark.slow)])
def test_each_field_baseline_forgets_class_7_and_keeps_retain(digits_model, method):
    task = unlearning_task(7)
    before = task.report(task.params)
    after = task.report(FB.FIELD_BASELINES[method](task, jax.random.key(0)))
    assert after["ua"] > before["ua"] + 10.0, (method, before["ua"], after["ua"])
    assert after["ra"] >= before["ra"] - 5.0, (method, before["ra"], after["ra"])


def test_the_grid_picks_the_setting_the_val_rule_prefers(digits_model):
    task = unlearning_task(7)
    calls = []

    def fake(task, key, learning_rate):  # the middle setting zeroes the forget class's logit
        calls.append(learning_rate)
        if learning_rate != 1e-3:
            return task.params
        params = jax.tree.map(jnp.array, task.params)
        params["params"]["Dense_1"]["bias"] = params["params"]["Dense_1"]["bias"].at[7].set(-50.0)
        return params

    _, setting, tried = tuning.tuned(task, "finetune", fake, jax.random.key(0), 0.03)
    assert calls == [3e-4, 1e-3, 3e-3] and setting == {"learning_rate": 1e-3}
    assert tried[1]["val"]["forget_acc"] == 0.0
