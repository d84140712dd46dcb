"""benchmarks/rung_rules.py: the synthetic curves are seeded and shaped as measured, the
search replay feeds Ray's ASHAScheduler in the order a 2-at-a-time search reports, and the
rules (the product's and the paired candidate) cut or keep on hand-made trials."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("ray")

from benchmarks.rung_rules import (ROUNDS, SEED_LOGIT_SD, World, curves, draw_world, main,  # noqa: E402
                                   observe, outcome, paired_score, parse_rule, run_search, simulate,
                                   true_final)
from hrm.search import rung_value  # noqa: E402


def _fixture(*per_round_seeds):
    """(trials, seeds, 4 rounds): each trial's per-seed values at the rung (round 2); rounds 1
    and 3 are zero and half way, round 4 is that trial's `final` (the last entry)."""
    out = []
    for rung, final in per_round_seeds:
        rung, final = np.asarray(rung, float), np.asarray(final, float)
        out.append(np.stack([np.zeros_like(rung), rung, (rung + final) / 2, final], axis=1))
    return np.array(out)


def test_the_generator_is_seeded_and_reproducible():
    a = draw_world(np.random.default_rng(7), 6, 3)
    b = draw_world(np.random.default_rng(7), 6, 3)
    c = draw_world(np.random.default_rng(8), 6, 3)
    for field in ("final", "onset", "cost", "shared", "own"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.final, c.final)
    assert a.own.shape == (6, 3) and a.shared.shape == (3,)
    p = curves(a, 0.5)
    x, y = observe(np.random.default_rng(1), p), observe(np.random.default_rng(1), p)
    assert np.array_equal(x, y) and not np.array_equal(x, observe(np.random.default_rng(2), p))
    # Reported values are whole puzzles of 200.
    assert np.allclose(x * 200, np.round(x * 200))


def test_curves_rise_late_like_the_measured_ones():
    world = draw_world(np.random.default_rng(3), 200, 3)
    p = curves(world, 0.5)
    assert p.shape == (200, 3, ROUNDS) and (p >= 0).all() and (p <= 1).all()
    assert (np.diff(p, axis=2) > 0).all()  # still climbing at the end
    share = p / p[..., -1:]
    # pass@2 is ~0 at a quarter of training and a few % of its final value at half.
    assert share[..., 0].max() < 0.03
    assert 0.01 < np.median(share[..., 1]) < 0.1 and 0.3 < np.median(share[..., 2]) < 0.7


def test_the_shared_fraction_moves_the_seed_correlation_across_settings():
    world = draw_world(np.random.default_rng(4), 2, 4000)  # two settings, many seed numbers
    for shared, lo, hi in ((0.0, -0.1, 0.1), (0.9, 0.8, 0.95)):
        final = curves(world, shared)[..., -1]
        assert lo < np.corrcoef(final[0], final[1])[0, 1] < hi


def test_true_final_is_the_mean_over_seeds():
    final = np.array([0.1, 0.5, 0.9])
    assert np.allclose(true_final(final, 0.0), final)
    spread = true_final(final)
    assert np.all(np.diff(spread) > 0) and spread[0] > 0.1 and spread[2] < 0.9
    rng = np.random.default_rng(0)
    draws = 1 / (1 + np.exp(-(np.log(9) + SEED_LOGIT_SD * rng.standard_normal(200_000))))
    assert abs(spread[2] - draws.mean()) < 2e-3


def test_ucb_keeps_the_best_setting_that_the_mean_cuts_at_the_rung():
    # One trial at a time, one rung at round 2 (rf 3). a: steady 0.10 there; b, the truly best,
    # is 0.0 and 0.18 on its two seeds (mean 0.09 < 0.10) and ends higher.
    values = _fixture(([0.10, 0.10], [0.5, 0.5]), ([0.0, 0.18], [0.7, 0.7]))
    truth, cost = np.array([0.5, 0.7]), np.ones(2)
    for rule, trained in (("mean", [4, 2]), ("lcb:1", [4, 2]), ("ucb:1", [4, 4]), ("paired:1", [4, 4])):
        run = run_search(values, cost, parse_rule(rule), "2:3", concurrency=1)
        assert run["trained"].tolist() == trained, rule
        kept, win, regret, share = outcome(run, truth, ROUNDS)
        assert (kept, win) == ((1.0, 1.0) if trained[1] == 4 else (0.0, 0.0)), rule
        assert regret == pytest.approx(0.0 if kept else 0.2)
        assert share == sum(trained) / 8


def test_the_paired_score_discounts_a_seed_effect_both_trials_share():
    ref = np.array([0.30, 0.10])
    lower_on_every_seed = np.array([0.28, 0.08])
    # Its own seeds spread 0.14, but its differences from the reference do not spread.
    assert paired_score(1.0, lower_on_every_seed, 0.18, {"a": ref}, cutoff=0.2) == pytest.approx(0.18)
    assert rung_value("ucb", 1.0, 0.18, float(lower_on_every_seed.std(ddof=1)), 2) == pytest.approx(0.28)
    # Against a reference without that pattern the differences do spread.
    assert paired_score(1.0, lower_on_every_seed, 0.18, {"a": np.array([0.2, 0.2])}, 0.2) > 0.25
    assert paired_score(1.0, lower_on_every_seed, 0.18, {}, None) == 0.18  # nothing to compare with


def test_the_paired_rule_records_the_mean_for_later_cutoffs():
    # rf 2 (median). b is kept on its paired score but recorded at its mean 0.09, so c (0.095)
    # meets the cutoff median(0.10, 0.09); ucb records b's 0.18 and cuts c below median 0.14.
    values = _fixture(([0.10, 0.10], [0.5, 0.5]), ([0.0, 0.18], [0.7, 0.7]), ([0.095, 0.095], [0.3, 0.3]))
    cost = np.ones(3)
    assert run_search(values, cost, parse_rule("paired:1"), "2:2", 1)["trained"].tolist() == [4, 4, 4]
    assert run_search(values, cost, parse_rule("ucb:1"), "2:2", 1)["trained"].tolist() == [4, 4, 2]


def test_a_finished_trial_frees_its_slot_and_reports_come_in_time_order():
    values = _fixture(([0.5], [0.6]), ([0.2], [0.3]), ([0.46], [0.5]))
    mean = parse_rule("mean")
    # Two at a time. a is fast and finishes at t=4; c starts then and reaches the rung at
    # t=6, before the slow b (cost 10) at t=20: c is compared with a alone (cut), then b
    # with a and c (cut). In trial order c would have faced median(0.5, 0.2) and gone on.
    run = run_search(values, np.array([1.0, 10.0, 1.0]), mean, "2:2", concurrency=2)
    assert run["trained"].tolist() == [4, 2, 2] and run["winner"] == 0
    # b at cost 2.5 reaches the rung at t=5, before c (t=6): c now faces median(0.5, 0.2) and
    # goes on. Had c started at t=0 instead of in a's freed slot, it would have come first.
    run = run_search(values, np.array([1.0, 2.5, 1.0]), mean, "2:2", concurrency=2)
    assert run["trained"].tolist() == [4, 2, 4]
    fifo = run_search(values, np.array([1.0, 10.0, 1.0]), None, None, concurrency=2)
    assert fifo["trained"].tolist() == [4, 4, 4] and fifo["winner"] == 0


def test_without_noise_every_rule_keeps_the_best():
    rng = np.random.default_rng(11)
    for _ in range(20):
        w = draw_world(rng, int(rng.integers(5, 21)), 3)
        # No seed effects, one onset for all: curves are proportional, so the order at every
        # rung is the final order.
        quiet = World(w.final, np.full_like(w.onset, 0.7), w.cost, np.zeros(3), np.zeros_like(w.own))
        values, truth = observe(rng, curves(quiet, 0.5), puzzles=None), true_final(w.final)
        for rungs in ("2:3", "1:2"):
            for rule in ("mean", "lcb:1", "ucb:1", "ucb:2", "paired:1"):
                kept, win, regret, share = outcome(run_search(values, w.cost, parse_rule(rule), rungs), truth, ROUNDS)
                assert (kept, win, regret) == (1.0, 1.0, 0.0), (rule, rungs)
                assert share < 1.0


def test_simulate_and_the_table(capsys):
    out = simulate(3, 0, 2, (0.5,), ("2:3",), ("mean", "ucb:1"), (5, 6), 2)
    assert set(out) == {(0.5, None, None), (0.5, "2:3", "mean"), (0.5, "2:3", "ucb:1")}
    assert out[(0.5, None, None)].shape == (3, 4) and (out[(0.5, None, None)][:, [0, 3]] == 1).all()
    main(["--searches", "2", "--seeds", "2", "--shared", "0.5", "--rungs", "2:3", "--rule", "ucb:1"])
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if line.startswith("| 2 |")]
    assert [r.split("|")[4].strip() for r in rows] == ["fifo", "mean", "ucb:1"]
    assert sum(line.startswith("{") for line in lines) == 3
    with pytest.raises(ValueError):
        parse_rule("median")
