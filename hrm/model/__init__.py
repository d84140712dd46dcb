"""HRM model family: layers, the HRM with its ACT wrapper, losses."""

from hrm.model.hrm import HRM, Carry, count_parameters, flops_per_segment
from hrm.model.losses import IGNORE_LABEL, act_loss, softmax_cross_entropy, stablemax_cross_entropy


def build_model(cfg, meta: dict) -> HRM:
    """The model a config describes, sized for a task (`meta`: vocab_size, seq_len, num_puzzle_ids)."""
    return HRM(cfg.model, vocab_size=meta["vocab_size"], seq_len=meta["seq_len"], num_puzzle_ids=meta["num_puzzle_ids"])


__all__ = [
    "HRM",
    "Carry",
    "IGNORE_LABEL",
    "act_loss",
    "build_model",
    "count_parameters",
    "flops_per_segment",
    "softmax_cross_entropy",
    "stablemax_cross_entropy",
]
