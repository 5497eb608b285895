"""PPO configuration: a frozen dataclass, never a mutable dict."""

from __future__ import annotations

import dataclasses

from maskshift.agents.common import check_budget, check_counts
from maskshift.agents.networks import DEFAULT_SKIP_GAIN, HEADS


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """PureJaxRL-style PPO hyperparameters.

    One *update* collects ``num_steps`` steps from each of ``num_envs`` environments, then runs
    ``update_epochs`` epochs of ``num_minibatches`` shuffled minibatches.
    """

    num_envs: int = 64
    num_steps: int = 8
    total_timesteps: int = 64 * 8 * 160
    update_epochs: int = 4
    num_minibatches: int = 4
    learning_rate: float = 1e-3
    anneal_lr: bool = True
    gamma: float = 0.95
    gae_lambda: float = 0.9
    clip_eps: float = 0.2
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    hidden: int = 64
    init_log_std: float = -0.5
    u_init_scale: float = 1.0
    # "flat": one vector for all of U and V (ActorCritic); "units": heads shared over units
    # (UnitActorCritic; needs the environment's gradient observation)
    heads: str = "flat"
    # unit heads: the skip path's initial gain on the factors it follows. The observation's
    # factors have unit-RMS columns that are nearly collinear (one step of subspace iteration),
    # so at gain g the first step's U V^T / sqrt(r) has RMS about g^2 sqrt(r): at 1.0 its tanh
    # saturates almost everywhere (a sign step). 0.5 was chosen on validation (docs/training.md)
    skip_gain: float = DEFAULT_SKIP_GAIN

    @property
    def num_updates(self) -> int:
        return max(1, self.total_timesteps // (self.num_envs * self.num_steps))

    @property
    def minibatch_size(self) -> int:
        return self.num_envs * self.num_steps // self.num_minibatches

    def validate(self) -> PPOConfig:
        check_counts(self, ("num_envs", "num_steps", "total_timesteps", "update_epochs",
                            "num_minibatches", "hidden"))
        check_budget(self.total_timesteps, self.num_envs, self.num_steps)
        if (self.num_envs * self.num_steps) % self.num_minibatches:
            raise ValueError(f"num_envs * num_steps = {self.num_envs * self.num_steps} is not "
                             f"divisible by num_minibatches = {self.num_minibatches}.")
        if self.heads not in HEADS:
            raise ValueError(f"Unknown heads {self.heads!r}; choose one of {', '.join(HEADS)}.")
        if not self.skip_gain > 0 or self.skip_gain == float("inf"):
            raise ValueError(f"skip_gain must be a positive number, got {self.skip_gain}.")
        if not 0 < self.gamma <= 1 or not 0 <= self.gae_lambda <= 1:
            raise ValueError("gamma must lie in (0, 1] and gae_lambda in [0, 1].")
        return self
