"""Every task trains end-to-end on CPU, and `hrm eval` scores, renders and
writes the ARC submission for its checkpoints."""

from __future__ import annotations

import json

import pytest

from hrm import cli
from hrm.checkpoint import checkpoint_dirs
from hrm.train import train

def run(tiny, tmp_path, data: dict, **train_kw):
    cfg = tiny.config(tmp_path, data=data, optim={"lr": 1e-3},
                      train={"global_batch_size": 8, "eval_interval": 4, "log_interval": 2, "tensorboard": True,
                             **train_kw})
    metrics = train(cfg, log=lambda _m: None)
    return cfg, metrics


def test_maze_trains_and_evaluates_with_views(tmp_path, capsys, tiny):
    _, metrics = run(
        tiny, tmp_path,
        {"task": "maze", "num_train": 16, "num_test": 6, "num_aug": 2, "maze": {"size": 8, "min_path": 8}},
        eval_views=4,
    )
    assert metrics["eval_questions"] == 6 and 0.0 <= metrics["pass@2"] <= 1.0
    ckpt = checkpoint_dirs(tmp_path / "run")[-1]
    code = cli.main(["eval", "--checkpoint", str(ckpt), "--views", "8", "--render", str(tmp_path / "png"), "--render-count", "2"])
    assert code == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["eval_views"] == 8 and out["pass@2"] >= out["pass@1"]
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == ["maze_000.png", "maze_001.png"]
    # tensorboard got scalars and prediction images
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_arc_trains_and_writes_a_submission(tmp_path, capsys, tiny):
    _, metrics = run(
        tiny, tmp_path,
        {"task": "arc", "num_aug": 2, "arc": {"version": "arc-agi-1", "max_train_tasks": 4, "max_eval_tasks": 2}},
        eval_views=3,
    )
    assert metrics["eval_views"] == 3
    ckpt = checkpoint_dirs(tmp_path / "run")[-1]
    code = cli.main(["eval", "--checkpoint", str(ckpt), "--views", "3", "--out", str(tmp_path / "ev"), "--render", str(tmp_path / "png")])
    assert code == 0
    sub = json.loads((tmp_path / "ev" / "submission.json").read_text())
    assert len(sub) == 2
    for tests in sub.values():
        for attempt in tests:
            assert set(attempt) == {"attempt_1", "attempt_2"}
            assert all(isinstance(row, list) for row in attempt["attempt_1"])
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["eval_questions"] >= 2
    assert list((tmp_path / "png").glob("arc_*.png"))


def test_arc_overlap_guard_is_a_config_error(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("data: {task: arc, arc: {version: arc-agi-1, extra_versions: [arc-agi-2]}}\n")
    assert cli.main(["model-info", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "376" in err and err.count("\n") == 1
