"""Time the ARC dataset build: rows per second, array bytes and peak memory.

Selects a version's tasks (hrm.data.arc_tasks.select_tasks, no extras), builds both
splits with hrm.data.arc.build and prints one JSON line. Example:

    python benchmarks/arc_build.py --version arc-agi-1 --num-aug 8 --seed 0
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from hrm.data.arc import build  # noqa: E402
from hrm.data.arc_tasks import VERSIONS, select_tasks  # noqa: E402


def rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--version", default="arc-agi-1", choices=VERSIONS)
    ap.add_argument("--num-aug", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    train_tasks, eval_tasks = select_tasks(args.version)
    rss_before = rss_mib()
    start = time.perf_counter()
    splits, meta = build(train_tasks, eval_tasks, args.num_aug, args.seed)
    elapsed = time.perf_counter() - start
    rows = {s: len(c["inputs"]) for s, c in splits.items()}
    nbytes = sum(a.nbytes for c in splits.values() for a in c.values())
    print(json.dumps({
        "version": args.version,
        "num_aug": args.num_aug,
        "tasks": {"train": len(train_tasks), "eval": len(eval_tasks)},
        "puzzle_ids": meta["num_puzzle_ids"] - 1,
        "rows": rows,
        "seconds": round(elapsed, 3),
        "rows_per_second": round(sum(rows.values()) / elapsed),
        "array_bytes": nbytes,
        "bytes_per_row": round(nbytes / max(1, sum(rows.values())), 1),
        "peak_rss_mib_before_build": round(rss_before, 1),
        "peak_rss_mib": round(rss_mib(), 1),
    }))


if __name__ == "__main__":
    main()
