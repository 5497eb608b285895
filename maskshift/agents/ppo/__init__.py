"""PureJaxRL-style PPO with low-rank action heads."""

from maskshift.agents.networks import ActorCritic, make_network
from maskshift.agents.ppo.config import PPOConfig
from maskshift.agents.ppo.gae import compute_gae, ppo_loss
from maskshift.agents.ppo.train import (
    RunnerState,
    Trainer,
    Transition,
    make_train,
    policy_network,
)

__all__ = ["ActorCritic", "PPOConfig", "RunnerState", "Trainer", "Transition", "compute_gae",
           "make_network", "make_train", "policy_network", "ppo_loss"]
