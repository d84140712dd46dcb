"""Tests for hrm.data.sudoku: solver, generator, augmentation, CSV reader, build."""

from __future__ import annotations

import numpy as np
import pytest

from hrm.data import sudoku as S
from hrm.data import sudoku_csv as C
from hrm.data import sudoku_grid as G
from hrm.data import sudoku_solver as V
from hrm.data import sudoku_rating as R

# Arto Inkala's "world's hardest Sudoku" (2012) and its unique solution.
INKALA = "800000000003600000070090200050007000000045700000100030001000068008500010090000400"
INKALA_SOL = "812753649943682175675491283154237896369845721287169534521974368438526917796318452"


def grid(text: str) -> np.ndarray:
    return np.array([0 if ch == "." else int(ch) for ch in text], dtype=np.uint8)


def text(g: np.ndarray) -> str:
    return "".join(str(int(d)) for d in g)


# ----------------------------------------------------------------------------- geometry and solver


def test_box_shape():
    assert [G.box_shape(n) for n in G.SIZES] == [(2, 2), (2, 3), (3, 3)]
    with pytest.raises(ValueError, match=r"\(4, 6, 9\)"):
        G.box_shape(5)


def test_solver_known_hard_puzzle():
    res = V.solve(grid(INKALA), 9)
    assert [text(s) for s in res.solutions] == [INKALA_SOL]  # limit=2 but only one exists
    assert res.backtracks > 0
    assert res.solutions[0].dtype == np.uint8
    assert G.is_valid_solution(res.solutions[0], 9)
    assert V.count_solutions(grid(INKALA), 9) == 1


def test_count_solutions_two_and_zero():
    sol = grid("1234341221434321")
    assert G.is_valid_solution(sol, 4)
    two = sol.copy()
    two[[0, 2, 4, 6]] = 0  # a 1/3 rectangle over two boxes: the digits can swap
    assert V.count_solutions(two, 4, limit=10) == 2
    bad = grid(INKALA)
    bad[1] = 8  # a second 8 in the first row
    assert V.count_solutions(bad, 9) == 0
    assert V.solve(bad, 9).solutions == []


def test_solve_stops_at_limit_and_checks_input():
    res = V.solve(np.zeros(16, np.uint8), 4, limit=5)
    assert len(res.solutions) == 5
    assert len({text(s) for s in res.solutions}) == 5
    assert all(G.is_valid_solution(s, 4) for s in res.solutions)
    with pytest.raises(ValueError):
        V.solve(np.zeros(15, np.uint8), 4)
    with pytest.raises(ValueError):
        V.solve(np.full(16, 7, np.uint8), 4)


def test_is_valid_solution_rejects():
    sol = grid(INKALA_SOL)
    assert G.is_valid_solution(sol, 9)
    for bad in (grid(INKALA), np.roll(sol, 1), np.where(sol == 9, 10, sol).astype(np.uint8), sol[:80]):
        assert not G.is_valid_solution(bad, 9)


def test_order_breaks_ties_only():
    rng = np.random.default_rng(0)
    for _ in range(3):
        res = V.solve(grid(INKALA), 9, order=rng.permutation(81))
        assert [text(s) for s in res.solutions] == [INKALA_SOL]


# ----------------------------------------------------------------------------- generation


def check_puzzle(puzzle, solution, n):
    assert puzzle.shape == solution.shape == (n * n,)
    assert puzzle.dtype == solution.dtype == np.uint8
    assert G.is_valid_solution(solution, n)
    given = puzzle > 0
    assert (puzzle[given] == solution[given]).all()
    res = V.solve(puzzle, n, limit=2)
    assert len(res.solutions) == 1
    assert (res.solutions[0] == solution).all()


@pytest.mark.parametrize("n", G.SIZES)
def test_random_solution_valid_and_seeded(n):
    a = [V.random_solution(n, np.random.default_rng(s)) for s in range(5)]
    b = [V.random_solution(n, np.random.default_rng(s)) for s in range(5)]
    assert all(G.is_valid_solution(g, n) for g in a)
    assert all((x == y).all() for x, y in zip(a, b))
    assert len({text(g) for g in a}) > 1


@pytest.mark.parametrize("n", G.SIZES)
@pytest.mark.parametrize("difficulty", ["easy", "minimal", "hard"])
def test_generated_puzzles_unique(n, difficulty):
    blanks = n * n // 2
    seeds = range(3) if difficulty != "hard" or n < 9 else range(2)  # hard 9x9 is the slow one
    for seed in seeds:
        p, s, r = S.generate(n, np.random.default_rng(seed), difficulty, blanks)
        check_puzzle(p, s, n)
        assert isinstance(r, float) and r >= 0
        if difficulty == "easy":
            assert (p == 0).sum() == blanks
        q = S.generate(n, np.random.default_rng(seed), difficulty, blanks)
        assert (q[0] == p).all() and q[2] == r  # seeded


@pytest.mark.parametrize("n", [6, 9])
def test_minimal_puzzles_are_minimal(n):
    p, _, _ = S.generate(n, np.random.default_rng(7), "minimal")
    for c in np.flatnonzero(p):
        q = p.copy()
        q[c] = 0
        assert V.count_solutions(q, n) == 2


def test_generate_rejects_bad_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        S.generate(9, rng, "easy")  # blanks required
    with pytest.raises(ValueError):
        S.generate(4, rng, "easy", blanks=16)
    with pytest.raises(ValueError):
        S.generate(9, rng, "medium")
    with pytest.raises(ValueError):
        S.generate(4, rng, "easy", blanks=15)  # no 4x4 puzzle has a single given


# A newspaper puzzle (Wikipedia's example) and Arto Inkala's AI Escargot (2006).
NEWSPAPER = "53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79"
ESCARGOT = "1....7.9..3..2...8..96..5....53..9...1..8...26....4...3......1..4......7..7...3.."


def test_rating_on_famous_puzzles():
    assert R.rate(grid(NEWSPAPER), 9).per_relabeling == (0,) * R.RELABELINGS  # singles solve it
    assert S.rate(grid(INKALA_SOL), 9) == 0.0  # nothing to guess
    for puzzle in (ESCARGOT, INKALA):
        r = R.rate(grid(puzzle), 9)
        assert r.unique and 20 <= r.guesses <= 500, (puzzle, r)  # dozens
        assert len(set(r.per_relabeling)) > 1  # the count depends on the labels: hence the mean
        assert S.rate(grid(puzzle), 9) == r.guesses == R.rate(grid(puzzle), 9).guesses  # fixed relabelings


def test_rating_search_counts_guesses_over_the_tree_that_proves_uniqueness():
    # No propagation applies to the empty 4x4 grid: the search must branch, and it stops at
    # the second solution; with one given removed from a unique puzzle it finds two.
    assert R.search(np.zeros(16, np.int8), 4) == (2, 1)
    assert R.search(grid(INKALA_SOL), 9) == (1, 0)
    solutions, guesses = R.search(grid(INKALA), 9)
    assert solutions == 1 and guesses > 0
    # limit 1 stops at the first solution: fewer guesses than the whole tree
    assert R.search(grid(INKALA), 9, limit=1)[1] < guesses
    loose = grid(NEWSPAPER)
    loose[[0, 1, 4]] = 0
    assert R.search(loose, 9)[0] == 2 and not R.rate(loose, 9).unique
    with pytest.raises(ValueError, match="exactly one solution"):
        S.rate(loose, 9)
    clash = grid(NEWSPAPER)
    clash[2] = 5  # a second 5 in the first row
    assert R.search(clash, 9) == (0, 0)


def test_rating_sees_hidden_singles():
    # A puzzle that naked singles alone cannot finish but hidden singles can: the old
    # naked-singles solver has to branch on it, the rating's does not.
    p = grid(NEWSPAPER)
    assert R.search(p, 9)[1] == 0
    hidden_only = [q for q in (S.generate(9, np.random.default_rng(s), "minimal")[0] for s in range(6))
                   if R.search(q, 9)[1] == 0 and V.solve(q, 9).backtracks > 0]
    assert hidden_only, "expected a minimal puzzle that only hidden singles solve without guessing"


def test_plain_python_rating_equals_the_compiled_one():
    # Without numba the same kernel runs as Python (NUMBA_DISABLE_JIT=1 runs it so here).
    import os
    import subprocess
    import sys

    code = ("import numpy as np; from hrm.data import sudoku_rating as R; "
            f"print(list(R.rate(np.array([0 if c == '.' else int(c) for c in {ESCARGOT!r}], np.int8), 9)"
            ".per_relabeling))")
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "NUMBA_DISABLE_JIT": "1"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(list(R.rate(grid(ESCARGOT), 9).per_relabeling))


def test_grade_thresholds_on_a_summary():
    easy = R.summarise(np.zeros(40))
    assert easy["zero_share"] == 1.0 and not easy["extreme_grade"]
    hard = R.summarise(np.array([12.0] * 20 + [40.0] * 20))
    assert hard["median"] == 26.0 and hard["mean"] == 26.0 and hard["extreme_grade"]
    assert not R.summarise(np.array([0.0] * 3 + [30.0] * 37))["extreme_grade"]  # 7.5% with none
    assert not R.summarise(np.array([9.0] * 21 + [60.0] * 19))["extreme_grade"]  # median 9
    assert sum(hard["histogram"].values()) == 40 and hard["histogram"]["10-20"] == 20
    assert any("Sudoku-Extreme grade" in line for line in R.describe("train", hard))


@pytest.mark.slow
def test_hard_generator_reaches_extreme_grade_on_a_small_set():
    ratings = []
    for seed in range(8):
        p, sol, r = S.generate(9, np.random.default_rng(seed), "hard")
        check_puzzle(p, sol, 9)  # unique, consistent with its solution
        assert r == R.rate(p, 9).guesses  # the stored rating is the full rating
        ratings.append(r)
    summary = R.summarise(np.array(ratings))  # seeded: the same 8 puzzles every run
    assert summary["extreme_grade"], summary  # mean >= 20, median >= 10, none with 0 guesses


# ----------------------------------------------------------------------------- augmentation


@pytest.mark.parametrize("n", G.SIZES)
def test_augmentation_roundtrip_and_validity(n):
    rng = np.random.default_rng(n)
    sols = np.stack([V.random_solution(n, rng) for _ in range(8)])
    puzzle, solution, _ = S.generate(n, rng, "minimal")
    ident = G.identity_aug(n)
    assert ident.dtype == np.int16 and ident.shape == (3 * n + 2,)
    assert (G.apply_aug(sols, ident, n) == sols).all()
    flags = []
    for _ in range(200):
        p = G.random_aug(n, rng)
        assert p.dtype == np.int16 and p.shape == (3 * n + 2,) and p[0] == 0
        flags.append(p[n + 1])
        inv = G.invert_aug(p, n)
        assert (G.invert_aug(inv, n) == p).all()
        out = G.apply_aug(sols, p, n)  # batch, one transform
        assert out.dtype == np.uint8 and out.shape == sols.shape
        assert all(G.is_valid_solution(g, n) for g in out)
        assert (G.apply_aug(out, inv, n) == sols).all()
        assert (G.apply_aug(G.apply_aug(sols[0], p, n), inv, n) == sols[0]).all()
    flags = np.array(flags)
    if n == 6:
        assert (flags == 0).all()  # a transpose would turn 2x3 boxes into 3x2
    else:
        assert 0 < flags.mean() < 1
    # a unique puzzle stays unique, with the transformed solution, blanks stay blank
    p = G.random_aug(n, rng)
    aug_p, aug_s = G.apply_aug(puzzle, p, n), G.apply_aug(solution, p, n)
    assert ((aug_p == 0).sum()) == (puzzle == 0).sum()
    check_puzzle(aug_p, aug_s, n)


def test_augmentation_per_row_params():
    n, rng = 9, np.random.default_rng(3)
    sols = np.stack([V.random_solution(n, rng) for _ in range(4)])
    params = np.stack([G.random_aug(n, rng) for _ in range(4)])
    out = G.apply_aug(sols, params, n)
    for i in range(4):
        assert (out[i] == G.apply_aug(sols[i], params[i], n)).all()
    assert (G.apply_aug(out, G.invert_aug(params, n), n) == sols).all()
    with pytest.raises(ValueError):
        G.apply_aug(sols, params[:3], n)
    with pytest.raises(ValueError):
        G.apply_aug(sols, params[0, :-1], n)


def test_augmentation_matches_definition():
    n = 4
    g = np.arange(16).reshape(4, 4) % 4 + 1  # any values in 1..4 will do
    p = np.array([0, 2, 3, 4, 1, 1, 1, 0, 3, 2, 2, 3, 0, 1], np.int16)
    y = g.T
    want = np.array([[p[y[p[6 + r], p[10 + c]]] for c in range(4)] for r in range(4)])
    assert (G.apply_aug(g.ravel().astype(np.uint8), p, n) == want.ravel()).all()


@pytest.mark.parametrize("n", G.SIZES)
def test_signature_is_augmentation_invariant(n):
    rng = np.random.default_rng(0)
    p, _, _ = S.generate(n, rng, "minimal")
    sig = G.signature(p, n)
    for _ in range(50):
        assert G.signature(G.apply_aug(p, G.random_aug(n, rng), n), n) == sig


# ----------------------------------------------------------------------------- CSV


def write_csv(path, rows):
    path.write_text("source,question,answer,rating\n" + "".join(",".join(r) + "\n" for r in rows))


def test_read_csv_roundtrip(tmp_path):
    q = INKALA.replace("0", ".")
    rows = [("hard,set", q, INKALA_SOL, "7"), ("easy", INKALA_SOL, INKALA_SOL, "0"), ("x", INKALA, INKALA_SOL, "2.5")]
    write_csv(tmp_path / "a.csv", rows)
    puzzles, sols, ratings, sources = C.read_csv(tmp_path / "a.csv")
    assert puzzles.shape == sols.shape == (3, 81) and puzzles.dtype == sols.dtype == np.uint8
    assert ratings.dtype == np.float32 and ratings.tolist() == [7.0, 0.0, 2.5]
    assert sources == ["hard,set", "easy", "x"]
    assert text(puzzles[0]) == INKALA and text(puzzles[2]) == INKALA and text(sols[1]) == INKALA_SOL


@pytest.mark.parametrize(
    "question, answer, rating, match",
    [
        (INKALA[:80], INKALA_SOL, "1", "question must be 81"),
        (INKALA, INKALA_SOL + "1", "1", "answer must be 81"),
        (INKALA[:-1] + "x", INKALA_SOL, "1", "question may only"),
        (INKALA, INKALA_SOL[:-1] + "0", "1", "answer may only"),
        ("9" + INKALA[1:], INKALA_SOL, "1", "does not match"),
        (INKALA, INKALA_SOL[1:] + INKALA_SOL[0], "1", "does not match|not a valid"),
        (INKALA, INKALA_SOL, "hard", "not a number"),
    ],
)
def test_read_csv_rejects_malformed(tmp_path, question, answer, rating, match):
    good = ("ok", INKALA, INKALA_SOL, "1")
    write_csv(tmp_path / "bad.csv", [good, good, ("bad", question, answer, rating), good])
    with pytest.raises(ValueError, match=rf"bad\.csv:4: .*({match})"):
        C.read_csv(tmp_path / "bad.csv")


def test_read_csv_bad_header(tmp_path):
    (tmp_path / "h.csv").write_text("q,a\n")
    with pytest.raises(ValueError, match="h.csv:1"):
        C.read_csv(tmp_path / "h.csv")


# ----------------------------------------------------------------------------- build


def check_split(cols, n, rows, num_aug):
    size = n * n
    assert set(cols) == {"inputs", "labels", "puzzle_id", "group_id", "aug", "rating"}
    want = {"inputs": (np.uint8, (rows, size)), "labels": (np.uint8, (rows, size)),
            "puzzle_id": (np.int32, (rows,)), "group_id": (np.int32, (rows,)),
            "aug": (np.int16, (rows, 3 * n + 2)), "rating": (np.float32, (rows,))}
    for k, (dtype, shape) in want.items():
        assert cols[k].dtype == dtype and cols[k].shape == shape, k
    assert cols["inputs"].min() >= 1 and cols["inputs"].max() <= n + 1
    assert cols["labels"].min() >= 2 and cols["labels"].max() <= n + 1
    assert (cols["puzzle_id"] == 0).all()
    assert (cols["group_id"] == np.arange(rows) // (1 + num_aug)).all()
    first = cols["aug"][:: 1 + num_aug]
    assert (first == G.identity_aug(n)).all()
    puzzles, sols = cols["inputs"] - 1, cols["labels"] - 1
    for i in range(rows):
        assert G.is_valid_solution(sols[i], n)
        given = puzzles[i] > 0
        assert (puzzles[i][given] == sols[i][given]).all()
        orig = (i // (1 + num_aug)) * (1 + num_aug)
        assert (G.apply_aug(puzzles[orig], cols["aug"][i], n) == puzzles[i]).all()
        assert (G.apply_aug(sols[orig], cols["aug"][i], n) == sols[i]).all()


@pytest.mark.parametrize("n, difficulty, blanks", [(4, "minimal", None), (6, "easy", 12), (9, "easy", 30)])
def test_build_format_deterministic_disjoint(n, difficulty, blanks):
    calls = []
    a = S.build(n, 6, 4, 3, difficulty, blanks, seed=1, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (10, 10) and [d for d, _ in calls] == list(range(1, 11))
    check_split(a["train"], n, 6 * 4, 3)
    check_split(a["test"], n, 4, 0)
    b = S.build(n, 6, 4, 3, difficulty, blanks, seed=1)
    for split in ("train", "test"):
        for k in a[split]:
            assert np.array_equal(a[split][k], b[split][k]), (split, k)
    c = S.build(n, 6, 4, 3, difficulty, blanks, seed=2)
    assert not np.array_equal(a["train"]["inputs"], c["train"]["inputs"])
    train_rows = {bytes(r) for r in a["train"]["inputs"]}
    train_sigs = {G.signature(p, n) for p in a["train"]["inputs"][::4] - 1}
    for p in a["test"]["inputs"]:
        assert bytes(p) not in train_rows
        assert G.signature(p - 1, n) not in train_sigs
    for p in a["train"]["inputs"] - 1:  # the signature spans all augmentations
        assert G.signature(p, n) in train_sigs


def test_build_gives_up_when_test_cannot_be_disjoint():
    # 4x4 grids with 2 blanks: few essentially different puzzles, 200 train draws cover them
    with pytest.raises(ValueError, match="disjoint"):
        S.build(4, 200, 5, 0, "easy", 2, seed=0)


@pytest.mark.slow
def test_build_hard_small():
    out = S.build(9, 2, 1, 1, "hard", None, seed=3)
    check_split(out["train"], 9, 4, 1)
    assert out["train"]["rating"][0] == out["train"]["rating"][1]  # rating of the original


def test_build_workers_match_serial():
    a = S.build(6, 8, 4, 1, "minimal", None, seed=5)
    b = S.build(6, 8, 4, 1, "minimal", None, seed=5, workers=2)
    for split in ("train", "test"):
        for k in a[split]:
            assert np.array_equal(a[split][k], b[split][k]), (split, k)


def test_build_from_csv(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):
        p, s, r = S.generate(9, rng, "minimal")
        rows.append((f"src{i % 2}", text(p).replace("0", "."), text(s), f"{r:.1f}"))
    write_csv(tmp_path / "train.csv", rows[:4])
    write_csv(tmp_path / "test.csv", rows[4:])
    out = S.build_from_csv(tmp_path / "train.csv", tmp_path / "test.csv", 3, 2, seed=0)
    check_split(out["train"], 9, 9, 2)
    check_split(out["test"], 9, 2, 0)
    again = S.build_from_csv(tmp_path / "train.csv", tmp_path / "test.csv", 3, 2, seed=0)
    assert all(np.array_equal(out["train"][k], again["train"][k]) for k in out["train"])
    full = S.build_from_csv(tmp_path / "train.csv", tmp_path / "test.csv", None, 0, seed=0)
    assert len(full["train"]["inputs"]) == 4
    assert np.allclose(full["train"]["rating"], [float(r[3]) for r in rows[:4]])
    with pytest.raises(ValueError):
        S.build_from_csv(tmp_path / "train.csv", tmp_path / "test.csv", 5, 0, seed=0)
