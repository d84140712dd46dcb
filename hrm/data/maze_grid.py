"""Maze grids: tokens, shortest paths (exact BFS on one grid, bit-parallel BFS on batches),
the exact checker of predicted paths and text rendering, shared by the generator and the
evaluation.

Grids are 1-D numpy arrays of length size*size (row-major), dtype uint8, holding
the tokens WALL, OPEN, START, GOAL, PATH = 1..5 (chars "# SGo"); 0 is PAD.

Path length
-----------
The length of a path is its number of MOVES (cells on it minus 1), so a path
S -> G between neighbours has length 1. A maze is kept iff its shortest S-G
length is strictly greater than `min_path`; the published "longer than 110" is
read as moves > 110 (at least 112 cells including S and G). `generate`,
`build` ("path_len") and the tests all use this definition.

Label
-----
The label is the input with the cells of ONE shortest path (S and G excluded)
set to PATH. The path is deterministic: BFS distances from S, then from G walk
back to S, always to the first neighbour at distance one less in the order up,
left, down, right. So the label is a function of the input. A dihedral
augmentation transforms input and label together; the label stays a shortest
path of the transformed input but its tie-break order is then rotated too.

Checking a prediction
---------------------
`is_optimal_path` accepts ANY shortest path, not only the label's: walls, S and
G must be copied, every other cell must be OPEN or PATH, S and G must have
exactly one neighbour in ON = PATH | {S, G}, every PATH cell exactly two, and
#PATH must equal d(S, G) - 1. Why that suffices: with these degrees the
component of S in ON is a simple path ending at G (the only other degree-1
cell) and every other component is a cycle; that S-G path runs over free
cells, so it has >= d(S, G) moves; #ON - 1 = d(S, G) leaves no cell for cycles
and makes the path exactly shortest.

"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

WALL, OPEN, START, GOAL, PATH = 1, 2, 3, 4, 5  # tokens; PAD = 0
VOCAB_SIZE = 6  # PAD + 5 tokens
CHARS = "# SGo"  # CHARS[t-1] is token t's char
MAX_SIZE = 64  # one uint64 bitmask per grid row (uint32 up to 32)
_MOVES = ((-1, 0), (0, -1), (1, 0), (0, 1))  # up, left, down, right: the label's tie-break order


# ----------------------------------------------------------------------------- exact BFS (one grid)


def _distances(free: np.ndarray, start: tuple[int, int], goal: tuple[int, int] | None = None) -> np.ndarray:
    """BFS distances (moves) from start over free cells, -1 where unreached; stops at goal's level."""
    h, w = free.shape
    dist = np.full((h, w), -1, np.int32)
    dist[start] = 0
    f = free.tolist()
    d = dist.tolist()  # Python lists: faster than numpy indexing in this loop
    todo = deque([start])
    while todo:
        r, c = todo.popleft()
        if (r, c) == goal:
            break
        k = d[r][c] + 1
        for dr, dc in _MOVES:
            y, x = r + dr, c + dc
            if 0 <= y < h and 0 <= x < w and f[y][x] and d[y][x] < 0:
                d[y][x] = k
                todo.append((y, x))
    return np.array(d, np.int32)


def shortest_path(walls: np.ndarray, start: tuple[int, int], goal: tuple[int, int]) -> list[tuple[int, int]] | None:
    """One shortest 4-neighbour path, start to goal inclusive; None if unreachable.

    walls is a 2-D bool grid (True = wall). Among equal paths the one found by
    walking back from goal to the first neighbour (up, left, down, right) whose
    distance is one less is returned, so the answer is deterministic.
    """
    free = ~np.asarray(walls, bool)
    if free.ndim != 2:
        raise ValueError(f"walls must be a 2-D grid, got shape {free.shape}")
    h, w = free.shape
    start, goal = tuple(int(v) for v in start), tuple(int(v) for v in goal)
    for name, (r, c) in (("start", start), ("goal", goal)):
        if not (0 <= r < h and 0 <= c < w) or not free[r, c]:
            raise ValueError(f"{name} {(r, c)} is outside the grid or on a wall")
    dist = _distances(free, start, goal)
    if dist[goal] < 0:
        return None
    path = [goal]
    r, c = goal
    for k in range(int(dist[goal]) - 1, -1, -1):
        for dr, dc in _MOVES:
            y, x = r + dr, c + dc
            if 0 <= y < h and 0 <= x < w and dist[y, x] == k:
                r, c = y, x
                break
        path.append((r, c))
    return path[::-1]


# ----------------------------------------------------------------------------- bit-parallel BFS (batches)


def word_type(n: int) -> type:
    """Unsigned integer type holding one grid row as a bitmask (uint32 where it fits: faster)."""
    if not 1 <= n <= MAX_SIZE:
        raise ValueError(f"maze size must be in 1..{MAX_SIZE}, got {n}")
    return np.uint32 if n <= 32 else np.uint64


def pack_rows(free: np.ndarray) -> np.ndarray:
    """(B, n, n) bool -> (n, B) row bitmasks, bit c of row r = cell (r, c)."""
    b, n, _ = free.shape
    word = word_type(n)
    size = np.dtype(word).itemsize
    packed = np.packbits(free, axis=-1, bitorder="little")
    if packed.shape[-1] != size:
        packed = np.concatenate([packed, np.zeros((b, n, size - packed.shape[-1]), np.uint8)], axis=-1)
    rows = packed.view(f"<u{size}")[..., 0]
    return np.ascontiguousarray(rows.T, dtype=word)


def cell_bits(cells: np.ndarray, n: int) -> np.ndarray:
    """(n, B) row bitmasks with only the given flat cell index set per column."""
    word = word_type(n)
    cells = np.asarray(cells, np.int64)
    bits = np.zeros((n, len(cells)), word)
    bits[cells // n, np.arange(len(cells))] = word(1) << (cells % n).astype(word)
    return bits


def grow(front: np.ndarray, avail: np.ndarray) -> np.ndarray:
    """Next BFS level: the 4-neighbours of `front` still in `avail` (removed from it, in place)."""
    one = front.dtype.type(1)
    nxt = front << one
    nxt |= front >> one
    nxt[1:] |= front[:-1]
    nxt[:-1] |= front[1:]
    nxt &= avail
    avail ^= nxt
    return nxt


def bit_distances(free: np.ndarray, start: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """Shortest S-G moves per column of (n, B) bit grids (-1 if unreachable)."""
    out = np.full(free.shape[1], -1, np.int64)
    idx = np.arange(free.shape[1])
    front, avail = start.copy(), free & ~start
    at_goal = (start & goal).any(0)
    out[at_goal] = 0
    keep = ~at_goal
    step = 0
    while True:
        if not keep.all():
            k = np.flatnonzero(keep)
            idx, front, avail, goal = idx[k], front[:, k], avail[:, k], goal[:, k]
        if not len(idx):
            return out
        step += 1
        front = grow(front, avail)
        hit = (front & goal).any(0)
        out[idx[hit]] = step
        keep = ~hit & front.any(0)


# ----------------------------------------------------------------------------- checking predictions


def _side(length: int) -> int:
    n = math.isqrt(length)
    if n * n != length or n < 1:
        raise ValueError(f"grid length {length} is not a square")
    return n


def is_optimal_path_batch(inputs: np.ndarray, preds: np.ndarray) -> np.ndarray:
    """(N,) bool: is each prediction the input with one shortest S-G path marked?

    See the module docstring for the exact rules. Raises ValueError on malformed
    inputs (shapes, tokens outside WALL..GOAL, not exactly one S and one G).
    """
    inputs, preds = np.asarray(inputs), np.asarray(preds)
    if inputs.ndim != 2 or inputs.shape != preds.shape:
        raise ValueError(f"expected two (N, size*size) arrays of one shape, got {inputs.shape} and {preds.shape}")
    num, length = inputs.shape
    n = _side(length)
    x = inputs.astype(np.int64)
    y = preds.astype(np.int64)
    if ((x < WALL) | (x > GOAL)).any():
        raise ValueError("inputs may only hold WALL, OPEN, START and GOAL tokens")
    if ((x == START).sum(1) != 1).any() or ((x == GOAL).sum(1) != 1).any():
        raise ValueError("every input needs exactly one START and one GOAL")
    fixed = x != OPEN
    ok = ((y >= WALL) & (y <= PATH)).all(1)  # no PAD, nothing out of range
    ok &= np.where(fixed, y == x, (y == OPEN) | (y == PATH)).all(1)
    on = ((y == PATH) | (y == START) | (y == GOAL)).reshape(num, n, n)
    pad = np.pad(on, ((0, 0), (1, 1), (1, 1)))
    deg = (pad[:, :-2, 1:-1].astype(np.int8) + pad[:, 2:, 1:-1] + pad[:, 1:-1, :-2] + pad[:, 1:-1, 2:]).reshape(num, -1)
    ends = (y == START) | (y == GOAL)
    ok &= np.where(ends, deg == 1, True).all(1)
    ok &= np.where(y == PATH, deg == 2, True).all(1)
    rows = np.flatnonzero(ok)
    if len(rows):
        xs = x[rows]
        bits = pack_rows((xs != WALL).reshape(-1, n, n))
        dist = bit_distances(bits, cell_bits((xs == START).argmax(1), n), cell_bits((xs == GOAL).argmax(1), n))
        npath = (y[rows] == PATH).sum(1)
        ok[rows] = (dist > 0) & (npath == dist - 1)
    return ok


def is_optimal_path(inputs: np.ndarray, pred: np.ndarray) -> bool:
    """True iff `pred` (1-D tokens) is `inputs` with one shortest S-G path marked PATH."""
    inputs, pred = np.asarray(inputs), np.asarray(pred)
    if inputs.ndim != 1 or pred.ndim != 1:
        raise ValueError(f"expected 1-D token arrays, got shapes {inputs.shape} and {pred.shape}")
    return bool(is_optimal_path_batch(inputs[None], pred[None])[0])


# ----------------------------------------------------------------------------- text


def render_text(tokens: np.ndarray) -> str:
    """The grid as size lines of CHARS (no trailing newline)."""
    t = np.asarray(tokens).ravel()
    n = _side(len(t))
    if ((t < WALL) | (t > PATH)).any():
        raise ValueError(f"tokens must lie in {WALL}..{PATH} to be rendered")
    chars = np.array(list(CHARS))[t.astype(np.int64) - 1].reshape(n, n)
    return "\n".join("".join(row) for row in chars.tolist())


def parse_text(text: str) -> np.ndarray:
    """Inverse of render_text: a square block of CHARS -> 1-D uint8 tokens (one trailing newline allowed)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines = lines[:-1]
    lines = [line.removesuffix("\r") for line in lines]
    n = len(lines)
    if n == 0 or any(len(line) != n for line in lines):
        raise ValueError(f"expected a square grid of characters, got {n} lines of lengths {sorted({len(s) for s in lines})}")
    table = {ch: i + 1 for i, ch in enumerate(CHARS)}
    bad = set("".join(lines)) - set(table)
    if bad:
        raise ValueError(f"unknown maze characters {sorted(bad)}; allowed are {CHARS!r}")
    return np.array([table[ch] for line in lines for ch in line], np.uint8)
