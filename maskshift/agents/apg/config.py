"""APG configuration: a frozen dataclass, like :class:`maskshift.agents.ppo.PPOConfig`."""

from __future__ import annotations

import dataclasses

from maskshift.agents.common import check_budget, check_counts, check_positive


@dataclasses.dataclass(frozen=True)
class APGConfig:
    """Analytic-policy-gradient hyperparameters.

    One *update* runs ``num_envs`` episodes of ``num_steps`` steps from the original weights (each
    environment draws its own train minibatches), backpropagates their mean summed reward through
    the whole rollout into the policy, clips the gradient's global norm and takes one Adam step.

    Attributes:
      truncation: cut the gradient through the edit every this many steps (truncated backprop);
        ``None``: through the whole episode. Long unrolls are APG's known weakness (exploding or
        chaotic gradients); with ``T = 8`` and bounded steps the full unroll is stable here.
      discount: weight ``discount ** t`` of step ``t``'s reward in the objective.
    """

    num_envs: int = 64
    num_steps: int = 8
    total_timesteps: int = 64 * 8 * 40
    learning_rate: float = 1e-3
    anneal_lr: bool = True
    max_grad_norm: float = 1.0
    discount: float = 1.0
    truncation: int | None = None
    hidden: int = 64
    u_init_scale: float = 1.0

    @property
    def num_updates(self) -> int:
        return max(1, self.total_timesteps // (self.num_envs * self.num_steps))

    def validate(self) -> APGConfig:
        check_counts(self, ("num_envs", "num_steps", "total_timesteps", "hidden"))
        check_budget(self.total_timesteps, self.num_envs, self.num_steps)
        if self.truncation is not None and self.truncation < 1:
            raise ValueError(f"truncation must be at least 1 (or None), got {self.truncation}.")
        check_positive(self, ("learning_rate", "max_grad_norm"))
        if not 0 < self.discount <= 1:
            raise ValueError(f"discount must lie in (0, 1], got {self.discount}.")
        return self
