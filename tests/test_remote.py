"""Storage given as a path or an s3:// URI, against a real S3-compatible server (moto's,
on 127.0.0.1): bad storage refused in one line before any work, the run-folder mirror,
the Optuna journal on object storage and the dataset cache every node shares."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from hrm.config import ConfigError
from hrm.storage import RUN_FILES, Mirror, check_storage, exists, write_bytes

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bkt(s3):
    """The session's S3 server (conftest.py) with a bucket `bkt`: its environment."""
    s3.bucket("bkt")
    return s3.env


@pytest.mark.slow
def test_good_storage_passes_and_leaves_nothing(bkt, tmp_path):
    check_storage("s3://bkt/hrm")
    check_storage(str(tmp_path / "not" / "yet"))
    assert not exists("s3://bkt/hrm/.hrm-write-check-%d" % os.getpid())
    assert not (tmp_path / "not").exists()


@pytest.mark.slow
@pytest.mark.parametrize("case, env, uri, says", [
    ("missing bucket", {}, "s3://nobucket/hrm", "bucket 'nobucket' does not exist"),
    ("unreachable endpoint", {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}, "s3://bkt/hrm", "network connection"),
    ("missing credentials", {"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None}, "s3://bkt/hrm",
     "access denied"),
    ("unknown scheme", {}, "s4://bkt/hrm", "not a folder or a storage URI"),
])
def test_bad_storage_is_one_line_exit_2_before_any_work(bkt, tmp_path, case, env, uri, says):
    """tune.py and train.py refuse it before Ray starts: one line naming the storage, exit 2."""
    run_env = {**os.environ, **bkt, "AWS_RETRY_MODE": "standard", "AWS_MAX_ATTEMPTS": "1"}
    for k, v in env.items():
        if v is None:
            run_env.pop(k, None)
        else:
            run_env[k] = v
    for job in (["ray_jobs/tune.py", "--smoke"], ["ray_jobs/train.py", "--config", "quickstart"]):
        done = subprocess.run([sys.executable, str(ROOT / job[0]), *job[1:], "--storage", uri], cwd=tmp_path,
                              env=run_env, capture_output=True, text=True, timeout=120)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1, (case, done.stderr[-2000:])
        assert lines[0].startswith(f"{Path(job[0]).name}: error: --storage {uri}: ") and says in lines[0], lines[0]
        assert "Ray" not in done.stdout and not (tmp_path / "data").exists()


def test_local_storage_that_cannot_be_written(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=r"--storage .*file/sub: .*is not a folder this user can write"):
        check_storage(str(tmp_path / "file" / "sub"))


@pytest.mark.slow
def test_mirror_pushes_what_changed_and_pulls_what_is_missing(bkt, tmp_path):
    run = tmp_path / "node1"
    (run / "hrm" / "checkpoints" / "step_1").mkdir(parents=True)
    (run / "hrm" / "checkpoints" / "step_1" / "model.pt").write_bytes(b"weights")
    (run / "hrm" / "metrics.jsonl").write_text('{"step": 1}\n')
    (run / "events.out.tfevents.1").write_bytes(b"e1")
    mirror = Mirror(run, "s3://bkt/m/trial", only=RUN_FILES, skip=["hrm/checkpoints"])
    assert mirror.push() == 2 and mirror.push() == 0  # unchanged files are not sent again
    with open(run / "hrm" / "metrics.jsonl", "a") as f:
        f.write('{"step": 2}\n')
    assert mirror.push() == 1
    assert not exists("s3://bkt/m/trial/hrm/checkpoints")  # Ray Train persists those

    write_bytes("s3://bkt/m/trial/result.json", b"{}")  # Tune's, in the same folder: not the mirror's
    other = Mirror(tmp_path / "node2", "s3://bkt/m/trial", only=RUN_FILES, skip=["hrm/checkpoints"])
    assert other.pull() == 2 and other.push() == 0  # what it pulled it does not send back
    assert (tmp_path / "node2" / "hrm" / "metrics.jsonl").read_text() == '{"step": 1}\n{"step": 2}\n'
    assert (tmp_path / "node2" / "events.out.tfevents.1").read_bytes() == b"e1"


@pytest.mark.slow
def test_the_study_is_one_journal_file_on_object_storage(bkt, tmp_path):
    """The driver's journal: Optuna appends to a local file, uploaded after each append as one
    object; a plain copy of it opens with Optuna's own file backend; a pickled journal (Tune's
    searcher state after --resume) reads it back; a study of the earlier segment layout is
    joined into the file once."""
    optuna = pytest.importorskip("optuna")
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from hrm.search.study import StudyJournal
    from hrm.storage import download_file, list_files

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    uri = "s3://bkt/j/exp/optuna.journal"
    study = optuna.create_study(study_name="s", storage=JournalStorage(StudyJournal(uri)))
    study.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2, n_trials=5)
    again = pickle.loads(pickle.dumps(JournalStorage(StudyJournal(uri))))
    reloaded = optuna.load_study(study_name="s", storage=again)
    assert [t.params for t in reloaded.trials] == [t.params for t in study.trials]
    reloaded.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2, n_trials=1)
    assert list_files("s3://bkt/j/exp") == ["optuna.journal"]  # one object, nothing beside it
    download_file(uri, tmp_path / "copy.journal")  # what `aws s3 cp` would give a user
    copy = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(tmp_path / "copy.journal"))))
    assert len(copy.trials) == 6 and copy.best_value == min(t.value for t in reloaded.trials)

    lines = (tmp_path / "copy.journal").read_bytes().splitlines(keepends=True)
    for i, part in enumerate((lines[:3], lines[3:])):  # the earlier layout: numbered segments
        write_bytes(f"s3://bkt/old/exp/optuna-journal/{i:08d}.jsonl", b"".join(part))
    joined = optuna.load_study(study_name="s", storage=JournalStorage(StudyJournal("s3://bkt/old/exp/optuna.journal")))
    assert len(joined.trials) == 6


@pytest.mark.slow
def test_a_dataset_is_built_once_and_fetched_by_other_nodes(bkt, tmp_path, monkeypatch):
    """Two nodes (two data roots) sharing s3://bkt/datasets: the first builds and publishes,
    the second downloads the same bytes without building."""
    from hrm.config import load_config
    from hrm import dataset as build

    sets = ["data.num_train=20", "data.num_test=5", "data.num_aug=1", "data.sudoku.size=6",
            "data.sudoku.difficulty=easy", "data.sudoku.blanks=4", "data.share=s3://bkt/datasets"]
    node1 = load_config("quickstart", [*sets, f"data.root={tmp_path / 'node1'}"]).data
    node2 = load_config("quickstart", [*sets, f"data.root={tmp_path / 'node2'}"]).data
    said: list[str] = []
    first = build.ensure_dataset(node1, log=said.append)
    assert any("published" in line for line in said), said

    def no_build(*args, **kwargs):
        raise AssertionError("the second node rebuilt a shared dataset")

    monkeypatch.setattr(build, "build_dataset", no_build)
    second = build.ensure_dataset(node2, log=said.append)
    assert any("fetched" in line for line in said), said
    assert first.name == second.name and first != second
    for split in ("train.arrow", "test.arrow"):
        assert (first / split).read_bytes() == (second / split).read_bytes()
    assert build.ensure_dataset(node2, log=said.append) == second  # now local: nothing moves
