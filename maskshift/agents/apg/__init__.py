"""Analytic policy gradients (APG): backpropagate the summed episode reward through the
differentiable environments into the policy, as Brax's ``apg`` agent does for its simulators."""

from maskshift.agents.apg.config import APGConfig
from maskshift.agents.apg.train import APGState, make_train

__all__ = ["APGConfig", "APGState", "make_train"]
