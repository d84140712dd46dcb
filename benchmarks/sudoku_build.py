"""Time the Sudoku generator: puzzles per second and the ratings they get.

Generates --count puzzles with hrm.data.sudoku.generate (one process, one seed
stream per puzzle as `build` does) and prints one JSON line. Example:

    python benchmarks/sudoku_build.py --n 9 --difficulty hard --count 30 --seed 0
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from hrm.data.sudoku import HARD_ITERS, count_solutions, generate  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=9)
    ap.add_argument("--difficulty", default="hard", choices=["easy", "minimal", "hard"])
    ap.add_argument("--count", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--blanks", type=int, default=None, help="easy only; default: half the cells")
    ap.add_argument("--hard-iters", type=int, default=HARD_ITERS)
    ap.add_argument("--check", action="store_true", help="also verify each puzzle has one solution (untimed)")
    args = ap.parse_args()
    blanks = args.blanks if args.blanks is not None else args.n * args.n // 2  # half blank: a mid-range easy puzzle

    seeds = np.random.SeedSequence(args.seed).spawn(args.count)
    ratings, puzzles = [], []
    start = time.perf_counter()
    for s in seeds:
        puzzle, _, rating = generate(args.n, np.random.default_rng(s), args.difficulty, blanks, args.hard_iters)
        ratings.append(rating)
        puzzles.append(puzzle)
    elapsed = time.perf_counter() - start
    r = np.array(ratings)
    out = {
        "n": args.n,
        "difficulty": args.difficulty,
        "count": args.count,
        "seconds": round(elapsed, 3),
        "puzzles_per_second": round(args.count / elapsed, 3),
        "mean_rating": round(float(r.mean()), 2),
        "median_rating": round(float(np.median(r)), 2),
        "min_rating": round(float(r.min()), 2),
        "max_rating": round(float(r.max()), 2),
        "mean_givens": round(float(np.mean([(p > 0).sum() for p in puzzles])), 2),
    }
    if args.difficulty == "hard":
        out["hard_iters"] = args.hard_iters
    if args.check:
        out["all_unique"] = all(count_solutions(p, args.n) == 1 for p in puzzles)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
