"""A trained policy reused by maskshift.edit: new edits in one rollout, and every bad input."""

import json
import shutil

import jax
import numpy as np
import pytest

from maskshift.agents.ppo import PPOConfig
from maskshift.cli import edit as ed
from maskshift.run import RunConfig, train_and_evaluate

TINY = dict(num_envs=8, num_steps=3, total_timesteps=48, hidden=16)


def _train(out, **cfg):
    heads = cfg.pop("heads", "units")
    cfg = RunConfig(episode_length=3, observation="gradient" if heads == "units" else "summary",
                    editor=PPOConfig(heads=heads, **TINY), **cfg)
    train_and_evaluate(cfg, out, log=lambda *_: None)
    return out


@pytest.fixture(scope="module")
def units_run(tmp_path_factory, digits_model):
    return _train(tmp_path_factory.mktemp("policy") / "units")


@pytest.mark.slow
def test_a_ppo_run_saves_its_policy_and_it_edits_another_class(units_run, tmp_path):
    from maskshift.checkpoint import read_meta
    from maskshift.run.policy import edit_with_policy, load_policy

    meta = json.loads((units_run / "policy.json").read_text())
    assert meta["config"]["editor"]["heads"] == "units" and meta["shapes"] == [[512, 64]]
    policy = load_policy(units_run)
    res = edit_with_policy(policy, [3], out=tmp_path / "e3", log=lambda *_: None)
    assert res["forget_classes"] == [3] and 0 <= res["best_step"] <= 3
    assert res["before"]["forget_acc"] > 0.8       # the pretrained CNN knows 3s
    assert read_meta(tmp_path / "e3")["forget_classes"] == [3]
    saved = json.loads((tmp_path / "e3" / "edit.json").read_text())
    assert saved["after"] == res["after"]
    # deterministic: the same policy and class give the same edit
    again = edit_with_policy(policy, [3], log=lambda *_: None)
    assert again["after"] == res["after"]
    # the next request of a sequence: the policy edits its own edit, 3 out of the data
    nxt = edit_with_policy(policy, [5], from_run=tmp_path / "e3", out=tmp_path / "e3-5",
                           log=lambda *_: None)
    assert read_meta(tmp_path / "e3-5")["forgotten"] == [3]
    assert nxt["before"]["retain_acc"] == pytest.approx(res["after"]["retain_acc"], abs=0.05)
    with pytest.raises(ValueError, match="Class 3 was forgotten"):
        edit_with_policy(policy, [3], from_run=tmp_path / "e3", log=lambda *_: None)


@pytest.mark.slow
def test_a_policy_edits_every_request_of_a_sequence(units_run, tmp_path):
    from maskshift.run.sequence import make_plan, run_sequence

    plan = make_plan(RunConfig(), [3], policy=units_run)
    assert plan.method == "policy" and plan.config.editor.heads == "units"
    res = run_sequence(plan, tmp_path / "seq", log=lambda s: None)
    assert res["method"] == "policy" and len(res["after_each"]) == 1
    assert json.loads((tmp_path / "seq" / "request-1" / "edited.json").read_text())["algo"] == \
        "policy"


@pytest.mark.slow
def test_edit_cli_json_has_evaluate_keys(units_run, capsys):
    from maskshift.cli import evaluate

    assert ed.main(["--policy", str(units_run), "--forget-class", "5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert evaluate.main(["--task", "unlearn", "--forget-class", "5", "--json"]) == 0
    keys = set(json.loads(capsys.readouterr().out))
    assert set(out["before"]) == keys and set(out["after"]) == keys
    assert out["after"]["source"].startswith("policy ")


@pytest.mark.slow
def test_unit_heads_serve_another_model(units_run):
    """A shape-free policy trained on the CNN's [512, 64] edits a user's MLP's [24, 32] layer;
    a class with no train examples is refused."""
    import flax.linen as nn

    from maskshift.run.policy import edit_with_policy, load_policy
    from maskshift.tasks import task_from_model

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(4)(nn.relu(nn.Dense(32)(nn.relu(nn.Dense(24)(x)))))

    rng = np.random.default_rng(0)
    y = (np.arange(400) % 4).astype(np.int32)
    x = (np.eye(4, 6)[y] * 3 + rng.normal(0, 1, (400, 6))).astype(np.float32)
    model = MLP()
    params = model.init(jax.random.key(0), x[:1])
    task = task_from_model(model.apply, params, ["Dense_1"], train=(x, y), test=(x, y),
                           forget_classes=1)
    res = edit_with_policy(load_policy(units_run), [1], task=task, log=lambda *_: None)
    assert res["forget_classes"] == [1]
    no_3 = y != 3
    task = task_from_model(model.apply, params, ["Dense_1"], train=(x[no_3], y[no_3]),
                           test=(x, y), forget_classes=3, num_classes=4)
    with pytest.raises(ValueError, match=r"Forget classes \[3\] leave an empty forget"):
        edit_with_policy(load_policy(units_run), [3], task=task, log=lambda *_: None)


def _policy_copy(src, dst, **changes):
    shutil.copytree(src, dst)
    meta = json.loads((dst / "policy.json").read_text())
    for key, value in changes.items():
        target = meta
        *path, last = key.split(".")
        for p in path:
            target = target[p]
        target[last] = value
    (dst / "policy.json").write_text(json.dumps(meta))
    return dst


def test_bad_policies_and_classes_are_one_line_exit_2_nothing_written(units_run, tmp_path,
                                                                      capsys):
    corrupt = tmp_path / "corrupt"
    shutil.copytree(units_run, corrupt)
    (corrupt / "policy.json").write_text("{not json")
    bias = _policy_copy(units_run, tmp_path / "bias", **{"config.task": "bias"})
    flat = _policy_copy(units_run, tmp_path / "flat", **{"config.editor.heads": "flat",
                                                         "shapes": [[256, 64]]})
    broken = tmp_path / "broken"
    shutil.copytree(units_run, broken)
    for f in (broken / "policy").rglob("*"):
        if f.is_file():
            f.write_bytes(b"garbage")
    twice = tmp_path / "twice.txt"
    twice.write_text("4\n9\n4\n")
    cases = [
        (["--policy", str(tmp_path / "nope")], "does not exist"),
        (["--policy", str(corrupt / "policy.json")], "is a file, not a directory"),
        (["--policy", ""], "argument --policy: expected a path, got an empty string"),
        (["--policy", str(tmp_path)], "holds no trained policy"),
        (["--policy", str(corrupt)], "policy.json is corrupt"),
        (["--policy", str(bias)], "was trained on the 'bias' task"),
        (["--policy", str(flat)], "a flat head serves only its own shapes"),
        (["--policy", str(broken)], "cannot restore its parameters"),
        (["--policy", str(units_run), "--forget-class", "12"], "outside the labels 0..9"),
        (["--policy", str(units_run), "--forget-class", "-1"], "expected a whole number >= 0"),
        (["--policy", str(units_run), "--out", str(units_run)], "already holds a finished run"),
        (["--policy", str(units_run), "--forget-indices", str(tmp_path / "no.txt")],
         "no.txt' does not exist"),
        (["--policy", str(units_run), "--forget-indices", str(twice)], "Forget index 4 is listed "
                                                                       "twice"),
        (["--policy", str(units_run), "--forget-indices", str(twice), "--forget-class", "3"],
         "argument --forget-class: not allowed with argument --forget-indices"),
    ]
    for argv, message in cases:
        if "--forget-class" not in argv and "--forget-indices" not in argv:
            argv = [*argv, "--forget-class", "3"]
        out = tmp_path / "out"
        if "--out" not in argv:
            argv = [*argv, "--out", str(out)]
        with pytest.raises(SystemExit) as exit_info:
            ed.main(argv)
        err = capsys.readouterr().err.strip()
        assert exit_info.value.code == 2, argv
        assert len(err.splitlines()) == 1 and message in err, (argv, err)
        assert not out.exists()


@pytest.mark.slow
def test_edit_module_runs_in_a_fresh_interpreter(tmp_path):
    """``python -m maskshift.edit`` as a user runs it (imports in its own order)."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "maskshift.edit", "--policy",
                           str(tmp_path / "none"), "--forget-class", "3"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().endswith("a finished PPO run (--algo ppo).")
