"""Seeds in lockstep: one run of R seeds reports their mean and spread, keeps one
checkpoint of all of them, resumes, and evaluates as an ensemble; the index shows it."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from hrm.artifacts import ArtifactStore
from hrm.checkpoint import CheckpointError, checkpoint_dirs, load_checkpoint, seed_folders, verify_checkpoint
from hrm.seeds import train_seeds
from hrm.train import train


def history(run: Path, kind: str = "train") -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["kind"] == kind]


@pytest.fixture
def cfg_at(tiny):
    def make(root: Path, **train_kw):
        return tiny.config(root, data={"root": str(root.parent / "shared-data"), "num_train": 96},
                           train={"steps": 6, "eval_interval": 3, **train_kw})
    return make


def test_each_seed_trains_as_it_would_alone_and_reports_mean_and_spread(tmp_path, cfg_at):
    alone = {}
    for seed in (0, 1):
        train(cfg_at(tmp_path / f"alone{seed}", seed=seed), log=lambda _m: None)
        alone[seed] = tmp_path / f"alone{seed}" / "run"
    reports = []
    train_seeds(cfg_at(tmp_path / "both"), 2, log=lambda _m: None, report=lambda m, c: reports.append((m, c)))
    run = tmp_path / "both" / "run"
    for seed in (0, 1):  # its own RNG stream and data: the same numbers as the run alone
        assert [r["loss/total"] for r in history(run / f"seed_{seed}")] == \
            [r["loss/total"] for r in history(alone[seed])]
    metrics, ckpt = reports[-1]
    per_seed = [history(alone[s], "eval")[-1] for s in (0, 1)]
    for key in ("token_accuracy", "exact_accuracy", "pass@2"):
        values = [m[key] for m in per_seed]
        assert metrics[key] == pytest.approx(statistics.mean(values))
        assert metrics[f"{key}_std"] == pytest.approx(statistics.stdev(values))
    assert metrics["seeds"] == 2 and metrics["step"] == 6 and "step_std" not in metrics
    assert history(run, "eval")[-1]["token_accuracy_std"] == pytest.approx(metrics["token_accuracy_std"])
    # one checkpoint of both seeds, checked as a whole
    manifest = verify_checkpoint(ckpt)
    assert manifest["seeds"] == [0, 1] and set(manifest["seed_metrics"]) == {"0", "1"}
    assert [p.name for p in seed_folders(ckpt)] == ["seed_0", "seed_1"]
    assert [p.name for p in checkpoint_dirs(run)] == ["step_00000003", "step_00000006"]
    with pytest.raises(CheckpointError, match="one checkpoint per seed"):
        load_checkpoint(ckpt)


def test_a_seeds_run_resumes_bit_for_bit(tmp_path, cfg_at):
    full = cfg_at(tmp_path / "a")
    train_seeds(full, 2, log=lambda _m: None)

    class Stop(Exception):
        pass

    def stop(metrics, ckpt):
        raise Stop

    cut = cfg_at(tmp_path / "b")
    with pytest.raises(Stop):
        train_seeds(cut, 2, log=lambda _m: None, report=stop)
    train_seeds(cut, 2, resume=True, log=lambda _m: None)
    for seed in (0, 1):
        want = history(tmp_path / "a" / "run" / f"seed_{seed}")
        got = history(tmp_path / "b" / "run" / f"seed_{seed}")
        assert [r["step"] for r in got] == list(range(1, 7))
        assert [r["loss/total"] for r in got] == [r["loss/total"] for r in want]


def test_a_seeds_checkpoint_evaluates_as_an_ensemble_and_indexes_mean_and_spread(tmp_path, cfg_at):
    from hrm.inference import evaluate_checkpoint

    reports = []
    train_seeds(cfg_at(tmp_path / "r"), 2, log=lambda _m: None, report=lambda m, c: reports.append((m, c)))
    metrics, ckpt = reports[-1]
    result, _ = evaluate_checkpoint(ckpt, batch_size=32)
    assert result.metrics["ensemble_members"] == 2
    store = ArtifactStore(str(tmp_path / "store"))
    aid = store.add(experiment="e", trial_id="t1", hparams={"optim.lr": 3e-3}, checkpoint_dir=ckpt)
    row = store.table("e").to_pylist()[0]
    assert row["metric.pass@2"] == metrics["pass@2"] and row["metric.pass@2_std"] == metrics["pass@2_std"]
    assert row["metric.seeds"] == 2
    assert store.verify(aid)
    exported = store.export(aid, str(tmp_path / "out"))
    assert [p.name for p in seed_folders(exported)] == ["seed_0", "seed_1"]
