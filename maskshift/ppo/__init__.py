"""PureJaxRL-style PPO with low-rank action heads."""

from maskshift.ppo.config import PPOConfig
from maskshift.ppo.gae import compute_gae, ppo_loss
from maskshift.ppo.networks import ActorCritic
from maskshift.ppo.train import RunnerState, Trainer, Transition, make_network, make_train

__all__ = ["ActorCritic", "PPOConfig", "RunnerState", "Trainer", "Transition", "compute_gae",
           "make_network", "make_train", "ppo_loss"]
