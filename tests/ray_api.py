"""Waiting for a Ray head's dashboard / job API in the tests that start real clusters."""

import subprocess
import time
import urllib.request
from pathlib import Path

import pytest


def wait_for_api(url: str, proc: subprocess.Popen | None = None, log_path: Path | None = None,
                 timeout_s: float = 120) -> None:
    """Return once `url` answers; fail the test if `proc` (the head) exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"ray start exited: {log_path.read_text()[-2000:] if log_path else proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError as exc:
            # With token authentication the API answers 401 to us: it is up.
            if getattr(exc, "code", None) in (401, 403):
                return
            time.sleep(1)
    pytest.fail(f"the dashboard / job API at {url} did not come up")
