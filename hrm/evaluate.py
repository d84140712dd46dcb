"""Evaluation: every sample runs all Mmax segments and the last prediction counts.

Metrics (named, never positional):
- exact_accuracy: share of samples whose every labelled token is right;
- token_accuracy: share of labelled tokens that are right;
- q_halt_accuracy: share where "q_halt > 0" agrees with "the answer is right";
- mean_steps: mean segment at which the Q head first chose to halt
  (q_halt > q_continue), Mmax if never: what ACT would spend at inference;
- pass@1 / pass@2: with a single (un-augmented) view each sample has one answer,
  so both equal exact accuracy; voting over augmented views comes with the
  tasks' test-time augmentation.
"""

from __future__ import annotations

import contextlib

import torch
import torch.distributed as dist

from hrm.data.loader import Split, eval_batches
from hrm.model.hrm import HRM
from hrm.model.losses import IGNORE_LABEL


def autocast(device: torch.device, dtype: torch.dtype):
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.no_grad()
def predict(model: HRM, batch: dict[str, torch.Tensor], steps: int | None = None) -> dict[str, torch.Tensor]:
    """Run a fresh carry for `steps` segments (default: eval Mmax); last outputs."""
    was_training = model.training
    model.eval()
    steps = steps or model.cfg.eval_steps
    carry = model.reset_halted(model.initial_carry(batch["inputs"], batch["labels"], batch["puzzle_ids"]))
    halt_step = torch.full_like(carry.steps, steps)
    out: dict[str, torch.Tensor] = {}
    for s in range(1, steps + 1):
        carry, out = model(carry)
        first = (out["q_halt"] > out["q_continue"]) & (halt_step == steps) & (s < steps)
        halt_step = torch.where(first, torch.full_like(halt_step, s), halt_step)
    model.train(was_training)
    return {
        "preds": out["logits"].argmax(-1),
        "q_halt": out["q_halt"],
        "halt_step": halt_step,
    }


def score(preds: torch.Tensor, labels: torch.Tensor, q_halt: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sample sums: correct tokens, labelled tokens, exact, q agreement."""
    valid = labels != IGNORE_LABEL
    correct = (preds == labels) & valid
    exact = correct.sum(-1) == valid.sum(-1)
    return {
        "token_correct": correct.sum(),
        "token_count": valid.sum(),
        "exact": exact.sum(),
        "q_agree": ((q_halt > 0) == exact).sum(),
    }


def evaluate(
    model: HRM,
    split: Split,
    *,
    batch_size: int,
    limit: int = 0,
    device: torch.device = torch.device("cpu"),
    dtype: torch.dtype = torch.float32,
) -> dict[str, float]:
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    totals = torch.zeros(6, dtype=torch.float64, device=device)
    with autocast(device, dtype):
        for _, batch in eval_batches(split, batch_size, limit, rank, world):
            batch = {k: v.to(device) for k, v in batch.items()}
            out = predict(model, batch)
            s = score(out["preds"], batch["labels"], out["q_halt"])
            totals += torch.stack(
                [
                    s["token_correct"].double(),
                    s["token_count"].double(),
                    s["exact"].double(),
                    s["q_agree"].double(),
                    out["halt_step"].double().sum(),
                    torch.tensor(float(len(out["preds"])), dtype=torch.float64, device=device),
                ]
            )
    if world > 1:
        dist.all_reduce(totals)
    tok_c, tok_n, exact, q_agree, steps, count = totals.tolist()
    n = max(count, 1.0)
    exact_acc = exact / n
    return {
        "exact_accuracy": exact_acc,
        "token_accuracy": tok_c / max(tok_n, 1.0),
        "q_halt_accuracy": q_agree / n,
        "mean_steps": steps / n,
        "pass@1": exact_acc,
        "pass@2": exact_acc,
        "eval_samples": count,
    }
