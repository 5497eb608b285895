"""The shared minibatch draw: one train minibatch per batched step for every environment."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from maskshift import make, pool_task, unlearning_task
from maskshift.sharding import step_envs


@pytest.fixture(scope="module")
def shared_envs(digits_model):
    single = make("mask", unlearning_task(7), minibatch="shared")
    pool = make("mask", pool_task(unlearning_task(7), [1, 3, 8]), minibatch="shared")
    return single, pool


def _batched_step(env, p, n, key, chunk=None):
    keys = jax.random.split(jax.random.key(0), n)
    _, state = jax.vmap(env.reset, in_axes=(0, None))(keys, p)
    actions = jnp.tile(0.5 * jax.random.normal(jax.random.key(2), (1, env.action_size)), (n, 1))
    return state, jax.jit(lambda k, s, a, q: step_envs(env, k, s, a, q, chunk))(
        keys, state, actions, env.step_params(p, key))


def test_a_shared_draw_gives_every_environment_the_same_rows(shared_envs):
    (env, p), _ = shared_envs
    _, (_, new, reward, _, _, info) = _batched_step(env, p, 8, jax.random.key(5))
    assert np.ptp(np.asarray(reward)) == 0.0       # same state and action, same rows
    # ... the rows sample() draws with the step's key, for a single target
    batch = env.task.objective.sample(jax.random.key(5), p.task.train, 0)
    edit = jax.tree.map(lambda e: e[0], new.edit)
    np.testing.assert_allclose(info["metrics"][0], env.metrics_on(edit, batch, p), atol=1e-6)
    per_env = make("mask", env.task)
    _, (_, _, r2, _, _, _) = _batched_step(*per_env, 8, jax.random.key(5))
    assert np.ptp(np.asarray(r2)) > 0.0            # per-environment draws differ


def test_the_chunked_step_draws_the_same_shared_rows(shared_envs):
    (env, p), _ = shared_envs
    _, (_, _, r_vmap, _, _, _) = _batched_step(env, p, 8, jax.random.key(5))
    _, (_, _, r_chunk, _, _, _) = _batched_step(env, p, 8, jax.random.key(5), chunk=4)
    np.testing.assert_allclose(r_vmap, r_chunk, atol=1e-6)


def test_a_pool_shared_draw_is_stratified_and_weighted_per_target(shared_envs):
    _, (env, p) = shared_envs
    obj = env.task.objective
    batch = obj.sample_shared(jax.random.key(1), p.task.train)
    per = obj.batch_size // 3
    assert batch["h_forget"].shape[0] == 3 * per and batch["h_retain"].shape[0] == obj.batch_size
    for t, cls in enumerate([1, 3, 8]):
        w = obj.for_target(batch, t)
        yf, yr = np.asarray(batch["y_forget"]), np.asarray(batch["y_retain"])
        assert (yf[np.asarray(w["w_forget"]) > 0] == cls).all()
        assert np.asarray(w["w_forget"]).sum() == per
        assert not (yr[np.asarray(w["w_retain"]) > 0] == cls).any()
        assert (np.asarray(w["w_retain"])[yr != cls] == 1).all()
    # at the original weights, each target's weighted metrics are near its whole-split ones
    edit = tuple(env.initial_edit(w) for w in p.task.originals)
    m = env.metrics_on(edit, obj.for_target(batch, 1), p)
    assert abs(float(m[2]) - float(p.task.base_metrics[1, 2])) < 0.1   # retain accuracy


@pytest.mark.slow
def test_ppo_trains_with_the_shared_draw(shared_envs, tmp_path):
    import json

    from maskshift.cli import train as cli_train

    out = tmp_path / "run"
    argv = ["--heads", "flat", "--minibatch", "shared", "--num-envs", "8", "--episode-length", "3",
            "--total-steps", "48", "--out", str(out)]
    assert cli_train.main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["minibatch"] == "shared" and np.isfinite(res["after"]["forget_acc"])
    assert cli_train.main([*argv[:-1], str(tmp_path / "again")]) == 0  # same seed, same numbers
    again = json.loads((tmp_path / "again" / "results.json").read_text())
    assert again["after"] == res["after"]
    assert again["history"]["episode_return"] == res["history"]["episode_return"]


def test_an_unknown_draw_is_refused(digits_model):
    with pytest.raises(ValueError, match="Unknown minibatch draw 'each'; choose one of per_env"):
        make("mask", unlearning_task(7), minibatch="each")
