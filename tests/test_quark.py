"""Quark: reward-quantile tokens, learning on a tiny budget with a reward no gradient follows,
and a run that checkpoints, resumes and rolls out like PPO and APG."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from maskshift import run as tr
from maskshift.agents.quark import QuarkConfig, QuarkPolicy, make_train
from maskshift.agents.quark.train import quantile_tokens


def test_tokens_sort_the_valid_episodes_into_equal_quantiles():
    returns = jnp.array([5.0, -1.0, 3.0, 0.0, 9.0, 7.0, 0.0, 0.0])
    valid = jnp.array([True] * 6 + [False] * 2)  # the last two slots are still empty
    tokens = np.asarray(quantile_tokens(returns, valid, 3))
    # valid returns ranked -1 < 0 < 3 < 5 < 7 < 9: two per quantile
    assert tokens[:6].tolist() == [1, 0, 1, 0, 2, 2] and tokens[6:].tolist() == [0, 0]


def test_the_policy_reads_its_token_and_acts_as_the_best_without_one():
    net = QuarkPolicy(shapes=((6, 4),), rank=2, num_quantiles=3)
    obs = jnp.ones((2, 5))
    params = net.init(jax.random.key(0), obs)
    params = jax.tree.map(lambda a: a + 0.1, params)  # break the zero-initialised V heads
    best = net.apply(params, obs)[0].mean()
    assert np.allclose(best, net.apply(params, obs, jnp.full((2,), 2))[0].mean())
    assert not np.allclose(best, net.apply(params, obs, jnp.zeros((2,), jnp.int32))[0].mean())


@pytest.fixture(scope="module")
def unlearn_env8(envs):
    env, p = envs[("MaskWorld-v0", "unlearn")]
    return env, p.replace(max_steps_in_episode=8)


@pytest.mark.slow
def test_quark_learns_on_a_tiny_budget(unlearn_env8):
    env, p = unlearn_env8
    cfg = QuarkConfig(num_envs=4, num_steps=8, total_timesteps=4 * 8 * 10, pool_factor=4,
                      num_minibatches=2, learning_rate=3e-3)
    trainer = make_train(cfg, env)
    s = jax.jit(trainer.init)(jax.random.key(0), p)
    s, m = jax.jit(trainer.run, static_argnums=2)(s, p, cfg.num_updates)
    ret = np.asarray(m["episode_return"])
    assert ret.shape == (10,) and np.all(np.isfinite(ret)) and int(s.update) == 10
    assert int(s.seen) == 40  # the pool holds the last 16 of them
    # the best quantile's episodes lead the pool, and what it samples improves
    assert np.all(np.asarray(m["best_quantile_return"]) >= ret - 1e-6)
    assert ret[-3:].mean() > ret[:3].mean()


SMALL = dataclasses.replace(
    tr.RunConfig(env="mask", task="unlearn", seed=1, rank=2, episode_length=3, eval_batch=16,
                 updates_per_chunk=2, algo="quark",
                 editor=QuarkConfig(num_envs=4, num_steps=3, total_timesteps=4 * 3 * 4,
                                    pool_factor=2, num_minibatches=2)),
    forget_fraction=0.1, forget_reward="accuracy_gap")


@pytest.mark.long
def test_a_quark_run_on_a_non_differentiable_reward_resumes_after_a_kill(tmp_path,
                                                                          digits_model):
    from maskshift.run.loop import load_runner

    stopped = tr.train_and_evaluate(SMALL, tmp_path / "k", stop_after_chunks=1,
                                    log=lambda s: None)
    assert stopped == {"stopped_at_update": 2}
    first = json.loads((tmp_path / "k" / "ckpt" / "meta.json").read_text())["history"]
    trainer = make_train(SMALL.editor, tr.build_env(SMALL)[0])
    like = trainer.init(jax.random.key(0), tr.build_env(SMALL)[1])
    state, _ = load_runner(tmp_path / "k", like, SMALL)
    assert int(state.update) == 2 and int(state.seen) == 8  # the pool came back with the policy
    assert np.asarray(state.pool_returns)[:8].std() > 0
    lines = []
    res = tr.train_and_evaluate(SMALL, tmp_path / "k", log=lines.append)
    assert any(line.startswith("resuming") for line in lines)
    assert res["train"]["updates"] == 4 and res["algo"] == "quark"
    assert res["history"]["episode_return"][:2] == first["episode_return"]
    assert "forget_size" in res["after"]
