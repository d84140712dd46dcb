"""A Sudoku solver: bitmask depth-first search on Python ints, used to draw complete grids
and to test removals while minimising a puzzle.

Each cell holds its candidates as a bitmask (bit d-1 = digit d); the only propagation is
*naked singles*, then the search branches on the empty cell with the fewest candidates
(MRV; ties go to the cell that comes first in `order`) and tries its digits in increasing
order (or in a random order, to draw grids). A removal is checked in one search:
blanking cell c (digit d) of a unique puzzle keeps it unique iff no solution has c != d.
Difficulty is rated elsewhere (`hrm.data.sudoku_rating`, a stronger solver).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hrm.data.sudoku_grid import box_shape, peer_tables


@dataclass(frozen=True)
class SolveResult:
    solutions: list[np.ndarray]  # up to `limit` solutions found
    backtracks: int  # dead ends (tried digits whose propagation failed) met by the DFS


class _DFS:
    """One search: its tables, its options and what it found (solutions, dead ends)."""

    def __init__(self, n: int, limit: int, order, rng):
        self.n, self.limit, self.rng = n, limit, rng
        self.peers, self.pop = peer_tables(n)
        self.order = range(n * n) if order is None else np.asarray(order).tolist()
        self.sols: list[list[int]] = []
        self.dead = 0

    def propagate(self, grid: list[int], cand: list[int], todo: list[tuple[int, int]]) -> bool:
        """Place each (cell, digit) of `todo` and every naked single it creates; False on a contradiction."""
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
            for p in self.peers[c]:
                m = cand[p]
                if m & bit:
                    m ^= bit
                    if not m:
                        return False
                    cand[p] = m
                    if not m & (m - 1):
                        todo.append((p, m.bit_length()))
        return True

    def dfs(self, grid: list[int], cand: list[int]) -> None:
        best, best_k = -1, self.n + 1
        for c in self.order:
            m = cand[c]
            if m:
                k = self.pop[m]
                if k < best_k:
                    best, best_k = c, k
                    if k == 2:  # after propagation no empty cell has fewer than 2
                        break
        if best < 0:
            self.sols.append(grid)
            return
        m = cand[best]
        digits = [d + 1 for d in range(self.n) if m >> d & 1]
        if self.rng is not None:
            digits = [digits[i] for i in self.rng.permutation(len(digits))]
        for d in digits:
            g, cd = grid[:], cand[:]
            if self.propagate(g, cd, [(best, d)]):
                self.dfs(g, cd)
                if len(self.sols) >= self.limit:
                    return
            else:
                self.dead += 1


def _search(puzzle, n: int, limit: int, order=None, forbid=None, rng=None):
    """Core DFS on Python ints. Returns (solutions as lists, backtracks).

    forbid=(cell, digit) removes one candidate before the search (used for the
    uniqueness test of a removal); rng, if given, shuffles the digit order at each
    branch (used to draw random complete grids).
    """
    search = _DFS(n, limit, order, rng)
    size = n * n
    grid, cand = [0] * size, [(1 << n) - 1] * size
    todo = [(c, d) for c, d in enumerate(puzzle) if d]
    if forbid is not None:
        c, d = forbid
        cand[c] &= ~(1 << (d - 1))
        if cand[c] & (cand[c] - 1) == 0:
            todo.append((c, cand[c].bit_length()))
    if any(not 0 <= d <= n for _, d in todo):
        raise ValueError(f"puzzle values must lie in 0..{n}")
    if search.propagate(grid, cand, todo):
        search.dfs(grid, cand)
    return search.sols, search.dead


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
    without a search (faster minimal puzzles; the late, exhaustive
    checks near minimality dominate the cost).
    """
    peers, _ = peer_tables(n)
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


def random_solution(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random complete grid: DFS from the empty grid with random tie-breaks and digit order."""
    box_shape(n)
    sols, _ = _search([0] * (n * n), n, 1, order=rng.permutation(n * n), rng=rng)
    return np.array(sols[0], dtype=np.uint8)
