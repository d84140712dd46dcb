"""Hierarchical Reasoning Model with adaptive computation time.

Two recurrent modules share one token embedding: L (fast, low level) and H (slow,
high level). One ACT *segment* runs H_cycles x (L_cycles L-updates, then one
H-update); only the last L- and the last H-update carry gradient (the one-step
gradient approximation), so memory does not grow with depth. The states are
carried across segments, detached. A Q head on the first (puzzle) token predicts
"halt" vs "continue" and is trained by Q-learning on the model's own correctness.

Design choices, all from the published model:
- a puzzle-identifier embedding is prepended as token 0 (zero-init, fp32, kept
  outside the parameters and updated only on the rows in the batch by sign-SGD);
- the states start from fixed random vectors H_init/L_init (not trained);
- token embeddings are scaled by sqrt(hidden); learned positions (an option to
  RoPE) are added to them and the sum scaled by 1/sqrt(2);
- the Q head has a bias initialised to -5 and zero weights, so the model starts
  by never wanting to halt early;
- halting during training: steps >= Mmax, or q_halt > q_continue after a random
  exploration minimum; evaluation always runs every segment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch
from torch import nn

from hrm.config import ModelConfig
from hrm.model.layers import Linear, ReasoningModule, Rotary, trunc_normal_

# Q-head bias at init: sigmoid(-5) ~ 0.007, a confident "not yet correct".
_Q_BIAS_INIT = -5.0


@dataclass
class Carry:
    """Per-slot recurrent state plus the example each slot is working on."""

    z_H: torch.Tensor  # (B, 1 + seq_len, hidden)
    z_L: torch.Tensor  # (B, 1 + seq_len, hidden)
    steps: torch.Tensor  # (B,) int32, segments run on the current example
    halted: torch.Tensor  # (B,) bool, slot finished and waits for a new example
    inputs: torch.Tensor  # (B, seq_len) int64
    labels: torch.Tensor  # (B, seq_len) int64
    puzzle_ids: torch.Tensor  # (B,) int64

    def to_dict(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, torch.Tensor]) -> "Carry":
        return cls(**{f.name: d[f.name] for f in fields(cls)})


class PuzzleEmbedding(nn.Module):
    """Per-puzzle vectors as a dense fp32 table that is not a Parameter.

    The table can have ~1M rows for ARC; a dense optimizer would touch all of them
    each step. Instead, each training forward copies the batch's rows into a small
    leaf tensor whose gradient `SparseSignSGD` applies back to just those rows.
    """

    def __init__(self, num_ids: int, dim: int):
        super().__init__()
        self.register_buffer("table", torch.zeros(num_ids, dim, dtype=torch.float32))
        self.local: torch.Tensor | None = None
        self.local_ids: torch.Tensor | None = None

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = self.table[ids]
        if self.training and torch.is_grad_enabled():
            rows = rows.detach().requires_grad_(True)
            self.local, self.local_ids = rows, ids
        return rows


class HRM(nn.Module):
    def __init__(self, cfg: ModelConfig, *, vocab_size: int, seq_len: int, num_puzzle_ids: int):
        super().__init__()
        self.cfg = cfg
        self.vocab_size, self.seq_len = vocab_size, seq_len
        D = cfg.hidden_size
        self.embed_scale = math.sqrt(D)
        self.embed_tokens = nn.Embedding(vocab_size, D)
        trunc_normal_(self.embed_tokens.weight, std=1.0 / self.embed_scale)
        self.puzzle_emb = PuzzleEmbedding(num_puzzle_ids, D) if cfg.puzzle_emb else None
        total_len = seq_len + 1  # puzzle token first
        if cfg.pos_encoding == "rope":
            self.rotary = Rotary(D // cfg.num_heads, total_len, cfg.rope_theta)
            self.embed_pos = None
        else:
            self.rotary = None
            self.embed_pos = nn.Embedding(total_len, D)
            trunc_normal_(self.embed_pos.weight, std=1.0 / self.embed_scale)
        self.H = ReasoningModule(cfg.H_layers, D, cfg.num_heads, cfg.expansion, cfg.rms_norm_eps)
        self.L = ReasoningModule(cfg.L_layers, D, cfg.num_heads, cfg.expansion, cfg.rms_norm_eps)
        self.lm_head = Linear(D, vocab_size)
        self.q_head = Linear(D, 2, bias=True)
        with torch.no_grad():
            self.q_head.weight.zero_()
            self.q_head.bias.fill_(_Q_BIAS_INIT)
        # Fixed, untrained start states, broadcast to every position.
        self.register_buffer("H_init", trunc_normal_(torch.empty(D), std=1.0))
        self.register_buffer("L_init", trunc_normal_(torch.empty(D), std=1.0))

    # -- input ---------------------------------------------------------------

    def puzzle_rows(self, puzzle_ids: torch.Tensor) -> torch.Tensor | None:
        """The batch's puzzle-table rows (in training, the leaf `SparseSignSGD` reads)."""
        return self.puzzle_emb(puzzle_ids) if self.puzzle_emb is not None else None

    def embed(self, inputs: torch.Tensor, puzzle_ids: torch.Tensor) -> torch.Tensor:
        return self._embed(inputs, self.puzzle_rows(puzzle_ids))

    def _embed(self, inputs: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
        x = self.embed_tokens(inputs)
        if rows is not None:
            first = rows.to(x.dtype)
        else:
            first = x.new_zeros(x.shape[0], x.shape[-1])
        x = torch.cat([first[:, None, :], x], dim=1)
        if self.embed_pos is not None:
            x = (x + self.embed_pos.weight.to(x.dtype)) / math.sqrt(2)
        return self.embed_scale * x

    # -- one segment: the recurrence and its one-step gradient ----------------

    def segment(
        self, z_H: torch.Tensor, z_L: torch.Tensor, inputs: torch.Tensor, puzzle_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One inner forward: returns new (z_H, z_L) detached, token logits, Q logits.

        The puzzle-row lookup makes a fresh leaf tensor (for the sparse optimiser), which
        torch.compile cannot return from a graph without breaking it; so it runs here,
        eagerly, and `recurrence` (what `train.compile` compiles) takes the rows."""
        return self.recurrence(z_H, z_L, inputs, self.puzzle_rows(puzzle_ids))

    def recurrence(
        self, z_H: torch.Tensor, z_L: torch.Tensor, inputs: torch.Tensor, rows: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        rope = self.rotary() if self.rotary is not None else None
        x = self._embed(inputs, rows)
        with torch.no_grad():
            for h in range(cfg.H_cycles):
                for l in range(cfg.L_cycles):
                    if h < cfg.H_cycles - 1 or l < cfg.L_cycles - 1:
                        z_L = self.L(z_L, z_H + x, rope)
                if h < cfg.H_cycles - 1:
                    z_H = self.H(z_H, z_L, rope)
        # One-step gradient: only these two updates are differentiated.
        z_L = self.L(z_L, z_H + x, rope)
        z_H = self.H(z_H, z_L, rope)
        logits = self.lm_head(z_H[:, 1:]).float()
        q = self.q_head(z_H[:, 0]).float()
        return z_H.detach(), z_L.detach(), logits, q

    # -- ACT outer loop -------------------------------------------------------

    def initial_carry(self, inputs: torch.Tensor, labels: torch.Tensor, puzzle_ids: torch.Tensor) -> Carry:
        """A carry whose slots are all halted: the next `reset_halted` starts them."""
        B = inputs.shape[0]
        shape = (B, self.seq_len + 1, self.cfg.hidden_size)
        dev = inputs.device
        return Carry(
            z_H=self.H_init.expand(shape).clone(),
            z_L=self.L_init.expand(shape).clone(),
            steps=torch.zeros(B, dtype=torch.int32, device=dev),
            halted=torch.ones(B, dtype=torch.bool, device=dev),
            inputs=inputs,
            labels=labels,
            puzzle_ids=puzzle_ids,
        )

    def reset_halted(self, carry: Carry, new: dict[str, torch.Tensor] | None = None) -> Carry:
        """Halted slots restart from H_init/L_init at step 0, with `new` examples.

        `new` holds one row per halted slot, in slot order; None keeps the data.
        """
        h = carry.halted
        mask = h[:, None, None]
        out = replace(
            carry,
            z_H=torch.where(mask, self.H_init.to(carry.z_H.dtype), carry.z_H),
            z_L=torch.where(mask, self.L_init.to(carry.z_L.dtype), carry.z_L),
            steps=torch.where(h, torch.zeros_like(carry.steps), carry.steps),
            halted=torch.zeros_like(h),
        )
        if new is not None:
            out.inputs, out.labels, out.puzzle_ids = carry.inputs.clone(), carry.labels.clone(), carry.puzzle_ids.clone()
            out.inputs[h], out.labels[h], out.puzzle_ids[h] = new["inputs"], new["labels"], new["puzzle_ids"]
        return out

    def forward(self, carry: Carry) -> tuple[Carry, dict[str, torch.Tensor]]:
        """One ACT segment on every slot (call `reset_halted` first)."""
        cfg = self.cfg
        z_H, z_L, logits, q = self.segment(carry.z_H, carry.z_L, carry.inputs, carry.puzzle_ids)
        q_halt, q_continue = q[:, 0], q[:, 1]
        steps = carry.steps + 1
        out = {"logits": logits, "q_halt": q_halt, "q_continue": q_continue}
        with torch.no_grad():
            max_steps = cfg.halt_max_steps if self.training else cfg.eval_steps
            is_last = steps >= max_steps
            halted = is_last
            if self.training and cfg.halt_max_steps > 1:
                halted = halted | (q_halt > q_continue)
                # Exploration: some slots must run a random minimum of 2..Mmax steps.
                explore = torch.rand(q_halt.shape, device=q.device) < cfg.halt_exploration_prob
                min_steps = explore * torch.randint(2, cfg.halt_max_steps + 1, steps.shape, device=q.device)
                halted = halted & (steps >= min_steps)
                # Q-learning target from one more (no-grad) segment on the new state.
                _, _, _, q_next = self.segment(z_H, z_L, carry.inputs, carry.puzzle_ids)
                q_next_halt, q_next_continue = q_next[:, 0], q_next[:, 1]
                out["target_q_continue"] = torch.sigmoid(
                    torch.where(is_last, q_next_halt, torch.maximum(q_next_halt, q_next_continue))
                )
        new = replace(carry, z_H=z_H, z_L=z_L, steps=steps, halted=halted)
        return new, out


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (the puzzle table is a buffer and is not counted)."""
    return sum(p.numel() for p in model.parameters())


def flops_per_segment(cfg: ModelConfig, seq_len: int, vocab_size: int, training: bool = True) -> int:
    """Model FLOPs of one training segment for one sample (matmuls and attention).

    Counts, per module call: 2*params_matmul*tokens plus 4*S^2*D for attention
    scores and values. A training segment is H_cycles*L_cycles L-calls and H_cycles
    H-calls forward, backward (2x forward) of the final L and H call, and the
    Q-target forward of one more full segment.
    """
    D, S = cfg.hidden_size, seq_len + 1
    from hrm.model.layers import swiglu_width

    per_layer = 2 * S * (3 * D * D + D * D + 3 * D * swiglu_width(D, cfg.expansion)) + 4 * S * S * D
    L_call, H_call = cfg.L_layers * per_layer, cfg.H_layers * per_layer
    head = 2 * S * D * vocab_size
    fwd = cfg.H_cycles * (cfg.L_cycles * L_call + H_call) + head
    if not training:
        return fwd
    bwd = 2 * (L_call + H_call + head)
    q_target = fwd if cfg.halt_max_steps > 1 else 0
    return fwd + bwd + q_target
