"""Voting, pass@k and the test-time-augmentation views."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hrm import tasks
from hrm.config import DataConfig, ModelConfig, SudokuConfig
from hrm.dataset import build_dataset
from hrm.data.loader import Split
from hrm.evaluate import pass_at_k, rank_answers, run_eval
from hrm.model import HRM


def test_rank_answers_orders_by_votes_then_confidence():
    answers = [b"a", b"b", b"a", b"c", b"b", b"c"]
    q = np.array([0.0, 2.0, 0.0, -1.0, 2.0, 5.0])  # b and c tie on 2 votes with a
    ranked = rank_answers(answers, q)
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    assert [r[0] for r in ranked] == [b"b", b"c", b"a"]
    assert ranked[0][1] == 2 and ranked[0][2] == pytest.approx(sig(2.0))
    assert ranked[1][2] == pytest.approx((sig(-1.0) + sig(5.0)) / 2)


def test_pass_at_k_needs_every_question_of_a_task():
    # task 0 has questions 0 and 1; task 1 has question 2
    correct = [[False, True], [True], [False, False, True]]
    ranked = [[(b"x", 1, 0.5)] * len(c) for c in correct]
    qt = np.array([0, 0, 1])
    out = pass_at_k(ranked, correct, qt, (1, 2, 3))
    assert out[1] == (0, 2)  # question 0 is right only at rank 2
    assert out[2] == (1, 2)
    assert out[3] == (2, 2)


@pytest.fixture(scope="module")
def sudoku_test_split(tmp_path_factory):
    root = tmp_path_factory.mktemp("ev")
    cfg = DataConfig(root=str(root), num_train=20, num_test=30, num_aug=1, sudoku=SudokuConfig(size=6, difficulty="easy", blanks=8))
    return Split.load(build_dataset(cfg, root / "d"), "test")


def test_sudoku_views_invert_back_to_the_question(sudoku_test_split):
    te = tasks.get("sudoku").evaluator(sudoku_test_split)
    q = np.arange(30)
    v = te.views(q, num_views=5, seed=0)
    assert len(v.question) == 150 and set(v.view.tolist()) == set(range(5))
    # view 0 is the puzzle itself
    assert np.array_equal(v.inputs[v.view == 0], sudoku_test_split.columns["inputs"][q])
    # augmented views differ, yet a perfect prediction inverts to the true answer
    assert not np.array_equal(v.inputs[v.view == 3], v.inputs[v.view == 0])
    truths = te.truth(q)
    answers = te.answers(v.labels, v.aug)
    for i, qi in enumerate(v.question):
        assert answers[i] == truths[qi]
    # givens of each view are consistent with its label
    given = v.inputs >= 2
    assert np.array_equal(v.inputs[given], v.labels[given])


def test_one_view_pass_at_1_equals_exact_and_more_views_vote(sudoku_test_split, tiny):
    torch.manual_seed(0)
    model = HRM(ModelConfig(**tiny.BASE["model"]), vocab_size=8, seq_len=36, num_puzzle_ids=1)
    one = run_eval(model, sudoku_test_split, batch_size=64, views=1)
    assert one.metrics["pass@1"] == one.metrics["exact_accuracy"]
    assert one.metrics["eval_questions"] == 30
    four = run_eval(model, sudoku_test_split, batch_size=64, views=4)
    assert all(sum(r[1] for r in ranked) == 4 for ranked in four.ranked)
    assert four.metrics["pass@2"] >= four.metrics["pass@1"]
    limited = run_eval(model, sudoku_test_split, batch_size=64, views=1, limit=7)
    assert limited.metrics["eval_questions"] == 7


def _member(tiny, seed: int):
    torch.manual_seed(seed)
    return HRM(ModelConfig(**tiny.BASE["model"]), vocab_size=8, seq_len=36, num_puzzle_ids=1)


def test_an_ensemble_of_two_checkpoints_votes_across_members_and_views(sudoku_test_split, tiny):
    """Every (member, view) prediction is one vote; distinct answers rank by (votes, mean
    sigmoid q_halt) over all of them: the union of the members' own tallies."""
    import copy

    a = _member(tiny, 0)
    b = copy.deepcopy(a)
    with torch.no_grad():  # a near copy: many answers agree, some flip
        b.lm_head.weight.add_(0.005 * torch.randn(b.lm_head.weight.shape, generator=torch.Generator().manual_seed(1)))
        b.q_head.bias.add_(0.5)  # and its confidence differs
    alone = [run_eval(m, sudoku_test_split, batch_size=64, views=3) for m in (a, b)]
    both = run_eval([a, b], sudoku_test_split, batch_size=64, views=3)
    assert both.metrics["ensemble_members"] == 2 and both.metrics["exact_accuracy"] == alone[0].metrics["exact_accuracy"]
    shared = 0
    for q, ranked in enumerate(both.ranked):
        tally: dict[bytes, list[float]] = {}
        for member in alone:
            for answer, votes, conf in member.ranked[q]:
                n, total = tally.get(answer, [0, 0.0])
                tally[answer] = [n + votes, total + votes * conf]
        want = sorted(((a_, n, t / n) for a_, (n, t) in tally.items()), key=lambda r: (r[1], r[2]), reverse=True)
        assert [(r[0], r[1]) for r in ranked] == [(r[0], r[1]) for r in want]
        assert [r[2] for r in ranked] == pytest.approx([r[2] for r in want])
        assert sum(r[1] for r in ranked) == 6
        mine = [{r[0] for r in member.ranked[q]} for member in alone]
        shared += bool(mine[0] & mine[1])
    assert 0 < shared < len(both.ranked)  # some questions got an answer from both members, some not


def test_inference_at_several_mmax_in_one_pass_equals_separate_runs(sudoku_test_split, tiny):
    from hrm.evaluate import run_eval_at

    model = _member(tiny, 0)
    at = run_eval_at(model, sudoku_test_split, [1, 2, 4], batch_size=64, views=2)
    for s in (1, 2, 4):
        alone = run_eval(model, sudoku_test_split, batch_size=64, views=2, steps=s)
        assert at[s].metrics == alone.metrics
        assert at[s].metrics["mean_steps"] <= s
