"""ARC datasets: grid encoding on the 30x30 canvas, augmentation (dihedral maps and colour
permutations) and the build of the train/test splits (tasks: `hrm.data.arc_tasks`).

Encoding
--------
A grid becomes a 30x30 = 900 token canvas (row-major): PAD 0, EOS 1, colour c ->
token c + 2. An EOS row lies directly below the grid and an EOS column directly
right of it, each only where it fits in the canvas; the corner cell below-right
is EOS too when it fits. `decode` finds the grid's top-left as the first colour
token (row-major), takes the width from the run of colour tokens in its first row
and the height from the run in its first column, then keeps only the leading rows
whose first `width` tokens are all colours, so a malformed prediction yields a
smaller all-colour grid (possibly 0x0) and never invalid colours or a crash.

Augmentation
------------
An augmentation is an int16 vector [k, perm_0..perm_9]: dihedral transform k
(hrm.data.augment, 0..7) and a colour map with perm[0] == 0 and perm[1..9] a
permutation of 1..9. `apply_aug_grid` maps colours first, then applies the
dihedral (the two commute; the order is fixed for clarity). A task's variants
are the original (variant 0, the identity) plus up to `num_aug` distinct random
augmentations, the same one applied to every grid of the task. Variants are
deduplicated by the exact bytes of the transformed task (shapes and colours of all
grids, held in a set, i.e. by hash), so symmetric or few-colour tasks get fewer
variants; at most AUG_TRIES * num_aug draws are made per task.

Splits
------
train = every demonstration pair of every task (training and evaluation, all
variants) plus the test pairs of training tasks; test = the test pairs of the
evaluation tasks (all variants). Each (task, variant) has one puzzle id (from 1;
0 is the blank id), shared by both splits for evaluation tasks, so the model
learns an evaluation variant's embedding from its demonstrations. Train rows are
translated: grid and EOS border placed at a random offset where they fit, the
same for the input and output of a pair; test rows sit at (0, 0).

Build
-----
Two passes over the tasks. Pass 1 draws each task's variants and offsets from
its own SeedSequence child (the result does not depend on the other tasks) and
counts rows; the output arrays are then allocated at their exact size and pass 2
fills them task by task with two vectorised gathers: translation is a row
gather from a sliding-window view over the offset-0 canvases of the 8 dihedral
forms (each preceded by 900 PAD tokens, so shifting the flat canvas right by
row * 30 + column moves the grid and pulls in PAD), then tokens go through the
variant's colour table. No Python object is kept per row and nothing is
concatenated at the end, so peak memory is about the size of the result (1840
bytes a row; its time and memory: benchmarks/RESULTS.md, "ARC-AGI build").

"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from hrm.data.arc_tasks import NUM_COLORS, SIZE, Task, drop_leaked_pairs
from hrm.data.augment import dihedral, inverse_dihedral

PAD, EOS, COLOR0 = 0, 1, 2
VOCAB_SIZE = 12  # PAD, EOS and 10 colours
SEQ_LEN = SIZE * SIZE  # tokens per grid
AUG_TRIES = 5  # random draws per wanted variant before giving up (few-colour tasks run out)
CHUNK = 4096  # rows gathered per numpy call in the build: bounds temporary memory (~30 MB)
TRANSPOSING = (1, 3, 4, 7)  # dihedral k that swap height and width
Progress = Callable[[int, int], None] | None


def _max_offset(n: int) -> int:
    """Largest offset along an axis where a grid of extent n and its EOS line fit."""
    return max(0, SIZE - 1 - n)


def encode(grid: np.ndarray, offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """(900,) uint8 canvas: colours at `offset`, EOS border below and right (where it fits)."""
    g = np.asarray(grid)
    if g.ndim != 2 or not (1 <= g.shape[0] <= SIZE and 1 <= g.shape[1] <= SIZE):
        raise ValueError(f"expected a grid of 1..{SIZE} rows and columns, got shape {g.shape}")
    if g.min() < 0 or g.max() >= NUM_COLORS:
        raise ValueError("grid holds values other than the colours 0..9")
    h, w = g.shape
    r, c = offset
    if not (0 <= r <= _max_offset(h) and 0 <= c <= _max_offset(w)):
        raise ValueError(f"offset {offset} does not fit a {h}x{w} grid with its EOS border")
    out = np.zeros((SIZE, SIZE), np.uint8)
    out[r:r + h + 1, c:c + w + 1] = EOS  # slicing clips the border at the canvas edge
    out[r:r + h, c:c + w] = g + COLOR0
    return out.reshape(-1)


def _run(colour: np.ndarray) -> int:
    """Length of the leading run of True."""
    return int(colour.argmin()) if not colour.all() else len(colour)


def decode(tokens: np.ndarray) -> np.ndarray:
    """Colour grid (h, w) int8 cropped from a (900,) token array; robust to malformed ones."""
    t = np.asarray(tokens).reshape(SIZE, SIZE)
    colour = (t >= COLOR0) & (t < COLOR0 + NUM_COLORS)
    if not colour.any():
        return np.zeros((0, 0), np.int8)
    r, c = divmod(int(colour.argmax()), SIZE)  # first colour token, row-major
    w = _run(colour[r, c:])
    h = _run(colour[r:, c])
    h = _run(colour[r:r + h, c:c + w].all(axis=1))  # keep rows that are all colour
    return (t[r:r + h, c:c + w].astype(np.int16) - COLOR0).astype(np.int8)


# ----------------------------------------------------------------------------- augmentation


def identity_aug() -> np.ndarray:
    return np.arange(-1, NUM_COLORS, dtype=np.int16).clip(0)  # [k=0, 0, 1, ..., 9]


def random_aug(rng: np.random.Generator) -> np.ndarray:
    """[k, perm_0..perm_9] int16: random dihedral k and colour permutation fixing 0."""
    k = rng.integers(8)
    return np.concatenate([[k, 0], 1 + rng.permutation(NUM_COLORS - 1)]).astype(np.int16)


def apply_aug_grid(grid: np.ndarray, aug: np.ndarray) -> np.ndarray:
    """dihedral(perm[grid], k): colour map first, then the dihedral transform."""
    a = np.asarray(aug)
    perm = a[1:].astype(np.int8)
    return np.ascontiguousarray(dihedral(perm[np.asarray(grid)], int(a[0])))


def invert_aug_grid(grid: np.ndarray, aug: np.ndarray) -> np.ndarray:
    """Exact inverse of `apply_aug_grid`: undo the dihedral, then the colour map."""
    a = np.asarray(aug)
    inv = np.argsort(a[1:]).astype(np.int8)  # argsort of a permutation = its inverse
    return np.ascontiguousarray(inv[inverse_dihedral(np.asarray(grid), int(a[0]))])


def _variants(task: Task, num_aug: int, rng: np.random.Generator) -> np.ndarray:
    """(V, 11) int16 augmentations: identity, then up to num_aug distinct random ones."""
    grids = [g for pair in task.train + task.test for g in pair]
    forms = []  # per k: (shape signature, all transformed grids flattened as uint8)
    for k in range(8):
        gk = [dihedral(g, k) for g in grids]
        sig = np.array([s for g in gk for s in g.shape], np.uint8).tobytes()
        forms.append((sig, np.concatenate([g.ravel() for g in gk]).astype(np.uint8)))

    def key(a):
        sig, flat = forms[int(a[0])]
        return sig + a[1:].astype(np.uint8)[flat].tobytes()

    augs = [identity_aug()]
    seen = {key(augs[0])}
    for _ in range(AUG_TRIES * num_aug):
        if len(augs) > num_aug:
            break
        a = random_aug(rng)
        kb = key(a)
        if kb not in seen:
            seen.add(kb)
            augs.append(a)
    return np.stack(augs)


# ----------------------------------------------------------------------------- build

COLUMNS = {  # name: (per-row shape, dtype)
    "inputs": ((SEQ_LEN,), np.uint8),
    "labels": ((SEQ_LEN,), np.uint8),
    "puzzle_id": ((), np.int32),
    "variant_id": ((), np.int32),
    "group_id": ((), np.int32),
    "test_index": ((), np.int16),
    "aug": ((NUM_COLORS + 1,), np.int16),
    "offset": ((2,), np.int16),
}


@dataclass
class _Plan:
    """Pass-1 result for one task: variants, row layout of each split, offsets."""
    augs: np.ndarray  # (V, 11)
    first_id: int  # puzzle id of variant 0
    train_pairs: np.ndarray  # pair indices (into train + test) in the train split
    test_pairs: np.ndarray  # pair indices in the test split
    offsets: np.ndarray  # (V * len(train_pairs), 2) int16 offsets of the train rows


def _plan(task: Task, is_eval: bool, num_aug: int, translate: bool, first_id: int, rng) -> _Plan:
    augs = _variants(task, num_aug, rng)
    n_demo, n_test = len(task.train), len(task.test)
    train_pairs = np.arange(n_demo if is_eval else n_demo + n_test)
    test_pairs = np.arange(n_demo, n_demo + n_test) if is_eval else np.zeros(0, np.int64)
    pairs = task.train + task.test
    offsets = np.zeros((len(augs), len(train_pairs), 2), np.int16)
    if translate and len(train_pairs):
        hw = np.array([[min(_max_offset(i.shape[a]), _max_offset(o.shape[a])) for a in (0, 1)]
                       for i, o in (pairs[p] for p in train_pairs)])  # (P, 2) max offsets, untransposed
        swap = np.isin(augs[:, 0], TRANSPOSING)[:, None, None]
        high = np.where(swap, hw[None, :, ::-1], hw[None])  # (V, P, 2)
        offsets[:] = rng.integers(0, high + 1)
    return _Plan(augs, first_id, train_pairs, test_pairs, offsets.reshape(-1, 2))


def _canvases(task: Task) -> np.ndarray:
    """(8 * grids, 2 * 900) uint8: row k * grids + j = 900 PAD tokens, then the offset-0
    canvas of dihedral form k of grid j. Reading canvas position p - shift (shift = row
    offset * 30 + column offset) translates it: what moves in from the left or the top
    is PAD, from the PAD prefix or from columns right of the EOS column."""
    grids = [g for pair in task.train + task.test for g in pair]
    out = np.zeros((8 * len(grids), 2 * SEQ_LEN), np.uint8)
    for k in range(8):
        for j, g in enumerate(grids):
            out[k * len(grids) + j, SEQ_LEN:] = encode(dihedral(g, k))
    return out


def _fill(cols, start: int, task: Task, plan: _Plan, group: int, pairs: np.ndarray, offsets, base) -> int:
    """Write the rows (variant-major, then pair) of one task into one split; returns the new start."""
    nv, npair = len(plan.augs), len(pairs)
    n = nv * npair
    if n == 0:
        return start
    n_grids = 2 * len(task.train + task.test)
    var = np.repeat(np.arange(nv), npair)
    pair = np.tile(pairs, nv)
    k = plan.augs[var, 0].astype(np.int64)
    lut = np.zeros((nv, VOCAB_SIZE), np.uint8)  # per variant: token -> token
    lut[:, EOS] = EOS
    lut[:, COLOR0:] = plan.augs[:, 1:] + COLOR0
    flat_lut = lut.reshape(-1)
    windows = sliding_window_view(base.reshape(-1), SEQ_LEN)  # windows[i] = flat base[i:i + 900]
    shift = offsets[:, 0].astype(np.int64) * SIZE + offsets[:, 1]
    for s in range(0, n, CHUNK):
        sl = slice(s, min(s + CHUNK, n))
        rows = slice(start + s, start + sl.stop)
        lut_row = (var[sl] * VOCAB_SIZE).astype(np.int32)[:, None]  # int32: half the index traffic
        for col, which in (("inputs", 0), ("labels", 1)):
            canvas = k[sl] * n_grids + 2 * pair[sl] + which
            tok = windows[canvas * 2 * SEQ_LEN + SEQ_LEN - shift[sl]]  # translated canvases (row copies)
            cols[col][rows] = flat_lut[lut_row + tok]
    rows = slice(start, start + n)
    cols["puzzle_id"][rows] = plan.first_id + var
    cols["variant_id"][rows] = plan.first_id + var
    cols["group_id"][rows] = group
    cols["test_index"][rows] = np.where(pair >= len(task.train), pair - len(task.train), -1)
    cols["aug"][rows] = plan.augs[var]
    cols["offset"][rows] = offsets
    return start + n


def build(
    train_tasks: list[Task],
    eval_tasks: list[Task],
    num_aug: int,
    seed: int,
    translate: bool = True,
    progress: Progress = None,
) -> tuple[dict[str, dict[str, np.ndarray]], dict]:
    """({"train": columns, "test": columns}, meta); see the module docstring.

    Rows are ordered by group_id (task index: training tasks, then evaluation
    tasks) then puzzle_id, then pair (demonstrations, then test pairs).
    progress(done, total) is called after each task's rows are written.
    """
    if num_aug < 0:
        raise ValueError(f"num_aug must be >= 0, got {num_aug}")
    train_tasks, eval_tasks, leaks = drop_leaked_pairs(train_tasks, eval_tasks)
    tasks = list(train_tasks) + list(eval_tasks)
    n_train_tasks = len(train_tasks)
    children = np.random.SeedSequence(seed).spawn(len(tasks))
    plans, next_id = [], 1  # puzzle id 0 is the blank id
    for g, task in enumerate(tasks):
        p = _plan(task, g >= n_train_tasks, num_aug, translate, next_id, np.random.default_rng(children[g]))
        plans.append(p)
        next_id += len(p.augs)
    counts = {
        "train": sum(len(p.augs) * len(p.train_pairs) for p in plans),
        "test": sum(len(p.augs) * len(p.test_pairs) for p in plans),
    }
    splits = {s: {c: np.empty((n, *shape), dt) for c, (shape, dt) in COLUMNS.items()} for s, n in counts.items()}
    starts = {"train": 0, "test": 0}
    for g, (task, p) in enumerate(zip(tasks, plans)):
        base = _canvases(task)
        starts["train"] = _fill(splits["train"], starts["train"], task, p, g, p.train_pairs, p.offsets, base)
        test_off = np.zeros((len(p.augs) * len(p.test_pairs), 2), np.int16)
        starts["test"] = _fill(splits["test"], starts["test"], task, p, g, p.test_pairs, test_off, base)
        if progress is not None:
            progress(g + 1, len(tasks))
    train_ids = len(np.unique(splits["train"]["puzzle_id"]))
    meta = {
        "task_names": [t.name for t in tasks],
        "num_eval_tasks": len(eval_tasks),
        "num_puzzle_ids": next_id,
        "mean_examples_per_puzzle": counts["train"] / train_ids if train_ids else 0.0,
        "leaked_pairs": leaks,
    }
    return splits, meta


# ----------------------------------------------------------------------------- scoring
