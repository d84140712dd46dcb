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

from hrm.config import ConfigError, DataConfig
from hrm.data import storage

FORMAT_VERSION = 1


@dataclass(frozen=True)
class TaskSpec:
    vocab_size: int
    seq_len: int
    num_puzzle_ids: int


def task_spec(cfg: DataConfig) -> TaskSpec:
    """Vocabulary, sequence length and puzzle-id count a config's data will have."""
    if cfg.path is not None and storage.split_path(cfg.path, "train").exists():
        meta = storage.read_meta(storage.split_path(cfg.path, "train"))
        return TaskSpec(meta["vocab_size"], meta["seq_len"], meta["num_puzzle_ids"])
    if cfg.task == "sudoku":
        n = cfg.sudoku.size
        return TaskSpec(vocab_size=n + 2, seq_len=n * n, num_puzzle_ids=1)
    raise ConfigError(f"unknown data.task '{cfg.task}'")


def builder_options(cfg: DataConfig) -> dict[str, Any]:
    """Everything that determines the built bytes (and nothing else)."""
    opts: dict[str, Any] = {
        "task": cfg.task,
        "seed": cfg.seed,
        "num_train": cfg.num_train,
        "num_test": cfg.num_test,
        "num_aug": cfg.num_aug,
    }
    if cfg.task == "sudoku":
        sub = asdict(cfg.sudoku)
        for key in ("train_csv", "test_csv"):
            if sub[key] is not None:
                sub[key] = str(Path(sub[key]).resolve())
        opts["sudoku"] = sub
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
        if done == total or now - last[0] >= 2.0:
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
    if cfg.task != "sudoku":
        raise ConfigError(f"unknown data.task '{cfg.task}'")
    from hrm.data import sudoku

    progress = progress or _print_progress(f"sudoku {cfg.sudoku.size}x{cfg.sudoku.size} {cfg.sudoku.difficulty}")
    s = cfg.sudoku
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
            workers=1 if s.difficulty == "easy" else min(os.cpu_count() or 1, 16),
        )
    spec = task_spec(cfg)
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
            "num_groups": int(len(set(cols["group_id"].tolist()))),
            "seed": cfg.seed,
            "builder": builder_options(cfg),
        }
        storage.write_split(storage.split_path(tmp, split), cols, meta)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists() and overwrite:
        shutil.rmtree(out)
    try:
        os.replace(tmp, out)
    except OSError:
        # Another process renamed the same build into place first: same bytes.
        shutil.rmtree(tmp, ignore_errors=True)
        if not storage.split_path(out, "train").exists():
            raise
    return out


def ensure_dataset(cfg: DataConfig, log: Callable[[str], None] = print) -> Path:
    """The dataset folder for `cfg`, building it first if it is not there yet."""
    path = dataset_dir(cfg)
    if all(storage.split_path(path, s).exists() for s in storage.SPLITS):
        return path
    if cfg.path is not None and cfg.sudoku.train_csv is None:
        raise ConfigError(f"data.path {cfg.path} has no train.arrow/test.arrow (build it with `hrm data build`)")
    log(f"[data] building {cfg.task} dataset into {path}")
    start = time.monotonic()
    build_dataset(cfg, path, overwrite=False)
    log(f"[data] built {path} in {time.monotonic() - start:.1f}s")
    return path
