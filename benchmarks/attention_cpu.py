"""Attention on the CPU: PyTorch's SDPA against the explicit softmax(q k^T / sqrt(d)) v that
hrm.model.layers.attention uses for short sequences, forward and forward+backward, at the
shapes of our configs. It is where `_CPU_EXPLICIT_MAX_SEQ` comes from.

    python benchmarks/attention_cpu.py                 # the default shapes, torch's threads
    python benchmarks/attention_cpu.py --threads 1
    python benchmarks/attention_cpu.py --dtype bfloat16      # under CPU autocast, as training runs it

Each row: (batch, heads, sequence, head dim), milliseconds per call (median of --reps
timings of 5 calls after 3 warm-up calls) for SDPA and for the explicit form, and their ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from hrm.runtime import autocast
from hrm.runtime import cpu_has_bf16

# (batch, heads, tokens, head dim): the quickstart (6x6 Sudoku + puzzle token), the reference
# Sudoku size (81 + 1), the threshold's neighbours, and ARC's 30x30 + 1.
SHAPES = [(64, 4, 37, 32), (16, 8, 82, 64), (16, 8, 128, 64), (16, 8, 256, 64), (4, 8, 901, 64)]


def explicit(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.matmul((torch.matmul(q, k.transpose(-1, -2)) * q.shape[-1] ** -0.5).softmax(-1), v)


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v)


def per_call_ms(fn, reps: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(5):
            fn()
        times.append((time.perf_counter() - start) / 5 * 1e3)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    args = p.parse_args()
    if args.threads is not None:
        if args.threads < 1:
            p.exit(2, f"attention_cpu.py: --threads must be >= 1, got {args.threads}\n")
        torch.set_num_threads(args.threads)
    if args.dtype == "bfloat16" and not cpu_has_bf16():
        p.exit(2, "attention_cpu.py: --dtype bfloat16: this CPU has no bf16 matmul support (use float32)\n")
    dtype = getattr(torch, args.dtype)
    for shape in SHAPES:
        g = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(shape, generator=g, requires_grad=True) for _ in range(3))
        upstream = torch.randn(shape, generator=g)
        row = {"shape": list(shape), "threads": torch.get_num_threads(), "dtype": args.dtype}
        for name, fn in (("sdpa", sdpa), ("explicit", explicit)):
            with autocast(torch.device("cpu"), dtype):
                with torch.no_grad():
                    row[f"{name}_forward_ms"] = per_call_ms(lambda fn=fn: fn(q, k, v), args.reps)
                row[f"{name}_train_ms"] = per_call_ms(lambda fn=fn: fn(q, k, v).float().backward(upstream), args.reps)
        row["forward_speedup"] = row["sdpa_forward_ms"] / row["explicit_forward_ms"]
        row["train_speedup"] = row["sdpa_train_ms"] / row["explicit_train_ms"]
        print(json.dumps(row))


if __name__ == "__main__":
    main()
