"""Tests for hrm.data.arc: augmentation, encoding, splits, leakage guards, loading."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from hrm.data import arc as A
from hrm.data import arc_tasks as T
from hrm.data.augment import DIHEDRAL_INVERSE, dihedral

# shared/ sits beside the checkout (here and in CI); HRM_CONCEPTARC overrides.
CONCEPT_ARC = Path(
    os.environ.get("HRM_CONCEPTARC", Path(__file__).resolve().parents[2] / "shared" / "data" / "ConceptARC")
)
needs_concept_arc = pytest.mark.skipif(not CONCEPT_ARC.is_dir(), reason="ConceptARC not available")


@pytest.fixture(scope="module")
def arc1():
    return T.load_version("arc-agi-1")


def grids_of(task):
    return [g for pair in task.train + task.test for g in pair]


# ----------------------------------------------------------------------------- augmentation


def test_random_aug_layout():
    rng = np.random.default_rng(0)
    augs = np.stack([A.random_aug(rng) for _ in range(200)])
    assert augs.dtype == np.int16 and augs.shape == (200, 11)
    assert (augs[:, 1] == 0).all()
    assert (np.sort(augs[:, 1:], axis=1) == np.arange(10)).all()
    assert set(augs[:, 0].tolist()) == set(range(8))


def test_dihedral_inverse_table():
    g = np.arange(12).reshape(3, 4)  # non-square: all 8 maps differ
    forms = [dihedral(g, k) for k in range(8)]
    assert len({(f.shape, f.tobytes()) for f in map(np.ascontiguousarray, forms)}) == 8
    for k in range(8):
        inv = [j for j in range(8) if np.array_equal(dihedral(forms[k], j), g)]
        assert inv == [DIHEDRAL_INVERSE[k]]


def test_aug_round_trip_on_real_tasks(arc1):
    rng = np.random.default_rng(1)
    for task in arc1[0][:3] + arc1[1][:3]:
        for k in range(8):
            for _ in range(2):
                aug = A.random_aug(rng)
                aug[0] = k
                for g in grids_of(task):
                    out = A.apply_aug_grid(g, aug)
                    perm = aug[1:]
                    assert np.array_equal(out, dihedral(perm[g], k))
                    assert np.array_equal(out, perm[dihedral(g, k)])  # colour map and dihedral commute
                    assert out.shape == (g.shape[::-1] if k in A.TRANSPOSING else g.shape)
                    assert np.array_equal(A.invert_aug_grid(out, aug), g)
                    assert A.invert_aug_grid(out, aug).dtype == g.dtype
    assert np.array_equal(A.apply_aug_grid(grids_of(task)[0], A.identity_aug()), grids_of(task)[0])


# ----------------------------------------------------------------------------- encoding


SHAPES = [(1, 1), (30, 30), (29, 30), (30, 29), (3, 7), (12, 1), (1, 30), (28, 28)]


def test_encode_decode_round_trip():
    rng = np.random.default_rng(2)
    for h, w in SHAPES:
        g = rng.integers(0, 10, (h, w)).astype(np.int8)
        mr, mc = max(0, 29 - h), max(0, 29 - w)
        for off in {(0, 0), (mr, mc), (mr, 0), (int(rng.integers(mr + 1)), int(rng.integers(mc + 1)))}:
            t = A.encode(g, off)
            assert t.shape == (900,) and t.dtype == np.uint8
            d = A.decode(t)
            assert d.dtype == np.int8 and np.array_equal(d, g), ((h, w), off)
        with pytest.raises(ValueError):
            A.encode(g, (mr + 1, 0))
        with pytest.raises(ValueError):
            A.encode(g, (0, mc + 1))


def test_eos_placement():
    g = np.full((3, 4), 7, np.int8)
    t = A.encode(g, (2, 5)).reshape(30, 30)
    assert (t[2:5, 5:9] == 9).all()  # colour 7 -> token 9
    assert (t[5, 5:10] == A.EOS).all()  # EOS row below, including the corner (5, 9)
    assert (t[2:5, 9] == A.EOS).all()  # EOS column right
    assert (t == A.EOS).sum() == 3 + 4 + 1
    assert (t == A.PAD).sum() == 900 - 12 - 8
    full = A.encode(np.zeros((30, 30), np.int8)).reshape(30, 30)
    assert (full == A.COLOR0).all()  # no room for EOS
    tall = A.encode(np.zeros((29, 30), np.int8)).reshape(30, 30)
    assert (tall[29] == A.EOS).all() and (tall == A.EOS).sum() == 30
    wide = A.encode(np.zeros((30, 29), np.int8)).reshape(30, 30)
    assert (wide[:, 29] == A.EOS).all() and (wide == A.EOS).sum() == 30
    one = A.encode(np.array([[3]], np.int8)).reshape(30, 30)
    assert one[0, 0] == 5 and one[0, 1] == one[1, 0] == one[1, 1] == A.EOS and (one == A.EOS).sum() == 3
    for bad in (np.zeros((0, 3)), np.zeros((31, 2)), np.full((2, 2), 10), np.zeros(5)):
        with pytest.raises(ValueError):
            A.encode(bad)


def test_decode_malformed_predictions():
    rng = np.random.default_rng(3)
    preds = [rng.integers(0, 256, 900), rng.integers(0, 12, 900), np.zeros(900), np.full(900, 5),
             np.full(900, A.EOS), rng.integers(0, 12, 900).astype(np.float32)]
    for p in preds:
        d = A.decode(p)
        assert d.dtype == np.int8 and d.ndim == 2 and d.shape[0] <= 30 and d.shape[1] <= 30
        assert ((d >= 0) & (d <= 9)).all()
    assert A.decode(np.zeros(900)).shape == (0, 0)
    assert A.decode(np.full(900, 5)).shape == (30, 30)
    g = rng.integers(0, 10, (5, 6)).astype(np.int8)
    t = A.encode(g).reshape(30, 30)
    t[3, 4] = A.PAD  # a hole: rows from the hole down are dropped, never a non-colour
    assert np.array_equal(A.decode(t), g[:3])
    t = A.encode(g).reshape(30, 30)
    t[0, 6] = 4  # EOS column overwritten in the first row: wider first row, rows below cut
    assert A.decode(t).shape == (1, 7)


# ----------------------------------------------------------------------------- build


def uniform_task(name, colour):
    g = np.full((4, 4), colour, np.int8)
    return T.Task(name, ((g, g), (g, g)), ((g, g),))


@pytest.fixture(scope="module")
def small(arc1):
    train = arc1[0][:3] + [uniform_task("blank", 0), uniform_task("five", 5)]
    evals = arc1[1][:2]
    calls = []
    splits, meta = A.build(train, evals, num_aug=6, seed=7, progress=lambda d, t: calls.append((d, t)))
    return train, evals, splits, meta, calls


def variants_per_task(cols, n_tasks):
    out = {}
    for g in range(n_tasks):
        ids = np.unique(cols["puzzle_id"][cols["group_id"] == g])
        out[g] = ids
    return out


def test_build_columns_and_meta(small):
    train, evals, splits, meta, calls = small
    assert calls == [(i + 1, 7) for i in range(7)]
    assert meta["task_names"] == [t.name for t in train + evals] and meta["num_eval_tasks"] == 2
    for cols in splits.values():
        n = len(cols["inputs"])
        for name, (shape, dtype) in A.COLUMNS.items():
            assert cols[name].shape == (n, *shape) and cols[name].dtype == dtype, name
        assert np.array_equal(cols["variant_id"], cols["puzzle_id"])
        order = np.lexsort((cols["puzzle_id"], cols["group_id"]))
        assert np.array_equal(order, np.arange(n))  # sorted by group, then puzzle id
    ids = np.concatenate([c["puzzle_id"] for c in splits.values()])
    assert ids.min() == 1 and meta["num_puzzle_ids"] == ids.max() + 1
    assert len(np.unique(ids)) == ids.max()  # ids 1..max all used
    tr = splits["train"]
    assert meta["mean_examples_per_puzzle"] == len(tr["inputs"]) / len(np.unique(tr["puzzle_id"]))


def test_build_split_rules(small):
    train, evals, splits, meta, _ = small
    tr, te = splits["train"], splits["test"]
    n_train = len(train)
    assert (te["group_id"] >= n_train).all() and (te["test_index"] >= 0).all()
    assert (te["offset"] == 0).all()
    train_ids = variants_per_task(tr, n_train + 2)
    test_ids = variants_per_task(te, n_train + 2)
    for g, task in enumerate(train + evals):
        rows = tr["group_id"] == g
        v = len(train_ids[g])
        if g < n_train:  # demonstrations and test pairs in train, nothing in test
            assert rows.sum() == v * (len(task.train) + len(task.test))
            assert (tr["test_index"][rows] >= 0).sum() == v * len(task.test)
            assert len(test_ids[g]) == 0
        else:  # demonstrations in train, test pairs in test, same puzzle ids
            assert rows.sum() == v * len(task.train) and (tr["test_index"][rows] == -1).all()
            assert np.array_equal(test_ids[g], train_ids[g])
            assert (te["group_id"] == g).sum() == v * len(task.test)
    assert (tr["offset"] != 0).any(axis=1).mean() > 0.5  # translated


def test_build_rows_match_encode(small):
    train, evals, splits, _, _ = small
    tasks = train + evals
    for cols in splits.values():
        seen = {}
        for n in range(len(cols["inputs"])):
            task, pid, ti = tasks[cols["group_id"][n]], cols["puzzle_id"][n], cols["test_index"][n]
            if ti < 0:
                seen[pid] = seen.get(pid, -1) + 1
                pair = task.train[seen[pid]]
            else:
                pair = task.test[ti]
            aug, off = cols["aug"][n], tuple(cols["offset"][n])
            assert np.array_equal(cols["inputs"][n], A.encode(A.apply_aug_grid(pair[0], aug), off))
            assert np.array_equal(cols["labels"][n], A.encode(A.apply_aug_grid(pair[1], aug), off))
            assert np.array_equal(A.invert_aug_grid(A.decode(cols["labels"][n]), aug), pair[1])


def test_build_variants_and_dedup(small):
    train, evals, splits, _, _ = small
    tr = splits["train"]
    ids = variants_per_task(tr, len(train) + 2)
    counts = [len(ids[g]) for g in range(len(train) + 2)]
    assert counts[3] == 1  # all-zero symmetric task: every augmentation is the identity
    assert 1 < counts[4] <= 9  # one colour: at most 9 distinct colour maps, dihedral irrelevant
    assert all(c == 7 for i, c in enumerate(counts) if i not in (3, 4))  # original + 6
    for g in range(len(counts)):
        first = tr["puzzle_id"] == ids[g][0]
        assert (tr["aug"][first] == A.identity_aug()).all()  # variant 0 is the original
        augs = {tr["aug"][tr["puzzle_id"] == p][0].tobytes() for p in ids[g]}
        assert len(augs) == len(ids[g])


def test_build_deterministic_and_translate_flag(small):
    train, evals, splits, meta, _ = small
    again, meta2 = A.build(train, evals, num_aug=6, seed=7)
    assert meta2 == meta
    for s in splits:
        for c in splits[s]:
            assert np.array_equal(splits[s][c], again[s][c]), (s, c)
    other, _ = A.build(train, evals, num_aug=6, seed=8)
    assert not np.array_equal(other["train"]["aug"], splits["train"]["aug"])
    flat, _ = A.build(train, evals, num_aug=6, seed=7, translate=False)
    assert (flat["train"]["offset"] == 0).all()
    assert np.array_equal(flat["train"]["aug"], splits["train"]["aug"])  # same variants
    zero, meta0 = A.build(train[:1], [], num_aug=0, seed=0)
    assert len(zero["test"]["inputs"]) == 0 and meta0["num_puzzle_ids"] == 2
    with pytest.raises(ValueError):
        A.build(train, evals, num_aug=-1, seed=0)


# ----------------------------------------------------------------------------- selection and guards


def test_version_guard():
    with pytest.raises(ValueError, match="376") as e:
        T.select_tasks("arc-agi-1", extra_versions=("arc-agi-2",))
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="unknown"):
        T.select_tasks("arc-agi-3")


def test_content_guard(arc1):
    train, evals = arc1
    copy = T.Task("sneaky", evals[5].test + evals[5].train[::-1], ())  # pairs moved and reordered
    assert T.check_overlap(train[:10] + [copy], evals) == ["sneaky"]
    assert T.check_overlap(train[:10], evals) == []
    # ARC-AGI-1's own split: 40853293 is 070dd51e; select_tasks drops it instead of refusing
    assert T.check_overlap(train, evals) == ["40853293"]
    tr, ev = T.select_tasks("arc-agi-1")
    assert len(tr) == 399 and len(ev) == 400 and "40853293" not in {t.name for t in tr}
    # 6 ARC-AGI-2 evaluation tasks are ARC-AGI-1 tasks
    with pytest.raises(ValueError, match="6 training tasks equal arc-agi-2"):
        T.select_tasks("arc-agi-2", extra_versions=("arc-agi-1",))


def test_content_guard_extra_dir(arc1, tmp_path):
    t = arc1[1][0]
    pairs = lambda ps: [{"input": i.tolist(), "output": o.tolist()} for i, o in ps]  # noqa: E731
    (tmp_path / "copy.json").write_text(json.dumps({"train": pairs(t.train), "test": pairs(t.test)}))
    with pytest.raises(ValueError, match=f"{tmp_path.name}/copy"):
        T.select_tasks("arc-agi-1", extra_dirs=(str(tmp_path),))


def test_pair_key_is_the_augmentation_orbit():
    rng = np.random.default_rng(0)
    inp, out = rng.integers(0, 4, (3, 5)).astype(np.int8), rng.integers(0, 4, (5, 2)).astype(np.int8)
    key = T.pair_key(inp, out)
    for _ in range(12):  # every augmentation `build` applies keeps the key
        aug = A.random_aug(rng)
        assert T.pair_key(A.apply_aug_grid(inp, aug), A.apply_aug_grid(out, aug)) == key
    changed = out.copy()
    changed[0, 0] = (changed[0, 0] + 1) % 4
    assert T.pair_key(inp, changed) != key  # one cell differs
    assert T.pair_key(out, inp) != key  # input and output swapped
    swap01 = np.array([1, 0, 2, 3, 4, 5, 6, 7, 8, 9], np.int8)  # moves colour 0: not one of our maps
    assert T.pair_key(swap01[inp], swap01[out]) != key


def test_pair_level_leak_guard_on_a_constructed_leak():
    rng = np.random.default_rng(1)

    def g(h, w):
        return rng.integers(0, 10, (h, w)).astype(np.int8)

    answer = (g(4, 3), g(3, 4))
    evaluation = T.Task("ev", ((g(2, 2), g(2, 2)), answer), (answer,))  # its own demo of the answer stays
    aug = np.array([5, 0, 3, 1, 2, 9, 8, 7, 6, 5, 4], np.int16)  # a dihedral map and a colour permutation
    copy = (A.apply_aug_grid(answer[0], aug), A.apply_aug_grid(answer[1], aug))
    train = [T.Task("tr", ((g(3, 3), g(3, 3)), copy), ((g(2, 3), g(2, 3)),)), T.Task("solo", (), (copy,))]
    kept, evals, leaks = T.drop_leaked_pairs(train, [evaluation])
    assert leaks == [{"task": "tr", "pair": "train[1]", "eval_task": "ev", "eval_test": 0},
                     {"task": "solo", "pair": "test[0]", "eval_task": "ev", "eval_test": 0}]
    assert [t.name for t in kept] == ["tr"] and len(kept[0].train) == 1 and len(kept[0].test) == 1
    assert len(evals[0].train) == 2
    # the build drops it too, says so in the metadata, and no train row holds any variant of the answer
    splits, meta = A.build(train, [evaluation], num_aug=4, seed=0, translate=False)
    assert meta["leaked_pairs"] == leaks and meta["task_names"] == ["tr", "ev"]
    variants = {T.pair_key(A.decode(x), A.decode(y)) for x, y in zip(splits["train"]["inputs"], splits["train"]["labels"])}
    assert T.pair_key(*answer) in variants  # from ev's own demonstration only
    rows_of_tr = splits["train"]["group_id"] == 0
    assert T.pair_key(*answer) not in {T.pair_key(A.decode(x), A.decode(y)) for x, y in
                                       zip(splits["train"]["inputs"][rows_of_tr], splits["train"]["labels"][rows_of_tr])}


def test_pair_level_guard_finds_the_known_arc_agi_1_leak():
    train, evals = T.select_tasks("arc-agi-1")  # whole-task copies are gone already
    _, _, leaks = T.drop_leaked_pairs(train, evals)
    assert {"task": "caa06a1f", "pair": "train[2]", "eval_task": "50a16a69", "eval_test": 0} in leaks
    assert len(leaks) == 1


@needs_concept_arc
def test_load_folder_concept_arc():
    tasks = T.load_folder(CONCEPT_ARC)
    assert len(tasks) == 160
    names = {t.name for t in tasks}
    assert "corpus/AboveBelow/AboveBelow1" in names
    for t in tasks:
        assert t.train and t.test
        assert all(g.dtype == np.int8 and g.ndim == 2 for g in grids_of(t))
    tr, ev = T.select_tasks("arc-agi-1", extra_dirs=(str(CONCEPT_ARC),))
    assert len(tr) == 399 + 160 and "ConceptARC/corpus/AboveBelow/AboveBelow1" in {t.name for t in tr}


@pytest.mark.parametrize("text, match", [
    ('{"train": [', "invalid JSON"),
    ('{"train": [{"input": [[1, 2], [3]], "output": [[1]]}], "test": []}', "not rectangular"),
    ('{"train": [{"input": [[1, 12]], "output": [[1]]}], "test": []}', "colours 0..9"),
    ('{"train": [{"input": [[1]], "output": [[1]]}], "test": [{"input": [[0]]}]}', "'input' and 'output'"),
    (json.dumps({"train": [{"input": [[0] * 31] * 31, "output": [[1]]}], "test": []}), "larger than 30x30"),
    ('[1, 2]', "'train' and 'test'"),
])
def test_load_folder_errors(tmp_path, text, match):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "ok.json").write_text('{"train": [], "test": [{"input": [[1]], "output": [[2]]}]}')
    bad = tmp_path / "sub" / "bad.json"
    bad.write_text(text)
    with pytest.raises(ValueError, match=match) as e:
        T.load_folder(tmp_path)
    assert str(bad) in str(e.value) and "\n" not in str(e.value)
    bad.unlink()
    assert [t.name for t in T.load_folder(tmp_path)] == ["sub/ok"]


# ----------------------------------------------------------------------------- scoring


def test_score_submission(arc1, tmp_path):
    two = next(t for t in arc1[1] if len(t.test) == 2)
    evals = [two] + [t for t in arc1[1] if len(t.test) == 1][:3]
    sub = {t.name: [{"attempt_1": [[0]], "attempt_2": o.tolist()} for _, o in t.test] for t in evals}
    assert T.score_submission(sub, evals) == 1.0
    sub[evals[0].name][1] = {"attempt_1": [[0]], "attempt_2": "garbage"}  # half of a 2-test task
    del sub[evals[1].name]
    path = tmp_path / "submission.json"
    path.write_text(json.dumps(sub))
    assert T.score_submission(path, evals) == pytest.approx((0.5 + 0 + 1 + 1) / 4)
