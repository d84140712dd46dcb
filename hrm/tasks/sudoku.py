"""Sudoku: 9x9 (Sudoku-Extreme grade when generated hard), 6x6 and 4x4; views are HRM's
augmentations; a picture shows the grid with wrong cells in red."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hrm.config import DataConfig
from hrm.data import sudoku, sudoku_grid, sudoku_rating
from hrm.data.sudoku_grid import box_shape
from hrm.render import GREY, RED, WHITE
from hrm.tasks.base import Built, Progress, Task, TaskEval, TaskSpec, Views, need_num_train

if TYPE_CHECKING:
    from hrm.data.loader import Split


class SudokuEval(TaskEval):
    """Sudoku: views are HRM's Sudoku augmentations of the test puzzle."""

    def __init__(self, split: Split):
        self.split = split
        self.n = int(split.meta["builder"]["sudoku"]["size"])

    def views(self, questions: np.ndarray, num_views: int, seed: int) -> Views:
        cols = self.split.columns
        rng = np.random.default_rng([seed, 1])
        inputs, labels, augs, qs, vs = [], [], [], [], []
        for v in range(num_views):
            if v == 0:
                aug = np.repeat(sudoku_grid.identity_aug(self.n)[None], len(questions), 0)
            else:
                aug = np.stack([sudoku_grid.random_aug(self.n, rng) for _ in questions])
            # tokens -> digits (blank token 1 -> 0), augment, back to tokens
            inp = cols["inputs"][questions].astype(np.int64)
            digits = np.where(inp >= 2, inp - 1, 0)
            aug_digits = sudoku_grid.apply_aug(digits, aug, self.n)
            inputs.append(np.where(aug_digits > 0, aug_digits + 1, 1))
            lab = cols["labels"][questions].astype(np.int64) - 1
            labels.append(sudoku_grid.apply_aug(lab, aug, self.n) + 1)
            augs.append(aug)
            qs.append(np.arange(len(questions)))
            vs.append(np.full(len(questions), v))
        return Views(
            inputs=np.concatenate(inputs),
            labels=np.concatenate(labels),
            puzzle_ids=np.tile(cols["puzzle_id"][questions], num_views),
            question=np.concatenate(qs),
            view=np.concatenate(vs),
            aug=np.concatenate(augs),
            question_task=np.arange(len(questions)),
        )

    def answers(self, preds: np.ndarray, aug: np.ndarray) -> list[bytes]:
        digits = np.clip(preds.astype(np.int64) - 1, 0, self.n)
        inv = sudoku_grid.invert_aug(aug, self.n)
        return [row.astype(np.uint8).tobytes() for row in sudoku_grid.apply_aug(digits, inv, self.n)]

    def truth(self, questions: np.ndarray) -> list[Any]:
        return [(self.split.columns["labels"][q].astype(np.int64) - 1).astype(np.uint8).tobytes() for q in questions]





SUDOKU_GENERATOR = "guesses-rating-1"  # bump when generated puzzles or their ratings change


def _sudoku_options(cfg: DataConfig) -> dict[str, Any]:
    sub = asdict(cfg.sudoku)
    for key in ("train_csv", "test_csv"):
        if sub[key] is not None:
            sub[key] = str(Path(sub[key]).resolve())
    # The generator and the stored rating: datasets built before they changed are not reused.
    sub["generator"] = SUDOKU_GENERATOR
    return {"num_train": cfg.num_train, "num_test": cfg.num_test, "sudoku": sub}


def _sudoku_build(cfg: DataConfig, progress: Progress, workers: int) -> Built:
    s = cfg.sudoku
    if s.train_csv is not None:
        splits = sudoku.build_from_csv(s.train_csv, s.test_csv, cfg.num_train, cfg.num_aug, cfg.seed,
                                       progress=progress)
        definition = "the CSV's rating column"
    else:
        # Hard 9x9 puzzles take a local search each: spread them over the cores (output is identical
        # for any worker count); easy ones are not worth a pool.
        splits = sudoku.build(s.size, need_num_train(cfg), cfg.num_test, cfg.num_aug, s.difficulty, s.blanks,
                              cfg.seed, progress=progress, workers=1 if s.difficulty == "easy" else workers)
        definition = f"guesses, mean of {sudoku_rating.RELABELINGS} relabelings (hrm.data.sudoku_rating)"
    # The grade is news only where the build asked for Sudoku-Extreme-grade puzzles (or read them).
    rating = {"definition": definition, "graded": s.difficulty == "hard" or s.train_csv is not None}
    for name, cols in splits.items():  # one rating per puzzle, not per augmented row
        _, first = np.unique(cols["group_id"], return_index=True)
        rating[name] = sudoku_rating.summarise(cols["rating"][first])
    return Built(splits, num_puzzle_ids=1, meta={"rating": rating})


def _sudoku_report(meta: dict[str, Any]) -> list[str]:
    rating = meta.get("rating", {})
    if not rating.get("graded", True):
        return []
    lines = [f"sudoku ratings ({rating.get('definition', 'unknown')}):"]
    for name in ("train", "test"):
        if name in rating:
            lines += sudoku_rating.describe(name, rating[name])
    return lines



def picture(inputs: np.ndarray, labels: np.ndarray, preds: np.ndarray, cell: int = 22) -> np.ndarray:
    """Token rows (blank = 1, digit d = d + 1) of an n x n Sudoku."""
    from PIL import Image, ImageDraw  # Pillow comes with tensorboard; only pictures need it

    n = int(round(len(inputs) ** 0.5))
    br, bc = box_shape(n)
    img = Image.new("RGB", (n * cell + 1, n * cell + 1), WHITE)
    draw = ImageDraw.Draw(img)
    for i in range(n * n):
        r, c = divmod(i, n)
        given = inputs[i] >= 2
        right = preds[i] == labels[i]
        fill = GREY if given else (WHITE if right else RED)
        x0, y0 = c * cell, r * cell
        draw.rectangle([x0, y0, x0 + cell, y0 + cell], fill=fill, outline=(160, 160, 160))
        digit = int(preds[i]) - 1 if not given else int(inputs[i]) - 1
        if 1 <= digit <= 9:
            draw.text((x0 + cell // 3, y0 + cell // 5), str(digit), fill=(0, 0, 0))
    for k in range(0, n + 1):
        if k % br == 0:
            draw.line([0, k * cell, n * cell, k * cell], fill=(0, 0, 0), width=2)
        if k % bc == 0:
            draw.line([k * cell, 0, k * cell, n * cell], fill=(0, 0, 0), width=2)
    return np.asarray(img)




TASK = Task(
    name="sudoku", default_aug=1000,
    spec=lambda cfg: TaskSpec(vocab_size=cfg.sudoku.size + 2, seq_len=cfg.sudoku.size**2, num_puzzle_ids=1),
    options=_sudoku_options,
    describe=lambda cfg: f"sudoku {cfg.sudoku.size}x{cfg.sudoku.size} {cfg.sudoku.difficulty}",
    build=_sudoku_build, evaluator=SudokuEval, picture=picture, report=_sudoku_report,
)
