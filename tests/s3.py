"""A real S3-compatible server for tests: moto's standalone server on 127.0.0.1.

pyarrow's `FileSystem.from_uri("s3://...")` (and so the artifact store and Ray's
storage) honours AWS_ENDPOINT_URL, so code under test talks to it unchanged.
"""

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def start_s3(bucket: str, log: Path) -> tuple[subprocess.Popen, dict[str, str]]:
    """Start the server with `bucket` created; returns it and the environment that reaches it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=open(log, "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto_server did not start: {log.read_text()[-2000:]}") from None
            time.sleep(0.3)
    env = {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    import pyarrow.fs as pafs

    pafs.S3FileSystem(endpoint_override=url, scheme="http", access_key="testing", secret_key="testing",
                      region="us-east-1", allow_bucket_creation=True).create_dir(bucket)
    return server, env


@contextlib.contextmanager
def s3_in_environ(bucket: str, log: Path):
    """The server, with `bucket`, reachable through os.environ while it runs (so pyarrow here
    and the Ray nodes and workers started meanwhile, which inherit it, use it); restored after."""
    server, env = start_s3(bucket, log)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        stop_s3(server)


def stop_s3(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=30)


__all__ = ["s3_in_environ", "start_s3", "stop_s3"]
