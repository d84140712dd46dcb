"""Parallel latent paths at inference (`hrm eval --paths K --noise SIGMA`): K noisy trajectories
of each sample, the Q head choosing; path 0 is the plain evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hrm.config import ConfigError, DataConfig, ModelConfig, SudokuConfig
from hrm.data.loader import Split
from hrm.dataset import build_dataset
from hrm.evaluate import Paths, choose_path, run_eval, run_eval_at, task_eval, trajectories
from hrm.model import HRM, TRM


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = tmp_path_factory.mktemp("paths")
    cfg = DataConfig(root=str(root), num_train=20, num_test=40, num_aug=1,
                     sudoku=SudokuConfig(size=6, difficulty="easy", blanks=8))
    return Split.load(build_dataset(cfg, root / "d"), "test")


def _model(tiny, family: str):
    """A fresh tiny model whose Q head reads the state (initialised, it is 0 and says -5 everywhere)."""
    torch.manual_seed(0)
    cfg = dict(tiny.BASE["model"], halt_max_steps=4)
    if family == "trm":
        cfg.update(arch="trm")
    model = (TRM if family == "trm" else HRM)(ModelConfig(**cfg), vocab_size=8, seq_len=36, num_puzzle_ids=1)
    with torch.no_grad():
        model.q_head.weight.normal_(0, 0.5)
        model.q_head.bias.zero_()
    return model


def _batch(split: Split, n: int = 16) -> dict[str, torch.Tensor]:
    v = task_eval(split).views(np.arange(n), 1, 0)  # the questions as evaluation feeds them
    return {key: torch.from_numpy(getattr(v, key).astype(np.int64)) for key in ("inputs", "labels", "puzzle_ids")}


@pytest.mark.parametrize("family", ["hrm", "trm"])
def test_one_path_without_noise_is_the_plain_evaluation(split, tiny, family):
    model = _model(tiny, family)
    plain = run_eval_at(model, split, [1, 2, 4], batch_size=16, views=2)
    for paths in (Paths(1, 0.0), Paths(3, 0.0)):  # three noise-free paths are three copies of the plain one
        got = run_eval_at(model, split, [1, 2, 4], batch_size=16, views=2, paths=paths)
        for s in (1, 2, 4):
            want = dict(plain[s].metrics, inference_flops=plain[s].metrics["inference_flops"] * paths.k)
            if paths.k > 1:
                want["paths"] = float(paths.k)
            assert got[s].metrics == pytest.approx(want)


@pytest.mark.parametrize("family", ["hrm", "trm"])
def test_more_paths_never_change_a_path_s_trajectory(split, tiny, family):
    model = _model(tiny, family)
    batch = _batch(split)
    one = trajectories(model, batch, [1, 2, 4], Paths(1))
    three = trajectories(model, batch, [1, 2, 4], Paths(3, 0.3, "HL", seed=5))
    five = trajectories(model, batch, [1, 2, 4], Paths(5, 0.3, "HL", seed=5))
    for s in (1, 2, 4):
        assert torch.equal(three[s]["preds"][0], one[s]["preds"][0])  # path 0: the plain evaluation
        assert torch.allclose(three[s]["q_halt"][0], one[s]["q_halt"][0], atol=1e-5)
        for k in (1, 2):  # a noisy path's draw is its own, however many others run
            assert torch.allclose(five[s]["q_halt"][k], three[s]["q_halt"][k], atol=1e-5)
    # the noise moves the noisy paths (after the first segment, where it is first applied)
    assert not torch.allclose(three[4]["q_halt"][1], three[4]["q_halt"][0], atol=1e-3)
    assert torch.equal(three[1]["q_halt"][1], three[1]["q_halt"][0])


def test_the_q_head_chooses_the_path_and_a_seed_reproduces(split, tiny):
    out = {"q_halt": torch.tensor([[0.1, 2.0, -1.0], [0.5, 2.0, -3.0], [0.3, 1.0, -2.0]]),
           "preds": torch.arange(9).reshape(3, 3, 1), "halt_step": torch.ones(3, 3)}
    chosen = choose_path(out)  # sample 0: path 1; sample 1: paths 0 and 1 tie at 2.0 -> path 0; sample 2: path 2
    assert chosen["q_halt"].tolist() == [0.5, 2.0, -1.0] and chosen["preds"][:, 0].tolist() == [3, 1, 2]

    model = _model(tiny, "hrm")
    a = run_eval(model, split, batch_size=16, views=2, steps=4, paths=Paths(4, 0.5, seed=1))
    b = run_eval(model, split, batch_size=16, views=2, steps=4, paths=Paths(4, 0.5, seed=1))
    assert a.metrics == b.metrics and a.ranked == b.ranked
    batch = _batch(split)
    other = [trajectories(model, batch, [4], Paths(2, 0.5, seed=seed))[4]["q_halt"][1] for seed in (1, 2)]
    assert not torch.equal(*other)


def test_bad_paths_are_refused(split, tiny):
    with pytest.raises(ConfigError, match="noise on one of L, H, HL"):
        Paths(2, 0.1, "Z")
    with pytest.raises(ConfigError, match="k >= 1"):
        Paths(0)


@pytest.fixture
def ckpt(tmp_path, capsys):
    """A tiny HRM checkpoint (imported from the reference layout) on a small 6x6 Sudoku set."""
    from hrm.cli import main
    from tests.test_import import TINY, write_release

    write_release(tmp_path / "release", "hrm", TINY)
    quick = ["--set", "data.num_train=16", "--set", "data.num_test=8", "--set", "data.num_aug=0",
             "--set", f"data.root={tmp_path / 'data'}"]
    assert main(["import", "hrm", str(tmp_path / "release"), "--out", str(tmp_path / "ckpt"), *quick]) == 0
    capsys.readouterr()
    return tmp_path / "ckpt"


def test_the_cli_takes_paths_with_mmax_and_views(ckpt, capsys):
    from hrm.cli import main

    base = ["eval", "--checkpoint", str(ckpt), "--mmax", "2", "--views", "2"]
    assert main(base) == 0
    plain = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main([*base, "--paths", "3", "--noise", "0.2", "--noise-on", "H"]) == 0
    noisy = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert noisy["paths"] == 3 and noisy["inference_flops"] == pytest.approx(3 * plain["inference_flops"])
    assert main([*base, "--noise", "0.2"]) == 2
    err = capsys.readouterr().err
    assert "--noise needs --paths >= 2" in err and len(err.strip().splitlines()) == 1


def test_the_frontier_spans_mmax_views_and_paths_and_keeps_its_pareto_front(ckpt, tmp_path, capsys):
    from hrm.cli import main

    assert main(["eval", "--checkpoint", str(ckpt), "--mmax", "2"]) == 0
    plain = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    out = tmp_path / "front"
    assert main(["eval", "--checkpoint", str(ckpt), "--frontier", "--mmax", "4", "--views", "2", "--paths", "2",
                 "--noise", "0.2", "--out", str(out)]) == 0
    found = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert json.loads((out / "frontier.json").read_text()) == found
    points = found["points"]
    assert sorted((p["mmax"], p["views"], p["paths"]) for p in points) == [
        (m, v, k) for m in (1, 2, 4) for v in (1, 2) for k in (1, 2)]
    per_segment = plain["inference_flops"] / 2  # one view, one path, Mmax 2
    for p in points:
        assert p["compute"] == pytest.approx(per_segment * p["mmax"] * p["views"] * p["paths"])
        assert 0 <= p["value"] <= 1 and p["se"] >= 0
    (same,) = [p for p in points if (p["mmax"], p["views"], p["paths"]) == (2, 1, 1)]
    assert same["value"] == plain["pass@2"]
    front = found["front"]
    assert front and [p["compute"] for p in front] == sorted(p["compute"] for p in front)
    assert all(b["value"] > a["value"] for a, b in zip(front, front[1:]))
    for p in points:  # nothing off the front beats a front point at no more compute
        assert not any(p["compute"] <= f["compute"] and p["value"] > f["value"] for f in front)


def test_the_frontier_of_an_ensemble_spans_its_sizes(ckpt, tmp_path, capsys):
    import shutil

    from hrm.cli import main

    copies = [shutil.copytree(ckpt, tmp_path / f"copy{i}") for i in (1, 2)]
    assert main(["eval", "--frontier", "--mmax", "2", "--ensemble", str(ckpt), *map(str, copies)]) == 0
    found = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert found["members"] == 3
    points = {(p["mmax"], p["members"]): p for p in found["points"]}
    assert sorted(points) == [(m, n) for m in (1, 2) for n in (1, 2, 3)]  # ensemble sizes 1, 2, 4, ... and all
    for (m, n), p in points.items():  # n copies of one model: n times the compute, the same answers
        assert p["compute"] == pytest.approx(n * points[(m, 1)]["compute"])
        assert p["value"] == points[(m, 1)]["value"]


def test_the_search_s_scaling_grid_goes_into_the_index_and_back(ckpt):
    from hrm.artifact_rows import METRIC, index_points, index_values
    from hrm.inference import frontier_point, inference_scaling

    measured = inference_scaling(ckpt, factor=1, views=[2], paths=[Paths(1), Paths(2, 0.1)])
    steps = sorted({p["mmax"] for p in measured})
    assert sorted((p["mmax"], p["views"], p["paths"], p["members"]) for p in measured) == [
        (m, v, k, 1) for m in steps for v in (1, 2) for k in (1, 2)]  # the training evaluated one view
    assert [p["mmax"] for p in measured if p["plain"]] == steps
    row = {METRIC + k: v for k, v in index_values(measured, "pass@2").items()}
    assert f"{METRIC}pass@2@mmax{steps[-1]}" in row and f"{METRIC}pass@2@mmax1@views2@paths2@members1" in row
    back = index_points({**row, "trial_id": "t0000", f"{METRIC}pass@2": 0.5}, "pass@2")
    want = [frontier_point(p, "pass@2") for p in measured]
    assert len(back) == len(want)
    for p in back:  # the plain setting reads back without views and members: the checkpoint's own
        (match,) = [w for w in want if (w["mmax"], w["paths"]) == (p["mmax"], p["paths"])
                    and (w["views"], w["members"]) == ((1, 1) if p["plain"] else (p["views"], p["members"]))]
        assert (p["compute"], p["value"], p["se"]) == (match["compute"], match["value"], match["se"])
