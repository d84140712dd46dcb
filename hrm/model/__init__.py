"""HRM model family: layers, the HRM with its ACT wrapper, losses."""

from hrm.model.hrm import HRM, Carry, count_parameters, flops_per_segment
from hrm.model.losses import IGNORE_LABEL, act_loss, softmax_cross_entropy, stablemax_cross_entropy

__all__ = [
    "HRM",
    "Carry",
    "IGNORE_LABEL",
    "act_loss",
    "count_parameters",
    "flops_per_segment",
    "softmax_cross_entropy",
    "stablemax_cross_entropy",
]
