"""The store of the best checkpoints of hyperparameter searches, indexed by a Delta Lake table.

Layout under `root` (a local path, or any URI `pyarrow.fs.FileSystem.from_uri` takes):

    index/<experiment>/                             the experiment's index, a Delta Lake table
    checkpoints/<experiment>/<trial_id>/step_<N>/   the copied checkpoint folder

One writer per experiment: its search driver (ray_jobs' Tune callback) alone adds, prunes
and annotates its rows; Ray Train workers and trials never touch the store. So:
- Every change commits the experiment's whole table as the next version of its Delta table
  (`hrm.artifact_index`): a pruned row is simply not in the next one. Readers (`hrm
  artifacts`, duckdb's `delta_scan`, polars' `read_delta`, pandas through `deltalake`) read
  one committed version whole while the driver writes; Delta's vacuum deletes a
  superseded version's files only after a retention that outlasts any read.
- A folder is copied before its row is written, and a row dropped before its folder is
  deleted; a crash in between leaves an unindexed folder for `sweep`.
- `artifact_id` = sha256("<experiment>\\0<trial_id>\\0<step>")[:16]: a re-added checkpoint (a
  resumed search) replaces its row and is not copied again.
- Columns: `BASE_SCHEMA`, then `hp.<dotted name>` (bool, int64, float64, string; other values
  as JSON) and `metric.<name>` (float64). Experiments may differ in columns; reading several
  unifies them (missing: null; clashing types: string).
- Ranking: by the metric (max or min), then the later step, then trial_id; rows without the
  metric last. Prune keeps a row iff it is among its trial's best `keep_per_trial` and the
  experiment's best `keep_per_experiment`.

No torch, no Ray, nothing of the training loop is imported here.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from hrm.artifact_index import DeltaIndex, table_uri
from hrm.artifact_rows import BASE_SCHEMA, METRIC, check_counts, concat, make_row, metric_columns, ordered, rank
from hrm.checkpoint import (CHECKPOINT_FILE, MANIFEST_FILE, CheckpointError, content_digest, read_manifest, sha256_of,
                            verify_checkpoint)
from hrm.storage import open_uri as _open

_ID_CHARS = 16  # hex chars of sha256 kept in artifact_id (64 bits: collisions need ~4e9 ids)
_GRACE_S = 600  # a superseded index version outlives its successor this long (for readers still on it)
_READ_TRIES = 3  # a reader slower than _GRACE_S may find its version gone: list again
# Reads are single-threaded: a few rows gain nothing from pyarrow's pool (see hrm.cli.exit_now).
NAME_RULE = "letters, digits and . _ + = @ - (not starting with . _ + = @ -)"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=@-]*$")  # experiment / trial_id: one path segment

def artifact_id(experiment: str, trial_id: str, step: int) -> str:
    key = f"{experiment}\0{trial_id}\0{int(step)}".encode()
    return hashlib.sha256(key).hexdigest()[:_ID_CHARS]


def check_name(kind: str, value: str) -> str:
    """An experiment or trial name must be one safe path segment."""
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ValueError(f"{kind} {value!r} is not allowed: use {NAME_RULE}")
    return value


class ArtifactStore:
    """Best checkpoints of searches, indexed by one Delta Lake table per experiment (see the module docstring)."""

    def __init__(self, root: str):
        """`root`: a local path or URI."""
        if not isinstance(root, str) or not root.strip():
            raise ValueError("artifact store root must be a non-empty path or URI (e.g. runs/artifacts, s3://bucket/x)")
        root = root.rstrip("/") or "/"
        try:
            self._fs, self._base = _open(root)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
            raise ValueError(f"cannot open artifact store root {root}: {exc}") from None
        self.root = root if "://" in root else self._base
        self._base = self._base.rstrip("/")
        self._index = f"{self._base}/index"

    def exists(self) -> bool:
        return self._fs.get_file_info(self._index).type == pafs.FileType.Directory

    def _folder(self, experiment: str, trial_id: str, step: int) -> str:
        return f"{self._base}/checkpoints/{experiment}/{trial_id}/step_{int(step):08d}"

    def _uri(self, fs_path: str) -> str:
        """What the `path` column shows: a local path, or root's URI scheme plus the path."""
        return self.root.rstrip("/") + fs_path[len(self._base):]

    # -- reading -------------------------------------------------------------

    def _index_of(self, experiment: str) -> DeltaIndex:
        check_name("experiment", experiment)
        return DeltaIndex(table_uri(self.root, self._base, experiment), self._fs, f"{self._index}/{experiment}")

    def index_file(self, experiment: str) -> str | None:
        """The experiment's index table (a Delta Lake table: one path for duckdb, polars, pandas), or None."""
        index = self._index_of(experiment)
        return index.uri if index.exists() else None

    def _read(self, experiment: str) -> pa.Table:
        rows = self._index_of(experiment).read()
        return rows if rows is not None else BASE_SCHEMA.empty_table()

    def _list(self, folder: str) -> list[pafs.FileInfo]:
        """A folder's entries; none while it does not exist (yet): pyarrow's allow_not_found does
        not cover a folder the writer creates between its check and its listing."""
        try:
            return self._fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
        except FileNotFoundError:
            return []

    def experiments(self) -> list[str]:
        infos = self._list(self._index)
        dirs = [i.base_name for i in infos if i.type == pafs.FileType.Directory and _NAME_RE.match(i.base_name)]
        return sorted(e for e in dirs if self._read(e).num_rows or self._index_of(e).exists())

    def table(self, experiment: str | None = None) -> pa.Table:
        """Rows (of one experiment, or all), sorted by (experiment, trial_id, step)."""
        names = [experiment] if experiment is not None else self.experiments()
        rows = concat([self._read(e) for e in names])
        rows = rows.sort_by([("experiment", "ascending"), ("trial_id", "ascending"), ("step", "ascending")])
        return ordered(rows)

    def _metric_column(self, rows: pa.Table, metric: str, experiment: str) -> str:
        column = metric if metric.startswith(METRIC) else METRIC + metric
        if column not in rows.column_names or rows[column].null_count == rows.num_rows:
            known = [n[len(METRIC):] for n in metric_columns(rows)]
            known = ", ".join(known) or "none"
            raise ValueError(f"unknown metric '{metric}' for experiment '{experiment}' (known metrics: {known})")
        return column

    def best(self, experiment: str, metric: str, k: int = 1, mode: str = "max") -> pa.Table:
        """The top-k rows of `experiment` by `metric` (ties: later step first)."""
        check_counts(mode, k=k)
        rows = self.table(experiment)
        if rows.num_rows == 0:
            known = ", ".join(self.experiments()) or "none"
            raise ValueError(f"no artifacts for experiment '{experiment}' in {self.root} (known experiments: {known})")
        column = self._metric_column(rows, metric, experiment)
        return rows.take(pa.array(rank(rows, column, mode)[:k], type=pa.int64()))

    def get(self, artifact_id: str) -> dict:
        """One row as a dict (only its own experiment's columns); `artifact_id` may be a unique prefix."""
        if not isinstance(artifact_id, str) or not artifact_id:
            raise ValueError("artifact id must be a non-empty string (a full id or a unique prefix)")
        found = []
        for exp in self.experiments():
            rows = self._read(exp)
            found += [r for r in rows.to_pylist() if r["artifact_id"].startswith(artifact_id)]
        if not found:
            raise ValueError(f"unknown artifact id '{artifact_id}' in {self.root} (`hrm artifacts list` shows the ids)")
        if len(found) > 1:
            ids = [r["artifact_id"] for r in found]
            more = f" and {len(ids) - 5} more" if len(ids) > 5 else ""
            raise ValueError(f"artifact id prefix '{artifact_id}' is ambiguous: it matches {', '.join(ids[:5])}{more}")
        return found[0]

    # -- writing (the experiment's driver only) --------------------------------

    def _write(self, experiment: str, rows: pa.Table) -> None:
        """Commit the experiment's rows as its index's next version (hrm.artifact_index)."""
        self._index_of(experiment).write(rows)

    def add(
        self,
        *,
        experiment: str,
        trial_id: str,
        hparams: dict,
        checkpoint_dir: str,
        filesystem: pafs.FileSystem | None = None,
        step: int | None = None,
        eval_round: int | None = None,
        metrics: dict | None = None,
    ) -> str:
        """Copy `checkpoint_dir` in (once) and write its row; returns the artifact_id (same id when re-added).

        `checkpoint_dir`: a local path or URI, or a path on `filesystem`. Step,
        eval round, metrics and sha256 come from its manifest (`hrm.checkpoint`)
        unless given; a folder without a manifest needs the first three and is hashed."""
        check_name("experiment", experiment)
        check_name("trial_id", trial_id)
        src_fs, src = (filesystem, str(checkpoint_dir).rstrip("/")) if filesystem else _open(str(checkpoint_dir))
        has_manifest = src_fs.get_file_info(f"{src}/{MANIFEST_FILE}").type == pafs.FileType.File
        manifest = read_manifest(src, src_fs) if has_manifest else {}
        marker = MANIFEST_FILE if has_manifest else CHECKPOINT_FILE  # a seeds checkpoint has no top checkpoint.pt
        src_file = src_fs.get_file_info(f"{src}/{marker}")
        if src_file.type != pafs.FileType.File:
            raise FileNotFoundError(f"checkpoint_dir {checkpoint_dir} has no {CHECKPOINT_FILE}")
        step = manifest.get("step") if step is None else step
        eval_round = manifest.get("eval_round") if eval_round is None else eval_round
        metrics = manifest.get("metrics") if metrics is None else metrics
        for name, value in (("step", step), ("eval_round", eval_round)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if not isinstance(hparams, dict) or not isinstance(metrics, dict):
            raise ValueError("hparams and metrics must be dicts")
        files = src_fs.get_file_info(pafs.FileSelector(src, recursive=True))
        size = sum(i.size for i in files if i.type == pafs.FileType.File)
        digest = content_digest(manifest) if manifest else sha256_of(f"{src}/{CHECKPOINT_FILE}", src_fs)

        aid = artifact_id(experiment, trial_id, step)
        folder = self._folder(experiment, trial_id, step)
        rows = self._read(experiment)
        old = [r for r in rows.to_pylist() if r["artifact_id"] == aid]
        # sizes that a whole stored copy has: every file the manifest lists, else checkpoint.pt's
        sizes = {n: f.get("bytes") for n, f in manifest["files"].items()} if manifest else {marker: src_file.size}
        stored = self._fs.get_file_info([f"{folder}/{n}" for n in sizes])
        whole = all(i.type == pafs.FileType.File and i.size == size for i, size in zip(stored, sizes.values()))
        if not (old and old[0]["sha256"] == digest and whole):
            if self._fs.get_file_info(folder).type != pafs.FileType.NotFound:
                self._fs.delete_dir(folder)  # a partial copy from a crashed driver
            self._fs.create_dir(folder, recursive=True)  # copy_files does not create it
            pafs.copy_files(src, folder, source_filesystem=src_fs, destination_filesystem=self._fs)

        row = make_row(aid, experiment, trial_id, step, eval_round, self._uri(folder), size, digest, manifest, hparams,
                   metrics)
        others = rows.filter(pc.not_equal(rows["artifact_id"], aid)) if rows.num_rows else rows
        self._write(experiment, ordered(concat([others, row])))
        return aid

    def annotate(self, experiment: str, values: dict[str, dict[str, float | str]]) -> None:
        """Set columns of rows by artifact id ({artifact_id: {name: value}}), e.g. what
        evaluating a stored checkpoint again measured: a number goes to `metric.<name>`, a
        text (JSON) to `<name>`; other rows keep theirs (or null)."""
        rows = self._read(experiment)
        ids = rows["artifact_id"].to_pylist()
        names = {n: isinstance(x, str) for v in values.values() for n, x in v.items()}
        for name, text in sorted(names.items()):
            column = name if text else METRIC + name
            old = rows[column].to_pylist() if column in rows.column_names else [None] * len(ids)
            new = pa.array([values.get(i, {}).get(name, o) for i, o in zip(ids, old)],
                           pa.string() if text else pa.float64())
            rows = rows.set_column(rows.column_names.index(column), column, new) if column in rows.column_names \
                else rows.append_column(column, new)
        self._write(experiment, ordered(rows))

    def prune(
        self, experiment: str, metric: str, mode: str = "max", keep_per_trial: int = 2, keep_per_experiment: int = 5
    ) -> list[str]:
        """Drop rows not among their trial's best keep_per_trial or the experiment's best keep_per_experiment,
        then delete their folders; returns the dropped ids."""
        check_counts(mode, keep_per_trial=keep_per_trial, keep_per_experiment=keep_per_experiment)
        rows = self.table(experiment)
        if rows.num_rows == 0:
            return []
        order = rank(rows, self._metric_column(rows, metric, experiment), mode)
        trials = rows["trial_id"].to_pylist()
        seen: dict[str, int] = {}
        keep = []
        for place, i in enumerate(order):
            seen[trials[i]] = seen.get(trials[i], 0) + 1
            if place < keep_per_experiment and seen[trials[i]] <= keep_per_trial:
                keep.append(i)
        if len(keep) == rows.num_rows:
            return []
        gone = [r for i, r in enumerate(rows.to_pylist()) if i not in set(keep)]
        self._write(experiment, rows.take(pa.array(sorted(keep), type=pa.int64())))
        for r in gone:
            self._delete_dir(self._folder(experiment, r["trial_id"], r["step"]))
        return sorted(r["artifact_id"] for r in gone)

    def sweep(self, experiment: str) -> list[str]:
        """Delete the experiment's checkpoint folders that no row points at (left by a crash); returns them."""
        indexed = {self._folder(experiment, r["trial_id"], r["step"]) for r in self.table(experiment).to_pylist()}
        top = f"{self._base}/checkpoints/{check_name('experiment', experiment)}"
        found = self._fs.get_file_info(pafs.FileSelector(top, recursive=True, allow_not_found=True))
        orphans = sorted(i.path for i in found if i.type == pafs.FileType.Directory
                         and i.base_name.startswith("step_") and i.path not in indexed)
        for folder in orphans:
            self._delete_dir(folder)
        return [self._uri(f) for f in orphans]

    def _delete_dir(self, path: str) -> None:
        if self._fs.get_file_info(path).type != pafs.FileType.NotFound:
            self._fs.delete_dir(path)

    # -- checkpoints ---------------------------------------------------------

    def verify(self, artifact_id: str) -> bool:
        """True iff the stored folder passes its manifest's checks and checkpoint.pt has the row's sha256."""
        row = self.get(artifact_id)
        try:
            verify_checkpoint(self._folder(row["experiment"], row["trial_id"], row["step"]), self._fs, row["sha256"])
            return True
        except CheckpointError:
            return False

    def export(self, artifact_id: str, dest: str) -> str:
        """Copy the checkpoint folder to the local folder `dest` (new or empty), verify sha256; returns dest."""
        row = self.get(artifact_id)
        target = Path(dest).expanduser().absolute()
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise ValueError(f"export destination {dest} exists and is not an empty folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        folder = self._folder(row["experiment"], row["trial_id"], row["step"])
        names = [MANIFEST_FILE]
        with contextlib.suppress(CheckpointError):
            names += list(read_manifest(folder, self._fs)["files"])
        if any(i.type != pafs.FileType.File for i in self._fs.get_file_info([f"{folder}/{n}" for n in names])):
            raise FileNotFoundError(f"artifact {row['artifact_id']}: stored checkpoint {self._uri(folder)} is missing")
        local = pafs.LocalFileSystem()
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            pafs.copy_files(folder, str(tmp), source_filesystem=self._fs, destination_filesystem=local)
            try:
                verify_checkpoint(str(tmp), sha256=row["sha256"])
            except CheckpointError as exc:  # name the stored copy, not our temporary one
                raise CheckpointError(f"artifact {row['artifact_id']}: " + str(exc).replace(str(tmp), self._uri(folder)))

            os.replace(tmp, target)  # replaces an empty folder too
        finally:
            if tmp.exists():
                local.delete_dir(str(tmp))
        return str(target)

    @contextlib.contextmanager
    def local_copy(self, artifact_id: str) -> Iterator[tuple[str, dict]]:
        """(local folder, row) of a sha256-checked checkpoint: the stored folder itself on a local
        store, else an export into a temporary folder that is removed afterwards."""
        row = self.get(artifact_id)
        if self._fs.type_name == "local":
            if not self.verify(row["artifact_id"]):
                raise ValueError(f"artifact {row['artifact_id']}: stored checkpoint is missing or fails its sha256 check")
            yield self._folder(row["experiment"], row["trial_id"], row["step"]), row
            return
        with tempfile.TemporaryDirectory(prefix="hrm-artifact-") as tmp:
            yield self.export(row["artifact_id"], os.path.join(tmp, "checkpoint")), row
