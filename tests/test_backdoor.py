"""The backdoor task: the trigger and the poisoned data, the attack's metrics, the backdoored
model, its objective, its baselines, and an edit that removes it."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from maskshift.baselines import BACKDOOR_BASELINES, BASELINES, GRIDS
from maskshift.baselines.backdoor import fine_pruning, prune_mask, unit_activity
from maskshift.data.backdoor import Trigger, poison, victims
from maskshift.metrics import attack_success_rate, backdoor_report


@pytest.fixture(scope="module")
def backdoor():
    from maskshift.tasks import backdoor_task

    return backdoor_task()


def test_the_trigger_is_a_patch_in_one_corner():
    x = np.zeros((2, 8, 8, 1), np.float32)
    out = Trigger(size=3).stamp(x)
    assert out[:, 5:, 5:, :].min() == 1.0 and out.sum() == 2 * 9  # bottom-right 3x3, nothing else
    assert x.sum() == 0  # a copy
    top_left = Trigger(size=2, corner="top_left", value=0.5).stamp(x)
    assert (top_left[:, :2, :2] == 0.5).all() and top_left.sum() == 2 * 4 * 0.5


def test_poison_relabels_a_seeded_share_of_other_classes_and_leaves_val_and_test(digits):
    trigger = Trigger(target=0, size=2)
    bad = poison(digits, trigger, rate=0.05, seed=3)
    changed = np.flatnonzero((bad.train.x != digits.train.x).any(axis=(1, 2, 3))
                             | (bad.train.y != digits.train.y))
    assert len(changed) == round(0.05 * len(digits.train))
    assert (digits.train.y[changed] != 0).all() and (bad.train.y[changed] == 0).all()
    assert (bad.train.x[changed][:, -2:, -2:] == 1.0).all()
    for split in ("val", "test"):
        assert bad.split(split) is digits.split(split)
    assert bad.fingerprint() != digits.fingerprint()  # its own cache entry
    again = poison(digits, trigger, rate=0.05, seed=3)
    assert np.array_equal(again.train.y, bad.train.y)
    other = poison(digits, trigger, rate=0.05, seed=4)
    assert not np.array_equal(other.train.y, bad.train.y)
    assert set(victims(digits.test, trigger)) == set(np.flatnonzero(digits.test.y != 0))


@pytest.mark.parametrize("trigger, rate, message", [
    (Trigger(size=8), 0.05, "A trigger of size 8 does not fit 8x8 images"),
    (Trigger(target=10), 0.05, "Backdoor target class 10 is outside the labels 0..9"),
    (Trigger(corner="middle"), 0.05, "Unknown trigger corner 'middle'"),
    (Trigger(), 0.0, r"The poison rate must lie in \(0, 1\)"),
    (Trigger(), 0.95, "A poison rate of 0.95 needs 1024 images of other classes"),
])
def test_a_trigger_or_rate_that_cannot_work_is_refused(digits, trigger, rate, message):
    with pytest.raises(ValueError, match=message):
        poison(digits, trigger, rate)


def test_a_trigger_needs_images(toxic):
    with pytest.raises(ValueError, match="A backdoor trigger is an image patch"):
        Trigger().check(toxic)


def test_attack_success_rate_counts_triggered_inputs_sent_to_the_target():
    logits = jnp.array([[3.0, 0.0], [0.0, 1.0], [2.0, 1.0], [0.0, 5.0]])
    assert float(attack_success_rate(logits, 0)) == 0.5
    assert float(attack_success_rate(logits, 1, jnp.array([1.0, 1.0, 0.0, 0.0]))) == 0.5
    batched = attack_success_rate(jnp.stack([logits, -logits]), 0)
    assert batched.shape == (2,) and float(batched[1]) == 0.5


def test_the_backdoored_model_obeys_the_trigger_and_the_clean_one_does_not(backdoor,
                                                                          digits_model):
    before = backdoor.report(backdoor.params)
    assert before["asr"] > 0.9 and before["clean_acc"] > 0.9
    assert before["triggered_acc"] < 0.1
    clean = backdoor_report(digits_model.model.apply, digits_model.params, backdoor.dataset,
                            backdoor.objective.trigger)
    assert clean["asr"] < 0.05 and clean["clean_acc"] == pytest.approx(before["clean_acc"],
                                                                       abs=0.03)


def test_the_objective_measures_rewards_selects_and_judges(backdoor):
    obj, arrays = backdoor.objective, backdoor.arrays()
    base = arrays.base_metrics[0]
    assert base.shape == (4,) and float(base[3]) > 0.9  # train ASR of the original
    batch = obj.sample(jax.random.key(0), arrays.train, 0)
    assert batch["h_trigger"].shape[0] == obj.batch_size
    metrics = obj.measure(lambda h: backdoor.suffix(arrays.params, h), batch)
    assert metrics.shape == (4,) and bool(jnp.isfinite(metrics).all())
    assert [float(t) for t in obj.terms(base, base)] == [0.0, 0.0]
    better = base.at[1].add(-1.0)
    assert float(obj.terms(better, base)[1]) == pytest.approx(1.0)
    # each edit term's loss, from the same logits: the success rate is the ASR metric itself
    def fn(h):
        return backdoor.suffix(arrays.params, h)

    lt = fn(batch["h_trigger"])
    p_target = jax.nn.softmax(lt, -1)[:, obj.trigger.target]
    losses = {t: float(dataclasses.replace(obj, edit_term=t).measure(fn, batch)[1])
              for t in ("away", "true_label", "success_rate")}
    assert losses["away"] == pytest.approx(float(-jnp.log1p(-jnp.minimum(p_target, 1 - 1e-6))
                                                 .mean()), rel=1e-5)
    assert losses["success_rate"] == pytest.approx(float(metrics[3]))
    assert 0 < losses["true_label"] <= obj.ce_cap
    # the utility reads tempered logits: the plain cross-entropy of the memorised clean images
    cold = dataclasses.replace(obj, utility_temperature=1.0).measure(fn, batch)
    assert float(cold[0]) < float(metrics[0])
    original = {"clean_acc": 0.97, "asr": 0.97, "triggered_acc": 0.03}
    steps = [{"clean_acc": 0.96, "asr": 0.10, "triggered_acc": 0.8},
             {"clean_acc": 0.90, "asr": 0.00, "triggered_acc": 0.9},  # costs too much accuracy
             {"clean_acc": 0.96, "asr": 0.02, "triggered_acc": 0.8}]
    best = max(range(3), key=lambda i: obj.selection_key(steps[i], original, 0.02))
    assert best == 2
    assert obj.meets_target(original, steps[2]) and not obj.meets_target(original, steps[0])
    assert not obj.meets_target(original, steps[1])
    with pytest.raises(ValueError, match="Unknown backdoor edit term 'asr'"):
        dataclasses.replace(obj, edit_term="asr")
    with pytest.raises(ValueError, match="The utility temperature must be > 0"):
        dataclasses.replace(obj, utility_temperature=0.0)


def test_fine_pruning_prunes_the_least_active_units_and_keeps_them_at_zero(backdoor):
    activity = unit_activity(backdoor)
    mask = prune_mask(backdoor, 0.75)
    keep = np.asarray(mask["params"]["Dense_0"]["bias"])
    assert keep.sum() == activity.size - round(0.75 * activity.size)
    assert activity[keep == 0].max() <= activity[keep == 1].min()
    assert float(mask["params"]["Dense_1"]["kernel"].min()) == 1.0  # nothing else pruned
    params = fine_pruning(backdoor, jax.random.key(0), prune_fraction=0.75, epochs=1)
    kernel = np.asarray(params["params"]["Dense_0"]["kernel"])
    assert np.abs(kernel[:, keep == 0]).max() == 0.0
    assert np.abs(kernel[:, keep == 1]).max() > 0.0
    with pytest.raises(ValueError, match="prune fraction must lie in"):
        prune_mask(backdoor, 1.0)


def test_every_backdoor_baseline_is_registered_with_its_grid():
    assert BASELINES["backdoor"] is BACKDOOR_BASELINES
    assert {"clean_finetune", "fine_pruning"} <= set(GRIDS)


@pytest.mark.slow
def test_the_gradient_controller_removes_most_of_the_backdoor(backdoor, tmp_path):
    from maskshift.run import make_run_config, train_and_evaluate

    cfg = make_run_config(algo="gradient", task="backdoor")
    res = train_and_evaluate(cfg, tmp_path / "g", task=backdoor, log=lambda s: None)
    assert res["after"]["asr"] < res["before"]["asr"] - 0.2
    assert res["after"]["clean_acc"] >= res["before"]["clean_acc"] - 0.02  # the tolerance
    assert res["summary_keys"] == ["clean_acc", "asr", "triggered_acc"]
    assert (tmp_path / "g" / "before_after.png").exists()


def test_the_success_rate_reward_is_refused_by_the_gradient_editors(backdoor, tmp_path):
    from maskshift.run import make_run_config, train_and_evaluate

    task = dataclasses.replace(backdoor, objective=dataclasses.replace(
        backdoor.objective, edit_term="success_rate"))
    for algo in ("gradient", "oracle", "apg"):
        cfg = make_run_config(algo=algo, task="backdoor")
        with pytest.raises(ValueError, match="backdoor_reward='true_label'"):
            train_and_evaluate(cfg, tmp_path / algo, task=task, log=lambda s: None)
        assert not (tmp_path / algo).exists()

