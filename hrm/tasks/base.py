"""What every task module provides, and the evaluation machinery they share.

A task (`hrm.tasks.<name>`) is one `Task`: the shape of its data before a build (`spec`),
the builder options that decide the built bytes, the build itself (a pure builder in
`hrm.data`), its evaluator (a `TaskEval`: how a question is asked in views, how an answer
is read back and checked), a picture of a prediction, the files `hrm eval --out` writes
and the lines a build reports. Nothing outside the task modules compares task names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from hrm.config import ConfigError, DataConfig

if TYPE_CHECKING:
    from hrm.data.loader import Split
    from hrm.evaluate import EvalResult

Progress = Callable[[int, int], None] | None
Columns = dict[str, dict[str, np.ndarray]]  # split name -> column name -> array


@dataclass(frozen=True)
class TaskSpec:
    vocab_size: int
    seq_len: int
    num_puzzle_ids: int


@dataclass(frozen=True)
class Built:
    splits: Columns
    num_puzzle_ids: int
    meta: dict[str, Any]  # extra dataset metadata (ARC: task names)


@dataclass
class Views:
    """The model inputs of every (question, view), plus where they belong."""

    inputs: np.ndarray  # (M, S) tokens in the view's frame
    labels: np.ndarray  # (M, S)
    puzzle_ids: np.ndarray  # (M,)
    question: np.ndarray  # (M,) question index
    view: np.ndarray  # (M,) 0 = the un-augmented input
    aug: np.ndarray  # (M, A) what to undo
    question_task: np.ndarray  # (Q,) task index of each question
    task_names: list[str] = field(default_factory=list)



class TaskEval:
    """How a task's test split is asked and checked. A *question* is one test input; it is
    asked in `views` (the input itself first, then augmented copies), each view's
    prediction is mapped back to the question's frame (`answers`) and compared with the
    `truth` (`is_correct`). Subclasses say how for their task."""

    def __init__(self, split: Split):
        self.split = split

    def num_questions(self) -> int:
        return len(self.split)

    def question_task(self) -> np.ndarray:
        """The task each question belongs to (pass@k needs every question of a task right)."""
        return np.arange(self.num_questions())

    def views(self, questions: np.ndarray, num_views: int, seed: int) -> Views:
        raise NotImplementedError

    def answers(self, preds: np.ndarray, aug: np.ndarray) -> list[bytes]:
        raise NotImplementedError

    def truth(self, questions: np.ndarray) -> list[Any]:
        raise NotImplementedError

    def is_correct(self, truth: Any, answer: bytes) -> bool:
        return answer == truth


def no_files(te: TaskEval, result: EvalResult) -> dict[str, Any]:
    return {}


def no_report(meta: dict[str, Any]) -> list[str]:
    return []


@dataclass(frozen=True)
class Task:
    name: str
    default_aug: int  # data.num_aug `hrm data build` uses when not given
    # shape of the data a config will have, before the dataset is built
    spec: Callable[[DataConfig], TaskSpec]
    # this task's part of the builder options (everything that decides the built bytes)
    options: Callable[[DataConfig], dict[str, Any]]
    describe: Callable[[DataConfig], str]  # for progress lines, e.g. "sudoku 9x9 hard"
    build: Callable[[DataConfig, Progress, int], Built]  # (cfg, progress, workers)
    evaluator: Callable[[Split], TaskEval]
    picture: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]  # (input, label, pred) -> RGB
    # files `hrm eval --out` writes besides metrics.json, from (evaluator, result)
    files: Callable[[TaskEval, EvalResult], dict[str, Any]] = no_files
    # lines for the build log from a built dataset's metadata (Sudoku: ratings, ARC: leaks)
    report: Callable[[dict[str, Any]], list[str]] = no_report


def need_num_train(cfg: DataConfig) -> int:
    if cfg.num_train is None:
        raise ConfigError(f"data.num_train must be a number for generated {cfg.task} puzzles "
                          "(null means 'all' of a CSV)")
    return cfg.num_train
