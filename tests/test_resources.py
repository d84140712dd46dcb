"""A run that can never be placed fails with one clear line instead of hanging.

Ray leaves a trial whose bundles fit no node PENDING forever (seen here: on a
1-CPU head, a smoke trial asking 0.1 + 1 CPU stayed PENDING for the ~9 minutes
until its job was killed; the same trial at 0.1 + 0.8 CPU ran to the end).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hrm.search import Budget

ROOT = Path(__file__).resolve().parents[1]

LAPTOP = [{"CPU": 2.0, "memory": 1e10}]
GPU_CLUSTER = [{"CPU": 8.0}, {"CPU": 64.0, "GPU": 8.0}, {"CPU": 64.0, "GPU": 8.0}]


def need(nodes, workers=1, cpus=1.0, gpus=0.0, driver=0.0, group="auto"):
    return Budget(num_workers=workers, cpus_per_worker=cpus, gpus_per_worker=gpus, trainable_cpus=driver,
                  worker_group=group).shortfall(nodes)


def test_runs_that_fit():
    assert need(LAPTOP, cpus=1.9, driver=0.1) is None  # the quickstart default: exactly 2.0
    assert need(LAPTOP, workers=2, cpus=1.0) is None
    assert need(GPU_CLUSTER, workers=16, cpus=8, gpus=1, driver=1) is None  # spread over both GPU nodes
    assert need([{"CPU": 1.0}, {"CPU": 1.0}], workers=2, cpus=0.8, driver=0.1) is None


def test_a_trial_that_trains_in_its_own_process_needs_its_cpus_on_one_node():
    one_cpu = [{"CPU": 1.0}, {"CPU": 1.0}]
    why = need(one_cpu, cpus=1.0, driver=0.1)
    assert "no node can hold one worker with its trial's 0.1 CPU (budget.worker_group: auto" in why
    assert need(one_cpu, cpus=1.0, driver=0.1, group="always") is None  # trial and worker on two nodes
    assert need(one_cpu, cpus=0.9, driver=0.1) is None
    b = Budget(num_workers=1, cpus_per_worker=1.9, gpus_per_worker=1.0, trainable_cpus=0.1)
    assert b.in_trial and b.trial_resources() == {"CPU": 2.0, "GPU": 1.0}
    assert b.tune_retries == 3 * 2 - 1  # its worker's restarts are Tune's: (2 + 1) x (1 + 1) attempts in all
    for group, workers in (("always", 1), ("auto", 2)):
        b = Budget(num_workers=workers, cpus_per_worker=1.9, trainable_cpus=0.1, worker_group=group)
        assert not b.in_trial and b.trial_resources() == {"CPU": 0.1} and b.tune_retries == 1


def test_a_gpu_run_on_a_cpu_machine():
    why = need(LAPTOP, workers=8, cpus=8, gpus=1, driver=1)
    assert "no node can hold one worker" in why and "largest has 2 CPU, 0 GPU" in why
    assert "8 worker(s) x 8 CPU + 1 GPU" in why


def test_too_many_workers_in_total():
    why = need(LAPTOP, workers=3, cpus=1.0)
    assert why is not None and "the cluster has 2 CPU and 0 GPU on 1 node(s)" in why
    assert "plus" not in why
    # The trial's own CPU counts: 0.1 + 2 x 1.0 does not fit 2 CPUs.
    assert "plus 0.1 CPU for the trial itself" in need(LAPTOP, workers=2, cpus=1.0, driver=0.1)
    assert need(GPU_CLUSTER, workers=17, cpus=8, gpus=1) is not None  # 17 GPUs wanted, 16 there


def test_a_worker_larger_than_any_node():
    why = need([{"CPU": 1.0}, {"CPU": 1.0}], workers=1, cpus=1.5)
    assert why is not None and "no node can hold one worker" in why


def test_no_nodes():
    assert "no node can hold one worker" in need([], cpus=0.5)


@pytest.mark.slow
def test_tune_py_refuses_a_search_this_machine_cannot_place(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "ray_jobs" / "tune.py"), "--smoke", "--num-cpus", "1", "--storage",
         str(tmp_path / "storage"), "--set", "budget.gpus_per_worker=1"],
        capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("tune.py: error:")]
    assert len(errors) == 1, done.stderr[-2000:]
    assert "no node can hold one worker" in errors[0] and "--set budget.gpus_per_worker=0" in errors[0]
    assert "[tune] experiment" not in done.stdout  # it stopped before starting any trial
