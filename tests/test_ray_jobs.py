"""The Ray jobs on a real local Ray (2 CPUs): the smoke search end to end, the
driver as the one writer of the artifact index with two trials reporting at once,
resume after the driver is killed, and Ray Train data parallelism.

These are the slowest tests (each Ray Train worker group takes ~15 s to start).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ray = pytest.importorskip("ray")

from tests.helpers import wait_for  # noqa: E402

pytestmark = pytest.mark.slow


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


def _read_index_meanwhile(path: Path):
    """Read the Delta index at `path` with duckdb and polars in a thread, in a loop, until the
    returned function is called: it returns (row counts seen by each reader, errors)."""
    import threading

    import polars

    from tests.helpers import duckdb_with_delta

    stop, seen, errors = threading.Event(), {"duckdb": [], "polars": []}, []

    def loop() -> None:
        con = duckdb_with_delta()
        while not stop.wait(0.5):
            if not (path / "_delta_log").is_dir():
                continue
            try:
                seen["duckdb"].append(con.sql(f"SELECT count(*) FROM delta_scan('{path}')").fetchone()[0])
                seen["polars"].append(polars.read_delta(str(path)).height)
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                errors.append(repr(exc))

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()

    def done() -> tuple[dict[str, list[int]], list[str]]:
        stop.set()
        thread.join(timeout=60)
        return seen, errors

    return done


def _summary(out: str) -> dict:
    return json.loads(out[out.rindex("[tune] done: ") + len("[tune] done: ") :])


def test_smoke_search_end_to_end(local_ray, tmp_path, capsys, monkeypatch):
    import optuna

    from hrm.artifacts import ArtifactStore
    from hrm.checkpoint import load_model
    from hrm.dataset import ensure_dataset
    from hrm.data.loader import Split
    from hrm.evaluate import run_eval
    from hrm.search import load_space
    from ray_jobs import tune

    storage = tmp_path / "storage"
    monkeypatch.chdir(tmp_path)  # the dataset cache is anchored where the driver runs
    reads = _read_index_meanwhile(storage / "artifacts" / "index" / "smoke")
    code = tune.main(["--smoke", "--storage", str(storage), "--name", "smoke"])
    seen, errors = reads()
    out = capsys.readouterr().out
    assert code == 0, out[-3000:]
    summary = _summary(out)
    assert summary["errors"] == 0 and summary["trials"] == 4
    assert summary["stopped_early"] >= 1, summary  # ASHA cut at least one trial
    assert summary["tensorboard"] == f"tensorboard --logdir {storage}/smoke"
    assert list((tmp_path / "data").iterdir())  # datasets built beside the driver, not in the checkout
    assert oct((storage / "smoke").stat().st_mode & 0o777) == "0o700"  # created private to the user
    # duckdb and polars read the index with one path while the driver wrote it: whole versions, no error
    assert not errors and seen["duckdb"] and seen["polars"], (errors[:3], seen)

    # What the user watches: the trial table with short hyperparameter names and the
    # search metric first, and no Tune hint at a TensorBoard folder without our logs.
    header = next(line for line in out.splitlines() if line.startswith("trial "))
    assert header.split()[:9] == ["trial", "status", "H_cycles", "L_cycles", "halt_max_steps",
                                  "halt_exploration_prob", "lr", "num_aug", "token_accuracy"]
    assert "STOPPED" in out and "To visualize your results with TensorBoard" not in out

    store = ArtifactStore(str(storage / "artifacts"))
    table = store.table("smoke")
    assert 1 <= table.num_rows <= 5  # the space keeps the best 2 per trial, 5 per experiment
    assert len(set(table.column("artifact_id").to_pylist())) == table.num_rows
    assert summary["best_artifact"]["artifact_id"] == store.best("smoke", "token_accuracy")["artifact_id"].to_pylist()[0]
    best = store.best("smoke", "pass@2", k=1).to_pylist()[0]
    with store.local_copy(best["artifact_id"]) as (path, _):
        model, cfg, _ = load_model(path)
    metrics = run_eval(
        model, Split.load(ensure_dataset(cfg.data), "test"), batch_size=64, limit=cfg.train.eval_samples,
        views=cfg.train.eval_views,
    ).metrics
    assert metrics["pass@2"] == pytest.approx(best["metric.pass@2"])

    # TensorBoard: one run per trial with our scalars, pictures and HParams, and the end's
    # inference-time scaling of the kept checkpoints (a series each, and a picture)
    exp = storage / "smoke"
    runs = _tb_runs(exp)
    scaling = runs.pop(exp / "inference_scaling")
    runs.pop(exp / "report")  # the report's figures and tables
    assert len(runs) == summary["trials"]  # one run per trial
    assert "inference_scaling/picture" in scaling and len(summary["inference_scaling"]) == table.num_rows
    for label, curve in summary["inference_scaling"].items():  # Mmax 1, 2, 4, ... up to 4x its training Mmax
        assert f"inference_scaling/token_accuracy/{label}" in scaling and list(curve)[:2] == ["1", "2"]
    scaled = store.table("smoke")
    assert all(c in scaled.column_names for c in ("metric.token_accuracy@mmax1", "metric.token_accuracy@mmax2",
                                                  "metric.inference_flops@mmax1@views2@paths2@members1"))
    # the frontier over Mmax x views x paths: each row's own front in the index, the search's in
    # TensorBoard (a picture and a table) and in the summary, a front no measured point beats
    for row in scaled.to_pylist():
        own = json.loads(row["frontier_json"])
        assert own and all(a["compute"] < b["compute"] and a["value"] < b["value"] for a, b in zip(own, own[1:]))
    assert "inference_frontier/picture" in scaling and "inference_frontier/front/text_summary" in scaling
    front = summary["inference_frontier"]
    assert {(p["views"], p["paths"]) for p in front} <= {(1, 1), (1, 2), (2, 1), (2, 2)} and front
    assert front == sorted(front, key=lambda p: p["compute"])
    for tags in runs.values():
        assert "eval/pass@2" in tags and "loss/total" in tags
        assert any(t.startswith("predictions/") for t in tags)
        assert b"model.H_cycles" in tags["_hparams_/session_start_info"]
        assert b"eval/pass@2" in tags["_hparams_/experiment"]

    # Compute rungs: every trial trains the same FLOP budget (its steps depend on its cost per
    # step), reports the counters it spent, and ASHA cuts only at a rung (>= grace, < max_t).
    space = load_space("smoke")
    lasts = [[json.loads(line) for line in d.joinpath("result.json").read_text().splitlines()]
             for d in exp.iterdir() if d.joinpath("result.json").exists()]
    for rows in lasts:
        assert all(r["samples"] == 32 * r["step"] and r["flops"] > 0 for r in rows)
        last = rows[-1]["flops"]
        assert last >= space.scheduler.max_t or space.scheduler.grace_period <= last < space.scheduler.max_t
    assert len({rows[-1]["step"] for rows in lasts if rows[-1]["flops"] >= space.scheduler.max_t}) >= 2, lasts
    assert sum(rows[-1]["flops"] < space.scheduler.max_t for rows in lasts) == summary["stopped_early"]
    assert all("eval_by_mflop/token_accuracy" in tags and "eval_by_samples/pass@2" in tags for tags in runs.values())
    # every trial points its compiled blocks at one cache for the experiment (hrm.compiled)
    configs = [d / "hrm" / "config.yaml" for d in exp.iterdir() if (d / "hrm" / "config.yaml").exists()]
    assert len(configs) == summary["trials"]
    assert all(f"compile_cache: {exp}/compile_cache" in c.read_text() for c in configs)
    # The report, written at the end of the search (its statistics: tests/test_report.py)
    report = json.loads((exp / "report" / "report.json").read_text())
    assert summary["report"] == str(exp / "report") and report["summary"]["trials"] == summary["trials"]
    assert report["summary"]["by_status"]["stopped"] == summary["stopped_early"]
    assert all((exp / "report" / path).exists() for path in report["figures"].values())

    # Ray's own result API shows each trial's hyperparameters by short name and its pass@2.
    from ray import tune as ray_tune

    from ray_jobs.common import train_in_trial  # the trainable the search ran, as Tuner.restore wants it

    frames = [ray_tune.ExperimentAnalysis(str(exp)).dataframe(),
              ray_tune.Tuner.restore(str(exp), trainable=train_in_trial).get_results().get_dataframe()]
    for frame in frames:
        assert {"config/H_cycles", "config/lr", "pass@2", "pass@2_se", "flops"} <= set(frame.columns)
        assert len(frame) == summary["trials"]

    # The Optuna study tells ASHA's cuts (PRUNED) from trials that ran to the end.
    from optuna.storages.journal import JournalFileBackend  # Optuna's own backend, on the file as it is

    journal = optuna.storages.JournalStorage(JournalFileBackend(str(exp / "optuna.journal")))
    states = [t.state for t in optuna.load_study(study_name="smoke", storage=journal).trials]
    assert states.count(optuna.trial.TrialState.PRUNED) == summary["stopped_early"]
    assert states.count(optuna.trial.TrialState.COMPLETE) == summary["trials"] - summary["stopped_early"]


def test_a_mixed_family_search_with_seeds_runs_end_to_end(local_ray, tmp_path, capsys, monkeypatch):
    """The shipped families space at smoke size: HRM, TRM and the plain transformer proposed
    in one Optuna study with their own conditional knobs, two seeds per trial (every report
    and index row carries the mean and the spread), ASHA's rung broken by token accuracy."""
    from hrm.artifacts import ArtifactStore
    from ray_jobs import tune

    storage = tmp_path / "storage"
    monkeypatch.chdir(tmp_path)
    # the 2/2-cycle HRM's 20 steps at hidden 32 (4.7e9 FLOPs a step), evaluated twice
    small = {"model.hidden_size": 32, "data.num_train": 100, "data.num_test": 20, "train.flops": 9.4e10,
             "train.eval_interval": 4.7e10, "train.eval_samples": 20, "train.log_interval": 10}
    code = tune.main(["--space", "families", "--storage", str(storage), "--name", "fam",
                      *[a for k, v in small.items() for a in ("--set", f"overrides.{k}={v}")],
                      "--set", "scheduler.max_t=9.4e10", "--set", "scheduler.grace_period=4.7e10",
                      "--set", "budget.num_samples=4",
                      "--set", "budget.max_concurrent_trials=1", "--set", "budget.cpus_per_worker=1"])
    out = capsys.readouterr().out
    assert code == 0, out[-3000:]
    summary = _summary(out)
    assert summary["errors"] == 0 and summary["trials"] == 4
    results = [json.loads(line) for d in (storage / "fam").iterdir() if (d / "result.json").exists()
               for line in (d / "result.json").read_text().splitlines()]
    families = {"hrm", "trm", "urm", "transformer"}
    assert {r["config"]["arch"] for r in results} <= families and len({r["config"]["arch"] for r in results}) >= 3
    assert all(r["seeds"] == 2 and "pass@2_std" in r and "rung_score" in r for r in results)
    header = next(line for line in out.splitlines() if line.startswith("trial "))
    assert header.split()[2:4] == ["arch", "H_cycles"] and "pass@2_std" in header
    rows = ArtifactStore(str(storage / "artifacts")).table("fam").to_pylist()
    assert rows and all(r["metric.seeds"] == 2 and r["metric.pass@2_std"] is not None for r in rows)
    assert {json.loads(r["hparams_json"])["model.arch"] for r in rows} <= families


def test_one_writer_indexes_every_checkpoint_of_two_concurrent_trials(local_ray, tmp_path, capsys, monkeypatch):
    """Two trials train and report at once; the driver's callback is the only writer and
    keeps every checkpoint (keep limits raised): the index holds each reported
    (trial, step) exactly once, and no Train worker wrote to the store."""
    from hrm.artifacts import ArtifactStore
    from ray_jobs import tune

    storage = tmp_path / "storage"
    monkeypatch.chdir(tmp_path)
    code = tune.main(["--smoke", "--storage", str(storage), "--name", "two", "--set", "budget.num_samples=2",
                      "--set", "budget.max_concurrent_trials=2", "--set", "budget.cpus_per_worker=0.9",
                      "--set", "scheduler.type=fifo", "--set", "store.keep_per_trial=100",
                      "--set", "store.keep_per_experiment=100",
                      "--set", "overrides.train.wandb={project: hrm-tests, mode: offline}"])
    out = capsys.readouterr().out
    assert code == 0, out[-3000:]
    reported = set()  # each report is an eval round with its checkpoint
    for trial_dir in (storage / "two").iterdir():
        if (trial_dir / "result.json").exists():
            for line in (trial_dir / "result.json").read_text().splitlines():
                r = json.loads(line)
                reported.add((r["trial_id"], r["step"]))
    assert len({t for t, _ in reported}) == 2 and len(reported) == 2 * 3  # 3 eval rounds each
    table = ArtifactStore(str(storage / "artifacts")).table("two")
    keys = list(zip(table["trial_id"].to_pylist(), table["step"].to_pylist()))
    assert sorted(keys) == sorted(reported)  # none lost, none twice
    # Their reports interleaved: both trials were running at the same time.
    starts = sorted(json.loads((d / "result.json").read_text().splitlines()[0])["timestamp"]
                    for d in (storage / "two").iterdir() if (d / "result.json").exists())
    ends = sorted(json.loads((d / "result.json").read_text().splitlines()[-1])["timestamp"]
                  for d in (storage / "two").iterdir() if (d / "result.json").exists())
    assert starts[1] <= ends[0]
    # W&B, offline: one run per trial, grouped by the experiment, its files beside the trial's in the storage
    from tests.helpers import wandb_records

    runs = [next(r.run for r in wandb_records(f) if r.WhichOneof("record_type") == "run")
            for f in (storage / "two").glob("*/hrm/wandb/offline-run-*/run-*.wandb")]
    assert sorted(r.run_group for r in runs) == ["two", "two"] and len({r.display_name for r in runs}) == 2


def test_resume_after_the_driver_is_killed(local_ray, tmp_path):
    from hrm.artifacts import ArtifactStore

    storage = tmp_path / "storage"
    cmd = [sys.executable, str(ROOT / "ray_jobs" / "tune.py"), "--smoke", "--storage", str(storage), "--name", "res",
           "--address", local_ray, "--set", "budget.num_samples=3"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                            cwd=tmp_path)
    index = storage / "artifacts" / "index"
    wait_for(lambda: list(index.rglob("*.parquet")), timeout=240, what="a checkpoint indexed before the kill",
             alive=proc)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver dies mid-search
    proc.wait(timeout=30)

    done = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    store = ArtifactStore(str(storage / "artifacts"))
    table = store.table("res")
    keys = list(zip(table.column("trial_id").to_pylist(), table.column("step").to_pylist()))
    assert len(keys) == len(set(keys)) and table.num_rows >= 1
    summary = _summary(done.stdout)
    assert summary["trials"] == 3 and summary["errors"] == 0


def test_a_one_worker_trial_trains_in_its_own_process_as_a_worker_group_would(local_ray, tmp_path, capsys,
                                                                              monkeypatch):
    """budget.worker_group auto (one worker: the Tune trial's process trains) and always (a
    Ray Train worker group) run the same code: the same losses and metrics at every step,
    every checkpoint indexed; auto starts no Train worker."""
    from ray.util.state import list_actors

    from hrm.artifacts import ArtifactStore
    from ray_jobs import tune

    storage = tmp_path / "storage"
    monkeypatch.chdir(tmp_path)

    def search(name: str, group: str) -> list[dict]:
        code = tune.main(["--smoke", "--storage", str(storage), "--name", name, "--set", "budget.num_samples=1",
                          "--set", "scheduler.type=fifo", "--set", f"budget.worker_group={group}"])
        assert code == 0, capsys.readouterr().out[-3000:]
        (history,) = (storage / name).glob("*/hrm/metrics.jsonl")
        return [json.loads(line) for line in history.read_text().splitlines()]

    def train_workers() -> int:
        return len(list_actors(address=local_ray, filters=[("class_name", "=", "RayTrainWorker")], limit=10000))

    before = train_workers()
    own = search("own", "auto")
    assert train_workers() == before
    group = search("group", "always")
    assert train_workers() == before + 1
    assert [(r["kind"], r["step"]) for r in own] == [(r["kind"], r["step"]) for r in group] != []
    for mine, theirs in zip(own, group):
        keys = [k for k in theirs if k.startswith("loss/") or "accuracy" in k or k.startswith("pass@")]
        assert keys and {k: mine[k] for k in keys} == pytest.approx({k: theirs[k] for k in keys}, rel=1e-6)
    store = ArtifactStore(str(storage / "artifacts"))
    assert sorted(store.table("own")["step"].to_pylist()) == sorted(store.table("group")["step"].to_pylist()) != []


def test_two_ray_train_workers_match_one(local_ray, tmp_path, tiny):
    from ray_jobs import train as ray_train

    def run(workers: int) -> list[float]:
        code = ray_train.main(
            ["--config", "quickstart", "--storage", str(tmp_path), "--name", f"w{workers}",
             "--num-workers", str(workers), "--cpus-per-worker", "1",
             *tiny.flags(tmp_path, model={"halt_max_steps": 1}, train={"steps": 6, "eval_interval": 6})]
        )
        assert code == 0
        rows = [json.loads(line) for line in (tmp_path / f"w{workers}" / "hrm" / "metrics.jsonl").read_text().splitlines()]
        return [r["loss/total"] for r in rows if r["kind"] == "train"]

    one, two = run(1), run(2)
    assert len(one) == len(two) == 6
    assert two == pytest.approx(one, rel=1e-4)


def _last_result(storage: Path, name: str) -> dict:
    (trial_dir,) = [d for d in (storage / name).iterdir() if (d / "result.json").exists()]
    return json.loads((trial_dir / "result.json").read_text().splitlines()[-1])


def test_a_killed_train_worker_resumes_from_its_checkpoint(local_ray, tmp_path):
    """SIGKILL the trial's Ray Train worker after its first indexed checkpoint: Ray Train
    restarts the worker group from that checkpoint (budget.worker_restarts) and the trial
    ends at the same step with the same metrics as an uninterrupted run of the same seed
    (tolerance 1e-6 relative; CPU resume is bit for bit), every checkpoint indexed once."""
    from ray.util.state import list_actors

    from hrm.artifacts import ArtifactStore

    storage = tmp_path / "storage"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def search(name: str) -> subprocess.Popen:
        cmd = [sys.executable, str(ROOT / "ray_jobs" / "tune.py"), "--smoke", "--storage", str(storage),
               "--name", name, "--address", local_ray, "--set", "budget.num_samples=1",
               "--set", "scheduler.type=fifo", "--set", "store.keep_per_trial=100",
               "--set", "budget.worker_group=always",
               # steps, not the smoke's FLOP budget: checkpoints at steps 10, 20 and 30 whatever is sampled
               "--set", "overrides.train.flops=null", "--set", "overrides.train.steps=30",
               "--set", "overrides.train.eval_interval=10"]
        return subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)

    plain = search("plain")
    assert plain.wait(timeout=600) == 0, plain.stdout.read()[-3000:]
    killed = search("killed")
    index = storage / "artifacts" / "index" / "killed"
    wait_for(lambda: list(index.glob("*.parquet")), timeout=300, what="a checkpoint indexed", alive=killed)
    workers = list_actors(address=local_ray, filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")])
    assert len(workers) == 1, workers
    os.kill(workers[0].pid, signal.SIGKILL)
    out = killed.communicate(timeout=600)[0]
    assert killed.returncode == 0, out[-3000:]
    assert "resumed from" in out and "at step 10" in out, out[-3000:]

    want, got = _last_result(storage, "plain"), _last_result(storage, "killed")
    assert got["step"] == want["step"] == 30
    for key in ("token_accuracy", "exact_accuracy", "pass@2", "q_halt_accuracy", "mean_steps"):
        assert got[key] == pytest.approx(want[key], rel=1e-6), key
    table = ArtifactStore(str(storage / "artifacts")).table("killed")
    assert sorted(table["step"].to_pylist()) == [10, 20, 30]  # none lost, none twice
