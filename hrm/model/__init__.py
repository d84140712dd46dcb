"""The model family: shared layers and ACT loop (`act`), HRM, TRM, URM and the plain
transformer, chosen by `model.arch`; losses."""

from hrm.model.act import Carry, Recurrent, count_parameters
from hrm.model.hrm import HRM
from hrm.model.layers import swiglu_width
from hrm.model.losses import IGNORE_LABEL, act_loss, softmax_cross_entropy, stablemax_cross_entropy
from hrm.model.transformer import Transformer
from hrm.model.trm import TRM
from hrm.model.urm import URM

FAMILIES: dict[str, type[Recurrent]] = {"hrm": HRM, "trm": TRM, "urm": URM, "transformer": Transformer}


def build_model(cfg, meta: dict) -> Recurrent:
    """The model a config describes, sized for a task (`meta`: vocab_size, seq_len, num_puzzle_ids)."""
    return FAMILIES[cfg.model.arch](cfg.model, vocab_size=meta["vocab_size"], seq_len=meta["seq_len"],
                                    num_puzzle_ids=meta["num_puzzle_ids"])


def segment_flops(cfg, seq_len: int, vocab_size: int) -> dict[str, int]:
    """Model FLOPs of one training segment for one sample (matmuls and attention), by part:
    `forward` (the family's `layer_calls` and the head), `backward` (2x the forward of the
    differentiated blocks and the head) and `q_target` (a continue head's extra segment).

    Per block: 2 x (its matmul parameters) x tokens, plus 4*S^2*D for attention scores and
    values (the MLP token mixer's matmuls instead: 6*D*S*W over the sequence axis), over
    the S = seq_len + prefix positions (the puzzle embedding's first); the heads: the LM head
    on the seq_len answer tokens, the Q head (two outputs) on the first position.
    """
    D, S = cfg.hidden_size, seq_len + cfg.prefix_len
    mlp = 2 * S * 3 * D * swiglu_width(D, cfg.expansion)
    mix = 6 * D * S * swiglu_width(S, cfg.expansion) if cfg.mixer == "mlp" else 2 * S * 4 * D * D + 4 * S * S * D
    per_layer = mlp + mix
    family = FAMILIES[cfg.arch]
    calls, grad_calls = family.layer_calls(cfg)
    head = 2 * seq_len * D * vocab_size + 2 * D * 2
    fwd = calls * per_layer + head
    q_target = fwd if family.continue_head and cfg.act and cfg.halt_max_steps > 1 else 0
    return {"forward": fwd, "backward": 2 * (grad_calls * per_layer + head), "q_target": q_target}


def flops_per_segment(cfg, seq_len: int, vocab_size: int, training: bool = True) -> int:
    """All of `segment_flops` for a training segment; its forward alone for evaluation."""
    parts = segment_flops(cfg, seq_len, vocab_size)
    return sum(parts.values()) if training else parts["forward"]


__all__ = [
    "FAMILIES",
    "HRM",
    "TRM",
    "URM",
    "Carry",
    "IGNORE_LABEL",
    "Recurrent",
    "Transformer",
    "act_loss",
    "build_model",
    "count_parameters",
    "flops_per_segment",
    "segment_flops",
    "softmax_cross_entropy",
    "stablemax_cross_entropy",
]
