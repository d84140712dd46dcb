"""Data parallel in the library: two gloo ranks follow one process's math.

With halt_max_steps=1 every slot takes a new example each step, so two ranks of
B/2 slots see exactly the examples one process of B slots sees (in another slot
order); gradients and puzzle-table updates are summed across ranks, so the loss
curve must match up to float summation order.
"""

from __future__ import annotations

import faulthandler
import json
import os
import socket
import sys
from pathlib import Path

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from hrm.train import train


def config(tiny, tmp_path: Path, out: str):
    return tiny.config(tmp_path, model={"halt_max_steps": 1}, data={"sudoku": {"blanks": 5}},
                       train={"steps": 6, "eval_interval": 6, "out_dir": str(tmp_path / out), "checkpoint": True})


def _worker(rank: int, world: int, port: int, tmp_path: Path, cfg) -> None:
    # A crash in C++ (gloo, torch) then prints every thread's Python stack.
    faulthandler.enable(all_threads=True)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        train(cfg, log=lambda _m: None)
        # Leave together: neither rank closes its sockets while the other is
        # still inside a collective or talking to rank 0's TCPStore.
        dist.barrier()
    finally:
        dist.destroy_process_group()
    (tmp_path / f"rank{rank}.done").touch()
    # Once a rank has trained, synced and torn its group down, the test has what it
    # needs, so skip interpreter teardown. One CI run saw rank 1 abort with
    # "terminate called without an active exception" (a C++ std::thread destroyed
    # unjoined) before faulthandler was on here; 73 runs on this machine, idle
    # and under CPU load, did not reproduce it. Skipping
    # teardown removes the one step of the spawn harness that is neither ours nor
    # under test; faulthandler above names the frame if it happens anywhere else,
    # and any failure up to this point still fails the test.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _losses(run: Path) -> list[float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss/total"] for r in rows if r["kind"] == "train"]


@pytest.mark.slow
def test_two_ranks_match_one_process(tmp_path, tiny):
    one = train(config(tiny, tmp_path, "one"), log=lambda _m: None)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(2, port, tmp_path, config(tiny, tmp_path, "two")), nprocs=2, join=True)
    assert (tmp_path / "rank0.done").exists() and (tmp_path / "rank1.done").exists()
    a, b = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(a) == len(b) == 6
    assert b == pytest.approx(a, rel=1e-4)
    two = json.loads((tmp_path / "two" / "metrics.jsonl").read_text().splitlines()[-1])
    assert two["exact_accuracy"] == pytest.approx(one["exact_accuracy"])
    assert two["eval_questions"] == 16
