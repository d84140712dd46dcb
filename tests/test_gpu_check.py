"""The GPU check script works (run on the CPU at tiny sizes), torch.compile of the
blocks matches eager on the CPU with no graph break, and the CUDA checks pass where
a GPU is present."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.gpu_check import check_bf16, check_compile
from hrm.config import load_config
from hrm.runtime import cpu_has_bf16

ROOT = Path(__file__).resolve().parents[1]
TINY = ["model.hidden_size=32", "model.num_heads=4", "model.H_layers=1", "model.L_layers=1", "data.sudoku.size=4",
        "data.sudoku.blanks=4"]


@pytest.mark.slow
def test_compiled_blocks_match_eager_on_cpu_without_graph_breaks():
    row = check_compile(load_config("quickstart", TINY), 4, torch.device("cpu"), torch.float32)
    assert row["graph_breaks"] == 0 and row["graphs"] == 1, row
    assert row["loss_rel_diff"] < 1e-4 and row["grad_rel_diff"] < 1e-3, row
    assert row["ok"]


@pytest.mark.skipif(not cpu_has_bf16(), reason="no bf16 matmuls on this CPU")
def test_bf16_autocast_matches_fp32_on_cpu():
    row = check_bf16(load_config("quickstart", TINY), 8, torch.device("cpu"))
    assert row["ok"], row


@pytest.mark.slow
def test_the_gpu_check_script_runs_end_to_end_on_cpu(tmp_path):
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--device", "cpu", "--quick",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=900,
                          env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    checks = [r.get("check") for r in rows]
    assert checks[1:] == ["bf16 vs fp32", "compile vs eager (float32)", "throughput batch 8",
                          "throughput batch 8 compiled", "compile cold", "compile node", "compile storage",
                          "train 160 steps"], checks
    assert all(r.get("ok", True) for r in rows) and "FAILED" not in done.stdout
    storage = next(r for r in rows if r.get("check") == "compile storage")
    assert storage["artifacts_load_s"] > 0 and storage["second_setting_graphs"] == 0, storage


def test_the_gpu_check_refuses_cuda_without_it():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py")], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0 and "no CUDA device" in done.stderr


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_and_compile_match_fp32_eager():
    cfg = load_config("quickstart", ["data.sudoku.size=9"])
    assert check_bf16(cfg, 64, torch.device("cuda"))["ok"]
    assert check_compile(cfg, 64, torch.device("cuda"), torch.bfloat16)["ok"]
