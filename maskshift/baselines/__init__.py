"""Hand-designed editing algorithms to compare RL editing against, on the same task and metrics."""

from maskshift.baselines.bias import BIAS_BASELINES
from maskshift.baselines.unlearning import UNLEARNING_BASELINES

BASELINES = {"unlearn": UNLEARNING_BASELINES, "bias": BIAS_BASELINES}

__all__ = ["BASELINES", "BIAS_BASELINES", "UNLEARNING_BASELINES"]
