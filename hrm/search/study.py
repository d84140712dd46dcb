"""The Optuna study of a search as one standard journal file, `<storage>/<name>/optuna.journal`,
that `optuna.load_study(storage=JournalStorage(JournalFileBackend(path)))` and
`optuna-dashboard` open as they are (after a plain copy, on object storage).

Object stores cannot append, and Optuna's maintainers recommend a journal file kept by its
one writer and uploaded: the search driver (the study's one writer) keeps the file on its
own disk, Optuna's JournalFileBackend appends to it, and after each append the whole file
is uploaded (one PUT: a reader sees the old file or the new one). On a local or shared
folder the file is written in place. A study of the layout before this one (a folder of
numbered `optuna-journal/*.jsonl` segments) is joined into the file once.

Optuna is imported here, where the search reads and writes its study, and never on the
training path.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

from hrm.storage import download_file, exists, is_uri, list_files, open_uri, upload_file

JOURNAL = "optuna.journal"
_OLD_SEGMENTS = "optuna-journal"  # the earlier layout: one .jsonl object per append


def journal_uri(storage: str, name: str) -> str:
    return f"{storage.rstrip('/')}/{name}/{JOURNAL}"


class StudyJournal:
    """An Optuna journal backend (`JournalStorage(StudyJournal(uri))`): Optuna's own
    JournalFileBackend on a local file, mirrored to `uri` after every append when `uri` is on
    object storage. Pickles as its URI (Tune keeps the searcher in its experiment state);
    unpickled, it reads the journal back from `uri`."""

    def __init__(self, uri: str):
        from optuna.storages.journal import JournalFileBackend  # the search's own dependency

        self.uri = uri
        self.local = self._local_copy(uri)
        self._backend = JournalFileBackend(self.local)

    @staticmethod
    def _local_copy(uri: str) -> str:
        """The file Optuna appends to: the journal itself on a folder, a copy of it on a URI."""
        if is_uri(uri):
            local = str(Path(tempfile.mkdtemp(prefix="hrm-study-")) / JOURNAL)
            if exists(uri):
                download_file(uri, local)
        else:
            local = uri
            Path(local).parent.mkdir(parents=True, exist_ok=True)
        if not Path(local).exists() or not Path(local).stat().st_size:
            _join_old_segments(uri.rsplit("/", 1)[0] + f"/{_OLD_SEGMENTS}", local)
        return local

    def __getstate__(self) -> dict[str, Any]:
        return {"uri": self.uri}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["uri"])

    def read_logs(self, log_number_from: int) -> Iterable[dict[str, Any]]:
        return self._backend.read_logs(log_number_from)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        self._backend.append_logs(logs)
        if is_uri(self.uri):
            upload_file(self.local, self.uri)


def _join_old_segments(folder: str, local: str) -> None:
    """The earlier layout's segments (`<n:08d>.jsonl` objects), in order, as one journal file."""
    names = sorted(n for n in list_files(folder) if n.endswith(".jsonl") and "/" not in n)
    if not names:
        return
    fs, base = open_uri(folder)
    with open(local, "ab") as out:
        for name in names:
            with fs.open_input_stream(f"{base}/{name}") as f:
                out.write(f.read())


def load(uri: str, name: str) -> Any:
    """The study `name` of a journal at `uri` (a local path or a URI, read from a copy),
    through Optuna's own file backend; KeyError/ValueError as Optuna raises them."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    local = uri
    if is_uri(uri):
        local = os.path.join(tempfile.mkdtemp(prefix="hrm-study-"), JOURNAL)
        download_file(uri, local)
    return optuna.load_study(study_name=name, storage=optuna.storages.JournalStorage(JournalFileBackend(local)))


__all__ = ["JOURNAL", "StudyJournal", "journal_uri", "load"]
