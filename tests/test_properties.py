"""Property-based tests (hypothesis): configs and EnvParams either build or refuse with a
ValueError, and a step keeps its shapes, bounds and finiteness for any finite action."""

import argparse
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maskshift.agents.apg import APGConfig
from maskshift.agents.ppo import PPOConfig
from maskshift.cli.args import fraction, nonneg_float, positive_float, positive_int
from maskshift.controls import GradientConfig
from maskshift.controls.oracle import OracleConfig
from maskshift.envs import check_env_params, make
from maskshift.tasks import task_from_model

FAST = settings(max_examples=60, deadline=None)
ints = st.integers(-3, 300)
floats = st.floats(allow_nan=True, allow_infinity=True, width=32)


@FAST
@given(num_envs=ints, num_steps=ints, total=ints, minibatches=ints, gamma=floats)
def test_ppo_config_builds_or_names_the_problem(num_envs, num_steps, total, minibatches, gamma):
    cfg = PPOConfig(num_envs=num_envs, num_steps=num_steps, total_timesteps=total,
                    num_minibatches=minibatches, gamma=gamma)
    try:
        cfg.validate()
    except ValueError as err:
        assert str(err)
        return
    assert cfg.num_updates >= 1 and cfg.minibatch_size >= 1 and 0 < gamma <= 1


@FAST
@given(num_envs=ints, total=ints, lr=floats, clip=floats, discount=floats,
       truncation=st.none() | ints)
def test_apg_config_builds_or_names_the_problem(num_envs, total, lr, clip, discount, truncation):
    cfg = APGConfig(num_envs=num_envs, total_timesteps=total, learning_rate=lr,
                    max_grad_norm=clip, discount=discount, truncation=truncation)
    try:
        cfg.validate()
    except ValueError as err:
        assert str(err)
        return
    assert cfg.num_updates >= 1 and math.isfinite(lr) and lr > 0 and 0 < discount <= 1


@FAST
@given(restarts=ints, iterations=ints, lr=floats, saturation=floats)
def test_controller_configs_build_or_name_the_problem(restarts, iterations, lr, saturation):
    for cfg in (OracleConfig(restarts=restarts, iterations=iterations, learning_rate=lr),
                GradientConfig(saturation=saturation)):
        try:
            cfg.validate()
        except ValueError as err:
            assert str(err)


@FAST
@given(field=st.sampled_from(["lambda_utility", "lambda_edit", "step_size", "mask_max",
                              "shift_cap", "max_steps_in_episode"]), value=floats)
def test_env_params_are_checked_field_by_field(field, value):
    try:
        check_env_params({field: value})
    except ValueError as err:
        assert f"EnvParams.{field}" in str(err)
        assert not (math.isfinite(value) and value > 1 and value == round(value))
        return
    assert math.isfinite(value) and value >= 0


@FAST
@given(text=st.text(max_size=8) | st.integers(-5, 5).map(str) | floats.map(str))
def test_cli_types_accept_only_what_they_say(text):
    for parse, ok in ((positive_int, lambda v: isinstance(v, int) and v >= 1),
                      (positive_float, lambda v: math.isfinite(v) and v > 0),
                      (nonneg_float, lambda v: math.isfinite(v) and v >= 0),
                      (fraction, lambda v: 0 <= v <= 1)):
        try:
            assert ok(parse(text))
        except argparse.ArgumentTypeError as err:
            assert repr(text) in str(err)


@pytest.fixture(scope="module")
def blob_envs(blob_mlp):
    """Both worlds over the blob MLP's two layers, ranks 1 and 2, with a jitted step each."""
    model, params, x, y = blob_mlp
    task = task_from_model(model.apply, params, ["Dense_0", "Dense_1"], train=(x[:400], y[:400]),
                           test=(x[400:], y[400:]), forget_classes=1, batch_size=16)
    out = {}
    for env_id in ("mask", "shift"):
        for rank in (1, 2):
            env, p = make(env_id, task=task, rank=rank, max_steps_in_episode=3)
            out[(env_id, rank)] = (env, p, jax.jit(env.reset), jax.jit(env.step))
    return out


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(env_id=st.sampled_from(["mask", "shift"]), rank=st.sampled_from([1, 2]),
       seed=st.integers(0, 2**16), scale=st.floats(0.0, 1e3), steps=st.integers(1, 4))
def test_any_finite_action_keeps_shapes_bounds_and_finiteness(blob_envs, env_id, rank, seed,
                                                              scale, steps):
    env, p, reset, step = blob_envs[(env_id, rank)]
    key = jax.random.key(seed)
    obs, state = reset(key, p)
    for _ in range(steps):
        key, k_a, k_s = jax.random.split(key, 3)
        action = scale * jax.random.normal(k_a, (env.action_size,))
        obs, state, reward, terminated, truncated, info = step(k_s, state, action, p)
        assert obs.shape == (env.obs_size,) and bool(jnp.all(jnp.isfinite(obs)))
        assert bool(jnp.all(jnp.abs(obs) <= 1.0)) and bool(jnp.isfinite(reward))
        for e, w0, shape in zip(state.edit, p.task.originals, env.shapes, strict=True):
            assert e.shape == shape
            if env_id == "mask":
                assert float(e.min()) >= 0.0 and float(e.max()) <= float(p.mask_max)
            else:
                cap = float(p.shift_cap) * float(jnp.linalg.norm(w0))
                assert float(jnp.linalg.norm(e)) <= cap * (1 + 1e-5)
    assert not bool(terminated)
    assert np.asarray(info["metrics"]).shape == (4,)
