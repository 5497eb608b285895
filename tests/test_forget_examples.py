"""Forgetting a set of train examples: the forget set (drawn, read, checked), its objective and
report, the baselines on it, and the command line."""

import json

import jax
import numpy as np
import pytest

from maskshift.baselines.unlearning import forget_rows, retain_dataset
from maskshift.cli import edit as cli_edit
from maskshift.cli import train as cli_train
from maskshift.data.forget_sets import check_forget_set, random_forget_set, read_forget_indices
from maskshift.metrics.field import confidence_threshold
from maskshift.tasks import (
    ExampleObjective,
    example_pool_task,
    forget_examples_task,
    unlearning_task,
)


@pytest.fixture(scope="module")
def base_task(digits_model):
    return unlearning_task(7)


@pytest.fixture(scope="module")
def example_task(base_task):
    idx = random_forget_set(len(base_task.dataset.train.y), 0.1, seed=3)
    return forget_examples_task(base_task, idx)


def test_a_random_forget_set_is_seeded_distinct_and_optionally_stratified():
    labels = np.repeat(np.arange(4), [50, 30, 15, 5])
    a, b = random_forget_set(100, 0.2, seed=1), random_forget_set(100, 0.2, seed=1)
    assert np.array_equal(a, b) and len(a) == 20 and len(set(a)) == 20
    assert np.all(np.diff(a) > 0) and not np.array_equal(a, random_forget_set(100, 0.2, seed=2))
    s = random_forget_set(100, 0.2, seed=1, labels=labels)
    assert [int((labels[s] == c).sum()) for c in range(4)] == [10, 6, 3, 1]
    with pytest.raises(ValueError, match=r"must be in \(0, 1\), got 1.0"):
        random_forget_set(100, 1.0)


def test_an_index_file_is_read_and_its_bad_entries_named(tmp_path):
    f = tmp_path / "ids.txt"
    f.write_text("# my rows\n3, 5\n 8 13  # last\n")
    assert read_forget_indices(f).tolist() == [3, 5, 8, 13]
    f.write_text("3\n4.5\n")
    with pytest.raises(ValueError, match=r"ids.txt:2: '4.5' is not an integer"):
        read_forget_indices(f)


@pytest.mark.parametrize("indices, message", [
    ([], "The forget set is empty"),
    ([0, 10], r"Forget index 10 is outside the train split's rows 0..9"),
    ([-1], r"Forget index -1 is outside"),
    ([2, 3, 2], "Forget index 2 is listed twice"),
    (list(range(10)), "holds every train example"),
])
def test_a_bad_forget_set_is_refused(indices, message):
    with pytest.raises(ValueError, match=message):
        check_forget_set(np.asarray(indices, np.int64), np.arange(10) % 3)


def test_a_forget_set_that_holds_a_whole_class_warns():
    heard = []
    assert check_forget_set([5, 2], np.array([0, 0, 1, 1, 2, 1]), warn=heard.append) == (2, 5)
    assert heard == []
    check_forget_set([4, 1, 0], np.array([0, 0, 1, 1, 2, 1]), warn=heard.append)
    assert len(heard) == 1 and "every train example of class(es) [0, 2]" in heard[0]


def test_the_threshold_attack_cuts_where_balanced_accuracy_peaks():
    members, others = np.array([0.9, 0.95, 0.99, 0.999]), np.array([0.3, 0.5, 0.92, 0.93])
    cut = confidence_threshold(members, others)
    assert cut == 0.95  # 3/4 members at or above, every non-member below (0.9 keeps 2 of 4)
    assert confidence_threshold(others, members) <= 0.3  # no cut separates them that way


def test_the_objective_reads_exactly_the_named_rows(example_task):
    task = example_task
    obj = task.objective
    assert isinstance(obj, ExampleObjective) and len(obj.forget_indices) == 108
    mask = forget_rows(task)
    assert mask.sum() == 108 and np.flatnonzero(mask).tolist() == list(obj.forget_indices)
    kept = retain_dataset(task).train
    assert len(kept) == len(task.dataset.train) - 108
    arrays = task.split_arrays("train")
    assert np.array_equal(arrays["forget"][0], mask) and arrays["n_forget"].tolist() == [108]
    batch = obj.sample(jax.random.key(0), jax.tree.map(np.asarray, arrays), 0)
    rows = {tuple(np.round(h, 5)) for h in np.asarray(arrays["h"])[mask]}
    assert all(tuple(np.round(h, 5)) in rows for h in np.asarray(batch["h_forget"]))


def test_the_report_measures_the_forget_rows_and_the_held_out_split(example_task):
    task = example_task
    rep = task.report(task.params, "test")
    logits = np.asarray(task.apply_fn(task.params, task.dataset.train.x))
    mask = forget_rows(task)
    correct = logits.argmax(-1) == task.dataset.train.y
    assert rep["forget_acc"] == pytest.approx(correct[mask].mean())
    assert rep["retain_acc"] == pytest.approx(correct[~mask].mean())
    assert rep["ua"] == pytest.approx(100 * (1 - rep["forget_acc"]))
    assert rep["forget_size"] == 108 and 0 <= rep["mia_efficacy"] <= 100
    # the original fits its train examples more confidently than held-out ones: the gap to close
    assert rep["forget_confidence"] > rep["heldout_confidence"]


def test_each_reward_is_a_two_sided_gap_normalised_to_one_at_the_held_out_level(example_task):
    task = example_task
    arrays = task.arrays()
    for reward in ("confidence", "accuracy_gap", "attack"):
        obj = ExampleObjective(forget_indices=task.objective.forget_indices,
                               levels=task.objective.levels, reward=reward)
        batch = obj.target_sets(arrays.train, 0)
        metrics = obj.measure(lambda h: task.suffix(arrays.params, h), batch)
        assert float(metrics[1]) > 0  # the original sits away from the held-out level
        # at the original: no edit gained; at the held-out level exactly: 1
        assert float(obj.terms(metrics, metrics)[1]) == 0.0
        at_level = metrics.at[1].set(0.0)
        assert float(obj.terms(at_level, metrics)[1]) == pytest.approx(1.0)
        overshoot = metrics.at[1].set(2 * metrics[1])
        assert float(obj.terms(overshoot, metrics)[1]) < 0


def test_a_pool_of_random_sets_is_one_target_per_set(base_task):
    task = example_pool_task(base_task, 0.1, 4, seed=1000)
    obj = task.objective
    assert obj.num_targets == 4 and len({frozenset(t) for t in obj.targets}) == 4
    table_set = tuple(random_forget_set(len(base_task.dataset.train.y), 0.1, 0).tolist())
    assert table_set not in obj.targets  # a pool seed never draws the default set
    arrays = task.split_arrays("train")
    assert arrays["n_forget"].tolist() == [108] * 4
    assert [int(m.sum()) for m in arrays["forget"]] == [108] * 4
    rep = task.report(task.params, "test", with_mia=False, target=2)
    mask = obj.train_forget(task.dataset, 2)
    assert np.flatnonzero(mask).tolist() == list(obj.targets[2]) and rep["forget_size"] == 108


@pytest.mark.long
def test_an_amortized_policy_edits_a_set_it_never_saw(tmp_path, example_pool_policy):
    out = example_pool_policy
    res = json.loads((out / "results.json").read_text())
    assert [t["forget_set"] for t in res["targets"]] == [0, 1]
    assert res["targets"][0]["label"] == "set 0 (108 examples)"
    ids = tmp_path / "new.txt"
    ids.write_text("\n".join(map(str, random_forget_set(1078, 0.1, 77))))
    assert cli_edit.main(["--policy", str(out), "--forget-indices", str(ids),
                          "--out", str(tmp_path / "zs")]) == 0
    edit = json.loads((tmp_path / "zs" / "edit.json").read_text())
    assert edit["forget_size"] == 108 and edit["policy"] == str(out)
    meta = json.loads((tmp_path / "zs" / "edited.json").read_text())
    assert meta["forget_size"] == 108


@pytest.mark.parametrize("content, message", [
    ("3\n2000\n", "Forget index 2000 is outside the train split's rows 0..1077"),
    ("3\n3\n", "Forget index 3 is listed twice"),
    ("3\nseven\n", "ids.txt:2: 'seven' is not an integer"),
    ("# nothing yet\n", "The forget set is empty"),
])
def test_a_bad_index_file_stops_the_command_with_one_line(content, message, tmp_path, capsys,
                                                           digits_model):
    ids = tmp_path / "ids.txt"
    ids.write_text(content)
    with pytest.raises(SystemExit) as exc:
        cli_train.main(["--algo", "gradient", "--forget-indices", str(ids),
                        "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_an_example_request_runs_end_to_end_and_warns_of_a_whole_class(tmp_path, capsys,
                                                                   digits_model, base_task):
    y = base_task.dataset.train.y
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(map(str, np.flatnonzero(y == 4))) + "\n0\n")
    assert cli_train.main(["--algo", "gradient", "--forget-indices", str(ids),
                           "--out", str(tmp_path / "o")]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warned) == 1 and "every train example of class(es) [4]" in warned[0]
    res = json.loads((tmp_path / "o" / "results.json").read_text())
    rows = sorted([*np.flatnonzero(y == 4).tolist(), 0])
    assert sorted(res["config"]["forget_indices"]) == rows
    assert res["after"]["forget_size"] == len(rows)
    # the edit moves the forget set toward the held-out level and keeps the rest
    assert res["after"]["forget_confidence"] < res["before"]["forget_confidence"]
    assert res["after"]["test_acc"] >= res["before"]["test_acc"] - 0.03


def test_a_reward_with_no_gradient_gets_flat_ppo_by_default():
    from maskshift.cli.train import build_parser, config_from_args
    from maskshift.run import make_run_config

    assert make_run_config(forget_fraction=0.1).editor.heads == "units"  # residual PPO
    for reward in ("accuracy_gap", "attack"):
        cfg = make_run_config(forget_fraction=0.1, forget_reward=reward)
        assert (cfg.observation, cfg.editor.heads) == ("summary", "flat")
    args = build_parser().parse_args(["--forget-fraction", "0.1"])
    assert config_from_args(args).editor.heads == "units"
    args = build_parser().parse_args(["--forget-fraction", "0.1", "--forget-reward", "attack"])
    assert config_from_args(args).observation == "summary"
    args = build_parser().parse_args(["--forget-fraction", "0.1", "--forget-reward", "attack",
                                      "--heads", "units", "--observation", "controller"])
    assert config_from_args(args).editor.heads == "units"  # asked for: kept
