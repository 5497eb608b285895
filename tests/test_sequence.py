"""Requests one after another: the next request's task, how edits stack, ``--from`` and
``maskshift.sequence`` (reports, resume, bad input)."""

import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from maskshift.checkpoint import save_edited
from maskshift.cli import sequence as cli_sequence
from maskshift.cli import train as cli_train
from maskshift.data.forget_sets import disjoint_forget_sets, random_forget_set
from maskshift.envs import make
from maskshift.run import make_run_config
from maskshift.run.chain import edited_meta
from maskshift.run.sequence import make_plan, run_sequence
from maskshift.tasks import get_leaf, next_examples_task, next_request_task, unlearning_task


@pytest.fixture(scope="module")
def base():
    return unlearning_task(3, batch_size=16)


def _zeroed(params, share=0.3, seed=0):
    """``params`` with a random share of ``Dense_0``'s kernel entries zeroed (an earlier edit)."""
    params = jax.tree.map(np.array, params)
    k = params["params"]["Dense_0"]["kernel"]
    k[np.random.default_rng(seed).random(k.shape) < share] = 0.0
    return params


def test_the_next_request_leaves_every_forgotten_class_out_of_the_data(base):
    edited = _zeroed(base.params)
    task = next_request_task(base, edited, (7, 1))
    for name in ("train", "val", "test"):
        y = task.dataset.split(name).y
        assert not np.isin(y, (7, 1)).any() and (y == 3).any()
    assert task.objective.forget_classes == (3,) and task.objective.forgotten == (7, 1)
    assert task.origin == base.origin_checksum  # the chain remembers its pretrained model
    assert next_request_task(task, task.params, (7, 1, 4)).origin == base.origin_checksum
    np.testing.assert_array_equal(get_leaf(task.params, ("params", "Dense_0", "kernel")),
                                  edited["params"]["Dense_0"]["kernel"])
    arrays = task.split_arrays("train")  # the retain set holds no forgotten example
    assert not np.isin(arrays["y"], (7, 1)).any()
    with pytest.raises(ValueError, match="Class 3 was forgotten by an earlier request"):
        next_request_task(base, edited, (3,))
    bad = jax.tree.map(np.array, base.params)
    bad["params"]["Dense_0"]["kernel"] = bad["params"]["Dense_0"]["kernel"][:, :8]
    with pytest.raises(ValueError, match="not of"):
        next_request_task(base, bad, (7,))


def test_example_requests_are_disjoint_and_each_leaves_the_retain_set(base):
    sets = disjoint_forget_sets(1078, 0.05, 3, seed=4)
    assert [len(x) for x in sets] == [54, 54, 54]
    assert len(np.unique(np.concatenate(sets))) == 162  # no example in two requests
    again = disjoint_forget_sets(1078, 0.05, 3, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(sets, again, strict=True))
    assert not np.array_equal(sets[0], disjoint_forget_sets(1078, 0.05, 1, seed=5)[0])
    edited = _zeroed(base.params)
    n = len(base.dataset.train)
    sets = disjoint_forget_sets(n, 0.05, 3)
    task = next_examples_task(base, edited, sets[2], sets[:2])
    # the earlier sets left the train split; the request's rows are the same examples
    assert len(task.dataset.train) == n - 108
    keep = np.setdiff1d(np.arange(n), np.concatenate(sets[:2]))
    np.testing.assert_array_equal(keep[list(task.objective.forget_indices)], sets[2])
    np.testing.assert_array_equal(task.dataset.train.x, base.dataset.train.x[keep])
    assert len(task.dataset.test) == len(base.dataset.test)  # val and test untouched
    assert task.origin == base.origin_checksum and task.name.endswith("-after2sets")
    with pytest.raises(ValueError, match="was forgotten by an earlier request"):
        next_examples_task(base, edited, sets[0][:5], sets[:2])


@pytest.mark.parametrize("env_id", ["MaskWorld-v0", "ShiftWorld-v0"])
def test_a_later_mask_multiplies_into_the_edited_kernel_and_a_shift_adds_to_it(base, env_id):
    edited = _zeroed(base.params)
    task = next_request_task(base, edited, (7,))
    env, p = make(env_id, task=task, max_steps_in_episode=3)
    _, state = env.reset(jax.random.key(0), p)
    action = jax.random.normal(jax.random.key(1), (env.action_size,))
    _, state, *_ = env.step(jax.random.key(2), state, action, p)
    w1 = edited["params"]["Dense_0"]["kernel"]
    w2 = np.asarray(get_leaf(env.edited_params(state, p), ("params", "Dense_0", "kernel")))
    edit = np.asarray(state.edit[0])
    if env_id == "MaskWorld-v0":  # W2 = W1 * M: what the earlier request zeroed stays zero
        np.testing.assert_allclose(w2, w1 * edit, rtol=1e-6)
        assert np.all(w2[w1 == 0.0] == 0.0) and not np.allclose(edit, 1.0)
    else:  # W2 = W1 + S, S capped relative to the edited kernel
        np.testing.assert_allclose(w2, w1 + edit, rtol=1e-6, atol=1e-7)
        assert np.linalg.norm(edit) <= float(p.shift_cap) * np.linalg.norm(w1) * (1 + 1e-5)
        assert np.any(w2[w1 == 0.0] != 0.0)


@pytest.mark.slow
def test_train_from_a_run_edits_its_edited_model(tmp_path, capsys):
    from maskshift.checkpoint import read_meta
    from maskshift.cli import evaluate as cli_evaluate

    first, second = tmp_path / "r7", tmp_path / "r7-then3"
    common = ["--algo", "gradient"]
    assert cli_train.main([*common, "--forget-class", "7", "--out", str(first)]) == 0
    assert cli_train.main([*common, "--forget-class", "3", "--from", str(first)]) == 0
    meta = read_meta(second)  # the default --out sits beside the run it starts from
    assert meta["forget_classes"] == [3] and meta["forgotten"] == [7]
    assert meta["origin"] == read_meta(first)["origin"]
    res = json.loads((second / "results.json").read_text())
    assert res["config"]["from_run"] == str(first) and res["config"]["task_fingerprint"]
    capsys.readouterr()
    assert cli_evaluate.main(["--task", "unlearn", "--from", str(second), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["forget_classes"] == [7, 3]  # reported against every class forgotten so far
    assert report["per_class_acc"][7] < 0.1 and report["per_class_acc"][3] < 0.1
    assert report["retain_acc"] > 0.85


def _from_checkpoints(tmp_path, base):
    """Checkpoints a ``--from`` must refuse: ``{name: directory}``."""
    good = tmp_path / "good"
    save_edited(good, base.params, edited_meta(base, env="MaskWorld-v0", algo="gradient"))
    corrupt = tmp_path / "corrupt"
    shutil.copytree(good, corrupt)
    (corrupt / "edited.json").write_text("{not json")
    bias = tmp_path / "bias"
    save_edited(bias, base.params, {"task": "bias", "dataset": "toxic_templates"})
    other = tmp_path / "other"  # the same architecture, other pretrained weights
    save_edited(other, base.params, {**edited_meta(base), "origin": "0" * 64})
    return {"good": good, "corrupt": corrupt, "bias": bias, "other": other}


def test_bad_from_directories_are_refused_in_one_line(tmp_path, base, capsys):
    runs = _from_checkpoints(tmp_path, base)
    cases = [
        (["--from", str(tmp_path / "missing")], "does not exist"),
        (["--from", str(runs["corrupt"])], "corrupt"),
        (["--from", str(runs["bias"])], "holds a 'bias' edit"),
        (["--from", str(runs["other"])], "edited another model"),
        (["--from", str(runs["good"]), "--forget-class", "3"], "Class 3 was forgotten"),
        (["--from", str(runs["good"]), "--forget-class", "5", "--out", str(runs["good"]),
          "--overwrite"], "the run this one starts from"),
        (["--from", str(runs["good"]), "--task", "bias"], "applies to --task unlearn only"),
        (["--from", str(runs["good"]), "--amortized", "--forget-class", "1", "2", "--algo",
          "ppo"], "drop --amortized"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as exc:
            cli_train.main(["--algo", "gradient", *argv, "--out", str(tmp_path / "new")]
                           if "--out" not in argv else ["--algo", "gradient", *argv])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and message in err and "Traceback" not in err, (argv, err)
        assert len(err.strip().splitlines()) == 1
        assert not (tmp_path / "new").exists()
    assert (runs["good"] / "edited").is_dir()  # the --out == --from case touched nothing


@pytest.mark.slow
def test_a_sequence_reports_every_request_and_resumes_where_it_stopped(tmp_path):
    plan = make_plan(make_run_config(algo="gradient", episode_length=4), [3, 5])
    out = tmp_path / "seq"
    logs, references = [], {}
    res = run_sequence(plan, out, log=logs.append, references=references)
    assert len(references) == 2  # the models retrained without [3] and without [3, 5]
    first, second = res["after_each"]
    assert res["requests"] == [3, 5] and set(res["before"]["forget_acc_by_request"]) == {"3", "5"}
    assert first["worst_relapse"] is None and set(second["forget_acc_by_request"]) == {"3", "5"}
    assert second["worst_relapse"] == second["forget_acc_by_request"]["3"]
    assert first["forget_acc_by_request"]["3"] < 0.1 and second["forget_acc_by_request"]["5"] < 0.1
    assert second["retain_acc"] > second["retain_acc_original"] - 0.1
    assert all(np.isfinite(s["avg_gap"]) and s["avg_gap"] >= 0 for s in res["after_each"])
    assert (out / "sequence.png").stat().st_size > 0 and "request 2/2 done" in "\n".join(logs)
    meta = json.loads((out / "request-2" / "edited.json").read_text())
    assert meta["forgotten"] == [3] and meta["forget_classes"] == [5]
    # a kill during request 2: its files half written, no sequence.json
    (out / "sequence.json").unlink()
    (out / "request-2" / "request.json").unlink()
    (out / "request-2" / "results.json").unlink()
    stamp = (out / "request-1" / "edited.json").stat().st_mtime_ns
    again = run_sequence(plan, out, log=lambda s: None, references=references)
    assert (out / "request-1" / "edited.json").stat().st_mtime_ns == stamp  # not redone
    strip = [{k: v for k, v in s.items() if k != "seconds"} for s in again["after_each"]]
    assert strip == [{k: v for k, v in s.items() if k != "seconds"} for s in res["after_each"]]
    assert json.loads((out / "request-2" / "edited.json").read_text())["checksum"] == \
        meta["checksum"]


def _sequence_refuses(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli_sequence.main(argv if "--out" in argv else [*argv, "--out", str(tmp_path / "new")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and message in err and "Traceback" not in err, (argv, err)
    assert not (tmp_path / "new").exists()


def test_the_sequence_command_refuses_bad_input(tmp_path, capsys):
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    for argv, message in [
        (["--requests"], "expected at least one argument"),
        (["--requests", "3", "5", "3"], "repeats request 1"),
        (["--requests", "3", "10"], "outside the labels 0..9"),
        (["--requests", *map(str, range(10))], "leaves no retain set"),
        (["--requests", "3", "--algo", "salun", "--total-steps", "64"], "is a baseline"),
        (["--requests", "3", "--policy", "p", "--algo", "gradient"], "drop --algo gradient"),
        (["--requests", "3", "--algo", "policy"], "needs --policy DIR"),
        (["--requests", "4", "--algo", "salun", "--out", str(stranger)],
         "not a maskshift sequence"),
    ]:
        _sequence_refuses(argv, message, tmp_path, capsys)
    assert (stranger / "notes.txt").read_text() == "mine"


@pytest.mark.slow
def test_the_sequence_command_prints_json_and_keeps_a_finished_sequence(tmp_path, capsys):
    out = tmp_path / "salun"
    assert cli_sequence.main(["--requests", "4", "--algo", "salun", "--out", str(out),
                              "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res) >= {"before", "after_each"} and len(res["after_each"]) == 1
    step = res["after_each"][0]
    assert {"forget_acc_by_request", "retain_acc", "test_acc", "mia_efficacy",
            "avg_gap"} <= set(step)
    _sequence_refuses(["--requests", "4", "--algo", "salun", "--out", str(out)],
                      "finished sequence", tmp_path, capsys)


def test_a_policy_edits_example_requests_drawn_apart_from_its_training_sets():
    from maskshift.run.policy import Policy
    from maskshift.run.sequence import _policy_example_config

    def policy(**kw):
        return Policy(make_run_config(**kw), {}, (), Path("runs/pool"))

    pool = policy(amortized=True, forget_fraction=0.1, forget_reward="attack", forget_seed=3)
    cfg = _policy_example_config(make_run_config(forget_seed=4), pool)
    # the policy's own reward term, share and settings; the sequence's seed; not amortized
    assert (cfg.forget_reward, cfg.forget_fraction, cfg.forget_seed) == ("attack", 0.1, 4)
    assert not cfg.amortized and cfg.forget_indices is None
    assert _policy_example_config(make_run_config(forget_seed=0, forget_fraction=0.05),
                                  pool).forget_fraction == 0.05
    with pytest.raises(ValueError, match="trained on sets drawn with forget seed 3; .*"
                                         "--forget-seed 4"):
        _policy_example_config(make_run_config(forget_seed=3), pool)
    with pytest.raises(ValueError, match="trained to forget classes; example requests need"):
        _policy_example_config(make_run_config(forget_seed=1),
                               policy(amortized=True, forget_classes=(0, 1)))


@pytest.mark.slow
def test_a_policy_trained_over_example_sets_edits_a_sequence_of_them(tmp_path, capsys,
                                                                     example_pool_policy):
    pool = example_pool_policy
    out = tmp_path / "seq"
    argv = ["--example-requests", "2", "--policy", str(pool), "--forget-seed", "1",
            "--out", str(out), "--json"]
    assert cli_sequence.main(argv) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["method"] == "policy" and len(res["after_each"]) == 2
    assert set(res["after_each"][1]["forget_acc_by_request"]) == {"1", "2"}
    assert all(np.isfinite(s["avg_gap"]) for s in res["after_each"])
    # the requests are drawn with seed 1 at the policy's share (10%), edited with its reward term
    saved = json.loads((out / "sequence.json").read_text())
    assert saved["examples"] == {"fraction": 0.1, "seed": 1, "reward": "confidence",
                                 "sizes": [108, 108]}
    for k in (1, 2):
        edit = json.loads((out / f"request-{k}" / "edit.json").read_text())
        assert edit["forget_size"] == 108 and edit["policy"] == str(pool)
    # none of them is a set the policy trained on (drawn with seed 0)
    trained = [random_forget_set(1078, 0.1, (0, i)) for i in range(2)]
    assert not any(np.array_equal(rows, t) for rows in disjoint_forget_sets(1078, 0.1, 2, 1)
                   for t in trained)
    _sequence_refuses(argv[:-1], "finished sequence", tmp_path, capsys)
    _sequence_refuses([*argv[:4], "--forget-seed", "0"], "--forget-seed 1", tmp_path, capsys)
    # the benchmark gives the policy a row of its own beside the editors, per draw
    table = tmp_path / "bench.json"
    assert _benchmark().main(["--example-requests", "2", "--fraction", "0.1", "--draws", "1",
                              "--methods",
                              "--policy", str(pool), "--out", str(tmp_path / "runs"),
                              "--json", str(table)]) == 0
    (row,) = json.loads(table.read_text())["rows"]
    assert row["method"] == "policy mask-amortized-2sets0.1" and row["runs"] == 1


@pytest.mark.long
def test_an_example_sequence_reports_each_set_and_resumes(tmp_path):
    cfg = make_run_config(algo="gradient", episode_length=4, forget_fraction=0.05)
    plan = make_plan(cfg, method="gradient", examples=2)
    out, references = tmp_path / "ex", {}
    res = run_sequence(plan, out, log=lambda s: None, references=references)
    assert len(references) == 2 and res["examples"]["sizes"] == [54, 54]
    first, second = res["after_each"]
    assert set(second["forget_acc_by_request"]) == {"1", "2"}
    assert second["worst_relapse"] == second["forget_acc_by_request"]["1"]
    # the edit moves each set toward the held-out level from the original's 100% train accuracy
    assert res["before"]["forget_acc_by_request"]["1"] == 1.0
    assert first["forget_acc_by_request"]["1"] < 1.0 and second["forget_acc_by_request"]["2"] < 1.0
    assert all(np.isfinite(s["avg_gap"]) for s in res["after_each"])
    assert (out / "sequence.png").stat().st_size > 0
    strip = [{k: v for k, v in s.items() if k != "seconds"} for s in res["after_each"]]
    (out / "sequence.json").unlink()
    (out / "request-2" / "request.json").unlink()
    again = run_sequence(plan, out, log=lambda s: None, references=references)
    assert [{k: v for k, v in s.items() if k != "seconds"} for s in again["after_each"]] == strip


@pytest.mark.long
def test_a_killed_ppo_sequence_resumes_bit_identical(tmp_path):
    # flat PPO on the summary observation: the cheapest policy to compile (resuming is the
    # training loop's, the same for every policy)
    cfg = make_run_config(algo="ppo", episode_length=4, num_envs=8, total_steps=8 * 4 * 4,
                          updates_per_chunk=2, eval_batch=16, heads="flat",
                          observation="summary")
    plan = make_plan(cfg, [3, 5])
    whole = run_sequence(plan, tmp_path / "whole", log=lambda s: None)
    stopped = run_sequence(plan, tmp_path / "killed", log=lambda s: None, stop_during=(2, 1))
    assert stopped == {"stopped_at_request": 2}
    assert (tmp_path / "killed" / "request-2" / "ckpt").is_dir()
    assert not (tmp_path / "killed" / "request-2" / "results.json").exists()
    resumed = run_sequence(plan, tmp_path / "killed", log=lambda s: None)
    for k in (1, 2):
        a, b = (json.loads((tmp_path / d / f"request-{k}" / "edited.json").read_text())
                for d in ("whole", "killed"))
        assert a["checksum"] == b["checksum"], k
    strip = [{k: v for k, v in s.items() if k != "seconds"} for s in resumed["after_each"]]
    assert strip == [{k: v for k, v in s.items() if k != "seconds"} for s in whole["after_each"]]
    assert jnp.isfinite(resumed["after_each"][-1]["avg_gap"])


def _benchmark():
    """``benchmarks/sequence.py`` as a module."""
    import importlib.util

    path = Path(__file__).parent.parent / "benchmarks" / "sequence.py"
    spec = importlib.util.spec_from_file_location("_bench_sequence", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


@pytest.mark.slow
def test_the_benchmark_tables_each_method_over_its_sequences(tmp_path):
    bench = _benchmark()
    out = tmp_path / "seq.json"
    argv = ["--orders", "4", "--methods", "gradient", "salun", "--envs", "mask", "--seeds", "0",
            "--rl-seeds", "--out", str(tmp_path / "runs"), "--json", str(out)]
    assert bench.main(argv) == 0
    rows = {r["method"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"mask gradient", "salun"}
    assert all(r["runs"] == 1 and r["worst_relapse"] is None for r in rows.values())
    assert "| mask gradient | 1 |" in out.with_suffix(".md").read_text()
    assert bench.main(argv) == 0  # every sequence is read back, nothing is made again
    # orders of two lengths: the Avg. Gap per request number over the sequences that have it
    step = {"retain_acc_original": 0.9, "retain_acc": 0.91, "test_acc": 0.8, "request": 4,
            "forget_acc_by_request": {"4": 0.0}, "worst_relapse": None, "avg_gap": 1.0}
    two = {**step, "request": 2, "forget_acc_by_request": {"4": 0.1, "2": 0.0},
           "worst_relapse": 0.1, "avg_gap": 3.0}
    row = bench.summarise("m", [{"after_each": [step], "total_seconds": 1.0},
                                {"after_each": [step, two], "total_seconds": 3.0}])
    assert row["avg_gap_per_request"] == [1.0, 3.0] and row["worst_relapse"] == [0.1, 0.1]
    assert row["goal_met"] == 1 and row["total_seconds"] == 2.0
    # example sets: the relapse is the earlier sets' excess over the held-out (test) accuracy
    sets = {**two, "worst_relapse": 0.83, "test_acc": 0.8}
    row = bench.summarise("m", [{"after_each": [step, sets], "total_seconds": 1.0,
                                 "examples": {"fraction": 0.05}}])
    assert row["worst_relapse"] == [pytest.approx(0.03)] * 2 and row["goal_met"] == 1
