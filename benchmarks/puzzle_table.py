"""Cost of the puzzle-identifier table at ARC scale: memory and one sparse update.

    python benchmarks/puzzle_table.py --rows 730000 --dim 512 --batch 768
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch

from hrm.model.act import PuzzleEmbedding
from hrm.optim import SparseSignSGD


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=730_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--batch", type=int, default=768)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    dev = torch.device(args.device)
    emb = PuzzleEmbedding(args.rows, args.dim).to(dev).train()
    opt = SparseSignSGD(emb, lr=1e-2, weight_decay=0.1)
    g = torch.Generator(device="cpu").manual_seed(0)
    times = []
    for _ in range(args.steps):
        ids = torch.randint(0, args.rows, (args.batch,), generator=g).to(dev)
        start = time.perf_counter()
        rows = emb(ids)
        rows.sum().backward()
        opt.step()
        opt.zero_grad()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    times.sort()
    print(json.dumps({
        "rows": args.rows,
        "dim": args.dim,
        "batch": args.batch,
        "device": str(dev),
        "table_bytes": emb.table.numel() * emb.table.element_size(),
        "median_step_ms": 1000 * times[len(times) // 2],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    main()
