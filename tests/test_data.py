"""Dataset storage and the training stream: byte-identical builds, metadata,
memory-mapped reads, the CLI builder, and the epoch/group sampling."""

from __future__ import annotations

import json
import typing

import numpy as np
import pyarrow as pa
import pytest

from hrm import cli, tasks
from hrm.config import ConfigError, DataConfig, SudokuConfig, from_dict
from hrm.data import arrow
from hrm.dataset import build_dataset, builder_options, dataset_dir, ensure_dataset, task_spec
from hrm.data.loader import SampleStream, Split


def small(root, **kw) -> DataConfig:
    base = dict(root=str(root), num_train=40, num_test=20, num_aug=3, sudoku=SudokuConfig(size=4, difficulty="easy", blanks=5))
    return DataConfig(**{**base, **kw})


def test_same_seed_gives_byte_identical_files(tmp_path):
    a = build_dataset(small(tmp_path), tmp_path / "a")
    b = build_dataset(small(tmp_path), tmp_path / "b")
    c = build_dataset(small(tmp_path, seed=1), tmp_path / "c")
    for split in ("train", "test"):
        assert (a / f"{split}.arrow").read_bytes() == (b / f"{split}.arrow").read_bytes()
        assert (a / f"{split}.arrow").read_bytes() != (c / f"{split}.arrow").read_bytes()


def test_metadata_records_shape_counts_seed_and_builder(tmp_path):
    cfg = small(tmp_path, seed=7)
    path = ensure_dataset(cfg, log=lambda _m: None)
    assert path == dataset_dir(cfg) and path.parent == tmp_path
    meta = arrow.read_meta(path / "train.arrow")
    assert meta["vocab_size"] == 6 and meta["seq_len"] == 16 and meta["num_puzzle_ids"] == 1
    assert meta["num_rows"] == 40 * 4 and meta["num_groups"] == 40 and meta["seed"] == 7
    assert meta["builder"]["sudoku"] == {"size": 4, "difficulty": "easy", "blanks": 5, "train_csv": None, "test_csv": None,
                                         "generator": "guesses-rating-1"}
    assert meta["rating"]["train"]["count"] == 40 and meta["rating"]["test"]["count"] == 20  # per puzzle, not per row
    spec = task_spec(cfg)
    assert (spec.vocab_size, spec.seq_len) == (6, 16)
    # Readable by plain pyarrow, metadata included.
    with pa.memory_map(str(path / "test.arrow")) as src:
        table = pa.ipc.open_file(src).read_all()
    assert table.num_rows == 20
    assert json.loads(table.schema.metadata[b"hrm"])["split"] == "test"


def test_other_options_get_another_cache_folder(tmp_path):
    assert dataset_dir(small(tmp_path)) != dataset_dir(small(tmp_path, num_aug=4))
    assert dataset_dir(small(tmp_path)) == dataset_dir(small(tmp_path))


def test_read_split_is_memory_mapped_zero_copy(tmp_path):
    path = build_dataset(small(tmp_path), tmp_path / "d")
    cols, meta = arrow.read_split(path / "train.arrow")
    assert cols["inputs"].shape == (160, 16) and cols["inputs"].dtype == np.uint8
    assert not cols["inputs"].flags.owndata  # a view of the mapped file


def test_stream_takes_one_variant_per_group_each_epoch_and_resumes(tmp_path):
    split = Split.load(build_dataset(small(tmp_path), tmp_path / "d"), "train")
    s = SampleStream(split, seed=3)
    group_of = {tuple(r): g for r, g in zip(split.columns["inputs"].tolist(), split.columns["group_id"].tolist())}
    first = s.take(40)
    groups = sorted(group_of[tuple(r)] for r in first["inputs"].tolist())
    assert groups == list(range(40))  # every group exactly once per epoch
    assert s.epoch == 1 and s.position == 0
    s.take(13)
    state = s.state_dict()
    want = s.take(30)
    s2 = SampleStream(split, seed=3)
    s2.load_state_dict(state)
    got = s2.take(30)
    assert all(np.array_equal(want[k], got[k]) for k in want)


def test_ranks_split_an_epoch_without_overlap(tmp_path):
    split = Split.load(build_dataset(small(tmp_path), tmp_path / "d"), "train")
    one = SampleStream(split, seed=0)._epoch_rows(0)
    r0, r1 = SampleStream(split, seed=0, rank=0, world_size=2), SampleStream(split, seed=0, rank=1, world_size=2)
    assert sorted(np.concatenate([r0._epoch_rows(0), r1._epoch_rows(0)]).tolist()) == sorted(one.tolist())


def test_cli_builds_a_dataset(tmp_path, capsys):
    out = tmp_path / "cli"
    code = cli.main(
        ["data", "build", "sudoku", "--size", "4", "--difficulty", "easy", "--blanks", "5",
         "--num-train", "10", "--num-test", "5", "--num-aug", "1", "--out", str(out)]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out)["path"] == str(out)
    assert arrow.read_meta(out / "train.arrow")["num_rows"] == 20
    assert cli.main(["data", "build", "sudoku", "--size", "4", "--difficulty", "easy", "--out", str(tmp_path / "x")]) == 2
    assert "data.sudoku.blanks" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_stream_takes_all_examples_of_one_variant_per_group():
    # 3 groups; group 0 has variants 1 (2 rows) and 2 (3 rows); group 1 has variant 3
    # (1 row); group 2 has variants 4 (2 rows) and 5 (1 row).
    vid = np.array([1, 1, 2, 2, 2, 3, 4, 4, 5], dtype=np.int32)
    gid = np.array([0, 0, 0, 0, 0, 1, 2, 2, 2], dtype=np.int32)
    cols = {
        "inputs": np.arange(9, dtype=np.uint8)[:, None].repeat(4, 1),
        "labels": np.zeros((9, 4), np.uint8),
        "puzzle_id": vid,
        "variant_id": vid,
        "group_id": gid,
    }
    split = Split(cols, {})
    seen_variants = set()
    for epoch in range(20):
        rows = SampleStream(split, seed=0)._epoch_rows(epoch)
        by_group = {}
        for r in rows.tolist():
            by_group.setdefault(int(gid[r]), []).append(int(vid[r]))
        assert sorted(by_group) == [0, 1, 2]
        for g, vids in by_group.items():
            assert len(set(vids)) == 1  # one variant per group per epoch
            assert len(vids) == int((vid == vids[0]).sum())  # with all its rows
            seen_variants.add(vids[0])
    assert seen_variants == {1, 2, 3, 4, 5}


def test_big_splits_are_written_in_batches_and_read_without_concatenation(tmp_path, monkeypatch):
    monkeypatch.setattr(arrow, "_MAX_VALUES", 1000)  # Arrow's 2^31 cap, scaled down
    a = np.arange(300 * 16, dtype=np.uint8).reshape(300, 16)
    cols = {"inputs": a, "labels": a[::-1].copy(), "puzzle_id": np.zeros(300, np.int32), "group_id": np.arange(300, dtype=np.int32)}
    arrow.write_split(tmp_path / "train.arrow", cols, {"seq_len": 16})
    got, _ = arrow.read_split(tmp_path / "train.arrow")
    assert isinstance(got["inputs"], arrow.ChunkedRows) and len(got["inputs"].chunks) > 1
    idx = np.array([299, 0, 62, 63, 64, 150, 62])
    assert np.array_equal(got["inputs"][idx], a[idx]) and np.array_equal(got["inputs"][7], a[7])
    rows = SampleStream(Split(got, {}), seed=0).take(300)
    assert sorted(rows["inputs"][:, 0].tolist()) == sorted(a[:, 0].astype(np.int64).tolist())


# ---------------------------------------------------------------------------
# the task registry


@pytest.mark.parametrize("task, data", [
    ("sudoku", {}),
    ("maze", {"num_train": 4, "num_test": 2, "maze": {"size": 6, "min_path": 1}}),
    ("arc", {"arc": {"max_train_tasks": 2, "max_eval_tasks": 1}}),
])
def test_each_registered_task_is_shaped_built_evaluated_and_drawn(tmp_path, tiny, task, data):
    cfg = tiny.config(tmp_path, data={"task": task, **data}).data
    entry = tasks.get(task)
    before = task_spec(cfg)  # from the registry: nothing built yet
    assert before == entry.spec(cfg)
    path = ensure_dataset(cfg, log=lambda _m: None)
    meta = arrow.read_meta(path / "train.arrow")
    assert (meta["task"], meta["vocab_size"], meta["seq_len"]) == (task, before.vocab_size, before.seq_len)
    assert 1 <= meta["num_puzzle_ids"] <= before.num_puzzle_ids  # ARC's is an upper bound
    assert meta["builder"] == builder_options(cfg) and set(entry.options(cfg)) <= set(meta["builder"])
    split = Split.load(path, "test")
    assert type(entry.evaluator(split)).__name__ == {"sudoku": "SudokuEval", "maze": "MazeEval", "arc": "ARCEval"}[task]
    cols = split.columns
    picture = entry.picture(cols["inputs"][0], cols["labels"][0], cols["labels"][0])
    assert picture.ndim == 3 and picture.shape[2] == 3 and picture.dtype == np.uint8


def test_data_task_allows_exactly_the_registered_tasks():
    hints = typing.get_type_hints(DataConfig)
    assert typing.get_args(hints["task"]) == tuple(tasks.TASKS) == ("sudoku", "maze", "arc")  # config names them as data
    with pytest.raises(ConfigError, match="'data.task' must be one of 'sudoku', 'maze', 'arc', got 'chess'"):
        from_dict({"data": {"task": "chess"}})
    with pytest.raises(ValueError, match="unknown task 'chess' .allowed: sudoku, maze, arc."):
        tasks.get("chess")
    with pytest.raises(ConfigError, match="data.num_aug for maze must be in 0..7"):
        from_dict({"data": {"task": "maze", "num_aug": 8}})


def test_a_build_names_the_sudoku_grade_only_where_it_asked_for_extreme_grade(tmp_path):
    """Easy puzzles are rated (column `rating`) but their build log says nothing of the
    Sudoku-Extreme grade; a hard build prints its ratings and grade."""
    easy, said = DataConfig(root=str(tmp_path), num_train=8, num_test=4, num_aug=0,
                            sudoku=SudokuConfig(size=4, difficulty="easy", blanks=4)), []
    ensure_dataset(easy, log=said.append)
    assert said and not any("grade" in line or "ratings" in line for line in said), said
    hard_meta = {"rating": {"definition": "x", "graded": True, "train": {"count": 0}}}
    assert tasks.get("sudoku").report(hard_meta)[0].startswith("sudoku ratings")
