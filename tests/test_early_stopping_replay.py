"""benchmarks/early_stopping.py replays a finished search through Ray's ASHAScheduler: the
trial-steps it counts and the winner it picks follow ASHA's rule (stop a trial strictly
below the rung's cutoff), on hand-made histories."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("ray")

from benchmarks.early_stopping import histories, replay  # noqa: E402


def _trial(folder, trial_id, start, curve, every=100, tokens=None):
    (folder / trial_id).mkdir()
    tokens = tokens or [0.5] * len(curve)
    rows = [{"trial_id": trial_id, "step": every * (i + 1), "pass@2": v, "token_accuracy": tok,
             "timestamp": start + 10 * (i + 1), "time_total_s": 10 * (i + 1)}
            for i, (v, tok) in enumerate(zip(curve, tokens))]
    (folder / trial_id / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_replay_stops_what_asha_stops_and_keeps_the_winner(tmp_path):
    # One at a time: a (good), then b (worse than a at the first rung), then c (best).
    _trial(tmp_path, "a", 0, [0.2, 0.5, 0.6])
    _trial(tmp_path, "b", 100, [0.1, 0.2, 0.3])
    _trial(tmp_path, "c", 200, [0.3, 0.7, 0.9])
    trials = histories(tmp_path, "pass@2")
    assert [t for t, _ in trials] == ["a", "b", "c"]
    r = replay(trials, grace=100, rf=2, max_t=300, metric="pass@2", mode="max")
    assert r["rungs"] == [100, 200]
    # b is below a's 0.2 at step 100 and stops there; c is above every cutoff.
    assert r["stopped"] == 1 and r["trial_steps"] == 300 + 100 + 300
    assert (r["winner"], r["winner_metric"]) == ("c", 0.9)


def test_ties_at_zero_stop_nothing(tmp_path):
    """pass@2 is 0 for every trial at the first rung: nobody is strictly below the cutoff."""
    for i, name in enumerate("abcd"):
        _trial(tmp_path, name, 100 * i, [0.0, 0.1 * (i + 1), 0.2 * (i + 1)])
    r = replay(histories(tmp_path, "pass@2"), grace=100, rf=2, max_t=300, metric="pass@2", mode="max")
    assert r["rungs"] == [100, 200] and r["stopped"] == 0 and r["trial_steps"] == 4 * 300


def test_a_tie_break_ranks_trials_tied_at_zero(tmp_path):
    """With token accuracy breaking pass@2's ties, the first rung cuts the trials whose
    tokens are worse than the leader's, and the winner is still chosen on pass@2."""
    _trial(tmp_path, "a", 0, [0.0, 0.3, 0.6], tokens=[0.8, 0.9, 0.95])
    _trial(tmp_path, "b", 100, [0.0, 0.1, 0.2], tokens=[0.6, 0.7, 0.8])
    _trial(tmp_path, "c", 200, [0.0, 0.5, 0.9], tokens=[0.85, 0.95, 0.99])
    _trial(tmp_path, "d", 300, [0.0, 0.0, 0.1], tokens=[0.5, 0.6, 0.7])
    trials = histories(tmp_path, "pass@2", tie_break="token_accuracy")
    r = replay(trials, grace=100, rf=2, max_t=300, metric="pass@2", mode="max")
    # b and d are below the median token accuracy at step 100; a and c go on.
    assert r["stopped"] == 2 and r["trial_steps"] == 300 + 100 + 300 + 100
    assert (r["winner"], r["winner_metric"]) == ("c", 0.9)
