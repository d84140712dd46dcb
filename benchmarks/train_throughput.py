"""Training throughput of HRM: segments/s, samples/s, model FLOP/s, and the share of
the matmul roofline measured in the same run (and MFU on CUDA).

Times full training segments (forward of every cycle, one-step backward, Q-target
forward, optimiser steps) on random Sudoku-shaped tokens, after warm-up steps.

Roofline: the matmul throughput this machine reaches on the model's own shapes, in
the run's dtype, timed right after the model (same threads, same process). Shapes,
with T = batch x (seq_len + 1) tokens, D hidden, W the SwiGLU width, V the vocabulary:
forward (T,D)x(D,3D) qkv, (T,D)x(D,D) out, (T,D)x(D,2W) gate_up, (T,W)x(W,D) down,
(T,D)x(D,V) head, and the attention's batched (S,hd)x(hd,S) and (S,S)x(S,hd) per head;
backward the two matmuls of each weight (input gradient and weight gradient). The
roofline is their FLOP-weighted rate, forward and backward mixed as a segment mixes
them (`flops_per_segment`), so `roofline_ratio` = model FLOP/s / roofline says how
much of the machine the loop's overheads (norms, RoPE, softmax, optimiser, Python)
leave to the matmuls.

    python benchmarks/train_throughput.py                       # reference size, batch 16
    python benchmarks/train_throughput.py --set model.hidden_size=128 --batch 64
    python benchmarks/train_throughput.py --config quickstart --batch 64 --threads 1   # one core
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from hrm.compiled import compile_blocks
from hrm.config import load_config
from hrm.dataset import task_spec
from hrm.runtime import autocast
from hrm.model import act_loss, build_model, flops_per_segment, segment_flops
from hrm.optim import AdamATan2, SparseSignSGD
from hrm.runtime import cpu_has_bf16

# Dense bf16 peak of common accelerators, for MFU (FLOP/s).
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "RTX 4090": 165e12}


def _timed(fn, warmup: int, reps: int, device: torch.device) -> float:
    """Seconds for `reps` calls of `fn` after `warmup` untimed ones (CUDA synchronised)."""
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def _rate(shapes: list[tuple[int, int, int, int]], dtype: torch.dtype, device: torch.device, reps: int) -> float:
    """FLOP/s of running every (batch, m, k, n) matmul once, `reps` times, after warm-up: the
    best of 3 such rounds (a roofline is what the machine reaches, not a noisy sample of it)."""
    pairs = [(torch.randn(b, m, k, dtype=dtype, device=device), torch.randn(b, k, n, dtype=dtype, device=device))
             for b, m, k, n in shapes]
    flops = sum(2 * b * m * k * n for b, m, k, n in shapes)

    def once():
        for a, w in pairs:
            torch.bmm(a, w) if a.shape[0] > 1 else torch.mm(a[0], w[0])

    with torch.no_grad():
        seconds = min(_timed(once, 2 if r == 0 else 0, reps, device) for r in range(3))
    return flops * reps / seconds


def roofline(cfg, batch: int, seq_len: int, vocab: int, dtype: torch.dtype, device: torch.device,
             reps: int = 5) -> dict:
    """Matmul FLOP/s on the model's own shapes (module docstring)."""
    from hrm.model.layers import swiglu_width

    D, S, W, h = cfg.hidden_size, seq_len + 1, swiglu_width(cfg.hidden_size, cfg.expansion), cfg.num_heads
    T, hd = batch * S, cfg.hidden_size // cfg.num_heads
    weights = [(D, 3 * D), (D, D), (D, 2 * W), (W, D), (D, vocab)]
    attention = [(batch * h, S, hd, S), (batch * h, S, S, hd)]
    forward = [(1, T, k, n) for k, n in weights] + attention
    backward = [(1, T, n, k) for k, n in weights] + [(1, k, T, n) for k, n in weights] + attention * 2
    fwd, bwd = _rate(forward, dtype, device, reps), _rate(backward, dtype, device, reps)
    parts = segment_flops(cfg, seq_len, vocab)
    total, backward_flops = sum(parts.values()), parts["backward"]
    mix = total / ((total - backward_flops) / fwd + backward_flops / bwd)
    return {"shapes": f"T={T} D={D} W={W} V={vocab} heads={h} S={S}", "forward_gflops": fwd / 1e9,
            "backward_gflops": bwd / 1e9, "gflops": mix / 1e9}


def check_device(device: torch.device, dtype: torch.dtype) -> str | None:
    """Why this machine cannot run `device`/`dtype` (one line), or None."""
    if device.type == "cuda" and not torch.cuda.is_available():
        return "--device cuda: this machine has no CUDA device (use --device cpu)"
    if device.type == "cpu" and dtype == torch.bfloat16 and not cpu_has_bf16():
        return "--dtype bfloat16: this CPU has no bf16 matmul support (use float32)"
    return None


def top_ops(step, steps: int, top: int = 12) -> list[dict]:
    """`torch.profiler` over `steps` calls of `step`: the ops (and compiled graphs) with the
    largest share of the self time, largest first."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    rows = prof.key_averages()
    total = sum(r.self_cpu_time_total for r in rows)
    rows = sorted(rows, key=lambda r: r.self_cpu_time_total, reverse=True)[:top]
    return [{"op": r.key[:60], "self_share": round(r.self_cpu_time_total / total, 4)} for r in rows]


def measure(cfg, batch: int, steps: int, warmup: int, device: torch.device, dtype: torch.dtype,
            compile_segment: bool = False, profile_steps: int = 0) -> dict:
    """Time `steps` training segments after `warmup` ones, then profile `profile_steps` more;
    the result `main` prints."""
    spec = task_spec(cfg.data)
    torch.manual_seed(0)
    model = build_model(cfg, {"vocab_size": spec.vocab_size, "seq_len": spec.seq_len, "num_puzzle_ids": spec.num_puzzle_ids})
    model = model.to(device).train()
    if compile_segment:  # as training compiles: each block (hrm.compiled)
        compile_blocks(model)
    opt = AdamATan2(model.parameters(), lr=1e-4, weight_decay=0.1)
    popt = SparseSignSGD(model.puzzle_emb, lr=1e-4, weight_decay=0.1) if model.puzzle_emb is not None else None
    B = batch
    inputs = torch.randint(1, spec.vocab_size, (B, spec.seq_len), device=device)
    carry = model.initial_carry(inputs, inputs.clone(), torch.zeros(B, dtype=torch.long, device=device))

    def step():
        nonlocal carry
        carry = model.reset_halted(carry)  # keep every slot busy on its example
        with autocast(device, dtype):
            carry, out = model(carry)
        loss, _ = act_loss(out, carry.labels, cfg.model.loss)
        (loss / B).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if popt is not None:
            popt.step()
            popt.zero_grad()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    elapsed = _timed(step, warmup, steps, device)

    seg_s = steps / elapsed
    flops = flops_per_segment(cfg.model, spec.seq_len, spec.vocab_size) * B * seg_s
    roof = roofline(cfg.model, B, spec.seq_len, spec.vocab_size, dtype, device)
    result = {
        "parameters": sum(p.numel() for p in model.parameters()),
        "batch": B,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "dtype": str(dtype).removeprefix("torch."),
        "compiled": compile_segment,
        "seconds_per_segment": elapsed / steps,
        "segments_per_s": seg_s,
        "samples_per_s": seg_s * B,
        "model_tflops_per_s": flops / 1e12,
        "roofline_tflops_per_s": roof["gflops"] / 1e3,
        "roofline_ratio": flops / (roof["gflops"] * 1e9),
        "roofline": roof,
    }
    if profile_steps:
        result["profile"] = top_ops(step, profile_steps)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
        if peak is not None:
            result["mfu"] = flops / peak
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="sudoku_extreme")
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default=None)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="then profile N more segments: the ops with the largest share of the time")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = p.parse_args()
    if args.threads is not None:
        if args.threads < 1:
            p.exit(2, f"train_throughput.py: --threads must be >= 1, got {args.threads}\n")
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype or ("bfloat16" if device.type == "cuda" else "float32"))
    why = check_device(device, dtype)
    if why:
        p.exit(2, f"train_throughput.py: {why}\n")
    cfg = load_config(args.config, args.set)
    if args.profile < 0:
        p.exit(2, f"train_throughput.py: --profile must be >= 0, got {args.profile}\n")
    result = measure(cfg, args.batch, args.steps, args.warmup, device, dtype, args.compile, args.profile)
    print(json.dumps({"config": args.config, "overrides": args.set, **result}))


if __name__ == "__main__":
    main()
