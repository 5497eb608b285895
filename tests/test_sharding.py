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
    from maskshift import train as tr
    from maskshift.checkpoint import load_edited
    from maskshift.ppo import PPOConfig, make_train
    from maskshift.sharding import env_mesh, num_shards

    out = {"devices": len(jax.devices())}
    cfg = tr.RunConfig(env="shift", task="bias", seed=5, rank=2, episode_length=4, eval_batch=16,
                       updates_per_chunk=2, ppo=PPOConfig(num_envs=8, num_steps=4,
                       total_timesteps=8 * 4 * 4, num_minibatches=2))
    env, env_params = tr.build_env(cfg)
    edited = {}
    # 1 device; 4 devices; 4 devices each stepping its 2 environments one at a time (env_chunk)
    for k, devices, chunk in (("1", 1, None), ("4", 4, None), ("4c", 4, 1)):
        res = tr.train_and_evaluate(cfg, f"{sys.argv[1]}/d{k}", devices=devices, env_chunk=chunk,
                                    log=lambda s: None)
        out[f"run{k}"] = {"before": res["before"], "after": res["after"],
                          "returns": res["history"]["episode_return"], "train": res["train"]}
        edited[k] = load_edited(f"{sys.argv[1]}/d{k}", env.task.params)[0]
    for k in ("4", "4c"):
        out[f"edited_max_diff_{k}"] = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                                          for a, b in zip(jax.tree.leaves(edited["1"]),
                                                          jax.tree.leaves(edited[k])))

    # the arrays themselves: the env batch lives on 4 devices, the policy is replicated
    trainer = make_train(cfg.ppo, env, env_mesh(4))
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
    print("RESULT" + json.dumps(out))
""")


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu"}
    tmp = tmp_path_factory.mktemp("sharded")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT"))
    return json.loads(line[len("RESULT"):])


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


@pytest.mark.parametrize("run", ["4", "4c"])
def test_sharded_training_gives_the_single_device_numbers(sharded, run):
    """Sharded over 4 devices, with or without stepping each device's environments in chunks."""
    one, four = sharded["run1"], sharded[f"run{run}"]
    assert sharded[f"edited_max_diff_{run}"] < 1e-4
    assert four["returns"] == pytest.approx(one["returns"], rel=1e-4, abs=1e-5)
    for k in ("accuracy", "worst_group_acc", "fpr_gap", "flip_rate"):
        assert four["after"][k] == pytest.approx(one["after"][k], abs=1e-6)
        assert four["before"][k] == pytest.approx(one["before"][k], abs=1e-6)


@pytest.mark.parametrize("shards, chunk", [(1, 1), (1, 3), (2, 1), (2, 3), (3, 2)])
def test_map_envs_keeps_every_environment_in_place(shards, chunk):
    """Chunked stepping regroups the batch and puts every result back where it came from."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from maskshift.sharding import map_envs

    n = 12 if shards != 3 else 18
    xs = {"a": jnp.arange(n * 2.0).reshape(n, 2), "b": (jnp.arange(n) * 10,)}

    def fn(x, shared):  # an environment's own row, and which row it was given
        return {"out": x["a"] * shared + x["b"][0], "seen": x["b"][0] // 10}

    want = jax.vmap(fn, in_axes=(0, None))(xs, 3.0)
    got = jax.jit(lambda x: map_envs(fn, x, 3.0, chunk, shards))(xs)
    np.testing.assert_array_equal(got["out"], want["out"])
    np.testing.assert_array_equal(got["seen"], np.arange(n))


def test_a_chunk_that_does_not_divide_each_devices_share_is_refused():
    from maskshift.sharding import check_chunk

    check_chunk(16, 4, 4)  # 4 per device, chunk 4
    with pytest.raises(ValueError, match="does not divide the 4 environments on each of 4 "
                                         "devices.*--env-chunk"):
        check_chunk(16, 3, 4)
    with pytest.raises(ValueError, match="does not divide 10 environments"):
        check_chunk(10, 4)
