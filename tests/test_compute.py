"""Compute budgets: the FLOP counts of HRM, TRM, URM and the transformer against counts written out
by hand, and a run whose budget and evaluations are in FLOPs or samples."""

from __future__ import annotations

import json

import pytest

from hrm.compute import budget_steps, eval_steps, run_counters, spent, step_cost
from hrm.config import ConfigError, from_dict, load_config
from hrm.model import segment_flops

# A tiny config: hidden 32, 1+1 layers, 4x4 Sudoku (16 cells, vocabulary 6 = PAD, blank, 4 digits).
D, SEQ, V = 32, 16, 6
S = SEQ + 1  # the puzzle token first
W = 256  # SwiGLU width: round(4 * 32 * 2/3) = 85, rounded up to a multiple of 256
BLOCK = 2 * S * (3 * D * D + D * D) + 4 * S * S * D + 2 * S * 3 * D * W  # qkv+o, scores+values, gate/up+down
HEAD2 = 2 * SEQ * D * V + 2 * D * 2  # LM head on the 16 answer tokens, Q head (halt, continue) on the puzzle token
S_TRM = SEQ + 16  # TRM's 16 prefix positions (its puzzle embedding's vector, then zeros)
BLOCK_TRM = 2 * S_TRM * (3 * D * D + D * D) + 4 * S_TRM * S_TRM * D + 2 * S_TRM * 3 * D * W


def _model(tmp_path, tiny, **model):
    """The tiny config's model with `model` changed; keys the family does not use are dropped."""
    from hrm.config import FAMILY_KEYS

    raw = tiny.raw(tmp_path, model=model)
    arch = raw["model"].get("arch", "hrm")
    for key, users in FAMILY_KEYS.items():
        if arch not in users:
            raw["model"].pop(key, None)
    return from_dict(raw).model


def test_hrm_flops_by_hand(tmp_path, tiny):
    # H 2 x (L 2 x 1 layer + H 1 layer) = 6 block calls; one-step gradient: the last L and H update.
    parts = segment_flops(_model(tmp_path, tiny, H_cycles=2, L_cycles=2), SEQ, V)
    assert parts == {"forward": 6 * BLOCK + HEAD2, "backward": 2 * (2 * BLOCK + HEAD2), "q_target": 6 * BLOCK + HEAD2}
    # Mmax 1: no halting decision, so no Q-target segment
    assert segment_flops(_model(tmp_path, tiny, halt_max_steps=1), SEQ, V)["q_target"] == 0


def test_trm_flops_by_hand(tmp_path, tiny):
    # T 3 recursions x (n 2 latent updates + 1 answer update) x 1 layer = 9 calls over 32 positions;
    # the last recursion's 3 are differentiated; halting trains on correctness (no Q target).
    parts = segment_flops(_model(tmp_path, tiny, arch="trm", H_cycles=3, L_cycles=2), SEQ, V)
    assert parts == {"forward": 9 * BLOCK_TRM + HEAD2, "backward": 2 * (3 * BLOCK_TRM + HEAD2), "q_target": 0}


def test_urm_flops_by_hand(tmp_path, tiny):
    # H 2 x L 3 = 6 loops of the 1-layer stack over 17 positions; the last L 3 loops are
    # differentiated (one_step: the last loop only); no Q target. The depthwise conv is not a matmul.
    parts = segment_flops(_model(tmp_path, tiny, arch="urm", H_cycles=2, L_cycles=3), SEQ, V)
    assert parts == {"forward": 6 * BLOCK + HEAD2, "backward": 2 * (3 * BLOCK + HEAD2), "q_target": 0}
    one = segment_flops(_model(tmp_path, tiny, arch="urm", H_cycles=2, L_cycles=3, gradient="one_step"), SEQ, V)
    assert one["backward"] == 2 * (BLOCK + HEAD2)


def test_transformer_flops_by_hand(tmp_path, tiny):
    parts = segment_flops(_model(tmp_path, tiny, arch="transformer"), SEQ, V)
    # one stack of H 1 + L 1 blocks, every one differentiated, plus the Q-target segment
    assert parts == {"forward": 2 * BLOCK + HEAD2, "backward": 2 * (2 * BLOCK + HEAD2), "q_target": 2 * BLOCK + HEAD2}


def test_counters_are_steps_times_the_cost_of_a_step(tmp_path, tiny):
    cfg = tiny.config(tmp_path)  # batch 16, HRM H 2 L 2 by default
    per_sample = sum(segment_flops(cfg.model, SEQ, V).values())
    cost = step_cost(cfg, SEQ, V)
    assert cost == {"step": 1, "samples": 16, "flops": 16 * per_sample}
    assert spent(cost, 7) == {"step": 7, "samples": 112, "flops": 112 * per_sample}


def test_a_flops_budget_stops_and_evaluates_at_equal_compute(tmp_path, tiny):
    """Two settings of different cost per step under one FLOP budget: the cheaper one trains
    more steps, both evaluate each eval_interval of FLOPs and stop once the budget is spent."""
    cheap = tiny.config(tmp_path, model={"H_cycles": 1, "L_cycles": 1})
    dear = tiny.config(tmp_path, model={"H_cycles": 2, "L_cycles": 2})
    per_step = {k: step_cost(c, SEQ, V)["flops"] for k, c in (("cheap", cheap), ("dear", dear))}
    budget = 6 * per_step["dear"]
    for name, cfg in (("cheap", cheap), ("dear", dear)):
        cfg = tiny.config(tmp_path, model={"H_cycles": cfg.model.H_cycles, "L_cycles": cfg.model.L_cycles},
                          train={"steps": None, "flops": float(budget), "eval_interval": float(budget / 3)})
        last = budget_steps(cfg, step_cost(cfg, SEQ, V))
        assert last == -(-budget // per_step[name])  # ceil: the first step whose FLOPs reach the budget
        marks = eval_steps(cfg, step_cost(cfg, SEQ, V), last)
        assert len(marks) == 3 and marks[-1] == last
        counted = [spent(step_cost(cfg, SEQ, V), s)["flops"] for s in marks]
        # each evaluation is the first step at or past j/3 of the budget
        assert all(j * budget / 3 <= f < j * budget / 3 + per_step[name] for j, f in zip((1, 2, 3), counted))
        assert run_counters(cfg, SEQ, V)["eval_round"] == 3
    assert budget_steps(cheap, step_cost(cheap, SEQ, V)) == cheap.train.steps  # a step budget is itself


def test_training_reports_the_counters_it_spent(tmp_path, tiny):
    from hrm.train import train

    cfg = tiny.config(tmp_path)
    per_step = step_cost(cfg, SEQ, V)
    budget = 5 * per_step["samples"]  # 5 steps of batch 16
    cfg = tiny.config(tmp_path, train={"steps": None, "samples": budget, "eval_interval": 2 * per_step["samples"]})
    reports = []
    train(cfg, report=lambda m, _c: reports.append(m))
    assert [r["step"] for r in reports] == [2, 4, 5]
    for r in reports:
        assert r["samples"] == 16 * r["step"] and r["flops"] == per_step["flops"] * r["step"]
        # each pass@k and the exact accuracy carry the evaluation's own standard error
        assert r["pass@2_se"] == pytest.approx((r["pass@2"] * (1 - r["pass@2"]) / r["eval_questions"]) ** 0.5)
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [h["samples"] for h in history if h["kind"] == "eval"] == [32, 64, 80]


@pytest.mark.parametrize(
    "train, pieces",
    [
        ({"flops": 1e9}, ["give exactly one of train.steps, train.epochs, train.samples, train.flops", "steps and flops"]),
        ({"steps": None, "samples": 64, "eval_interval": 0}, ["train.eval_interval must be > 0"]),
        ({"eval_interval": 2.5}, ["train.eval_interval counts steps with a train.steps budget"]),
    ],
)
def test_bad_budgets_are_one_line(tmp_path, tiny, train, pieces):
    with pytest.raises(ConfigError) as err:
        tiny.config(tmp_path, train=train)
    assert all(p in str(err.value) for p in pieces), str(err.value)


def test_shipped_quickstart_counts_its_run():
    counted = run_counters(load_config("quickstart"), 36, 8)
    assert counted["eval_round"] == 8 and counted["step"] == 800 and counted["samples"] == 800 * 64
