"""Batched, pure metrics for unlearning, bias mitigation and backdoor removal, plus whole-model
reports."""

from maskshift.metrics.backdoor import attack_success_rate
from maskshift.metrics.bias import (
    bias_aucs,
    flip_rate,
    fpr_gap,
    group_accuracies,
    masked_auc,
    positive_score,
    worst_group_accuracy,
)
from maskshift.metrics.field import (
    FIELD_KEYS,
    avg_gap,
    confidence_threshold,
    field_figures,
    mia_efficacy,
)
from maskshift.metrics.reports import (
    backdoor_report,
    bias_report,
    example_unlearning_report,
    meets_unlearning_target,
    unlearning_report,
)
from maskshift.metrics.unlearning import (
    accuracy,
    fit_logistic_1d,
    forget_mask,
    forget_retain_accuracy,
    membership_inference,
    per_class_accuracy,
    softmax_entropy,
)

__all__ = [
    "FIELD_KEYS",
    "avg_gap",
    "confidence_threshold",
    "example_unlearning_report",
    "field_figures",
    "mia_efficacy",
    "accuracy",
    "attack_success_rate",
    "backdoor_report",
    "bias_aucs",
    "bias_report",
    "fit_logistic_1d",
    "flip_rate",
    "forget_mask",
    "forget_retain_accuracy",
    "fpr_gap",
    "group_accuracies",
    "masked_auc",
    "meets_unlearning_target",
    "membership_inference",
    "per_class_accuracy",
    "positive_score",
    "softmax_entropy",
    "unlearning_report",
    "worst_group_accuracy",
]
