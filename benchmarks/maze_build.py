"""Time the Maze-Hard generator: mazes per second, tries per maze, path lengths.

Generates --count mazes with hrm.data.maze (one seed stream per maze, as `build`
does; --workers > 1 uses a spawn pool) and prints one JSON line. Path lengths
are in moves (cells on the path minus 1). Example:

    python benchmarks/maze_build.py --count 20 --size 30 --min-path 110 --seed 0
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from hrm.data import maze, maze_grid  # noqa: E402

def _one(args):
    """(path length, tries, wall fraction) of one maze; module level for the pool."""
    seed, size, min_path = args
    x, _, length, tries = maze._generate(np.random.default_rng(seed), size, min_path, maze.MAX_TRIES)
    return length, tries, float((x == maze_grid.WALL).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--size", type=int, default=30)
    ap.add_argument("--min-path", type=int, default=110)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()

    jobs = [(s, args.size, args.min_path) for s in np.random.SeedSequence(args.seed).spawn(args.count)]
    start = time.perf_counter()
    if args.workers > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(args.workers) as pool:
            out = pool.map(_one, jobs, chunksize=1)
    else:
        out = [_one(j) for j in jobs]
    elapsed = time.perf_counter() - start
    lengths, tries, walls = (np.array(v) for v in zip(*out))
    print(json.dumps({
        "size": args.size,
        "min_path": args.min_path,
        "count": args.count,
        "workers": args.workers,
        "seconds": round(elapsed, 3),
        "mazes_per_second": round(args.count / elapsed, 3),
        "tries_per_maze": round(float(tries.mean()), 1),
        "tries_per_second": round(float(tries.sum()) / elapsed, 1),
        "mean_path_len": round(float(lengths.mean()), 2),
        "min_path_len": int(lengths.min()),
        "max_path_len": int(lengths.max()),
        "mean_wall_fraction": round(float(walls.mean()), 4),
    }))


if __name__ == "__main__":
    main()
