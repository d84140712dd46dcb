"""Sudoku: a local puzzle generator, a DFS solver that rates difficulty, HRM-style
augmentation, and a reader for the published Sudoku-Extreme CSV files.

Grids are 1-D numpy arrays of length n*n (row-major), dtype uint8, 0 = blank and
1..n = digits, for n in SIZES with boxes 2x2 (n=4), 2 rows x 3 cols (n=6), 3x3 (n=9).

Solver and rating
-----------------
`solve` is a bitmask depth-first search on Python ints, used to draw complete grids
and to test removals while minimising. Each cell holds its candidates as a bitmask
(bit d-1 = digit d); the only propagation is *naked singles*, then the search
branches on the empty cell with the fewest candidates (MRV; ties go to the cell
that comes first in `order`) and tries its digits in increasing order.

Difficulty is rated by `hrm.data.sudoku_rating`: the mean, over a fixed set of
relabelings, of the guesses a stronger solver (naked and hidden singles, MRV) makes
in the whole search tree that proves uniqueness. It is stored per puzzle (column
`rating`) and `summarise` gives a split's distribution and whether it reaches
Sudoku-Extreme grade (mean >= 20 guesses, median >= 10, under 5% with none).

Generation
----------
Everything is drawn from the numpy Generator passed in (no global RNG).
"easy" blanks a given number of random cells, skipping removals that would break
uniqueness; "minimal" blanks cells in random order while the puzzle stays unique;
"hard" searches locally from a minimal puzzle of one solution grid (see `_hard`:
remove, add or move givens, annealed acceptance on the rating) until the rating
reaches a target, which finds hard puzzles far faster than drawing minimal ones
and keeping the hardest. A removal is checked in one search: blanking cell c
(digit d) of a unique puzzle keeps it unique iff no solution has c != d.

Augmentation
------------
As in HRM: digit permutation, optional transpose, band/row and stack/column
shuffles. See `apply_aug` for the exact order and the parameter layout.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np

from hrm.data.splits import draw_disjoint

SIZES = (4, 6, 9)
DIFFICULTIES = ("easy", "minimal", "hard")
Progress = Callable[[int, int], None] | None


# ----------------------------------------------------------------------------- geometry


def box_shape(n: int) -> tuple[int, int]:
    """(rows, cols) of a box: 2x2 for 4, 2x3 for 6, 3x3 for 9."""
    shapes = {4: (2, 2), 6: (2, 3), 9: (3, 3)}
    if n not in shapes:
        raise ValueError(f"unsupported Sudoku size {n}; allowed sizes are {SIZES}")
    return shapes[n]


@lru_cache(maxsize=None)
def _units(n: int) -> np.ndarray:
    """(3n, n) cell indices of all rows, columns and boxes."""
    br, bc = box_shape(n)
    cells = np.arange(n * n).reshape(n, n)
    boxes = [cells[r:r + br, c:c + bc].ravel() for r in range(0, n, br) for c in range(0, n, bc)]
    return np.concatenate([cells, cells.T, np.array(boxes)])


@lru_cache(maxsize=None)
def _tables(n: int) -> tuple[tuple[tuple[int, ...], ...], list[int]]:
    """Peers of every cell (tuples of Python ints) and a popcount table for n-bit masks."""
    peers = [set() for _ in range(n * n)]
    for unit in _units(n).tolist():
        for c in unit:
            peers[c].update(unit)
    peers = tuple(tuple(sorted(p - {c})) for c, p in enumerate(peers))
    pop = [bin(m).count("1") for m in range(1 << n)]
    return peers, pop


def _valid_rows(grids: np.ndarray, n: int) -> np.ndarray:
    """Bool per row of a (B, n*n) array: complete and every unit a permutation of 1..n."""
    g = np.asarray(grids)
    g = np.where((g >= 1) & (g <= n), g, 0).astype(np.int16)  # out-of-range values become "missing"
    masks = np.bitwise_or.reduce(np.int16(1) << g[:, _units(n)], axis=2)  # int16: 2^9 fits, halves memory
    return (masks == (1 << (n + 1)) - 2).all(axis=1)  # bits 1..n all set


def is_valid_solution(grid: np.ndarray, n: int) -> bool:
    """True if `grid` is complete and all rows, columns and boxes are permutations of 1..n."""
    grid = np.asarray(grid)
    if grid.shape != (n * n,):
        return False
    return bool(_valid_rows(grid[None], n)[0])


# ----------------------------------------------------------------------------- solver


@dataclass(frozen=True)
class SolveResult:
    solutions: list[np.ndarray]  # up to `limit` solutions found
    backtracks: int  # dead ends (tried digits whose propagation failed) met by the DFS


def _search(puzzle, n: int, limit: int, order=None, forbid=None, rng=None):
    """Core DFS on Python ints. Returns (solutions as lists, backtracks).

    forbid=(cell, digit) removes one candidate before the search (used for the
    uniqueness test of a removal); rng, if given, shuffles the digit order at each
    branch (used to draw random complete grids).
    """
    peers, pop = _tables(n)
    size = n * n
    order = range(size) if order is None else np.asarray(order).tolist()
    full = (1 << n) - 1
    grid = [0] * size
    cand = [full] * size
    todo = [(c, d) for c, d in enumerate(puzzle) if d]
    if forbid is not None:
        c, d = forbid
        cand[c] &= ~(1 << (d - 1))
        if cand[c] & (cand[c] - 1) == 0:
            todo.append((c, cand[c].bit_length()))
    sols: list[list[int]] = []
    dead = 0

    def propagate(grid, cand, todo) -> bool:
        while todo:
            c, d = todo.pop()
            if grid[c]:
                if grid[c] != d:
                    return False
                continue
            bit = 1 << (d - 1)
            if not cand[c] & bit:
                return False
            grid[c] = d
            cand[c] = 0
            for p in peers[c]:
                m = cand[p]
                if m & bit:
                    m ^= bit
                    if not m:
                        return False
                    cand[p] = m
                    if not m & (m - 1):
                        todo.append((p, m.bit_length()))
        return True

    def dfs(grid, cand) -> None:
        nonlocal dead
        best, best_k = -1, n + 1
        for c in order:
            m = cand[c]
            if m:
                k = pop[m]
                if k < best_k:
                    best, best_k = c, k
                    if k == 2:  # after propagation no empty cell has fewer than 2
                        break
        if best < 0:
            sols.append(grid)
            return
        m = cand[best]
        digits = [d + 1 for d in range(n) if m >> d & 1]
        if rng is not None:
            digits = [digits[i] for i in rng.permutation(len(digits))]
        for d in digits:
            g, cd = grid[:], cand[:]
            if propagate(g, cd, [(best, d)]):
                dfs(g, cd)
                if len(sols) >= limit:
                    return
            else:
                dead += 1

    if any(not 0 <= d <= n for _, d in todo):
        raise ValueError(f"puzzle values must lie in 0..{n}")
    if propagate(grid, cand, todo):
        dfs(grid, cand)
    return sols, dead


def _check_grid(puzzle, n: int) -> np.ndarray:
    box_shape(n)
    puzzle = np.asarray(puzzle)
    if puzzle.shape != (n * n,):
        raise ValueError(f"expected a flat grid of {n * n} cells, got shape {puzzle.shape}")
    return puzzle


def solve(puzzle: np.ndarray, n: int, limit: int = 2, order: np.ndarray | None = None) -> SolveResult:
    """Find up to `limit` solutions (see the module docstring for the search)."""
    puzzle = _check_grid(puzzle, n)
    if order is not None and sorted(np.asarray(order).tolist()) != list(range(n * n)):
        raise ValueError(f"order must be a permutation of the {n * n} cells")
    sols, dead = _search(puzzle.tolist(), n, limit, order)
    return SolveResult([np.array(s, dtype=np.uint8) for s in sols], dead)


def count_solutions(puzzle: np.ndarray, n: int, limit: int = 2) -> int:
    """Number of solutions, counted up to `limit`."""
    puzzle = _check_grid(puzzle, n)
    return len(_search(puzzle.tolist(), n, limit)[0])


def _removable(puzzle: list[int], cell: int, digit: int, n: int) -> bool:
    """Can `cell` (holding `digit`) be blanked in a unique puzzle without losing uniqueness?"""
    puzzle[cell] = 0
    try:
        return not _search(puzzle, n, 1, forbid=(cell, digit))[0]
    finally:
        puzzle[cell] = digit


def _minimise(puzzle: list[int], n: int, rng: np.random.Generator, stop: int | None = None) -> int:
    """Blank givens of a unique puzzle in random order while it stays unique (in place).

    Stops after `stop` removals if given. Returns the number of cells blanked. A
    given whose peers already hold every other digit is forced, so it is blanked
    without a search (about 15% faster minimal puzzles; the late, exhaustive
    checks near minimality dominate the cost).
    """
    peers, _ = _tables(n)
    every = (1 << (n + 1)) - 1  # bit 0 (blank) and bits 1..n (digits)
    removed = 0
    for c in rng.permutation(n * n).tolist():
        if stop is not None and removed >= stop:
            break
        d = puzzle[c]
        if not d:
            continue
        seen = 1 | 1 << d
        for p in peers[c]:
            seen |= 1 << puzzle[p]
        if seen == every or _removable(puzzle, c, d, n):
            puzzle[c] = 0
            removed += 1
    return removed


# ----------------------------------------------------------------------------- generation


def random_solution(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random complete grid: DFS from the empty grid with random tie-breaks and digit order."""
    box_shape(n)
    sols, _ = _search([0] * (n * n), n, 1, order=rng.permutation(n * n), rng=rng)
    return np.array(sols[0], dtype=np.uint8)


def rate(puzzle: np.ndarray, n: int) -> float:
    """The puzzle's rating: mean guesses over the fixed relabelings (`hrm.data.sudoku_rating`)."""
    from hrm.data.sudoku_rating import rate as rating

    r = rating(_check_grid(puzzle, n), n)
    if not r.unique:
        raise ValueError("a rated puzzle must have exactly one solution")
    return r.guesses


# Local search for hard puzzles (`_hard`), chosen by measurement (9x9, 60 puzzles per
# setting, 2 processes; "held-out" = rated on 8 other relabelings than the fixed set):
#   target 30, 8000 steps:              0.8 s/puzzle/core, mean 21.8, held-out mean 19.1
#   target 40, 16000 steps:             1.5 s/puzzle/core, mean 28.4, held-out mean 25.4 (kept)
#   target 35, 10000 steps, 8 in climb: 1.5 s/puzzle/core, mean 26.0, held-out mean 21.5
# and a start temperature of 5 (against 2) halved the ratings. 6x6 and 4x4 puzzles are
# almost all solved by singles, so their targets are low.
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
    from hrm.data.sudoku_rating import rate as rating

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


# ----------------------------------------------------------------------------- augmentation


def _aug_len(n: int) -> int:
    return 3 * n + 2  # digit map (n+1) + transpose flag (1) + row perm (n) + col perm (n)


def identity_aug(n: int) -> np.ndarray:
    """Parameters of the identity transform."""
    box_shape(n)
    return np.concatenate([np.arange(n + 1), [0], np.arange(n), np.arange(n)]).astype(np.int16)


def random_aug(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random validity-preserving transform as a flat int16 vector of length 3n+2.

    Layout: [digit_map (n+1, digit_map[0]=0), transpose flag (1), row_perm (n),
    col_perm (n)]. row_perm shuffles the bands of box-rows, then the rows inside
    each band; col_perm likewise with stacks. The transpose is drawn (p=0.5) only
    for square boxes (n=4, 9): for 6x6 the 2x3 boxes would become 3x2 and the
    box constraint would break, so 6x6 never transposes.
    """
    br, bc = box_shape(n)
    digits = np.concatenate([[0], rng.permutation(n) + 1])
    flag = int(br == bc and rng.random() < 0.5)
    rows = np.concatenate([b * br + rng.permutation(br) for b in rng.permutation(n // br)])
    cols = np.concatenate([s * bc + rng.permutation(bc) for s in rng.permutation(n // bc)])
    return np.concatenate([digits, [flag], rows, cols]).astype(np.int16)


def _split(params: np.ndarray, n: int):
    """(digit_map, flag, row_perm, col_perm), each with a leading batch axis."""
    box_shape(n)
    p = np.asarray(params)
    if p.shape[-1:] != (_aug_len(n),) or p.ndim > 2:
        raise ValueError(f"augmentation params for n={n} must have shape (..., {_aug_len(n)}), got {p.shape}")
    p = p.reshape(-1, _aug_len(n)).astype(np.intp)
    return p[:, :n + 1], p[:, n + 1].astype(bool), p[:, n + 2:2 * n + 2], p[:, 2 * n + 2:]


def apply_aug(grid: np.ndarray, params: np.ndarray, n: int) -> np.ndarray:
    """Transform a grid (n*n,) or a batch (B, n*n); blanks (0) stay 0.

    With x the grid as an n x n matrix and (D, t, R, C) = the parameters:
        y = x.T if t else x
        out[r, c] = D[y[R[r], C[c]]]
    i.e. the output's row r is the (transposed) input's row R[r]. The digit map
    commutes with the moves, so this is "relabel, transpose, permute rows/cols".
    params is one vector (applied to every row of a batch) or a (B, 3n+2) batch
    with one transform per row. The dtype of `grid` is kept.
    """
    grid = np.asarray(grid)
    if grid.shape[-1:] != (n * n,) or grid.ndim > 2:
        raise ValueError(f"expected grids of shape (..., {n * n}), got {grid.shape}")
    dm, flag, rp, cp = _split(params, n)
    g = grid.reshape(-1, n, n)
    if len(dm) not in (1, len(g)):
        raise ValueError(f"{len(dm)} transforms for {len(g)} grids")
    g = np.where(flag[:, None, None], g.swapaxes(1, 2), g)
    g = g[np.arange(len(g))[:, None, None], rp[:, :, None], cp[:, None, :]]
    g = dm[np.arange(len(dm))[:, None, None], g]
    return g.reshape(grid.shape).astype(grid.dtype)


def invert_aug(params: np.ndarray, n: int) -> np.ndarray:
    """Parameters of the inverse transform (same shape as `params`).

    Without transpose the inverse permutes rows by R^-1 and columns by C^-1. With
    it, x[i, j] = y[R^-1[j], C^-1[i]], which in the same layout is transpose then
    rows C^-1 and columns R^-1 (valid, as transposes only occur with square boxes).
    """
    dm, flag, rp, cp = _split(params, n)
    ri, ci = np.argsort(rp, axis=1), np.argsort(cp, axis=1)  # argsort of a permutation = inverse
    f = flag[:, None]
    out = np.concatenate([np.argsort(dm, axis=1), f, np.where(f, ci, ri), np.where(f, ri, ci)], axis=1)
    return out.astype(np.int16).reshape(np.shape(params))


# ----------------------------------------------------------------------------- CSV


CSV_HEADER = "source,question,answer,rating"
CSV_CHUNK = 1 << 15  # lines parsed per numpy batch: bounds memory on the 3.8M-line train file


def read_csv(path, n: int = 9) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Read a Sudoku-Extreme CSV: (puzzles (N, n*n) uint8, solutions uint8, ratings float32, sources).

    Blanks are '.' or '0'. Lines are split from the right (rsplit), so a source
    may contain commas. Each chunk is validated with numpy; a bad line raises
    ValueError naming the file, the 1-based line number and the problem.
    """
    box_shape(n)
    size = n * n
    name = os.fspath(path)
    puzzles, sols, ratings, sources = [], [], [], []
    intern: dict[str, str] = {}  # few distinct sources: share the string objects
    with open(path, encoding="utf-8-sig") as f:  # -sig: tolerate a BOM
        header = f.readline().strip()
        if header != CSV_HEADER:
            raise ValueError(f"{name}:1: expected header {CSV_HEADER!r}, got {header!r}")
        line_no = 1
        while True:
            lines = f.readlines(CSV_CHUNK * 200)  # size hint in bytes, ~200 per line
            if not lines:
                break
            first = line_no + 1
            qs, ans, rs = [], [], []
            for i, line in enumerate(lines):
                parts = line.rstrip("\r\n").rsplit(",", 3)
                if len(parts) != 4:
                    raise ValueError(f"{name}:{first + i}: expected 4 comma-separated fields, got {len(parts)}")
                src, q, a, r = parts
                for field, text in (("question", q), ("answer", a)):
                    if len(text) != size or not text.isascii():
                        raise ValueError(f"{name}:{first + i}: {field} must be {size} ASCII characters, got {len(text)}")
                try:
                    rs.append(float(r))
                except ValueError:
                    raise ValueError(f"{name}:{first + i}: rating {r!r} is not a number") from None
                qs.append(q)
                ans.append(a)
                sources.append(intern.setdefault(src, src))
            line_no += len(lines)
            q = np.frombuffer("".join(qs).encode(), np.uint8).reshape(-1, size)
            a = np.frombuffer("".join(ans).encode(), np.uint8).reshape(-1, size)
            q = np.where(q == ord("."), ord("0"), q) - ord("0")
            a = a - ord("0")
            _check_chunk(q, a, n, name, first)
            puzzles.append(q.astype(np.uint8))
            sols.append(a.astype(np.uint8))
            ratings.append(np.array(rs, np.float32))
    if not puzzles:
        empty = np.zeros((0, size), np.uint8)
        return empty, empty.copy(), np.zeros(0, np.float32), []
    return np.concatenate(puzzles), np.concatenate(sols), np.concatenate(ratings), sources


def _check_chunk(q: np.ndarray, a: np.ndarray, n: int, name: str, first: int) -> None:
    """Raise on the first bad row: bad characters, givens not matching, invalid answer."""
    checks = (
        ((q > n).any(axis=1), f"question may only hold '.', '0' and 1..{n}"),
        (((a < 1) | (a > n)).any(axis=1), f"answer may only hold digits 1..{n}"),
        (((q != 0) & (q != a)).any(axis=1), "answer does not match the question's givens"),
    )
    for bad, what in checks:
        if bad.any():
            raise ValueError(f"{name}:{first + int(bad.argmax())}: {what}")
    bad = ~_valid_rows(a, n)
    if bad.any():
        raise ValueError(f"{name}:{first + int(bad.argmax())}: answer is not a valid {n}x{n} solution")


# ----------------------------------------------------------------------------- dataset build


def signature(puzzle: np.ndarray, n: int) -> tuple:
    """A key equal for all augmentations of a puzzle (digit map, transpose, row/col moves).

    Each given is described by the number of givens in its row, column, box, band,
    stack and of its digit; the key is the sorted multiset of these, taking the
    smaller of it and its row<->column swapped version (transpose). Equivalent
    puzzles always share the key; different puzzles rarely do, so using it to keep
    train and test apart is conservative (it may drop a few non-equivalent ones).
    """
    br, bc = box_shape(n)
    g = np.asarray(puzzle).reshape(n, n)
    r, c = np.nonzero(g)
    d = g[r, c]
    rows, cols = np.bincount(r, minlength=n), np.bincount(c, minlength=n)
    box = (r // br) * (n // bc) + c // bc
    boxes, digits = np.bincount(box, minlength=n), np.bincount(d, minlength=n + 1)
    bands, stacks = np.bincount(r // br, minlength=n // br), np.bincount(c // bc, minlength=n // bc)
    feats = [rows[r], cols[c], boxes[box], bands[r // br], stacks[c // bc], digits[d]]
    a = sorted(zip(*(x.tolist() for x in feats)))
    b = sorted(zip(*(feats[i].tolist() for i in (1, 0, 2, 4, 3, 5))))  # rows<->cols, bands<->stacks
    return (n, tuple(min(a, b)))


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
    augs = np.empty((count, k, _aug_len(n)), np.int16)
    augs[:, 0] = identity_aug(n)
    for i in range(count):
        for j in range(1, k):
            augs[i, j] = random_aug(n, rng)
    augs = augs.reshape(-1, _aug_len(n))
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
