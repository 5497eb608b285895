"""The editors beside PPO: the greedy gradient controller, the open-loop oracle and APG, each
through the environments' own action space and the one run path of ``maskshift.train``."""

import dataclasses
import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from maskshift import run as tr
from maskshift.agents.apg import APGConfig
from maskshift.agents.apg import make_train as make_apg
from maskshift.cli import train as cli_train
from maskshift.controls import (
    GradientConfig,
    OracleConfig,
    check_differentiable,
    gradient_step,
    low_rank_action,
    optimise_actions,
    term_gradients,
)
from maskshift.tasks import UnlearnObjective


@pytest.fixture(scope="module")
def unlearn_env(envs):
    return envs[("MaskWorld-v0", "unlearn")]


@pytest.fixture(scope="module")
def unlearn_env8(unlearn_env):
    """The same env with 8-step episodes (from 3 steps, the edit leaves its saddle slowly)."""
    env, p = unlearn_env
    return env, p.replace(max_steps_in_episode=8)


def _scalars(report: dict) -> dict:
    return {k: v for k, v in report.items() if isinstance(v, float)}


def test_a_gradient_step_moves_both_reward_terms_the_right_way(envs):
    for env_id in ("MaskWorld-v0", "ShiftWorld-v0"):
        env, p = envs[(env_id, "unlearn")]
        _, state = env.reset(jax.random.key(0), p)
        action = jax.jit(functools.partial(gradient_step, env))(state, p)
        assert action.shape == (env.action_size,) and bool(jnp.all(jnp.isfinite(action)))
        _, new, *_ = env.step_env(jax.random.key(1), state, action, p)
        u0, e0 = env.reward_terms(state.edit, env.train_split(p), p)
        u1, e1 = env.reward_terms(new.edit, env.train_split(p), p)
        assert float(e1) > float(e0) + 0.01  # forget cross-entropy up on the whole train split
        assert float(u1) > float(u0) - 0.05  # retain cross-entropy kept


def test_the_action_is_the_saturated_top_r_svd_of_the_direction(unlearn_env):
    env, _ = unlearn_env
    m, n = env.shapes[0]
    g = jax.random.normal(jax.random.key(3), (m, n))
    (u, v), = env.unflatten_action(low_rank_action(env, (g,), saturation=2.5))
    step = u @ v.T / np.sqrt(env.rank)
    assert float(jnp.abs(step).max()) == pytest.approx(2.5, rel=1e-4)
    assert np.linalg.matrix_rank(np.asarray(step), tol=1e-3) == env.rank
    uu, s, vt = np.linalg.svd(np.asarray(g), full_matrices=False)
    best = (uu[:, :env.rank] * s[:env.rank]) @ vt[:env.rank]
    cos = np.sum(best * np.asarray(step)) / np.linalg.norm(best) / np.linalg.norm(step)
    assert cos == pytest.approx(1.0, abs=1e-4)


def test_term_gradients_match_a_finite_difference(unlearn_env):
    env, p = unlearn_env
    _, state = env.reset(jax.random.key(0), p)
    g_u, g_e = term_gradients(env, state.edit, p)
    d = jax.random.normal(jax.random.key(5), state.edit[0].shape) * 1e-2
    batch = env.train_split(p)
    # a central difference: at the pretrained model the utility's slope is small, and a one-sided
    # difference's curvature term moved it by 20% on some machines' pretrained models
    up, down = ((state.edit[0] + s * d,) for s in (1.0, -1.0))
    du = (env.reward_terms(up, batch, p)[0] - env.reward_terms(down, batch, p)[0]) / 2
    assert float(du) == pytest.approx(float(jnp.sum(g_u[0] * d)), rel=0.05)
    assert float(jnp.abs(g_e[0]).max()) > 0


class _AccuracyReward(UnlearnObjective):
    """A reward built from accuracies: piecewise constant, no gradient."""

    def terms(self, metrics, base):
        return metrics[2] - base[2], base[3] - metrics[3]


def test_a_reward_without_gradient_is_refused(unlearn_env):
    env, p = unlearn_env
    obj = _AccuracyReward(forget_classes=(7,), batch_size=32)
    env.task.__dict__["objective"] = obj  # frozen dataclass: swap on a throwaway copy only
    try:
        with pytest.raises(ValueError, match="zero gradient with respect to the edit; the 'apg'"):
            check_differentiable(env, p, "apg")
    finally:
        env.task.__dict__["objective"] = UnlearnObjective(forget_classes=(7,), batch_size=32)


@pytest.mark.parametrize("algo", ["apg", "gradient", "oracle"])
def test_cli_refuses_a_gradient_editor_on_a_reward_without_gradient(algo, capsys, tmp_path,
                                                                     monkeypatch, digits_model):
    monkeypatch.setattr(UnlearnObjective, "terms", _AccuracyReward.terms)
    with pytest.raises(SystemExit) as exc:
        cli_train.main(["--algo", algo, "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "has a zero gradient" in err and "use --algo ppo" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_the_oracle_raises_the_return_and_counts_its_steps(unlearn_env8):
    env, p = unlearn_env8
    cfg = OracleConfig(restarts=2, iterations=12, iterations_per_chunk=6)
    lines = []
    actions, hist = optimise_actions(env, p, jax.random.key(0), cfg, log=lines.append)
    assert actions.shape == (8, env.action_size)
    assert len(hist["episode_return"]) == 12 and len(lines) == 2
    ret = hist["episode_return"]
    assert np.mean(ret[-3:]) > np.mean(ret[:3]) + 5.0  # measured: ~0.2 -> ~20
    assert hist["best_restart"] == int(np.argmax(hist["final_returns"]))
    assert cfg.env_steps(8) == 2 * 12 * 8


@pytest.mark.slow
def test_apg_learns_on_a_tiny_budget(unlearn_env8):
    env, p = unlearn_env8
    cfg = APGConfig(num_envs=4, num_steps=8, total_timesteps=4 * 8 * 12, learning_rate=1e-2,
                    anneal_lr=False)
    trainer = make_apg(cfg, env)
    s = jax.jit(trainer.init)(jax.random.key(0), p)
    s, m = jax.jit(trainer.run, static_argnums=2)(s, p, cfg.num_updates)
    ret = np.asarray(m["episode_return"])
    assert ret.shape == (12,) and np.all(np.isfinite(ret))
    assert ret[-3:].mean() > ret[:3].mean() + 5.0  # measured: ~0.5 -> ~25
    assert int(s.update) == 12


SMALL = tr.RunConfig(env="mask", task="unlearn", seed=1, rank=2, episode_length=3, eval_batch=16,
                     updates_per_chunk=2, algo="gradient")  # the summary observation
SMALL_EDITORS = {"apg": APGConfig(num_envs=4, num_steps=3, total_timesteps=4 * 3 * 4),
                 "oracle": OracleConfig(restarts=2, iterations=4, iterations_per_chunk=2),
                 "gradient": GradientConfig()}


def small(algo: str) -> tr.RunConfig:
    return dataclasses.replace(SMALL, algo=algo, editor=SMALL_EDITORS[algo])


@pytest.mark.parametrize("algo", ["gradient", pytest.param("oracle", marks=pytest.mark.slow)])
def test_a_controller_run_writes_what_a_trained_run_writes(algo, tmp_path, digits_model):
    out = tmp_path / algo
    lines = []
    res = tr.train_and_evaluate(small(algo), out, log=lines.append)
    saved = json.loads((out / "results.json").read_text())
    assert saved["algo"] == algo and saved["config"]["algo"] == algo
    assert _scalars(saved["after"]) == pytest.approx(_scalars(res["after"]))
    assert len(saved["val_per_step"]) == 4 and 0 <= saved["best_step"] <= 3
    assert saved["train"]["env_steps"] == (3 if algo == "gradient" else 2 * 4 * 3)
    assert (out / "edited.json").exists() and not (out / "ckpt").exists()
    for name in ("learning_curve.png", "before_after.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    assert "compilation included" in lines[-1] and f"{algo}, seed 1" in lines[-1]
    assert tr.finished_run(out, small(algo)) is not None


@pytest.mark.long
def test_an_apg_run_resumes_after_a_kill(tmp_path, digits_model):
    cfg = small("apg")
    ref = tr.train_and_evaluate(cfg, tmp_path / "ref", log=lambda s: None)
    assert (tmp_path / "ref" / "ckpt").exists() and ref["train"]["updates"] == 4
    stopped = tr.train_and_evaluate(cfg, tmp_path / "k", stop_after_chunks=1, log=lambda s: None)
    assert stopped == {"stopped_at_update": 2}
    res = tr.train_and_evaluate(cfg, tmp_path / "k", log=lambda s: None)
    assert res["history"]["episode_return"] == pytest.approx(ref["history"]["episode_return"],
                                                             rel=1e-5, abs=1e-6)
    assert _scalars(res["after"]) == pytest.approx(_scalars(ref["after"]))


def _blob_task(blob_mlp, forget=1):
    from maskshift import task_from_model

    model, params, x, y = blob_mlp
    return task_from_model(model.apply, params, ["Dense_0"], train=(x[:300], y[:300]),
                           val=(x[300:400], y[300:400]), test=(x[400:], y[400:]),
                           forget_classes=forget, batch_size=16, name="blobs")


@pytest.mark.slow
def test_your_own_task_trains_resumes_and_refuses_another_task(tmp_path, blob_mlp):
    from maskshift.agents.ppo import PPOConfig

    cfg = tr.RunConfig(rank=2, episode_length=4, updates_per_chunk=2,
                       editor=PPOConfig(num_envs=8, num_steps=4, total_timesteps=8 * 4 * 4,
                                        num_minibatches=2))
    task = _blob_task(blob_mlp)
    ref = tr.train_and_evaluate(cfg, tmp_path / "ref", task=task, log=lambda s: None)
    assert ref["dataset"] == "blobs" and ref["config"]["task_fingerprint"]
    assert ref["before"]["forget_acc"] > 0.9 and (tmp_path / "ref" / "edited.json").exists()
    out = tmp_path / "killed"
    assert tr.train_and_evaluate(cfg, out, task=task, stop_after_chunks=1,
                                 log=lambda s: None) == {"stopped_at_update": 2}
    with pytest.raises(tr.TrainingError, match="different config"):  # another forget class
        tr.train_and_evaluate(cfg, out, task=_blob_task(blob_mlp, forget=2), log=lambda s: None)
    lines = []
    res = tr.train_and_evaluate(cfg, out, task=task, log=lines.append)
    assert any(line.startswith("resuming") for line in lines)
    assert res["history"]["episode_return"] == pytest.approx(ref["history"]["episode_return"],
                                                             rel=1e-5, abs=1e-6)
    assert _scalars(res["after"]) == pytest.approx(_scalars(ref["after"]))


@pytest.mark.slow
def test_a_task_factory_trains_from_the_command_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "my_blobs.py").write_text(
        "import numpy as np\n"
        "import flax.linen as nn\n"
        "import jax\n"
        "import maskshift\n\n"
        "def make_task():\n"
        "    rng = np.random.default_rng(0)\n"
        "    y = rng.integers(0, 3, 300).astype(np.int32)\n"
        "    x = (np.eye(3, 4)[y] * 3 + rng.normal(0, 1, (300, 4))).astype(np.float32)\n"
        "    model = nn.Dense(3)\n"
        "    params = {'params': model.init(jax.random.key(0), x[:1])['params']}\n"
        "    return maskshift.task_from_model(model.apply, params, ['params/kernel'],\n"
        "                                     train=(x, y), test=(x, y), forget_classes=0)\n\n"
        "def not_a_task():\n"
        "    return 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    code = cli_train.main(["--task-factory", "my_blobs:make_task", "--algo", "gradient",
                           "--rank", "2", "--out", str(tmp_path / "run")])
    assert code == 0
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["config"]["task_factory"] == "my_blobs:make_task" and saved["task"] == "unlearn"
    with pytest.raises(SystemExit) as exc:
        cli_train.main(["--task-factory", "my_blobs:not_a_task", "--out", str(tmp_path / "bad")])
    assert exc.value.code == 2 and "returned int, not a maskshift.Task" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_selection_prefers_the_step_forgotten_with_margin():
    original = {"retain_acc": 0.97, "forget_acc": 1.0, "forget_confidence": 0.95}
    steps = [original,
             {"retain_acc": 0.975, "forget_acc": 0.0, "forget_confidence": 0.20},  # at the edge
             {"retain_acc": 0.960, "forget_acc": 0.0, "forget_confidence": 0.01},  # with margin
             {"retain_acc": 0.930, "forget_acc": 0.0, "forget_confidence": 0.00},  # utility lost
             {"retain_acc": 0.990, "forget_acc": 0.1, "forget_confidence": 0.05}]
    keys = [UnlearnObjective().selection_key(m, original, 0.03) for m in steps]
    assert max(range(len(steps)), key=lambda t: keys[t]) == 2


def test_selection_stops_racing_confidence_past_the_reward_cap(envs):
    env, _ = envs[("MaskWorld-v0", "unlearn")]
    objective = env.task.objective
    assert objective.confidence_floor == pytest.approx(np.exp(-objective.ce_cap))
    unfloored = dataclasses.replace(objective, ce_cap=np.inf)  # exp(-inf) = 0: no floor
    assert unfloored.confidence_floor == 0.0
    original = {"retain_acc": 0.97, "forget_acc": 1.0, "forget_confidence": 0.95}
    steps = [original,
             {"retain_acc": 0.945, "forget_acc": 0.0, "forget_confidence": 1e-6},  # at the edge
             {"retain_acc": 0.968, "forget_acc": 0.0, "forget_confidence": 1e-4},
             {"retain_acc": 0.990, "forget_acc": 0.0, "forget_confidence": 0.05}]  # boundary
    best = max(range(4), key=lambda t: objective.selection_key(steps[t], original, 0.03))
    assert best == 2  # both past the floor: the retain accuracy decides
    assert max(range(4), key=lambda t: unfloored.selection_key(steps[t], original, 0.03)) == 1


def test_the_unlearning_report_measures_forget_confidence(digits_model):
    from maskshift.tasks import unlearning_task

    task = unlearning_task(7)
    rep = task.report(task.params, "val")
    assert 0.8 < rep["forget_confidence"] <= 1.0  # the original knows its 7s
