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
    assert [p.suffix for p in cache.iterdir()] == [".bin"]  # written once, under its key
    assert compiled["token_accuracy"] == pytest.approx(eager["token_accuracy"], abs=0.02)



def test_a_cache_that_cannot_be_written_is_one_warning_and_the_run_goes_on(tmp_path, tiny, capsys):
    from hrm.train import train

    (tmp_path / "file").write_text("a file, not a folder")
    out = train(tiny.config(tmp_path / "run", train={"compile": "on", "compile_cache": str(tmp_path / "file" / "c")}))
    assert out["step"] == 4
    lines = [line for line in capsys.readouterr().err.splitlines() if "compile cache" in line]
    assert len(lines) == 1 and "not written" in lines[0] and "training goes on" in lines[0], lines
