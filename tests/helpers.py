"""What the tests share besides the tiny run (conftest.py): a real S3-compatible server, and
waiting for something with a deadline (never a fixed sleep).

moto's standalone server runs on 127.0.0.1; pyarrow's `FileSystem.from_uri("s3://...")`
(and so the artifact store and Ray's storage) honours AWS_ENDPOINT_URL, so code under test
talks to it unchanged.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

import pytest


def wait_for(condition: Callable[[], Any], *, timeout: float, what: str, every: float = 0.5,
             alive: subprocess.Popen | None = None, log: Path | None = None) -> Any:
    """`condition()`'s first truthy value, polled every `every` s; the test fails naming `what`
    when `timeout` s pass, or at once when `alive` (a process the condition waits on) exits."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if alive is not None and alive.poll() is not None:
            pytest.fail(f"{what}: the process exited ({alive.returncode}) first"
                        + (f": {log.read_text()[-2000:]}" if log and log.exists() else ""))
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:g} s" + (f": {log.read_text()[-2000:]}" if log and log.exists()
                                                                 else ""))
        time.sleep(every)


# Ports Ray takes by default whatever else a node is given (dashboard agent, client server,
# dashboard, GCS, its workers' range): a port picked for a node must not be one of them, or
# `ray start` refuses with "a port number ... that is used by other components".
RAY_DEFAULT_PORTS = {52365, 10001, 8265, 6379, *range(10002, 20000)}


def free_port() -> int:
    """A port free on 127.0.0.1 now, and not one Ray takes by default."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in RAY_DEFAULT_PORTS:
            return port


def api_up(url: str) -> bool:
    """Whether a Ray head's dashboard / job API at `url` answers (401/403 with token auth: up)."""
    try:
        urllib.request.urlopen(url, timeout=2)
        return True
    except OSError as exc:
        return getattr(exc, "code", None) in (401, 403)


class S3Server:
    """moto's server on a free port of 127.0.0.1; `env` reaches it, `bucket(name)` creates one."""

    def __init__(self, log: Path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p",
                                      str(port)], stdout=open(log, "w"), stderr=subprocess.STDOUT)
        wait_for(self._answers, timeout=60, what="moto_server", alive=self.proc, log=log)
        self.env = {"AWS_ENDPOINT_URL": self.url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}

    def _answers(self) -> bool:
        try:
            urllib.request.urlopen(self.url, timeout=2)
            return True
        except OSError:
            return False

    def bucket(self, name: str) -> str:
        import pyarrow.fs as pafs

        pafs.S3FileSystem(endpoint_override=self.url, scheme="http", access_key="testing", secret_key="testing",
                          region="us-east-1", allow_bucket_creation=True).create_dir(name)
        return f"s3://{name}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)


def wandb_records(run_file: Path) -> list[Any]:
    """The records of an offline W&B run file (`run-<id>.wandb`), as wandb's own protobuf
    messages: a 7-byte header (":W&B", magic, version), then LevelDB's log format (32 KiB
    blocks; each chunk a 7-byte header of checksum, length and type: full, first, middle,
    last). wandb ships no reader of its own files any more; the tests need one to read back
    what a run logged offline."""
    from wandb.proto import wandb_internal_pb2

    data, records, pending, pos = run_file.read_bytes(), [], b"", 7
    assert data[:4] == b":W&B", f"{run_file} is not a W&B run file"
    while pos + 7 <= len(data):
        room = 32768 - pos % 32768
        if room < 7:  # a block's tail too short for a header is padding
            pos += room
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        if length == 0 and kind == 0:  # zero padding at the end of a block
            pos += room
            continue
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # full or last: a whole record
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def duckdb_with_delta(s3_endpoint: str | None = None) -> Any:
    """A duckdb connection with the Delta (and, for S3, httpfs) extensions loaded from their PyPI
    wheels (no download: `INSTALL delta` would fetch from extensions.duckdb.org), and for
    `s3_endpoint` a secret that reaches the test server; as docs/search.md shows users."""
    import os

    import duckdb

    con = duckdb.connect(config={"autoinstall_known_extensions": "false", "autoload_known_extensions": "false"})
    version = con.sql("PRAGMA version").fetchone()[0]
    names = ["delta"] + (["httpfs"] if s3_endpoint else [])
    for name in names:
        module = __import__(f"duckdb_extension_{name}")
        con.execute(f"LOAD '{os.path.dirname(module.__file__)}/extensions/{version}/{name}.duckdb_extension'")
    if s3_endpoint:
        host = s3_endpoint.split("://", 1)[1]
        con.execute(f"CREATE OR REPLACE SECRET s3 (TYPE s3, PROVIDER config, KEY_ID 'testing', SECRET 'testing', "
                    f"REGION 'us-east-1', ENDPOINT '{host}', URL_STYLE 'path', USE_SSL false)")
    return con
