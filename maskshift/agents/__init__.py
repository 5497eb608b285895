"""Policy trainers over the editing environments: PPO (:mod:`~maskshift.agents.ppo`), APG
(:mod:`~maskshift.agents.apg`) and Quark (:mod:`~maskshift.agents.quark`), the actor-critics
they share (:mod:`~maskshift.agents.networks`) and the one episode unroll every editor steps
with (:mod:`~maskshift.agents.common`)."""

from maskshift.agents import apg, ppo, quark

__all__ = ["apg", "ppo", "quark"]
