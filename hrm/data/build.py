"""Task datasets: shape without building, build once, cache by builder options.

A dataset folder holds `train.arrow` and `test.arrow`. Its default location is
`<data.root>/<task>-<hash of the builder options>`, so every distinct option set
(e.g. each augmentation count a search tries) is built once and reused. Builds
go to a temporary folder that is renamed into place, so concurrent trials asking
for the same dataset never see a half-written one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from hrm import remote
from hrm.config import ConfigError, DataConfig
from hrm.data import storage

FORMAT_VERSION = 1
_PUBLISHED = "published.json"  # written last into a shared copy: it is complete
DATASET_FILES = (*(f"{s}.arrow" for s in storage.SPLITS), _PUBLISHED)  # all a dataset folder of ours holds


@dataclass(frozen=True)
class TaskSpec:
    vocab_size: int
    seq_len: int
    num_puzzle_ids: int


def task_spec(cfg: DataConfig) -> TaskSpec:
    """Vocabulary, sequence length and puzzle-id count a config's data will have.

    Exact for Sudoku and Maze; for an ARC dataset not built yet the puzzle-id
    count is the upper bound (num_aug + 1) * tasks + 1 (variants are deduplicated).
    """
    built = storage.split_path(dataset_dir(cfg), "train")
    if built.exists():
        meta = storage.read_meta(built)
        return TaskSpec(meta["vocab_size"], meta["seq_len"], meta["num_puzzle_ids"])
    if cfg.task == "sudoku":
        n = cfg.sudoku.size
        return TaskSpec(vocab_size=n + 2, seq_len=n * n, num_puzzle_ids=1)
    if cfg.task == "maze":
        from hrm.data import maze

        return TaskSpec(vocab_size=maze.VOCAB_SIZE, seq_len=cfg.maze.size**2, num_puzzle_ids=1)
    if cfg.task == "arc":
        from hrm.data import arc

        train_tasks, eval_tasks = _arc_tasks(cfg)
        ids = (cfg.num_aug + 1) * (len(train_tasks) + len(eval_tasks)) + 1
        return TaskSpec(vocab_size=arc.VOCAB_SIZE, seq_len=arc.SEQ_LEN, num_puzzle_ids=ids)
    raise ConfigError(f"unknown data.task '{cfg.task}'")


def _arc_tasks(cfg: DataConfig):
    from hrm.data import arc

    try:
        train, evals = arc.select_tasks(cfg.arc.version, cfg.arc.extra_versions, cfg.arc.extra_dirs)
    except ValueError as exc:
        raise ConfigError(f"data.arc: {exc}") from None
    return train[: cfg.arc.max_train_tasks], evals[: cfg.arc.max_eval_tasks]


def builder_options(cfg: DataConfig) -> dict[str, Any]:
    """Everything that determines the built bytes (and nothing else)."""
    opts: dict[str, Any] = {"task": cfg.task, "seed": cfg.seed, "num_aug": cfg.num_aug}
    if cfg.task in ("sudoku", "maze"):
        opts.update(num_train=cfg.num_train, num_test=cfg.num_test)
    if cfg.task == "sudoku":
        sub = asdict(cfg.sudoku)
        for key in ("train_csv", "test_csv"):
            if sub[key] is not None:
                sub[key] = str(Path(sub[key]).resolve())
        opts["sudoku"] = sub
    elif cfg.task == "maze":
        opts["maze"] = asdict(cfg.maze)
    elif cfg.task == "arc":
        sub = asdict(cfg.arc)
        sub["extra_versions"] = list(cfg.arc.extra_versions)
        sub["extra_dirs"] = [str(Path(d).resolve()) for d in cfg.arc.extra_dirs]
        opts["arc"] = sub
    return opts


def dataset_dir(cfg: DataConfig) -> Path:
    if cfg.path is not None:
        return Path(cfg.path)
    digest = hashlib.sha256(json.dumps(builder_options(cfg), sort_keys=True).encode()).hexdigest()[:10]
    return Path(cfg.root) / f"{cfg.task}-{digest}"


def _print_progress(label: str) -> Callable[[int, int], None]:
    start = time.monotonic()
    last = [start]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - last[0] >= 10.0:
            last[0] = now
            rate = done / max(now - start, 1e-9)
            eta = (total - done) / rate if rate > 0 else float("inf")
            print(f"[data] {label}: {done}/{total} ({rate:.1f}/s, eta {eta:.0f}s)", file=sys.stderr, flush=True)

    return progress


def build_dataset(
    cfg: DataConfig,
    out: str | os.PathLike,
    progress: Callable[[int, int], None] | None = None,
    overwrite: bool = True,
) -> Path:
    """Build the dataset a config describes into folder `out` (atomically)."""
    out = Path(out)
    workers = min(os.cpu_count() or 1, 16)
    extra: dict[str, Any] = {}
    if cfg.task == "sudoku":
        from hrm.data import sudoku

        s = cfg.sudoku
        progress = progress or _print_progress(f"sudoku {s.size}x{s.size} {s.difficulty}")
        if s.train_csv is not None:
            splits = sudoku.build_from_csv(s.train_csv, s.test_csv, cfg.num_train, cfg.num_aug, cfg.seed, progress=progress)
        else:
            if cfg.num_train is None:
                raise ConfigError("data.num_train must be a number when generating puzzles (null means 'all' of a CSV)")
            splits = sudoku.build(
                s.size, cfg.num_train, cfg.num_test, cfg.num_aug, s.difficulty, s.blanks, cfg.seed,
                progress=progress,
                # Hard puzzles cost ~60 ms each: spread them over the cores (output is
                # identical for any worker count); easy ones are not worth a pool.
                workers=1 if s.difficulty == "easy" else workers,
            )
        spec = TaskSpec(vocab_size=s.size + 2, seq_len=s.size**2, num_puzzle_ids=1)
    elif cfg.task == "maze":
        from hrm.data import maze

        if cfg.num_train is None:
            raise ConfigError("data.num_train must be a number for maze")
        m = cfg.maze
        progress = progress or _print_progress(f"maze {m.size}x{m.size} path>{m.min_path}")
        splits = maze.build(
            cfg.num_train, cfg.num_test, cfg.num_aug, cfg.seed, size=m.size, min_path=m.min_path,
            progress=progress, workers=workers,
        )
        spec = TaskSpec(vocab_size=maze.VOCAB_SIZE, seq_len=m.size**2, num_puzzle_ids=1)
    elif cfg.task == "arc":
        from hrm.data import arc

        train_tasks, eval_tasks = _arc_tasks(cfg)
        progress = progress or _print_progress(f"arc {cfg.arc.version} x{cfg.num_aug}")
        splits, extra = arc.build(
            train_tasks, eval_tasks, cfg.num_aug, cfg.seed, translate=cfg.arc.translate, progress=progress
        )
        spec = TaskSpec(vocab_size=arc.VOCAB_SIZE, seq_len=arc.SEQ_LEN, num_puzzle_ids=int(extra["num_puzzle_ids"]))
    else:
        raise ConfigError(f"unknown data.task '{cfg.task}'")
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    for split, cols in splits.items():
        meta = {
            "format_version": FORMAT_VERSION,
            "task": cfg.task,
            "split": split,
            "vocab_size": spec.vocab_size,
            "seq_len": spec.seq_len,
            "num_puzzle_ids": spec.num_puzzle_ids,
            "num_rows": int(len(cols["inputs"])),
            "num_groups": int(len(np.unique(cols["group_id"]))),
            "seed": cfg.seed,
            "builder": builder_options(cfg),
            **{k: v for k, v in extra.items() if k != "num_puzzle_ids"},
        }
        storage.write_split(storage.split_path(tmp, split), cols, meta)
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:  # another process built it first: same bytes
            shutil.rmtree(tmp, ignore_errors=True)
            return out
        # Replace our files one by one: whatever else the folder holds is not ours to delete.
        for name in os.listdir(tmp):
            os.replace(tmp / name, out / name)
        tmp.rmdir()
        return out
    if out.is_dir():
        out.rmdir()
    _move_into_place(tmp, out)
    return out


def _move_into_place(tmp: Path, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp, out)
    except OSError:
        # Another process renamed the same dataset into place first: same bytes.
        shutil.rmtree(tmp, ignore_errors=True)
        if not storage.split_path(out, "train").exists():
            raise


def ensure_dataset(cfg: DataConfig, log: Callable[[str], None] | None = None) -> Path:
    """The dataset folder for `cfg`, building it first if it is not there yet. With
    `data.share`, a missing dataset is first looked for there (and downloaded), and one
    built here is published there, so a cluster builds each option set once."""
    log = log or (lambda msg: print(msg, flush=True))
    path = dataset_dir(cfg)
    if all(storage.split_path(path, s).exists() for s in storage.SPLITS):
        return path
    if cfg.path is not None and cfg.sudoku.train_csv is None:
        raise ConfigError(f"data.path {cfg.path} has no train.arrow/test.arrow (build it with `hrm data build`)")
    shared = f"{cfg.share.rstrip('/')}/{path.name}" if cfg.share and cfg.path is None else None
    start = time.monotonic()
    if shared and remote.exists(f"{shared}/{_PUBLISHED}"):
        log(f"[data] fetching {cfg.task} dataset {shared} into {path}")
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        remote.download_dir(shared, tmp)
        _move_into_place(tmp, path)
        log(f"[data] fetched {path} in {time.monotonic() - start:.1f}s")
        return path
    log(f"[data] building {cfg.task} dataset into {path}")
    build_dataset(cfg, path, overwrite=False)
    log(f"[data] built {path} in {time.monotonic() - start:.1f}s")
    if shared:
        # The marker goes last: a reader that sees it sees every file (same bytes from any builder).
        remote.upload_dir(path, shared)
        remote.write_bytes(f"{shared}/{_PUBLISHED}", json.dumps(builder_options(cfg), sort_keys=True).encode())
        log(f"[data] published {path.name} to {cfg.share}")
    return path
