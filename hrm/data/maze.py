"""Maze-Hard: a generator of the published 30x30 mazes, an exact checker of predicted
paths, text rendering, and the dataset build.

Grids are 1-D numpy arrays of length size*size (row-major), dtype uint8, holding
the tokens WALL, OPEN, START, GOAL, PATH = 1..5 (chars "# SGo"); 0 is PAD.

Path length
-----------
The length of a path is its number of MOVES (cells on it minus 1), so a path
S -> G between neighbours has length 1. A maze is kept iff its shortest S-G
length is strictly greater than `min_path`; the published "longer than 110" is
read as moves > 110 (at least 112 cells including S and G). `generate`,
`build` ("path_len") and the tests all use this definition.

Generation (the Searchformer procedure, as in HRM)
--------------------------------------------------
One *try*: wall fraction p ~ U[0.3, 0.5); every cell is a wall with probability
p, independently; start and goal are two distinct cells drawn uniformly among
the free cells. The try is accepted iff a 4-neighbour path exists and its
shortest length is > min_path; otherwise a fresh try is drawn (plain rejection).
This keeps the published distribution (up to 2^-32 rounding of p per cell). We
do NOT pick the goal among the cells far from the start after one BFS: that
re-weights each (walls, start) draw by 1 / (its number of far cells) and
favours barely-long mazes (measured at 12x12/20 over 3000 mazes: mean shortest
path 22.5 moves vs 24.0 for plain rejection and 24.0 for this code).
Acceptance is rare (1.6e-5 per try at 30x30/110: ~60k tries per maze; accepted
mazes have p ~0.375, near the site-percolation threshold 0.41), so a try must
cost microseconds (~6.5 us measured):
  * tries are drawn in batches; each try takes exactly 3 + ceil(size^2 / 2) raw
    64-bit words of the stream in order (see `_tries`), so the result is the
    first accepted try whatever the batch size;
  * the screen is a bit-parallel bidirectional BFS: every grid row is a uint32
    (uint64 above 32 columns) bitmask, one BFS level is a few shifts/ands over
    an (size, batch) array, and balls of radius ceil(m/2) around S and
    floor(m/2) around G (m = min_path) are grown. d(S, G) <= m iff the balls
    meet; if a frontier dies first, S and G lie in different components. Either
    way the try is rejected, so a try ends after ~10 levels on average instead
    of a full BFS;
  * the few survivors get an exact distance (bit BFS from S up to G).

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

Dataset
-------
`build` follows `sudoku.build`: SeedSequence(seed) spawns (train, test, aug)
streams and every maze its own child seed, so the output does not depend on
`workers`; test mazes equal to a train maze under any of the 8 dihedral maps
are redrawn. Augmentation (none in HRM: num_aug=0) applies distinct dihedral
maps 1..7, drawn without replacement, to each train maze.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Callable

import numpy as np

from hrm.data.splits import draw_disjoint

from hrm.data.augment import dihedral

WALL, OPEN, START, GOAL, PATH = 1, 2, 3, 4, 5  # tokens; PAD = 0
VOCAB_SIZE = 6  # PAD + 5 tokens
CHARS = "# SGo"  # CHARS[t-1] is token t's char
WALL_LO, WALL_HI = 0.3, 0.5  # wall fraction range of the published generator
MAX_SIZE = 64  # one uint64 bitmask per grid row (uint32 up to 32)
TRY_BATCH = 1024  # tries screened per numpy call (measured at 30x30: 512 ~1.6x slower, 2048 no faster)
# Default try cap of `generate`: 30x30/110 needs ~60k tries per maze (geometric), so
# a cap of 1e5 would fail ~20% of mazes; 1e7 (~1 min) fails with odds ~e^-160.
MAX_TRIES = 10_000_000
COMPACT_EVERY = 3  # BFS levels between dropping finished tries from a batch
Progress = Callable[[int, int], None] | None

_MOVES = ((-1, 0), (0, -1), (1, 0), (0, 1))  # up, left, down, right: the label's tie-break order


# ----------------------------------------------------------------------------- exact BFS (one grid)


def _distances(free: np.ndarray, start: tuple[int, int], goal: tuple[int, int] | None = None) -> np.ndarray:
    """BFS distances (moves) from start over free cells, -1 where unreached; stops at goal's level."""
    h, w = free.shape
    dist = np.full((h, w), -1, np.int32)
    dist[start] = 0
    f = free.tolist()
    d = dist.tolist()  # Python lists: ~5x faster than numpy indexing in the loop
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


def _word(n: int) -> type:
    """Unsigned integer type holding one grid row as a bitmask (uint32 is ~2x faster)."""
    if not 1 <= n <= MAX_SIZE:
        raise ValueError(f"maze size must be in 1..{MAX_SIZE}, got {n}")
    return np.uint32 if n <= 32 else np.uint64


def _pack(free: np.ndarray) -> np.ndarray:
    """(B, n, n) bool -> (n, B) row bitmasks, bit c of row r = cell (r, c)."""
    b, n, _ = free.shape
    word = _word(n)
    size = np.dtype(word).itemsize
    packed = np.packbits(free, axis=-1, bitorder="little")
    if packed.shape[-1] != size:
        packed = np.concatenate([packed, np.zeros((b, n, size - packed.shape[-1]), np.uint8)], axis=-1)
    rows = packed.view(f"<u{size}")[..., 0]
    return np.ascontiguousarray(rows.T, dtype=word)


def _cell_bits(cells: np.ndarray, n: int) -> np.ndarray:
    """(n, B) row bitmasks with only the given flat cell index set per column."""
    word = _word(n)
    cells = np.asarray(cells, np.int64)
    bits = np.zeros((n, len(cells)), word)
    bits[cells // n, np.arange(len(cells))] = word(1) << (cells % n).astype(word)
    return bits


def _grow(front: np.ndarray, avail: np.ndarray) -> np.ndarray:
    """Next BFS level: the 4-neighbours of `front` still in `avail` (removed from it, in place)."""
    one = front.dtype.type(1)
    nxt = front << one
    nxt |= front >> one
    nxt[1:] |= front[:-1]
    nxt[:-1] |= front[1:]
    nxt &= avail
    avail ^= nxt
    return nxt


def _bit_distances(free: np.ndarray, start: np.ndarray, goal: np.ndarray) -> np.ndarray:
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
        front = _grow(front, avail)
        hit = (front & goal).any(0)
        out[idx[hit]] = step
        keep = ~hit & front.any(0)


def _screen(free: np.ndarray, start: np.ndarray, goal: np.ndarray, min_path: int) -> np.ndarray:
    """Bool per column of (n, B) bit grids: False where d(S, G) <= min_path or S and G
    are provably apart (a ball's frontier died); True means d(S, G) > min_path or
    unreachable (see the module docstring)."""
    rs, rg = (min_path + 1) // 2, min_path // 2  # ball radii, rs + rg = min_path
    idx = np.arange(free.shape[1])
    fs, fg = start.copy(), goal.copy()
    avs, avg = free & ~start, free & ~goal
    for step in range(1, rs + 1):
        fs = _grow(fs, avs)
        if step <= rg:
            fg = _grow(fg, avg)
        if step % COMPACT_EVERY == 0 or step == rs:
            met = (free & ~(avs | avg)).any(0)  # a cell in both balls: d(S, G) <= 2 * step
            k = np.flatnonzero(~met & fs.any(0) & fg.any(0))  # a dead frontier: component exhausted
            idx, fs, fg, avs, avg, free = idx[k], fs[:, k], fg[:, k], avs[:, k], avg[:, k], free[:, k]
            if not len(idx):
                break
    if rs == 0:  # min_path 0: balls {S} and {G} never meet (S != G)
        idx = idx[~(start & goal).any(0)]
    out = np.zeros(start.shape[1], bool)
    out[idx] = True
    return out


# ----------------------------------------------------------------------------- generation


def _tries(rng: np.random.Generator, size: int, count: int):
    """`count` tries: (free (count, size, size) bool, start, goal flat indices, valid).

    Each try takes 3 + ceil(size*size / 2) raw 64-bit words of the stream, in
    order: p, start and goal as 53-bit uniforms, then two 32-bit uniforms per
    word for the cells (cell 2j = low half of word j); a cell is a wall iff its
    uniform is below round(p * 2^32).
    """
    cells = size * size
    raw = rng.bit_generator.random_raw((count, 3 + (cells + 1) // 2))
    unit = (raw[:, :3] >> np.uint64(11)) * 2.0 ** -53  # top 53 bits -> [0, 1)
    p = WALL_LO + (WALL_HI - WALL_LO) * unit[:, 0]
    thr = np.round(p * 2.0 ** 32).astype(np.uint32)
    halves = np.ascontiguousarray(raw[:, 3:], dtype="<u8").view("<u4")[:, :cells]  # "<": same mazes on any host
    free = halves >= thr[:, None]
    nfree = np.count_nonzero(free, axis=1)
    valid = nfree >= 2
    ks = np.minimum((unit[:, 1] * nfree).astype(np.int64), np.maximum(nfree - 1, 0))  # start's rank among free cells
    kg = np.minimum((unit[:, 2] * (nfree - 1)).astype(np.int64), np.maximum(nfree - 2, 0))
    kg += kg >= ks  # goal's rank among the other free cells
    pos = np.flatnonzero(free)
    if not len(pos):
        pos = np.zeros(1, np.int64)
    first = np.cumsum(nfree) - nfree  # index in `pos` of each try's first free cell
    start = pos[np.minimum(first + ks, len(pos) - 1)] % cells
    goal = pos[np.minimum(first + kg, len(pos) - 1)] % cells
    return free.reshape(count, size, size), start, goal, valid


def _tokens(free: np.ndarray, start: int, goal: int) -> np.ndarray:
    grid = np.where(free.ravel(), OPEN, WALL).astype(np.uint8)
    grid[start], grid[goal] = START, GOAL
    return grid


def _generate(rng: np.random.Generator, size: int, min_path: int, max_tries: int):
    """(inputs, labels, path length, tries used)."""
    if not 2 <= size <= MAX_SIZE:
        raise ValueError(f"maze size must be in 2..{MAX_SIZE}, got {size}")
    if min_path < 0:
        raise ValueError(f"min_path must be >= 0, got {min_path}")
    done = 0
    while done < max_tries:
        count = min(TRY_BATCH, max_tries - done)
        free, start, goal, valid = _tries(rng, size, count)
        bits = _pack(free)
        sb, gb = _cell_bits(start, size), _cell_bits(goal, size)
        cand = valid & _screen(bits, sb, gb, min_path)
        cand = np.flatnonzero(cand)
        if len(cand):
            dist = _bit_distances(bits[:, cand], sb[:, cand], gb[:, cand])
            ok = np.flatnonzero(dist > min_path)
            if len(ok):
                i = int(cand[ok[0]])
                s, g = divmod(int(start[i]), size), divmod(int(goal[i]), size)
                path = shortest_path(~free[i], s, g)
                assert path is not None and len(path) - 1 == dist[ok[0]]
                inputs = _tokens(free[i], int(start[i]), int(goal[i]))
                labels = inputs.copy()
                for r, c in path[1:-1]:
                    labels[r * size + c] = PATH
                return inputs, labels, len(path) - 1, done + i + 1
        done += count
    raise RuntimeError(
        f"no {size}x{size} maze with a shortest path longer than {min_path} moves in {max_tries} tries; "
        "raise max_tries or lower min_path"
    )


def generate(
    rng: np.random.Generator, size: int = 30, min_path: int = 110, max_tries: int = MAX_TRIES
) -> tuple[np.ndarray, np.ndarray, int]:
    """One maze: (input tokens (size*size,) uint8, label tokens, shortest path length in moves).

    Plain rejection over tries (module docstring); raises RuntimeError after
    `max_tries` tries without a shortest path of more than `min_path` moves.
    """
    inputs, labels, length, _ = _generate(rng, size, min_path, max_tries)
    return inputs, labels, length


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
        bits = _pack((xs != WALL).reshape(-1, n, n))
        dist = _bit_distances(bits, _cell_bits((xs == START).argmax(1), n), _cell_bits((xs == GOAL).argmax(1), n))
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


# ----------------------------------------------------------------------------- dataset build


def _gen_one(args):
    """Worker entry point (module level so multiprocessing can pickle it)."""
    seed, size, min_path = args
    return generate(np.random.default_rng(seed), size, min_path)


def _variants(grid: np.ndarray, n: int) -> list[bytes]:
    g = grid.reshape(n, n)
    return [np.ascontiguousarray(dihedral(g, k)).tobytes() for k in range(8)]


def _columns(inputs, labels, lengths, groups, augs) -> dict[str, np.ndarray]:
    return {
        "inputs": inputs.astype(np.uint8),
        "labels": labels.astype(np.uint8),
        "puzzle_id": np.zeros(len(inputs), np.int32),  # mazes share one puzzle id
        "group_id": groups.astype(np.int32),
        "aug": augs.reshape(-1, 1).astype(np.int16),
        "path_len": lengths.astype(np.int16),
    }


def build(
    num_train: int,
    num_test: int,
    num_aug: int,
    seed: int,
    size: int = 30,
    min_path: int = 110,
    progress: Progress = None,
    workers: int = 1,
) -> dict[str, dict[str, np.ndarray]]:
    """Generate a dataset: {"train": columns, "test": columns} (module docstring).

    Train: each maze followed by `num_aug` (<= 7) distinct dihedral variants of
    it (input and label transformed alike), group_id = the maze's index, "aug"
    the dihedral index (0 = original). Test: never augmented, one group per row.
    progress(done, total) is called after each generated maze.
    """
    if min(num_train, num_test) < 0:
        raise ValueError("num_train and num_test must be >= 0")
    if not 0 <= num_aug <= 7:
        raise ValueError(f"num_aug must be in 0..7 (distinct non-identity dihedral maps), got {num_aug}")
    n = size
    train_ss, test_ss, aug_ss = np.random.SeedSequence(seed).spawn(3)
    train, test = draw_disjoint(
        _gen_one,
        (size, min_path),
        train_ss,
        test_ss,
        num_train,
        num_test,
        train_keys=lambda item: _variants(item[0], n),
        test_key=lambda item: item[0].tobytes(),
        max_tries=2 * num_test + 10,  # redraw cap: a clash is ~impossible at 30x30, tiny grids may run out
        what="mazes",
        progress=progress,
        workers=workers,
    )

    def stack(items):
        if not items:
            return np.zeros((0, n * n), np.uint8), np.zeros((0, n * n), np.uint8), np.zeros(0, np.int64)
        x, y, d = zip(*items)
        return np.stack(x), np.stack(y), np.array(d, np.int64)

    x, y, d = stack(train)
    rng = np.random.default_rng(aug_ss)
    k = 1 + num_aug
    augs = np.zeros((len(x), k), np.int64)
    for i in range(len(x)):
        augs[i, 1:] = rng.permutation(np.arange(1, 8))[:num_aug]
    augs = augs.ravel()
    rows = np.repeat(np.arange(len(x)), k)
    tx, ty = x[rows].reshape(-1, n, n), y[rows].reshape(-1, n, n)
    for a in range(1, 8):
        sel = augs == a
        if sel.any():
            tx[sel], ty[sel] = dihedral(tx[sel], a), dihedral(ty[sel], a)
    train_cols = _columns(tx.reshape(-1, n * n), ty.reshape(-1, n * n), d[rows], rows, augs)
    qx, qy, qd = stack(test)
    test_cols = _columns(qx, qy, qd, np.arange(len(qx)), np.zeros(len(qx), np.int64))
    return {"train": train_cols, "test": test_cols}
