"""What the tests share: the tiny run most of them train, one S3-compatible server and one
local Ray per module (started when a test first asks), and the session's end.

The test process ends like the `hrm` command does (hrm.cli.exit_now): pyarrow's native
thread pools can abort the interpreter's teardown with SIGABRT ("terminate called without
an active exception"), which would turn a run whose tests all passed into a failed one.
The exit status is pytest's own.
"""

import os

import pytest

_exit_status: list[int] = []


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    _exit_status.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    if _exit_status:
        from hrm.cli import exit_now

        exit_now(_exit_status[-1])


# ---------------------------------------------------------------------------
# The tiny run the tests share


class Tiny:
    """The tiny run most tests train: 4x4 easy Sudoku, a 1+1-layer model of width 32,
    a few steps on the CPU, no TensorBoard. A test names only what it changes, section
    by section (`tiny.config(tmp_path, train={"steps": 6})`); paths go under `root`."""

    BASE = {
        "model": {"hidden_size": 32, "num_heads": 4, "H_layers": 1, "L_layers": 1, "halt_max_steps": 2},
        "data": {"num_train": 64, "num_test": 16, "num_aug": 1,
                 "sudoku": {"size": 4, "difficulty": "easy", "blanks": 4}},
        "optim": {"lr": 3e-3, "warmup_steps": 2},
        "train": {"global_batch_size": 16, "steps": 4, "eval_interval": 2, "log_interval": 1,
                  "tensorboard": False, "device": "cpu", "dtype": "float32"},  # pinned: golden losses
    }

    @classmethod
    def raw(cls, root, **sections) -> dict:
        import copy

        raw = copy.deepcopy(cls.BASE)
        raw["data"]["root"] = str(root / "data")
        raw["train"]["out_dir"] = str(root / "run")
        for name, changes in sections.items():
            if isinstance(changes, dict) and isinstance(raw.get(name), dict):
                _merge(raw[name], changes)
            else:
                raw[name] = changes
        return raw

    @classmethod
    def config(cls, root, **sections):
        from hrm.config import from_dict

        return from_dict(cls.raw(root, **sections))

    @classmethod
    def flags(cls, root, **sections) -> list[str]:
        """The same run as `--set` flags over a shipped config (`hrm train --config
        quickstart ...`); the run folder is left to the command's own --out."""
        import json

        from hrm.config import flat_items

        raw = cls.raw(root, **sections)
        del raw["train"]["out_dir"]
        return [arg for key, value in flat_items(raw) for arg in ("--set", f"{key}={json.dumps(value)}")]


def _merge(into: dict, changes: dict) -> None:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


@pytest.fixture(scope="session")
def tiny() -> type[Tiny]:
    return Tiny


# ---------------------------------------------------------------------------
# Services the tests share: started once, when a test first asks


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """A real S3-compatible server (tests/helpers.py), reachable through os.environ from here on,
    so pyarrow in this process and every Ray node or subprocess started later (which inherit
    it) use it, as cluster nodes get theirs from the host. `s3.bucket(name)` makes a bucket."""
    pytest.importorskip("moto")
    from tests.helpers import S3Server

    server = S3Server(tmp_path_factory.mktemp("moto") / "moto.log")
    saved = {k: os.environ.get(k) for k in server.env}
    os.environ.update(server.env)
    yield server
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    server.stop()


@pytest.fixture(scope="module")
def local_ray(s3):
    """A local Ray of 2 CPUs for a module's tests (after the S3 server, so its workers reach it);
    its GCS address. A new instance, never a stale one from /tmp/ray; shut down after the
    module, as tests of `tune.py` on its own Ray must find none running."""
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
