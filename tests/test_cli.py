"""Every flag of every entry point refuses a bad value with one line, exit status 2, and nothing
written; the flag tables below must name every flag the parsers define."""

import argparse

import pytest

from maskshift.cli import compare as cmp
from maskshift.cli import evaluate as cli_evaluate
from maskshift.cli import sequence as cli_sequence
from maskshift.cli import train as cli_train

JOIN = ["--distributed", "--num-processes", "2", "--process-id", "1"]  # process 1 of 2

TRAIN = [
    (["--from", "/no/such/run", "--forget-class", "3"], "Checkpoint directory '/no/such/run' does "
                                                        "not exist"),
    (["--forget-class", "3", "3"], "argument --forget-class: 3 is listed twice"),
    (["--num-envs", "100000000"], "GiB per device for its ppo episodes, and the device has"),
    (["--algo", "apg", "--episode-length", "100000000"], "lower --num-envs or --episode-length"),
    (["--env", "grid"], "argument --env: invalid choice: 'grid'"),
    (["--task", "translate"], "argument --task: invalid choice: 'translate'"),
    (["--algo", "sgd"], "argument --algo: invalid choice: 'sgd'"),
    (["--dataset", "imagenet"], "Unknown dataset 'imagenet'"),
    (["--data-dir", "/tmp"], "a data directory only applies to the TFDS datasets"),
    (["--edit", "Dense_9"], "Unknown layer or leaf 'Dense_9' to edit"),
    (["--task-factory", "no_such_module:make"], "--task-factory 'no_such_module:make' cannot be"),
    (["--task-factory", "json"], "must look like package.module:function"),
    (["--seed", "-1"], "argument --seed: expected a whole number from 0 to 4294967295, got '-1'"),
    (["--forget-class", "11"], "outside the labels 0..9"),
    (["--forget-class", "x"], "argument --forget-class: expected a whole number >= 0"),
    (["--task", "bias", "--forget-class", "3"],
     "argument --forget-class: applies to --task unlearn only; drop it"),
    (["--total-steps", "-5"], "argument --total-steps: expected a whole number >= 1, got '-5'"),
    (["--algo", "gradient", "--total-steps", "512"], "argument --total-steps: applies to --algo "
                                                     "ppo, apg or quark only"),
    (["--num-envs", "0"], "argument --num-envs: expected a whole number >= 1"),
    (["--num-envs", "3", "--devices", "1", "--env-chunk", "2"], "environment chunk of 2 does not "
                                                                "divide 3 environments"),
    (["--rank", "0"], "argument --rank: expected a whole number >= 1"),
    (["--rank", "100", "--task", "bias"], "rank 100 is larger than min(m, n) = 32"),
    (["--episode-length", "0"], "argument --episode-length: expected a whole number >= 1"),
    (["--lambda-utility", "nan"], "argument --lambda-utility: expected a finite number >= 0"),
    (["--lambda-edit", "-1"], "argument --lambda-edit: expected a finite number >= 0"),
    (["--lambda-utility", "0", "--lambda-edit", "0"], "the reward is always 0"),
    (["--step-size", "-1"], "argument --step-size: expected a finite number > 0, got '-1'"),
    (["--eval-batch", "0"], "argument --eval-batch: expected a whole number >= 1"),
    (["--lr", "inf"], "argument --lr: expected a finite number > 0, got 'inf'"),
    (["--algo", "oracle", "--lr", "0.1"], "argument --lr: applies to --algo ppo, apg or quark"),
    (["--oracle-restarts", "2"], "argument --oracle-restarts: applies to --algo oracle only"),
    (["--algo", "oracle", "--oracle-iterations", "0"], "argument --oracle-iterations: expected a "
                                                       "whole number >= 1"),
    (["--select-tolerance", "1.5"], "argument --select-tolerance: expected a number from 0 to 1"),
    (["--updates-per-chunk", "0"], "argument --updates-per-chunk: expected a whole number >= 1"),
    (["--overwrite=yes"], "argument --overwrite: ignored explicit argument 'yes'"),
    (["--devices", "0"], "argument --devices: expected a whole number >= 1"),
    (["--devices", "5"], "Asked for 5 devices but 1 are visible"),
    (["--env-chunk", "0"], "argument --env-chunk: expected a whole number >= 1"),
    (["--algo", "apg", "--env-chunk", "8"], "argument --env-chunk: applies to --algo ppo only"),
    (["--distributed=1"], "argument --distributed: ignored explicit argument '1'"),
    (["--seed", "99999999999999999999"], "argument --seed: expected a whole number from 0 to "
                                         "4294967295"),
    (["--total-steps", "100"], "A budget of 100 env steps is less than one update (64 "
                               "environments x 8 steps = 512); give --total-steps 512"),
    (["--algo", "apg", "--total-steps", "100"], "A budget of 100 env steps is less than one"),
    (["--edit", "Dense_0", "Dense_0"], "A leaf is listed twice"),
    (["--edit", ""], "Unknown layer or leaf '' to edit"),
    (["--edit", "Conv_0/bias"], "has shape (16,) (a bias or a normalisation scale, not a kernel)"),
    (["--edit", "Conv_9"], "params/Conv_1/kernel [3, 3, 16, 32] as [144, 32]"),
    (["--edit", "Conv_0", "--rank", "10"], "rank 10 is larger than min(m, n) = 9"),
    (["--model", "transformer"], "argument --model: applies to --task bias only"),
    (["--task", "bias", "--model", "lstm"], "argument --model: invalid choice: 'lstm'"),
    (["--task", "bias", "--model", "transformer", "--edit", "Block_1/Attn/query/bias"],
     "(a bias or a normalisation scale, not a kernel)"),
    (["--task", "bias", "--model", "transformer", "--edit", "Block_1/Attn/out:3"],
     "its matrix view's split :3 must be 1 to 2"),
    (["--forget-class", *map(str, range(10))], "Forgetting every class leaves no retain set"),
    (["--task-factory", "os:getcwd"], "returned str, not a maskshift.Task"),
    (["--env-chunk", "128"], "An environment chunk of 128 does not divide 64 environments"),
    (["--coordinator", "127.0.0.1:1"], "argument --coordinator: applies to --distributed only"),
    (["--num-processes", "2"], "argument --num-processes: applies to --distributed only"),
    (["--process-id", "0"], "argument --process-id: applies to --distributed only"),
    (["--distributed-timeout", "5"], "argument --distributed-timeout: applies to --distributed"),
    (["--distributed", "--num-processes", "1", "--process-id", "0", "--coordinator", "h:1"],
     "needs at least 2 processes (--num-processes is 1)"),
    (["--distributed", "--num-processes", "2", "--process-id", "2", "--coordinator", "h:1"],
     "Process id 2 is outside 0..1 for 2 processes"),
    (["--distributed", "--num-processes", "two", "--process-id", "0", "--coordinator", "h:1"],
     "The process count and id must be integers"),
    (["--distributed", "--num-processes", "2"], "--coordinator, --process-id missing"),
    ([*JOIN, "--coordinator", "nohost"], "The coordinator address 'nohost' is not host:port"),
    ([*JOIN, "--coordinator", "127.0.0.1:9", "--distributed-timeout", "1"],
     "Could not join the distributed run at 127.0.0.1:9 within 1 s"),
    ([*JOIN, "--coordinator", "127.0.0.1:9", "--distributed-timeout", "0"],
     "timeout must be at least 1 second, got 0 (--distributed-timeout)"),
    (["--observation", "pixels"], "argument --observation: invalid choice: 'pixels'"),
    (["--amortized", "--forget-class", "3"], "give a pool of at least two classes"),
    (["--sequence-depth", "2"], "argument --sequence-depth: applies to --amortized (over a pool "
                                "of classes or of example sets) only"),
    (["--amortized", "--forget-class", "1", "2", "--sequence-depth", "2"],
     "--sequence-depth 2: orders of 3 requests need a pool of at least 3 classes, the pool "
     "has 2; lower it or add classes to --forget-class"),
    (["--amortized", "--forget-fraction", "0.25", "--sequence-depth", "3"],
     "--sequence-depth 3: orders of 4 disjoint sets of 0.25 of the train split leave nothing "
     "to retain; lower it or --forget-fraction"),
    (["--amortized", "--forget-class", "1", "2", "--sequence-depth", "-1"],
     "argument --sequence-depth: expected a whole number >= 0"),
    (["--sequence-rounds", "2"], "argument --sequence-rounds: applies to --sequence-depth only"),
    (["--amortized", "--forget-class", "1", "2", "--sequence-depth", "1", "--sequence-rounds",
      "0"], "argument --sequence-rounds: expected a whole number >= 1"),
    (["--minibatch", "each"], "argument --minibatch: invalid choice: 'each'"),
    (["--algo", "gradient", "--minibatch", "shared"], "argument --minibatch: applies to --algo "
                                                      "ppo only"),
    (["--amortized", "--forget-class", "1", "2", "--algo", "apg"], "needs --task unlearn"),
    (["--heads", "units", "--observation", "summary"],
     "argument --heads: units heads read per-unit features; add --observation gradient"),
    (["--algo", "gradient", "--observation", "gradient"], "argument --observation: applies to "
                                                          "--algo ppo only"),
    (["--algo", "apg", "--heads", "flat"], "argument --heads: applies to --algo ppo only"),
    (["--heads", "flat", "--skip-gain", "0.5"], "argument --skip-gain: applies to --heads units "
                                                "only"),
    (["--observation", "summary", "--skip-gain", "0.5"],
     "argument --skip-gain: applies to --heads units only"),
    (["--heads", "units", "--observation", "controller", "--skip-gain", "0"],
     "argument --skip-gain: expected a finite number > 0, got '0'"),
    (["--algo", "gradient", "--skip-gain", "1"], "argument --skip-gain: applies to --algo ppo "
                                                 "--heads units only"),
    (["--task", "backdoor", "--target-class", "12"], "Backdoor target class 12 is outside the "
                                                     "labels 0..9"),
    (["--task", "backdoor", "--trigger-size", "8"], "A trigger of size 8 does not fit 8x8 images"),
    (["--task", "backdoor", "--trigger-size", "0"], "argument --trigger-size: expected a whole "
                                                    "number >= 1"),
    (["--task", "backdoor", "--poison-rate", "1.5"], "The poison rate must lie in (0, 1), got 1.5"),
    (["--target-class", "1"], "argument --target-class: applies to --task backdoor only"),
    (["--task", "bias", "--poison-rate", "0.1"], "argument --poison-rate: applies to --task "
                                                 "backdoor only"),
    (["--task", "backdoor", "--backdoor-reward", "asr"], "argument --backdoor-reward: invalid "
                                                         "choice: 'asr'"),
    (["--task", "backdoor", "--dataset", "toxic_templates"], "serves the 'bias' task, not "
                                                             "'backdoor'"),
    (["--objective-factory", "no_such_module:make"], "--objective-factory 'no_such_module:make' "
                                                     "cannot be loaded"),
    (["--objective-factory", "os:getcwd"], "returned str, not a maskshift.tasks.Objective"),
    (["--objective-factory", "json:dumps"], "--objective-factory 'json:dumps' failed (TypeError"),
    (["--task-factory", "os:getcwd", "--objective-factory", "os:getcwd"],
     "argument --objective-factory: your --task-factory builds the task"),
    (["--amortized", "--forget-class", "1", "2", "--objective-factory", "os:getcwd"],
     "drop --objective-factory (or --amortized)"),
    (["--forget-fraction", "1.5"], "argument --forget-fraction: expected a number strictly "
                                   "between 0 and 1, got '1.5'"),
    (["--forget-fraction", "0"], "argument --forget-fraction: expected a number strictly between"),
    (["--forget-indices", "/no/such/file"], "The forget-indices file '/no/such/file' does not "
                                            "exist"),
    (["--forget-fraction", "0.1", "--forget-indices", "f.txt"],
     "give --forget-fraction (a random share) or --forget-indices (your list), not both"),
    (["--forget-stratified"], "argument --forget-stratified: applies to a forget set of examples; "
                              "add --forget-fraction F or --forget-indices FILE"),
    (["--forget-indices", "f.txt", "--forget-seed", "1"], "argument --forget-seed: applies to "
                                                          "--forget-fraction only"),
    (["--forget-seed", "-1"], "argument --forget-seed: expected a whole number >= 0"),
    (["--forget-reward", "loss"], "argument --forget-reward: invalid choice: 'loss'"),
    (["--forget-fraction", "0.1", "--forget-class", "3"],
     "argument --forget-class: a forget set of examples replaces the forget classes"),
    (["--task", "bias", "--forget-fraction", "0.1"], "argument --forget-fraction: applies to "
                                                     "--task unlearn only"),
    (["--forget-fraction", "0.1", "--objective-factory", "os:getcwd"],
     "argument --forget-fraction: a forget set of examples does not combine with --from or "
     "--objective-factory yet"),
    (["--amortized", "--forget-indices", "f.txt"], "argument --forget-indices: --amortized trains "
                                                   "over random forget sets"),
    (["--forget-fraction", "0.1", "--forget-sets", "4"], "argument --forget-sets: applies to "
                                                         "--amortized --forget-fraction only"),
    (["--amortized", "--forget-fraction", "0.1", "--forget-sets", "0"],
     "argument --forget-sets: expected a whole number >= 1"),
    (["--amortized", "--forget-fraction", "0.1", "--forget-sets", "1"],
     "An amortized pool of forget sets needs at least two sets, got 1"),
    (["--algo", "gradient", "--forget-fraction", "0.1", "--forget-reward", "accuracy_gap"],
     "needs a differentiable reward: use --algo ppo or --algo quark, or the differentiable "
     "objective, --forget-reward confidence"),
]

EVALUATE = [
    (["--task", "translate"], "argument --task: invalid choice: 'translate'"),
    (["--task", "unlearn", "--dataset", "imagenet"], "Unknown dataset 'imagenet'"),
    (["--task", "unlearn", "--data-dir", "/tmp"], "a data directory only applies to the TFDS"),
    (["--task", "unlearn", "--forget-class", "-1"], "argument --forget-class: expected a whole "
                                                    "number >= 0"),
    (["--task", "bias", "--forget-class", "1"], "argument --forget-class: applies to --task "
                                                "unlearn only"),
    (["--task", "unlearn", "--checkpoint", "/no/such/run"], "does not exist"),
    (["--task", "unlearn", "--checkpoint", ""], "argument --checkpoint/--from: expected a path, "
                                                "got an empty string"),
    (["--task", "unlearn", "--from", "/no/such/run"], "does not exist"),
    (["--task", "unlearn", "--seed", "-2"], "argument --seed: expected a whole number from 0"),
    (["--task", "unlearn", "--seed", "4294967296"], "argument --seed: expected a whole number "
                                                    "from 0 to 4294967295"),
    (["--task", "unlearn", "--split", "holdout"], "argument --split: invalid choice: 'holdout'"),
    (["--task", "unlearn", "--json=1"], "argument --json: ignored explicit argument '1'"),
    (["--task", "backdoor", "--target-class", "10"], "Backdoor target class 10 is outside"),
    (["--task", "backdoor", "--trigger-size", "x"], "argument --trigger-size: expected a whole"),
    (["--task", "backdoor", "--poison-rate", "0"], "argument --poison-rate: expected a finite "
                                                   "number > 0"),
    (["--task", "unlearn", "--target-class", "1"], "argument --target-class: applies to --task "
                                                   "backdoor only"),
]

COMPARE = [
    (["--task", "translate"], "argument --task: invalid choice: 'translate'"),
    (["--task", "bias", "--dataset", "digits"], "serves the 'unlearn' task"),
    (["--task", "unlearn", "--model", "transformer"], "argument --model: applies to --task bias"),
    (["--task", "unlearn", "--edit", "Dense_9"], "Unknown layer or leaf 'Dense_9' to edit"),
    (["--task", "unlearn", "--data-dir", "/tmp"], "a data directory only applies to the TFDS"),
    (["--task", "unlearn", "--seeds", "0", "0"], "argument --seeds: [0, 0] repeats a seed"),
    (["--task", "bias", "--forget-class", "2"], "argument --forget-class: applies to --task "
                                                "unlearn only"),
    (["--task", "unlearn", "--methods", "magic"], "Unknown method 'magic'"),
    (["--task", "unlearn", "--rl-total-steps", "0"], "argument --rl-total-steps: expected a whole "
                                                     "number >= 1"),
    (["--task", "bias", "--methods", "MaskWorld-residual", "--rl-total-steps", "512"],
     "A budget of 512 env steps is less than one update of MaskWorld-residual "
     "(64 environments x 16 steps = 1024); give --rl-total-steps 1024 or more."),
    (["--task", "unlearn", "--overwrite=no"], "argument --overwrite: ignored explicit argument"),
    (["--task", "unlearn", "--seeds", "4294967296"], "argument --seeds: expected a whole number "
                                                     "from 0 to 4294967295"),
    (["--task", "bias", "--no-tune"], "argument --no-tune: applies to --task unlearn or "
                                      "backdoor only"),
    (["--task", "backdoor", "--target-class", "10"], "Backdoor target class 10 is outside"),
    (["--task", "unlearn", "--trigger-size", "3"], "argument --trigger-size: applies to --task "
                                                   "backdoor only"),
    (["--task", "backdoor", "--poison-rate", "2"], "The poison rate must lie in (0, 1), got 2.0"),
    (["--task", "backdoor", "--backdoor-reward", "x"], "argument --backdoor-reward: invalid"),
    (["--task", "unlearn", "--no-tune=1"], "argument --no-tune: ignored explicit argument"),
    (["--task", "unlearn", "--forget-fraction", "1"], "argument --forget-fraction: expected a "
                                                      "number strictly between 0 and 1"),
    (["--task", "unlearn", "--forget-indices", "/no/such"], "'/no/such' does not exist"),
    (["--task", "unlearn", "--forget-stratified"], "argument --forget-stratified: applies to a "
                                                   "forget set of examples"),
    (["--task", "unlearn", "--forget-seed", "x"], "argument --forget-seed: expected a whole"),
    (["--task", "unlearn", "--forget-reward", "y"], "argument --forget-reward: invalid choice"),
    (["--task", "bias", "--forget-fraction", "0.5"], "argument --forget-fraction: applies to "
                                                     "--task unlearn only"),
]


SEQUENCE = [  # (tests/test_sequence.py refuses the requests' and --out's bad values)
    (["--requests", "x"], "argument --requests: expected a whole number >= 0"),
    (["--requests", "3", "--env", "grid"], "argument --env: invalid choice: 'grid'"),
    (["--requests", "3", "--algo", "magic"], "argument --algo: invalid choice: 'magic'"),
    (["--requests", "3", "--policy", ""], "argument --policy: expected a path"),
    (["--requests", "3", "--policy", "/no/such/run"], "/no/such/run does not exist"),
    (["--requests", "3", "--dataset", "imagenet"], "Unknown dataset 'imagenet'"),
    (["--requests", "3", "--data-dir", "/tmp"], "a data directory only applies to the TFDS"),
    (["--requests", "3", "--edit", "Dense_9"], "Unknown layer or leaf 'Dense_9' to edit"),
    (["--requests", "3", "--seed", "-1"], "argument --seed: expected a whole number from 0"),
    (["--requests", "3", "--algo", "gradient", "--total-steps", "64"], "argument --total-steps: "
                                                                        "applies to --algo ppo"),
    (["--requests", "3", "--num-envs", "0"], "argument --num-envs: expected a whole number >= 1"),
    (["--requests", "3", "--rank", "0"], "argument --rank: expected a whole number >= 1"),
    (["--requests", "3", "--episode-length", "0"], "argument --episode-length: expected a whole"),
    (["--requests", "3", "--observation", "pixels"], "argument --observation: invalid choice"),
    (["--requests", "3", "--heads", "many"], "argument --heads: invalid choice"),
    (["--requests", "3", "--heads", "flat", "--skip-gain", "2"], "argument --skip-gain: applies "
                                                                  "to --heads units only"),
    (["--requests", "3", "--algo", "salun", "--minibatch", "shared"], "argument --minibatch: "
                                                                       "salun is a baseline"),
    (["--requests", "3", "--lambda-utility", "nan"], "argument --lambda-utility: expected a "
                                                     "finite number >= 0"),
    (["--requests", "3", "--lambda-edit", "-1"], "argument --lambda-edit: expected a finite"),
    (["--requests", "3", "--step-size", "0"], "argument --step-size: expected a finite number > "
                                              "0"),
    (["--requests", "3", "--eval-batch", "0"], "argument --eval-batch: expected a whole number"),
    (["--requests", "3", "--lr", "0"], "argument --lr: expected a finite number > 0"),
    (["--requests", "3", "--oracle-restarts", "2"], "argument --oracle-restarts: applies to "
                                                    "--algo oracle only"),
    (["--requests", "3", "--oracle-iterations", "0"], "argument --oracle-iterations: expected"),
    (["--requests", "3", "--select-tolerance", "2"], "argument --select-tolerance: expected a "
                                                     "number from 0 to 1"),
    (["--requests", "3", "--updates-per-chunk", "0"], "argument --updates-per-chunk: expected"),
    (["--requests", "3", "--overwrite=no"], "argument --overwrite: ignored explicit argument"),
    (["--requests", "3", "--json=1"], "argument --json: ignored explicit argument"),
    (["--requests", "3", "--example-requests", "2"], "argument --example-requests: not allowed "
                                                     "with argument --requests"),
    (["--example-requests", "2"], "argument --example-requests: needs --forget-fraction F"),
    (["--example-requests", "0", "--forget-fraction", "0.1"], "argument --example-requests: "
                                                              "expected a whole number >= 1"),
    (["--example-requests", "2", "--forget-fraction", "1"], "argument --forget-fraction: "
                                                            "expected a number strictly between"),
    (["--example-requests", "30", "--forget-fraction", "0.05", "--algo", "salun"],
     "30 requests of 54 examples (0.05 of 1078) leave nothing to retain"),
    (["--example-requests", "2", "--forget-fraction", "0.05", "--forget-stratified"],
     "argument --forget-stratified: a sequence draws its example requests"),
    (["--example-requests", "2", "--forget-fraction", "0.05", "--forget-indices", "f.txt"],
     "argument --forget-indices: a sequence draws its example requests"),
    (["--example-requests", "2", "--policy", "/tmp", "--forget-reward", "attack"],
     "argument --forget-reward: the policy edits with the reward term it was trained on"),
    (["--example-requests", "2", "--policy", "/tmp", "--forget-seed", "1"],
     "The policy directory /tmp holds no trained policy"),
    (["--requests", "3", "--forget-fraction", "0.05"], "argument --forget-fraction: applies to "
                                                       "--example-requests N"),
    (["--requests", "3", "--forget-reward", "accuracy_gap"], "argument --forget-reward: applies "
                                                             "to --example-requests N"),
    (["--example-requests", "2", "--forget-fraction", "0.05", "--forget-seed", "-1"],
     "argument --forget-seed: expected a whole number >= 0"),
    (["--example-requests", "2", "--forget-fraction", "0.05", "--forget-reward", "mia"],
     "argument --forget-reward: invalid choice: 'mia'"),
]


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings if s.startswith("--")} - {"--help"}


def _named(table) -> set[str]:
    return {w.split("=")[0] for argv, _ in table for w in argv if w.startswith("--")}


@pytest.mark.parametrize("parser, table, given", [
    (cli_train.build_parser(), TRAIN, {"--out"}), (cli_evaluate.build_parser(), EVALUATE, set()),
    (cmp.build_parser(), COMPARE, {"--out"}), (cli_sequence.build_parser(), SEQUENCE, {"--out"}),
])
def test_every_flag_has_a_bad_value_in_the_table(parser, table, given):
    # --out is given in every call below; its bad values have tests of their own
    assert _flags(parser) - given <= _named(table), "add the new flag's bad values to the table"


def _refused(main, argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv, message", TRAIN)
def test_train_refuses(argv, message, capsys, tmp_path, digits_model, toxic_model):
    _refused(cli_train.main, [*argv, "--out", str(tmp_path / "o")], message, capsys)
    assert not (tmp_path / "o").exists()  # nothing written


@pytest.mark.parametrize("argv, message", EVALUATE)
def test_evaluate_refuses(argv, message, capsys, digits_model):
    _refused(cli_evaluate.main, argv, message, capsys)


@pytest.mark.parametrize("argv, message", SEQUENCE)
def test_sequence_refuses(argv, message, capsys, tmp_path, digits_model):
    _refused(cli_sequence.main, [*argv, "--out", str(tmp_path / "o")], message, capsys)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv, message", COMPARE)
def test_compare_refuses(argv, message, capsys, tmp_path, digits_model):
    _refused(cmp.main, [*argv, "--out", str(tmp_path / "o")], message, capsys)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("main, argv", [
    (cli_train.main, ["--algo", "gradient"]), (cmp.main, ["--task", "unlearn"]),
])
def test_an_empty_out_is_refused(main, argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default run directory would land here
    _refused(main, [*argv, "--out", ""], "argument --out: expected a path, got an empty string",
             capsys)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("main, argv", [
    (cli_train.main, ["--algo", "gradient"]), (cmp.main, ["--task", "unlearn"]),
])
def test_out_naming_a_file_is_refused(main, argv, capsys, tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    _refused(main, [*argv, "--out", str(target)], "is an existing file, not a directory", capsys)
    _refused(main, [*argv, "--out", str(target / "run")], "file, not a directory", capsys)
    assert target.read_text() == "mine" and list(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize("argv", [
    ["--task", "bias", "--model", "transformer", "--edit", "Block_1/Attn/query/bias"],
    ["--task", "backdoor", "--edit", "Conv_9"],
])
def test_a_wrong_edit_spec_is_refused_before_any_model_is_pretrained(argv, capsys, tmp_path,
                                                                     monkeypatch):
    monkeypatch.setenv("MASKSHIFT_CACHE_DIR", str(tmp_path / "cache"))
    _refused(cli_train.main, [*argv, "--out", str(tmp_path / "o")], "edit", capsys)
    assert not (tmp_path / "cache").exists() and not (tmp_path / "o").exists()
