"""torch.compile of the shared blocks (hrm.compiled), on the CPU: the compiled and eager
paths give the same losses across settings that share one graph, a second process loads the
search's cache instead of compiling (inductor's cache counters, not timings), and a corrupt
or foreign cache is one warning line and a fresh compile."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hrm.compiled import MAGIC, cache_file, cache_key, compile_blocks, load_cache
from hrm.config import ModelConfig
from hrm.model import HRM, TRM, act_loss

ROOT = Path(__file__).resolve().parents[1]
# float32 on the CPU: inductor reorders and fuses reductions, so a loss moves in its last
# digits; after 3 optimiser-free segments 1e-4 relative is far above that and far below a bug.
TOLERANCE = 1e-4


def _losses(model, steps: int = 3) -> list[float]:
    torch.manual_seed(1)
    x = torch.randint(1, 6, (8, 16))
    carry = model.reset_halted(model.initial_carry(x, x.clone(), torch.zeros(8, dtype=torch.long)))
    out = []
    for _ in range(steps):
        carry, o = model(carry)
        loss, _ = act_loss(o, carry.labels, model.cfg.loss)
        loss.backward()
        out.append(float(loss.detach()))
    return out


def _model(family, **cfg):
    torch.manual_seed(0)
    base = dict(hidden_size=32, num_heads=4, H_layers=2, L_layers=2, halt_max_steps=3, **cfg)
    if family is TRM:
        base["arch"] = "trm"
    return family(ModelConfig(**base), vocab_size=6, seq_len=16, num_puzzle_ids=1)


def test_compiled_blocks_match_eager_and_every_setting_shares_their_graphs():
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    graphs = []
    # HRM's cycles, and TRM (its T and n) at HRM's one puzzle position: the same block shapes
    settings = [(HRM, dict(H_cycles=2, L_cycles=2)), (HRM, dict(H_cycles=1, L_cycles=3)),
                (TRM, dict(H_cycles=3, L_cycles=2, puzzle_positions=1))]
    for family, cfg in settings:
        eager, compiled = _model(family, **cfg), _model(family, **cfg)
        assert compile_blocks(compiled) == sum(1 for _ in compiled.modules() if type(_).__name__ == "Block") > 0
        want, got = _losses(eager), _losses(compiled)
        assert got == pytest.approx(want, rel=TOLERANCE), (family.__name__, cfg)
        graphs.append(counters["stats"]["unique_graphs"])
    # one graph with grad and one without, for every block of every setting: none recompiled
    assert graphs[0] == 2 and graphs[1:] == [2, 2], graphs
    assert not counters["graph_break"]


_SECOND = """
import json, sys, torch
from torch._dynamo.utils import counters
from hrm.compiled import compile_blocks, load_cache
from tests.test_compile import _losses, _model, _key
from hrm.model import HRM
warned = []
loaded = load_cache(sys.argv[1], _key(), warned.append)
m = _model(HRM, H_cycles=2, L_cycles=2)
compile_blocks(m)
losses = _losses(m)
if sys.argv[2] == "save":
    from hrm.compiled import save_cache
    save_cache(sys.argv[1], _key())
print(json.dumps({"loaded": loaded, "warned": warned, "losses": losses,
                  "inductor": dict(counters["inductor"]), "aot": dict(counters["aot_autograd"])}))
"""


def _key() -> dict:
    return cache_key(_model(HRM).cfg, 16, 8, torch.float32, torch.device("cpu"))


def _process(folder: Path, inductor: Path, mode: str) -> dict:
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(inductor), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", _SECOND, str(folder), mode], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_second_process_loads_the_search_s_cache_instead_of_compiling(tmp_path):
    folder = tmp_path / "compile_cache"
    first = _process(folder, tmp_path / "node1", "save")  # a cold node: compiles, and shares it
    assert not first["loaded"] and first["inductor"].get("fxgraph_cache_miss", 0) > 0
    assert [p.name for p in folder.iterdir()] == [Path(cache_file(str(folder), _key())).name]
    second = _process(folder, tmp_path / "node2", "load")  # another node: an empty inductor cache
    assert second["loaded"] and not second["warned"]
    assert second["inductor"].get("fxgraph_cache_hit", 0) > 0 and second["inductor"].get("fxgraph_cache_miss", 0) == 0
    assert second["aot"].get("autograd_cache_hit", 0) > 0 and second["aot"].get("autograd_cache_miss", 0) == 0
    assert second["losses"] == first["losses"]


@pytest.mark.parametrize("content, why", [
    (b"\x00\x01 not ours", "not a compile cache"),
    (MAGIC + json.dumps({**_key(), "torch": "1.0.0"}, sort_keys=True).encode() + b"\nxx", "made for torch '1.0.0'"),
    (MAGIC + json.dumps(_key(), sort_keys=True).encode() + b"\n" + b"garbage", "unreadable"),
])
def test_a_corrupt_or_foreign_cache_is_one_warning_and_a_fresh_compile(tmp_path, content, why):
    folder = tmp_path / "cache"
    folder.mkdir()
    Path(cache_file(str(folder), _key())).write_bytes(content)
    warned = []
    assert load_cache(str(folder), _key(), warned.append) is False
    assert len(warned) == 1 and why in warned[0] and "compiling afresh" in warned[0], warned
    assert load_cache(str(tmp_path / "none"), _key(), warned.append) is False and len(warned) == 1  # no file: quiet


def test_a_compiled_run_shares_its_blocks_after_its_first_evaluation(tmp_path, tiny):
    from hrm.train import train

    cache = tmp_path / "compile_cache"
    eager = train(tiny.config(tmp_path / "eager"))
    compiled = train(tiny.config(tmp_path / "compiled", train={"compile": "on", "compile_cache": str(cache)}))
    assert [p.suffix for p in cache.iterdir()] == [".bin"]  # written once, under its key (no ledger: not timed)
    assert compiled["token_accuracy"] == pytest.approx(eager["token_accuracy"], abs=0.02)



def test_a_cache_that_cannot_be_written_is_one_warning_and_the_run_goes_on(tmp_path, tiny, capsys):
    from hrm.train import train

    (tmp_path / "file").write_text("a file, not a folder")
    out = train(tiny.config(tmp_path / "run", train={"compile": "on", "compile_cache": str(tmp_path / "file" / "c")}))
    assert out["step"] == 4
    lines = [line for line in capsys.readouterr().err.splitlines() if "compile cache" in line]
    assert len(lines) == 1 and "not written" in lines[0] and "training goes on" in lines[0], lines


def _auto(tmp_path, tiny, name, **train):
    from hrm.train import train as run

    cfg = tiny.config(tmp_path / name, train={"steps": 16, "eval_interval": 4, "compile": "auto",
                                              "compile_cache": str(tmp_path / "cache"), **train})
    return run(cfg)


def test_auto_compiles_when_the_rule_says_so_and_records_what_it_measured(tmp_path, tiny, capsys, monkeypatch):
    import hrm.compile_plan as C
    from torch._dynamo.utils import counters

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    monkeypatch.setitem(C.PRIORS, "cpu", {**C.PRIORS["cpu"], "cold": 1e-9})  # any saving beats it
    torch._dynamo.reset()
    counters.clear()
    _auto(tmp_path, tiny, "first")
    out = capsys.readouterr().out
    assert "compile auto: on: 11 steps x" in out and "(nothing cached, prior)" in out, out
    assert "compiled in" in out and counters["stats"]["unique_graphs"] >= 2
    key = json.loads(Path(next((tmp_path / "cache").glob("*.json"))).read_text())["history"]
    node = json.loads(next((tmp_path / "inductor" / "hrm").glob("*.json")).read_text())["history"]
    assert len(key["cold"]) == len(key["speedup"]) == 1 and key["cold"][0] > 0 and key["speedup"][0] > 0
    assert node == key and not list((tmp_path / "inductor" / "hrm").glob("*.compiling"))  # marker gone
    assert sorted(p.suffix for p in (tmp_path / "cache").iterdir()) == [".bin", ".json"]
    # a second run on this node finds the node's cache and decides on what the first measured
    _auto(tmp_path, tiny, "second")
    out = capsys.readouterr().out
    assert "compile auto: on" in out or "compile auto: off" in out
    assert "(compiled on this node before, prior)" in out and f"1/{key['speedup'][0]:.2f} measured" in out, out


def test_auto_waits_while_another_process_on_the_node_compiles_the_same_blocks(tmp_path, tiny, capsys, monkeypatch):
    import hrm.compile_plan as C
    from hrm.dataset import task_spec
    from hrm.runtime import resolve_runtime
    from hrm.train_state import compile_key
    from torch._dynamo.utils import counters

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    monkeypatch.setitem(C.PRIORS, "cpu", {**C.PRIORS["cpu"], "cold": 1e-9})
    cfg = tiny.config(tmp_path / "x", train={"compile": "auto"})
    marker = Path(C.node_file(compile_key(cfg, resolve_runtime(cfg), task_spec(cfg.data).seq_len), ".compiling"))
    marker.parent.mkdir(parents=True)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        marker.write_text(str(other.pid))  # alive: this run trains eager throughout
        torch._dynamo.reset()
        counters.clear()
        _auto(tmp_path, tiny, "waits")
        out = capsys.readouterr().out
        assert out.count("another run on this node is compiling") == 1 and "compile auto: on" not in out, out
        assert not counters["stats"]["unique_graphs"]
    finally:
        other.kill()
        other.wait()
    _auto(tmp_path, tiny, "after")  # its process is gone: the marker is a dead run's
    assert "compile auto: on" in capsys.readouterr().out


def test_auto_stays_eager_when_the_compile_costs_more_than_the_run_saves(tmp_path, tiny, capsys, monkeypatch):
    import hrm.compile_plan as C
    from torch._dynamo.utils import counters

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    monkeypatch.setitem(C.PRIORS, "cpu", {**C.PRIORS["cpu"], "cold": 1e9})
    torch._dynamo.reset()
    counters.clear()
    eager = tiny.config(tmp_path / "eager", train={"steps": 16, "eval_interval": 4, "compile": "off"})
    from hrm.train import train

    want = train(eager)
    got = _auto(tmp_path, tiny, "auto", compile_runs=10)  # a tenth of 1e9 s is still too much
    out = capsys.readouterr().out
    assert "compile auto: off" in out and "shared by 10 runs" in out, out
    assert not counters["stats"]["unique_graphs"] and not (tmp_path / "cache").exists()
    assert got["token_accuracy"] == want["token_accuracy"]  # the same eager run
