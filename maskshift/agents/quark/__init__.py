"""Quark (Quantized Reward Konditioning) for editing: a reward-quantile-conditioned policy
trained by likelihood (:func:`make_train`, :class:`QuarkConfig`)."""

from maskshift.agents.quark.config import QuarkConfig
from maskshift.agents.quark.train import QuarkPolicy, QuarkState, make_train

__all__ = ["QuarkConfig", "QuarkPolicy", "QuarkState", "make_train"]
