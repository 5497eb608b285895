"""benchmarks/accelerator.py and maskshift.bench.accelerator refuse what would mislead: a JSON
path into a missing directory, environment counts that do not split over the devices, and an
accelerator extra on a machine whose JAX sees no accelerator."""

import importlib.util
from pathlib import Path

import pytest

from maskshift.bench import accelerator as A

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "accelerator.py"


def _script():
    spec = importlib.util.spec_from_file_location("accelerator_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_json_path_into_a_missing_directory_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        _script().main(["--small", "--json", str(tmp_path / "nope" / "a.json")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "does not exist" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "nope").exists()


def test_counts_must_split_over_the_devices():
    A.check_counts([8, 16], 8)
    with pytest.raises(ValueError, match="12 environments cannot be split evenly over 8 devices"):
        A.check_counts([16, 12], 8)


def test_an_accelerator_extra_without_its_accelerator_is_refused():
    A.check_accelerator("gpu", {"jax-cuda12-plugin": "gpu"})
    A.check_accelerator("cpu", {})
    with pytest.raises(ValueError, match="jax-cuda12-plugin is installed .* JAX runs on cpu"):
        A.check_accelerator("cpu", {"jax-cuda12-plugin": "gpu"})
    with pytest.raises(ValueError, match="libtpu is installed"):
        A.check_accelerator("gpu", {"libtpu": "tpu"})


@pytest.mark.slow
def test_counts_that_do_not_split_over_two_devices_stop_the_script(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ,  # conftest's XLA flags, and 2 host devices
           "XLA_FLAGS": f"{os.environ['XLA_FLAGS']} --xla_force_host_platform_device_count=2"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--small", "--ns", "3", "--json",
                           str(tmp_path / "a.json")], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 2
    err = proc.stderr.strip()
    assert "3 environments cannot be split evenly over 2 devices" in err and "--ns" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "a.json").exists()


def test_the_summary_reads_a_report_with_an_n_skipped_for_memory():
    # the shape of the H200 run's report, where the controller observation at N = 65,536 was
    # skipped (its first summary crashed on the missing figure)
    machine = {"device_count": 1, "device_kind": "NVIDIA H200", "platform": "gpu", "jax": "0.11.2"}
    step = {"n": 16384, "steps_per_s": 688762.4, "compile_s": 3.8}
    skipped = {"n": 65536, "skipped": "needs 68.6 GiB, over half the memory"}
    report = {"machine": machine,
              "steps": {"results": {"mask-unlearn-controller": {"vmap": [step, skipped]}}},
              "ppo": [{"env": "mask", "num_envs": 64, "env_steps_per_s": 55306.2,
                       "compile_s": 10.8}],
              "amortized": {"edit_seconds": 0.24, "first_edit_seconds": 4.36}}
    lines = A.summary_lines(report)
    assert lines[0] == "1x NVIDIA H200 (gpu), jax 0.11.2"
    row = next(line for line in lines if "mask-unlearn-controller" in line)
    assert "N=16384: 688,762 (3.8)" in row
    assert "N=65536: skipped (needs 68.6 GiB, over half the memory)" in row
    assert "  mask N=64: 55,306 (10.8)" in lines
    assert lines[-1] == "amortized edit: 0.24 s (4.36 s with compile)"
    report["amortized"] = None
    assert not A.summary_lines(report)[-1].startswith("amortized")
