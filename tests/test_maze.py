"""Tests for hrm.data.maze: generator, shortest paths, path checker, text, build."""

from __future__ import annotations

import numpy as np
import pytest

from hrm.data import maze as M
from hrm.data import maze_grid as G
from hrm.data.augment import dihedral, inverse_dihedral


def grid(text: str) -> np.ndarray:
    """Tokens from rows written with '.' for open cells (easier to read than spaces)."""
    return G.parse_text("\n".join(line.strip().replace(".", " ") for line in text.strip().splitlines()))


def cell(tokens: np.ndarray, token: int) -> tuple[int, int]:
    n = int(np.sqrt(len(tokens)))
    return divmod(int(np.flatnonzero(tokens == token)[0]), n)


def bfs_len(tokens: np.ndarray) -> int | None:
    n = int(np.sqrt(len(tokens)))
    path = G.shortest_path((tokens == G.WALL).reshape(n, n), cell(tokens, G.START), cell(tokens, G.GOAL))
    return None if path is None else len(path) - 1


def mark(inputs: np.ndarray, cells) -> np.ndarray:
    n = int(np.sqrt(len(inputs)))
    out = inputs.copy()
    for r, c in cells:
        out[r * n + c] = G.PATH
    return out


# Open 5x5, S and G in opposite corners: C(8, 4) = 70 shortest paths of 8 moves.
OPEN5 = grid("""
    S....
    .....
    .....
    .....
    ....G
""")
DOWN_RIGHT = [(1, 0), (2, 0), (3, 0), (4, 0), (4, 1), (4, 2), (4, 3)]  # down the left edge, along the bottom
# A wall column with one gap: the only shortest path goes down, through (3, 2), and up (10 moves).
GAP5 = grid("""
    S.#.G
    ..#..
    ..#..
    .....
    ..#..
""")


# ----------------------------------------------------------------------------- generation


@pytest.mark.parametrize("seed", range(6))
def test_small_mazes_meet_threshold_and_label_is_optimal(seed):
    x, y, length = M.generate(np.random.default_rng(seed), size=12, min_path=20)
    assert x.shape == y.shape == (144,) and x.dtype == y.dtype == np.uint8
    assert length > 20  # length = moves; strictly longer than min_path
    assert (x == G.START).sum() == (x == G.GOAL).sum() == 1
    assert set(np.unique(x)) <= {G.WALL, G.OPEN, G.START, G.GOAL}
    assert np.array_equal(np.where(y == G.PATH, G.OPEN, y), x)  # label = input + PATH cells
    assert bfs_len(x) == length == (y == G.PATH).sum() + 1
    assert G.is_optimal_path(x, y)


def test_one_published_size_maze():
    x, y, length = M.generate(np.random.default_rng(0))  # 30x30, moves > 110
    assert x.shape == (900,) and length > 110
    assert bfs_len(x) == length == (y == G.PATH).sum() + 1
    assert G.is_optimal_path(x, y)
    walls = (x == G.WALL).mean()
    assert 0.2 < walls < 0.6  # drawn with a wall fraction in [0.3, 0.5)


def test_generate_is_deterministic_and_independent_of_batch_size(monkeypatch):
    a = M._generate(np.random.default_rng(3), 10, 15, 10**6)
    b = M._generate(np.random.default_rng(3), 10, 15, 10**6)
    monkeypatch.setattr(M, "TRY_BATCH", 7)  # the stream is consumed per try, so batching must not matter
    c = M._generate(np.random.default_rng(3), 10, 15, 10**6)
    for u, v in ((a, b), (a, c)):
        assert np.array_equal(u[0], v[0]) and np.array_equal(u[1], v[1]) and u[2:] == v[2:]


def test_max_tries_raises():
    with pytest.raises(RuntimeError, match="max_tries"):
        M.generate(np.random.default_rng(0), size=5, min_path=30, max_tries=100)  # 5x5 cannot hold 31 moves


def test_bit_bfs_matches_deque_bfs():
    rng = np.random.default_rng(0)
    free, s, g, valid = M._tries(rng, 9, 400)
    bits, sb, gb = G.pack_rows(free), G.cell_bits(s, 9), G.cell_bits(g, 9)
    dist = G.bit_distances(bits, sb, gb)
    screen = M._screen(bits, sb, gb, 6)
    for i in np.flatnonzero(valid):
        d = G._distances(free[i], divmod(int(s[i]), 9))[divmod(int(g[i]), 9)]
        assert d == dist[i]
        if d >= 0:  # unreachable tries may pass or fail the screen (exact distances decide)
            assert screen[i] == (d > 6)


# ----------------------------------------------------------------------------- shortest_path


def test_shortest_path_basics():
    walls = (GAP5 == G.WALL).reshape(5, 5)
    path = G.shortest_path(walls, (0, 0), (0, 4))
    assert len(path) == 11 and path[0] == (0, 0) and path[-1] == (0, 4) and (3, 2) in path
    assert all(abs(a - c) + abs(b - d) == 1 for (a, b), (c, d) in zip(path, path[1:]))
    assert G.shortest_path(walls, (1, 1), (1, 1)) == [(1, 1)]
    blocked = walls.copy()
    blocked[3, 2] = True
    assert G.shortest_path(blocked, (0, 0), (0, 4)) is None
    with pytest.raises(ValueError):
        G.shortest_path(walls, (0, 2), (0, 4))  # start on a wall


# ----------------------------------------------------------------------------- is_optimal_path


def test_other_optimal_path_is_accepted():
    label = mark(OPEN5, G.shortest_path(np.zeros((5, 5), bool), (0, 0), (4, 4))[1:-1])
    other = mark(OPEN5, DOWN_RIGHT)
    assert not np.array_equal(label, other)
    assert G.is_optimal_path(OPEN5, label) and G.is_optimal_path(OPEN5, other)
    stairs = mark(OPEN5, [(0, 1), (1, 1), (1, 2), (2, 2), (2, 3), (3, 3), (3, 4)])
    assert G.is_optimal_path(OPEN5, stairs)


def test_bad_paths_are_rejected():
    good = mark(OPEN5, DOWN_RIGHT)
    snake = [(0, 1), (0, 2), (0, 3), (0, 4), (1, 4), (2, 4), (2, 3), (2, 2), (3, 2), (4, 2), (4, 3)]
    bad = {
        "longer": mark(OPEN5, snake),  # a simple S-G path of 12 moves
        "gap": mark(OPEN5, DOWN_RIGHT[:3] + DOWN_RIGHT[4:]),
        "branch": mark(OPEN5, DOWN_RIGHT + [(3, 1)]),
        "spur": mark(OPEN5, DOWN_RIGHT + [(2, 1)]),
        "cycle": mark(OPEN5, DOWN_RIGHT + [(1, 2), (1, 3), (2, 2), (2, 3)]),  # path + a detached 2x2 loop
        "empty": OPEN5.copy(),
    }
    moved = good.copy()
    moved[0], moved[1] = G.OPEN, G.START  # S moved one cell to the right
    bad["moved_start"] = moved
    moved = good.copy()
    moved[24], moved[19] = G.OPEN, G.GOAL
    bad["moved_goal"] = moved
    for token in (0, 6, G.WALL, G.START):
        odd = good.copy()
        odd[12] = token  # PAD, out of range, a new wall, a second start
        bad[f"token_{token}"] = odd
    for name, pred in bad.items():
        assert not G.is_optimal_path(OPEN5, pred), name
    assert G.is_optimal_path(OPEN5, good)


def test_wall_crossing_is_rejected():
    through = mark(GAP5, [(0, 1), (0, 2), (0, 3)])  # straight over the wall at (0, 2)
    assert not G.is_optimal_path(GAP5, through)
    keep_wall = mark(GAP5, [(0, 1), (0, 3)])  # jumps the wall
    assert not G.is_optimal_path(GAP5, keep_wall)
    path = G.shortest_path((GAP5 == G.WALL).reshape(5, 5), (0, 0), (0, 4))
    assert G.is_optimal_path(GAP5, mark(GAP5, path[1:-1]))


def test_adjacent_and_unreachable():
    adj = grid("""
        SG.
        ...
        ...
    """)
    assert G.is_optimal_path(adj, adj)  # one move, no PATH cell
    assert not G.is_optimal_path(adj, mark(adj, [(1, 0), (1, 1)]))  # a 3-move detour
    cut = grid("""
        S#.
        ##.
        ..G
    """)
    assert not G.is_optimal_path(cut, cut)
    assert not G.is_optimal_path(cut, mark(cut, [(0, 2), (1, 2)]))


def test_batch_checker_and_input_validation():
    preds = np.stack([mark(OPEN5, DOWN_RIGHT), OPEN5, mark(OPEN5, DOWN_RIGHT[:-1])])
    inputs = np.stack([OPEN5] * 3)
    assert G.is_optimal_path_batch(inputs, preds).tolist() == [True, False, False]
    no_goal = OPEN5.copy()
    no_goal[24] = G.OPEN
    with pytest.raises(ValueError):
        G.is_optimal_path(no_goal, no_goal)
    with pytest.raises(ValueError):
        G.is_optimal_path(OPEN5, OPEN5[:-1])
    with pytest.raises(ValueError):
        G.is_optimal_path_batch(np.zeros((2, 24), np.uint8), np.zeros((2, 24), np.uint8))


# ----------------------------------------------------------------------------- augmentation and text


def test_dihedral_keeps_label_optimal_and_inverts():
    x, y, _ = M.generate(np.random.default_rng(11), size=12, min_path=20)
    gx, gy = x.reshape(12, 12), y.reshape(12, 12)
    for k in range(8):
        tx, ty = dihedral(gx, k), dihedral(gy, k)
        assert G.is_optimal_path(tx.ravel(), ty.ravel()), k
        assert np.array_equal(inverse_dihedral(tx, k), gx) and np.array_equal(inverse_dihedral(ty, k), gy)


def test_text_round_trip():
    _, y, _ = M.generate(np.random.default_rng(2), size=10, min_path=12)
    text = G.render_text(y)
    lines = text.split("\n")
    assert len(lines) == 10 and all(len(line) == 10 for line in lines) and set(text) <= set(G.CHARS + "\n")
    assert np.array_equal(G.parse_text(text), y)
    assert np.array_equal(G.parse_text(text + "\n"), y)
    assert G.render_text(OPEN5).split("\n")[0] == "S    "
    with pytest.raises(ValueError):
        G.parse_text("S.\n G")  # unknown char
    with pytest.raises(ValueError):
        G.parse_text("S \n G\n  ")  # not square
    with pytest.raises(ValueError):
        G.render_text(np.zeros(4, np.uint8))  # PAD cannot be drawn


# ----------------------------------------------------------------------------- build


SMALL = dict(num_train=5, num_test=4, num_aug=3, seed=7, size=8, min_path=10)


def test_build_shapes_and_contents():
    calls = []
    d = M.build(**SMALL, progress=lambda done, total: calls.append((done, total)))
    tr, te = d["train"], d["test"]
    assert calls[-1] == (9, 9) and len(calls) == 9
    for cols, rows in ((tr, 5 * 4), (te, 4)):
        assert set(cols) == {"inputs", "labels", "puzzle_id", "group_id", "aug", "path_len"}
        assert cols["inputs"].shape == cols["labels"].shape == (rows, 64)
        assert cols["inputs"].dtype == cols["labels"].dtype == np.uint8
        assert cols["puzzle_id"].dtype == cols["group_id"].dtype == np.int32 and not cols["puzzle_id"].any()
        assert cols["aug"].shape == (rows, 1) and cols["aug"].dtype == np.int16
        assert cols["path_len"].shape == (rows,) and cols["path_len"].dtype == np.int16
        assert cols["inputs"].min() >= G.WALL and cols["inputs"].max() <= G.GOAL
        assert cols["labels"].min() >= G.WALL and cols["labels"].max() <= G.PATH
        assert G.is_optimal_path_batch(cols["inputs"], cols["labels"]).all()
        assert (cols["path_len"] > 10).all()
        assert np.array_equal(cols["path_len"], (cols["labels"] == G.PATH).sum(1) + 1)
    assert np.array_equal(tr["group_id"], np.repeat(np.arange(5), 4))
    augs = tr["aug"][:, 0].reshape(5, 4)
    assert (augs[:, 0] == 0).all()
    assert all(len(set(a[1:])) == 3 and set(a[1:]) <= set(range(1, 8)) for a in augs.tolist())
    orig = tr["inputs"][::4].reshape(5, 8, 8)
    for i, (x, k) in enumerate(zip(tr["inputs"].reshape(-1, 8, 8), tr["aug"][:, 0])):
        assert np.array_equal(inverse_dihedral(x, int(k)), orig[i // 4])
    assert np.array_equal(te["group_id"], np.arange(4)) and not te["aug"].any()
    train_keys = {dihedral(x, k).tobytes() for x in orig for k in range(8)}
    assert not any(x.tobytes() in train_keys for x in te["inputs"].reshape(-1, 8, 8))


def test_build_is_deterministic_and_worker_independent():
    a = M.build(**SMALL)
    b = M.build(**SMALL, workers=2)
    c = M.build(**{**SMALL, "seed": 8})
    for split in ("train", "test"):
        for key in a[split]:
            assert np.array_equal(a[split][key], b[split][key]), (split, key)
    assert not np.array_equal(a["train"]["inputs"], c["train"]["inputs"])


def test_build_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_aug"):
        M.build(**{**SMALL, "num_aug": 8})
    with pytest.raises(ValueError):
        M.build(**{**SMALL, "num_train": -1})
    empty = M.build(**{**SMALL, "num_train": 0, "num_test": 0})
    assert empty["train"]["inputs"].shape == (0, 64) and empty["test"]["aug"].shape == (0, 1)
