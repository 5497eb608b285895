"""Policy trainers over the editing environments: PPO (:mod:`~maskshift.agents.ppo`) and APG
(:mod:`~maskshift.agents.apg`), the actor-critics they share (:mod:`~maskshift.agents.networks`)
and the one episode unroll every editor steps with (:mod:`~maskshift.agents.common`)."""

from maskshift.agents import apg, ppo

__all__ = ["apg", "ppo"]
