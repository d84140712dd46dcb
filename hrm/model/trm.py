"""Tiny Recursive Model (TRM): one small network that recurses on an answer and a latent.

The carry holds the answer state y (in `z_H`) and the latent z (in `z_L`). One
*recursion* updates the latent n times from (x, y, z), `z <- net(z + y + x)`, then the
answer once from (y, z), `y <- net(y + z)`: HRM's nested recurrence with T = H_cycles
recursions of n = L_cycles latent updates, and one network of `L_layers` blocks in
both roles. T-1 recursions run without gradient; the last is backpropagated through
all its n+1 calls (`model.gradient: one_step` keeps only the last two, as HRM does).

Halting: the Q head's first (halt) output only, trained by BCE against exact correctness; a
slot halts when it is positive (the second output is kept, as published, but unused: no
continue target, no extra Q-target segment). The puzzle embedding fills the first of 16
prefix positions (`model.puzzle_positions`), the Q head reads it. Published: L_layers 2,
T 3, n 6, EMA of the weights (`train.ema`), and `mixer: mlp` (over the 97 positions) for
Sudoku: 5,028,866 parameters, 6,828,034 with attention.
"""

from __future__ import annotations

from hrm.config import ModelConfig
from hrm.model.act import Recurrent
from hrm.model.hrm import nested_recurrence
from hrm.model.layers import ReasoningModule


class TRM(Recurrent):
    continue_head = False

    def __init__(self, cfg: ModelConfig, *, vocab_size: int, seq_len: int, num_puzzle_ids: int):
        super().__init__(cfg, vocab_size=vocab_size, seq_len=seq_len, num_puzzle_ids=num_puzzle_ids)
        self.net = ReasoningModule(*self.module_args(cfg.L_layers))
        self.add_heads()

    @staticmethod
    def layer_calls(cfg: ModelConfig) -> tuple[int, int]:
        """(blocks applied in one segment, of them differentiated)."""
        grad_low = cfg.L_cycles if cfg.gradient_mode == "last_recursion" else 1
        return cfg.H_cycles * (cfg.L_cycles + 1) * cfg.L_layers, (grad_low + 1) * cfg.L_layers

    # -- one segment: T recursions, gradient through the last ----------------

    def recurrence(self, z_H, z_L, inputs, rows):
        cfg = self.cfg
        x = self.embed(inputs, rows)
        grad_low = cfg.L_cycles if cfg.gradient_mode == "last_recursion" else 1
        y, z = nested_recurrence(self.net, self.net, z_H, z_L, x, self.rope(), cfg.H_cycles, cfg.L_cycles, grad_low)
        return self.outputs(y, z)
