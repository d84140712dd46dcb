"""Task datasets: shape without building, build once, cache by builder options.

A dataset folder holds `train.arrow` and `test.arrow`. Its default location is
`<data.root>/<task>-<hash of the builder options>`, so every distinct option set
(e.g. each augmentation count a search tries) is built once and reused. Builds
go to a temporary folder that is renamed into place, so concurrent trials asking
for the same dataset never see a half-written one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from hrm import storage, tasks
from hrm.config import ConfigError, DataConfig
from hrm.data import arrow
from hrm.tasks.base import TaskSpec

FORMAT_VERSION = 1
_PUBLISHED = "published.json"  # written last into a shared copy: it is complete
DATASET_FILES = (*(f"{s}.arrow" for s in arrow.SPLITS), _PUBLISHED)  # all a dataset folder of ours holds


def task_spec(cfg: DataConfig) -> TaskSpec:
    """Vocabulary, sequence length and puzzle-id count a config's data will have: read
    from the dataset when it is built, else the task's own (see `hrm.tasks`)."""
    built = arrow.split_path(dataset_dir(cfg), "train")
    if built.exists():
        meta = arrow.read_meta(built)
        return TaskSpec(meta["vocab_size"], meta["seq_len"], meta["num_puzzle_ids"])
    return tasks.get(cfg.task).spec(cfg)


def builder_options(cfg: DataConfig) -> dict[str, Any]:
    """Everything that determines the built bytes (and nothing else)."""
    return {"task": cfg.task, "seed": cfg.seed, "num_aug": cfg.num_aug, **tasks.get(cfg.task).options(cfg)}


def dataset_dir(cfg: DataConfig) -> Path:
    if cfg.path is not None:
        return Path(cfg.path)
    digest = hashlib.sha256(json.dumps(builder_options(cfg), sort_keys=True).encode()).hexdigest()[:10]
    return Path(cfg.root) / f"{cfg.task}-{digest}"


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _print_progress(label: str, log: Callable[[str], None] = _stderr) -> Callable[[int, int], None]:
    start = time.monotonic()
    last = [start]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - last[0] >= 10.0:
            last[0] = now
            rate = done / max(now - start, 1e-9)
            eta = (total - done) / rate if rate > 0 else float("inf")
            log(f"[data] {label}: {done}/{total} ({rate:.1f}/s, eta {eta:.0f}s)")

    return progress


def build_dataset(
    cfg: DataConfig,
    out: str | os.PathLike,
    progress: Callable[[int, int], None] | None = None,
    overwrite: bool = True,
    workers: int | None = None,
    log: Callable[[str], None] = _stderr,
) -> Path:
    """Build the dataset a config describes into folder `out` (atomically), with
    `workers` processes (default: one per core, at most 16; the bytes do not depend
    on it). Progress and the task's report of what was built (ratings, leaks) go to
    `log` (default: stderr)."""
    out = Path(out)
    task = tasks.get(cfg.task)
    workers = workers or min(os.cpu_count() or 1, 16)
    built = task.build(cfg, progress or _print_progress(task.describe(cfg), log), workers)
    for line in task.report(built.meta):
        log(f"[data] {line}")
    spec = dataclasses.replace(task.spec(cfg), num_puzzle_ids=built.num_puzzle_ids)
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    for split, cols in built.splits.items():
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
            **built.meta,
        }
        arrow.write_split(arrow.split_path(tmp, split), cols, meta)
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
        if not arrow.split_path(out, "train").exists():
            raise


def ensure_dataset(cfg: DataConfig, log: Callable[[str], None] | None = None) -> Path:
    """The dataset folder for `cfg`, building it first if it is not there yet. With
    `data.share`, a missing dataset is first looked for there (and downloaded), and one
    built here is published there, so a cluster builds each option set once."""
    log = log or (lambda msg: print(msg, flush=True))
    path = dataset_dir(cfg)
    if all(arrow.split_path(path, s).exists() for s in arrow.SPLITS):
        return path
    if cfg.path is not None and cfg.sudoku.train_csv is None:
        raise ConfigError(f"data.path {cfg.path} has no train.arrow/test.arrow (build it with `hrm data build`)")
    shared = f"{cfg.share.rstrip('/')}/{path.name}" if cfg.share and cfg.path is None else None
    start = time.monotonic()
    if shared and storage.exists(f"{shared}/{_PUBLISHED}"):
        log(f"[data] fetching {cfg.task} dataset {shared} into {path}")
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        storage.download_dir(shared, tmp)
        _move_into_place(tmp, path)
        log(f"[data] fetched {path} in {time.monotonic() - start:.1f}s")
        return path
    log(f"[data] building {cfg.task} dataset into {path}")
    build_dataset(cfg, path, overwrite=False, log=log)
    log(f"[data] built {path} in {time.monotonic() - start:.1f}s")
    if shared:
        # The marker goes last: a reader that sees it sees every file (same bytes from any builder).
        storage.upload_dir(path, shared)
        storage.write_bytes(f"{shared}/{_PUBLISHED}", json.dumps(builder_options(cfg), sort_keys=True).encode())
        log(f"[data] published {path.name} to {cfg.share}")
    return path
