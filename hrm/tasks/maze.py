"""Maze-Hard: 30x30 mazes whose shortest path is longer than 110 moves; views are the
dihedral maps; a prediction counts when it is a valid shortest path."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np

from hrm.config import DataConfig
from hrm.data import maze, maze_grid
from hrm.data.augment import dihedral, inverse_dihedral
from hrm.render import upscale
from hrm.tasks.base import Built, Progress, Task, TaskEval, TaskSpec, Views, need_num_train

if TYPE_CHECKING:
    from hrm.data.loader import Split


class MazeEval(TaskEval):
    """Maze: views are the dihedral maps (view v uses map v, so at most 8)."""

    def __init__(self, split: Split):
        self.split = split
        self.size = int(round(split.columns["inputs"].shape[1] ** 0.5))

    def views(self, questions: np.ndarray, num_views: int, seed: int) -> Views:
        if num_views > 8:
            raise ValueError(f"maze has 8 dihedral views at most, asked for {num_views}")
        cols, n = self.split.columns, self.size
        grids_in = cols["inputs"][questions].reshape(-1, n, n)
        grids_lab = cols["labels"][questions].reshape(-1, n, n)
        inputs = [dihedral(grids_in, k).reshape(len(questions), -1) for k in range(num_views)]
        labels = [dihedral(grids_lab, k).reshape(len(questions), -1) for k in range(num_views)]
        return Views(
            inputs=np.concatenate(inputs),
            labels=np.concatenate(labels),
            puzzle_ids=np.tile(cols["puzzle_id"][questions], num_views),
            question=np.tile(np.arange(len(questions)), num_views),
            view=np.repeat(np.arange(num_views), len(questions)),
            aug=np.repeat(np.arange(num_views), len(questions))[:, None],
            question_task=np.arange(len(questions)),
        )

    def answers(self, preds: np.ndarray, aug: np.ndarray) -> list[bytes]:
        n = self.size
        return [
            np.ascontiguousarray(inverse_dihedral(p.reshape(n, n), int(k[0]))).astype(np.uint8).tobytes()
            for p, k in zip(preds, aug)
        ]

    def truth(self, questions: np.ndarray) -> list[Any]:
        return [self.split.columns["inputs"][q] for q in questions]

    def is_correct(self, truth: Any, answer: bytes) -> bool:
        return bool(maze_grid.is_optimal_path(truth, np.frombuffer(answer, dtype=np.uint8)))



def _maze_spec(cfg: DataConfig) -> TaskSpec:
    return TaskSpec(vocab_size=maze_grid.VOCAB_SIZE, seq_len=cfg.maze.size**2, num_puzzle_ids=1)


def _maze_build(cfg: DataConfig, progress: Progress, workers: int) -> Built:
    m = cfg.maze
    splits = maze.build(need_num_train(cfg), cfg.num_test, cfg.num_aug, cfg.seed, size=m.size,
                        min_path=m.min_path, progress=progress, workers=workers)
    return Built(splits, num_puzzle_ids=1, meta={})



def picture(inputs: np.ndarray, labels: np.ndarray, preds: np.ndarray, cell: int = 6) -> np.ndarray:
    n = int(round(len(inputs) ** 0.5))
    rgb = np.full((n * n, 3), 255, dtype=np.uint8)
    rgb[inputs == maze_grid.WALL] = (0, 0, 0)
    rgb[(labels == maze_grid.PATH) & (preds != maze_grid.PATH)] = (255, 200, 120)
    rgb[(preds == maze_grid.PATH) & (inputs == maze_grid.OPEN)] = (40, 90, 230)
    rgb[inputs == maze_grid.START] = (20, 180, 60)
    rgb[inputs == maze_grid.GOAL] = (220, 30, 30)
    return upscale(rgb.reshape(n, n, 3), cell)




TASK = Task(
    name="maze", default_aug=0,
    spec=_maze_spec,
    options=lambda cfg: {"num_train": cfg.num_train, "num_test": cfg.num_test, "maze": asdict(cfg.maze)},
    describe=lambda cfg: f"maze {cfg.maze.size}x{cfg.maze.size} path>{cfg.maze.min_path}",
    build=_maze_build, evaluator=MazeEval, picture=picture,
)
