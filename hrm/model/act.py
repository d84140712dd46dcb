"""What every family member shares: inputs, heads, the ACT carry and the outer loop.

A family member (HRM, TRM, the plain transformer) is a `Recurrent` that defines one
thing, its `recurrence`: how one ACT *segment* turns the carried states (z_H, z_L)
and the embedded input into new states. Everything else lives here once:

- inputs: token embeddings scaled by sqrt(hidden); a puzzle-identifier embedding
  prepended as position 0 (zero-init, fp32, outside the parameters, updated only on the
  rows in the batch by sign-SGD), then zeros up to the family's prefix length (TRM: 16);
  RoPE tables or learned positions (added, the sum scaled by 1/sqrt(2));
- heads: `lm_head` on every token after the prefix; `q_head` (two outputs, as published
  in every family) on position 0, bias -5 and zero weights so the model starts by never
  wanting to halt. HRM and the transformer use both (halt, continue: Q-learning with a
  bootstrapped continue target from one more no-grad segment); TRM uses the halt output
  only, trained against exact correctness, and halts when it is positive;
- start states H_init/L_init: fixed random vectors (not trained);
- the outer loop (`forward`): one segment on every slot; in training a slot halts at
  Mmax or when its Q head says so after a random exploration minimum (`model.act:
  false` keeps every slot to Mmax); evaluation always runs every segment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch
from torch import nn

from hrm.config import ModelConfig
from hrm.model.layers import Linear, Rotary, trunc_normal_

# Q-head bias at init: sigmoid(-5) ~ 0.007, a confident "not yet correct".
_Q_BIAS_INIT = -5.0


@dataclass
class Carry:
    """Per-slot recurrent state plus the example each slot is working on."""

    z_H: torch.Tensor  # (B, 1 + seq_len, hidden); TRM's answer state y
    z_L: torch.Tensor  # (B, 1 + seq_len, hidden); TRM's latent z (the transformer carries it unused)
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


class Recurrent(nn.Module):
    """A recurrent reasoner in HRM's ACT outer loop. A subclass builds its core after
    `super().__init__` (the embeddings), then calls `add_heads()`, so seeded weights are
    drawn in one fixed order, and defines `recurrence`."""

    continue_head = True  # the continue output is used, with its bootstrapped target (TRM: not)

    def __init__(self, cfg: ModelConfig, *, vocab_size: int, seq_len: int, num_puzzle_ids: int):
        super().__init__()
        self.cfg = cfg
        self.vocab_size, self.seq_len = vocab_size, seq_len
        D = cfg.hidden_size
        self.embed_scale = math.sqrt(D)
        self.embed_tokens = nn.Embedding(vocab_size, D)
        trunc_normal_(self.embed_tokens.weight, std=1.0 / self.embed_scale)
        self.puzzle_emb = PuzzleEmbedding(num_puzzle_ids, D) if cfg.puzzle_emb else None
        self.prefix = cfg.prefix_len  # the puzzle embedding's positions, before the tokens
        total_len = seq_len + self.prefix
        if cfg.pos_encoding == "rope" and cfg.mixer == "attention":
            self.rotary = Rotary(D // cfg.num_heads, total_len, cfg.rope_theta)
            self.embed_pos = None
        else:
            self.rotary = None
            self.embed_pos = nn.Embedding(total_len, D) if cfg.pos_encoding == "learned" else None
            if self.embed_pos is not None:
                trunc_normal_(self.embed_pos.weight, std=1.0 / self.embed_scale)

    def module_args(self, num_layers: int) -> tuple:
        """`ReasoningModule` arguments for a stack of `num_layers` blocks of this config."""
        c = self.cfg
        return num_layers, c.hidden_size, c.num_heads, c.expansion, c.rms_norm_eps, c.mixer, self.seq_len + self.prefix

    def add_heads(self) -> None:
        D = self.cfg.hidden_size
        self.lm_head = Linear(D, self.vocab_size)
        # Two outputs (halt, continue) in every family, as published; a family without a
        # continue target (TRM) reads only the first.
        self.q_head = Linear(D, 2, bias=True)
        with torch.no_grad():
            self.q_head.weight.zero_()
            self.q_head.bias.fill_(_Q_BIAS_INIT)
        # Fixed, untrained start states, broadcast to every position.
        self.register_buffer("H_init", trunc_normal_(torch.empty(D), std=1.0))
        self.register_buffer("L_init", trunc_normal_(torch.empty(D), std=1.0))

    # -- input and output ------------------------------------------------------

    def puzzle_rows(self, puzzle_ids: torch.Tensor) -> torch.Tensor | None:
        """The batch's puzzle-table rows (in training, the leaf `SparseSignSGD` reads)."""
        return self.puzzle_emb(puzzle_ids) if self.puzzle_emb is not None else None

    def embed(self, inputs: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
        x = self.embed_tokens(inputs)
        first = rows.to(x.dtype) if rows is not None else x.new_zeros(x.shape[0], x.shape[-1])
        x = torch.cat([first[:, None, :], x.new_zeros(x.shape[0], self.prefix - 1, x.shape[-1]), x], dim=1)
        if self.embed_pos is not None:
            x = (x + self.embed_pos.weight.to(x.dtype)) / math.sqrt(2)
        return self.embed_scale * x

    def rope(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        return self.rotary() if self.rotary is not None else None

    def outputs(self, z_H: torch.Tensor, z_L: torch.Tensor):
        """New carry states (detached: no gradient crosses a segment), token logits and Q logits."""
        logits = self.lm_head(z_H[:, self.prefix:]).float()
        q = self.q_head(z_H[:, 0]).float()
        return z_H.detach(), z_L.detach(), logits, q

    # -- one segment -----------------------------------------------------------

    def segment(
        self, z_H: torch.Tensor, z_L: torch.Tensor, inputs: torch.Tensor, puzzle_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One inner forward: returns new (z_H, z_L) detached, token logits, Q logits.

        The puzzle-row lookup makes a fresh leaf tensor (for the sparse optimiser), which
        torch.compile cannot return from a graph without breaking it; so it runs here,
        eagerly, and `recurrence` (what `train.compile` compiles) takes the rows."""
        return self.recurrence(z_H, z_L, inputs, self.puzzle_rows(puzzle_ids))

    def recurrence(self, z_H: torch.Tensor, z_L: torch.Tensor, inputs: torch.Tensor, rows: torch.Tensor | None):
        raise NotImplementedError

    # -- ACT outer loop ----------------------------------------------------------

    def initial_carry(self, inputs: torch.Tensor, labels: torch.Tensor, puzzle_ids: torch.Tensor) -> Carry:
        """A carry whose slots are all halted: the next `reset_halted` starts them."""
        B = inputs.shape[0]
        shape = (B, self.seq_len + self.prefix, self.cfg.hidden_size)
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

    def wants_halt(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        """Where the Q head says halt: q_halt > q_continue (HRM's two outputs), else q_halt > 0."""
        return out["q_halt"] > out["q_continue"] if self.continue_head else out["q_halt"] > 0

    def forward(self, carry: Carry) -> tuple[Carry, dict[str, torch.Tensor]]:
        """One ACT segment on every slot (call `reset_halted` first)."""
        cfg = self.cfg
        z_H, z_L, logits, q = self.segment(carry.z_H, carry.z_L, carry.inputs, carry.puzzle_ids)
        steps = carry.steps + 1
        out = {"logits": logits, "q_halt": q[:, 0]}
        if self.continue_head:
            out["q_continue"] = q[:, 1]
        with torch.no_grad():
            max_steps = cfg.halt_max_steps if self.training else cfg.eval_steps
            is_last = steps >= max_steps
            halted = is_last
            if self.training and cfg.halt_max_steps > 1 and cfg.act:
                halted = halted | self.wants_halt(out)
                # Exploration: some slots must run a random minimum of 2..Mmax steps.
                explore = torch.rand(steps.shape, device=q.device) < cfg.halt_exploration_prob
                min_steps = explore * torch.randint(2, cfg.halt_max_steps + 1, steps.shape, device=q.device)
                halted = halted & (steps >= min_steps)
                if self.continue_head:
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
