"""Training throughput of HRM: segments/s, samples/s, model FLOP/s (and MFU on CUDA).

Times full training segments (forward of every cycle, one-step backward, Q-target
forward, optimiser steps) on random Sudoku-shaped tokens, after warm-up steps.

    python benchmarks/train_throughput.py                       # reference size, batch 16
    python benchmarks/train_throughput.py --set model.hidden_size=128 --batch 64
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from hrm.config import load_config
from hrm.data.build import task_spec
from hrm.evaluate import autocast
from hrm.model import HRM, act_loss, flops_per_segment
from hrm.optim import AdamATan2, SparseSignSGD

# Dense bf16 peak of common accelerators, for MFU (FLOP/s).
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "RTX 4090": 165e12}


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
    args = p.parse_args()

    cfg = load_config(args.config, args.set)
    spec = task_spec(cfg.data)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype or ("bfloat16" if device.type == "cuda" else "float32"))
    torch.manual_seed(0)
    model = HRM(cfg.model, vocab_size=spec.vocab_size, seq_len=spec.seq_len, num_puzzle_ids=spec.num_puzzle_ids)
    model = model.to(device).train()
    if args.compile:
        model.segment = torch.compile(model.segment)
    opt = AdamATan2(model.parameters(), lr=1e-4, weight_decay=0.1)
    popt = SparseSignSGD(model.puzzle_emb, lr=1e-4, weight_decay=0.1) if model.puzzle_emb is not None else None
    B = args.batch
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

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start

    seg_s = args.steps / elapsed
    flops = flops_per_segment(cfg.model, spec.seq_len, spec.vocab_size) * B * seg_s
    result = {
        "config": args.config,
        "overrides": args.set,
        "parameters": sum(p.numel() for p in model.parameters()),
        "batch": B,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "dtype": str(dtype).removeprefix("torch."),
        "seconds_per_segment": elapsed / args.steps,
        "segments_per_s": seg_s,
        "samples_per_s": seg_s * B,
        "model_tflops_per_s": flops / 1e12,
    }
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
        if peak is not None:
            result["mfu"] = flops / peak
    print(json.dumps(result))


if __name__ == "__main__":
    main()
