"""Session-wide: the test process ends like the `hrm` command does (hrm.cli.exit_now).

pyarrow's native thread pools can abort the interpreter's teardown with SIGABRT
("terminate called without an active exception"), which would turn a run whose
tests all passed, summary printed, into a failed one. The exit status is pytest's own.
"""

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
