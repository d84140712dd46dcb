"""The Arrow/Parquet-indexed store of the best checkpoints of hyperparameter searches.

Layout under `root` (a local path, or any URI `pyarrow.fs.FileSystem.from_uri`
accepts: `file://`, `s3://`, `gs://`, ...):

    index/part-<utc timestamp>-<uuid4>.parquet      one immutable part per append
    checkpoints/<experiment>/<trial_id>/step_<N>/   the copied checkpoint folder

Design choices:
- All file I/O of the store goes through `pyarrow.fs`, so an object store works
  like a local disk; checkpoint folders are copied in with `pyarrow.fs.copy_files`.
- Appends never modify anything: every `add`, tombstone and compaction writes a
  new part with a unique name, so concurrent writers (threads, processes,
  machines) never conflict. A part is written under a temporary dot-name and
  moved into place locally; on object stores an upload only becomes visible when
  complete, so it is written in place. A writer dying mid-way leaves at most an
  orphan `.part-*.tmp` (ignored by every reader, swept by `compact`).
- The row is written after the folder is copied, so a row never points at a
  half-copied folder.
- `artifact_id` = first 16 hex chars of sha256("<experiment>\\0<trial_id>\\0<step>"):
  re-adding a checkpoint (a resumed search re-reporting it) gives the same id, and
  readers keep only the newest version of each id (largest `written_at`; on a
  tie a tombstone wins). `written_at` is strictly increasing within a process.
- Deleting appends a tombstone (the row again with `deleted=True` and a newer
  `written_at`), then deletes the folder. `compact` rewrites parts into one,
  dropping superseded rows and tombstones: new part first, then the old parts
  oldest first, so a reader in between sees duplicates (which it dedupes) but
  never a row without its tombstone.
- Columns: the fixed ones (`BASE_SCHEMA`), the full hyperparameter and metric
  dicts as JSON, and flattened typed columns `hp.<dotted name>` (bool, int64,
  float64, string; lists and other values as JSON strings) and `metric.<name>`
  (float64, numeric metrics only). Each part records the experiments it holds in
  its Parquet metadata (`hrm.experiments`), so reading one experiment opens only
  its parts. Parts with different columns are read through `pyarrow.dataset` with
  a unified schema (missing columns null; clashing types widened, else string).
- Ranking (best, prune): by the metric (`mode` max or min), ties broken by the
  later step, then trial_id; rows without the metric rank last.
- Prune: a row survives iff it is among the best `keep_per_trial` of its trial
  AND among the best `keep_per_experiment` of its experiment. It is idempotent
  and safe to run from several processes at once: a row is only deleted when at
  least K rows rank above it, and those rows are never deleted unless K others
  rank above them, so concurrent prunes with the same settings agree.

Reading the index directly: before compaction the parts hold every version of
every row, so keep, per `artifact_id`, the row with the largest `written_at` and
drop it if its `deleted` is true. After `compact()` the index holds exactly the
live rows:

    pyarrow.parquet.read_table(root + "/index")
    pandas.read_parquet(root + "/index")
    duckdb: SELECT * FROM read_parquet('<root>/index/*.parquet', union_by_name=true)

Known limit: `written_at` comes from the writer's clock, so re-adding the same
checkpoint from machines whose clocks disagree by more than the time between the
two writes may keep the older version.

This module imports neither torch (until `load_model`) nor Ray.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import hashlib
import json
import math
import os
import re
import subprocess
import tempfile
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from hrm.config import int_at_least

CHECKPOINT_FILE = "checkpoint.pt"  # same name as hrm.train.CHECKPOINT_FILE
_ID_CHARS = 16  # hex chars of sha256 kept in artifact_id (64 bits: collisions need ~4e9 ids)
_HASH_CHUNK = 1 << 20  # bytes read at a time when hashing a checkpoint (1 MiB)
_READ_RETRIES = 5  # re-list and re-read when a compaction deletes a part under a reader
_SCHEMA_THREADS = 8  # parallel footer reads (they are round trips on object stores)
_ORPHAN_AGE_S = 3600  # temp parts / unindexed folders older than this are swept by compact
_GIT_TIMEOUT_S = 5  # seconds allowed for `git describe`
_META_KEY = b"hrm.experiments"  # Parquet metadata key: JSON list of the part's experiments
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=@-]*$")  # experiment / trial_id (path-safe)
_TS = pa.timestamp("us", tz="UTC")
_LOCAL_TYPES = ("local",)  # filesystems where load_model reads the stored folder in place
_ATOMIC_PUT_TYPES = ("s3", "gcs")  # object stores: an upload becomes visible only once complete

BASE_SCHEMA = pa.schema(
    [
        ("artifact_id", pa.string()),
        ("experiment", pa.string()),
        ("trial_id", pa.string()),
        ("step", pa.int64()),
        ("eval_round", pa.int64()),
        ("path", pa.string()),
        ("bytes", pa.int64()),
        ("sha256", pa.string()),
        ("created_at", _TS),
        ("written_at", _TS),
        ("code_version", pa.string()),
        ("deleted", pa.bool_()),
        ("hparams_json", pa.string()),
        ("metrics_json", pa.string()),
    ]
)
HP, METRIC = "hp.", "metric."


class UnknownArtifact(ValueError, KeyError):
    """No (live, unique) artifact matches an id; a ValueError that is also a KeyError."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


# ---------------------------------------------------------------------------
# helpers


def flatten(d: dict, prefix: str = "") -> dict:
    """Nested dict -> {prefix + dotted key: leaf}; e.g. {"model": {"H_cycles": 2}} -> {"model.H_cycles": 2}."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        items = flatten(value, f"{name}.").items() if isinstance(value, dict) else [(name, value)]
        for k, v in items:
            if k in out:
                raise ValueError(f"key '{k}' appears twice after flattening (a dotted key and a nested one)")
            out[k] = v
    return out


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """`git describe --always --dirty` of the repository holding the hrm package, else hrm.__version__."""
    import hrm

    pkg = Path(hrm.__file__).resolve().parent
    try:
        # The package must be tracked there (an installed copy inside some other
        # repository, e.g. a venv in a checkout, must not report that repository).
        tracked = subprocess.run(
            ["git", "-C", str(pkg), "ls-files", "--error-unmatch", "__init__.py"],
            capture_output=True, text=True, timeout=_GIT_TIMEOUT_S,
        )
        if tracked.returncode == 0:
            out = subprocess.run(
                ["git", "-C", str(pkg), "describe", "--always", "--dirty"],
                capture_output=True, text=True, timeout=_GIT_TIMEOUT_S,
            )
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return hrm.__version__


_code_version = code_version  # `add` has a parameter of the same name


def artifact_id(experiment: str, trial_id: str, step: int) -> str:
    key = f"{experiment}\0{trial_id}\0{int(step)}".encode()
    return hashlib.sha256(key).hexdigest()[:_ID_CHARS]


_clock_lock = threading.Lock()
_last_now = [dt.datetime.min.replace(tzinfo=dt.timezone.utc)]


def _now() -> dt.datetime:
    """UTC now at microsecond resolution, strictly increasing within this process."""
    with _clock_lock:
        now = dt.datetime.now(dt.timezone.utc)
        if now <= _last_now[0]:
            now = _last_now[0] + dt.timedelta(microseconds=1)
        _last_now[0] = now
        return now


def _timestamp(value: Any) -> dt.datetime:
    if value is None:
        return _now()
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value, dt.timezone.utc)
    raise ValueError(f"created_at must be a datetime, unix seconds or None, got {type(value).__name__}")


def _check_name(kind: str, value: str) -> str:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ValueError(
            f"{kind} {value!r} is not allowed: use letters, digits and . _ + = @ - (not starting with . _ + = @ -)"
        )
    return value


def _hp_cell(value: Any) -> tuple[Any, pa.DataType]:
    """A hyperparameter leaf as a typed Arrow cell (non-scalars become JSON strings)."""
    if value is None:
        return None, pa.null()
    if isinstance(value, bool):
        return value, pa.bool_()
    if isinstance(value, int) and -(2**63) <= value < 2**63:
        return value, pa.int64()
    if isinstance(value, float):
        return value, pa.float64()
    if isinstance(value, str):
        return value, pa.string()
    return json.dumps(value, sort_keys=True, default=str), pa.string()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _ordered(table: pa.Table) -> pa.Table:
    """Fixed columns first, then hp.* and metric.* sorted, then anything else."""
    names = table.column_names
    base = [n for n in BASE_SCHEMA.names if n in names]
    hp = sorted(n for n in names if n.startswith(HP))
    metric = sorted(n for n in names if n.startswith(METRIC))
    rest = [n for n in names if n not in set(base) | set(hp) | set(metric)]
    return table.select(base + hp + metric + rest)


def _unify(schemas: list[pa.Schema]) -> pa.Schema:
    """One schema for all parts: missing columns become null, clashing types widen, else string."""
    schemas = [s.remove_metadata() for s in schemas] or [BASE_SCHEMA]
    try:
        return pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        types: dict[str, list[pa.DataType]] = {}
        for s in schemas:
            for f in s:
                types.setdefault(f.name, []).append(f.type)
        fields = []
        for name, ts in types.items():
            try:
                fields.append(pa.unify_schemas([pa.schema([(name, t)]) for t in ts], promote_options="permissive")[0])
            except (pa.ArrowTypeError, pa.ArrowInvalid):
                fields.append(pa.field(name, pa.string()))
        return pa.schema(fields)


def _latest(table: pa.Table) -> pa.Table:
    """Keep the newest version of each artifact_id (by written_at; a tombstone wins a tie)."""
    if table.num_rows == 0:
        return table
    order = pc.sort_indices(
        table, sort_keys=[("artifact_id", "ascending"), ("written_at", "ascending"), ("deleted", "ascending")]
    )
    table = table.take(order)
    ids = table["artifact_id"].to_pylist()
    keep = [ids[i] != ids[i + 1] for i in range(len(ids) - 1)] + [True]
    return table.filter(pa.array(keep))


def _own_columns(rows: pa.Table) -> pa.Table:
    """Drop hp.*/metric.* columns that none of the rows has (they come from other experiments' parts)."""
    own: set[str] = set()
    for hp_json, metrics_json in zip(rows["hparams_json"].to_pylist(), rows["metrics_json"].to_pylist()):
        own |= set(flatten(json.loads(hp_json), HP))
        own |= {METRIC + k for k, v in json.loads(metrics_json).items() if _is_number(v)}
    return rows.select([c for c in rows.column_names if not c.startswith((HP, METRIC)) or c in own])


def _rank(table: pa.Table, column: str, mode: str) -> list[int]:
    """Row indices best first: by column (max/min), then later step, then trial_id; missing values last."""
    values = table[column].to_pylist()
    steps = table["step"].to_pylist()
    trials = table["trial_id"].to_pylist()
    sign = -1.0 if mode == "max" else 1.0

    def key(i: int) -> tuple:
        v = values[i]
        missing = v is None or (isinstance(v, float) and math.isnan(v))
        return (missing, 0.0 if missing else sign * v, -steps[i], trials[i])

    return sorted(range(table.num_rows), key=key)


def _check_mode(mode: str) -> None:
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")


def _positive(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


# ---------------------------------------------------------------------------
# the store


class ArtifactStore:
    """Best checkpoints of searches, indexed by Parquet parts under `root` (see the module docstring)."""

    def __init__(self, root: str, *, filesystem: pafs.FileSystem | None = None):
        """`root`: local path or URI. `filesystem`: use this filesystem, `root` being a path inside it."""
        if not isinstance(root, str) or not root.strip():
            raise ValueError("artifact store root must be a non-empty path or URI (e.g. runs/artifacts, s3://bucket/x)")
        root = root.rstrip("/") or "/"
        if filesystem is not None:
            self._fs, self._base = filesystem, root.rstrip("/")
        elif "://" in root:
            try:
                self._fs, self._base = pafs.FileSystem.from_uri(root)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
                raise ValueError(f"cannot open artifact store root {root}: {exc}") from None
            self._base = self._base.rstrip("/")
        else:
            root = os.path.abspath(os.path.expanduser(root))
            self._fs, self._base = pafs.LocalFileSystem(), root.rstrip("/")
        self.root = root
        self._index = f"{self._base}/index"
        self._index_made = False  # create_dir once per instance (a request on object stores)

    def __repr__(self) -> str:
        return f"ArtifactStore({self.root!r})"

    # -- paths ---------------------------------------------------------------

    def _folder(self, experiment: str, trial_id: str, step: int) -> str:
        """Path of a stored checkpoint folder inside the store's filesystem."""
        return f"{self._base}/checkpoints/{experiment}/{trial_id}/step_{int(step):08d}"

    def _uri(self, fs_path: str) -> str:
        """What the `path` column shows: a local path, or root's URI scheme plus the path."""
        return self.root.rstrip("/") + fs_path[len(self._base):]

    @property
    def is_local(self) -> bool:
        return self._fs.type_name in _LOCAL_TYPES

    # -- reading -------------------------------------------------------------

    def _parts(self) -> list[str]:
        infos = self._fs.get_file_info(pafs.FileSelector(self._index, allow_not_found=True))
        names = [
            i.path for i in infos
            if i.type == pafs.FileType.File and i.base_name.startswith("part-") and i.base_name.endswith(".parquet")
        ]
        return sorted(names, key=lambda p: p.rsplit("/", 1)[-1])

    def _schemas(self, paths: list[str]) -> list[pa.Schema]:
        if len(paths) <= 1:
            return [pq.read_schema(p, filesystem=self._fs) for p in paths]
        with ThreadPoolExecutor(min(_SCHEMA_THREADS, len(paths))) as pool:
            return list(pool.map(lambda p: pq.read_schema(p, filesystem=self._fs), paths))

    def _read(self, experiment: str | None = None) -> tuple[pa.Table, list[str]]:
        """All row versions (of one experiment's parts, or all parts) and the parts read."""
        for attempt in range(_READ_RETRIES):
            try:
                paths = self._parts()
                schemas = self._schemas(paths)
                if experiment is not None:
                    held = [_experiments_of(s) for s in schemas]
                    keep = [i for i, e in enumerate(held) if e is None or experiment in e]
                    paths, schemas = [paths[i] for i in keep], [schemas[i] for i in keep]
                schema = _unify(schemas + [BASE_SCHEMA])
                if not paths:
                    return schema.empty_table(), []
                dataset = ds.dataset(paths, schema=schema, format="parquet", filesystem=self._fs)
                filt = (pc.field("experiment") == experiment) if experiment is not None else None
                return dataset.to_table(filter=filt), paths
            except FileNotFoundError:
                # A compaction removed a part between listing and reading: list again.
                if attempt == _READ_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def table(self, experiment: str | None = None, include_deleted: bool = False) -> pa.Table:
        """Live rows (newest version of each artifact), sorted by (experiment, trial_id, step)."""
        rows, _ = self._read(experiment)
        rows = _latest(rows)
        if not include_deleted:
            rows = rows.filter(pc.invert(pc.fill_null(rows["deleted"], False)))
        rows = rows.sort_by([("experiment", "ascending"), ("trial_id", "ascending"), ("step", "ascending")])
        return _ordered(_own_columns(rows) if experiment is not None else rows)

    def experiments(self) -> list[str]:
        return sorted(set(self.table()["experiment"].to_pylist()))

    def _live(self, experiment: str) -> pa.Table:
        rows = self.table(experiment)
        if rows.num_rows == 0:
            known = ", ".join(self.experiments()) or "none"
            raise ValueError(f"no artifacts for experiment '{experiment}' in {self.root} (known experiments: {known})")
        return rows

    def _metric_column(self, rows: pa.Table, metric: str, experiment: str) -> str:
        column = metric if metric.startswith(METRIC) else METRIC + metric
        if column not in rows.column_names or rows[column].null_count == rows.num_rows:
            known = [n[len(METRIC):] for n in _metric_columns(rows)]
            raise ValueError(
                f"unknown metric '{metric}' for experiment '{experiment}' (known metrics: {', '.join(known) or 'none'})"
            )
        return column

    def best(self, experiment: str, metric: str, k: int = 1, mode: str = "max") -> pa.Table:
        """The top-k live rows of `experiment` by `metric` (ties: later step first)."""
        _check_mode(mode)
        _positive("k", k)
        rows = self._live(experiment)
        column = self._metric_column(rows, metric, experiment)
        return rows.take(pa.array(_rank(rows, column, mode)[:k], type=pa.int64()))

    def get(self, artifact_id: str) -> dict:
        """One live row as a dict; `artifact_id` may be a unique prefix."""
        if not isinstance(artifact_id, str) or not artifact_id:
            raise UnknownArtifact("artifact id must be a non-empty string (a full id or a unique prefix)")
        rows = self.table(include_deleted=True)
        rows = rows.filter(pc.starts_with(rows["artifact_id"], artifact_id))
        if rows.num_rows == 0:
            raise UnknownArtifact(
                f"unknown artifact id '{artifact_id}' in {self.root} (`hrm artifacts list` shows the ids)"
            )
        if rows.num_rows > 1:
            ids = rows["artifact_id"].to_pylist()
            raise UnknownArtifact(f"artifact id prefix '{artifact_id}' is ambiguous: it matches {', '.join(ids[:5])}"
                                  + (f" and {len(ids) - 5} more" if len(ids) > 5 else ""))
        row = rows.to_pylist()[0]
        if row["deleted"]:
            raise UnknownArtifact(f"artifact {row['artifact_id']} was deleted at {row['written_at'].isoformat()}")
        # Drop the flattened columns that belong to other experiments' parts.
        own = set(flatten(json.loads(row["hparams_json"]), HP))
        own |= {METRIC + k for k, v in json.loads(row["metrics_json"]).items() if _is_number(v)}
        return {k: v for k, v in row.items() if not (k.startswith((HP, METRIC)) and v is None and k not in own)}

    # -- writing -------------------------------------------------------------

    def _write_part(self, rows: pa.Table) -> str:
        """Write one immutable part atomically; returns its path."""
        experiments = sorted(set(rows["experiment"].to_pylist()))
        rows = rows.replace_schema_metadata({_META_KEY: json.dumps(experiments).encode()})
        stamp = _now().strftime("%Y%m%dT%H%M%S.%fZ")
        name = f"part-{stamp}-{uuid.uuid4().hex}.parquet"
        final = f"{self._index}/{name}"
        if not self._index_made:
            self._fs.create_dir(self._index, recursive=True)
            self._index_made = True
        if self._fs.type_name in _ATOMIC_PUT_TYPES:
            # Written in place: a reader never sees a torn part, and a rename would be a copy.
            pq.write_table(rows, final, filesystem=self._fs)
        else:
            tmp = f"{self._index}/.{name}.tmp"
            try:
                pq.write_table(rows, tmp, filesystem=self._fs)
                self._fs.move(tmp, final)
            except BaseException:
                _delete_file(self._fs, tmp)
                raise
        return final

    def _hash(self, fs: pafs.FileSystem, file: str) -> str:
        h = hashlib.sha256()
        with fs.open_input_stream(file) as f:
            while chunk := f.read(_HASH_CHUNK):
                h.update(chunk)
        return h.hexdigest()

    def add(
        self,
        *,
        experiment: str,
        trial_id: str,
        step: int,
        eval_round: int,
        hparams: dict,
        metrics: dict,
        checkpoint_dir: str,
        code_version: str | None = None,
        created_at: Any = None,
    ) -> str:
        """Copy `checkpoint_dir` in and append its row; returns the artifact_id (same id when re-added)."""
        _check_name("experiment", experiment)
        _check_name("trial_id", trial_id)
        for name, value in (("step", step), ("eval_round", eval_round)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if not isinstance(hparams, dict) or not isinstance(metrics, dict):
            raise ValueError("hparams and metrics must be dicts")
        src = str(checkpoint_dir)
        if "://" in src:
            src_fs, src_path = pafs.FileSystem.from_uri(src)
        else:
            src_fs, src_path = pafs.LocalFileSystem(), os.path.abspath(src)
        if src_fs.get_file_info(f"{src_path}/{CHECKPOINT_FILE}").type != pafs.FileType.File:
            raise FileNotFoundError(f"checkpoint_dir {checkpoint_dir} has no {CHECKPOINT_FILE}")
        files = src_fs.get_file_info(pafs.FileSelector(src_path, recursive=True))
        size = sum(i.size for i in files if i.type == pafs.FileType.File)
        digest = self._hash(src_fs, f"{src_path}/{CHECKPOINT_FILE}")

        aid = artifact_id(experiment, trial_id, step)
        folder = self._folder(experiment, trial_id, step)
        stored = f"{folder}/{CHECKPOINT_FILE}"
        # A re-add of an identical checkpoint (resumed search) skips the copy.
        if self._fs.get_file_info(stored).type != pafs.FileType.File or self._hash(self._fs, stored) != digest:
            self._fs.create_dir(folder, recursive=True)  # copy_files does not create it
            pafs.copy_files(src_path, folder, source_filesystem=src_fs, destination_filesystem=self._fs)

        flat_hp = flatten(hparams, HP)
        columns: dict[str, pa.Array] = {
            "artifact_id": pa.array([aid], pa.string()),
            "experiment": pa.array([experiment], pa.string()),
            "trial_id": pa.array([trial_id], pa.string()),
            "step": pa.array([step], pa.int64()),
            "eval_round": pa.array([eval_round], pa.int64()),
            "path": pa.array([self._uri(folder)], pa.string()),
            "bytes": pa.array([size], pa.int64()),
            "sha256": pa.array([digest], pa.string()),
            "created_at": pa.array([_timestamp(created_at)], _TS),
            "written_at": pa.array([_now()], _TS),
            "code_version": pa.array([code_version if code_version is not None else _code_version()], pa.string()),
            "deleted": pa.array([False], pa.bool_()),
            "hparams_json": pa.array([json.dumps(hparams, sort_keys=True, default=str)], pa.string()),
            "metrics_json": pa.array([json.dumps(metrics, sort_keys=True, default=str)], pa.string()),
        }
        for name, value in flat_hp.items():
            cell, typ = _hp_cell(value)
            columns[name] = pa.array([cell], typ)
        for name, value in metrics.items():
            if _is_number(value):
                columns[f"{METRIC}{name}"] = pa.array([float(value)], pa.float64())
        self._write_part(_ordered(pa.table(columns)))
        return aid

    def _delete(self, rows: pa.Table) -> list[str]:
        """Tombstone `rows`, then delete their folders; returns their ids."""
        if rows.num_rows == 0:
            return []
        n = rows.num_rows
        stamp = _now()
        rows = rows.set_column(rows.schema.get_field_index("deleted"), "deleted", pa.array([True] * n))
        rows = rows.set_column(rows.schema.get_field_index("written_at"), "written_at", pa.array([stamp] * n, _TS))
        self._write_part(rows)
        for exp, trial, step in zip(*(rows[c].to_pylist() for c in ("experiment", "trial_id", "step"))):
            _delete_dir(self._fs, self._folder(exp, trial, step))
        return sorted(rows["artifact_id"].to_pylist())

    def prune(
        self, experiment: str, metric: str, mode: str = "max", keep_per_trial: int = 2, keep_per_experiment: int = 5
    ) -> list[str]:
        """Delete rows not among their trial's best keep_per_trial or the experiment's best keep_per_experiment."""
        _check_mode(mode)
        _positive("keep_per_trial", keep_per_trial)
        _positive("keep_per_experiment", keep_per_experiment)
        rows = self.table(experiment)
        if rows.num_rows == 0:
            return []
        column = self._metric_column(rows, metric, experiment)
        order = _rank(rows, column, mode)
        trials = rows["trial_id"].to_pylist()
        seen: dict[str, int] = {}
        survivors = set()
        for place, i in enumerate(order):
            seen[trials[i]] = seen.get(trials[i], 0) + 1
            if place < keep_per_experiment and seen[trials[i]] <= keep_per_trial:
                survivors.add(i)
        doomed = [i for i in range(rows.num_rows) if i not in survivors]
        return self._delete(rows.take(pa.array(doomed, type=pa.int64())))

    # -- checkpoints ---------------------------------------------------------

    def _stored_file(self, row: dict) -> str:
        return f"{self._folder(row['experiment'], row['trial_id'], row['step'])}/{CHECKPOINT_FILE}"

    def verify(self, artifact_id: str) -> bool:
        """True iff the stored checkpoint.pt exists and matches the row's sha256."""
        row = self.get(artifact_id)
        file = self._stored_file(row)
        if self._fs.get_file_info(file).type != pafs.FileType.File:
            return False
        return self._hash(self._fs, file) == row["sha256"]

    def export(self, artifact_id: str, dest: str) -> str:
        """Copy the checkpoint folder to the local folder `dest` (new or empty), verify sha256; returns dest."""
        row = self.get(artifact_id)
        target = Path(dest).expanduser().absolute()
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise ValueError(f"export destination {dest} exists and is not an empty folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        folder = self._folder(row["experiment"], row["trial_id"], row["step"])
        if self._fs.get_file_info(f"{folder}/{CHECKPOINT_FILE}").type != pafs.FileType.File:
            raise FileNotFoundError(f"artifact {row['artifact_id']}: stored checkpoint {self._uri(folder)} is missing")
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            pafs.copy_files(folder, str(tmp), source_filesystem=self._fs, destination_filesystem=pafs.LocalFileSystem())
            got = self._hash(pafs.LocalFileSystem(), str(tmp / CHECKPOINT_FILE))
            if got != row["sha256"]:
                raise ValueError(
                    f"artifact {row['artifact_id']}: checksum mismatch (stored {CHECKPOINT_FILE} has sha256 "
                    f"{got[:12]}..., index says {row['sha256'][:12]}...)"
                )
            os.replace(tmp, target)  # replaces an empty folder too
        finally:
            if tmp.exists():
                _delete_dir(pafs.LocalFileSystem(), str(tmp))
        return str(target)

    def load_model(self, artifact_id: str, device: str = "cpu"):
        """(model, cfg, row): the checkpoint (sha256-checked) loaded by hrm.train.load_model."""
        from hrm.train import load_model

        row = self.get(artifact_id)
        if self.is_local:
            if not self.verify(row["artifact_id"]):
                raise ValueError(
                    f"artifact {row['artifact_id']}: stored checkpoint is missing or fails its sha256 check"
                )
            model, cfg, _ = load_model(self._folder(row["experiment"], row["trial_id"], row["step"]), device)
            return model, cfg, row
        with tempfile.TemporaryDirectory(prefix="hrm-artifact-") as tmp:
            path = self.export(row["artifact_id"], os.path.join(tmp, "checkpoint"))
            model, cfg, _ = load_model(path, device)
        return model, cfg, row

    # -- maintenance ---------------------------------------------------------

    def compact(self, experiment: str | None = None) -> None:
        """Rewrite the parts (holding `experiment`, or all) into one, without superseded or deleted rows."""
        for attempt in range(_READ_RETRIES):
            try:
                rows, parts = self._read_parts_holding(experiment)
                break
            except FileNotFoundError:
                if attempt == _READ_RETRIES - 1:
                    raise
        latest = _latest(rows)
        deleted = pc.fill_null(latest["deleted"], False)
        if experiment is None:
            dead = deleted
        else:
            # Only this experiment's rows are all in `parts`; others keep their tombstones.
            dead = pc.and_(deleted, pc.equal(latest["experiment"], experiment))
        keep = latest.filter(pc.invert(dead))
        gone = latest.filter(dead)
        if len(parts) > 1 or keep.num_rows != rows.num_rows:
            if keep.num_rows:
                self._write_part(_ordered(keep))
            for part in parts:  # oldest first: see the module docstring
                _delete_file(self._fs, part)
        # Folders of deleted rows whose deletion was interrupted.
        for exp, trial, step in zip(*(gone[c].to_pylist() for c in ("experiment", "trial_id", "step"))):
            _delete_dir(self._fs, self._folder(exp, trial, step))
        self._sweep(experiment)

    def _read_parts_holding(self, experiment: str | None) -> tuple[pa.Table, list[str]]:
        """Every row version of every part that holds `experiment` (all parts for None), no filter."""
        paths = self._parts()
        schemas = self._schemas(paths)
        if experiment is not None:
            keep = [i for i, s in enumerate(schemas) if (e := _experiments_of(s)) is None or experiment in e]
            paths, schemas = [paths[i] for i in keep], [schemas[i] for i in keep]
        schema = _unify(schemas + [BASE_SCHEMA])
        if not paths:
            return schema.empty_table(), []
        return ds.dataset(paths, schema=schema, format="parquet", filesystem=self._fs).to_table(), paths

    def _sweep(self, experiment: str | None) -> None:
        """Delete orphan temp parts and unindexed checkpoint folders older than _ORPHAN_AGE_S."""
        cutoff = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=_ORPHAN_AGE_S)

        def old(info: pafs.FileInfo) -> bool:
            mtime = info.mtime
            if mtime is None:
                return False
            mtime = mtime if mtime.tzinfo else mtime.replace(tzinfo=dt.timezone.utc)
            return mtime < cutoff

        for info in self._fs.get_file_info(pafs.FileSelector(self._index, allow_not_found=True)):
            if info.base_name.startswith(".") and info.base_name.endswith(".tmp") and old(info):
                _delete_file(self._fs, info.path)
        top = f"{self._base}/checkpoints" + (f"/{experiment}" if experiment is not None else "")
        rows = self.table(experiment, include_deleted=True)
        indexed = {
            self._folder(e, t, s)
            for e, t, s in zip(*(rows[c].to_pylist() for c in ("experiment", "trial_id", "step")))
        }
        newest: dict[str, bool] = {}  # step folder -> every file in it is old
        for info in self._fs.get_file_info(pafs.FileSelector(top, recursive=True, allow_not_found=True)):
            if info.type != pafs.FileType.File:
                continue
            prefix = f"{self._base}/checkpoints/"
            rel = info.path[len(prefix):].split("/")  # experiment, trial, step_N, file...
            if len(rel) < 4 or not rel[2].startswith("step_"):
                continue
            folder = prefix + "/".join(rel[:3])
            newest[folder] = newest.get(folder, True) and old(info)
        for folder, stale in newest.items():
            if stale and folder not in indexed:
                _delete_dir(self._fs, folder)


def _experiments_of(schema: pa.Schema) -> list[str] | None:
    meta = schema.metadata or {}
    return json.loads(meta[_META_KEY]) if _META_KEY in meta else None


def _delete_file(fs: pafs.FileSystem, path: str) -> None:
    try:
        fs.delete_file(path)
    except FileNotFoundError:
        pass  # already gone (another process was faster)


def _delete_dir(fs: pafs.FileSystem, path: str) -> None:
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return
    try:
        fs.delete_dir(path)
    except FileNotFoundError:
        pass  # deleted concurrently


# ---------------------------------------------------------------------------
# CLI: `hrm artifacts ...`

_DEFAULT_ROOT = "runs/artifacts"  # used when neither --root nor HRM_ARTIFACTS is given


def _store(args: argparse.Namespace, must_exist: bool = True) -> ArtifactStore:
    root = args.root or os.environ.get("HRM_ARTIFACTS") or _DEFAULT_ROOT
    store = ArtifactStore(root)
    if must_exist and store._fs.get_file_info(store._index).type == pafs.FileType.NotFound:
        raise ValueError(f"no artifact store at {store.root} (set --root or HRM_ARTIFACTS)")
    return store


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dt.datetime):
        return value.isoformat(timespec="seconds")
    return str(value)


def _format(rows: pa.Table, columns: list[str]) -> str:
    """An aligned text table; metric.* headers without their prefix."""
    header = [c[len(METRIC):] if c.startswith(METRIC) else c for c in columns]
    body = [[_cell(v) for v in values] for values in zip(*(rows[c].to_pylist() for c in columns))] if columns else []
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in body]
    return "\n".join(line.rstrip() for line in lines)


def _metric_columns(rows: pa.Table) -> list[str]:
    return [c for c in rows.column_names if c.startswith(METRIC) and rows[c].null_count < rows.num_rows]


def _json_rows(rows: pa.Table) -> str:
    def plain(v: Any) -> Any:
        return v.isoformat() if isinstance(v, dt.datetime) else v

    return json.dumps([{k: plain(v) for k, v in r.items()} for r in rows.to_pylist()])


def _cmd_list(args: argparse.Namespace) -> int:
    store = _store(args)
    rows = store.table(args.experiment, include_deleted=args.all)
    if args.experiment is not None and rows.num_rows == 0:
        known = ", ".join(store.experiments()) or "none"
        raise ValueError(
            f"no artifacts for experiment '{args.experiment}' in {store.root} (known experiments: {known})"
        )
    columns = ["artifact_id", "experiment", "trial_id", "step"] + (["deleted"] if args.all else [])
    print(_format(rows, columns + _metric_columns(rows)))
    return 0


def _cmd_best(args: argparse.Namespace) -> int:
    rows = _store(args).best(args.experiment, args.metric, k=args.k, mode=args.mode)
    if args.json:
        print(_json_rows(rows))
    else:
        metric = args.metric if args.metric.startswith(METRIC) else METRIC + args.metric
        others = [c for c in _metric_columns(rows) if c != metric]
        print(_format(rows, ["artifact_id", "trial_id", "step", metric] + others + ["path"]))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    store = _store(args)
    row = store.get(args.id)
    path = store.export(row["artifact_id"], args.dir)
    print(json.dumps({"artifact_id": row["artifact_id"], "path": path}))
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    store = _store(args)
    row = store.get(args.id)
    ok = store.verify(row["artifact_id"])
    print(json.dumps({"artifact_id": row["artifact_id"], "ok": ok, "path": row["path"]}))
    return 0 if ok else 1


def _cmd_compact(args: argparse.Namespace) -> int:
    store = _store(args)
    before = len(store._parts())
    store.compact(args.experiment)
    print(json.dumps({"root": store.root, "parts_before": before, "parts_after": len(store._parts())}))
    return 0


def add_cli(subparsers) -> None:
    """Register `artifacts` (list, best, export, verify, compact) on an argparse subparsers object."""
    root_help = f"store root: path or URI (default: $HRM_ARTIFACTS or {_DEFAULT_ROOT})"
    sub = subparsers.add_parser("artifacts", help="query the checkpoint store").add_subparsers(
        dest="artifacts_command", required=True
    )

    p = sub.add_parser("list", help="live artifacts as a table")
    p.add_argument("--root", help=root_help)
    p.add_argument("--experiment")
    p.add_argument("--all", action="store_true", help="include deleted (pruned) rows")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("best", help="the top-k artifacts of an experiment by a metric")
    p.add_argument("--root", help=root_help)
    p.add_argument("--experiment", required=True)
    p.add_argument("--metric", required=True, help="e.g. pass@2, exact_accuracy")
    p.add_argument("-k", type=int_at_least(1), default=1)
    p.add_argument("--mode", choices=["max", "min"], default="max")
    p.add_argument("--json", action="store_true", help="full rows as JSON")
    p.set_defaults(func=_cmd_best)

    p = sub.add_parser("export", help="copy a checkpoint folder out (sha256-checked)")
    p.add_argument("id", help="artifact id or a unique prefix")
    p.add_argument("dir", help="new or empty local folder")
    p.add_argument("--root", help=root_help)
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("verify", help="check a stored checkpoint against its sha256 (exit 1 if it fails)")
    p.add_argument("id", help="artifact id or a unique prefix")
    p.add_argument("--root", help=root_help)
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser("compact", help="rewrite the index into one part of live rows")
    p.add_argument("--root", help=root_help)
    p.add_argument("--experiment", help="only the parts holding this experiment")
    p.set_defaults(func=_cmd_compact)
