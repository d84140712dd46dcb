"""Maze-Hard datasets: a generator of the published 30x30 mazes and the dataset build
(tokens, paths and the checker of predictions: `hrm.data.maze_grid`).

Generation (the Searchformer procedure, as in HRM)
--------------------------------------------------
One *try*: wall fraction p ~ U[0.3, 0.5); every cell is a wall with probability
p, independently; start and goal are two distinct cells drawn uniformly among
the free cells. The try is accepted iff a 4-neighbour path exists and its
shortest length is > min_path; otherwise a fresh try is drawn (plain rejection).
This keeps the published distribution (up to 2^-32 rounding of p per cell). We
do NOT pick the goal among the cells far from the start after one BFS: that
re-weights each (walls, start) draw by 1 / (its number of far cells) and
favours barely-long mazes (shorter shortest paths than plain rejection).
Acceptance is rare at 30x30/110 (tens of thousands of tries per maze; accepted mazes
have wall fractions near the site-percolation threshold), so a try must cost
microseconds (benchmarks/RESULTS.md, "Maze build"):
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

Dataset
-------
`build` follows `sudoku.build`: SeedSequence(seed) spawns (train, test, aug)
streams and every maze its own child seed, so the output does not depend on
`workers`; test mazes equal to a train maze under any of the 8 dihedral maps
are redrawn. Augmentation (none in HRM: num_aug=0) applies distinct dihedral
maps 1..7, drawn without replacement, to each train maze.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from hrm.data.augment import dihedral
from hrm.data.maze_grid import (GOAL, MAX_SIZE, OPEN, PATH, START, WALL, bit_distances, cell_bits, grow,
                                pack_rows, shortest_path)
from hrm.data.splits import draw_disjoint

WALL_LO, WALL_HI = 0.3, 0.5  # wall fraction range of the published generator
TRY_BATCH = 1024  # tries screened per numpy call (smaller batches are slower, larger ones no faster)
# Default try cap of `generate`: the tries per maze are geometric with a mean in the tens of
# thousands at 30x30/110, so a cap of 1e7 fails with vanishing odds (1e5 would fail often).
MAX_TRIES = 10_000_000
COMPACT_EVERY = 3  # BFS levels between dropping finished tries from a batch
Progress = Callable[[int, int], None] | None



# ----------------------------------------------------------------------------- generation


def _screen(free: np.ndarray, start: np.ndarray, goal: np.ndarray, min_path: int) -> np.ndarray:
    """Bool per column of (n, B) bit grids: False where d(S, G) <= min_path or S and G
    are provably apart (a ball's frontier died); True means d(S, G) > min_path or
    unreachable (see the module docstring)."""
    rs, rg = (min_path + 1) // 2, min_path // 2  # ball radii, rs + rg = min_path
    idx = np.arange(free.shape[1])
    fs, fg = start.copy(), goal.copy()
    avs, avg = free & ~start, free & ~goal
    for step in range(1, rs + 1):
        fs = grow(fs, avs)
        if step <= rg:
            fg = grow(fg, avg)
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
        bits = pack_rows(free)
        sb, gb = cell_bits(start, size), cell_bits(goal, size)
        cand = valid & _screen(bits, sb, gb, min_path)
        cand = np.flatnonzero(cand)
        if len(cand):
            dist = bit_distances(bits[:, cand], sb[:, cand], gb[:, cand])
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

    qx, qy, qd = _stack(test, n)
    return {"train": _augmented(*_stack(train, n), num_aug, n, np.random.default_rng(aug_ss)),
            "test": _columns(qx, qy, qd, np.arange(len(qx)), np.zeros(len(qx), np.int64))}


def _stack(items: list, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inputs, labels, path lengths) of generated mazes as arrays."""
    if not items:
        return np.zeros((0, n * n), np.uint8), np.zeros((0, n * n), np.uint8), np.zeros(0, np.int64)
    x, y, d = zip(*items)
    return np.stack(x), np.stack(y), np.array(d, np.int64)


def _augmented(x: np.ndarray, y: np.ndarray, d: np.ndarray, num_aug: int, n: int,
               rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Train columns: each maze followed by `num_aug` distinct dihedral variants of it."""
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
    return _columns(tx.reshape(-1, n * n), ty.reshape(-1, n * n), d[rows], rows, augs)
