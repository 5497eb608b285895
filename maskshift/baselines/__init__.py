"""Hand-designed editing algorithms to compare RL editing against, on the same task and metrics:
unlearning (unlearning.py, field.py), bias mitigation (bias.py), backdoor removal (backdoor.py)."""

from maskshift.baselines.backdoor import BACKDOOR_BASELINES
from maskshift.baselines.bias import BIAS_BASELINES
from maskshift.baselines.field import FIELD_BASELINES
from maskshift.baselines.tuning import GRIDS, tuned
from maskshift.baselines.unlearning import UNLEARNING_BASELINES, retrained

BASELINES = {"unlearn": {**UNLEARNING_BASELINES, **FIELD_BASELINES}, "bias": BIAS_BASELINES,
             "backdoor": BACKDOOR_BASELINES}

__all__ = ["BACKDOOR_BASELINES", "BASELINES", "BIAS_BASELINES", "FIELD_BASELINES", "GRIDS",
           "UNLEARNING_BASELINES", "retrained", "tuned"]
