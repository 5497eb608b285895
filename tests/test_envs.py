"""Environment tests in the style of gymnax's and jumanji's."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import maskshift
from maskshift.envs import REGISTERED_ENVS, EnvParams, MaskWorld, ShiftWorld, make
from maskshift.tasks import task_from_model

ENV_TASKS = [(e, t) for e in REGISTERED_ENVS for t in ("unlearn", "bias")]


def leaves_equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    if len(la) != len(lb):
        return False
    return all(bool(jnp.array_equal(x, y)) for x, y in zip(la, lb, strict=True))


@pytest.fixture(scope="module")
def jitted(envs):
    """One jitted ``reset`` and ``step`` per (env, task), shared by the tests below (each would
    otherwise trace and compile its own)."""
    return {k: (jax.jit(env.reset), jax.jit(env.step)) for k, (env, _) in envs.items()}


@pytest.mark.parametrize("env_id, task", ENV_TASKS)
def test_jit_reset_and_step_do_not_retrace(envs, env_id, task):
    env, params = envs[(env_id, task)]
    chex.clear_trace_counter()
    reset = jax.jit(chex.assert_max_traces(env.reset_env, n=1))
    step = jax.jit(chex.assert_max_traces(env.step_env, n=1))
    obs, state = reset(jax.random.key(0), params)
    for i in range(3):  # a second and third call reuse the compiled program
        action = env.action_space(params).sample(jax.random.key(i))
        obs, state, reward, terminated, info = step(jax.random.key(10 + i), state, action, params)
        chex.assert_tree_all_finite((obs, reward, state.edit))
        assert bool(env.observation_space(params).contains(obs))
        assert not bool(terminated)


@pytest.mark.parametrize("env_id", list(REGISTERED_ENVS))
def test_vmap_over_1024_envs(envs, env_id):
    env, params = envs[(env_id, "bias")]
    n = 1024
    keys = jax.random.split(jax.random.key(0), n)
    obs, state = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(keys, params)
    actions = jax.vmap(env.action_space(params).sample)(keys)
    step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
    obs, state, reward, terminated, truncated, info = step(keys, state, actions, params)
    assert obs.shape == (n, env.obs_size) and reward.shape == (n,)
    assert state.edit[0].shape == (n, *env.shapes[0])
    chex.assert_tree_all_finite((obs, reward))
    assert bool(jnp.all(jax.vmap(env.observation_space(params).contains)(obs)))
    assert float(jnp.std(reward)) > 0  # different actions, different outcomes


@pytest.mark.parametrize("env_id, task", ENV_TASKS)
def test_zero_action_returns_the_original_params_bit_for_bit(envs, jitted, env_id, task):
    env, params = envs[(env_id, task)]
    reset, step = jitted[(env_id, task)]
    obs, state = reset(jax.random.key(0), params)
    zero = jnp.zeros(env.action_size)
    for i in range(2):
        obs, state, reward, *_ = step(jax.random.key(i), state, zero, params)
    assert leaves_equal(env.edited_params(state, params), params.task.params)


@pytest.mark.parametrize("env_id, task", ENV_TASKS)
def test_original_model_scores_zero_reward_on_average(envs, env_id, task):
    env, params = envs[(env_id, task)]
    _, state = env.reset(jax.random.key(0), params)
    zero = jnp.zeros(env.action_size)
    keys = jax.random.split(jax.random.key(1), 256)
    # the task's arrays go in as arguments, not as constants folded into the program
    rewards = jax.jit(jax.vmap(env.step, in_axes=(0, None, None, None)))(keys, state, zero,
                                                                        params)[2]
    assert abs(float(rewards.mean())) < 0.03


@pytest.mark.parametrize("env_id, task", ENV_TASKS)
def test_episode_truncates_at_T_and_resets_to_the_original(envs, jitted, env_id, task):
    env, params = envs[(env_id, task)]
    reset, step = jitted[(env_id, task)]
    _, state = reset(jax.random.key(0), params)
    T = int(params.max_steps_in_episode)
    action = jnp.ones(env.action_size)  # a large edit
    for t in range(1, T + 1):
        obs, state, reward, terminated, truncated, info = step(jax.random.key(t), state, action,
                                                               params)
        assert bool(truncated) == (t == T)
        if t < T:
            assert int(state.time) == t
            assert not leaves_equal(env.edited_params(state, params), params.task.params)
    assert int(state.time) == 0
    assert leaves_equal(env.edited_params(state, params), params.task.params)
    # the final observation of the episode is kept for bootstrapping
    assert not bool(jnp.array_equal(info["final_observation"], obs))


@pytest.mark.parametrize("task", ["unlearn", "bias"])
def test_cached_activation_path_matches_the_full_model(envs, task):
    env, params = envs[("MaskWorld-v0", task)]
    t = env.task
    x = jnp.asarray(t.dataset.train.x[:64])
    full = t.apply_fn(t.params, x)
    cached = t.suffix(t.params, t.prefix(t.params, x))
    np.testing.assert_allclose(cached, full, rtol=1e-5, atol=1e-5)
    # and the cached train activations in EnvParams are those of the prefix
    assert params.task.train["h"].shape[1:] == t.prefix(t.params, x).shape[1:]


@pytest.mark.parametrize("env_id, task", ENV_TASKS)
def test_one_step_changes_are_bounded(envs, jitted, env_id, task):
    env, params = envs[(env_id, task)]
    reset, step = jitted[(env_id, task)]
    _, state = reset(jax.random.key(0), params)
    big = 100.0 * jax.random.normal(jax.random.key(1), (env.action_size,))
    _, new, *_ = step(jax.random.key(2), state, big, params)
    w0 = params.task.originals[0]
    delta = jnp.abs(new.edit[0] - state.edit[0])
    if env_id == "MaskWorld-v0":
        assert float(delta.max()) <= float(params.step_size) + 1e-6
    else:
        rms = float(jnp.sqrt(jnp.mean(w0 ** 2)))
        assert float(delta.max()) <= float(params.step_size) * rms + 1e-6
        # and the shift's norm stays under the cap after many steps
        s = new
        for i in range(20):
            _, s, *_ = step(jax.random.key(3 + i), s, big, params.replace(
                max_steps_in_episode=100, step_size=2.0))
        assert float(jnp.linalg.norm(s.edit[0])) <= float(params.shift_cap) * float(
            jnp.linalg.norm(w0)) * (1 + 1e-5)


# ---------------------------------------------------------------- hand-checked tiny model
class Linear(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(2, use_bias=False)(x)


@pytest.fixture(scope="module")
def tiny():
    params = {"params": {"Dense_0": {"kernel": jnp.array([[1.0, 2.0], [3.0, 4.0]])}}}
    x = np.array([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [2.0, 1.0]], np.float32)
    y = np.array([0, 1, 0, 1], np.int32)
    task = task_from_model(Linear().apply, params, ["Dense_0"], train=(x, y), test=(x, y),
                           forget_classes=1, batch_size=4)
    return task, x


def test_maskworld_with_a_zeroing_mask_by_hand(tiny):
    task, x = tiny
    env, params = make("MaskWorld-v0", task=task, rank=1)
    _, state = env.reset(jax.random.key(0), params)
    state = state.replace(edit=(jnp.array([[1.0, 0.0], [1.0, 2.0]]),))
    edited = env.edited_params(state, params)
    np.testing.assert_array_equal(edited["params"]["Dense_0"]["kernel"], [[1.0, 0.0], [3.0, 8.0]])
    logits = task.apply_fn(edited, jnp.asarray(x[:1]))  # [1, 1] @ W
    np.testing.assert_allclose(logits, [[4.0, 8.0]])
    # one step by hand: M <- clip(M + step * tanh(u v^T / sqrt(1)), 0, 2)
    _, state = env.reset(jax.random.key(0), params)
    u, v = np.array([2.0, -1.0]), np.array([1.0, 3.0])
    _, new, *_ = env.step(jax.random.key(1), state, jnp.asarray(np.r_[u, v]), params)
    expect = np.clip(1.0 + 0.25 * np.tanh(np.outer(u, v)), 0.0, 2.0)
    np.testing.assert_allclose(new.edit[0], expect, rtol=1e-6)


def test_shiftworld_with_a_known_shift_by_hand(tiny):
    task, x = tiny
    env, params = make("ShiftWorld-v0", task=task, rank=1)
    _, state = env.reset(jax.random.key(0), params)
    state = state.replace(edit=(jnp.array([[0.5, 0.0], [0.0, -1.0]]),))
    edited = env.edited_params(state, params)
    np.testing.assert_allclose(edited["params"]["Dense_0"]["kernel"], [[1.5, 2.0], [3.0, 3.0]])
    np.testing.assert_allclose(task.apply_fn(edited, jnp.asarray(x[:1])), [[4.5, 5.0]])
    # one step by hand: S <- S + step_size * rms(W0) * tanh(u v^T)
    _, state = env.reset(jax.random.key(0), params)
    u, v = np.array([1.0, 0.5]), np.array([-1.0, 2.0])
    _, new, *_ = env.step(jax.random.key(1), state, jnp.asarray(np.r_[u, v]), params)
    rms = np.sqrt(np.mean(np.array([[1, 2], [3, 4]]) ** 2))
    assert float(params.step_size) == pytest.approx(0.1)  # ShiftWorld's default step
    np.testing.assert_allclose(new.edit[0], 0.1 * rms * np.tanh(np.outer(u, v)), rtol=1e-6)


def test_reward_formula_by_hand(tiny):
    """Unlearn class 1 of the tiny model: reward = l_u (retain_ce0 - retain_ce) + l_e (forget_ce -
    forget_ce0), each forget example's cross-entropy capped at 5."""
    task, x = tiny
    env, params = make("MaskWorld-v0", task=task, rank=1, lambda_utility=3.0, lambda_edit=0.5)
    _, state = env.reset(jax.random.key(0), params)
    action = jnp.asarray([1.0, 1.0, -1.0, 1.0])
    _, new, reward, _, info = env.step_env(jax.random.key(5), state, action, params)
    retain_ce, forget_ce = float(new.metrics[0]), float(new.metrics[1])
    base = params.task.base_metrics[0]
    expected = 3.0 * (float(base[0]) - retain_ce) + 0.5 * (forget_ce - float(base[1]))
    assert float(reward) == pytest.approx(expected, rel=1e-5)
    assert float(info["utility"]) == pytest.approx(float(base[0]) - retain_ce, rel=1e-5)
    # base metrics are the original's on the whole train split, computed by hand
    logits = x @ np.array([[1.0, 2.0], [3.0, 4.0]])
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    y = np.array([0, 1, 0, 1])
    ce = -logp[np.arange(4), y]
    assert float(base[0]) == pytest.approx(ce[y == 0].mean(), rel=1e-5)
    assert float(base[1]) == pytest.approx(np.minimum(ce[y == 1], 5.0).mean(), rel=1e-5)
    # and the edited model's metrics are those of the edited weights on the sampled batch
    w = np.asarray(env.edited_params(new, params)["params"]["Dense_0"]["kernel"])
    assert not np.allclose(w, [[1.0, 2.0], [3.0, 4.0]])


def test_a_users_own_flax_mlp_through_the_same_api(blob_mlp):
    model, params, x, y = blob_mlp
    task = task_from_model(model.apply, params, ["Dense_0"], train=(x[:400], y[:400]),
                           test=(x[400:], y[400:]), forget_classes=2, batch_size=16)
    env, env_params = maskshift.make("ShiftWorld-v0", task=task, rank=2)
    assert env.shapes == ((2, 16),)
    obs, state = jax.jit(env.reset)(jax.random.key(0), env_params)
    step = jax.jit(env.step)
    for i in range(3):
        obs, state, reward, *_ = step(jax.random.key(i), state,
                                      env.action_space(env_params).sample(jax.random.key(i)),
                                      env_params)
    edited = env.edited_params(state, env_params)
    assert jax.tree.structure(edited) == jax.tree.structure(params)
    assert not leaves_equal(edited["params"]["Dense_0"], params["params"]["Dense_0"])
    assert leaves_equal(edited["params"]["Dense_1"], params["params"]["Dense_1"])
    assert np.isfinite(float(reward))


# ---------------------------------------------------------------- bad input
def test_bad_input_gets_clear_errors_before_tracing(envs, tiny):
    task, _ = tiny
    with pytest.raises(ValueError, match="Unknown environment 'GridWorld-v0'.*MaskWorld-v0"):
        make("GridWorld-v0", task=task)
    with pytest.raises(ValueError, match="Unknown layer or leaf 'Dense_9'.*params/Dense_0/kernel"):
        maskshift.make("MaskWorld-v0", task="unlearn", task_kwargs={"edit": ["Dense_9"]})
    with pytest.raises(ValueError, match=r"rank 3 is larger than min\(m, n\) = 2"):
        make("MaskWorld-v0", task=task, rank=3)
    with pytest.raises(ValueError, match="Unknown EnvParams field"):
        make("MaskWorld-v0", task=task, lamda_edit=1.0)
    with pytest.raises(ValueError, match="Unknown task 'nope'"):
        make("MaskWorld-v0", task="nope")
    env, params = make("MaskWorld-v0", task=task, rank=1)
    _, state = env.reset(jax.random.key(0), params)
    with pytest.raises(ValueError, match=r"expects an action of shape \(4,\).*got shape \(5,\)"):
        env.step(jax.random.key(0), state, jnp.zeros(5), params)
    bad = {"params": {"Dense_0": {"kernel": jnp.array([[1.0, jnp.nan], [3.0, 4.0]])}}}
    x, y = np.eye(2, dtype=np.float32), np.array([0, 1])
    with pytest.raises(ValueError, match="not finite at 'params/Dense_0/kernel'"):
        task_from_model(Linear().apply, bad, ["Dense_0"], train=(x, y), test=(x, y))
    with pytest.raises(ValueError, match="not a kernel"):
        task_from_model(lambda p, x: x, {"params": {"b": jnp.ones(3), "W": jnp.ones((3, 3))}},
                        ["params/b"], train=(x, y), test=(x, y))


def test_env_params_are_a_sweepable_pytree(envs):
    env, params = envs[("MaskWorld-v0", "bias")]
    lambdas = jnp.array([0.0, 1.0, 5.0])
    _, state = env.reset(jax.random.key(0), params)
    action = jnp.ones(env.action_size)

    def reward_for(lam, state, params):
        return env.step(jax.random.key(1), state, action, params.replace(lambda_edit=lam))[2]

    rewards = jax.jit(jax.vmap(reward_for, in_axes=(0, None, None)))(lambdas, state, params)
    assert isinstance(params, EnvParams)
    # linear in lambda_edit with the same minibatch: equal spacing
    assert float(rewards[2] - rewards[1]) == pytest.approx(4 * float(rewards[1] - rewards[0]),
                                                           rel=1e-4, abs=1e-6)
    assert issubclass(MaskWorld, type(env).__mro__[1]) and issubclass(ShiftWorld,
                                                                      type(env).__mro__[1])
