"""Hierarchical Reasoning Model: two recurrent modules, H (slow) and L (fast).

One ACT *segment* runs H_cycles x (L_cycles L-updates, then one H-update):
`z_L <- L(z_L + z_H + x)`, `z_H <- H(z_H + z_L)`. With the published one-step gradient
only the last L- and the last H-update carry gradient, so memory does not grow with
depth; `model.gradient: last_recursion` differentiates the whole last H cycle instead
(its L_cycles L-updates and its H-update). Embeddings, heads, the carry and the ACT
outer loop are every family's (`hrm.model.act`); TRM runs this same recurrence with
one network in both roles (`hrm.model.trm`).
"""

from __future__ import annotations

import torch

from hrm.config import ModelConfig
from hrm.model.act import Recurrent
from hrm.model.layers import ReasoningModule


def nested_recurrence(low, high, z_H, z_L, x, rope, H_cycles: int, L_cycles: int, grad_low: int):
    """H_cycles x (L_cycles updates `z_L <- low(z_L, z_H + x)`, then `z_H <- high(z_H, z_L)`).

    Only the last `grad_low` low updates and the last high update are differentiated
    (when grad is enabled at all); every earlier update runs under no_grad."""
    grad = torch.is_grad_enabled()
    total, done = H_cycles * L_cycles, 0
    for h in range(H_cycles):
        for _ in range(L_cycles):
            done += 1
            with torch.set_grad_enabled(grad and done > total - grad_low):
                z_L = low(z_L, z_H + x, rope)
        with torch.set_grad_enabled(grad and h == H_cycles - 1):
            z_H = high(z_H, z_L, rope)
    return z_H, z_L


class HRM(Recurrent):
    def __init__(self, cfg: ModelConfig, *, vocab_size: int, seq_len: int, num_puzzle_ids: int):
        super().__init__(cfg, vocab_size=vocab_size, seq_len=seq_len, num_puzzle_ids=num_puzzle_ids)
        self.H = ReasoningModule(*self.module_args(cfg.H_layers))
        self.L = ReasoningModule(*self.module_args(cfg.L_layers))
        self.add_heads()

    @staticmethod
    def layer_calls(cfg: ModelConfig) -> tuple[int, int]:
        """(blocks applied in one segment, of them differentiated)."""
        grad_low = cfg.L_cycles if cfg.gradient_mode == "last_recursion" else 1
        return cfg.H_cycles * (cfg.L_cycles * cfg.L_layers + cfg.H_layers), grad_low * cfg.L_layers + cfg.H_layers

    # -- one segment: the recurrence and its one-step gradient ----------------

    def recurrence(self, z_H, z_L, inputs, rows):
        cfg = self.cfg
        x = self.embed(inputs, rows)
        # One-step gradient: only the last L and H updates are differentiated (last_recursion:
        # the whole last H cycle); the states come in detached, so nothing reaches past segments.
        grad_low = cfg.L_cycles if cfg.gradient_mode == "last_recursion" else 1
        z_H, z_L = nested_recurrence(self.L, self.H, z_H, z_L, x, self.rope(), cfg.H_cycles, cfg.L_cycles, grad_low)
        return self.outputs(z_H, z_L)
