"""Searches on object storage and the faults of a preemptible cluster, on this machine:
an S3-compatible server (moto's, on 127.0.0.1) as the storage, real Ray clusters
(`ray start`, token authentication on) with a worker node in its own mount namespace.

- the smoke search on s3://: the driver killed mid-search, `--resume` from the bucket,
  and everything a user needs in the bucket (experiment, study, index, checkpoints,
  every trial's TensorBoard run, shared datasets), read back by `hrm artifacts`;
- a trial's workers on a node that cannot see the trial node's files: every run file
  reaches the bucket; then that node dies and the trial resumes on the survivor;
- a trial whose loss turns non-finite errors after its bounded attempts while the
  other trial finishes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
pafs = pytest.importorskip("pyarrow.fs")


ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))
TUNE = [sys.executable, str(ROOT / "ray_jobs" / "tune.py")]

from tests.helpers import free_port, wait_for  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bkt(s3):
    """The session's S3 server (conftest.py: its endpoint in os.environ, so Ray nodes started by
    these tests and their workers inherit it, as cluster nodes get theirs from the host) with
    a bucket `bkt`."""
    s3.bucket("bkt")
    return s3.env


def _env() -> dict[str, str]:
    # RAY_DEDUP_LOGS=0: every worker line reaches the driver's output (the attempts are counted)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return {**env, "PYTHONUNBUFFERED": "1", "RAY_DEDUP_LOGS": "0"}


def _files(uri: str) -> dict[str, int]:
    fs, base = pafs.FileSystem.from_uri(uri)
    infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    return {i.path[len(base) + 1:]: i.size for i in infos if i.type == pafs.FileType.File}


def _read(uri: str) -> bytes:
    fs, path = pafs.FileSystem.from_uri(uri)
    with fs.open_input_stream(path) as f:
        return f.read()


def _summary(out: str) -> dict:
    return json.loads(out[out.rindex("[tune] done: ") + len("[tune] done: "):])


def _wait_for_index(uri: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    wait_for(lambda: any(p.endswith(".parquet") for p in _files(uri)), timeout=timeout,
             what="a checkpoint indexed before the search ended", alive=proc)


def _tb_tags(uri: str, trial: str, tmp: Path) -> dict[str, set[int]]:
    """tag -> steps over every events file of a trial's folder in the bucket."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    tags: dict[str, set[int]] = {}
    for rel in (r for r in _files(uri) if r.startswith(f"{trial}/events.out.tfevents.")):
        local = tmp / rel.replace("/", "_")
        local.write_bytes(_read(f"{uri}/{rel}"))
        for event in EventFileLoader(str(local)).Load():
            for value in event.summary.value:
                tags.setdefault(value.tag, set()).add(event.step)
    return tags


def test_search_on_s3_killed_driver_resumes_from_the_bucket(bkt, tmp_path):
    """tune.py --smoke --storage s3://bkt/hrm, its driver SIGKILLed after the first indexed
    checkpoint, then --resume: the union of the trials, each checkpoint indexed once, and
    the bucket holds what a user needs."""
    ray.init(address="local", num_cpus=2)  # after the fixture: its workers see the endpoint
    try:
        gcs = ray.get_runtime_context().gcs_address
        cmd = [*TUNE, "--smoke", "--storage", "s3://bkt/hrm", "--name", "s3", "--address", gcs,
               "--set", "budget.num_samples=3", "--set", "overrides.train.wandb={project: hrm-tests}"]
        (tmp_path / "driver").mkdir()
        first = subprocess.Popen(cmd, env=_env(), cwd=tmp_path / "driver", stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, start_new_session=True)
        _wait_for_index("s3://bkt/hrm/artifacts/index", first)
        os.killpg(first.pid, signal.SIGKILL)  # the driver dies mid-search
        first.wait(timeout=30)
        done = subprocess.run(cmd + ["--resume"], env=_env(), cwd=tmp_path / "driver", capture_output=True,
                              text=True, timeout=900)
    finally:
        ray.shutdown()
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    summary = _summary(done.stdout)
    assert summary["trials"] == 3 and summary["errors"] == 0, summary

    files = _files("s3://bkt/hrm")
    # The experiment (Ray's state, the Optuna journal), checkpoints, the index, datasets.
    assert "s3/tuner.pkl" in files and any(f.startswith("s3/experiment_state") for f in files)
    assert "s3/optuna.journal" in files
    # Tune's checkpoints of trials that train in their own process, s3/<trial>/checkpoint_*/
    assert any(f.startswith("s3/train_in_trial_") and f.endswith("/checkpoint.pt") for f in files), sorted(files)[:40]
    assert any(f.startswith("datasets/") and f.endswith("/published.json") for f in files)
    trials = sorted({f.split("/")[1] for f in files if f.startswith("s3/") and f.endswith("/result.json")})
    assert len(trials) == 3
    for trial in trials:
        assert f"s3/{trial}/hrm/metrics.jsonl" in files and f"s3/{trial}/hrm/config.yaml" in files
        tags = _tb_tags("s3://bkt/hrm/s3", trial, tmp_path)
        assert "loss/total" in tags and "eval/pass@2" in tags, sorted(tags)
        assert any(t.startswith("predictions/") for t in tags)
        assert "_hparams_/session_start_info" in tags
    import optuna
    from optuna.storages.journal import JournalFileBackend

    from hrm.storage import download_file

    download_file("s3://bkt/hrm/s3/optuna.journal", tmp_path / "optuna.journal")  # a plain copy opens as it is
    journal = optuna.storages.JournalStorage(JournalFileBackend(str(tmp_path / "optuna.journal")))
    study = optuna.load_study(study_name="s3", storage=journal)
    assert len(study.trials) >= 3
    # Ray's result API on the bucket: hyperparameters by short name, and pass@2
    from ray.tune import ExperimentAnalysis

    frame = ExperimentAnalysis("s3://bkt/hrm/s3").dataframe()
    assert {"config/H_cycles", "pass@2", "flops"} <= set(frame.columns) and len(frame) == 3
    # W&B offline: each trial's run files beside its other files in the bucket
    assert sum(1 for t in trials if any(f.startswith(f"s3/{t}/hrm/wandb/offline-run-") and f.endswith(".wandb")
                                        for f in files)) == 3
    # the Delta index in polars, from the bucket
    import polars

    from hrm.artifact_index import storage_options

    index = "s3://bkt/hrm/artifacts/index/s3"
    assert polars.read_delta(index, storage_options=storage_options(index)).height >= 1

    # The index, from the bucket: no checkpoint twice; the CLI reads and exports from it.
    hrm = str(Path(sys.executable).with_name("hrm"))
    best = subprocess.run([hrm, "artifacts", "best", "--root", "s3://bkt/hrm/artifacts", "--experiment", "s3",
                           "--metric", "token_accuracy", "--json"], capture_output=True, text=True, env=_env())
    assert best.returncode == 0, best.stderr
    from hrm.artifacts import ArtifactStore

    table = ArtifactStore("s3://bkt/hrm/artifacts").table("s3")
    keys = list(zip(table["trial_id"].to_pylist(), table["step"].to_pylist()))
    assert len(keys) == len(set(keys)) >= 1
    artifact = json.loads(best.stdout)[0]["artifact_id"]
    export = subprocess.run([hrm, "artifacts", "export", artifact, str(tmp_path / "best"), "--root",
                             "s3://bkt/hrm/artifacts"], capture_output=True, text=True, env=_env())
    assert export.returncode == 0, export.stderr
    from hrm.checkpoint import load_model

    load_model(str(tmp_path / "best"))


def _node(args: list[str], log: Path, wrap: list[str] | None = None) -> subprocess.Popen:
    """`ray start --block`, its daemons in the process group we stop it through."""
    env = {**_env(), "RAY_AUTH_MODE": "token",  # as cluster/*.yaml start nodes
           "RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "5"}
    cmd = [*(wrap or []), RAY, "start", "--block", *args]
    return subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _kill(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=60)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def test_private_worker_node_then_its_loss(bkt, tmp_path, monkeypatch):
    """A head and a second node (2 CPUs each; the head's held by a blocker actor at first), the
    second in its own mount namespace: the driver's folder and the head's Ray folder are
    hidden under empty tmpfs there, and its temp folder is its own. The smoke trial (its
    Tune actor and its Train worker) lands on the second node and writes its run folder
    there. After its first indexed checkpoint the blocker goes and the node is SIGKILLed
    (a preemption): Tune restarts the trial on the head, Ray Train resumes it from the
    checkpoint in the bucket, the worker pulls the run files back from the bucket, fetches
    the dataset the lost node published, and the trial finishes with one history."""
    driver = tmp_path / "driver"
    driver.mkdir()
    own = Path(tempfile.mkdtemp(prefix="hrm-n2-", dir="/tmp"))  # the node's temp: short, as Ray's sockets live there
    port, dash = free_port(), free_port()
    node = ["--node-ip-address=127.0.0.1", "--num-cpus=2", "--object-store-memory=200000000", "--disable-usage-stats"]
    head = _node(["--head", f"--port={port}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", *node],
                 tmp_path / "head.log")
    # Inside its namespace the node sees empty tmpfs at the driver's folder, at the head's
    # Ray folder and at its own temp (also its TMPDIR): nothing it writes there is visible
    # outside, and it cannot read what the driver or the trial's node wrote.
    hide = f"for d in {driver} /tmp/ray {own}; do mount -t tmpfs tmpfs $d || exit 1; done; exec \"$@\""
    second = None
    try:
        address = f"127.0.0.1:{port}"
        wait_for(lambda: subprocess.run([RAY, "status", f"--address={address}"], capture_output=True,
                                        env={**_env(), "RAY_AUTH_MODE": "token"}).returncode == 0,
                 timeout=120, every=1, what="the head", alive=head, log=tmp_path / "head.log")
        # This process joins with the token `ray start` left in ~/.ray: Ray reads RAY_AUTH_MODE
        # into its cached config at import, so refresh that as ray.init does for a new cluster.
        monkeypatch.setenv("RAY_AUTH_MODE", "token")
        ray._raylet.Config.initialize("")
        ray.init(address=address)
        second = _node([f"--address={address}", f"--temp-dir={own}", *node], tmp_path / "node2.log",
                       wrap=["unshare", "--mount", "--propagation", "private", "sh", "-c", hide, "sh",
                             "env", f"TMPDIR={own}"])
        wait_for(lambda: len([n for n in ray.nodes() if n["Alive"]]) >= 2, timeout=120, what="the second node",
                 alive=second, log=tmp_path / "node2.log")
        head_id = ray.get_runtime_context().get_node_id()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        from ray.util.state import list_actors

        @ray.remote(num_cpus=2)
        class Blocker:
            def ready(self) -> bool:
                return True

        blocker = Blocker.options(scheduling_strategy=NodeAffinitySchedulingStrategy(head_id, soft=False)).remote()
        ray.get(blocker.ready.remote())
        cmd = [*TUNE, "--smoke", "--storage", "s3://bkt/ns", "--name", "ns", "--address", address,
               "--set", "budget.num_samples=1", "--set", "scheduler.type=fifo",
               "--set", "store.keep_per_trial=100", "--set", "budget.worker_group=always",
               # steps, not the smoke's FLOP budget: checkpoints at steps 10, 20 and 30 whatever is sampled
               "--set", "overrides.train.flops=null", "--set", "overrides.train.steps=30",
               "--set", "overrides.train.eval_interval=10"]
        search = subprocess.Popen(cmd, env={**_env(), "RAY_AUTH_MODE": "token"}, cwd=driver,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        _wait_for_index("s3://bkt/ns/artifacts/index", search)
        alive = [("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")]
        (worker,) = list_actors(address=address, filters=alive)
        assert worker.node_id != head_id  # the trial's worker is on the private node
        ray.kill(blocker)
        _kill(second, signal.SIGKILL)  # the node is preempted mid-trial
        out = search.communicate(timeout=600)[0]
    finally:
        ray.shutdown()
        for proc in (second, head):
            if proc is not None:
                _kill(proc)
        Path("/tmp/ray/ray_current_cluster").unlink(missing_ok=True)  # as `ray stop` would
        shutil.rmtree(own, ignore_errors=True)
    assert search.returncode == 0, out[-4000:]
    summary = _summary(out)
    assert summary["errors"] == 0 and summary["completed"] == 1, summary
    assert "resumed from" in out and "pulled" in out, out[-4000:]

    files = _files("s3://bkt/ns/ns")
    (trial,) = {f.split("/")[0] for f in files if f.endswith("/result.json")}
    history = [json.loads(line) for line in _read(f"s3://bkt/ns/ns/{trial}/hrm/metrics.jsonl").decode().splitlines()]
    # One history across both lives: every step once, the first life's part pulled back.
    assert [(r["kind"], r["step"]) for r in history] == [(k, s) for s in (10, 20, 30) for k in ("train", "eval")]
    tags = _tb_tags("s3://bkt/ns/ns", trial, tmp_path)
    assert tags["eval/pass@2"] == {10, 20, 30} and "_hparams_/session_start_info" in tags
    assert any(t.startswith("predictions/") for t in tags)
    from hrm.artifacts import ArtifactStore

    table = ArtifactStore("s3://bkt/ns/artifacts").table("ns")
    assert sorted(table["step"].to_pylist()) == [10, 20, 30], out  # none lost, none twice
    # The private node built the dataset and published it; the head fetched it, not rebuilt it.
    assert "published" in out and "[data] fetching" in out, out[-4000:]


NONFINITE = """
name: nonfinite
base: quickstart
overrides: {model.hidden_size: 32, model.num_heads: 4, model.H_layers: 1, model.L_layers: 1,
            data.num_train: 200, data.num_test: 50, data.sudoku.size: 6, data.sudoku.difficulty: easy,
            data.sudoku.blanks: 4, train.global_batch_size: 32, train.steps: 20, train.eval_interval: 10,
            train.log_interval: 10, train.eval_samples: 50}
metric: token_accuracy
mode: max
seed: 0  # Optuna's first two draws with this seed: lr 1e30 (diverges), then 1e-3
budget: {num_samples: 2, max_concurrent_trials: 1, num_workers: 1, cpus_per_worker: 1.0, trainable_cpus: 0.1,
         worker_restarts: 1, trial_retries: 1}  # worker_group auto: the trial trains in its own process
scheduler: {type: fifo}
params:
  optim.lr: {type: categorical, choices: [1.0e-3, 1.0e+30]}
"""


def test_a_trial_whose_loss_turns_non_finite_errors_after_its_attempts(tmp_path):
    """(worker_restarts + 1) * (trial_retries + 1) = 4 attempts, then the trial is ERROR with
    its cause in the summary; the other trial finishes and is the only one indexed."""
    space = tmp_path / "nonfinite.yaml"
    space.write_text(NONFINITE)
    ray.init(address="local", num_cpus=2)
    try:
        done = subprocess.run([*TUNE, "--space", str(space), "--storage", str(tmp_path / "runs"), "--address",
                               ray.get_runtime_context().gcs_address], env=_env(), cwd=tmp_path,
                              capture_output=True, text=True, timeout=900)
    finally:
        ray.shutdown()
    out = done.stdout + done.stderr
    assert done.returncode == 1, out[-4000:]  # a search with an errored trial exits 1
    summary = _summary(done.stdout)
    assert summary["trials"] == 2 and summary["errors"] == 1 and summary["completed"] == 1, summary
    assert "loss became nan" in summary["error_messages"][0] or "non-finite" in summary["error_messages"][0]
    starts = [line for line in out.splitlines() if "parameters," in line and "steps 0.." in line]
    assert len(starts) == 4 + 1, "\n".join(starts)  # 4 attempts of the bad trial, 1 of the good one
    from hrm.artifacts import ArtifactStore

    table = ArtifactStore(str(tmp_path / "runs" / "artifacts")).table("nonfinite")
    assert set(table["hp.optim.lr"].to_pylist()) == {1e-3}
