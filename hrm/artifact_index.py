"""The artifact index of one experiment as a Delta Lake table (`deltalake`, delta-rs), so the
tools people already use read it with one path while the search driver writes it:

    duckdb:   SELECT * FROM delta_scan('<root>/index/<experiment>')
    polars:   polars.read_delta('<root>/index/<experiment>')
    pandas:   deltalake.DeltaTable('<root>/index/<experiment>').to_pandas()

Delta's log is the index's versioning: a reader reads one committed version whole (never a
mix of two), and the files of superseded versions are deleted by Delta's own vacuum only
after `RETENTION` (readers still on an old version keep it). One writer, the search driver:
every change commits the experiment's whole table as the next version (it holds the kept
checkpoints only, tens of rows); the log is checkpointed every `CHECKPOINT_EVERY` commits so
reads stay fast. On S3-compatible storage the driver is the table's only writer, so delta-rs
commits without a lock service (`AWS_S3_ALLOW_UNSAFE_RENAME`).

An index of the layout before this one (`<version>.parquet` files, newest = the index) is read
once and converted: its newest version becomes the table's first, its files are deleted.
"""

from __future__ import annotations

import os
import re

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from hrm.storage import is_uri

RETENTION = "interval 10 minutes"  # a superseded version's files outlive it this long (readers on it)
CHECKPOINT_EVERY = "10"  # commits between the log's checkpoints: a read replays at most this many
LOG_RETENTION = "interval 1 day"  # log entries older than this (and a checkpoint) are cleaned up
_OLD_VERSION = re.compile(r"\d{10}\.parquet")


def storage_options(uri: str) -> dict[str, str] | None:
    """delta-rs' options for `uri`: on S3, the endpoint and credentials of the environment (as
    pyarrow reads them) and the one-writer commit; elsewhere delta-rs' own defaults."""
    if not uri.startswith("s3://"):
        return None
    env = os.environ
    opts = {"AWS_S3_ALLOW_UNSAFE_RENAME": "true"}  # one writer per table: the driver
    for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        if env.get(key):
            opts[key] = env[key]
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        opts["AWS_REGION"] = region
    if opts.get("AWS_ENDPOINT_URL", "").startswith("http://"):
        opts["AWS_ALLOW_HTTP"] = "true"  # a local S3-compatible server
    return opts


class DeltaIndex:
    """One experiment's index table at `uri` (a local path or URI; `fs`/`path`: the same place
    for pyarrow, to list and convert the old layout)."""

    def __init__(self, uri: str, fs: pafs.FileSystem, path: str):
        self.uri, self.fs, self.path = uri, fs, path
        self.options = storage_options(uri)

    def exists(self) -> bool:
        return self.fs.get_file_info(f"{self.path}/_delta_log").type == pafs.FileType.Directory

    def read(self) -> pa.Table | None:
        """The current version, or None when there is no table (yet)."""
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        if not self.exists():
            return self._convert_old()
        try:
            return DeltaTable(self.uri, storage_options=self.options).to_pyarrow_table()
        except TableNotFoundError:  # the writer is creating it
            return None

    def write(self, rows: pa.Table) -> None:
        """Commit `rows` as the table's next version (columns may come and go), then let Delta
        delete what is older than its retention."""
        from deltalake import DeltaTable, write_deltalake

        config = {"delta.deletedFileRetentionDuration": RETENTION, "delta.checkpointInterval": CHECKPOINT_EVERY,
                  "delta.logRetentionDuration": LOG_RETENTION}
        write_deltalake(self.uri, rows, mode="overwrite", schema_mode="overwrite", storage_options=self.options,
                        configuration=config)
        table = DeltaTable(self.uri, storage_options=self.options)
        table.vacuum(dry_run=False)  # only files superseded more than RETENTION ago
        if table.version() % int(CHECKPOINT_EVERY) == 0:
            table.cleanup_metadata()

    def _convert_old(self) -> pa.Table | None:
        """The old layout's newest version as this table's first; its version files deleted."""
        infos = self.fs.get_file_info(pafs.FileSelector(self.path, allow_not_found=True))
        old = sorted((i for i in infos if i.type == pafs.FileType.File and _OLD_VERSION.fullmatch(i.base_name)),
                     key=lambda i: i.base_name)
        if not old:
            return None
        with self.fs.open_input_stream(old[-1].path) as f:
            rows = pq.read_table(pa.BufferReader(f.read()), use_threads=False)
        self.write(rows)
        for info in old:
            self.fs.delete_file(info.path)
        return rows


def table_uri(root: str, base: str, experiment: str) -> str:
    """The table's location as delta-rs takes it: a URI under a URI root, else a local path."""
    return f"{root.rstrip('/')}/index/{experiment}" if is_uri(root) else f"{base}/index/{experiment}"
