"""The environment batch sharded over 4 (forced host) devices: same numbers, really split.

XLA fixes the host device count when JAX starts, so the check runs in a fresh interpreter with
``XLA_FLAGS=--xla_force_host_platform_device_count=4``, through ``train_and_evaluate`` (the code
path of ``python -m maskshift.train --devices N``).
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    from jax.sharding import PartitionSpec as P
    from maskshift import run as tr
    from maskshift.checkpoint import load_edited
    from maskshift.agents.ppo import PPOConfig, make_train
    from maskshift.sharding import env_mesh, num_shards

    out = {"devices": len(jax.devices())}
    cfg = tr.RunConfig(env="shift", task="bias", seed=5, rank=2, episode_length=4, eval_batch=16,
                       updates_per_chunk=2, editor=PPOConfig(num_envs=8, num_steps=4,
                       total_timesteps=8 * 4 * 4, num_minibatches=2))
    env, env_params = tr.build_env(cfg)
    edited = {}
    # 1 device; 4 devices (each device stepping its environments in groups, env_chunk, is
    # checked by map_envs below and by test_chunked_env_steps_match_one_vmap)
    for k, devices, chunk in (("1", 1, None), ("4", 4, None)):
        res = tr.train_and_evaluate(cfg, f"{sys.argv[1]}/d{k}", devices=devices, env_chunk=chunk,
                                    log=lambda s: None)
        out[f"run{k}"] = {"before": res["before"], "after": res["after"],
                          "returns": res["history"]["episode_return"], "train": res["train"]}
        edited[k] = load_edited(f"{sys.argv[1]}/d{k}", env.task.params)[0]
    out["edited_max_diff_4"] = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                                   for a, b in zip(jax.tree.leaves(edited["1"]),
                                                   jax.tree.leaves(edited["4"])))

    # the arrays themselves: the env batch lives on 4 devices, the policy is replicated
    trainer = make_train(cfg.editor, env, env_mesh(4))
    rs = jax.jit(trainer.init)(jax.random.key(0), env_params)
    out["layout"] = {
        "obs_shards": num_shards(rs.obs),
        "edit_shards": [num_shards(e) for e in rs.env_state.edit],
        "obs_shard_rows": sorted({s.data.shape[0] for s in rs.obs.addressable_shards}),
        "obs_devices": len(rs.obs.sharding.device_set),
        "split_on_envs_axis": rs.obs.sharding.spec == P("envs"),
        "policy_replicated": all(x.sharding.is_fully_replicated
                                 for x in jax.tree.leaves(rs.params)),
    }
    # map_envs on the 4-device mesh, in groups per device: the numbers of one vmap, split on 4
    from maskshift.sharding import map_envs, put_envs
    sys.path.insert(0, sys.argv[2])
    from test_sharding import _toy_map_case
    fn, carry, xs = _toy_map_case(16)
    want = jax.vmap(fn, in_axes=(0, 0, None))(carry, xs, 3.0)
    mesh = env_mesh(4)
    for chunk in (1, 2):
        run = jax.jit(lambda c, x: map_envs(fn, c, x, 3.0, chunk, mesh))
        got = run(*put_envs((carry, xs), mesh))
        out[f"map_envs_chunk{chunk}"] = {
            "max_diff": max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                            for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got))),
            "carry_shards": num_shards(got[0]["a"]), "ys_shards": num_shards(got[1]["seen"])}
    print("RESULT" + json.dumps(out))
""")


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    # conftest's XLA flags, and 4 host devices
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": f"{os.environ['XLA_FLAGS']} --xla_force_host_platform_device_count=4"}
    tmp = tmp_path_factory.mktemp("sharded")
    here = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp), here], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT"))
    return json.loads(line[len("RESULT"):])


@pytest.mark.slow
def test_the_environment_batch_is_split_over_four_devices(sharded):
    assert sharded["devices"] == 4
    lay = sharded["layout"]
    assert lay["obs_shards"] == 4 and lay["obs_devices"] == 4
    assert lay["edit_shards"] == [4]
    assert lay["obs_shard_rows"] == [2]  # 8 environments, 2 per device
    assert lay["split_on_envs_axis"] and lay["policy_replicated"]
    assert sharded["run4"]["train"]["devices"] == 4
    assert sharded["run4"]["train"]["env_batch_shards"] == 4
    assert sharded["run1"]["train"]["env_batch_shards"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("chunk", [1, 2])
def test_map_envs_in_groups_on_each_of_four_devices(sharded, chunk):
    """Each device steps its own environments in groups; the results are one vmap's, still
    split over the 4 devices."""
    res = sharded[f"map_envs_chunk{chunk}"]
    assert res["max_diff"] < 1e-5
    assert res["carry_shards"] == 4 and res["ys_shards"] == 4


@pytest.mark.slow
def test_sharded_training_gives_the_single_device_numbers(sharded):
    """Sharded over 4 devices: the single device's numbers."""
    one, four = sharded["run1"], sharded["run4"]
    assert sharded["edited_max_diff_4"] < 1e-4
    assert four["returns"] == pytest.approx(one["returns"], rel=1e-4, abs=1e-5)
    for k in ("accuracy", "worst_group_acc", "fpr_gap", "flip_rate"):
        assert four["after"][k] == pytest.approx(one["after"][k], abs=1e-6)
        assert four["before"][k] == pytest.approx(one["before"][k], abs=1e-6)


def _toy_map_case(n):
    """A per-environment carry and inputs, and a step that reads the old carry and writes a new
    one: ``(fn, carry, xs)``."""
    import jax
    import jax.numpy as jnp

    carry = {"a": jnp.arange(n * 2.0).reshape(n, 2), "t": jnp.zeros(n, jnp.int32)}
    xs = (jnp.arange(n) * 10, jax.random.split(jax.random.key(0), n))

    def fn(c, x, shared):
        i, key = x
        new = {"a": c["a"] * shared + i + jax.random.uniform(key), "t": c["t"] + 1}
        return new, {"seen": i // 10, "old_sum": c["a"].sum()}

    return fn, carry, xs


@pytest.mark.parametrize("chunk", [1, 3, 4, 12])
def test_map_envs_updates_every_environment_in_place(chunk):
    """Chunked stepping gives every environment its own inputs, reads its old carry and writes
    its new carry and outputs back where they came from, as one vmap does."""
    import jax
    import numpy as np

    from maskshift.sharding import map_envs

    n = 12
    fn, carry, xs = _toy_map_case(n)
    want = jax.vmap(fn, in_axes=(0, 0, None))(carry, xs, 3.0)
    got = jax.jit(lambda c, x: map_envs(fn, c, x, 3.0, chunk), donate_argnums=0)(carry, xs)
    for w, g in zip(jax.tree.leaves(want), jax.tree.leaves(got), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-6)
    np.testing.assert_array_equal(got[1]["seen"], np.arange(n))
    np.testing.assert_array_equal(got[0]["t"], np.ones(n))


@pytest.mark.slow
def test_chunked_env_steps_match_one_vmap(envs):
    """``step_envs`` in groups gives the batched env step's numbers, auto-reset included."""
    import jax
    import numpy as np

    from maskshift.sharding import step_envs

    env, p = envs[("MaskWorld-v0", "unlearn")]
    n = 6
    keys = jax.random.split(jax.random.key(1), n)
    _, state = jax.vmap(env.reset, in_axes=(0, None))(keys, p)
    actions = 0.5 * jax.random.normal(jax.random.key(2), (n, env.action_size))

    def rollout(chunk):
        def body(s, k):
            out = step_envs(env, jax.random.split(k, n), s, actions, p, chunk)
            return out[1], (out[0], out[2], out[4] | out[3])
        return jax.jit(lambda s: jax.lax.scan(body, s, jax.random.split(jax.random.key(3), 4)))(
            state)

    (s1, out1), (s2, out2) = rollout(None), rollout(2)
    assert bool(out1[2].any())  # an episode of 3 steps ended and reset within the 4 steps
    for a, b in zip(jax.tree.leaves((s1, out1)), jax.tree.leaves((s2, out2)), strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-6)


def test_a_chunk_that_does_not_divide_each_devices_share_is_refused():
    from maskshift.sharding import check_chunk

    check_chunk(16, 4, 4)  # 4 per device, chunk 4
    with pytest.raises(ValueError, match="does not divide the 4 environments on each of 4 "
                                         "devices.*`env_chunk`"):
        check_chunk(16, 3, 4)
    with pytest.raises(ValueError, match="does not divide 10 environments"):
        check_chunk(10, 4)
