"""The tasks, one entry each: the shape of its data, how a dataset is built, how answers
are checked and how a prediction is drawn. Everything that differs by task asks
`get(name)`; no other module compares task names, and `data.task` allows exactly the
names registered here.

Entries import their modules when called: `hrm data build` should not pay for torch,
and `hrm.evaluate` imports the dataset builder, which imports this registry. A new task
is one `Task` here plus its data module, evaluator and picture.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

if TYPE_CHECKING:
    from hrm.config import DataConfig
    from hrm.data.loader import Split
    from hrm.evaluate import EvalResult, TaskEval

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


@dataclass(frozen=True)
class Task:
    name: str
    default_aug: int  # data.num_aug `hrm data build` uses when not given
    max_aug: int | None  # the most augmentations the task has, None: no limit
    # shape of the data a config will have, before the dataset is built
    spec: Callable[[DataConfig], TaskSpec]
    # this task's part of the builder options (everything that decides the built bytes)
    options: Callable[[DataConfig], dict[str, Any]]
    describe: Callable[[DataConfig], str]  # for progress lines, e.g. "sudoku 9x9 hard"
    build: Callable[[DataConfig, Progress, int], Built]  # (cfg, progress, workers)
    evaluator: Callable[[Split], TaskEval]
    picture: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]  # (input, label, pred) -> RGB
    # files `hrm eval --out` writes besides metrics.json, from (evaluator, result)
    files: Callable[[TaskEval, EvalResult], dict[str, Any]] = lambda te, result: {}
    # lines for the build log from a built dataset's metadata (Sudoku: ratings, ARC: leaks)
    report: Callable[[dict[str, Any]], list[str]] = lambda meta: []


def _need_num_train(cfg: DataConfig) -> int:
    from hrm.config import ConfigError

    if cfg.num_train is None:
        raise ConfigError(f"data.num_train must be a number for generated {cfg.task} puzzles "
                          "(null means 'all' of a CSV)")
    return cfg.num_train


def _evaluator(cls: str) -> Callable[[Split], TaskEval]:
    def make(split: Split) -> TaskEval:
        from hrm import evaluate

        return getattr(evaluate, cls)(split)

    return make


def _picture(fn: str) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    def draw(inputs: np.ndarray, labels: np.ndarray, preds: np.ndarray) -> np.ndarray:
        from hrm import render

        return getattr(render, fn)(np.asarray(inputs), np.asarray(labels), np.asarray(preds))

    return draw


# ---------------------------------------------------------------------------
# Sudoku

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
    from hrm.data import sudoku, sudoku_rating

    s = cfg.sudoku
    if s.train_csv is not None:
        splits = sudoku.build_from_csv(s.train_csv, s.test_csv, cfg.num_train, cfg.num_aug, cfg.seed,
                                       progress=progress)
        definition = "the CSV's rating column"
    else:
        # Hard 9x9 puzzles cost ~1.5 s each: spread them over the cores (output is identical
        # for any worker count); easy ones are not worth a pool.
        splits = sudoku.build(s.size, _need_num_train(cfg), cfg.num_test, cfg.num_aug, s.difficulty, s.blanks,
                              cfg.seed, progress=progress, workers=1 if s.difficulty == "easy" else workers)
        definition = f"guesses, mean of {sudoku_rating.RELABELINGS} relabelings (hrm.data.sudoku_rating)"
    rating = {"definition": definition}
    for name, cols in splits.items():  # one rating per puzzle, not per augmented row
        _, first = np.unique(cols["group_id"], return_index=True)
        rating[name] = sudoku_rating.summarise(cols["rating"][first])
    return Built(splits, num_puzzle_ids=1, meta={"rating": rating})


def _sudoku_report(meta: dict[str, Any]) -> list[str]:
    from hrm.data import sudoku_rating

    rating = meta.get("rating", {})
    lines = [f"sudoku ratings ({rating.get('definition', 'unknown')}):"]
    for name in ("train", "test"):
        if name in rating:
            lines += sudoku_rating.describe(name, rating[name])
    return lines


# ---------------------------------------------------------------------------
# Maze


def _maze_spec(cfg: DataConfig) -> TaskSpec:
    from hrm.data import maze_grid

    return TaskSpec(vocab_size=maze_grid.VOCAB_SIZE, seq_len=cfg.maze.size**2, num_puzzle_ids=1)


def _maze_build(cfg: DataConfig, progress: Progress, workers: int) -> Built:
    from hrm.data import maze

    m = cfg.maze
    splits = maze.build(_need_num_train(cfg), cfg.num_test, cfg.num_aug, cfg.seed, size=m.size,
                        min_path=m.min_path, progress=progress, workers=workers)
    return Built(splits, num_puzzle_ids=1, meta={})


# ---------------------------------------------------------------------------
# ARC


def arc_tasks(cfg: DataConfig) -> tuple[list, list]:
    """The (training, evaluation) ARC tasks a config selects."""
    from hrm.config import ConfigError
    from hrm.data import arc_tasks

    try:
        train, evals = arc_tasks.select_tasks(cfg.arc.version, cfg.arc.extra_versions, cfg.arc.extra_dirs)
    except ValueError as exc:
        raise ConfigError(f"data.arc: {exc}") from None
    return train[: cfg.arc.max_train_tasks], evals[: cfg.arc.max_eval_tasks]


def _arc_spec(cfg: DataConfig) -> TaskSpec:
    """The puzzle-id count is an upper bound, (num_aug + 1) * tasks + 1: variants are
    deduplicated when built."""
    from hrm.data import arc

    train, evals = arc_tasks(cfg)
    ids = (cfg.num_aug + 1) * (len(train) + len(evals)) + 1
    return TaskSpec(vocab_size=arc.VOCAB_SIZE, seq_len=arc.SEQ_LEN, num_puzzle_ids=ids)


def _arc_options(cfg: DataConfig) -> dict[str, Any]:
    sub = asdict(cfg.arc)
    sub["extra_versions"] = list(cfg.arc.extra_versions)
    sub["extra_dirs"] = [str(Path(d).resolve()) for d in cfg.arc.extra_dirs]
    return {"arc": sub}


def _arc_files(te: TaskEval, result: EvalResult) -> dict[str, Any]:
    from hrm.evaluate import arc_submission

    return {"submission.json": arc_submission(te, result)}  # Kaggle's format


def _arc_report(meta: dict[str, Any]) -> list[str]:
    leaks = meta.get("leaked_pairs", [])
    if not leaks:
        return ["arc: no training pair equals an evaluation test pair (up to a dihedral map and colour permutation)"]
    shown = ", ".join(f"{x['task']} {x['pair']} = {x['eval_task']} test[{x['eval_test']}]" for x in leaks[:10])
    return [f"arc: dropped {len(leaks)} training pair(s) equal to an evaluation test pair up to a dihedral map and "
            f"colour permutation: {shown}{', ...' if len(leaks) > 10 else ''} (all in the metadata: leaked_pairs)"]


def _arc_build(cfg: DataConfig, progress: Progress, workers: int) -> Built:
    from hrm.data import arc

    train, evals = arc_tasks(cfg)
    splits, extra = arc.build(train, evals, cfg.num_aug, cfg.seed, translate=cfg.arc.translate, progress=progress)
    ids = int(extra.pop("num_puzzle_ids"))
    return Built(splits, num_puzzle_ids=ids, meta=extra)


TASKS: dict[str, Task] = {
    "sudoku": Task(
        name="sudoku", default_aug=1000, max_aug=None,
        spec=lambda cfg: TaskSpec(vocab_size=cfg.sudoku.size + 2, seq_len=cfg.sudoku.size**2, num_puzzle_ids=1),
        options=_sudoku_options,
        describe=lambda cfg: f"sudoku {cfg.sudoku.size}x{cfg.sudoku.size} {cfg.sudoku.difficulty}",
        build=_sudoku_build, evaluator=_evaluator("TaskEval"), picture=_picture("sudoku_image"),
        report=_sudoku_report,
    ),
    "maze": Task(
        name="maze", default_aug=0, max_aug=7,  # the 7 dihedral maps besides the identity
        spec=_maze_spec,
        options=lambda cfg: {"num_train": cfg.num_train, "num_test": cfg.num_test, "maze": asdict(cfg.maze)},
        describe=lambda cfg: f"maze {cfg.maze.size}x{cfg.maze.size} path>{cfg.maze.min_path}",
        build=_maze_build, evaluator=_evaluator("MazeEval"), picture=_picture("maze_image"),
    ),
    "arc": Task(
        name="arc", default_aug=1000, max_aug=None,
        spec=_arc_spec, options=_arc_options, describe=lambda cfg: f"arc {cfg.arc.version} x{cfg.num_aug}",
        build=_arc_build, evaluator=_evaluator("ARCEval"), picture=_picture("arc_image"), files=_arc_files,
        report=_arc_report,
    ),
}
NAMES = tuple(TASKS)


def get(name: str) -> Task:
    """The registered task `name`; ValueError naming the allowed ones otherwise."""
    if name not in TASKS:
        raise ValueError(f"unknown task '{name}' (allowed: {', '.join(NAMES)})")
    return TASKS[name]
