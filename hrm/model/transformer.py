"""The plain-transformer baseline: one stack of H_layers + L_layers blocks (so exactly
HRM's parameters), applied once per segment inside the same ACT outer loop, with the
input injected every segment: `z <- stack(z + x)`. The whole call is differentiated
(it is one step); the carry's z_L is kept and unused. Published finding: on ARC a
parameter-matched transformer in HRM's outer loop is within about 5 points of HRM.
"""

from __future__ import annotations

from hrm.config import ModelConfig
from hrm.model.act import Recurrent
from hrm.model.layers import ReasoningModule


class Transformer(Recurrent):
    def __init__(self, cfg: ModelConfig, *, vocab_size: int, seq_len: int, num_puzzle_ids: int):
        super().__init__(cfg, vocab_size=vocab_size, seq_len=seq_len, num_puzzle_ids=num_puzzle_ids)
        self.stack = ReasoningModule(*self.module_args(cfg.H_layers + cfg.L_layers))
        self.add_heads()

    @staticmethod
    def layer_calls(cfg: ModelConfig) -> tuple[int, int]:
        """(blocks applied in one segment, of them differentiated)."""
        return cfg.H_layers + cfg.L_layers, cfg.H_layers + cfg.L_layers

    def recurrence(self, z_H, z_L, inputs, rows):
        x = self.embed(inputs, rows)
        return self.outputs(self.stack(z_H, x, self.rope()), z_L)
