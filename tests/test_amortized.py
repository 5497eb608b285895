"""A distribution of unlearning tasks: the forget class drawn per episode from a pool, held in
EnvState, one compiled program for every class; `--amortized` runs and PolicyEditor."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from maskshift import make, pool_task, unlearning_task
from maskshift.agents.common import rollout_edits
from maskshift.cli import train as cli_train
from maskshift.run.policy import PolicyEditor, edit_with_policy, load_policy


@pytest.fixture(scope="module")
def pool_env(digits_model):
    """MaskWorld over the pool {1, 3, 8} and the single-class task for 3, gradient observation."""
    pool = make("mask", pool_task(unlearning_task(7), [1, 3, 8]), observation="gradient")
    single = make("mask", unlearning_task(3), observation="gradient")
    return pool, single


def test_each_environment_draws_its_own_target_and_samples_its_rows(pool_env):
    (env, p), _ = pool_env
    keys = jax.random.split(jax.random.key(0), 64)
    _, states = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(keys, p)
    assert set(np.asarray(states.target).tolist()) == {0, 1, 2}   # every target drawn
    batches = jax.jit(jax.vmap(env.task.objective.sample, in_axes=(0, None, 0)))(
        keys, p.task.train, states.target)
    classes = np.asarray([1, 3, 8])[np.asarray(states.target)]      # [64]
    assert (np.asarray(batches["y_forget"]) == classes[:, None]).all()
    assert (np.asarray(batches["y_retain"]) != classes[:, None]).all()
    # the reset observation carries the drawn target's unit block
    obs, _ = env.reset_to(2, p)
    assert np.array_equal(obs[env.summary_size:], p.reset_units[2])
    assert not np.array_equal(p.reset_units[0], p.reset_units[2])


def test_a_pool_target_is_the_single_class_task_bit_for_bit(pool_env):
    """Target 1 of the pool {1, 3, 8} steps exactly as the task that forgets 3."""
    (env, p), (env1, p1) = pool_env
    action = jax.random.normal(jax.random.key(1), (env.action_size,))
    obs0, s0 = env.reset_to(1, p)
    obs1, s1 = env1.reset(jax.random.key(9), p1)
    np.testing.assert_array_equal(obs0, obs1)
    step = jax.jit(env.step_env)
    for k in range(2):
        key = jax.random.key(k)
        obs0, s0, r0, *_ = step(key, s0, action, p)
        obs1, s1, r1, *_ = jax.jit(env1.step_env)(key, s1, action, p1)
        np.testing.assert_array_equal(obs0, obs1)
        assert float(r0) == float(r1)
    assert int(s0.target) == 1


def test_the_whole_split_batch_matches_the_target_sets(pool_env):
    """The masked whole-split form (target traced) gives the metrics of the explicit sets."""
    (env, p), _ = pool_env
    obj = env.task.objective
    edit = tuple(env.initial_edit(w) for w in p.task.originals)
    masked = jax.jit(lambda t, edit, p: env.metrics_on(edit, env.train_split(p, t), p))(
        jnp.int32(2), edit, p)
    explicit = env.metrics_on(edit, obj.target_sets(p.task.train, 2), p)
    np.testing.assert_allclose(masked, explicit, rtol=1e-5)
    np.testing.assert_allclose(explicit, p.task.base_metrics[2], rtol=1e-6)


def test_one_compiled_rollout_serves_every_target(pool_env):
    from maskshift.agents.common import rollout_fn
    from maskshift.controls import gradient_act

    (env, p), _ = pool_env
    run = rollout_fn(env, gradient_act(env), 2)
    first = [run(None, p, jax.random.key(0), jnp.int32(t)) for t in range(3)]
    assert run._cache_size() == 1
    # different targets, different edits; the same target, the same edit
    assert not np.array_equal(first[0][0][-1], first[2][0][-1])
    again = rollout_edits(env, p, gradient_act(env), target=2)
    np.testing.assert_array_equal(np.asarray(again[0][:3]), np.asarray(first[2][0]))


def test_pool_task_refuses_a_pool_of_one_and_the_bias_task(digits_model):
    from maskshift import bias_task

    with pytest.raises(ValueError, match="give at least two"):
        pool_task(unlearning_task(7), [4])
    with pytest.raises(ValueError, match="Forget class 4 is listed twice"):
        pool_task(unlearning_task(7), [4, 4])
    with pytest.raises(ValueError, match="outside the labels"):
        pool_task(unlearning_task(7), [1, 12])
    with pytest.raises(ValueError, match="needs an unlearning task"):
        pool_task(bias_task(), [0, 1])


TINY = ["--num-envs", "8", "--episode-length", "3", "--total-steps", "48"]


@pytest.fixture(scope="module")
def amortized_run(tmp_path_factory, digits_model):
    out = tmp_path_factory.mktemp("amortized") / "run"
    assert cli_train.main(["--env", "shift", "--amortized", "--forget-class", "0", "1", "2", *TINY,
                    "--out", str(out)]) == 0
    return out


@pytest.mark.long
def test_an_amortized_run_reports_every_target_and_saves_its_policy(amortized_run):
    res = json.loads((amortized_run / "results.json").read_text())
    assert res["amortized"] and [t["forget_classes"] for t in res["targets"]] == [[0], [1], [2]]
    for t in res["targets"]:
        assert t["before"]["forget_acc"] > 0.8 and 0 <= t["best_step"] <= 3
        assert {"mia", "retain_acc", "per_class_acc"} <= set(t["after"])
    cfg = res["config"]
    assert cfg["observation"] == "controller" and cfg["editor"]["heads"] == "units"
    assert (amortized_run / "policy.json").exists()
    assert (amortized_run / "before_after.png").exists()
    assert not (amortized_run / "edited").exists()


@pytest.mark.long
def test_an_editor_edits_held_out_classes_with_one_compilation(amortized_run):
    policy = load_policy(amortized_run)
    editor = PolicyEditor(policy, targets=[(5,), (6,)])
    a = editor.edit(5, log=lambda *_: None)
    b = editor.edit([6], log=lambda *_: None)
    assert editor._run._cache_size() == 1
    assert a["forget_classes"] == [5] and b["forget_classes"] == [6]
    # the same edit as a one-off edit of that class alone
    one = edit_with_policy(policy, [6], log=lambda *_: None)
    assert one["after"] == b["after"] and one["best_step"] == b["best_step"]
    with pytest.raises(ValueError, match="serves the forget sets"):
        editor.edit(7, log=lambda *_: None)


@pytest.mark.long
def test_the_policy_edits_the_backdoored_model_zero_shot(amortized_run):
    """A policy trained to unlearn, on another objective: one rollout, selected by that task's
    own rule (the backdoor task's val rule), reported by its own report."""
    from maskshift.run.policy import zero_shot_edit
    from maskshift.tasks import backdoor_task

    task = backdoor_task()
    res = zero_shot_edit(load_policy(amortized_run), task, log=lambda s: None)
    assert res["before"] == task.report(task.params)
    assert res["before"]["asr"] > 0.9
    assert set(res["after"]) == {"clean_acc", "asr", "triggered_acc"}
    assert 0 <= res["best_step"] <= 3 and res["env"] == "ShiftWorld-v0"


@pytest.mark.parametrize("argv, message", [
    (["--amortized", "--forget-class", "3"], "give a pool of at least two classes"),
    (["--amortized"], "give a pool of at least two classes"),
    (["--amortized", "--forget-class", "2", "2"], "give a pool of at least two classes"),
    (["--amortized", "--forget-class", "1", "2", "--task", "bias"],
     "applies to --task unlearn only"),
    (["--amortized", "--forget-class", "1", "2", "--algo", "gradient"], "needs --task unlearn "
                                                                         "--algo ppo"),
    (["--amortized", "--forget-class", "1", "12"], "outside the labels 0..9"),
])
def test_bad_amortized_runs_are_one_line_exit_2_nothing_written(argv, message, tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        cli_train.main([*argv, "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not out.exists()
