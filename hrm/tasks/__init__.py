"""The tasks, one module each (`hrm.tasks.sudoku`, `maze`, `arc`), registered here by import.
Everything that differs by task asks `get(name)`; a new task is one module here (and its
pure builder under `hrm.data`) plus its name in `hrm.config.TASK_NAMES`."""

from __future__ import annotations

from hrm.tasks import arc, maze, sudoku
from hrm.tasks.base import Built, Task, TaskEval, TaskSpec, Views

TASKS: dict[str, Task] = {m.TASK.name: m.TASK for m in (sudoku, maze, arc)}  # hrm.config.TASK_NAMES, in order


def get(name: str) -> Task:
    """The registered task `name`; ValueError naming the allowed ones otherwise."""
    if name not in TASKS:
        raise ValueError(f"unknown task '{name}' (allowed: {', '.join(TASKS)})")
    return TASKS[name]


__all__ = ["TASKS", "Built", "Task", "TaskEval", "TaskSpec", "Views", "get"]
