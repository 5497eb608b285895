import json

import jax
import numpy as np
import pytest

from maskshift.checkpoint import CheckpointError, save_edited
from maskshift.cli import evaluate as cli_evaluate
from maskshift.run import evaluate as ev


def run_cli(capsys, *argv):
    code = cli_evaluate.main(list(argv))
    return code, capsys.readouterr()


def test_json_has_the_documented_keys(capsys, digits_model, toxic_model):
    code, out = run_cli(capsys, "--task", "unlearn", "--json")
    assert code == 0
    res = json.loads(out.out)
    assert {"forget_acc", "retain_acc", "test_acc", "mia"} <= set(res)
    assert res["forget_classes"] == [7] and res["split"] == "test"
    code, out = run_cli(capsys, "--task", "bias", "--json")
    res = json.loads(out.out)
    assert {"accuracy", "worst_group_acc", "fpr_gap", "flip_rate"} <= set(res)


def test_table_output_is_readable(capsys, digits_model):
    code, out = run_cli(capsys, "--task", "unlearn", "--forget-class", "3")
    assert code == 0
    assert "forget_acc" in out.out and "forget=[3]" in out.out and "per-class" in out.out


@pytest.mark.parametrize("argv, message", [
    (["--task", "nope"], "argument --task: invalid choice: 'nope'"),
    (["--task", "unlearn", "--dataset", "imagenet"], "Unknown dataset 'imagenet'"),
    (["--task", "unlearn", "--forget-class", "10"], "outside the labels 0..9"),
    (["--task", "unlearn", "--forget-class", "-1"], "expected a whole number >= 0"),
    (["--task", "bias", "--dataset", "digits"], "serves the 'unlearn' task"),
    (["--task", "unlearn", "--checkpoint", "/no/such/run"], "does not exist"),
])
def test_bad_input_exits_with_a_clear_message(capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        cli_evaluate.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_checkpoint_round_trip_reports_the_edited_model(tmp_path, digits, digits_model):
    edited = jax.tree.map(np.asarray, digits_model.params)
    # zero the output column of class 7: the edited model can never predict it
    edited["params"]["Dense_1"]["bias"] = edited["params"]["Dense_1"]["bias"].copy()
    edited["params"]["Dense_1"]["bias"][7] = -1e4
    save_edited(tmp_path / "run", edited, {"task": "unlearn", "dataset": "digits",
                                           "forget_classes": [7]})
    res = ev.evaluate_model("unlearn", checkpoint=tmp_path / "run")
    assert res["forget_acc"] == 0.0
    assert res["retain_acc"] > 0.9
    assert res["source"] == str(tmp_path / "run")
    with pytest.raises(CheckpointError, match="task 'unlearn'"):
        ev.evaluate_model("bias", checkpoint=tmp_path / "run")


def test_corrupt_or_foreign_checkpoints_are_refused(tmp_path, digits_model, toxic_model):
    save_edited(tmp_path / "text", toxic_model.params, {"task": "unlearn", "dataset": "digits"})
    with pytest.raises(CheckpointError, match="another model"):
        ev.evaluate_model("unlearn", checkpoint=tmp_path / "text")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no maskshift checkpoint"):
        ev.evaluate_model("unlearn", checkpoint=tmp_path / "empty")
    save_edited(tmp_path / "bad", digits_model.params, {"task": "unlearn"})
    (tmp_path / "bad" / "edited.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt"):
        ev.evaluate_model("unlearn", checkpoint=tmp_path / "bad")
