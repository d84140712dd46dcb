"""Optimisers and the learning-rate schedule of HRM.

- `AdamATan2`: Adam with atan2 in place of the epsilon-guarded division, in the
  reference form p <- p*(1 - lr*wd); p -= lr/(1-b1^t) * atan2(m, sqrt(v)/sqrt(1-b2^t)).
  Written here rather than taken from `adam-atan2-pytorch`, whose update scales
  atan2 by a=1.27 and bias-corrects m inside the atan2; its a=b=1 setting still
  differs from this form whenever beta1's bias correction is not 1.
- `SparseSignSGD`: sign-SGD with decoupled weight decay on only the puzzle-table
  rows seen in the batch, gradients summed per unique id (and across workers).
- `build_optimizer`: `optim.optimizer` adam_atan2 (every parameter), or muon (URM's ARC-AGI-2
  recipe): torch's `Muon` on every 2-D parameter, embeddings and heads included (Nesterov
  momentum 0.95, 5 Newton-Schulz steps, lr scaled by 0.2 * sqrt(max(rows, cols)): torch's
  `adjust_lr_fn="match_rms_adamw"`, URM's scaling), AdamW (eps 1e-8) on the rest (biases, the
  depthwise conv's 3-D weight), both at optim.lr and optim.weight_decay; the puzzle table
  keeps sign-SGD either way.
- `lr_at`: linear warm-up from 0, then cosine to lr * min_ratio.
- `EMA`: an exponential moving average of the parameters (`train.ema`), which
  evaluation uses and checkpoints store.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.distributed as dist

from hrm.model.act import PuzzleEmbedding


class AdamATan2(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.95), weight_decay: float = 0.0):
        if lr < 0:
            raise ValueError(f"AdamATan2 lr must be >= 0, got {lr}")
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = torch.enable_grad()(closure)() if closure is not None else None
        for group in self.param_groups:
            lr, (b1, b2), wd = group["lr"], group["betas"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                t = state["step"].item()
                m, v = state["exp_avg"], state["exp_avg_sq"]
                g = p.grad
                p.mul_(1 - lr * wd)
                m.lerp_(g, 1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                step_size = lr / (1 - b1**t)
                denom = v.sqrt() / math.sqrt(1 - b2**t)
                p.add_(torch.atan2(m, denom), alpha=-step_size)
        return loss


class Chained:
    """Several torch optimisers stepped as one (Muon and its AdamW), for the training loop and
    checkpoints: param_groups of all of them, one state dict holding each one's."""

    def __init__(self, *optimizers: torch.optim.Optimizer):
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict]:
        return [g for o in self.optimizers for g in o.param_groups]

    def step(self) -> None:
        for o in self.optimizers:
            o.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"chained": [o.state_dict() for o in self.optimizers]}

    def load_state_dict(self, state: dict) -> None:
        for o, s in zip(self.optimizers, state["chained"], strict=True):
            o.load_state_dict(s)


def build_optimizer(model: torch.nn.Module, o) -> torch.optim.Optimizer | Chained:
    """The optimiser of `model`'s parameters for `o` (an OptimConfig); lr is set per step."""
    if o.optimizer == "adam_atan2":
        return AdamATan2(model.parameters(), lr=0.0, betas=o.betas, weight_decay=o.weight_decay)
    matrices = [p for p in model.parameters() if p.dim() == 2]
    rest = [p for p in model.parameters() if p.dim() != 2]
    muon = torch.optim.Muon(matrices, lr=0.0, weight_decay=o.weight_decay, momentum=0.95, nesterov=True, ns_steps=5,
                            adjust_lr_fn="match_rms_adamw")
    return Chained(muon, torch.optim.AdamW(rest, lr=0.0, betas=o.betas, eps=1e-8, weight_decay=o.weight_decay)) \
        if rest else muon


class SparseSignSGD:
    """Updates the rows of a PuzzleEmbedding table that the last forward used."""

    def __init__(self, emb: PuzzleEmbedding, lr: float, weight_decay: float):
        self.emb, self.lr, self.weight_decay = emb, lr, weight_decay

    @torch.no_grad()
    def step(self) -> None:
        local, ids = self.emb.local, self.emb.local_ids
        if local is None or local.grad is None:
            return
        grad, ids = local.grad, ids
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            grads = [torch.empty_like(grad) for _ in range(dist.get_world_size())]
            all_ids = [torch.empty_like(ids) for _ in range(dist.get_world_size())]
            dist.all_gather(grads, grad.contiguous())
            dist.all_gather(all_ids, ids.contiguous())
            grad, ids = torch.cat(grads), torch.cat(all_ids)
        uniq, inverse = torch.unique(ids, return_inverse=True)
        summed = torch.zeros(len(uniq), grad.shape[-1], dtype=torch.float32, device=grad.device)
        summed.index_add_(0, inverse, grad.float())
        table = self.emb.table
        rows = table[uniq]
        table[uniq] = rows * (1 - self.lr * self.weight_decay) - self.lr * torch.sign(summed)

    def zero_grad(self) -> None:
        self.emb.local = None
        self.emb.local_ids = None


def lr_at(step: int, base: float, warmup: int, total: int, min_ratio: float) -> float:
    """Learning rate for 1-based optimiser step `step` of `total`."""
    if step < warmup:
        return base * step / warmup
    progress = (step - warmup) / max(1, total - warmup)
    progress = min(progress, 1.0)
    return base * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


class EMA:
    """Exponential moving average of a model's parameters (TRM: decay 0.999; removing it cost
    TRM ~7.5 points on Sudoku). Each `update` moves the average by 1 - d with
    d = min(decay, (1 + t) / (10 + t)) at update t: published runs are tens of thousands
    of steps long, where the warm-up is invisible, while a CPU run of a few hundred steps at
    a flat 0.999 would still be mostly its random init. Buffers (the puzzle table, start states) are
    not averaged: they are read live, as TRM does.

    Hand-written rather than `torch.optim.swa_utils.AveragedModel`, which keeps a deep copy
    of the whole module: for ARC that copies the 1.5 GB puzzle table, and its buffers go
    stale unless averaged too."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay, self.updates = decay, 0
        self.params = list(model.parameters())
        self.shadow = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for s, p in zip(self.shadow, self.params):
            s.lerp_(p.detach(), 1 - d)

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """The model holds the averaged weights inside the block, its own ones again after."""
        live = [p.detach().clone() for p in self.params]
        try:
            with torch.no_grad():
                for p, s in zip(self.params, self.shadow):
                    p.copy_(s)
            yield
        finally:
            with torch.no_grad():
                for p, v in zip(self.params, live):
                    p.copy_(v)
