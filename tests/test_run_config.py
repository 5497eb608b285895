"""The defaults a run's config resolves to: residual PPO's own settings on the bias task
(RESIDUAL_TASK_SETTINGS: 16 steps, lr 3e-3) and its observation per task and env
(RESIDUAL_OBSERVATIONS) reach it through every builder, and no other editor or task; every
editor's 32-step episodes on a built-in CNN's convolutions (CONVOLUTION_EPISODE_LENGTH)."""

import pytest

from maskshift.agents.ppo import PPOConfig
from maskshift.cli.train import build_parser, config_from_args
from maskshift.models import is_builtin_convolution
from maskshift.run import RunConfig, make_run_config
from maskshift.run.config import (
    CONVOLUTION_EPISODE_LENGTH,
    CONVOLUTION_RESIDUAL_TOTAL_STEPS,
    DEFAULT_EPISODE_LENGTH,
    DEFAULT_LR,
    DEFAULT_TOTAL_STEPS,
    LONG_PPO_TOTAL_STEPS,
    RESIDUAL_TASK_SETTINGS,
)

BIAS = RESIDUAL_TASK_SETTINGS["bias"]


def _cli(*flags):
    return config_from_args(build_parser().parse_args(list(flags)))


@pytest.mark.parametrize("build", [lambda: make_run_config(task="bias"),
                                   lambda: RunConfig(task="bias"),
                                   lambda: _cli("--task", "bias"),
                                   lambda: _cli("--task", "bias", "--env", "shift")])
def test_the_default_policy_on_bias_takes_its_own_settings(build):
    cfg = build()
    assert (cfg.observation, cfg.editor.heads) == ("controller-step", "units")
    assert cfg.editor.skip_gain == 1.0  # the controller-step start
    assert cfg.episode_length == cfg.editor.num_steps == BIAS["episode_length"]
    assert cfg.editor.learning_rate == BIAS["learning_rate"]
    assert cfg.editor.total_timesteps == DEFAULT_TOTAL_STEPS["ppo"]["bias"]


@pytest.mark.parametrize("flags", [("--task", "bias", "--heads", "flat"),
                                   ("--task", "bias", "--observation", "gradient"),
                                   ("--task", "bias", "--algo", "apg"),
                                   ("--task", "bias", "--algo", "gradient"),
                                   ("--task", "bias", "--algo", "oracle"),
                                   (),
                                   ("--task", "backdoor")])
def test_every_other_editor_and_task_keeps_the_common_defaults(flags):
    cfg = _cli(*flags)
    assert cfg.episode_length == DEFAULT_EPISODE_LENGTH
    if cfg.algo in DEFAULT_LR:
        assert cfg.editor.num_steps == DEFAULT_EPISODE_LENGTH
        assert cfg.editor.learning_rate == DEFAULT_LR[cfg.algo]


def test_settings_given_explicitly_win_over_the_task_defaults():
    cfg = _cli("--task", "bias", "--episode-length", "8", "--lr", "0.0005")
    assert cfg.episode_length == cfg.editor.num_steps == 8
    assert cfg.editor.learning_rate == 0.0005
    # an editor config given whole sets the episode length it rolls out
    own = RunConfig(task="bias", editor=PPOConfig(num_envs=4, num_steps=5, total_timesteps=40,
                                                  heads="units"))
    assert own.episode_length == 5


def test_a_resolved_config_round_trips_through_json():
    cfg = make_run_config(task="bias")
    again = RunConfig.from_json(cfg.to_json())
    assert again == cfg and again.episode_length == BIAS["episode_length"]


def test_the_observation_default_is_per_task_and_env_and_an_explicit_one_wins():
    assert _cli().observation == "controller"  # MaskWorld unlearning keeps it
    shift = _cli("--env", "shift")  # ShiftWorld unlearning of a class: the controller's step
    assert shift.observation == "controller-step" and shift.editor.skip_gain == 1.0
    assert make_run_config(env="shift").observation == "controller-step"
    assert RunConfig(env="ShiftWorld-v0").observation == "controller-step"
    # not measured with it: an amortized policy, a forget set of examples, backdoor removal
    assert _cli("--env", "shift", "--amortized").observation == "controller"
    assert _cli("--env", "shift", "--forget-fraction", "0.1").observation == "controller"
    assert _cli("--env", "shift", "--forget-fraction", "0.1",
                "--forget-reward", "attack").observation == "summary"  # no gradient
    assert _cli("--task", "backdoor", "--env", "shift").observation == "controller"
    explicit = _cli("--task", "bias", "--observation", "controller")
    assert explicit.observation == "controller" and explicit.editor.skip_gain == 0.5
    assert _cli("--task", "bias", "--heads", "flat").observation == "summary"
    # MaskWorld through a convolution alone: the controller's step (a dense layer beside: not)
    conv = _cli("--edit", "Conv_1")
    assert conv.observation == "controller-step" and conv.editor.skip_gain == 1.0
    assert make_run_config(edit=("Conv_0",)).observation == "controller-step"
    assert _cli("--edit", "Conv_1", "Dense_0").observation == "controller"
    assert _cli("--edit", "Conv_1", "--amortized", "--forget-class", "1", "2").observation \
        == "controller"


@pytest.mark.parametrize("spec,conv", [("Conv_1", True), ("Conv_0/kernel:2", True),
                                       ("params/Conv_2/kernel", True), (("Conv_1",), True),
                                       ("Dense_0", False), ("Conv_1/bias", False),
                                       ("Block_0/Conv_1", False), ("MyConv_1", False)])
def test_a_builtin_convolution_is_named_by_its_layer(spec, conv):
    assert is_builtin_convolution(spec) is conv


@pytest.mark.parametrize("algo", ["ppo", "gradient", "oracle", "apg"])
@pytest.mark.parametrize("edit", [("Conv_1",), ("Conv_0", "Conv_1/kernel:2")])
def test_every_editor_takes_32_steps_on_convolutions(algo, edit):
    for cfg in (_cli("--algo", algo, "--edit", *edit),
                make_run_config(algo=algo, edit=edit), RunConfig(algo=algo, edit=edit)):
        assert cfg.episode_length == CONVOLUTION_EPISODE_LENGTH
        if algo in DEFAULT_LR:
            assert cfg.editor.num_steps == CONVOLUTION_EPISODE_LENGTH
        if algo == "ppo":  # MaskWorld's residual policy: 20 updates at the longer episode
            assert cfg.editor.total_timesteps == CONVOLUTION_RESIDUAL_TOTAL_STEPS["mask"] \
                == 20 * 64 * CONVOLUTION_EPISODE_LENGTH
        if algo == "apg":
            assert cfg.editor.total_timesteps == DEFAULT_TOTAL_STEPS["apg"]["unlearn"]


@pytest.mark.parametrize("flags", [("--edit", "Conv_1", "Dense_0"),  # a dense layer too
                                   ("--edit", "Conv_1", "--amortized", "--forget-class", "1", "2"),
                                   ("--edit", "Conv_1", "--forget-fraction", "0.1"),
                                   ("--task", "backdoor", "--edit", "Conv_1")])
def test_convolutions_beside_other_layers_or_requests_keep_8_steps(flags):
    assert _cli(*flags).episode_length == DEFAULT_EPISODE_LENGTH


@pytest.mark.parametrize("env, updates", [("shift", 10), ("mask", 20)])
def test_residual_ppo_on_a_convolution_takes_its_envs_updates(env, updates):
    total = updates * 64 * CONVOLUTION_EPISODE_LENGTH
    for cfg in (_cli("--env", env, "--edit", "Conv_1"),
                make_run_config(algo="ppo", env=env, edit=("Conv_1",)),
                RunConfig(algo="ppo", env=env, edit=("Conv_1",))):
        assert cfg.editor.total_timesteps == total
        assert cfg.editor.num_updates == updates


def test_an_unknown_env_on_a_convolution_says_so():
    with pytest.raises(ValueError, match="Unknown env 'grid'; choose 'mask' or 'shift'"):
        RunConfig(env="grid", edit=("Conv_1",))


def test_an_explicit_length_or_budget_wins_on_a_convolution():
    cfg = _cli("--edit", "Conv_1", "--episode-length", "8", "--total-steps", "1024")
    assert cfg.episode_length == cfg.editor.num_steps == 8
    assert cfg.editor.total_timesteps == 1024
    flat = _cli("--edit", "Conv_1", "--heads", "flat")  # not the residual policy: its own budget
    assert flat.episode_length == 32
    assert flat.editor.total_timesteps == LONG_PPO_TOTAL_STEPS["unlearn"]
