"""Sudoku datasets: a local puzzle generator and the builder of train/test splits (generated,
or from the published CSV files), with HRM's augmentation of the train split.

Generation draws everything from the numpy Generator passed in (no global RNG). "easy"
blanks a given number of random cells, skipping removals that would break uniqueness;
"minimal" blanks cells in random order while the puzzle stays unique; "hard" searches
locally from a minimal puzzle of one solution grid (see `_hard`: remove, add or move
givens, annealed acceptance on the rating) until the rating reaches a target, which finds
hard puzzles far faster than drawing minimal ones and keeping the hardest.

Difficulty is rated by `hrm.data.sudoku_rating`: the mean, over a fixed set of
relabelings, of the guesses a stronger solver makes in the whole search tree that proves
uniqueness. It is stored per puzzle (column `rating`).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from hrm.data.splits import draw_disjoint
from hrm.data.sudoku_csv import read_csv
from hrm.data.sudoku_grid import aug_len, apply_aug, box_shape, identity_aug, random_aug, signature
from hrm.data.sudoku_rating import rate as rating
from hrm.data.sudoku_solver import _check_grid, _minimise, random_solution

DIFFICULTIES = ("easy", "minimal", "hard")
Progress = Callable[[int, int], None] | None


def rate(puzzle: np.ndarray, n: int) -> float:
    """The puzzle's rating: mean guesses over the fixed relabelings (`hrm.data.sudoku_rating`)."""
    r = rating(_check_grid(puzzle, n), n)
    if not r.unique:
        raise ValueError("a rated puzzle must have exactly one solution")
    return r.guesses


# Local search for hard puzzles (`_hard`): target, step cap and temperature chosen by
# measurement on 9x9 (benchmarks/RESULTS.md, "Sudoku rating and the hard generator"). 6x6
# and 4x4 puzzles are almost all solved by singles, so their targets are low.
HARD_TARGETS = {4: 0.0, 6: 1.0, 9: 40.0}
HARD_STEPS = {4: 0, 6: 500, 9: 16000}  # cap on local-search steps per puzzle
CLIMB_RELABELINGS = 4  # of the rating's 8, inside the search: half the cost, the same trend
HARD_TEMPERATURE = 2.0  # annealing: a step losing d guesses is taken with p = exp(-d / T), T -> 0
MAX_GIVENS = 30  # the search adds givens only below this


def generate(
    n: int,
    rng: np.random.Generator,
    difficulty: str,
    blanks: int | None = None,
    hard_steps: int | None = None,
    hard_target: float | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """One puzzle with exactly one solution: (puzzle, solution, rating).

    easy: `blanks` random cells blanked (removals that break uniqueness are skipped;
    a fresh grid is drawn if the grid runs out of removable cells). minimal: blanked
    while unique. hard: see `_hard`; the target and step cap default to HARD_TARGETS[n]
    and HARD_STEPS[n]. Every puzzle is rated by `rate`.
    """
    box_shape(n)
    size = n * n
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"unknown difficulty {difficulty!r}; expected one of {DIFFICULTIES}")
    if difficulty == "easy":
        if blanks is None or not 0 <= blanks < size:
            raise ValueError(f"easy puzzles need blanks in [0, {size}), got {blanks}")
        for _ in range(20):  # fresh grids to try before giving up on a too-high `blanks`
            sol = random_solution(n, rng)
            puzzle = sol.tolist()
            if _minimise(puzzle, n, rng, stop=blanks) == blanks:
                puzzle = np.array(puzzle, dtype=np.uint8)
                return puzzle, sol, rate(puzzle, n)
        raise ValueError(f"could not blank {blanks} cells of a {n}x{n} grid and keep one solution")
    sol = random_solution(n, rng)
    puzzle = sol.tolist()
    _minimise(puzzle, n, rng)
    puzzle = np.array(puzzle, dtype=np.uint8)
    if difficulty == "hard":
        target = HARD_TARGETS[n] if hard_target is None else hard_target
        puzzle = _hard(puzzle, sol, n, rng, HARD_STEPS[n] if hard_steps is None else hard_steps, target)
    return puzzle, sol, rate(puzzle, n)


def _hard(puzzle: np.ndarray, sol: np.ndarray, n: int, rng: np.random.Generator, steps: int,
          target: float) -> np.ndarray:
    """Local search on the givens of a unique puzzle of `sol`, for a higher rating.

    Each step proposes one move: remove a given (20%), add a solution digit at a blank
    (20%, only below MAX_GIVENS givens) or move a given to a blank (60%; the digit is
    the solution's). A proposal that is not unique is dropped (the rating's search
    proves uniqueness); else it is taken if it rates higher, or the same with no more
    givens, or lower by d with probability exp(-d / T), T falling linearly from
    HARD_TEMPERATURE to 0. Ratings here use the first CLIMB_RELABELINGS relabelings.
    Returns the best puzzle seen, as soon as one reaches `target` or after `steps`.
    """
    def score(p: np.ndarray) -> float | None:
        r = rating(p, n, CLIMB_RELABELINGS)
        return r.guesses if r.unique else None

    current, cur = puzzle, score(puzzle)
    best, best_r = current, cur
    for step in range(steps):
        if best_r >= target:
            break
        p = current.copy()
        givens, holes = np.flatnonzero(p), np.flatnonzero(p == 0)
        u = rng.random()
        if u < 0.2:
            p[rng.choice(givens)] = 0
        elif u < 0.4 and len(givens) < MAX_GIVENS:
            c = rng.choice(holes)
            p[c] = sol[c]
        else:
            c = rng.choice(holes)
            p[rng.choice(givens)], p[c] = 0, sol[c]
        r = score(p)
        if r is None:
            continue
        d, temp = r - cur, HARD_TEMPERATURE * (1 - step / steps)
        more = np.count_nonzero(p) > len(givens)
        if d > 0 or (d == 0 and not more) or (d < 0 and temp > 0 and rng.random() < math.exp(d / temp)):
            current, cur = p, r
            if cur > best_r:
                best, best_r = current, cur
    return best


# ----------------------------------------------------------------------------- dataset build


def _gen_one(args):
    """Worker entry point (module level so multiprocessing can pickle it)."""
    seed, n, difficulty, blanks = args
    return generate(n, np.random.default_rng(seed), difficulty, blanks)


def _columns(puzzles, sols, ratings, groups, augs, n) -> dict[str, np.ndarray]:
    return {
        "inputs": (puzzles + 1).astype(np.uint8),  # blank 0 -> 1, digit d -> d+1; 0 is PAD
        "labels": (sols + 1).astype(np.uint8),
        "puzzle_id": np.zeros(len(puzzles), np.int32),  # Sudoku is a single puzzle type
        "group_id": groups.astype(np.int32),
        "aug": augs.astype(np.int16),
        "rating": ratings.astype(np.float32),
    }


AUG_CHUNK = 1 << 16  # rows transformed per numpy call: bounds temporary memory


def _augmented(puzzles, sols, ratings, num_aug, n, rng, progress=None, done=0, total=0):
    """Train columns: each puzzle followed by `num_aug` random transforms of it."""
    k = 1 + num_aug
    count = len(puzzles)
    augs = np.empty((count, k, aug_len(n)), np.int16)
    augs[:, 0] = identity_aug(n)
    for i in range(count):
        for j in range(1, k):
            augs[i, j] = random_aug(n, rng)
    augs = augs.reshape(-1, aug_len(n))
    rows = np.repeat(np.arange(count), k)
    x = np.empty((len(rows), n * n), np.uint8)
    y = np.empty_like(x)
    for s in range(0, len(rows), AUG_CHUNK):
        sl = slice(s, s + AUG_CHUNK)
        x[sl] = apply_aug(puzzles[rows[sl]], augs[sl], n)
        y[sl] = apply_aug(sols[rows[sl]], augs[sl], n)
        if progress is not None:
            progress(done + min(s + AUG_CHUNK, len(rows)) // k, total)
    return _columns(x, y, ratings[rows], rows, augs, n)


def _plain(puzzles, sols, ratings, n):
    """Test columns: no augmentation, each row its own group."""
    augs = np.tile(identity_aug(n), (len(puzzles), 1))
    return _columns(puzzles, sols, ratings, np.arange(len(puzzles)), augs, n)


def build(
    n: int,
    num_train: int,
    num_test: int,
    num_aug: int,
    difficulty: str,
    blanks: int | None,
    seed: int,
    progress: Progress = None,
    workers: int = 1,
) -> dict[str, dict[str, np.ndarray]]:
    """Generate a dataset: {"train": columns, "test": columns}.

    SeedSequence(seed) spawns three streams (train, test, augmentation); every
    puzzle gets its own child seed, so the result is identical for a seed whatever
    `workers` (processes used for generation) is. Test puzzles whose `signature`
    matches a train puzzle's are redrawn, which keeps test disjoint from train and
    from every augmentation of train (checked by augmentation-invariant key).
    progress(done, total) is called after each generated puzzle.
    """
    box_shape(n)
    if min(num_train, num_test, num_aug) < 0:
        raise ValueError("num_train, num_test and num_aug must be >= 0")
    train_ss, test_ss, aug_ss = np.random.SeedSequence(seed).spawn(3)
    train, test = draw_disjoint(
        _gen_one,
        (n, difficulty, blanks),
        train_ss,
        test_ss,
        num_train,
        num_test,
        train_keys=lambda item: (signature(item[0], n),),
        test_key=lambda item: signature(item[0], n),
        max_tries=20 * num_test + 100,  # redraw cap: tiny grids (4x4) can run out of new puzzles
        what="puzzles",
        progress=progress,
        workers=workers,
    )

    def stack(items):
        size = n * n
        if not items:
            return np.zeros((0, size), np.uint8), np.zeros((0, size), np.uint8), np.zeros(0, np.float32)
        p, s, r = zip(*items)
        return np.stack(p), np.stack(s), np.array(r, np.float32)

    rng = np.random.default_rng(aug_ss)
    return {"train": _augmented(*stack(train), num_aug, n, rng), "test": _plain(*stack(test), n)}


def build_from_csv(
    train_csv,
    test_csv,
    num_train: int | None,
    num_aug: int,
    seed: int,
    progress: Progress = None,
) -> dict[str, dict[str, np.ndarray]]:
    """The published 9x9 CSV files in `build`'s format.

    num_train puzzles are subsampled (without replacement, kept in file order) from
    the train file with the seed; None keeps all. The test file is used whole and
    unaugmented. The published split is taken as is (no disjointness check here).
    progress(done, total) counts augmented train puzzles.
    """
    n = 9
    sub_ss, aug_ss = np.random.SeedSequence(seed).spawn(2)
    p, s, r, _ = read_csv(train_csv, n)
    if num_train is not None:
        if not 0 <= num_train <= len(p):
            raise ValueError(f"num_train={num_train} but {train_csv} has {len(p)} puzzles")
        keep = np.sort(np.random.default_rng(sub_ss).choice(len(p), num_train, replace=False))
        p, s, r = p[keep], s[keep], r[keep]
    tp, ts, tr, _ = read_csv(test_csv, n)
    rng = np.random.default_rng(aug_ss)
    train = _augmented(p, s, r, num_aug, n, rng, progress, 0, len(p))
    return {"train": train, "test": _plain(tp, ts, tr, n)}
