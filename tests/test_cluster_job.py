"""A real Ray cluster on this machine: `ray start --head` on 127.0.0.1 (token
authentication on, as by default) plus a second node joined with `ray start
--address`, one CPU each; `ray job submit --working-dir .` of the smoke search
through the job API, SUCCEEDED, trials spread over both raylets, and the artifact
index it wrote. Both nodes are stopped through their own process handles."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import api_up, free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))

pytestmark = pytest.mark.slow


def _start(args: list[str], log_path: Path, env: dict[str, str]) -> subprocess.Popen:
    log = open(log_path, "w")
    # Own session: a node's daemons are its process group, stopped by our handle.
    return subprocess.Popen([RAY, "start", "--block", *args], stdout=log, stderr=subprocess.STDOUT,
                            env=env, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:  # it already exited, with its daemons
        proc.wait()
        return
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def _node_count(url: str, env: dict[str, str]) -> int:
    out = subprocess.run([RAY, "list", "nodes", "--address", url, "--filter", "state=ALIVE", "--format", "json"],
                         capture_output=True, text=True, env={**env, "RAY_AUTH_MODE": "token"}, timeout=60)
    # An empty answer is the line "No resource in the cluster", not JSON.
    return len(json.loads(out.stdout)) if out.stdout.lstrip().startswith("[") else 0


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("head")
    if ray_is_running():
        pytest.fail("a Ray instance is already running on this machine; this test starts its own head")
    gcs, dash = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    # One CPU per node, so that two concurrent trials cannot share a raylet; a
    # small object store each, as both share this machine's /dev/shm.
    node = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--object-store-memory=200000000",
            "--disable-usage-stats"]
    procs = [_start(["--head", f"--port={gcs}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", *node],
                    tmp_path / "head.log", env)]
    url = f"http://127.0.0.1:{dash}"
    temp = None
    try:
        wait_for(lambda: api_up(url), timeout=120, every=1, what="the dashboard", alive=procs[0],
                 log=tmp_path / "head.log")
        # A joining node needs the cluster's token too, as in cluster/*.yaml. It
        # gets its own temp dir, as a separate machine would: sharing the head's,
        # it garbage-collected the unpacked --working-dir that the job driver runs
        # in. Short, because Ray's Unix socket paths live under it.
        temp = Path(tempfile.mkdtemp(prefix="ray-node2-", dir="/tmp"))
        procs.append(_start([f"--address=127.0.0.1:{gcs}", f"--temp-dir={temp}", *node],
                            tmp_path / "node2.log", {**env, "RAY_AUTH_MODE": "token"}))
        wait_for(lambda: _node_count(url, env) >= 2, timeout=120, every=2, what="the second node joining",
                 alive=procs[1], log=tmp_path / "node2.log")
        yield url, env
    finally:
        for proc in reversed(procs):  # the joined node first, then the head
            _stop(proc)
        deadline = time.monotonic() + 60  # their daemons exit shortly after (checked below)
        while ray_is_running() and time.monotonic() < deadline:
            time.sleep(1)  # teardown: not a test failure of its own, the assertion below says it
        # What `ray stop` would also do: forget the address of the head we stopped.
        Path("/tmp/ray/ray_current_cluster").unlink(missing_ok=True)
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
    assert not ray_is_running(), "Ray processes outlived the nodes"


def ray_is_running() -> bool:
    return subprocess.run(["pgrep", "-f", "gcs_server"], capture_output=True).returncode == 0


def test_job_api_rejects_requests_without_the_token(head):
    url, _ = head
    with pytest.raises(OSError) as err:
        urllib.request.urlopen(f"{url}/api/jobs/", timeout=10)
    assert getattr(err.value, "code", None) in (401, 403)


def test_submit_the_smoke_search_as_a_job(head, tmp_path):
    from hrm.artifacts import ArtifactStore

    url, env = head
    # A client finds the cluster's token in ~/.ray/auth_token (or RAY_AUTH_TOKEN_PATH /
    # RAY_AUTH_TOKEN) once it is told the cluster uses token authentication.
    env = {**env, "RAY_AUTH_MODE": "token"}
    storage = tmp_path / "storage"
    submit = subprocess.run(
        [RAY, "job", "submit", "--address", url, "--working-dir", str(ROOT), "--no-wait", "--",
         sys.executable, "ray_jobs/tune.py", "--smoke", "--storage", str(storage), "--name", "job",
         # Two trials at once, 0.1 + 0.8 CPU each: two Train workers never fit on one node.
         "--set", "budget.max_concurrent_trials=2", "--set", "budget.cpus_per_worker=0.8",
         "--set", "budget.worker_group=always"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert submit.returncode == 0, submit.stdout[-2000:] + submit.stderr[-2000:]
    job_id = re.search(r"raysubmit_\w+", submit.stdout + submit.stderr).group(0)
    def status() -> str:
        out = subprocess.run([RAY, "job", "status", "--address", url, job_id], capture_output=True, text=True, env=env)
        text = (out.stdout + out.stderr).lower()  # "Job 'raysubmit_...' succeeded"
        return next((s.upper() for s in ("succeeded", "failed", "stopped") if s in text), "")

    final = wait_for(status, timeout=600, every=5, what=f"job {job_id} ending")
    logs = subprocess.run([RAY, "job", "logs", "--address", url, job_id], capture_output=True, text=True, env=env)
    assert final == "SUCCEEDED", logs.stdout[-4000:]
    summary = json.loads(logs.stdout[logs.stdout.rindex("[tune] done: ") + len("[tune] done: ") :].split("\n}\n")[0] + "\n}")
    assert summary["errors"] == 0 and summary["trials"] == 4
    table = ArtifactStore(str(storage / "artifacts")).table("job")
    assert table.num_rows >= 1
    # The trials' Ray Train workers ran on both raylets (State API, via the head).
    actors = subprocess.run(
        [RAY, "list", "actors", "--address", url, "--filter", "class_name=RayTrainWorker", "--detail",
         "--format", "json", "--limit", "1000"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert actors.returncode == 0, actors.stderr[-2000:]
    workers = json.loads(actors.stdout)
    assert len(workers) >= summary["trials"]
    assert len({w["node_id"] for w in workers}) == 2, workers
