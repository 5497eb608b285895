"""The accelerator extras resolve to JAX's own accelerator wheels, and the install keeps an
installed JAX that satisfies the pins (pip's resolver, ``--dry-run``: nothing is installed)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _plan(spec: str, tmp_path) -> list[str]:
    report = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet",
                           "--report", str(report), spec], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]]


@pytest.mark.long
def test_each_accelerator_extra_pulls_jaxs_accelerator_wheels(tmp_path):
    # one resolution of both extras (the CUDA plan alone takes ~25 s of pip's time)
    plan = _plan(".[cuda12,tpu]", tmp_path)
    assert "jax-cuda12-plugin" in plan and "jax-cuda12-pjrt" in plan, plan  # [cuda12]
    assert "libtpu" in plan, plan  # [tpu]
    # the JAX installed here (inside the pins) is kept, not replaced by another build
    assert "jax" not in plan and "jaxlib" not in plan, plan
