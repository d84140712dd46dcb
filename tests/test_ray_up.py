"""`ray up cluster/onprem.yaml` for real, with this machine as the only host: the
launcher logs in over SSH, syncs the project and the token, runs the YAML's setup
and start commands, `ray job submit` runs the smoke search to SUCCEEDED, and
`ray down` stops that Ray.

The test (root, as in CI) plays both sides:
- the host is a dedicated account, `hrmci` (created if missing, removed after),
  reached with a key generated here through our own sshd on 127.0.0.1 at a free
  port. Ray's launcher has no SSH port setting, so `auth.ssh_proxy_command` runs
  tests/ssh_port_proxy.py to reach that port.
- the client runs `ray get-auth-token --generate`, `ray up`, `ray job submit` and
  `ray down` with HOME in a temp folder: its ~/.ray/auth_token is a fresh token,
  and root's own token is never read or replaced.

The override YAML is cluster/onprem.yaml with head_ip 127.0.0.1, no workers, that
account and key. The pip installs of Ray and torch (minutes, gigabytes) are
replaced: the YAML's ~/hrm-venv gets this venv's packages through a link. The start
commands are the YAML's, `ray stop` included. That is safe: they run as hrmci, and
the kernel refuses to let hrmci signal another user's processes (EPERM, which
`ray stop` reports and skips). hrmci's TMPDIR keeps Ray's address file and the
autoscaler's state in its own home. So the test stops no Ray it did not start. It
also refuses to run beside another Ray: two instances on one machine break Ray
Train ("Found multiple active Ray instances").

Needs root, sshd and rsync: when they are missing it installs openssh-server and
rsync with apt-get (.ci/run does so beforehand), and skips only where apt-get is
not available. hrmci runs this venv and checkout in place, so where they sit in a
private folder the folders above are opened to traversal (o+x) while it runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers import api_up, free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))
VENV = Path(sys.prefix)
PACKAGES = Path(sysconfig.get_paths()["purelib"])  # this venv's site-packages
SSHD = "/usr/sbin/sshd"  # sshd re-executes itself, so it must be started by its absolute path
USER = "hrmci"
DASHBOARD = "http://127.0.0.1:8265"  # the YAML's ports: GCS 6379, dashboard 8265 (Ray's default)

pytestmark = pytest.mark.slow


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert out.returncode == 0, f"{' '.join(map(str, cmd))}: {out.stdout[-3000:]}{out.stderr[-3000:]}"
    return out


def _missing_tools() -> list[str]:
    return [t for t in (SSHD, "ssh", "ssh-keygen", "rsync") if shutil.which(t) is None]


def _require_host_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: it creates the account hrmci and runs its own sshd (CI runs as root)")
    if sys.version_info[:2] != (3, 11):
        pytest.skip("cluster/onprem.yaml runs python3.11 on every host; this venv's packages are for another Python")
    if not _missing_tools():
        return
    if shutil.which("apt-get") is None:
        pytest.skip(f"{', '.join(_missing_tools())} missing (openssh-server, rsync) and no apt-get to install them")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update", "-qq"], env=env, timeout=600)
    _run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "openssh-server", "rsync"], env=env, timeout=600)
    assert not _missing_tools()


def _port_taken(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _pids(*pgrep_args: str) -> list[str]:
    """`pgrep -a` lines (pid and command line) of the matching processes."""
    out = subprocess.run(["pgrep", "-a", *pgrep_args], capture_output=True, text=True)
    return out.stdout.splitlines()


def _wait_until_gone(*pgrep_args: str, timeout_s: float) -> list[str]:
    """Wait for the matching processes to exit; those still there after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while (left := _pids(*pgrep_args)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


@contextlib.contextmanager
def _account():
    """The dedicated account, its processes all the test's own; removed after if created here."""
    try:
        pw, created = pwd.getpwnam(USER), False
    except KeyError:
        # Password '*': no password logs in, yet the account is not locked ('!', useradd's
        # default), which sshd without PAM refuses even with a valid key.
        _run(["useradd", "--create-home", "--shell", "/bin/bash", "--password", "*", USER])
        pw, created = pwd.getpwnam(USER), True
    if _pids("-u", USER):
        pytest.fail(f"{USER} already has processes (an earlier run's?): {_pids('-u', USER)}")
    try:
        yield pw
    finally:
        # Whatever of the account outlived `ray down` and our sshd: its user only.
        subprocess.run(["pkill", "-KILL", "-u", USER])
        _wait_until_gone("-u", USER, timeout_s=30)
        if created:
            subprocess.run(["userdel", "--remove", USER], capture_output=True)


@contextlib.contextmanager
def _traversable(*paths: Path):
    """Let other users pass through `paths` and the folders above them (o+x: enter, not
    list), as a checkout may sit in a private folder; the modes are restored after."""
    changed: dict[Path, int] = {}
    for path in paths:
        for folder in (path.resolve(), *path.resolve().parents):
            mode = stat.S_IMODE(folder.stat().st_mode)
            if not mode & stat.S_IXOTH and folder not in changed:
                changed[folder] = mode
                folder.chmod(mode | stat.S_IXOTH)
    try:
        yield
    finally:
        for folder, mode in changed.items():
            folder.chmod(mode)


@contextlib.contextmanager
def _sshd(folder: Path, port: int):
    """Our own sshd on 127.0.0.1:`port`, its own host key and config, for USER's keys only."""
    folder.mkdir()
    host_key = folder / "host_key"
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)])
    config = folder / "sshd_config"
    config.write_text(textwrap.dedent(f"""\
        ListenAddress 127.0.0.1:{port}
        HostKey {host_key}
        PidFile {folder}/sshd.pid
        AllowUsers {USER}
        PubkeyAuthentication yes
        PasswordAuthentication no
        KbdInteractiveAuthentication no
        UsePAM no
        """))
    # sshd's privilege-separation folder (Debian's path); a fresh container may lack it.
    privsep = Path("/run/sshd")
    made_privsep = not privsep.exists()
    privsep.mkdir(mode=0o755, exist_ok=True)
    log_path = folder / "sshd.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        wait_for(lambda: _port_taken(port), timeout=30, every=0.2, what="sshd", alive=proc, log=log_path)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if made_privsep:
            shutil.rmtree(privsep, ignore_errors=True)


def _authorize(pw: pwd.struct_passwd, key: Path) -> None:
    """USER logs in with `key`: its public half in ~/.ssh/authorized_keys (sshd's strict modes)."""
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hrm-ray-up-test", "-f", str(key)])
    ssh = Path(pw.pw_dir) / ".ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    keys = ssh / "authorized_keys"
    keys.write_text(key.with_suffix(".pub").read_text())
    keys.chmod(0o600)
    for path in (ssh, keys):
        os.chown(path, pw.pw_uid, pw.pw_gid)


def _override(key: Path, ssh_port: int) -> dict:
    """cluster/onprem.yaml on this machine: head 127.0.0.1, no workers, USER with `key`,
    and this venv's packages in place of the pip installs."""
    config = yaml.safe_load((ROOT / "cluster" / "onprem.yaml").read_text())
    config["provider"].update(head_ip="127.0.0.1", worker_ips=[])
    config["auth"] = {"ssh_user": USER, "ssh_private_key": str(key),
                      "ssh_proxy_command": f"{sys.executable} {ROOT / 'tests' / 'ssh_port_proxy.py'} %h {ssh_port}"}
    setup = config["setup_commands"]
    kept = [c for c in setup if "pip install" not in c]
    assert len(kept) == len(setup) - 4, setup  # pip, Ray, torch, the project: nothing else goes
    site = "~/hrm-venv/lib/python3.11/site-packages"
    config["setup_commands"] = [
        # Made before the YAML's `python3.11 -m venv` line, which then keeps it; without pip,
        # as nothing is pip-installed into it.
        "test -x ~/hrm-venv/bin/python || python3.11 -m venv --without-pip ~/hrm-venv",
        *kept,
        # This venv's packages (the pinned Ray and torch, the project editable) and its
        # `ray` command, run by ~/hrm-venv's python.
        f"rm -rf {site} && ln -s {PACKAGES} {site}",
        f'sed "1s|.*|#!$HOME/hrm-venv/bin/python|" {VENV}/bin/ray > ~/hrm-venv/bin/ray',
        "chmod +x ~/hrm-venv/bin/ray",
        # USER's temp files in its home: Ray's (sessions, address file, the autoscaler's state)
        # and torch's. The launcher sources ~/.bashrc before each command, `ray stop` included.
        "grep -qxF 'export TMPDIR=$HOME/tmp' ~/.bashrc || echo 'export TMPDIR=$HOME/tmp' >> ~/.bashrc",
        "mkdir -p ~/tmp",
    ]
    return config


def _job_status(job_id: str, env: dict[str, str], timeout_s: float) -> str:
    def status() -> str:
        out = subprocess.run([RAY, "job", "status", "--address", DASHBOARD, job_id], capture_output=True, text=True,
                             env=env)
        text = (out.stdout + out.stderr).lower()  # "Job 'raysubmit_...' succeeded"
        return next((s.upper() for s in ("succeeded", "failed", "stopped") if s in text), "")

    return wait_for(status, timeout=timeout_s, every=5, what=f"job {job_id} ending")


def test_ray_up_onprem_yaml_runs_the_smoke_search(tmp_path):
    from hrm.artifacts import ArtifactStore

    _require_host_tools()
    if _wait_until_gone("gcs_server", timeout_s=30):  # an earlier test's Ray may still be exiting
        pytest.fail("a Ray instance is already running on this machine; this test starts its own head")
    for port in (6379, 8265):
        if _port_taken(port):
            pytest.fail(f"port {port} on 127.0.0.1 is taken; the head uses cluster/onprem.yaml's ports")
    # The client's side: a home of its own, where `ray get-auth-token --generate` puts the
    # token that the YAML's file_mounts copy to the head, and temp folders of its own for
    # the launcher's cluster state and config cache.
    home = tmp_path / "home"
    home.mkdir()
    unset = ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_TMPDIR")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(HOME=str(home), TMPDIR=str(tmp_path), RAY_USAGE_STATS_ENABLED="0")
    _run([RAY, "get-auth-token", "--generate"], env=env)
    assert (home / ".ray" / "auth_token").is_file()

    def ray_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run([RAY, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)

    with contextlib.ExitStack() as stack:  # undone in reverse: ray down, sshd, folder modes, the account
        pw = stack.enter_context(_account())
        stack.enter_context(_traversable(PACKAGES, VENV / "bin", ROOT))
        as_user = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        for path in (PACKAGES / "ray" / "__init__.py", VENV / "bin" / "ray", ROOT / "hrm" / "__init__.py"):
            if subprocess.run(["test", "-r", str(path)], **as_user).returncode != 0:
                pytest.fail(f"{path} is not readable by other users (installed with a umask of 077?)")
        key = tmp_path / "id_ed25519"
        _authorize(pw, key)
        ssh_port = free_port()
        stack.enter_context(_sshd(tmp_path / "sshd", ssh_port))
        override = tmp_path / "onprem-local.yaml"
        override.write_text(yaml.safe_dump(_override(key, ssh_port), sort_keys=False))
        storage = Path(tempfile.mkdtemp(prefix="hrmci-storage-"))  # the job writes it as USER
        os.chown(storage, pw.pw_uid, pw.pw_gid)
        stack.callback(shutil.rmtree, storage, ignore_errors=True)
        down: list[subprocess.CompletedProcess] = []  # once: at the end, or on the way out after a failure
        stack.callback(lambda: down or ray_cli("down", "-y", str(override), timeout=300))

        up = ray_cli("up", "-y", str(override))
        assert up.returncode == 0, up.stdout[-6000:] + up.stderr[-3000:]
        # The head runs as USER, none of it as root.
        assert _pids("-u", USER, "-x", "gcs_server") and not _pids("-u", "root", "-x", "gcs_server")
        wait_for(lambda: api_up(DASHBOARD), timeout=300, every=1, what="the dashboard")  # a loaded machine needs time

        job_env = {**env, "RAY_AUTH_MODE": "token"}  # the client sends ~/.ray/auth_token
        submit = subprocess.run(
            [RAY, "job", "submit", "--address", DASHBOARD, "--working-dir", str(ROOT), "--no-wait", "--",
             "python", "ray_jobs/tune.py", "--smoke", "--storage", str(storage), "--name", "ray-up"],
            cwd=ROOT, capture_output=True, text=True, env=job_env, timeout=300,
        )
        assert submit.returncode == 0, submit.stdout[-2000:] + submit.stderr[-2000:]
        job_id = re.search(r"raysubmit_\w+", submit.stdout + submit.stderr).group(0)
        status = _job_status(job_id, job_env, timeout_s=600)
        logs = subprocess.run([RAY, "job", "logs", "--address", DASHBOARD, job_id], capture_output=True, text=True,
                              env=job_env)
        assert status == "SUCCEEDED", logs.stdout[-4000:]
        done = logs.stdout[logs.stdout.rindex("[tune] done: ") + len("[tune] done: "):]
        summary = json.loads(done.split("\n}\n")[0] + "\n}")
        assert summary["errors"] == 0 and summary["trials"] == 4
        assert ArtifactStore(str(storage / "artifacts")).table("ray-up").num_rows >= 1

        down.append(ray_cli("down", "-y", str(override), timeout=300))
        assert down[0].returncode == 0, down[0].stdout[-3000:] + down[0].stderr[-3000:]
        assert not _wait_until_gone("-u", USER, "-f", "ray", timeout_s=60), "USER's Ray processes outlived ray down"
