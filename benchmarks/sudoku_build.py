"""The Sudoku generator and its rating: puzzles per second, the rating distribution,
the grade, and the same rating on famous and published hard puzzles.

Generates --count puzzles with hrm.data.sudoku.generate in --workers processes (one
seed stream per puzzle, as `build` does) and prints one JSON line with:
- the rate (wall clock, generation only) and the rating distribution
  (hrm.data.sudoku_rating.summarise: mean, median, p90, share with no guess, grade);
- `held_out`: the same puzzles rated with 8 other seeded relabelings: the search
  optimises the fixed set, so this shows whether the ratings it reports are inflated;
- `reference`: the rating of magictour's top95 (benchmarks/data/top95.txt, the
  classic hard collection Sudoku-Extreme draws on) and of three famous puzzles;
- `kernel_ms`: one rating search of AI Escargot (one relabeling), compiled (numba)
  and as plain Python (NUMBA_DISABLE_JIT=1).
Example (the RESULTS.md run):

    python benchmarks/sudoku_build.py --count 1000 --workers 2 --check
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from hrm.data import sudoku, sudoku_grid, sudoku_rating, sudoku_solver  # noqa: E402

FAMOUS = {
    "newspaper (Wikipedia's example)": "53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79",
    "AI Escargot (Inkala 2006)": "1....7.9..3..2...8..96..5....53..9...1..8...26....4...3......1..4......7..7...3..",
    "Inkala 2012": "8..........36......7..9.2...5...7.......457.....1...3...1....68..85...1..9....4..",
}
TOP95 = Path(__file__).with_name("data") / "top95.txt"


def grid(text: str) -> np.ndarray:
    return np.array([0 if ch == "." else int(ch) for ch in text.strip()], np.uint8)


def held_out(puzzle: np.ndarray, n: int, params: np.ndarray) -> float:
    return float(np.mean([sudoku_rating.search(sudoku_grid.apply_aug(puzzle, p, n), n)[1] for p in params]))


def kernel_ms(puzzle: np.ndarray, repeat: int) -> float:
    """Milliseconds per rating search of `puzzle` (compiled here, unless numba is off)."""
    units, peers = sudoku_rating._tables(9)
    p = puzzle.astype(np.int8)
    sudoku_rating._search(p, units, peers, 2)  # compile / load the cache
    start = time.perf_counter()
    for _ in range(repeat):
        sudoku_rating._search(p, units, peers, 2)
    return round(1e3 * (time.perf_counter() - start) / repeat, 3)


def python_kernel_ms(puzzle_text: str) -> float:
    """The same search as plain Python: a child process with numba's JIT switched off."""
    import os
    import subprocess

    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); import sudoku_build as b; "
            f"print(b.kernel_ms(b.grid({puzzle_text!r}), 3))")
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "NUMBA_DISABLE_JIT": "1"},
                          capture_output=True, text=True, check=True)
    return float(done.stdout.strip())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=9)
    ap.add_argument("--difficulty", default="hard", choices=list(sudoku.DIFFICULTIES))
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--blanks", type=int, default=None, help="easy only; default: half the cells")
    ap.add_argument("--check", action="store_true", help="also prove each puzzle unique with the other solver (untimed)")
    args = ap.parse_args()
    n = args.n
    blanks = args.blanks if args.blanks is not None else n * n // 2
    sudoku_rating.rate(grid(FAMOUS["Inkala 2012"]), 9)  # compile (or load the cache) before the clock
    jobs = [(s, n, args.difficulty, blanks) for s in np.random.SeedSequence(args.seed).spawn(args.count)]
    start = time.perf_counter()
    if args.workers > 1:
        with mp.get_context("spawn").Pool(args.workers) as pool:
            made = pool.map(sudoku._gen_one, jobs, chunksize=1)
    else:
        made = [sudoku._gen_one(j) for j in jobs]
    elapsed = time.perf_counter() - start
    puzzles = [p for p, _, _ in made]
    ratings = np.array([r for _, _, r in made])
    other = np.stack([sudoku_grid.random_aug(n, np.random.default_rng(10_000 + i)) for i in range(8)])
    top95 = [grid(line) for line in TOP95.read_text().split()]
    out = {
        "n": n, "difficulty": args.difficulty, "count": args.count, "workers": args.workers,
        "seconds": round(elapsed, 1), "puzzles_per_second": round(args.count / elapsed, 3),
        "rating": sudoku_rating.summarise(ratings),
        "held_out": sudoku_rating.summarise(np.array([held_out(p, n, other) for p in puzzles])),
        "mean_givens": round(float(np.mean([np.count_nonzero(p) for p in puzzles])), 2),
        "reference": {
            "top95": sudoku_rating.summarise(np.array([sudoku_rating.rate(p, 9).guesses for p in top95])),
            **{name: sudoku_rating.rate(grid(text), 9).guesses for name, text in FAMOUS.items()},
        },
        "kernel_ms": {"compiled": kernel_ms(grid(FAMOUS["AI Escargot (Inkala 2006)"]), 200),
                      "python": python_kernel_ms(FAMOUS["AI Escargot (Inkala 2006)"])},
    }
    if args.check:
        out["all_unique"] = all(sudoku_solver.count_solutions(p, n) == 1 for p in puzzles)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
