"""The gradient observation (per-unit factors of the reward terms' gradients) and the unit heads
shared over units."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from maskshift.agents.ppo import PPOConfig, policy_network
from maskshift.envs import make
from maskshift.envs.observe import (
    controller_direction,
    controller_mix,
    gradient_factors,
    gradient_rows,
    probes,
    saturated_factors,
    term_factors,
    top_factors,
)
from maskshift.tasks import task_from_model


def test_gradient_factors_recover_a_rank_one_gradient():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(40), rng.standard_normal(12)
    u, v = gradient_factors(jnp.asarray(np.outer(a, b), jnp.float32), probes(12, 3))
    for col in range(3):  # every probe column lands on the one direction (up to sign)
        cu = abs(np.dot(u[:, col], a)) / (np.linalg.norm(u[:, col]) * np.linalg.norm(a))
        cv = abs(np.dot(v[:, col], b)) / (np.linalg.norm(v[:, col]) * np.linalg.norm(b))
        assert cu > 0.999 and cv > 0.999
    np.testing.assert_allclose(np.sqrt((np.asarray(u) ** 2).mean(0)), 1.0, rtol=1e-4)


def test_mixture_factors_match_factoring_the_formed_direction():
    """The controller's direction is factored from the terms' products, never formed: the same
    factors as forming it and factoring it, and each term's own factors unchanged."""
    rng = np.random.default_rng(2)
    g = jnp.asarray(rng.standard_normal((2, 30, 10)), jnp.float32)  # (utility, edit)
    g = g.at[1].multiply(40.0)  # terms of very different sizes: the norms matter
    p = probes(10, 3)
    mix = controller_mix((g[0],), (g[1],), 0.7)
    direction, = controller_direction((g[0],), (g[1],), 0.7)
    want = [gradient_factors(g[0], p), gradient_factors(g[1], p), gradient_factors(direction, p)]
    got = term_factors([g[0], g[1]], p, mix)
    assert len(got) == 3
    for (u, v), (u0, v0) in zip(got, want, strict=True):
        np.testing.assert_allclose(u, u0, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(v, v0, rtol=1e-4, atol=1e-4)
    assert len(term_factors([g[0], g[1]], p)) == 2  # no mixture: the terms only


def test_top_factors_match_the_svd_and_saturate_the_step():
    """The randomised SVD finds a matrix's leading singular triplets (a clear gap after rank 4,
    as a reward gradient's), and the saturated step's largest entry is the saturation."""
    rng = np.random.default_rng(3)
    m, n, r = 60, 24, 4
    low = rng.standard_normal((m, r)) * [9.0, 6.0, 4.0, 3.0] @ rng.standard_normal((r, n))
    g = jnp.asarray(low + 0.05 * rng.standard_normal((m, n)), jnp.float32)
    u, s, v = top_factors(g, probes(n, 2 * r), r)
    s0 = np.linalg.svd(np.asarray(g), compute_uv=False)[:r]
    np.testing.assert_allclose(s, s0, rtol=1e-3)
    np.testing.assert_allclose(np.asarray((u * s) @ v.T), np.asarray(g), atol=0.5)
    uu, vv = saturated_factors(u, s, v, 3.0)
    step = np.asarray(uu @ vv.T) / np.sqrt(r)
    assert np.abs(step).max() == pytest.approx(3.0, rel=1e-5)
    np.testing.assert_allclose(step / 3.0, np.asarray((u * s) @ v.T)
                               / np.abs(np.asarray((u * s) @ v.T)).max(), atol=1e-5)


@pytest.fixture(scope="module")
def gradient_envs(digits_model):
    from maskshift.tasks import unlearning_task

    task = unlearning_task(batch_size=32)
    return {obs: make("mask", task=task, observation=obs, max_steps_in_episode=3)
            for obs in ("summary", "gradient", "controller", "controller-step")}


@pytest.mark.slow
def test_gradient_observation_appends_a_unit_block_of_size_m_plus_n(gradient_envs):
    (summ, sp), (grad, gp) = gradient_envs["summary"], gradient_envs["gradient"]
    (m, n), = grad.shapes
    f = grad.unit_features
    assert f == 2 * grad.rank + 2
    assert grad.obs_size == summ.obs_size + (m + n) * f
    key = jax.random.key(3)
    obs0, st0 = grad.reset(key, gp)
    assert obs0.shape == (grad.obs_size,) and np.isfinite(obs0).all()
    rows = np.asarray(obs0[summ.obs_size:summ.obs_size + m * f]).reshape(m, f)
    assert np.abs(rows[:, -2:]).max() == 0.0            # no deviation at reset
    assert np.abs(rows[:, :-2]).max() > 0.1              # but gradient factors
    action = jax.random.normal(jax.random.key(4), (grad.action_size,))
    o_s, _, r_s, _, _ = summ.step_env(key, summ.reset(key, sp)[1], action, sp)
    o_g, _, r_g, _, _ = grad.step_env(key, st0, action, gp)
    # the summary part and the reward are exactly those of the summary observation
    np.testing.assert_allclose(o_g[:summ.obs_size], o_s, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(r_g, r_s, rtol=1e-6)
    rows = np.asarray(o_g[summ.obs_size:summ.obs_size + m * f]).reshape(m, f)
    assert np.abs(rows[:, -1]).max() > 0.0               # the edit moved rows


@pytest.mark.slow  # 15 s; test_train's default (residual PPO) run steps this observation quick
def test_the_controller_observation_holds_the_controllers_direction(gradient_envs):
    """Its extra r features per unit are the factors of gradient_direction on the step's
    minibatch, and a unit-head policy's initial mean follows them."""
    from maskshift.controls import term_gradients

    (grad, gp), (ctl, cp) = gradient_envs["gradient"], gradient_envs["controller"]
    (m, n), = ctl.shapes
    r, f = ctl.rank, ctl.unit_features
    assert f == 3 * r + 2
    key = jax.random.key(3)
    _, st0 = ctl.reset(key, cp)
    action = jax.random.normal(jax.random.key(4), (ctl.action_size,))
    obs, st1, *_ = ctl.step_env(key, st0, action, cp)
    o_g, *_ = grad.step_env(key, st0, action, gp)
    # the gradient observation's features come first, unchanged
    g_rows = np.asarray(o_g[grad.summary_size:grad.summary_size + m * grad.unit_features])
    rows = np.asarray(obs[ctl.summary_size:ctl.summary_size + m * f]).reshape(m, f)
    np.testing.assert_allclose(rows[:, :2 * r], g_rows.reshape(m, -1)[:, :2 * r], atol=1e-6)
    # the controller's direction on the same minibatch's gradient rows, factored the same way
    batch = gradient_rows(ctl.task.objective.sample(key, cp.task.train, st0.target),
                          ctl.gradient_share)
    g_u, g_e = term_gradients(ctl, st1.edit, cp, batch=batch)
    direction = g_e[0] / jnp.linalg.norm(g_e[0]) + g_u[0] / jnp.linalg.norm(g_u[0])
    u, _ = gradient_factors(direction, probes(n, r))
    np.testing.assert_allclose(rows[:, 2 * r:3 * r], u, atol=2e-3)
    # a fresh unit-head policy's mean U rows start on those factors
    net = policy_network(PPOConfig(heads="units"), ctl)
    params = net.init(jax.random.key(0), obs[None])
    pi, _ = net.apply(params, obs[None])
    mean_u = np.asarray(pi.mean()[0, : m * r]).reshape(m, r)
    assert np.corrcoef(mean_u.ravel(), rows[:, 2 * r:3 * r].ravel())[0, 1] > 0.99
    # at PPOConfig.skip_gain times their size; the same network at gain 1.0 takes twice the step
    gain = PPOConfig().skip_gain
    np.testing.assert_allclose(np.linalg.norm(mean_u) / np.linalg.norm(rows[:, 2 * r:3 * r]),
                               gain, rtol=0.05)
    net1 = policy_network(PPOConfig(heads="units", skip_gain=1.0), ctl)
    params1 = net1.init(jax.random.key(0), obs[None])  # the gain sets the initial weights only
    mean1 = np.asarray(net1.apply(params1, obs[None])[0].mean()[0, : m * r])
    np.testing.assert_allclose(np.linalg.norm(mean1), np.linalg.norm(mean_u) / gain, rtol=0.05)
    with pytest.raises(ValueError, match="skip_gain must be a positive number"):
        PPOConfig(heads="units", skip_gain=0.0).validate()


def _mlp_task(width: int):
    import flax.linen as nn

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(3)(nn.relu(nn.Dense(width)(nn.relu(nn.Dense(24)(x)))))

    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 6)).astype(np.float32)
    y = (np.arange(300) % 3).astype(np.int32)
    model = MLP()
    params = model.init(jax.random.key(0), x[:1])
    return task_from_model(model.apply, params, ["Dense_1"], train=(x, y), test=(x, y),
                           forget_classes=1,
                           batch_size=16)


@pytest.mark.slow  # unit heads stay in the quick suite through test_policy's units run
def test_unit_heads_are_shape_free_and_start_on_the_edit_gradient():
    cfg = PPOConfig(heads="units", hidden=16)
    nets = {}
    for width in (8, 40):
        env, p = make("mask", task=_mlp_task(width), observation="gradient", rank=2)
        net = policy_network(cfg, env)
        obs, _ = env.reset(jax.random.key(0), p)
        nets[width] = (env, net, obs)
    env8, net8, obs8 = nets[8]
    params = net8.init(jax.random.key(1), obs8[None])
    env40, net40, obs40 = nets[40]
    # the same parameters serve the [24, 40] layer as the [24, 8] one
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(
        jnp.shape, net40.init(jax.random.key(1), obs40[None]))
    pi, value = net40.apply(params, obs40[None])
    assert pi.mean().shape == (1, env40.action_size) and value.shape == (1,)
    # at initialisation U's and V's means follow the edit term's gradient factors
    (m, n), = env40.shapes
    f, r = env40.unit_features, env40.rank
    units = np.asarray(obs40[env40.summary_size:])
    u_feats = units[: m * f].reshape(m, f)[:, r:2 * r]
    v_feats = units[m * f:].reshape(n, f)[:, r:2 * r]
    u, v = (np.asarray(x) for x in env40.unflatten_action(pi.mean()[0])[0])
    for got, want in ((u, u_feats), (v, v_feats)):
        cos = (got * want).sum() / (np.linalg.norm(got) * np.linalg.norm(want))
        assert cos > 0.95


@pytest.mark.slow
def test_a_units_run_trains_selects_and_records_its_policy(tmp_path, digits_model):
    import json

    from maskshift.run import RunConfig, train_and_evaluate

    cfg = RunConfig(env="mask", observation="gradient", episode_length=3,
                    editor=PPOConfig(heads="units", num_envs=8, num_steps=3, total_timesteps=48,
                                     hidden=16))
    train_and_evaluate(cfg, tmp_path / "run", log=lambda *_: None)
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert res["config"]["observation"] == "gradient"
    assert res["config"]["editor"]["heads"] == "units"
    assert res["train"]["env_steps"] == 48 and 0 <= res["best_step"] <= 3


def test_gradient_rows_take_the_first_share_of_every_part(gradient_envs):
    batch = {"h_retain": jnp.arange(8.0), "h_forget": jnp.arange(8.0) + 10, "y": jnp.arange(3)}
    out = gradient_rows(batch, 0.25)
    np.testing.assert_array_equal(out["h_retain"], [0.0, 1.0])
    np.testing.assert_array_equal(out["h_forget"], [10.0, 11.0])
    assert out["y"].shape == (1,)  # at least one row
    env, _ = gradient_envs["controller"]
    with pytest.raises(ValueError, match="gradient_share must be in"):
        type(env)(env.task, observation="controller", gradient_share=0.0)


def test_the_controller_step_observation_starts_a_policy_as_the_minibatch_controller(
        gradient_envs):
    """controller-step: the unit block's controller features are the greedy controller's own
    step on the whole minibatch (its top-r factors, saturated), so a fresh unit-head policy at its
    default skip gain (1) takes that step; the metrics come from the gradients' pass."""
    from maskshift.controls import low_rank_action, term_gradients
    from maskshift.run.config import is_residual, make_run_config

    ctl, cp = gradient_envs["controller-step"]
    (m, n), = ctl.shapes
    r, f = ctl.rank, ctl.unit_features
    assert f == 3 * r + 2 and ctl.gradient_share == 1.0
    key = jax.random.key(3)
    _, st0 = ctl.reset(key, cp)
    action = jax.random.normal(jax.random.key(4), (ctl.action_size,))
    obs, st1, *_ = ctl.step_env(key, st0, action, cp)
    batch = ctl.task.objective.sample(key, cp.task.train, st0.target)
    np.testing.assert_allclose(st1.metrics, ctl.metrics_on(st1.edit, batch, cp), rtol=1e-5)

    def product(flat):  # U V^T / sqrt(r) of a flat [(m + n) r] action
        return flat[: m * r].reshape(m, r) @ flat[m * r:].reshape(n, r).T / np.sqrt(r)

    rows = np.asarray(obs[ctl.summary_size:ctl.summary_size + m * f]).reshape(m, f)
    cols = np.asarray(obs[ctl.summary_size + m * f:ctl.summary_size + (m + n) * f]).reshape(n, f)
    observed = rows[:, 2 * r:3 * r] @ cols[:, 2 * r:3 * r].T / np.sqrt(r)
    # the controller's step on this minibatch, by the exact SVD
    g_u, g_e = term_gradients(ctl, st1.edit, cp, batch=batch)
    direction = controller_direction(g_u, g_e, ctl.task.objective.control_utility_weight)
    controller = product(np.asarray(low_rank_action(ctl, direction, 3.0)))
    assert np.abs(observed).max() == pytest.approx(3.0, rel=1e-4)
    assert np.corrcoef(observed.ravel(), controller.ravel())[0, 1] > 0.98
    # a fresh residual policy (skip gain 1 by default on this observation) takes that step
    cfg = make_run_config(env="mask", observation="controller-step")
    assert cfg.editor.skip_gain == 1.0 and is_residual("ppo", "units", "controller-step")
    net = policy_network(cfg.editor, ctl)
    pi, _ = net.apply(net.init(jax.random.key(0), obs[None]), obs[None])
    step = product(np.asarray(pi.mean()[0]))
    assert np.corrcoef(step.ravel(), observed.ravel())[0, 1] > 0.99
    assert np.abs(step).max() == pytest.approx(3.0, rel=0.1)
