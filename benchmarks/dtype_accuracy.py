"""bf16 against fp32 on the CPU: the same training run in both dtypes over several seeds.

Runs `hrm train --config CONFIG --set train.dtype=D --set train.seed=S` one after the
other, both dtypes for each seed in turn (nothing in parallel, so the times compare) and prints one JSON line per run
and a summary: final exact accuracy and pass@2 (mean and spread over the seeds) and
wall time per dtype. The bar for switching a default to bf16 is a mean within 2
points of fp32. Example (the RESULTS.md run):

    python benchmarks/dtype_accuracy.py --config quickstart --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def run(config: str, dtype: str, seed: int, out: Path, sets: list[str]) -> dict:
    hrm = str(Path(sys.executable).with_name("hrm"))
    args = [hrm, "train", "--config", config, "--set", f"train.dtype={dtype}", "--set", f"train.seed={seed}",
            "--set", "train.tensorboard=false", "--out", str(out / f"{dtype}-{seed}"), *sum((["--set", s] for s in sets), [])]
    start = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, check=True)
    final = json.loads(done.stdout.strip().splitlines()[-1])
    return {"dtype": dtype, "seed": seed, "seconds": round(time.perf_counter() - start, 1),
            "exact_accuracy": final["exact_accuracy"], "pass@2": final["pass@2"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="quickstart")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--set", action="append", default=[], help="more overrides for every run")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:  # seed by seed, so a cut-short run still has matched pairs
            for dtype in ("float32", "bfloat16"):
                rows.append(run(args.config, dtype, seed, Path(tmp), args.set))
                print(json.dumps(rows[-1]), flush=True)
    summary = {}
    for dtype in ("float32", "bfloat16"):
        mine = [r for r in rows if r["dtype"] == dtype]
        summary[dtype] = {k: {"mean": float(np.mean([r[k] for r in mine])), "std": float(np.std([r[k] for r in mine]))}
                          for k in ("exact_accuracy", "pass@2", "seconds")}
    gap = 100 * (summary["bfloat16"]["exact_accuracy"]["mean"] - summary["float32"]["exact_accuracy"]["mean"])
    print(json.dumps({"config": args.config, "seeds": args.seeds, "summary": summary,
                      "bf16_minus_fp32_exact_points": gap, "within_2_points": abs(gap) <= 2}))


if __name__ == "__main__":
    main()
