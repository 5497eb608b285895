"""Quark configuration: a frozen dataclass, like :class:`maskshift.agents.ppo.PPOConfig`."""

from __future__ import annotations

import dataclasses
import math

from maskshift.agents.common import check_budget, check_counts, check_positive


@dataclasses.dataclass(frozen=True)
class QuarkConfig:
    """Quark hyperparameters (Lu et al., NeurIPS 2022, "Quark: Controllable Text Generation with
    Reinforced Unlearning"), for episodes of edits instead of token sequences.

    One *update* samples ``num_envs`` episodes of ``num_steps`` steps from the original weights
    with the policy conditioned on the best quantile's token, adds them to a pool of the last
    ``pool_factor * num_envs`` episodes, sorts the pool by episode return into ``num_quantiles``
    quantiles (each episode's token: its quantile), then takes ``update_epochs`` passes of
    ``num_minibatches`` Adam steps on ``-log pi(action | obs, token)`` plus ``kl_coef`` times the
    KL divergence from the starting policy under the same token.

    Attributes:
      num_quantiles: reward quantiles, each with its own token (Quark's default is 5).
      pool_factor: the pool holds this many updates' episodes (Quark keeps every sample; a
        bounded pool keeps memory fixed and drops the oldest).
      kl_coef: weight of ``KL(pi || pi_0)`` (Quark's ``beta``, 0.05 in its toxicity runs).
    """

    num_envs: int = 64
    num_steps: int = 8
    total_timesteps: int = 64 * 8 * 40
    learning_rate: float = 1e-3
    num_quantiles: int = 5
    pool_factor: int = 4
    update_epochs: int = 2
    num_minibatches: int = 4
    kl_coef: float = 0.05
    max_grad_norm: float = 1.0
    hidden: int = 64
    init_log_std: float = -0.5
    u_init_scale: float = 1.0

    @property
    def num_updates(self) -> int:
        return max(1, self.total_timesteps // (self.num_envs * self.num_steps))

    @property
    def pool_size(self) -> int:
        return self.pool_factor * self.num_envs

    def validate(self) -> QuarkConfig:
        check_counts(self, ("num_envs", "num_steps", "total_timesteps", "hidden", "pool_factor",
                            "update_epochs", "num_minibatches"))
        check_budget(self.total_timesteps, self.num_envs, self.num_steps)
        if self.num_quantiles < 2:
            raise ValueError(f"num_quantiles must be at least 2 (a best quantile and the rest), "
                             f"got {self.num_quantiles}.")
        if self.pool_size % self.num_minibatches:
            raise ValueError(f"The pool of {self.pool_size} episodes does not split into "
                             f"{self.num_minibatches} minibatches; change num_minibatches.")
        check_positive(self, ("learning_rate", "max_grad_norm"))
        if not math.isfinite(self.kl_coef) or self.kl_coef < 0:
            raise ValueError(f"kl_coef must be a finite number >= 0, got {self.kl_coef}.")
        return self
