"""Arrow storage for datasets: one IPC file per split, metadata in the schema.

A split is a set of equally long columns. 2-D numpy arrays become fixed-size-list
columns (one row per example), 1-D arrays plain columns. Files are written to a
temporary name and renamed, so a reader never sees half a dataset, and they are
read back memory-mapped so a 1M-row training set costs no resident memory until
touched. The metadata (vocab, seq_len, counts, seed, builder config) is stored as
sorted JSON under one schema key: the same build gives byte-identical files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from hrm.storage import atomic_path

META_KEY = b"hrm"
SPLITS = ("train", "test")
_MAX_VALUES = 2**31 - 1


class ChunkedRows:
    """Rows of a 2-D column stored in several record batches, read without
    concatenating them (each chunk stays a zero-copy view of the memory map)."""

    def __init__(self, chunks: list[np.ndarray]):
        self.chunks = chunks
        self.starts = np.cumsum([0] + [len(c) for c in chunks])
        self.shape = (int(self.starts[-1]), chunks[0].shape[1])
        self.dtype = chunks[0].dtype
        self.ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    def max(self) -> int:
        return max(int(c.max()) for c in self.chunks if len(c))

    def min(self) -> int:
        return min(int(c.min()) for c in self.chunks if len(c))

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            i = int(index) % len(self)
            c = int(np.searchsorted(self.starts, i, side="right")) - 1
            return self.chunks[c][i - self.starts[c]]
        if isinstance(index, slice):
            index = np.arange(len(self))[index]
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        index = index % len(self)
        out = np.empty((len(index), self.shape[1]), dtype=self.dtype)
        chunk_of = np.searchsorted(self.starts, index, side="right") - 1
        for c in np.unique(chunk_of):
            sel = chunk_of == c
            out[sel] = self.chunks[c][index[sel] - self.starts[c]]
        return out



def split_path(root: str | os.PathLike, split: str) -> Path:
    return Path(root) / f"{split}.arrow"


def write_split(path: str | os.PathLike, columns: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    path = Path(path)
    lengths = {name: len(arr) for name, arr in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"columns of {path.name} differ in length: {lengths}")
    arrays, names = [], []
    for name, arr in columns.items():
        arr = np.ascontiguousarray(arr)
        if arr.ndim == 2:
            flat = pa.array(arr.reshape(-1))
            arrays.append(pa.FixedSizeListArray.from_arrays(flat, arr.shape[1]))
        elif arr.ndim == 1:
            arrays.append(pa.array(arr))
        else:
            raise ValueError(f"column {name!r} has {arr.ndim} dims; only 1-D and 2-D arrays are stored")
        names.append(name)
    table = pa.Table.from_arrays(arrays, names=names)
    table = table.replace_schema_metadata({META_KEY: json.dumps(meta, sort_keys=True).encode()})
    widths = [arr.shape[1] for arr in columns.values() if arr.ndim == 2] or [1]
    # Arrow IPC caps one array at 2^31 - 1 values: split big splits into batches.
    rows_per_batch = max(1, _MAX_VALUES // max(widths))
    with atomic_path(path) as tmp, pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=rows_per_batch)


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    with pa.memory_map(str(path), "r") as source:
        schema = pa.ipc.open_file(source).schema
    raw = (schema.metadata or {}).get(META_KEY)
    if raw is None:
        raise ValueError(f"{path} is not an hrm dataset file (no '{META_KEY.decode()}' schema metadata)")
    return json.loads(raw)


def read_split(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Columns as numpy arrays (zero-copy views of the memory map where possible)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"dataset split not found: {path}")
    source = pa.memory_map(str(path), "r")
    table = pa.ipc.open_file(source).read_all()
    meta = json.loads(table.schema.metadata[META_KEY])
    columns: dict[str, np.ndarray] = {}
    for name in table.column_names:
        chunked = table.column(name)
        if pa.types.is_fixed_size_list(chunked.type):
            width = chunked.type.list_size
            views = [c.flatten().to_numpy(zero_copy_only=False).reshape(-1, width) for c in chunked.chunks]
            if not views:  # a split with no rows has no record batch
                views = [np.zeros((0, width), dtype=chunked.type.value_type.to_pandas_dtype())]
            columns[name] = views[0] if len(views) == 1 else ChunkedRows(views)
        else:
            columns[name] = chunked.to_numpy()
    return columns, meta
