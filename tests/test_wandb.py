"""Weights & Biases, optional: a run with train.wandb logs to an offline W&B run what
TensorBoard gets (the scalars, the prediction pictures) and the resolved config; the run's
files are read back here (tests/helpers.py), and nothing reaches the network offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("wandb")

from tests.helpers import wandb_records  # noqa: E402


def _run_file(out: Path) -> Path:
    (run_file,) = out.glob("wandb/offline-run-*/run-*.wandb")
    return run_file


@pytest.mark.slow
def test_a_run_logs_scalars_pictures_and_config_offline(tmp_path, tiny, monkeypatch):
    from hrm.train import train

    monkeypatch.setenv("WANDB_MODE", "offline")  # belt and braces: the config says offline too
    cfg = tiny.config(tmp_path, train={"tensorboard": True, "wandb": {"project": "hrm-tests", "group": "g",
                                                                      "name": "tiny"}})
    train(cfg, log=lambda _m: None)
    records = wandb_records(_run_file(tmp_path / "run"))
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert (run.project, run.run_group, run.display_name) == ("hrm-tests", "g", "tiny")
    config = {i.key: json.loads(i.value_json) for i in run.config.update}
    assert config["model"]["hidden_size"] == 32 and config["train"]["steps"] == 4
    rows = [{(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in r.history.item}
            for r in records if r.WhichOneof("record_type") == "history"]
    evals = [r for r in rows if "eval/pass@2" in r]
    assert [r["_step"] for r in evals] == [2, 4]  # one per evaluation, at its step
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["eval/pass@2"] for r in evals] == [h["pass@2"] for h in history if h["kind"] == "eval"]
    assert any("loss/total" in r for r in rows) and any("predictions/filenames" in r for r in rows)
    assert list(_run_file(tmp_path / "run").parent.glob("files/media/images/predictions_*.png"))


def test_wandb_without_its_extra_is_one_line_before_any_work(tmp_path, tiny, monkeypatch):
    import importlib.util

    from hrm.config import ConfigError
    from hrm.train import train

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ConfigError, match=r"train.wandb is set but wandb is not installed: pip install -e '.\[wandb\]'"):
        train(tiny.config(tmp_path, train={"wandb": {"project": "p"}}), log=lambda _m: None)
    assert not (tmp_path / "run").exists() and not (tmp_path / "data").exists()
