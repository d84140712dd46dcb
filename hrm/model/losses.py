"""Losses of HRM's deep supervision: token cross entropy and the two Q losses.

Label token 0 (PAD) is never scored: Sudoku labels every cell, ARC pads its
30x30 canvas with it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_LABEL = 0  # PAD


def _stablemax_s(x: torch.Tensor) -> torch.Tensor:
    # s(x) = x + 1 for x >= 0, 1 / (1 - x) for x < 0: positive, linear growth.
    return torch.where(x >= 0, x + 1, 1 / (1 - torch.where(x >= 0, torch.zeros_like(x), x)))


def stablemax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-token -log(s(x_y) / sum s(x)), in float64; 0 where labels are ignored.

    Apple's MPS has no float64, so there it is computed in float32 (`loss_dtype`): s grows
    linearly, so float32 holds it for any logit below ~1e7 in size; what changes is the
    rounding of the log-probabilities (relative ~1e-7 instead of ~1e-16), far below the
    loss's own noise (tests/test_optim_losses.py compares the two).
    """
    return _stablemax_ce(logits, labels, loss_dtype(logits.device))


def loss_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


def _stablemax_ce(logits: torch.Tensor, labels: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    s = _stablemax_s(logits.to(dtype))
    logprobs = torch.log(s / s.sum(-1, keepdim=True))
    valid = labels != IGNORE_LABEL
    picked = torch.gather(logprobs, -1, torch.where(valid, labels, 0).long().unsqueeze(-1)).squeeze(-1)
    return torch.where(valid, -picked, torch.zeros_like(picked))


def softmax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    valid = labels != IGNORE_LABEL
    ce = F.cross_entropy(logits.float().flatten(0, -2), torch.where(valid, labels, 0).long().flatten(), reduction="none")
    return torch.where(valid, ce.view(labels.shape), torch.zeros_like(ce.view(labels.shape)))


def act_loss(
    out: dict[str, torch.Tensor], labels: torch.Tensor, loss_type: str = "stablemax"
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Summed (not averaged) batch loss and per-sample diagnostics.

    lm: per sequence, the mean over labelled tokens; q_halt: BCE against "the
    whole sequence is right now"; q_continue: BCE against the bootstrapped target.
    total = lm + 0.5 * (q_halt + q_continue). The caller divides by the global
    batch size before backward, so data-parallel gradients sum correctly.
    """
    logits = out["logits"]
    valid = labels != IGNORE_LABEL
    counts = valid.sum(-1)
    ce_fn = stablemax_cross_entropy if loss_type == "stablemax" else softmax_cross_entropy
    lm = (ce_fn(logits, labels).sum(-1) / counts.clamp_min(1)).sum()
    with torch.no_grad():
        correct = valid & (logits.argmax(-1) == labels)
        seq_correct = correct.sum(-1) == counts
    q_halt = F.binary_cross_entropy_with_logits(out["q_halt"], seq_correct.float(), reduction="sum")
    losses = {"lm": lm, "q_halt": q_halt}
    total = lm + 0.5 * q_halt
    if "target_q_continue" in out:
        q_cont = F.binary_cross_entropy_with_logits(out["q_continue"], out["target_q_continue"], reduction="sum")
        losses["q_continue"] = q_cont
        total = total + 0.5 * q_cont
    stats = {
        "token_correct": correct.sum(-1),
        "token_count": counts,
        "seq_correct": seq_correct,
    }
    return total, {**{f"loss/{k}": v.detach() for k, v in losses.items()}, **stats}
