"""Gradient controls in the environments' own action space: no learning, no policy. The greedy
gradient controller (:mod:`~maskshift.controls.gradient`) and the open-loop gradient oracle
(:mod:`~maskshift.controls.oracle`) sit beside every RL editor as its yardstick."""

from maskshift.controls.gradient import (
    GradientConfig,
    check_differentiable,
    gradient_act,
    gradient_edits,
    gradient_step,
    low_rank_action,
    term_gradients,
)
from maskshift.controls.oracle import OracleConfig, optimise_actions, oracle_edits

__all__ = ["GradientConfig", "OracleConfig", "check_differentiable", "gradient_act",
           "gradient_edits", "gradient_step", "low_rank_action", "optimise_actions", "oracle_edits",
           "term_gradients"]
