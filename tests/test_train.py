"""The trainer end to end on small budgets: outputs, checkpoint, resume, refusal, failure."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from maskshift import run as tr
from maskshift.agents.ppo import PPOConfig
from maskshift.checkpoint import load_edited
from maskshift.run import evaluate as ev

SMALL = tr.RunConfig(env="shift", task="bias", seed=3, rank=2, episode_length=4,
                     eval_batch=16, updates_per_chunk=2,
                     editor=PPOConfig(num_envs=8, num_steps=4, total_timesteps=8 * 4 * 4,
                                      num_minibatches=2))


@pytest.fixture(scope="module")
def finished(tmp_path_factory, toxic_model):
    out = tmp_path_factory.mktemp("run") / "shift-bias"
    lines = []
    res = tr.train_and_evaluate(SMALL, out, log=lines.append)
    return out, res, lines


def test_a_run_writes_results_checkpoint_and_plots(finished):
    out, res, lines = finished
    saved = json.loads((out / "results.json").read_text())
    assert saved["env"] == "ShiftWorld-v0" and saved["task"] == "bias"
    assert saved["dataset"] == "toxic_templates" and saved["seed"] == 3
    for k in ("accuracy", "worst_group_acc", "fpr_gap", "flip_rate"):
        assert k in saved["before"] and k in saved["after"]
    assert saved["train"]["env_steps"] == 128 and saved["train"]["updates"] == 4
    assert saved["train"]["wall_seconds"] > 0 and saved["train"]["compile_seconds"] > 0
    assert saved["config"]["editor"]["num_envs"] == 8
    assert 0 <= saved["best_step"] <= 4 and len(saved["val_per_step"]) == 5
    for name in ("learning_curve.png", "before_after.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # progress lines, then the summary table
    assert any(line.startswith("update     2/4") for line in lines)
    assert "before" in lines[-1] and "worst_group_acc" in lines[-1]
    # the checkpoint is what maskshift.evaluate reports
    reported = ev.evaluate_model("bias", checkpoint=out)
    assert reported["worst_group_acc"] == pytest.approx(saved["after"]["worst_group_acc"])
    assert reported["accuracy"] == pytest.approx(saved["after"]["accuracy"])


def test_the_before_figures_are_the_pretrained_models(finished):
    _, res, _ = finished
    original = ev.evaluate_model("bias")
    for k in ("accuracy", "worst_group_acc", "fpr_gap", "flip_rate"):
        assert res["before"][k] == pytest.approx(original[k])


def test_a_finished_run_is_never_overwritten_without_asking(finished):
    out, _, _ = finished
    with pytest.raises(tr.TrainingError, match="already holds a finished run"):
        tr.train_and_evaluate(SMALL, out)
    assert json.loads((out / "results.json").read_text())["seed"] == 3


def test_a_foreign_directory_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(tr.TrainingError, match="not a maskshift run"):
        tr.train_and_evaluate(SMALL, tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.slow
def test_resume_after_kill_gives_the_same_result(tmp_path, finished):
    ref_out, ref, _ = finished
    out = tmp_path / "killed"
    stopped = tr.train_and_evaluate(SMALL, out, stop_after_chunks=1, log=lambda s: None)
    assert stopped == {"stopped_at_update": 2}
    assert not (out / "results.json").exists()
    assert json.loads((out / "ckpt" / "meta.json").read_text())["update"] == 2
    lines = []
    res = tr.train_and_evaluate(SMALL, out, log=lines.append)
    assert lines[1].startswith("resuming") and "update 2/4" in lines[1]  # after the header
    assert res["history"]["episode_return"] == pytest.approx(ref["history"]["episode_return"],
                                                             rel=1e-5, abs=1e-6)
    a, _ = load_edited(out, like=load_edited(ref_out, like=_like(ref_out))[0])
    b, _ = load_edited(ref_out, like=_like(ref_out))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    # a different config does not resume silently
    out2 = tmp_path / "other"
    tr.train_and_evaluate(SMALL, out2, stop_after_chunks=1, log=lambda s: None)
    with pytest.raises(tr.TrainingError, match="different config"):
        tr.train_and_evaluate(tr.RunConfig(**{**SMALL.__dict__, "seed": 4}), out2)


def _like(out):
    from maskshift.data import load_dataset
    from maskshift.models import pretrained

    return pretrained(load_dataset("toxic_templates")).params


@pytest.mark.slow
def test_non_finite_values_stop_the_run_and_keep_the_last_good_checkpoint(tmp_path, monkeypatch):
    import maskshift.agents.ppo as ppo_pkg

    real = ppo_pkg.make_train

    def poisoned(config, env, *args, **kwargs):
        trainer = real(config, env, *args, **kwargs)

        def run(rs, env_params, n):
            new, m = trainer.run(rs, env_params, n)
            bad = jnp.where(rs.update >= 2, jnp.nan, 1.0)  # from the second chunk on
            return new, {**m, "reward": m["reward"] * bad}

        return trainer._replace(run=run)

    monkeypatch.setattr(ppo_pkg, "make_train", poisoned)
    out = tmp_path / "nan"
    with pytest.raises(tr.TrainingError, match="Non-finite loss or reward at update 3"):
        tr.train_and_evaluate(SMALL, out, log=lambda s: None)
    assert json.loads((out / "ckpt" / "meta.json").read_text())["update"] == 2
    assert not (out / "results.json").exists()


@pytest.mark.slow
def test_a_finished_run_is_reselected_not_retrained(tmp_path, finished):
    import dataclasses
    import shutil

    from maskshift.run import reselect, reuse_or_run
    from maskshift.tasks import BiasObjective

    ref_out, ref, _ = finished
    out = tmp_path / "run"
    shutil.copytree(ref_out, out)
    assert reuse_or_run(SMALL, out, log=lambda s: None)["train"] == ref["train"]  # reused as is
    strict = dataclasses.replace(SMALL, select_tolerance=0.0)
    assert reselect(dataclasses.replace(strict, seed=4), out) is None  # training differs
    lines = []
    res = reuse_or_run(strict, out, log=lines.append)
    assert lines[0].startswith(f"re-selected {out}") and "without training" in lines[0]
    saved = json.loads((out / "results.json").read_text())
    assert saved["config"]["select_tolerance"] == 0.0 and saved["select_tolerance"] == 0.0
    # the same episode, its training figures kept, the best step chosen under the new setting
    assert saved["train"] == ref["train"] and saved["history"] == ref["history"]
    assert jax.tree.structure(saved["val_per_step"]) == jax.tree.structure(ref["val_per_step"])
    np.testing.assert_allclose(jax.tree.leaves(saved["val_per_step"]),
                               jax.tree.leaves(ref["val_per_step"]), atol=1e-6)
    vals = saved["val_per_step"]
    keys = [BiasObjective().selection_key(v, vals[0], 0.0) for v in vals]
    assert res["best_step"] == max(range(len(vals)), key=lambda t: keys[t])
    reported = ev.evaluate_model("bias", checkpoint=out)
    assert reported["accuracy"] == pytest.approx(saved["after"]["accuracy"])
    # an episode that does not repeat the recorded one is not re-selected, and nothing changes
    saved["val_per_step"][1]["accuracy"] += 0.1
    (out / "results.json").write_text(json.dumps(saved))
    assert reselect(SMALL, out) is None
    assert json.loads((out / "results.json").read_text())["select_tolerance"] == 0.0


def test_a_finished_run_is_reused_only_under_the_same_objective_settings(tmp_path):
    import dataclasses

    from maskshift.run import RunConfig, finished_run
    from maskshift.tasks import UnlearnObjective

    cfg, objective = RunConfig(algo="gradient"), UnlearnObjective()
    (tmp_path / "results.json").write_text(json.dumps(
        {"config": cfg.to_json(), "objective_repr": repr(objective)}))
    assert finished_run(tmp_path, cfg, objective) is not None
    # the same config, an objective whose defaults changed since: made again
    assert finished_run(tmp_path, cfg, dataclasses.replace(objective, ce_cap=3.0)) is None
    assert finished_run(tmp_path, dataclasses.replace(cfg, seed=1), objective) is None
