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
    for k in (1, 4):
        res = tr.train_and_evaluate(cfg, f"{sys.argv[1]}/d{k}", devices=k, log=lambda s: None)
        out[f"run{k}"] = {"before": res["before"], "after": res["after"],
                          "returns": res["history"]["episode_return"], "train": res["train"]}
        edited[k] = load_edited(f"{sys.argv[1]}/d{k}", env.task.params)[0]
    out["edited_max_diff"] = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                                 for a, b in zip(jax.tree.leaves(edited[1]),
                                                 jax.tree.leaves(edited[4])))

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


def test_sharded_training_gives_the_single_device_numbers(sharded):
    one, four = sharded["run1"], sharded["run4"]
    assert sharded["edited_max_diff"] < 1e-4
    assert four["returns"] == pytest.approx(one["returns"], rel=1e-4, abs=1e-5)
    for k in ("accuracy", "worst_group_acc", "fpr_gap", "flip_rate"):
        assert four["after"][k] == pytest.approx(one["after"][k], abs=1e-6)
        assert four["before"][k] == pytest.approx(one["before"][k], abs=1e-6)
