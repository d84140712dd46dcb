"""The training loop: it learns, its numbers do not drift, it resumes exactly."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from hrm.config import ConfigError
from hrm.dataset import ensure_dataset
from hrm.data.loader import Split
from hrm.evaluate import run_eval
from hrm.checkpoint import checkpoint_dirs, load_model
from hrm.runtime import pick_device, resolve_runtime
from hrm.train import train, train_step
from hrm.train_state import init_state

GOLDEN = Path(__file__).parent / "golden" / "tiny_losses.json"


@pytest.fixture
def tiny_config(tiny):
    """This file's run: the shared tiny run, wider and longer (its golden losses were
    recorded on it), with the dataset shared by the tests of one session."""
    def make(tmp_path: Path, **train_kw):
        return tiny.config(
            tmp_path, name="tiny", model={"hidden_size": 64},
            data={"root": str(tmp_path.parent / "shared-data"), "num_train": 300, "num_test": 100, "num_aug": 3},
            optim={"warmup_steps": 10, "weight_decay": 0.1, "puzzle_emb_lr": 1e-2},
            train={"global_batch_size": 32, "steps": 20, "eval_interval": 10, **train_kw},
        )

    return make


def history(run: Path, kind: str = "train") -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def test_halted_slots_are_refilled_from_the_stream(tmp_path, tiny_config):
    cfg = tiny_config(tmp_path)
    split = Split.load(ensure_dataset(cfg.data), "train")
    state = init_state(cfg, resolve_runtime(cfg), split)
    taken = 0
    for _ in range(6):
        expected_new = int(state.carry.halted.sum())
        before = state.stream.epoch * len(state.stream._epoch_rows(0)) + state.stream.position
        busy = ~state.carry.halted
        kept = state.carry.inputs[busy].clone()
        train_step(state)
        after = state.stream.epoch * len(state.stream._epoch_rows(0)) + state.stream.position
        assert after - before == expected_new
        assert torch.equal(state.carry.inputs[busy], kept)  # slots not halted keep their puzzle
        taken += expected_new
    assert taken > cfg.train.global_batch_size  # slots halted and were refilled


def test_golden_losses_catch_numeric_drift(tmp_path, tiny_config):
    cfg = tiny_config(tmp_path, steps=8, eval_interval=8, checkpoint=False)
    train(cfg, log=lambda _m: None)
    losses = [r["loss/total"] for r in history(tmp_path / "run")]
    if os.environ.get("HRM_UPDATE_GOLDEN"):  # after an intended change of the math
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps({"loss/total": losses}, indent=1) + "\n")
        pytest.skip("golden file rewritten")
    want = json.loads(GOLDEN.read_text())["loss/total"]
    # Tolerance covers different CPU SIMD paths, not a change of the math.
    assert losses == pytest.approx(want, rel=2e-4)


@pytest.mark.parametrize("ema", [None, 0.9])
def test_resume_continues_bit_for_bit(tmp_path, tiny_config, ema):
    extra = {"ema": ema} if ema else {}  # with an EMA, the average and the live weights both resume
    full = tiny_config(tmp_path / "a", **extra)
    train(full, log=lambda _m: None)
    want = history(tmp_path / "a" / "run")

    cut = tiny_config(tmp_path / "b", **extra)

    class Stop(Exception):
        pass

    def stop_after_first_eval(metrics, ckpt):
        assert ckpt is not None and Path(ckpt).exists()
        raise Stop

    with pytest.raises(Stop):
        train(cut, log=lambda _m: None, report=stop_after_first_eval)
    run_b = tmp_path / "b" / "run"
    assert [p.name for p in checkpoint_dirs(run_b)] == ["step_00000010"]
    with pytest.raises(ConfigError, match="already has checkpoints"):
        train(cut, log=lambda _m: None)
    train(cut, resume=True, log=lambda _m: None)
    got = history(run_b)
    assert [r["step"] for r in got] == list(range(1, 21))
    for a, b in zip(want, got):
        for key in ("loss/total", "loss/lm", "loss/q_halt", "loss/q_continue", "train/exact_accuracy"):
            assert a[key] == b[key], (a["step"], key)
    assert history(run_b, "eval")[-1]["exact_accuracy"] == history(tmp_path / "a" / "run", "eval")[-1]["exact_accuracy"]
    assert history(run_b, "eval")[-1]["token_accuracy"] == history(tmp_path / "a" / "run", "eval")[-1]["token_accuracy"]


def test_ema_weights_are_what_evaluation_uses_and_checkpoints_store(tmp_path, tiny_config):
    from hrm.checkpoint import load_checkpoint
    from hrm.evaluate import predict
    from hrm.inference import evaluate_checkpoint

    reports = []
    train(tiny_config(tmp_path, ema=0.9), log=lambda _m: None, report=lambda m, c: reports.append((m, c)))
    metrics, ckpt = reports[-1]
    payload = load_checkpoint(ckpt)
    averaged, live = payload["model"], payload["live_params"]
    assert set(live) < set(averaged) and payload["ema_updates"] == 20
    assert all(not torch.equal(averaged[n], live[n]) for n in live if "q_head" not in n)
    # A loaded checkpoint is the average: the model evaluation loads ...
    model, cfg, _ = load_model(ckpt)
    assert all(torch.equal(p, averaged[n]) for n, p in model.named_parameters())
    # ... and evaluating it gives exactly what training reported at that step.
    result, split = evaluate_checkpoint(ckpt, batch_size=32)
    for key in ("exact_accuracy", "token_accuracy", "q_halt_accuracy", "pass@2"):
        assert result.metrics[key] == pytest.approx(metrics[key]), key
    # The live weights are another model: its Q head answers differently.
    b = {k: torch.from_numpy(split.columns[c][:8].astype("int64"))
         for k, c in (("inputs", "inputs"), ("labels", "labels"), ("puzzle_ids", "puzzle_id"))}
    q_avg = predict(model, b)["q_halt"]
    model.load_state_dict({**averaged, **live})
    assert not torch.allclose(q_avg, predict(model, b)["q_halt"])


def test_resume_from_a_checkpoint_folder_elsewhere(tmp_path, tiny_config):
    """What the Ray worker does: Ray Train hands back a checkpoint folder outside the run
    folder; training resumes from it bit for bit, and its manifest names its step
    without loading tensors."""
    import json
    import shutil

    full = tiny_config(tmp_path / "a")
    train(full, log=lambda _m: None)
    cut = tiny_config(tmp_path / "b")
    train(cut, log=lambda _m: None)
    first = checkpoint_dirs(tmp_path / "b" / "run")[0]
    manifest = json.loads((first / "manifest.json").read_text())
    assert (manifest["step"], manifest["eval_round"]) == (10, 1) and "exact_accuracy" in manifest["metrics"]
    assert set(manifest["files"]) == {"checkpoint.pt", "config.yaml"}
    restored = shutil.copytree(first, tmp_path / "ray_restored")
    again = tiny_config(tmp_path / "c")
    train(again, resume_from=restored, log=lambda _m: None)
    got = history(tmp_path / "c" / "run")
    assert [r["step"] for r in got] == list(range(11, 21))
    for a, b in zip(history(tmp_path / "a" / "run")[10:], got):
        assert a["loss/total"] == b["loss/total"], a["step"]


def test_checkpoint_loads_into_a_model_with_the_reported_metrics(tmp_path, tiny_config):
    cfg = tiny_config(tmp_path, keep_checkpoints=1)
    reports = []
    train(cfg, log=lambda _m: None, report=lambda m, c: reports.append((m, c)))
    ckpts = checkpoint_dirs(tmp_path / "run")
    assert [p.name for p in ckpts] == ["step_00000020"]  # older one pruned
    assert not list((tmp_path / "run" / "checkpoints").glob(".*tmp"))
    metrics, path = reports[-1]
    assert Path(path) == ckpts[-1]
    model, loaded_cfg, _ = load_model(path)
    assert loaded_cfg == cfg
    again = run_eval(model, Split.load(ensure_dataset(cfg.data), "test"), batch_size=64).metrics
    assert again["exact_accuracy"] == metrics["exact_accuracy"]
    assert (ckpts[-1] / "config.yaml").exists()


@pytest.mark.slow
def test_tiny_model_learns(tmp_path, tiny_config):
    cfg = tiny_config(tmp_path, steps=300, eval_interval=300, log_interval=50, checkpoint=False)
    # One H and one L update per segment learns fastest at this size (measured:
    # 0.50 exact after 300 steps against 0.20 for 2/2; benchmarks/RESULTS.md).
    cfg = replace(cfg, model=replace(cfg.model, H_cycles=1, L_cycles=1))
    split = Split.load(ensure_dataset(cfg.data), "test")
    torch.manual_seed(0)
    state = init_state(cfg, resolve_runtime(cfg), Split.load(ensure_dataset(cfg.data), "train"))
    before = run_eval(state.model, split, batch_size=100).metrics["exact_accuracy"]
    after = train(cfg, log=lambda _m: None)["exact_accuracy"]
    assert before < 0.05
    assert after > before + 0.3


def test_resuming_a_finished_run_reports_its_final_evaluation(tmp_path, tiny_config):
    cfg = tiny_config(tmp_path, steps=10, eval_interval=5)
    first = []
    train(cfg, log=lambda _m: None, report=lambda m, c: first.append((m, c)))
    again = []
    metrics = train(cfg, resume=True, log=lambda _m: None, report=lambda m, c: again.append((m, c)))
    # The re-report is the final evaluation and its checkpoint; the first run's report also
    # carried the time it spent in its loop (`train_seconds`), which a finished run has none of.
    final, ckpt = first[-1]
    assert final.pop("train_seconds") > 0
    assert len(again) == 1 and again[0] == (final, ckpt)
    assert metrics == final


def test_no_checkpoint_of_non_finite_weights(tmp_path, monkeypatch, tiny_config):
    """Weights that turn NaN between two loss checks are caught before the next checkpoint
    is saved: the run fails with its cause and the last checkpoint on disk is a good one."""
    import hrm.train as loop

    real_step = loop.train_step

    def poisoning_step(state):
        sums = real_step(state)
        if state.step == 15:  # after the step-10 checkpoint, before the loss check at 20
            with torch.no_grad():
                next(state.model.parameters()).view(-1)[0] = float("nan")
        return sums

    monkeypatch.setattr(loop, "train_step", poisoning_step)
    cfg = tiny_config(tmp_path, log_interval=20)
    with pytest.raises(FloatingPointError, match="non-finite weights at step 20 .*no checkpoint saved"):
        train(cfg, log=lambda _m: None)
    assert [p.name for p in checkpoint_dirs(tmp_path / "run")] == ["step_00000010"]
    _, _, payload = load_model(checkpoint_dirs(tmp_path / "run")[-1])
    assert all(bool(torch.isfinite(v).all()) for v in payload["model"].values() if v.is_floating_point())


def test_device_auto_takes_cuda_then_mps_then_cpu():
    assert pick_device("auto", cuda=True, mps=True) == "cuda"
    assert pick_device("auto", cuda=False, mps=True) == "mps"
    assert pick_device("auto", cuda=False, mps=False) == "cpu"
    assert pick_device("mps", cuda=True, mps=True) == "mps" and pick_device("cpu", cuda=True, mps=True) == "cpu"
    for kind in ("cuda", "mps"):
        with pytest.raises(ConfigError, match=f"train.device is '{kind}' but no {kind.upper()} device"):
            pick_device(kind, cuda=False, mps=False)


def test_resolve_runtime_on_mps_is_float32_eager(tiny, tmp_path, monkeypatch):
    import hrm.runtime as T

    monkeypatch.setattr(T, "_mps_available", lambda: True)
    monkeypatch.setattr(T.torch.cuda, "is_available", lambda: False)
    rt = resolve_runtime(tiny.config(tmp_path, train={"device": "auto", "dtype": "auto"}))
    assert (rt.device.type, rt.dtype, rt.compile) == ("mps", torch.float32, "off")


@pytest.mark.parametrize("bf16_cpu", [True, False])
def test_dtype_auto_is_bf16_only_where_the_hardware_has_it(tiny, tmp_path, monkeypatch, bf16_cpu):
    import hrm.runtime as T

    monkeypatch.setattr(T, "cpu_has_bf16", lambda: bf16_cpu)
    rt = resolve_runtime(tiny.config(tmp_path, train={"dtype": "auto"}))
    assert rt.dtype == (torch.bfloat16 if bf16_cpu else torch.float32) and rt.compile == "auto"
    assert T.auto_dtype("cuda") == "bfloat16" and T.auto_dtype("mps") == "float32"
    assert resolve_runtime(tiny.config(tmp_path)).dtype == torch.float32  # what the tests pin


def test_urm_with_muon_trains_and_resumes_bit_for_bit(tmp_path, tiny):
    """URM's ARC-AGI-2 optimiser: Muon on every 2-D parameter (embeddings and heads too), AdamW
    on the rest, sign-SGD on the puzzle table; a cut run resumes both optimisers exactly."""
    from hrm.optim import Chained

    from hrm.config import from_dict

    def cfg(root):
        raw = tiny.raw(root, model={"arch": "urm", "L_layers": 1, "H_cycles": 2, "L_cycles": 2},
                       data={"root": str(tmp_path / "shared-data")}, optim={"optimizer": "muon", "lr": 0.02},
                       train={"steps": 8, "eval_interval": 4})
        del raw["model"]["H_layers"]  # not URM's
        return from_dict(raw)

    split = Split.load(ensure_dataset(cfg(tmp_path / "a").data), "train")
    state = init_state(cfg(tmp_path / "a"), resolve_runtime(cfg(tmp_path / "a")), split)
    muon, adamw = state.optimizer.optimizers
    assert isinstance(state.optimizer, Chained) and isinstance(muon, torch.optim.Muon)
    assert {id(p) for g in muon.param_groups for p in g["params"]} == {
        id(p) for p in state.model.parameters() if p.dim() == 2}
    assert {tuple(p.shape) for g in adamw.param_groups for p in g["params"]} >= {(2,)}  # q_head.bias among the rest

    train(cfg(tmp_path / "a"), log=lambda _m: None)
    want = history(tmp_path / "a" / "run")

    class Stop(Exception):
        pass

    def stop(metrics, ckpt):
        raise Stop

    with pytest.raises(Stop):
        train(cfg(tmp_path / "b"), log=lambda _m: None, report=stop)
    train(cfg(tmp_path / "b"), resume=True, log=lambda _m: None)
    got = history(tmp_path / "b" / "run")
    assert [r["step"] for r in got] == list(range(1, 9))
    assert [r["loss/total"] for r in got] == [r["loss/total"] for r in want]
    assert want[-1]["loss/total"] != want[0]["loss/total"]
