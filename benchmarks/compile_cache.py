"""What compiling the blocks costs and saves, cold and from each cache (hrm.compiled).

Each phase runs in its own process, as a trial would, on the quickstart model (or --config)
at its training batch, in the run's dtype (bf16 where the CPU multiplies it natively):

- cold: an empty inductor cache; compiles, then saves torch's portable cache artifacts;
- node: the same inductor cache folder (a later trial on the same node);
- storage: an empty inductor cache, the portable artifacts loaded first (a trial on another
  node, or a restarted worker, finding the search's `train.compile_cache`);
- in every phase, a second setting (other H/L cycles) after the first: what it compiles.

Per phase: seconds of the first compiled training segment less a steady one (the compile
cost), steady seconds per segment eager and compiled (their ratio: the saving), torch's
graph, recompile and cache-hit counters, and the matmul roofline ratio of both (as
benchmarks/train_throughput.py measures it).

    python benchmarks/compile_cache.py                      # quickstart size
    python benchmarks/compile_cache.py --set model.hidden_size=512 --batch 16   # wider
    python benchmarks/compile_cache.py --device cuda        # bf16 on a GPU (benchmarks/gpu_check.py runs it)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _phase(args: argparse.Namespace) -> dict:
    """One process: eager and compiled segments of two settings (run with --phase)."""
    import torch
    from torch._dynamo.utils import counters

    from hrm.compiled import compile_blocks
    from hrm.config import load_config
    from hrm.dataset import task_spec
    from hrm.model import act_loss, build_model, flops_per_segment
    from hrm.runtime import auto_dtype, autocast
    from train_throughput import roofline

    if args.artifacts and Path(args.artifacts).exists() and args.phase == "storage":
        start = time.perf_counter()
        torch.compiler.load_cache_artifacts(Path(args.artifacts).read_bytes())
        load_s = time.perf_counter() - start
    else:
        load_s = None
    device = torch.device(args.device)
    dtype = getattr(torch, auto_dtype(device.type))

    def sync() -> None:  # a GPU's time is its kernels' time
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    out = {"phase": args.phase, "dtype": str(dtype).removeprefix("torch."), "threads": torch.get_num_threads(),
           "artifacts_load_s": load_s, "settings": []}
    for cycles in ((2, 2), (1, 3)):
        cfg = load_config(args.config, [*args.set, f"model.H_cycles={cycles[0]}", f"model.L_cycles={cycles[1]}"])
        spec = task_spec(cfg.data)
        meta = {"vocab_size": spec.vocab_size, "seq_len": spec.seq_len, "num_puzzle_ids": spec.num_puzzle_ids}
        row = {"H_cycles": cycles[0], "L_cycles": cycles[1]}
        for compiled in (False, True):
            torch.manual_seed(0)
            model = build_model(cfg, meta).to(device).train()
            if compiled:
                graphs = counters["stats"]["unique_graphs"]
                compile_blocks(model)
            x = torch.randint(1, spec.vocab_size, (args.batch, spec.seq_len), device=device)
            carry = model.initial_carry(x, x.clone(), torch.zeros(args.batch, dtype=torch.long, device=device))

            def step():
                nonlocal carry
                carry = model.reset_halted(carry)
                with autocast(device, dtype):
                    carry, o = model(carry)
                loss, _ = act_loss(o, carry.labels, cfg.model.loss)
                loss.backward()

            sync()
            start = time.perf_counter()
            step()
            sync()
            first = time.perf_counter() - start
            step()  # the other graphs a step can need (e.g. the no-grad one) are built by now
            sync()
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            sync()
            steady = (time.perf_counter() - start) / args.steps
            key = "compiled" if compiled else "eager"
            row[f"{key}_s_per_segment"] = steady
            flops = flops_per_segment(cfg.model, spec.seq_len, spec.vocab_size) * args.batch / steady
            row[f"{key}_model_gflops"] = flops / 1e9
            if compiled:
                row["compile_s"] = first - steady
                row["new_graphs"] = counters["stats"]["unique_graphs"] - graphs
        roof = roofline(cfg.model, args.batch, spec.seq_len, spec.vocab_size, dtype, device)
        row["roofline_gflops"] = roof["gflops"]
        row["eager_roofline_ratio"] = row["eager_model_gflops"] / roof["gflops"]
        row["compiled_roofline_ratio"] = row["compiled_model_gflops"] / roof["gflops"]
        row["speedup"] = row["eager_s_per_segment"] / row["compiled_s_per_segment"]
        out["settings"].append(row)
    out["counters"] = {k: dict(counters[k]) for k in ("inductor", "aot_autograd", "graph_break", "recompiles")
                       if counters[k]}
    if args.phase == "cold" and args.artifacts:
        saved = torch.compiler.save_cache_artifacts()
        Path(args.artifacts).write_bytes(saved[0] if saved else b"")
        out["artifacts_bytes"] = len(saved[0]) if saved else 0
    return out


def phases(config: str, sets: list[str], batch: int, steps: int, device: str) -> list[dict]:
    """The three phases (module docstring), each in its own process; one row each."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="hrm-compile-bench-") as tmp:
        artifacts = f"{tmp}/artifacts.bin"
        for phase, inductor in (("cold", "node1"), ("node", "node1"), ("storage", "node2")):
            cmd = [sys.executable, __file__, "--phase", phase, "--artifacts", artifacts, "--config", config,
                   "--batch", str(batch), "--steps", str(steps), "--device", device, *[f"--set={s}" for s in sets]]
            env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": f"{tmp}/{inductor}"}
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(f"compile_cache.py: the {phase} phase failed: {done.stderr[-2000:]}")
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="quickstart")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--phase", choices=["cold", "node", "storage"], help=argparse.SUPPRESS)
    p.add_argument("--artifacts", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.batch < 1 or args.steps < 1:
        p.exit(2, f"compile_cache.py: --batch and --steps must be >= 1, got {args.batch} and {args.steps}\n")
    if args.phase:
        print(json.dumps(_phase(args)))
        return
    try:
        for row in phases(args.config, args.set, args.batch, args.steps, args.device):
            print(json.dumps(row), flush=True)
    except RuntimeError as exc:
        sys.exit(str(exc))


if __name__ == "__main__":
    main()
