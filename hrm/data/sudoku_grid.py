"""Sudoku grids, shared by the solver, the generator, the rating and the evaluation: the
geometry (boxes, units, peers), validity, HRM's augmentation and an augmentation-invariant
signature.

Grids are 1-D numpy arrays of length n*n (row-major), 0 = blank and 1..n = digits, for n
in SIZES with boxes 2x2 (n=4), 2 rows x 3 cols (n=6), 3x3 (n=9).

Augmentation is HRM's: digit permutation, optional transpose, band/row and stack/column
shuffles, each stored with its parameters and invertible (`apply_aug` gives the exact
order and the parameter layout).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

SIZES = (4, 6, 9)




def box_shape(n: int) -> tuple[int, int]:
    """(rows, cols) of a box: 2x2 for 4, 2x3 for 6, 3x3 for 9."""
    shapes = {4: (2, 2), 6: (2, 3), 9: (3, 3)}
    if n not in shapes:
        raise ValueError(f"unsupported Sudoku size {n}; allowed sizes are {SIZES}")
    return shapes[n]


@lru_cache(maxsize=None)
def units(n: int) -> np.ndarray:
    """(3n, n) cell indices of all rows, columns and boxes."""
    br, bc = box_shape(n)
    cells = np.arange(n * n).reshape(n, n)
    boxes = [cells[r:r + br, c:c + bc].ravel() for r in range(0, n, br) for c in range(0, n, bc)]
    return np.concatenate([cells, cells.T, np.array(boxes)])


@lru_cache(maxsize=None)
def peer_tables(n: int) -> tuple[tuple[tuple[int, ...], ...], list[int]]:
    """Peers of every cell (tuples of Python ints) and a popcount table for n-bit masks."""
    peers = [set() for _ in range(n * n)]
    for unit in units(n).tolist():
        for c in unit:
            peers[c].update(unit)
    peers = tuple(tuple(sorted(p - {c})) for c, p in enumerate(peers))
    pop = [bin(m).count("1") for m in range(1 << n)]
    return peers, pop


def valid_rows(grids: np.ndarray, n: int) -> np.ndarray:
    """Bool per row of a (B, n*n) array: complete and every unit a permutation of 1..n."""
    g = np.asarray(grids)
    g = np.where((g >= 1) & (g <= n), g, 0).astype(np.int16)  # out-of-range values become "missing"
    masks = np.bitwise_or.reduce(np.int16(1) << g[:, units(n)], axis=2)  # int16: 2^9 fits, halves memory
    return (masks == (1 << (n + 1)) - 2).all(axis=1)  # bits 1..n all set


def is_valid_solution(grid: np.ndarray, n: int) -> bool:
    """True if `grid` is complete and all rows, columns and boxes are permutations of 1..n."""
    grid = np.asarray(grid)
    if grid.shape != (n * n,):
        return False
    return bool(valid_rows(grid[None], n)[0])


# ----------------------------------------------------------------------------- augmentation


def aug_len(n: int) -> int:
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
    if p.shape[-1:] != (aug_len(n),) or p.ndim > 2:
        raise ValueError(f"augmentation params for n={n} must have shape (..., {aug_len(n)}), got {p.shape}")
    p = p.reshape(-1, aug_len(n)).astype(np.intp)
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


# ----------------------------------------------------------------------------- signature


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
