"""PPO: GAE golden numbers by hand, the loss, and learning on a tiny editing task."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import maskshift
from maskshift.agents.common import deterministic_rollout
from maskshift.agents.ppo import PPOConfig, compute_gae, make_train
from maskshift.tasks import task_from_model


def test_gae_by_hand_with_truncation_bootstrap():
    """One env, T = 3, gamma = 0.5, lambda = 0.5. The episode is truncated after step 1 (index 1),
    so step 1 bootstraps from V(final obs) = 4 and the recursion does not cross into step 2.

    deltas: d0 = 1 + 0.5*2 - 1 = 1;  d1 = 2 + 0.5*4 - 2 = 2;  d2 = 0 + 0.5*3 - 1 = 0.5
    advantages: A2 = 0.5;  A1 = d1 = 2 (episode ended);  A0 = 1 + 0.25*2 = 1.5
    """
    rewards = jnp.array([[1.0], [2.0], [0.0]])
    values = jnp.array([[1.0], [2.0], [1.0]])
    next_values = jnp.array([[2.0], [4.0], [3.0]])
    terminated = jnp.zeros((3, 1))
    ends = jnp.array([[0.0], [1.0], [0.0]])
    adv, ret = compute_gae(rewards, values, next_values, terminated, ends, 0.5, 0.5)
    np.testing.assert_allclose(adv[:, 0], [1.5, 2.0, 0.5])
    np.testing.assert_allclose(ret[:, 0], [2.5, 4.0, 1.5])


def test_gae_termination_does_not_bootstrap():
    """A terminated step's delta is r - V(s): d = 1 - 0.5 = 0.5, whatever next_value says."""
    adv, _ = compute_gae(jnp.array([[1.0]]), jnp.array([[0.5]]), jnp.array([[100.0]]),
                         jnp.array([[1.0]]), jnp.array([[1.0]]), 0.9, 0.9)
    assert float(adv[0, 0]) == pytest.approx(0.5)


def test_gae_lambda_one_is_the_discounted_return_minus_value():
    r = jnp.array([[1.0], [1.0], [1.0]])
    v = jnp.zeros((3, 1))
    nv = jnp.zeros((3, 1))
    adv, _ = compute_gae(r, v, nv, jnp.zeros((3, 1)), jnp.zeros((3, 1)), 0.9, 1.0)
    np.testing.assert_allclose(adv[:, 0], [1 + 0.9 + 0.81, 1 + 0.9, 1.0], rtol=1e-6)


@pytest.fixture(scope="module")
def blob_task(blob_mlp):
    model, params, x, y = blob_mlp
    return task_from_model(model.apply, params, ["Dense_0"], train=(x[:400], y[:400]),
                           val=(x[400:500], y[400:500]), test=(x[500:], y[500:]),
                           forget_classes=2, batch_size=32)


@pytest.mark.slow  # PPO training stays in the quick suite: test_train's, test_policy's runs
def test_ppo_learns_a_tiny_editing_task(blob_task):
    env, env_params = maskshift.make("MaskWorld-v0", task=blob_task, rank=1,
                                     max_steps_in_episode=4, step_size=0.5)
    cfg = PPOConfig(num_envs=32, num_steps=4, total_timesteps=32 * 4 * 150)
    trainer = make_train(cfg, env)
    rs, metrics = jax.jit(trainer.train)(jax.random.key(0), env_params)
    ret = np.asarray(metrics["episode_return"])
    assert np.isfinite(ret).all()
    assert ret[-5:].mean() > ret[:5].mean() + 3.0, ret  # forgetting earns up to ~5 per step
    # the trained policy's deterministic edit forgets class 2 on the train split
    edits = deterministic_rollout(env, env_params, trainer.network, rs.params)
    state = env.reset_env(jax.random.key(0), env_params)[1]
    edited = env.edited_params(state.replace(edit=tuple(e[-1] for e in edits)), env_params)
    x, y = blob_task.dataset.train.x, blob_task.dataset.train.y
    pred = np.asarray(blob_task.apply_fn(edited, jnp.asarray(x)).argmax(-1))
    assert (pred[y == 2] == 2).mean() < 0.2
    assert (pred[y != 2] == y[y != 2]).mean() > 0.9


@pytest.mark.slow
def test_train_is_pure_and_vmaps_over_seeds(blob_task):
    env, env_params = maskshift.make("ShiftWorld-v0", task=blob_task, rank=1,
                                     max_steps_in_episode=4)
    cfg = PPOConfig(num_envs=8, num_steps=4, total_timesteps=8 * 4 * 3)
    trainer = make_train(cfg, env)
    keys = jax.random.split(jax.random.key(1), 2)
    train = jax.jit(jax.vmap(trainer.train, in_axes=(0, None)))
    (rs, m), (rs2, m2) = train(keys, env_params), train(keys, env_params)
    assert m["episode_return"].shape == (2, 3)
    np.testing.assert_array_equal(m["episode_return"], m2["episode_return"])  # same seed
    for a, b in zip(jax.tree.leaves(rs.params), jax.tree.leaves(rs2.params), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(m["episode_return"][0], m["episode_return"][1])  # other seed
    _, m_one = jax.jit(trainer.train)(keys[0], env_params)
    np.testing.assert_allclose(m_one["episode_return"], m["episode_return"][0], rtol=1e-5,
                               atol=1e-6)


def test_config_is_validated():
    with pytest.raises(ValueError, match="not divisible by num_minibatches"):
        PPOConfig(num_envs=3, num_steps=3, num_minibatches=4).validate()
    with pytest.raises(ValueError, match="num_envs must be at least 1"):
        PPOConfig(num_envs=0).validate()
