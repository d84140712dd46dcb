"""Config loading: strict keys and types, overrides, cross-field checks, CLI errors."""

from __future__ import annotations

import json

import pytest

from hrm import cli
from hrm.config import ConfigError, builtin_configs, load_config, save_config

BASE = """
model: {hidden_size: 64, num_heads: 4}
data: {sudoku: {size: 4, difficulty: easy, blanks: 5}}
train: {steps: 10}
"""


def write(tmp_path, text: str):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_shipped_configs_load():
    assert {"quickstart", "sudoku_extreme"} <= set(builtin_configs())
    for name in builtin_configs():
        load_config(name)


def test_reference_recipe_values():
    cfg = load_config("sudoku_extreme")
    assert (cfg.model.H_cycles, cfg.model.L_cycles, cfg.model.halt_max_steps) == (2, 2, 16)
    assert cfg.optim.weight_decay == 1.0 and cfg.optim.puzzle_emb_lr == 1e-4
    assert cfg.train.global_batch_size == 768 and cfg.train.epochs == 20000


@pytest.mark.parametrize(
    "text, pieces",
    [
        ("model: {hiden_size: 3}", ["model.hiden_size", "did you mean 'hidden_size'"]),
        ("modle: {}", ["unknown key 'modle'", "did you mean 'model'"]),
        ("model: {H_cycles: two}", ["'model.H_cycles' must be an integer", "'two'"]),
        ("model: {H_cycles: 2.5}", ["'model.H_cycles' must be an integer"]),
        ("model: {pos_encoding: alibi}", ["model.pos_encoding", "'rope', 'learned'"]),
        ("model: {puzzle_emb: 1}", ["model.puzzle_emb", "true/false"]),
        ("optim: {betas: [0.9]}", ["optim.betas", "a list"]),
        ("optim: {betas: [0.9, 1.5]}", ["optim.betas must both be in [0, 1)"]),
        ("model: {hidden_size: 30, num_heads: 4}", ["divisible"]),
        ("train: {steps: 5, epochs: 3}", ["exactly one of train.steps, train.epochs, train.samples, train.flops"]),
        ("data: {sudoku: {size: 5}}", ["data.sudoku.size", "4, 6, 9"]),
        ("data: {sudoku: {difficulty: easy}}", ["data.sudoku.blanks"]),
        ("model: 3", ["'model' must be a mapping"]),
        ("- a\n- b", ["top level must be a mapping"]),
        ("model: {H_cycles: [1", ["not valid YAML"]),
        ("model: {halt_exploration_prob: 1.5}", ["halt_exploration_prob must be in [0, 1]"]),
    ],
)
def test_bad_configs_give_one_precise_line(tmp_path, text, pieces):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    msg = str(err.value)
    assert "\n" not in msg
    assert str(path) in msg
    for piece in pieces:
        assert piece in msg


def test_overrides_are_typed_and_validated(tmp_path):
    path = write(tmp_path, BASE)
    cfg = load_config(str(path), ["model.H_cycles=3", "optim.betas=[0.8, 0.9]", "train.compile=off", "optim.lr=1e-3"])
    assert cfg.model.H_cycles == 3 and cfg.optim.betas == (0.8, 0.9) and cfg.train.compile == "off"
    assert cfg.optim.lr == 1e-3  # YAML 1.1 reads 1e-3 as a string; accepted as a number
    with pytest.raises(ConfigError, match="did you mean 'L_cycles'"):
        load_config(str(path), ["model.L_cycels=3"])
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(str(path), ["model.H_cycles"])


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(str(write(tmp_path, BASE)), ["model.halt_max_steps=4"])
    save_config(cfg, tmp_path / "out.yaml")
    assert load_config(str(tmp_path / "out.yaml")) == cfg


def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys):
    path = write(tmp_path, "model: {hiden_size: 3}")
    assert cli.main(["model-info", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "hiden_size" in err and err.startswith("hrm: error:")

    assert cli.main(["model-info", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err

    for argv, msg in [
        (["data", "build", "--num-train", "-3"], "argument --num-train: must be >= 1, got -3"),
        (["data", "build", "--num-aug", "-1"], "argument --num-aug: must be >= 0, got -1"),
        (["data", "build", "--num-test", "many"], "argument --num-test: expected an integer, got 'many'"),
        (["eval", "--checkpoint", "x", "--views", "0"], "argument --views: must be >= 1, got 0"),
        (["eval", "--checkpoint", "x", "-k", "0"], "argument -k: must be >= 1, got 0"),
        (["eval", "--checkpoint", "x", "--batch-size", "0"], "argument --batch-size: must be >= 1, got 0"),
        (["artifacts", "best", "--experiment", "e", "-k", "0"], "argument -k: must be >= 1, got 0"),
    ]:
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        assert exc.value.code == 2
        assert msg in capsys.readouterr().err, argv

    assert cli.main(["eval", "--checkpoint", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_model_info_reports_reference_size(capsys):
    assert cli.main(["model-info", "--config", "sudoku_extreme"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["parameters"] == 27275266
    assert info["puzzle_table_rows"] == 1
    # 16 module-call equivalents of 2*params*tokens, plus attention and heads.
    assert 36e9 < info["flops_per_segment"] < 37.5e9
