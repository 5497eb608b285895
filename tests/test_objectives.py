"""Your own objective: docs/objectives.md's example, as written, trains from the command line
with every editor that can follow it; a factory that is broken is refused in one line."""

import dataclasses
import importlib
import json
import re
import sys
from pathlib import Path

import jax.numpy as jnp
import pytest

from maskshift.cli import train as cli_train
from maskshift.tasks import UnlearnObjective

ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class NaNReward(UnlearnObjective):
    def terms(self, metrics, base):
        return jnp.float32(jnp.nan), metrics[1] - base[1]


@dataclasses.dataclass(frozen=True)
class TooFewMetrics(UnlearnObjective):
    def measure(self, logits_fn, batch):
        return super().measure(logits_fn, batch)[:2]


@dataclasses.dataclass(frozen=True)
class VectorTerms(UnlearnObjective):
    def terms(self, metrics, base):
        return base - metrics, metrics - base


def nan_reward():
    return NaNReward()


def too_few_metrics():
    return TooFewMetrics()


def vector_terms():
    return VectorTerms()


@pytest.fixture()
def documented(tmp_path, monkeypatch):
    """docs/objectives.md's objective and factory, as written, importable as ``my_objectives``."""
    page = (ROOT / "docs" / "objectives.md").read_text()
    code = re.findall(r"<!-- docs-test: run -->\s*```python\n(.*?)```", page, re.S)
    assert len(code) == 1, "docs/objectives.md holds one complete example"
    module = code[0].split("\ntask = dataclasses.replace")[0]
    assert "def make_objective" in module
    body = module.split("class UnsureOf")[1].split("\n\n\ndef make_objective")[0]
    assert len(body.splitlines()) <= 40, "the documented objective stays about 40 lines"
    (tmp_path / "my_objectives.py").write_text(module)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    sys.modules.pop("my_objectives", None)


@pytest.mark.slow
def test_the_documented_objective_trains_from_the_command_line(documented, digits_model, capsys):
    out = documented / "gradient"
    argv = ["--objective-factory", "my_objectives:make_objective", "--algo", "gradient",
            "--out", str(out)]
    assert cli_train.main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["objective"] == "unsure-of" and res["config"]["objective_factory"]
    assert res["summary_keys"] == ["forget_acc", "forget_confidence", "retain_acc", "test_acc"]
    # the objective's goal: the model unsure on class 3, the others kept
    assert res["after"]["forget_confidence"] < res["before"]["forget_confidence"] - 0.3
    assert res["after"]["retain_acc"] >= res["before"]["retain_acc"] - 0.03
    assert "(unsure-of)" in capsys.readouterr().out


@pytest.mark.parametrize("factory, message", [
    ("test_objectives:nan_reward", "gives a non-finite reward term or metric on the original"),
    ("test_objectives:too_few_metrics", "measured metrics of shape (2,); measure() must return "
                                        "one value per metric name (4)"),
    ("test_objectives:vector_terms", "terms() must return two scalars (utility, edit)"),
])
def test_a_broken_objective_is_refused_before_anything_runs(factory, message, tmp_path, capsys,
                                                            digits_model):
    with pytest.raises(SystemExit) as exc:
        cli_train.main(["--objective-factory", factory, "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_compare_takes_your_own_objective(documented, digits_model):
    from maskshift.run.compare import compare
    from maskshift.tasks import unlearning_task

    make_objective = importlib.import_module("my_objectives").make_objective
    task = dataclasses.replace(unlearning_task(3), objective=make_objective())
    res = compare("unsure-of", (0,), out=documented / "cmp", task=task,
                  methods=["original", "MaskWorld-gradient"], log=lambda s: None)
    assert res["methods"] == ["original", "MaskWorld-gradient"]  # no baselines for your goal
    edited, original = res["summary"]["MaskWorld-gradient"], res["summary"]["original"]
    assert edited["forget_confidence"]["mean"] < original["forget_confidence"]["mean"] - 0.3
    assert "meets_target" not in edited or edited["meets_target"] is None  # it states none
    table = (documented / "cmp" / "comparison.md").read_text()
    assert "| MaskWorld-gradient |" in table and "forget_confidence" in table
    assert (documented / "cmp" / "comparison.png").exists()
