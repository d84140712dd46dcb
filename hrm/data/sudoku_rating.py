"""How hard a Sudoku is: the guesses a strong depth-first solver makes.

The solver propagates to a fixpoint of naked singles (a cell with one candidate
takes it) and hidden singles (a digit with one place left in a row, column or box
goes there); a cell with no candidate, or a digit with no place in some unit, is a
contradiction. It then branches on the empty cell with the fewest candidates (MRV;
ties go to the first cell in row-major order) and tries its digits in increasing
order. A *guess* is every branching choice beyond the first one tried at a node. The
search does not stop at the first solution: it goes on until a second one is found
or the tree is exhausted, so for a unique puzzle the count covers the whole tree that
proves uniqueness, and the same search answers "is it unique?".

The count depends on the names of the digits and the order of the cells, so the
*rating* of a puzzle is the mean guess count over `RELABELINGS` fixed relabelings
(the identity, then seeded digit permutations combined with validity-preserving
symmetries of the grid: transposition, band/row and stack/column shuffles), the
same set for every puzzle. A newspaper puzzle rates 0 (singles solve it); AI
Escargot and Arto Inkala's 2012 puzzle rate in the dozens (tests/test_sudoku.py).

The search kernel is compiled with numba (nopython, cached on disk): pure Python
spends tens of milliseconds on one hard rating, the compiled kernel well under one
(benchmarks/RESULTS.md). Without numba the same functions run as plain Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from hrm.data.sudoku_grid import apply_aug, identity_aug, random_aug
from hrm.data.sudoku_grid import units as grid_units

try:  # a compiled kernel where numba is installed (it is a dependency); plain Python otherwise
    from numba import njit
except ImportError:  # pragma: no cover - exercised only on machines without numba
    def njit(*args, **kwargs):
        return args[0] if args and callable(args[0]) else (lambda fn: fn)

RELABELINGS = 8
_SEED = 20261201  # fixes the relabelings: changing it changes every stored rating


@dataclass(frozen=True)
class Rating:
    guesses: float  # mean over the relabelings; nan when the puzzle is not unique
    unique: bool  # exactly one solution
    per_relabeling: tuple[int, ...]  # the guess count of each relabeling


# ----------------------------------------------------------------------------- kernel


@njit(cache=True)
def _popcount(m):
    k = 0
    while m:
        m &= m - 1
        k += 1
    return k


@njit(cache=True)
def _digit(bit):
    d = 1
    while bit > 1:
        bit >>= 1
        d += 1
    return d


@njit(cache=True)
def _assign(grid, cand, peers, c, d):
    """Place digit d in cell c and take it from its peers; False on a contradiction."""
    if grid[c] != 0:
        return grid[c] == d
    bit = 1 << (int(d) - 1)  # int(): an int8 digit would overflow the shift as plain Python
    if not cand[c] & bit:
        return False
    grid[c] = d
    cand[c] = 0
    for i in range(peers.shape[1]):
        p = peers[c, i]
        if grid[p] == 0 and cand[p] & bit:
            cand[p] &= ~bit
            if cand[p] == 0:
                return False
    return True


@njit(cache=True)
def _propagate(grid, cand, units, peers, full):
    """Naked and hidden singles to a fixpoint; False on a contradiction."""
    n = units.shape[1]
    changed = True
    while changed:
        changed = False
        for c in range(grid.shape[0]):
            if grid[c] == 0:
                m = cand[c]
                if m == 0:
                    return False
                if m & (m - 1) == 0:
                    if not _assign(grid, cand, peers, c, _digit(m)):
                        return False
                    changed = True
        for u in range(units.shape[0]):
            once = 0
            twice = 0
            placed = 0
            for i in range(n):
                c = units[u, i]
                if grid[c] != 0:
                    placed |= 1 << (int(grid[c]) - 1)
                else:
                    twice |= once & cand[c]
                    once |= cand[c]
            if (once | placed) != full:
                return False  # a digit with no place left in this unit
            single = once & ~twice & ~placed
            while single:
                bit = single & -single
                single ^= bit
                target = -1
                for i in range(n):
                    c = units[u, i]
                    if grid[c] == 0 and cand[c] & bit:
                        target = c
                        break
                if target < 0 or not _assign(grid, cand, peers, target, _digit(bit)):
                    return False
                changed = True
    return True


@njit(cache=True)
def _search(puzzle, units, peers, limit):
    """(solutions found, up to `limit`; guesses) of the search in the module docstring."""
    size = puzzle.shape[0]
    n = units.shape[1]
    full = (1 << n) - 1
    grid = np.zeros((size + 1, size), np.int8)
    cand = np.full((size + 1, size), full, np.int32)
    for c in range(size):
        if puzzle[c] != 0 and not _assign(grid[0], cand[0], peers, c, puzzle[c]):
            return 0, 0
    if not _propagate(grid[0], cand[0], units, peers, full):
        return 0, 0
    cell = np.zeros(size + 1, np.int32)
    left = np.zeros(size + 1, np.int32)  # candidates of the branch cell not tried yet
    first = np.zeros(size + 1, np.bool_)
    solutions = 0
    guesses = 0
    level = 0
    expand = True
    while level >= 0:
        if expand:
            best, best_k = -1, n + 1
            for c in range(size):
                if grid[level, c] == 0:
                    k = _popcount(cand[level, c])
                    if k < best_k:
                        best, best_k = c, k
                        if k == 2:  # after propagation no empty cell has fewer
                            break
            if best < 0:  # solved
                solutions += 1
                if solutions >= limit:
                    break
                level -= 1
                expand = False
                continue
            cell[level] = best
            left[level] = cand[level, best]
            first[level] = True
        if left[level] == 0:  # every child tried: back to the parent's next one
            level -= 1
            expand = False
            continue
        bit = left[level] & -left[level]
        left[level] ^= bit
        if first[level]:
            first[level] = False
        else:
            guesses += 1
        grid[level + 1] = grid[level]
        cand[level + 1] = cand[level]
        ok = _assign(grid[level + 1], cand[level + 1], peers, cell[level], _digit(bit))
        if ok and _propagate(grid[level + 1], cand[level + 1], units, peers, full):
            level += 1
            expand = True
        else:
            expand = False
    return solutions, guesses


# ----------------------------------------------------------------------------- python side


@lru_cache(maxsize=None)
def _tables(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(units (3n, n), peers (n*n, P)) as int32 arrays for the kernel."""
    units = grid_units(n).astype(np.int32)
    peers = [set() for _ in range(n * n)]
    for unit in units.tolist():
        for c in unit:
            peers[c].update(unit)
    return units, np.array([sorted(p - {c}) for c, p in enumerate(peers)], dtype=np.int32)


@lru_cache(maxsize=None)
def relabelings(n: int) -> np.ndarray:
    """(RELABELINGS, aug) parameters of `hrm.data.sudoku.apply_aug`: the identity, then
    seeded digit permutations with grid symmetries. Fixed: part of the rating's definition."""
    rng = np.random.default_rng(_SEED + n)
    return np.stack([identity_aug(n)] + [random_aug(n, rng) for _ in range(RELABELINGS - 1)])


def search(puzzle: np.ndarray, n: int, limit: int = 2) -> tuple[int, int]:
    """(solutions, counted up to `limit`; guesses) of one search of `puzzle` as it is."""
    units, peers = _tables(n)
    return _search(np.ascontiguousarray(puzzle, dtype=np.int8), units, peers, limit)


def rate(puzzle: np.ndarray, n: int, relabelings_used: int = RELABELINGS) -> Rating:
    """The rating (module docstring) from the first `relabelings_used` relabelings; a
    puzzle found not to have exactly one solution stops at once (guesses nan)."""
    puzzle = np.asarray(puzzle)
    counts = []
    for params in relabelings(n)[:relabelings_used]:
        solutions, guesses = search(apply_aug(puzzle, params, n), n)
        if solutions != 1:
            return Rating(float("nan"), False, tuple(counts))
        counts.append(int(guesses))
    return Rating(float(np.mean(counts)), True, tuple(counts))


# ----------------------------------------------------------------------------- a split's ratings

# Sudoku-Extreme grade on this rating (Sudoku-Extreme is drawn from puzzles like
# magictour's top95; its paper reports ~22 backtracks per puzzle on tdoku).
GRADE = {"mean": 20.0, "median": 10.0, "zero_share": 0.05}
BINS = (0, 1, 5, 10, 20, 50, 100, 200)  # histogram edges in guesses; the last bin is open


def summarise(ratings: np.ndarray) -> dict:
    """Distribution of one split's ratings and whether it reaches Sudoku-Extreme grade."""
    r = np.asarray(ratings, dtype=np.float64)
    if r.size == 0:
        return {"count": 0, "extreme_grade": False}
    counts = np.histogram(r, bins=[*BINS, np.inf])[0]
    out = {
        "count": int(r.size),
        "mean": float(r.mean()),
        "median": float(np.median(r)),
        "p90": float(np.quantile(r, 0.9)),
        "max": float(r.max()),
        "zero_share": float(np.mean(r == 0)),
        "histogram": {(f"{lo}-{hi}" if hi is not None else f">={lo}"): int(c)
                      for lo, hi, c in zip(BINS, [*BINS[1:], None], counts)},
    }
    out["extreme_grade"] = (out["mean"] >= GRADE["mean"] and out["median"] >= GRADE["median"]
                            and out["zero_share"] < GRADE["zero_share"])
    return out


def describe(name: str, s: dict) -> list[str]:
    """Two lines for a build log: a split's summary with its grade, and its histogram."""
    if not s.get("count"):
        return [f"{name}: no puzzles"]
    grade = "Sudoku-Extreme grade" if s["extreme_grade"] else "below Sudoku-Extreme grade"
    return [f"{name}: {s['count']} puzzles, guesses mean {s['mean']:.1f} median {s['median']:.1f} "
            f"p90 {s['p90']:.1f} max {s['max']:.0f}, {100 * s['zero_share']:.1f}% with none: {grade} "
            f"(mean >= {GRADE['mean']:g}, median >= {GRADE['median']:g}, < {100 * GRADE['zero_share']:g}% none)",
            f"{name} histogram (guesses: puzzles): " + ", ".join(f"{k}: {v}" for k, v in s["histogram"].items())]
