"""The benchmark scripts that train or edit end to end (time to edit, the untrained policy),
each in its smallest setting: long tests (`-m long`), kept apart from test_benchmarks.py so the
two files can run on different workers."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.mark.long
def test_time_to_edit_script_smallest_setting(tmp_path):
    out = tmp_path / "tte.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "time_to_edit.py"),
                           "--methods", "MaskWorld", "finetune", "--rl-total-steps", "512",
                           "--json", str(out)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["pretrain_cold_seconds"] > 0
    rows = {r["method"]: r for r in res["rows"]}
    assert set(rows) == {"MaskWorld", "finetune"}
    for r in rows.values():
        assert r["wall_seconds"] > r["in_process_seconds"] > 0
        assert r["pretrained_from_cache"]  # the warm-up filled the cache
        assert r["meets_target"] == (r["forget_acc"] <= 0.02 and r["retain_acc"] >= 0.90)
    assert rows["MaskWorld"]["env_steps"] == 512


@pytest.mark.long
def test_untrained_script_counts_pairs_per_skip_gain(tmp_path):
    """Two gains, one class and seed: a row per gain, each scored against its own original on
    val and test, and the per-gain counts add those up."""
    out = tmp_path / "untrained.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "untrained.py"),
                           "--envs", "shift", "--classes", "3", "--seeds", "0", "--skip-gains",
                           "1.0", "0.5", "--json", str(out)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(out.read_text())
    rows = res["rows"]
    assert [(r["class"], r["skip_gain"]) for r in rows] == [(3, 1.0), (3, 0.5)]
    for r in rows:
        want = (r["val"]["forget_acc"] <= 0.05
                and r["val"]["retain_acc"] >= r["val_before"]["retain_acc"] - 0.03)
        assert r["val_target"] == want and r["val_before"]["forget_acc"] > 0.5
    assert [s["val_target"] for s in res["summary"]] == [int(r["val_target"]) for r in rows]


@pytest.mark.long
def test_bias_tuning_script_reads_val_only_and_chooses_by_hits(tmp_path):
    """Two skip gains, one env and seed, a one-update budget: a row per gain scored on val, and
    the chosen setting is the one with the most val hits (then the higher worst group)."""
    out = tmp_path / "bias-tuning.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bias_tuning.py"),
                           "--envs", "shift", "--seeds", "0", "--lrs", "0.001",
                           "--episode-lengths", "8", "--skip-gains", "0.5", "1.0",
                           "--budgets", "512", "--json", str(out)], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(out.read_text())
    rows = res["rows"]
    assert [r["setting"][2] for r in rows] == [0.5, 1.0]
    for r in rows:
        assert r["meets"] == (r["worst_group_acc"] >= res["goal"])  # accuracy rises on bias
        assert 0.0 <= r["worst_group_acc"] <= 1.0 and r["seconds"] > 0
    best = max(rows, key=lambda r: (r["meets"], r["worst_group_acc"]))
    assert res["chosen"]["skip_gain"] == best["setting"][2]


@pytest.mark.long
def test_whole_split_script_checks_chunks_against_one_pass(tmp_path):
    """One pass and 100-row chunks on the digits CNN's Conv_1: a row per size, each in its own
    process, the same gradients, and the chunk size read from the pass size."""
    out = tmp_path / "whole-split.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "whole_split.py"),
                           "--pass-sizes", "0", str(8 * 8 * 16 * 100), "--reps", "1",
                           "--episode-length", "1", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert [(r["pass_size"], r["chunk_rows"]) for r in rows] == [(0, 1078), (102400, 100)]
    for r in rows:
        assert r["pass_s"] > 0 and r["episode_s"] > 0 and r["peak_rss_gb"] > 0
    assert rows[1]["max_rel_diff"] < 1e-4


@pytest.mark.long
def test_start_rules_script_rolls_out_each_rule(tmp_path):
    """Two rules, two steps on the digits CNN: one row each, every step scored on val from the
    same original; a malformed rule is refused in one line, exit 2."""
    out = tmp_path / "rules.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "start_rules.py"),
                           "--envs", "shift", "--episode-length", "2", "--rules", "whole:svd:3",
                           "0.25:iteration:0.5", "--json", str(out)], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert [r["rule"] for r in rows] == ["whole:svd:3", "0.25:iteration:0.5"]
    for r in rows:
        assert len(r["val_forget"]) == 3 and 0 <= r["best_step"] <= 2
        assert r["val_forget"][0] == rows[0]["val_forget"][0]  # the same original
    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "start_rules.py"), "--rules",
                          "1.0:qr:3"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "FACTORS" in bad.stderr
