"""The defaults a run's config resolves to: residual PPO's own settings on the bias task
(RESIDUAL_TASK_SETTINGS: 16 steps, lr 3e-3) and its observation per task and env
(RESIDUAL_OBSERVATIONS) reach it through every builder, and no other editor or task."""

import pytest

from maskshift.agents.ppo import PPOConfig
from maskshift.cli.train import build_parser, config_from_args
from maskshift.run import RunConfig, make_run_config
from maskshift.run.config import (
    DEFAULT_EPISODE_LENGTH,
    DEFAULT_LR,
    DEFAULT_TOTAL_STEPS,
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
