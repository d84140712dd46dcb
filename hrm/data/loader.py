"""Reading datasets for training and evaluation.

Training draws examples one at a time into the ACT slots that have halted, so the
loader is a resumable *stream* rather than a batch iterator: each epoch shuffles
the puzzle groups and takes one random member (augmented variant) of each. The
epoch's order is a pure function of (seed, epoch), so the stream's whole state is
two integers and resuming is exact. Data-parallel ranks take interleaved
positions of the same order, so they never see the same example in an epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hrm.config import ConfigError
from hrm.data import arrow


@dataclass
class Split:
    columns: dict[str, np.ndarray]
    meta: dict[str, Any]

    @classmethod
    def load(cls, root: str | Path, split: str) -> "Split":
        """A split of a dataset folder; ConfigError (one line naming the file) if it is
        missing or not a dataset split hrm wrote (columns, metadata, rows)."""
        path = arrow.split_path(root, split)
        if not path.is_file():
            raise ConfigError(f"dataset {root}: no {path.name} (not a dataset folder; build one with `hrm data build`)")
        try:
            columns, meta = arrow.read_split(path)
        except (OSError, ValueError, KeyError, TypeError) as exc:  # pyarrow's errors are OSError/ValueError
            raise ConfigError(f"dataset {root}: {path.name} is not a dataset split hrm wrote ({exc})") from None
        missing = [c for c in ("inputs", "labels", "puzzle_id", "group_id") if c not in columns]
        missing += [k for k in ("task", "vocab_size", "seq_len") if k not in meta]
        if missing:
            raise ConfigError(f"dataset {root}: {path.name} lacks {', '.join(missing)}")
        if not len(columns["inputs"]):
            raise ConfigError(f"dataset {root}: {path.name} has no rows")
        if columns["inputs"].shape[1] != meta["seq_len"] or columns["labels"].shape[1] != meta["seq_len"]:
            raise ConfigError(f"dataset {root}: {path.name} rows are not seq_len {meta['seq_len']} long")
        for name, top in (("inputs", meta["vocab_size"]), ("labels", meta["vocab_size"]),
                          ("puzzle_id", meta.get("num_puzzle_ids"))):
            col = columns[name]  # one pass over the memory map: a bad token would fail deep inside training
            if top is not None and (int(col.min()) < 0 or int(col.max()) >= top):
                raise ConfigError(f"dataset {root}: {path.name} column {name} holds values in "
                                  f"{int(col.min())}..{int(col.max())}, outside 0..{top - 1} "
                                  f"({'the vocabulary' if name != 'puzzle_id' else 'the puzzle ids'})")
        return cls(columns, meta)

    def __len__(self) -> int:
        return len(self.columns["inputs"])

    def rows(self, index: np.ndarray) -> dict[str, torch.Tensor]:
        """Model inputs for the given row indices, as int64 tensors."""
        return {
            "inputs": torch.from_numpy(self.columns["inputs"][index].astype(np.int64)),
            "labels": torch.from_numpy(self.columns["labels"][index].astype(np.int64)),
            "puzzle_ids": torch.from_numpy(self.columns["puzzle_id"][index].astype(np.int64)),
        }


class SampleStream:
    def __init__(self, split: Split, seed: int, rank: int = 0, world_size: int = 1):
        cols = split.columns
        group_id = cols["group_id"]
        if len(group_id) and np.any(np.diff(group_id) < 0):
            raise ValueError("dataset rows must be ordered by group_id")
        # A unit is one puzzle variant: its rows are all of its examples (ARC) or
        # a single row (Sudoku, Maze: no variant_id column).
        if "variant_id" in cols:
            vid = cols["variant_id"]
            self.unit_start = np.flatnonzero(np.r_[True, vid[1:] != vid[:-1]])
        else:
            self.unit_start = np.arange(len(group_id))
        self.unit_len = np.diff(np.r_[self.unit_start, len(group_id)])
        _, self.group_first, self.group_units = np.unique(
            group_id[self.unit_start], return_index=True, return_counts=True
        )
        self.split, self.seed, self.rank, self.world_size = split, seed, rank, world_size
        self.epoch, self.position = 0, 0
        self._order: np.ndarray | None = None

    @property
    def num_groups(self) -> int:
        return len(self.group_first)

    def _epoch_rows(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, epoch])
        groups = rng.permutation(self.num_groups)
        member = (rng.random(self.num_groups) * self.group_units[groups]).astype(np.int64)
        units = (self.group_first[groups] + member)[self.rank :: self.world_size]
        starts, lengths = self.unit_start[units], self.unit_len[units]
        # rows of each chosen unit, in order: start + 0..len-1
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        return np.repeat(starts, lengths) + offsets

    def take(self, k: int) -> dict[str, torch.Tensor]:
        out: list[np.ndarray] = []
        need = k
        while need > 0:
            if self._order is None:
                self._order = self._epoch_rows(self.epoch)
            chunk = self._order[self.position : self.position + need]
            out.append(chunk)
            need -= len(chunk)
            self.position += len(chunk)
            if self.position >= len(self._order):
                self.epoch, self.position, self._order = self.epoch + 1, 0, None
        index = np.concatenate(out) if out else np.zeros(0, dtype=np.int64)
        return self.split.rows(index)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position, self._order = int(state["epoch"]), int(state["position"]), None
