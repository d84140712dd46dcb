"""The Ray jobs on a real local Ray (2 CPUs): the smoke search end to end, resume
after the driver is killed, and Ray Train data parallelism.

These are the slowest tests (each Ray Train worker group takes ~15 s to start).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ray = pytest.importorskip("ray")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray():
    from ray_jobs.common import ensure_importable

    ensure_importable()  # workers inherit PYTHONPATH and import ray_jobs by name
    ray.init(address="local", num_cpus=2)  # a new instance, never a stale one from /tmp/ray
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def _tb_runs(folder: Path) -> dict[Path, dict[str, bytes]]:
    """Per TensorBoard run (event-file folder): tag -> plugin content."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    runs: dict[Path, dict[str, bytes]] = {}
    for event_file in folder.rglob("events.out.tfevents.*"):
        tags = runs.setdefault(event_file.parent, {})
        for event in EventFileLoader(str(event_file)).Load():
            for value in event.summary.value:
                plugin = value.metadata.plugin_data
                tags[value.tag] = plugin.plugin_name.encode() + b":" + plugin.content
    return runs


def test_smoke_search_end_to_end(local_ray, tmp_path, capsys):
    from hrm.artifacts import ArtifactStore
    from hrm.data.build import ensure_dataset
    from hrm.data.loader import Split
    from hrm.evaluate import evaluate
    from ray_jobs import tune

    storage = tmp_path / "storage"
    code = tune.main(["--smoke", "--storage", str(storage), "--name", "smoke"])
    out = capsys.readouterr().out
    assert code == 0, out[-3000:]
    summary = json.loads(out[out.rindex("[tune] done: ") + len("[tune] done: ") :])
    assert summary["errors"] == 0 and summary["trials"] == 4
    assert summary["stopped_early"] >= 1, summary  # ASHA cut at least one trial

    store = ArtifactStore(str(storage / "artifacts"))
    table = store.table("smoke")
    assert table.num_rows >= 1
    assert len(set(table.column("artifact_id").to_pylist())) == table.num_rows
    best = store.best("smoke", "pass@2", k=1).to_pylist()[0]
    model, cfg, _ = store.load_model(best["artifact_id"])
    metrics = evaluate(
        model, Split.load(ensure_dataset(cfg.data), "test"), batch_size=64, limit=cfg.train.eval_samples,
        views=cfg.train.eval_views,
    )
    assert metrics["pass@2"] == pytest.approx(best["metric.pass@2"])

    # TensorBoard: one run per trial with our scalars and pictures, and Tune's HParams
    exp = storage / "smoke"
    runs = _tb_runs(exp)
    assert len(runs) == summary["trials"]  # one run per trial
    for tags in runs.values():
        assert "eval/pass@2" in tags and "loss/total" in tags
        assert any(t.startswith("predictions/") for t in tags)
        if "_hparams_/session_start_info" in tags:  # written by Tune when the trial ends
            assert b"model.H_cycles" in tags["_hparams_/session_start_info"]
    assert sum("_hparams_/experiment" in tags for tags in runs.values()) == summary["trials"]
    assert (exp / "optuna-journal.log").exists()


def test_resume_after_the_driver_is_killed(local_ray, tmp_path):
    from hrm.artifacts import ArtifactStore

    storage = tmp_path / "storage"
    cmd = [sys.executable, str(ROOT / "ray_jobs" / "tune.py"), "--smoke", "--storage", str(storage), "--name", "res",
           "--address", local_ray, "--set", "budget.num_samples=3"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    index = storage / "artifacts" / "index"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not list(index.glob("part-*.parquet")):
        time.sleep(1)
    assert list(index.glob("part-*.parquet")), "no checkpoint was indexed before the kill"
    os.killpg(proc.pid, signal.SIGKILL)  # the driver dies mid-search
    proc.wait(timeout=30)

    done = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    store = ArtifactStore(str(storage / "artifacts"))
    table = store.table("res")
    keys = list(zip(table.column("trial_id").to_pylist(), table.column("step").to_pylist()))
    assert len(keys) == len(set(keys)) and table.num_rows >= 1
    summary = json.loads(done.stdout[done.stdout.rindex("[tune] done: ") + len("[tune] done: ") :])
    assert summary["trials"] == 3 and summary["errors"] == 0


def test_two_ray_train_workers_match_one(local_ray, tmp_path):
    from ray_jobs import train as ray_train

    def run(workers: int) -> list[float]:
        code = ray_train.main(
            ["--config", "quickstart", "--storage", str(tmp_path), "--name", f"w{workers}",
             "--num-workers", str(workers), "--cpus-per-worker", "1",
             "--set", "model.hidden_size=32", "--set", "model.H_layers=1", "--set", "model.L_layers=1",
             "--set", "model.halt_max_steps=1", "--set", "data.num_train=64", "--set", "data.num_test=16",
             "--set", "data.num_aug=1", "--set", f"data.root={tmp_path / 'data'}",
             "--set", "train.global_batch_size=16", "--set", "train.steps=6", "--set", "train.eval_interval=6",
             "--set", "train.log_interval=1", "--set", "train.tensorboard=false"]
        )
        assert code == 0
        rows = [json.loads(line) for line in (tmp_path / f"w{workers}" / "hrm" / "metrics.jsonl").read_text().splitlines()]
        return [r["loss/total"] for r in rows if r["kind"] == "train"]

    one, two = run(1), run(2)
    assert len(one) == len(two) == 6
    assert two == pytest.approx(one, rel=1e-4)
