import json

import pytest

from maskshift.run import compare as C
from maskshift.run.pipeline import reuse_or_run


@pytest.mark.slow
def test_unlearning_comparison_sorts_by_the_avg_gap_to_the_retrained_model(tmp_path,
                                                                             digits_model):
    out = tmp_path / "cmp"
    res = C.compare("unlearn", (0,), out=out, methods=["original", "ssd"], log=lambda s: None)
    assert res["methods"] == ["original", "retrain", "ssd"]  # retrain added as the reference
    md = (out / "comparison.md").read_text()
    assert "Avg. Gap" in md and "| ua | ra | ta | mia_efficacy | mia | avg_gap |" in md
    s = res["summary"]
    rows = [line.split(" |")[0][2:] for line in md.splitlines() if line.startswith("| ")][1:]
    assert rows == sorted(res["methods"], key=lambda m: s[m]["avg_gap"]["mean"])
    assert rows[0] == "retrain" and s["retrain"]["avg_gap"]["mean"] == 0.0
    assert s["retrain"]["ua"]["mean"] == pytest.approx(100.0)  # never saw a 7
    assert s["original"]["avg_gap"]["mean"] > 20.0  # remembers every 7
    # SSD ran its val grid, and the report says which setting won
    assert s["ssd"]["settings"][0] in ({"alpha": 5.0}, {"alpha": 10.0}, {"alpha": 20.0})
    assert len(res["runs"]["ssd"][0]["grid"]) == 3
    assert s["original"]["forget_acc"]["mean"] == pytest.approx(1.0)
    assert s["retrain"]["forget_acc"]["mean"] <= 0.05  # never saw a 7
    assert (out / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((out / "comparison.json").read_text())
    assert saved["summary"]["ssd"]["mia"]["mean"] == pytest.approx(s["ssd"]["mia"]["mean"])
    with pytest.raises(C.TrainingError, match="already holds a comparison"):
        C.compare("unlearn", (0,), out=out, methods=["original"], log=lambda s: None)
    # a restarted comparison reuses the tuned baseline's report (its grid read back from JSON)
    lines = []
    again = C.compare("unlearn", (0,), out=out, methods=["ssd"], overwrite=True,
                      log=lines.append)
    assert any("reusing" in line and "ssd-s0.json" in line for line in lines)
    assert again["runs"]["ssd"][0]["setting"] == res["runs"]["ssd"][0]["setting"]


@pytest.mark.long
def test_bias_comparison_reuses_finished_rl_runs_and_baselines(tmp_path, toxic_model):
    out = tmp_path / "cmp"
    lines = []
    res = C.compare("bias", (0, 1), out=out, methods=["original", "leace", "MaskWorld"],
                    rl_total_steps=512, log=lines.append)
    assert set(res["summary"]) == {"original", "leace", "MaskWorld"}
    assert res["summary"]["original"]["accuracy"]["std"] == 0.0  # same model every seed
    assert len(res["runs"]["MaskWorld"]) == 2
    assert (out / "rl" / "mask-s1" / "results.json").exists()
    # a baseline made for another task is not reused: it runs again
    stale = out / "baselines" / "leace-s1.json"
    saved = json.loads(stale.read_text())
    stale.write_text(json.dumps({**saved, "identity": {**saved["identity"], "dataset": "x"}}))
    again = C.compare("bias", (0, 1), out=out, methods=["leace", "MaskWorld"], overwrite=True,
                      rl_total_steps=512, log=lines.append)
    assert any("reusing" in line and "mask-s1" in line for line in lines)
    assert any("reusing" in line and "leace-s0.json" in line for line in lines)
    assert not any("reusing" in line and "leace-s1.json" in line for line in lines)
    assert json.loads(stale.read_text())["identity"]["dataset"] == saved["identity"]["dataset"]
    assert again["runs"]["MaskWorld"] == res["runs"]["MaskWorld"]
    assert again["runs"]["leace"][0] == res["runs"]["leace"][0]  # reused, wall time included
    def drop_wall(rep):
        return {k: v for k, v in rep.items() if k != "wall_seconds"}
    assert drop_wall(again["runs"]["leace"][1]) == drop_wall(res["runs"]["leace"][1])


def test_unknown_method_is_named(tmp_path, toxic_model):
    with pytest.raises(ValueError, match="Unknown method 'magic'"):
        C.compare("bias", (0,), out=tmp_path / "x", methods=["magic"], log=lambda s: None)


@pytest.mark.slow
def test_gradient_controls_sit_beside_the_rl_rows_with_env_steps(tmp_path, toxic_model):
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "cmp"
    res = C.compare("bias", (0, 1), out=out, methods=["original", "MaskWorld-gradient",
                                                      "ShiftWorld-gradient"], log=lambda s: None)
    # the controller reads no seed: seed 0's run serves seed 1, and a run of its own agrees
    assert not (out / "rl" / "mask-gradient-s1").exists()
    first, second = res["runs"]["MaskWorld-gradient"]
    assert second.pop("same_as_seed") == 0 and second == first
    own = reuse_or_run(C.rl_config("bias", "MaskWorld-gradient", 1, (7,), None, None),
                       tmp_path / "own-s1", log=lambda s: None)
    assert {k: own["after"][k] for k in first if k in own["after"]} == \
        {k: v for k, v in first.items() if k in own["after"]}
    s = res["summary"]
    assert s["MaskWorld-gradient"]["env_steps"] == 8 and "env_steps" not in s["original"]
    # the controller lifts worst-group accuracy on the embedded data (measured 0.34-0.66)
    assert s["ShiftWorld-gradient"]["worst_group_acc"]["mean"] > 0.1
    md = (out / "comparison.md").read_text()
    assert "| env steps |" in md and "| MaskWorld-gradient |" in md
    assert (out / "rl" / "shift-gradient-s0" / "results.json").exists()
    # the acceptance table can be read straight off the comparison's editor runs
    root = Path(__file__).parent.parent
    table = tmp_path / "acc"
    proc = subprocess.run([sys.executable, str(root / "benchmarks" / "acceptance.py"),
                           "--from-compare", str(out), "--out", str(table)],
                          capture_output=True, text=True)
    assert proc.returncode in (0, 1), proc.stderr
    rows = json.loads((table / "acceptance.json").read_text())
    assert sorted((r["algo"], r["env"]) for r in rows) == [("gradient", "mask"),
                                                           ("gradient", "shift")]
    assert "| editor | env | task | target met |" in (table / "acceptance.md").read_text()


def test_your_own_task_without_a_module_is_compared_without_the_gap(tmp_path, blob_mlp):
    """No Flax module to retrain from scratch: one line says so, every other figure stays."""
    from maskshift.tasks import task_from_model

    model, params, x, y = blob_mlp
    task = task_from_model(model.apply, params, ["Dense_1"], train=(x[:400], y[:400]),
                           val=(x[400:500], y[400:500]), test=(x[500:], y[500:]),
                           forget_classes=2)
    said = []
    res = C.compare("unlearn", (0,), out=tmp_path / "own", methods=["original", "finetune"],
                    task=task, tune=False, log=said.append)
    assert res["methods"] == ["original", "finetune"]
    assert any(s.startswith("no retrained reference") for s in said)
    assert "avg_gap" not in res["summary"]["finetune"]
    assert res["summary"]["finetune"]["mia_efficacy"]["mean"] >= 0.0
    assert "| finetune |" in (tmp_path / "own" / "comparison.md").read_text()
    with pytest.raises(ValueError, match="objective is 'unlearn', not 'bias'"):
        C.compare("bias", (0,), out=tmp_path / "x", task=task, log=said.append)
