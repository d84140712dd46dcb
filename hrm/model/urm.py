"""Universal Reasoning Model (URM): one shared stack of blocks looped over a single state.

One *loop* adds the embedded input to the state and runs the whole stack,
`h <- net(h + x)`; a segment runs H_cycles x L_cycles loops, the first
(H_cycles - 1) x L_cycles without gradient and the last L_cycles with it (truncated
backpropagation through loops; `model.gradient: one_step` keeps only the last loop). The
blocks are attention plus ConvSwiGLU (`hrm.model.layers.ConvSwiGLU`), post-norm, with RoPE.
The state lives in the carry's `z_H` and starts from `H_init` (URM's `init_hidden`); `z_L`
is carried unused and its start vector is not saved. Halting as TRM's: the Q head's first
output, trained by BCE against exact correctness, halts when positive. Published: 4 blocks of
width 512, H_cycles 2, L_cycles 6, Mmax (URM's `loops`) 16, EMA 0.999: 13,662,210 parameters
on Sudoku, 13,663,234 on ARC.
"""

from __future__ import annotations

import torch

from hrm.config import ModelConfig
from hrm.model.act import Recurrent
from hrm.model.layers import ReasoningModule


class URM(Recurrent):
    continue_head = False

    def __init__(self, cfg: ModelConfig, *, vocab_size: int, seq_len: int, num_puzzle_ids: int):
        super().__init__(cfg, vocab_size=vocab_size, seq_len=seq_len, num_puzzle_ids=num_puzzle_ids)
        self.net = ReasoningModule(*self.module_args(cfg.L_layers), mlp="conv_swiglu")
        self.add_heads()
        self.register_buffer("L_init", self.L_init, persistent=False)  # one state: z_L's start is not URM's

    @staticmethod
    def layer_calls(cfg: ModelConfig) -> tuple[int, int]:
        """(blocks applied in one segment, of them differentiated)."""
        grad = cfg.L_cycles if cfg.gradient_mode == "last_recursion" else 1
        return cfg.H_cycles * cfg.L_cycles * cfg.L_layers, grad * cfg.L_layers

    def recurrence(self, z_H, z_L, inputs, rows):
        cfg = self.cfg
        x, rope = self.embed(inputs, rows), self.rope()
        loops = cfg.H_cycles * cfg.L_cycles
        grad_loops = cfg.L_cycles if cfg.gradient_mode == "last_recursion" else 1
        grad, h = torch.is_grad_enabled(), z_H
        for i in range(loops):
            with torch.set_grad_enabled(grad and i >= loops - grad_loops):
                h = self.net(h, x, rope)
        return self.outputs(h, z_L)
