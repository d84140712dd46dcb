"""Transformer pieces shared by the HRM family, leaf to root.

Design choices (all from the published HRM):
- linear layers have no bias and a truncated-LeCun init (std 1/sqrt(fan_in));
- RMSNorm has no learnable weight and is computed in float32;
- blocks are post-norm: h = norm(h + attn(h)); h = norm(h + mlp(h));
- attention is non-causal, with a fused QKV projection, through PyTorch SDPA
  (flash / memory-efficient kernels on GPU), except for short sequences on the CPU
  (`attention` says why);
- the MLP is SwiGLU with a fused gate/up projection, inner width
  round(expansion * hidden * 2/3) rounded up to a multiple of 256;
- `mixer: mlp` (TRM's option for fixed-size grids) mixes tokens with a SwiGLU over the
  sequence axis instead of attention, its post-norm residual taken in the transposed
  layout (normalised over the positions, as TRM does); positions are then in its weights,
  so RoPE is not applied.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# Standard deviation of a unit normal truncated to [-2, 2]; dividing by it makes
# the truncated sample's real std equal the requested one.
_TRUNC2_STD = math.sqrt(
    1.0 - 2 * 2 * math.exp(-2.0) / math.sqrt(2 * math.pi) / math.erf(2 / math.sqrt(2))
)


def trunc_normal_(tensor: torch.Tensor, std: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """In place: normal cut at +-2 sigma, rescaled so its std is exactly `std`."""
    with torch.no_grad():
        nn.init.trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0, generator=generator)
        tensor.mul_(std / _TRUNC2_STD)
    return tensor


def rms_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    dtype = x.dtype
    x = x.float()
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return x.to(dtype)


class Linear(nn.Linear):
    """Bias-free (by default) linear layer with truncated-LeCun init."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False):
        super().__init__(in_features, out_features, bias=bias)

    def reset_parameters(self) -> None:
        trunc_normal_(self.weight, std=1.0 / math.sqrt(self.in_features))
        if self.bias is not None:
            nn.init.zeros_(self.bias)


class Rotary(nn.Module):
    """RoPE tables (rotate-half convention) for a fixed sequence length."""

    def __init__(self, head_dim: int, seq_len: int, theta: float):
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        freqs = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)
        angles = torch.cat([freqs, freqs], dim=-1)
        # Not saved: recomputed from the config, so checkpoints stay small.
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cos, self.sin


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # x: (..., S, head_dim); tables: (S, head_dim)
    return (x * cos.to(x.dtype)) + (_rotate_half(x) * sin.to(x.dtype))


# Longest sequence for which the CPU runs attention as two matmuls and a softmax instead of
# SDPA's CPU kernel, whose bf16 backward is slow on short sequences (why and the measurements:
# docs/decisions/cpu-attention.md, `python benchmarks/attention_cpu.py`).
_CPU_EXPLICIT_MAX_SEQ = 128


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Non-causal softmax(q k^T / sqrt(head_dim)) v over (B, heads, S, head_dim)."""
    if q.device.type == "cpu" and q.shape[-2] <= _CPU_EXPLICIT_MAX_SEQ:
        # Softmax in float32 (CPU autocast would run it in bf16, as SDPA's kernels never do):
        # bf16 probabilities cost the quickstart much accuracy (docs/decisions/cpu-attention.md).
        scores = torch.matmul(q, k.transpose(-1, -2))
        scores = scores.to(torch.promote_types(scores.dtype, torch.float32)) * q.shape[-1] ** -0.5
        return torch.matmul(scores.softmax(-1).to(v.dtype), v)
    return F.scaled_dot_product_attention(q, k, v, is_causal=False)


class Attention(nn.Module):
    def __init__(self, hidden: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden // num_heads
        self.qkv = Linear(hidden, 3 * hidden)
        self.out = Linear(hidden, hidden)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        B, S, D = x.shape
        qkv = self.qkv(x).view(B, S, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        qk, v = qkv[:2], qkv[2]
        if rope is not None:
            qk = apply_rope(qk, *rope)  # q and k in one pass: half the small elementwise calls
        y = attention(qk[0], qk[1], v)
        return self.out(y.transpose(1, 2).reshape(B, S, D))


def swiglu_width(hidden: int, expansion: float) -> int:
    # 256-multiples keep GPU matmuls on fast tile sizes (reference: 1536 for 512).
    width = round(expansion * hidden * 2 / 3)
    return -(-width // 256) * 256


class SwiGLU(nn.Module):
    def __init__(self, hidden: int, expansion: float):
        super().__init__()
        inner = swiglu_width(hidden, expansion)
        self.gate_up = Linear(hidden, 2 * inner)
        self.down = Linear(inner, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class TokenMixer(nn.Module):
    """SwiGLU across the sequence axis (one weight per position pair): TRM's `mixer: mlp`. As in
    TRM, its residual is normalised in the transposed layout, over the positions, not the channels."""

    def __init__(self, seq_len: int, expansion: float):
        super().__init__()
        self.mlp = SwiGLU(seq_len, expansion)

    def residual(self, h: torch.Tensor, eps: float) -> torch.Tensor:
        t = h.transpose(1, 2)  # (B, D, S): each channel's sequence is a row
        return rms_norm(t + self.mlp(t), eps).transpose(1, 2)


class ConvSwiGLU(nn.Module):
    """URM's channel MLP: SwiGLU with a depthwise causal convolution (kernel 2, with bias) along
    the positions after the gated product, then SiLU: down(silu(conv(silu(gate) * up))), where
    conv(h)[t] = w0 * h[t-1] + w1 * h[t] + b (h[-1] = 0)."""

    def __init__(self, hidden: int, expansion: float):
        super().__init__()
        inner = swiglu_width(hidden, expansion)
        self.gate_up = Linear(hidden, 2 * inner)
        self.conv = nn.Conv1d(inner, inner, kernel_size=2, padding=1, groups=inner, bias=True)
        self.down = Linear(inner, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        h = self.conv((F.silu(gate) * up).transpose(1, 2))[..., : x.shape[1]]  # the first S outputs: causal
        return self.down(F.silu(h).transpose(1, 2))


class Block(nn.Module):
    def __init__(self, hidden: int, num_heads: int, expansion: float, eps: float, mixer: str = "attention",
                 seq_len: int | None = None, mlp: str = "swiglu"):
        super().__init__()
        # `attn` for both mixers keeps the state-dict names of attention models unchanged
        self.attn = Attention(hidden, num_heads) if mixer == "attention" else TokenMixer(seq_len, expansion)
        self.mlp = ConvSwiGLU(hidden, expansion) if mlp == "conv_swiglu" else SwiGLU(hidden, expansion)
        self.eps = eps

    def forward(self, h: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        if isinstance(self.attn, TokenMixer):
            h = self.attn.residual(h, self.eps)
        else:
            h = rms_norm(h + self.attn(h, rope), self.eps)
        return rms_norm(h + self.mlp(h), self.eps)


class ReasoningModule(nn.Module):
    """A stack of blocks applied to (state + injection): one H or L update (TRM: its one network)."""

    def __init__(self, num_layers: int, hidden: int, num_heads: int, expansion: float, eps: float,
                 mixer: str = "attention", seq_len: int | None = None, mlp: str = "swiglu"):
        super().__init__()
        self.layers = nn.ModuleList(Block(hidden, num_heads, expansion, eps, mixer, seq_len, mlp)
                                    for _ in range(num_layers))

    def forward(
        self, state: torch.Tensor, injection: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None
    ) -> torch.Tensor:
        h = state + injection
        for layer in self.layers:
            h = layer(h, rope)
        return h
