"""A real Ray cluster on this machine: `ray start --head` on 127.0.0.1 (token
authentication on, as by default), `ray job submit --working-dir .` of the smoke
search through the job API, SUCCEEDED, and the artifact index it wrote. The head
is stopped through its own process handle."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("head")
    if ray_is_running():
        pytest.fail("a Ray instance is already running on this machine; this test starts its own head")
    gcs, dash = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    log = open(tmp_path / "head.log", "w")
    proc = subprocess.Popen(
        [RAY, "start", "--head", "--block", f"--port={gcs}", "--node-ip-address=127.0.0.1",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", "--num-cpus=2", "--disable-usage-stats"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    url = f"http://127.0.0.1:{dash}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"ray start exited: {(tmp_path / 'head.log').read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError as exc:
            # With token authentication the API answers 401 to us: it is up.
            if getattr(exc, "code", None) in (401, 403):
                break
            time.sleep(1)
    else:
        pytest.fail("the dashboard / job API did not come up")
    yield url, env
    os.killpg(proc.pid, signal.SIGTERM)  # the head, by its own process handle
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    log.close()
    deadline = time.monotonic() + 60  # its daemons exit shortly after
    while ray_is_running() and time.monotonic() < deadline:
        time.sleep(1)
    assert not ray_is_running(), "Ray processes outlived the head"
    # What `ray stop` would also do: forget the address of the head we stopped.
    Path("/tmp/ray/ray_current_cluster").unlink(missing_ok=True)


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
         sys.executable, "ray_jobs/tune.py", "--smoke", "--storage", str(storage), "--name", "job"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert submit.returncode == 0, submit.stdout[-2000:] + submit.stderr[-2000:]
    job_id = re.search(r"raysubmit_\w+", submit.stdout + submit.stderr).group(0)
    status = ""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        out = subprocess.run([RAY, "job", "status", "--address", url, job_id], capture_output=True, text=True, env=env)
        text = (out.stdout + out.stderr).lower()  # "Job 'raysubmit_...' succeeded"
        status = next((s.upper() for s in ("succeeded", "failed", "stopped") if s in text), "")
        if status:
            break
        time.sleep(5)
    logs = subprocess.run([RAY, "job", "logs", "--address", url, job_id], capture_output=True, text=True, env=env)
    assert status == "SUCCEEDED", logs.stdout[-4000:]
    summary = json.loads(logs.stdout[logs.stdout.rindex("[tune] done: ") + len("[tune] done: ") :].split("\n}\n")[0] + "\n}")
    assert summary["errors"] == 0 and summary["trials"] == 4
    table = ArtifactStore(str(storage / "artifacts")).table("job")
    assert table.num_rows >= 1
