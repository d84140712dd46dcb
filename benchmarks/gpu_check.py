"""The GPU check: one run, a few minutes on one GPU, one summary table.

Needs only torch, numpy, pyarrow and pyyaml (a GPU machine may have nothing else and no
registry to install from); it runs from a checkout without installing and never
imports Ray, Optuna, pytest or TensorBoard. `benchmarks/gpu_check.sh` is the entry.

1. environment: versions, the GPU, which optional packages are missing (and not needed);
2. bf16 autocast against fp32 eager on the same batch and weights (`check_bf16`):
   the segment's loss within 2% relative and >= 98% of token argmaxes equal;
3. a segment with its blocks compiled as training compiles them against eager, same dtype (`check_compile`): loss
   within 1e-4 relative in fp32 (2e-2 in bf16), gradients within 1e-3 (bf16 5e-2) of
   their largest entry, and no graph break in a block (`torch._dynamo.explain`);
4. throughput at the reference size (batch 768), eager and compiled: segments/s, MFU
   against the GPU's bf16 peak, peak memory (`train_throughput.measure`);
5. the compile's cost cold, with the node's inductor cache warm, and from torch's portable
   cache artifacts in a fresh process (their load time), with the compiled step's speed-up
   and no recompile for a second setting (`benchmarks/compile_cache.py`, a process each);
6. a short Sudoku training run (`hrm.train.train`) that must learn: exact accuracy
   at the end above the start.
Exit 1 if a check fails, 2 for a bad flag. `--device cpu --quick` runs the same steps
on the CPU at tiny sizes (the test suite does, so the script is known to work).
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hrm.compiled import compile_blocks  # noqa: E402
from hrm.config import load_config  # noqa: E402
from hrm.runtime import autocast  # noqa: E402
from hrm.model import act_loss, build_model  # noqa: E402
from hrm.model.layers import Block  # noqa: E402

TOLERANCE = {"bf16_loss_rel": 0.02, "bf16_argmax_agree": 0.98, "compile_loss_rel": {"float32": 1e-4, "bfloat16": 2e-2},
             "compile_grad_rel": {"float32": 1e-3, "bfloat16": 5e-2}}


def _model_and_batch(cfg, batch: int, device: torch.device, seed: int = 0):
    torch.manual_seed(seed)
    vocab, seq = cfg.data.sudoku.size + 2, cfg.data.sudoku.size ** 2
    model = build_model(cfg, {"vocab_size": vocab, "seq_len": seq, "num_puzzle_ids": 1}).to(device).train()
    inputs = torch.randint(1, vocab, (batch, seq), device=device)
    labels = torch.randint(2, vocab, (batch, seq), device=device)
    return model, (inputs, labels, torch.zeros(batch, dtype=torch.long, device=device))


def _segment_loss(model, batch, device: torch.device, dtype: torch.dtype):
    """One ACT segment from a fresh carry: (loss, token logits), exploration draws seeded."""
    carry = model.reset_halted(model.initial_carry(*batch))
    torch.manual_seed(1)
    with autocast(device, dtype):
        carry, out = model(carry)
    loss, _ = act_loss(out, carry.labels, model.cfg.loss)
    return loss, out["logits"]


def check_bf16(cfg, batch: int, device: torch.device) -> dict:
    model, data = _model_and_batch(cfg, batch, device)
    with torch.no_grad():
        l32, g32 = _segment_loss(model, data, device, torch.float32)
        l16, g16 = _segment_loss(model, data, device, torch.bfloat16)
    rel = abs(float(l16) - float(l32)) / abs(float(l32))
    agree = float((g16.argmax(-1) == g32.argmax(-1)).float().mean())
    ok = rel < TOLERANCE["bf16_loss_rel"] and agree >= TOLERANCE["bf16_argmax_agree"]
    return {"check": "bf16 vs fp32", "ok": ok, "loss_rel_diff": rel, "argmax_agree": agree}


def check_compile(cfg, batch: int, device: torch.device, dtype: torch.dtype) -> dict:
    eager, data = _model_and_batch(cfg, batch, device)
    compiled = copy.deepcopy(eager)
    carry = eager.reset_halted(eager.initial_carry(*data))
    block = next(m for m in compiled.modules() if isinstance(m, Block))  # what training compiles (hrm.compiled)
    explain = torch._dynamo.explain(block)(carry.z_H, compiled.rope())
    torch._dynamo.reset()
    compile_blocks(compiled)
    losses, grads = [], []
    for model in (eager, compiled):
        loss, _ = _segment_loss(model, data, device, dtype)
        loss.backward()
        losses.append(float(loss.detach()))
        grads.append(torch.cat([p.grad.reshape(-1).float() for p in model.parameters() if p.grad is not None]))
    name = str(dtype).removeprefix("torch.")
    loss_rel = abs(losses[1] - losses[0]) / abs(losses[0])
    grad_rel = float((grads[1] - grads[0]).abs().max() / grads[0].abs().max())
    ok = (explain.graph_break_count == 0 and loss_rel < TOLERANCE["compile_loss_rel"][name]
          and grad_rel < TOLERANCE["compile_grad_rel"][name])
    return {"check": f"compile vs eager ({name})", "ok": ok, "graph_breaks": explain.graph_break_count,
            "graphs": explain.graph_count, "loss_rel_diff": loss_rel, "grad_rel_diff": grad_rel}


def train_run(device: torch.device, quick: bool, out: Path) -> dict:
    """A short Sudoku run that must learn: token accuracy at the last evaluation above the
    first (exact accuracy is reported too; a few minutes are too short for it on CPU)."""
    from hrm.train import train

    steps = 160 if quick else 1200
    sets = [f"train.device={device.type}", f"train.steps={steps}", f"train.eval_interval={steps // 4}",
            "train.tensorboard=false", f"train.out_dir={out / 'run'}", f"data.root={out / 'data'}",
            f"train.log_interval={max(1, steps // 8)}", "train.eval_samples=200", "data.num_test=200"]
    if quick:
        sets += ["model.hidden_size=32", "model.H_layers=1", "model.L_layers=1", "data.num_train=64",
                 "data.num_aug=1", "data.sudoku.size=4", "data.sudoku.blanks=4", "train.global_batch_size=16"]
    cfg = load_config("quickstart", sets)
    history = []
    start = time.perf_counter()
    train(cfg, log=lambda _m: None, report=lambda metrics, _c: history.append(metrics))
    token = [m["token_accuracy"] for m in history]
    return {"check": f"train {steps} steps", "ok": token[-1] > token[0],
            "token_accuracy": " ".join(f"{a:.3f}" for a in token),
            "exact_accuracy": " ".join(f"{m['exact_accuracy']:.3f}" for m in history),
            "seconds": round(time.perf_counter() - start, 1)}


def compile_phases(device: torch.device, quick: bool) -> list[dict]:
    """Compile cold, warm on the node and warm from the portable cache (hrm.compiled), on
    the quickstart model at 9x9 (tiny with --quick): a row per phase; a second setting
    must add no graph."""
    from compile_cache import phases

    sets = (["model.hidden_size=32", "model.H_layers=1", "model.L_layers=1", "data.sudoku.size=4",
             "data.sudoku.blanks=4"] if quick else ["data.sudoku.size=9"])
    rows = []
    for r in phases("quickstart", sets, 8 if quick else 64, 2 if quick else 5, device.type):
        first, second = r["settings"]
        rows.append({"check": f"compile {r['phase']}", "ok": second["new_graphs"] == 0,
                     "compile_s": first["compile_s"], "artifacts_load_s": r["artifacts_load_s"] or 0.0,
                     "speedup": first["speedup"], "second_setting_graphs": second["new_graphs"]})
    return rows


def environment(device: torch.device) -> dict:
    missing = [m for m in ("ray", "optuna", "pytest", "tensorboard", "numba") if importlib.util.find_spec(m) is None]
    import numpy
    import pyarrow
    import yaml

    return {"torch": torch.__version__, "cuda": torch.version.cuda, "numpy": numpy.__version__,
            "pyarrow": pyarrow.__version__, "pyyaml": yaml.__version__,
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "not installed (not needed)": ", ".join(missing) or "none"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--quick", action="store_true", help="tiny sizes (to try the script itself on a CPU)")
    p.add_argument("--out", default="runs/gpu_check", help="scratch folder for the training run")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    from train_throughput import check_device, measure

    why = check_device(device, torch.float32)
    if why:
        p.exit(2, f"gpu_check.py: {why}\n")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    small = load_config("quickstart", ["model.hidden_size=32", "model.H_layers=1", "model.L_layers=1",
                                       "data.sudoku.size=4", "data.sudoku.blanks=4"] if args.quick
                         else ["data.sudoku.size=9"])
    reference = load_config("sudoku_extreme", ["model.hidden_size=64", "model.H_layers=1", "model.L_layers=1",
                                               "model.num_heads=4"] if args.quick else [])
    batch = 8 if args.quick else 64
    rows: list[dict] = [environment(device)]
    rows.append(check_bf16(small, batch, device) if device.type == "cuda" or not args.quick
                else {"check": "bf16 vs fp32", "ok": True, "skipped": "CPU --quick"})
    rows.append(check_compile(small, batch, device, dtype))
    big = 8 if args.quick else 768
    for compiled in (False, True):
        m = measure(reference, big, 2 if args.quick else 5, 1 if args.quick else 2, device, dtype, compiled)
        rows.append({"check": f"throughput batch {big}{' compiled' if compiled else ''}", "ok": True,
                     **{k: m[k] for k in ("segments_per_s", "samples_per_s", "model_tflops_per_s", "roofline_ratio")
                        if k in m}, **{k: m[k] for k in ("mfu", "peak_memory_gib") if k in m}})
    rows += compile_phases(device, args.quick)
    rows.append(train_run(device, args.quick, Path(args.out)))
    for row in rows:
        print(json.dumps(row))
    print("\n".join(f"{r.get('check', 'environment'):<34} {'ok' if r.get('ok', True) else 'FAILED':<7} "
                    + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()
                                if k not in ("check", "ok")) for r in rows))
    return 0 if all(r.get("ok", True) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
