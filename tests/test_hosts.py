"""More than one process: the settings a run joins with, who writes, and a real 2-process run."""

import json
import os
import re
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from maskshift import _io, hosts


def test_settings_come_from_the_arguments_else_the_environment():
    env = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4",
           "JAX_PROCESS_ID": "3"}
    assert hosts.distributed_settings(environ=env) == {
        "coordinator_address": "10.0.0.1:1234", "num_processes": 4, "process_id": 3}
    assert hosts.distributed_settings(process_id=1, environ=env)["process_id"] == 1
    assert hosts.distributed_settings(environ={}) == {}  # JAX's own cluster detection
    with pytest.raises(ValueError, match="`process_id` missing"):
        hosts.distributed_settings(environ={k: v for k, v in env.items() if "ID" not in k})


def test_host_copy_gives_numpy_with_the_same_values():
    tree = {"a": jnp.arange(6.0).reshape(2, 3), "b": (np.int32(3), jnp.ones(2, jnp.bfloat16))}
    out = hosts.host_copy(tree)
    assert all(isinstance(x, np.ndarray) for x in jax.tree.leaves(out))
    np.testing.assert_array_equal(out["a"], np.arange(6.0).reshape(2, 3))


def test_only_the_primary_process_writes(tmp_path, monkeypatch):
    monkeypatch.setattr(_io, "is_primary", lambda: False)
    _io.atomic_write_json(tmp_path / "r.json", {"a": 1})
    _io.save_pytree(tmp_path / "tree", {"w": np.ones(3)})
    (tmp_path / "stage").mkdir()
    _io.replace_dir(tmp_path / "stage", tmp_path / "final")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stage"]
    monkeypatch.setattr(_io, "is_primary", lambda: True)
    _io.atomic_write_json(tmp_path / "r.json", {"a": 1})
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": 1}


TINY = ["--env", "shift", "--task", "bias", "--seed", "5", "--rank", "2", "--episode-length", "4",
        "--num-envs", "8", "--total-steps", "128", "--updates-per-chunk", "2", "--eval-batch", "16",
        "--heads", "flat", "--observation", "summary"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


FLAGS = os.environ["XLA_FLAGS"]  # conftest's XLA flags; each run adds its host device count


def _train(args, env=None, **kw):
    return subprocess.Popen([sys.executable, "-m", "maskshift.train", *TINY, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})}, **kw)


def _checksum(log: str) -> str:
    return re.search(r"policy checksum ([0-9a-f]+)", log).group(1)


@pytest.mark.long
def test_two_processes_train_as_one_process_with_two_devices(tmp_path):
    """Two processes on 127.0.0.1 (gloo), one CPU device each, the environment batch sharded
    over both: the same policy in both processes, only process 0 writes, and the same figures
    as one process with two devices (measured: the same policy bit for bit)."""
    port = _free_port()
    one_device = {"XLA_FLAGS": f"{FLAGS} --xla_force_host_platform_device_count=1"}
    procs = [_train(["--out", str(tmp_path / f"p{i}"), "--distributed", "--coordinator",
                     f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i),
                     "--distributed-timeout", "60"], env=one_device) for i in range(2)]
    # the one-process run starts beside them: the pair spends much of its time waiting on each
    # other, so the three together take little longer than the pair alone
    single = _train(["--out", str(tmp_path / "single"), "--devices", "2"],
                    env={"XLA_FLAGS": f"{FLAGS} --xla_force_host_platform_device_count=2"})
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    assert _checksum(logs[0]) == _checksum(logs[1])
    assert not (tmp_path / "p1").exists()  # process 1 wrote nothing
    two_proc = json.loads((tmp_path / "p0" / "results.json").read_text())
    assert two_proc["train"]["processes"] == 2 and two_proc["train"]["env_batch_shards"] == 2

    log = single.communicate(timeout=300)[0]
    assert single.returncode == 0, log
    one_proc = json.loads((tmp_path / "single" / "results.json").read_text())
    assert one_proc["train"]["processes"] == 1 and one_proc["train"]["env_batch_shards"] == 2
    # the stated tolerance: 1e-5 on every figure (float rounding may differ between layouts)
    np.testing.assert_allclose(two_proc["history"]["episode_return"],
                               one_proc["history"]["episode_return"], rtol=1e-5, atol=1e-6)
    for key in ("accuracy", "worst_group_acc", "flip_rate"):
        assert two_proc["after"][key] == pytest.approx(one_proc["after"][key], abs=1e-5)
    assert two_proc["best_step"] == one_proc["best_step"]
