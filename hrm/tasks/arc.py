"""ARC-AGI-1/2 (and extra task folders such as ConceptARC): a question is one test input of
an evaluation task, asked in the test split's augmented variants; `hrm eval --out` also
writes the Kaggle submission."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hrm.config import ConfigError, DataConfig
from hrm.data import arc
from hrm.data.arc_tasks import select_tasks
from hrm.render import ARC_PALETTE, upscale
from hrm.tasks.base import Built, Progress, Task, TaskEval, TaskSpec, Views

if TYPE_CHECKING:
    from hrm.data.loader import Split
    from hrm.evaluate import EvalResult


def grid_bytes(grid: np.ndarray) -> bytes:
    """A hashable answer that keeps the shape: 2 shape bytes + cells."""
    h, w = grid.shape
    return bytes([h, w]) + np.ascontiguousarray(grid, dtype=np.uint8).tobytes()


def bytes_grid(answer: bytes) -> np.ndarray:
    h, w = answer[0], answer[1]
    return np.frombuffer(answer[2:], dtype=np.uint8).reshape(h, w)


class ARCEval(TaskEval):
    """ARC: a question is one test input of an evaluation task; its views are the
    test split's augmented variants of that task (variant 0 = the original)."""

    def __init__(self, split: Split):
        self.split = split
        cols = split.columns
        key = cols["group_id"].astype(np.int64) * 4096 + cols["test_index"].astype(np.int64)
        _, first, self.row_question = np.unique(key, return_index=True, return_inverse=True)
        # questions in file order (tasks in order, then test inputs)
        order = np.argsort(first, kind="stable")
        remap = np.empty_like(order)
        remap[order] = np.arange(len(order))
        self.row_question = remap[self.row_question]
        self.first_row = first[order]
        self.names = list(split.meta.get("task_names", []))

    def num_questions(self) -> int:
        return len(self.first_row)

    def question_task(self) -> np.ndarray:
        return self.split.columns["group_id"][self.first_row].astype(np.int64)

    def question_name(self, q: int) -> tuple[str, int]:
        row = self.first_row[q]
        g = int(self.split.columns["group_id"][row])
        return (self.names[g] if g < len(self.names) else str(g)), int(self.split.columns["test_index"][row])

    def views(self, questions: np.ndarray, num_views: int, seed: int) -> Views:
        cols = self.split.columns
        rows, qs, vs = [], [], []
        for i, q in enumerate(questions):
            mine = np.flatnonzero(self.row_question == q)[:num_views]
            rows.append(mine)
            qs.append(np.full(len(mine), i))
            vs.append(np.arange(len(mine)))
        r = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        return Views(
            inputs=cols["inputs"][r],
            labels=cols["labels"][r],
            puzzle_ids=cols["puzzle_id"][r],
            question=np.concatenate(qs) if qs else r,
            view=np.concatenate(vs) if vs else r,
            aug=cols["aug"][r],
            question_task=self.question_task()[questions],
            task_names=self.names,
        )

    def answers(self, preds: np.ndarray, aug: np.ndarray) -> list[bytes]:
        out = []
        for p, a in zip(preds, aug):
            grid = arc.decode(p.astype(np.uint8))
            out.append(grid_bytes(arc.invert_aug_grid(grid, a)) if grid.size else b"\x00\x00")
        return out

    def truth(self, questions: np.ndarray) -> list[Any]:
        cols = self.split.columns
        return [
            grid_bytes(arc.invert_aug_grid(arc.decode(cols["labels"][self.first_row[q]]), cols["aug"][self.first_row[q]]))
            for q in questions
        ]



def arc_submission(te: ARCEval, result: "EvalResult") -> dict[str, list[dict[str, list[list[int]]]]]:
    """Kaggle format: {task: [{"attempt_1": grid, "attempt_2": grid} per test input]}."""
    sub: dict[str, dict[int, dict[str, list[list[int]]]]] = defaultdict(dict)
    for q, ranked in zip(result.questions, result.ranked):
        name, test_index = te.question_name(int(q))
        grids = [bytes_grid(a).tolist() for a, _, _ in ranked[:2]] or [[[0]]]
        while len(grids) < 2:
            grids.append(grids[0])
        sub[name][test_index] = {"attempt_1": grids[0], "attempt_2": grids[1]}
    return {name: [tests[i] for i in sorted(tests)] for name, tests in sub.items()}



def selected_tasks(cfg: DataConfig) -> tuple[list, list]:
    """The (training, evaluation) ARC tasks a config selects."""
    try:
        train, evals = select_tasks(cfg.arc.version, cfg.arc.extra_versions, cfg.arc.extra_dirs)
    except ValueError as exc:
        raise ConfigError(f"data.arc: {exc}") from None
    return train[: cfg.arc.max_train_tasks], evals[: cfg.arc.max_eval_tasks]


def _arc_spec(cfg: DataConfig) -> TaskSpec:
    """The puzzle-id count is an upper bound, (num_aug + 1) * tasks + 1: variants are
    deduplicated when built."""
    train, evals = selected_tasks(cfg)
    ids = (cfg.num_aug + 1) * (len(train) + len(evals)) + 1
    return TaskSpec(vocab_size=arc.VOCAB_SIZE, seq_len=arc.SEQ_LEN, num_puzzle_ids=ids)


def _arc_options(cfg: DataConfig) -> dict[str, Any]:
    sub = asdict(cfg.arc)
    sub["extra_versions"] = list(cfg.arc.extra_versions)
    sub["extra_dirs"] = [str(Path(d).resolve()) for d in cfg.arc.extra_dirs]
    return {"arc": sub}


def _arc_files(te: TaskEval, result: EvalResult) -> dict[str, Any]:
    return {"submission.json": arc_submission(te, result)}  # Kaggle's format


def _arc_report(meta: dict[str, Any]) -> list[str]:
    leaks = meta.get("leaked_pairs", [])
    if not leaks:
        return ["arc: no training pair equals an evaluation test pair (up to a dihedral map and colour permutation)"]
    shown = ", ".join(f"{x['task']} {x['pair']} = {x['eval_task']} test[{x['eval_test']}]" for x in leaks[:10])
    return [f"arc: dropped {len(leaks)} training pair(s) equal to an evaluation test pair up to a dihedral map and "
            f"colour permutation: {shown}{', ...' if len(leaks) > 10 else ''} (all in the metadata: leaked_pairs)"]


def _arc_build(cfg: DataConfig, progress: Progress, workers: int) -> Built:
    train, evals = selected_tasks(cfg)
    splits, extra = arc.build(train, evals, cfg.num_aug, cfg.seed, translate=cfg.arc.translate, progress=progress)
    ids = int(extra.pop("num_puzzle_ids"))
    return Built(splits, num_puzzle_ids=ids, meta=extra)



def picture(inputs: np.ndarray, labels: np.ndarray, preds: np.ndarray, cell: int = 8) -> np.ndarray:
    panels = []
    for tokens in (inputs, preds, labels):
        grid = arc.decode(np.asarray(tokens, dtype=np.uint8))
        if grid.size == 0:
            grid = np.zeros((1, 1), dtype=np.int8)
        panels.append(upscale(ARC_PALETTE[grid.astype(np.int64)], cell))
    h = max(p.shape[0] for p in panels)
    bar = np.full((h, cell, 3), 255, dtype=np.uint8)
    padded = [np.pad(p, ((0, h - p.shape[0]), (0, 0), (0, 0)), constant_values=255) for p in panels]
    return np.concatenate([padded[0], bar, padded[1], bar, padded[2]], axis=1)




TASK = Task(
    name="arc", default_aug=1000,
    spec=_arc_spec, options=_arc_options, describe=lambda cfg: f"arc {cfg.arc.version} x{cfg.num_aug}",
    build=_arc_build, evaluator=ARCEval, picture=picture, files=_arc_files, report=_arc_report,
)
