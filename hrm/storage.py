"""Storage given as a path or a URI alike: a local or shared folder, or any object store
pyarrow reaches (s3://, gs://, hdfs://; `AWS_ENDPOINT_URL` points s3:// at another
S3-compatible server). The bottom of the library: nothing here imports another hrm module
but the error.

- `atomic_path` / `write_atomic`: the one way a local file or folder is written so that a
  reader (or a crash) never sees half of it: beside it, then renamed into place.
- `check_storage`: one line saying what is wrong with a storage, before any work starts.
- `Mirror`: a node-local folder kept copied to storage. Object stores cannot append, and
  TensorBoard and metrics.jsonl grow by appends, so a run writes them on its own node and
  the mirror uploads what changed; a run resumed on another node pulls them back first.
- `upload_dir` / `download_dir`: whole folders (the shared dataset cache).

pyarrow does the transfers; this module only decides which files move.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import pyarrow.fs as pafs

from hrm.errors import ConfigError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, folder: bool = False) -> Iterator[Path]:
    """A temporary path beside `path` for the caller to write (a file, or with `folder` a
    folder it creates); renamed onto `path` when the block ends, removed if it raises. A
    folder replaces an existing one (a rerun reaching the same step writes it again)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    _remove(tmp)
    try:
        yield tmp
        if folder and path.is_dir():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        _remove(tmp)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    """Write a whole local file atomically (`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_atomic(path, json.dumps(obj))


def is_uri(spec: str) -> bool:
    return "://" in str(spec)


def open_uri(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for a URI, or the local filesystem and an absolute path."""
    if is_uri(uri):
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(uri))


def _why(exc: BaseException) -> str:
    """The useful part of a pyarrow/AWS error, on one line."""
    text = " ".join(str(exc).split())
    aws = re.search(r"AWS Error (\w+) during (\w+) operation: ?([^(;]*)", text)
    if aws:
        code, op, detail = aws.groups()
        hint = {"ACCESS_DENIED": " (check the credentials: AWS_ACCESS_KEY_ID / AWS_PROFILE / the node's role)",
                "NETWORK_CONNECTION": " (is the endpoint right and reachable? AWS_ENDPOINT_URL)"}.get(code, "")
        return f"{code.lower().replace('_', ' ')} on {op}{': ' + detail.strip() if detail.strip() else ''}{hint}"
    return text[:300]


def check_storage(uri: str, what: str = "--storage") -> None:
    """Raise ConfigError (one line naming the storage) unless `uri` can be written: the bucket
    exists and a probe object can be written and deleted; a local folder (or its nearest
    existing parent) is a writable folder. Leaves nothing but the storage folder itself
    (on object storage)."""
    if not is_uri(uri):
        return check_folder(what, uri)
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
    except (ValueError, OSError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise ConfigError(f"{what} {uri}: not a folder or a storage URI pyarrow knows (s3://, gs://, hdfs://): "
                          f"{_why(exc)}") from None
    bucket = path.split("/")[0]
    probe = f"{path.rstrip('/')}/.hrm-write-check-{os.getpid()}"
    try:
        buckets = type(fs).__name__ in ("S3FileSystem", "GcsFileSystem")
        if buckets and fs.get_file_info(bucket).type == pafs.FileType.NotFound:
            raise ConfigError(f"{what} {uri}: bucket '{bucket}' does not exist (create it first)")
        fs.create_dir(path)  # as the search's first write will (an object store may allow one, not the other)
        with fs.open_output_stream(probe) as f:
            f.write(b"ok")
        fs.delete_file(probe)
    except OSError as exc:
        raise ConfigError(f"{what} {uri}: cannot write there: {_why(exc)}") from None


def check_folder(what: str, folder: str | os.PathLike) -> None:
    """Raise ConfigError (one line naming `what`) unless `folder` is, or can be created as, a
    folder this user writes: it is no file, and its nearest existing parent is a writable folder."""
    path = Path(folder).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} {folder}: is a file, not a folder")
    parent = next(p for p in (path, *path.parents) if p.exists())
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {folder}: {parent} is not a folder this user can write")


def exists(uri: str) -> bool:
    fs, path = open_uri(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def read_bytes(uri: str) -> bytes:
    """One whole file at a path or URI (OSError if there is none)."""
    fs, path = open_uri(uri)
    with fs.open_input_stream(path) as f:
        return f.read()


def write_bytes(uri: str, data: bytes) -> None:
    """One whole file at a path or URI (an object PUT is atomic; a local file is `write_atomic`)."""
    fs, path = open_uri(uri)
    if isinstance(fs, pafs.LocalFileSystem):
        return write_atomic(path, data)
    with fs.open_output_stream(path) as f:
        f.write(data)


def _put(local: str, fs: pafs.FileSystem, dest: str) -> None:
    """Copy one local file to `dest`; a reader never sees half of it (an object PUT is atomic;
    a local copy is written beside and renamed)."""
    if isinstance(fs, pafs.LocalFileSystem):
        with atomic_path(dest) as tmp:
            shutil.copyfile(local, tmp)
    else:
        pafs.copy_files(local, dest, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)


def _files(fs: pafs.FileSystem, base: str) -> dict[str, int]:
    """{path relative to base: size} of every file under `base` (none: empty)."""
    infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    return {i.path[len(base):].lstrip("/"): i.size for i in infos if i.type == pafs.FileType.File}


# What a trial's worker writes into the trial's folder (seed_<s>/: each seed's TensorBoard run)
RUN_FILES = ("hrm/", "events.out.tfevents.", "seed_")


class Mirror:
    """A node-local folder and its copy at `remote` (path or URI). `push` uploads the files
    that changed since the last push (size or mtime), `pull` downloads the remote files this
    folder lacks. Only paths starting with one of `only` move (others may share the remote
    folder: Tune's own files of a trial), and none under a `skip` folder (the run's own
    checkpoints: Ray Train persists those)."""

    def __init__(self, local: str | os.PathLike, remote: str, *, only: Iterable[str] = ("",),
                 skip: Iterable[str] = ()):
        self.local, self.remote = Path(local), remote.rstrip("/")
        self.only, self.skip = tuple(only), tuple(s.rstrip("/") + "/" for s in skip)
        self.fs, self.base = open_uri(self.remote)
        self.sent: dict[str, tuple[int, int]] = {}
        self.pushed_at = 0.0

    def _keep(self, rel: str) -> bool:
        return rel.startswith(self.only) and not rel.startswith(self.skip)

    def pull(self) -> int:
        n = 0
        for rel in filter(self._keep, _files(self.fs, self.base)):
            dest = self.local / rel
            if not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                pafs.copy_files(f"{self.base}/{rel}", str(dest), source_filesystem=self.fs,
                                destination_filesystem=pafs.LocalFileSystem())
                st = dest.stat()
                self.sent[rel] = (st.st_size, st.st_mtime_ns)
                n += 1
        return n

    def push(self) -> int:
        n = 0
        for folder, _dirs, names in os.walk(self.local):
            for name in names:
                path = Path(folder, name)
                rel = path.relative_to(self.local).as_posix()
                if not self._keep(rel) or ".tmp" in name:
                    continue
                st = path.stat()
                if self.sent.get(rel) != (st.st_size, st.st_mtime_ns):
                    _put(str(path), self.fs, f"{self.base}/{rel}")
                    self.sent[rel] = (st.st_size, st.st_mtime_ns)
                    n += 1
        self.pushed_at = time.monotonic()
        return n


def upload_dir(local: str | os.PathLike, remote: str) -> None:
    fs, base = open_uri(remote)
    for rel in _files(pafs.LocalFileSystem(), str(Path(local).resolve())):
        _put(str(Path(local, rel)), fs, f"{base.rstrip('/')}/{rel}")


def upload_file(local: str | os.PathLike, remote: str) -> None:
    """One local file to a path or URI, whole (a reader never sees half of it)."""
    fs, dest = open_uri(remote)
    _put(str(local), fs, dest)


def download_file(remote: str, local: str | os.PathLike) -> None:
    fs, path = open_uri(remote)
    with atomic_path(local) as tmp:
        pafs.copy_files(path, str(tmp), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())


def list_files(folder: str) -> list[str]:
    """The files under a folder (path or URI), relative to it; none when it does not exist."""
    fs, base = open_uri(folder)
    return sorted(_files(fs, base.rstrip("/")))


def download_dir(remote: str, local: str | os.PathLike) -> None:
    fs, base = open_uri(remote)
    Path(local).mkdir(parents=True, exist_ok=True)
    pafs.copy_files(base, str(local), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
