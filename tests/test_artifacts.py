"""The artifact store: rows, ranking, pruning, one writer with concurrent readers, checksums, direct reads, CLI."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import shutil
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hrm.artifact_rows import BASE_SCHEMA, flatten
from hrm.artifacts import ArtifactStore, artifact_id
from hrm.checkpoint import code_version

# Light imports only at module level: the multiprocessing test spawns children
# that import this module. Torch-using modules are imported inside fixtures.

HPARAMS = {"model": {"H_cycles": 2, "hidden_size": 32}, "optim": {"lr": 1e-3, "betas": [0.9, 0.95]}, "tag": "a"}


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny):
    """One tiny training run: two real checkpoints and the metrics reported with them."""
    from hrm.train import train

    base = tmp_path_factory.mktemp("artifacts-run")
    cfg = tiny.config(base, name="tiny", model={"num_heads": 2}, data={"num_test": 32}, train={"log_interval": 2})
    reports = []
    train(cfg, log=lambda _m: None, report=lambda m, c: reports.append((dict(m), c)))
    assert len(reports) == 2 and all(Path(c).is_dir() for _, c in reports)
    return {"cfg": cfg, "reports": reports, "ckpt": reports[-1][1]}


def put(store, ckpt, exp, trial, step, value, **kw):
    metrics = {"pass@2": value, "exact_accuracy": value / 2, "note": "text metrics stay in metrics_json"}
    return store.add(
        experiment=exp, trial_id=trial, step=step, eval_round=step, hparams=kw.pop("hparams", HPARAMS),
        metrics=metrics, checkpoint_dir=ckpt, **kw,
    )


def ids_of(table: pa.Table) -> set[str]:
    return set(table["artifact_id"].to_pylist())


def index_files(root: Path) -> list[str]:
    """Every file under index/ (hidden temp files too), relative."""
    return sorted(str(p.relative_to(root / "index")) for p in (root / "index").rglob("*") if p.is_file())



# ---------------------------------------------------------------------------
# rows, ranking, lookups


def test_flatten_and_code_version():
    assert flatten({"a": {"b": 1, "c": {"d": [1]}}, "e": None}) == {"a.b": 1, "a.c.d": [1], "e": None}
    assert flatten({"x": {"y": 2}}, "hp.") == {"hp.x.y": 2}
    with pytest.raises(ValueError, match="appears twice"):
        flatten({"a": {"b": 1}, "a.b": 2})
    assert isinstance(code_version(), str) and code_version()


def test_add_table_best(tmp_path, run):
    store = ArtifactStore(str(tmp_path / "store"))
    ckpt = run["ckpt"]
    values = {("t1", 1): 0.2, ("t1", 2): 0.6, ("t2", 1): 0.6, ("t2", 3): 0.9, ("t3", 2): 0.1}
    for (trial, step), v in values.items():
        put(store, ckpt, "exp", trial, step, v)
    # One Delta version per change (0..4), no temp file left: the log and its data files only.
    from deltalake import DeltaTable

    assert DeltaTable(str(tmp_path / "store" / "index" / "exp")).version() == 4
    assert all(name.startswith("exp/_delta_log/") or name.startswith("exp/part-")
               for name in index_files(tmp_path / "store") if name.startswith("exp/"))
    t = store.table()
    assert t.num_rows == 5
    for field in BASE_SCHEMA:
        assert t.schema.field(field.name).type == field.type, field.name
    assert t.schema.field("hp.model.H_cycles").type == pa.int64()
    assert t.schema.field("hp.optim.lr").type == pa.float64()
    assert t.schema.field("metric.pass@2").type == pa.float64()
    assert "metric.note" not in t.column_names
    assert [(r["trial_id"], r["step"]) for r in t.to_pylist()] == sorted(values)
    row = t.to_pylist()[0]
    assert json.loads(row["hparams_json"]) == HPARAMS and json.loads(row["hp.optim.betas"]) == [0.9, 0.95]
    assert json.loads(row["metrics_json"])["note"].startswith("text")
    assert row["artifact_id"] == artifact_id("exp", "t1", 1) and len(row["artifact_id"]) == 16
    assert row["sha256"] == hashlib.sha256((Path(ckpt) / "checkpoint.pt").read_bytes()).hexdigest()
    assert row["bytes"] == sum(p.stat().st_size for p in Path(ckpt).rglob("*") if p.is_file())
    assert row["path"] == str(tmp_path / "store" / "checkpoints" / "exp" / "t1" / "step_00000001")
    assert (Path(row["path"]) / "checkpoint.pt").exists()
    assert row["code_version"] == code_version() and row["created_at"].tzinfo is not None

    best = store.best("exp", "pass@2", k=3)
    # 0.6 ties between (t1, 2) and (t2, 1): the later step wins.
    assert [(r["trial_id"], r["step"]) for r in best.to_pylist()] == [("t2", 3), ("t1", 2), ("t2", 1)]
    assert store.best("exp", "metric.pass@2", k=1, mode="min")["trial_id"].to_pylist() == ["t3"]
    assert store.best("exp", "pass@2", k=99).num_rows == 5
    with pytest.raises(ValueError, match=r"unknown metric 'pass@3' .*known metrics: exact_accuracy, pass@2"):
        store.best("exp", "pass@3")
    with pytest.raises(ValueError, match=r"no artifacts for experiment 'nope' .*known experiments: exp"):
        store.best("nope", "pass@2")
    with pytest.raises(ValueError, match="mode must be"):
        store.best("exp", "pass@2", mode="top")
    with pytest.raises(ValueError, match="k must be"):
        store.best("exp", "pass@2", k=0)
    with pytest.raises(ValueError, match="trial_id '../x' is not allowed"):
        put(store, ckpt, "exp", "../x", 1, 0.0)
    with pytest.raises(ValueError, match="experiment 'a/b' is not allowed"):
        put(store, ckpt, "a/b", "t", 1, 0.0)
    with pytest.raises(FileNotFoundError, match="has no checkpoint.pt"):
        put(store, str(tmp_path), "exp", "t9", 1, 0.0)

    got = store.get(row["artifact_id"][:6])
    assert got["artifact_id"] == row["artifact_id"] and got["metric.pass@2"] == 0.2
    with pytest.raises(ValueError, match="unknown artifact id 'zzz'"):
        store.get("zzz")
    # 17 ids over 16 hex digits: two share their first digit.
    by_first: dict[str, list[int]] = {}
    for step in range(100, 117):
        by_first.setdefault(artifact_id("exp", "amb", step)[0], []).append(step)
    first, steps = next((c, s) for c, s in by_first.items() if len(s) > 1)
    for step in steps[:2]:
        put(store, ckpt, "exp", "amb", step, 0.0)
    with pytest.raises(ValueError, match=f"artifact id prefix '{first}' is ambiguous"):
        store.get(first)


def test_rows_come_from_the_checkpoint_manifest(tmp_path, run, capsys):
    """The driver passes only a checkpoint folder: step, round, metrics and sha256 come from
    its manifest, read without loading the tensors."""
    store = ArtifactStore(str(tmp_path / "store"))
    for metrics, path in run["reports"]:
        aid = store.add(experiment="exp", trial_id="t1", hparams=HPARAMS, checkpoint_dir=path)
        row = store.get(aid)
        assert (row["step"], row["eval_round"]) == (metrics["step"], metrics["eval_round"])
        # The report adds only the reporting process's clock (train_seconds) to the checkpoint's metrics.
        assert metrics["train_seconds"] >= 0
        metrics = {k: v for k, v in metrics.items() if k != "train_seconds"}
        assert json.loads(row["metrics_json"]) == metrics and row["metric.pass@2"] == metrics["pass@2"]
        assert row["sha256"] == hashlib.sha256((Path(path) / "checkpoint.pt").read_bytes()).hexdigest()
    from hrm.cli import main

    capsys.readouterr()
    assert main(["artifacts", "list", "--root", str(tmp_path / "store")]) == 0
    header = capsys.readouterr().out.splitlines()[0].split()
    assert header.count("step") == 1 and "eval_round" not in header and "pass@2" in header  # counters once


def test_readd_replaces_the_row_and_copies_once(tmp_path, run):
    store = ArtifactStore(str(tmp_path / "store"))
    a = put(store, run["ckpt"], "exp", "t1", 4, 0.3)
    stored = Path(store.get(a)["path"]) / "checkpoint.pt"
    inode = stored.stat().st_ino
    b = put(store, run["ckpt"], "exp", "t1", 4, 0.7)  # a resumed search re-reports it
    assert a == b and stored.stat().st_ino == inode  # not copied again
    t = store.table()
    assert t.num_rows == 1 and t["metric.pass@2"].to_pylist() == [0.7]
    assert store.get(a)["metric.pass@2"] == 0.7
    stored.write_bytes(b"half a copy from a crashed driver")
    put(store, run["ckpt"], "exp", "t1", 4, 0.7)
    assert store.verify(a)  # a stored file that does not match is copied again


def test_experiments_with_different_columns_are_unified(tmp_path, run):
    store = ArtifactStore(str(tmp_path / "store"))
    put(store, run["ckpt"], "exp", "t1", 1, 0.5)
    put(store, run["ckpt"], "exp", "t2", 1, 0.4, hparams={"model": {"H_cycles": "three"}, "extra": True})
    put(store, run["ckpt"], "other", "t1", 1, 0.1, hparams={"only_here": 1.5})
    t = store.table()
    assert t.num_rows == 3
    assert t.schema.field("hp.model.H_cycles").type == pa.string()  # int vs string: widened to string
    assert t["hp.model.H_cycles"].to_pylist() == ["2", "three", None]
    assert t["hp.extra"].to_pylist() == [None, True, None]
    # One experiment's table carries only its own columns.
    assert "hp.only_here" not in store.table("exp").column_names
    assert store.table("other")["hp.only_here"].to_pylist() == [1.5]
    assert "hp.only_here" not in store.get(artifact_id("exp", "t1", 1))
    assert store.experiments() == ["exp", "other"]


# ---------------------------------------------------------------------------
# one writer, concurrent readers


def _child_reads(root: str, rounds: int, queue) -> None:
    import pandas as pd

    from deltalake import DeltaTable

    store, seen = ArtifactStore(root), []
    for _ in range(rounds):
        seen.append(store.table("exp").num_rows)
        path = store.index_file("exp")
        if path is not None:  # None before the first write
            seen.append(len(DeltaTable(path).to_pandas()))
    queue.put(seen)
    del pd


def test_readers_stay_safe_while_the_writer_adds_and_prunes(tmp_path, run):
    """The driver adds and prunes (a new index version on every change) while
    threads and another process read through the store and pandas: every read sees
    one whole version, never an error or a row count no version had."""
    pytest.importorskip("pandas")
    root = str(tmp_path / "store")
    store = ArtifactStore(root)
    stop, errors, sizes = threading.Event(), [], set()

    def read() -> None:
        reader = ArtifactStore(root)
        while not stop.is_set():
            try:
                sizes.add(reader.table("exp").num_rows)
                if reader.experiments():
                    sizes.add(reader.best("exp", "pass@2", k=50).num_rows)
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                errors.append(repr(exc))

    threads = [threading.Thread(target=read) for _ in range(3)]
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_child_reads, args=(root, 200, queue))
    for t in threads:
        t.start()
    child.start()
    versions = {0}
    for i in range(40):  # two trials reporting in turn, pruned to 3 rows after each
        put(store, run["ckpt"], "exp", f"t{i % 2}", i, (i * 7 % 10) / 10)
        versions.add(store.table("exp").num_rows)
        store.prune("exp", "pass@2", keep_per_trial=2, keep_per_experiment=3)
        versions.add(store.table("exp").num_rows)
    child_sizes = queue.get(timeout=120)
    child.join(timeout=60)
    stop.set()
    for t in threads:
        t.join()
    assert child.exitcode == 0 and not errors, errors[:3]
    assert sizes and sizes <= versions and set(child_sizes) <= versions, (sizes, child_sizes, versions)
    assert store.table("exp").num_rows == 3
    assert all(name.startswith(("exp/_delta_log/", "exp/part-")) for name in index_files(tmp_path / "store"))


# ---------------------------------------------------------------------------
# prune and sweep


def test_prune_keeps_exactly_the_best(tmp_path, run):
    store = ArtifactStore(str(tmp_path / "store"))
    rows = {("A", 1): 0.9, ("A", 2): 0.5, ("A", 3): 0.7, ("B", 1): 0.8, ("B", 2): 0.8, ("C", 1): 0.1}
    ids = {key: put(store, run["ckpt"], "exp", *key, v) for key, v in rows.items()}
    untouched = put(store, run["ckpt"], "other", "A", 1, 0.0)
    # Experiment order: A1 .9, B2 .8 (later step wins the tie), B1 .8, A3 .7, A2 .5, C1 .1.
    # Best 3 of the experiment: A1 B2 B1; best 2 per trial: A1 A3 B2 B1 C1 -> both: A1 B2 B1.
    doomed = sorted(ids[k] for k in [("A", 2), ("A", 3), ("C", 1)])
    assert store.prune("exp", "pass@2", keep_per_experiment=3) == doomed
    kept = {ids[k] for k in [("A", 1), ("B", 1), ("B", 2)]}
    assert ids_of(store.table("exp")) == kept
    assert ids_of(store.table("other")) == {untouched}
    for key, aid in ids.items():
        folder = tmp_path / "store" / "checkpoints" / "exp" / key[0] / f"step_{key[1]:08d}"
        assert folder.exists() == (aid in kept), key
    assert store.prune("exp", "pass@2", keep_per_trial=2, keep_per_experiment=3) == []
    with pytest.raises(ValueError, match="unknown artifact id"):
        store.get(doomed[0])
    with pytest.raises(ValueError, match="unknown metric"):
        store.prune("exp", "loss")
    with pytest.raises(ValueError, match="keep_per_trial must be"):
        store.prune("exp", "pass@2", keep_per_trial=0)
    # min mode: the lowest survive
    assert store.prune("exp", "pass@2", mode="min", keep_per_trial=1, keep_per_experiment=1) == sorted(
        [ids[("A", 1)], ids[("B", 1)]]
    )
    assert ids_of(store.table("exp")) == {ids[("B", 2)]}
    # A re-add after deletion (a resumed search) brings the row back.
    put(store, run["ckpt"], "exp", "C", 1, 0.1)
    assert ids[("C", 1)] in ids_of(store.table("exp"))


def test_sweep_deletes_only_unindexed_folders(tmp_path, run):
    root = tmp_path / "store"
    store = ArtifactStore(str(root))
    kept = put(store, run["ckpt"], "exp", "a", 1, 0.5)
    other = put(store, run["ckpt"], "y", "a", 9, 0.5)
    orphan = root / "checkpoints" / "exp" / "zz" / "step_00000003"  # copied, then the driver died
    orphan.mkdir(parents=True)
    (orphan / "checkpoint.pt").write_bytes(b"x")
    assert store.sweep("exp") == [str(orphan)]
    assert not orphan.exists() and store.verify(kept) and store.verify(other)
    assert store.sweep("exp") == []


# ---------------------------------------------------------------------------
# checkpoints: export, verify, load


def test_export_verify_and_corruption(tmp_path, run):
    store = ArtifactStore(str(tmp_path / "store"))
    aid = put(store, run["ckpt"], "exp", "t1", 2, 0.5)
    assert store.verify(aid)
    out = store.export(aid, str(tmp_path / "out" / "ckpt"))
    assert (Path(out) / "checkpoint.pt").read_bytes() == (Path(run["ckpt"]) / "checkpoint.pt").read_bytes()
    assert (Path(out) / "config.yaml").exists() and (Path(out) / "manifest.json").exists()
    with pytest.raises(ValueError, match="not an empty folder"):
        store.export(aid, out)
    (tmp_path / "empty").mkdir()
    assert store.export(aid, str(tmp_path / "empty")) == str(tmp_path / "empty")

    stored = Path(store.get(aid)["path"]) / "checkpoint.pt"
    with open(stored, "ab") as f:
        f.write(b"bitrot")
    assert not store.verify(aid)
    with pytest.raises(ValueError, match=r"artifact \w+: checkpoint .*checkpoint.pt has \d+ bytes, its manifest says"):
        store.export(aid, str(tmp_path / "bad"))
    assert not (tmp_path / "bad").exists() and not list(tmp_path.glob(".bad*"))
    with pytest.raises(ValueError, match="sha256"):
        with store.local_copy(aid):
            pass
    stored.unlink()
    assert not store.verify(aid)
    with pytest.raises(FileNotFoundError, match="is missing"):
        store.export(aid, str(tmp_path / "bad"))


def test_a_stored_checkpoint_reproduces_its_metrics(tmp_path, run):
    from hrm.checkpoint import load_model
    from hrm.dataset import ensure_dataset
    from hrm.data.loader import Split
    from hrm.evaluate import run_eval

    cfg = run["cfg"]
    split = Split.load(ensure_dataset(cfg.data), "test")
    store = ArtifactStore(str(tmp_path / "store"))  # on object storage local_copy exports: test_the_store_on_s3
    for metrics, path in run["reports"]:
        aid = store.add(experiment="exp", trial_id="t1", hparams={"H_cycles": cfg.model.H_cycles}, checkpoint_dir=path)
        with store.local_copy(aid[:8]) as (folder, row):
            model, loaded_cfg, _ = load_model(folder)
        assert loaded_cfg == cfg and row["artifact_id"] == aid
        again = run_eval(model, split, batch_size=cfg.train.global_batch_size).metrics  # the batch training evaluated with
        for name in ("exact_accuracy", "token_accuracy", "pass@1", "pass@2"):
            assert again[name] == row[f"metric.{name}"] == metrics[name], name


# ---------------------------------------------------------------------------
# direct readers


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_the_index_reads_with_one_path_in_duckdb_polars_and_pandas(tmp_path, run):
    import polars
    from deltalake import DeltaTable

    from tests.helpers import duckdb_with_delta

    root = tmp_path / "store"
    store = ArtifactStore(str(root))
    for trial, step, v in [("a", 1, 0.1), ("a", 2, 0.2), ("b", 1, 0.4)]:
        put(store, run["ckpt"], "exp", trial, step, v)
    put(store, run["ckpt"], "exp", "a", 2, 0.35)  # re-added: replaces its row
    put(store, run["ckpt"], "y", "t", 1, 0.5)
    path = store.index_file("exp")
    assert path == str(root / "index" / "exp")
    ours = ids_of(store.table("exp"))
    assert len(ours) == 3 and sorted(store.table("exp")["metric.pass@2"].to_pylist()) == [0.1, 0.35, 0.4]
    assert set(DeltaTable(path).to_pandas()["artifact_id"]) == ours
    assert set(polars.read_delta(path)["artifact_id"].to_list()) == ours
    duck = duckdb_with_delta().sql(f"SELECT artifact_id, \"metric.pass@2\" FROM delta_scan('{path}')").fetchall()
    assert {r[0] for r in duck} == ours and sorted(r[1] for r in duck) == [0.1, 0.35, 0.4]


def test_an_index_of_the_earlier_layout_is_converted_once(tmp_path, run):
    """Parquet version files (the newest is the index) become the Delta table's first version."""
    root = tmp_path / "store"
    store = ArtifactStore(str(root))
    for trial, step, v in [("a", 1, 0.1), ("b", 1, 0.4)]:
        put(store, run["ckpt"], "exp", trial, step, v)
    rows = store.table("exp")
    shutil.rmtree(root / "index" / "exp")
    (root / "index" / "exp").mkdir()
    pq.write_table(rows.slice(0, 1), root / "index" / "exp" / "0000000001.parquet")
    pq.write_table(rows, root / "index" / "exp" / "0000000002.parquet")
    again = ArtifactStore(str(root))
    assert again.experiments() == ["exp"] and ids_of(again.table("exp")) == ids_of(rows)
    assert not list((root / "index" / "exp").glob("0*.parquet")) and (root / "index" / "exp" / "_delta_log").is_dir()
    put(again, run["ckpt"], "exp", "c", 1, 0.9)
    assert again.table("exp").num_rows == 3


def test_file_uri_root_is_the_same_store(tmp_path, run):
    uri = ArtifactStore(f"file://{tmp_path}/store")
    plain = ArtifactStore(str(tmp_path / "store"))
    aid = put(uri, run["ckpt"], "exp", "t1", 1, 0.5)
    put(plain, run["ckpt"], "exp", "t2", 1, 0.6)
    assert uri.table().drop(["path"]).equals(plain.table().drop(["path"]))
    assert uri.get(aid)["path"] == f"file://{tmp_path}/store/checkpoints/exp/t1/step_00000001"
    assert uri.verify(aid) and Path(uri.export(aid, str(tmp_path / "out")), "checkpoint.pt").exists()
    assert uri.best("exp", "pass@2")["trial_id"].to_pylist() == ["t2"]


# ---------------------------------------------------------------------------
# CLI


def test_cli(tmp_path, run, capsys, monkeypatch):
    from hrm.cli import main

    root = str(tmp_path / "store")
    store = ArtifactStore(root)
    a = put(store, run["ckpt"], "exp", "t1", 1, 0.25)
    b = put(store, run["ckpt"], "exp", "t2", 1, 0.75)
    capsys.readouterr()

    assert main(["artifacts", "list", "--root", root]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["artifact_id", "experiment", "trial_id", "step", "exact_accuracy", "pass@2"]
    assert {line.split()[0] for line in out[1:]} == {a, b}

    monkeypatch.setenv("HRM_ARTIFACTS", root)  # --root defaults to it
    assert main(["artifacts", "best", "--experiment", "exp", "--metric", "pass@2", "-k", "2", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["artifact_id"] for r in rows] == [b, a] and rows[0]["metric.pass@2"] == 0.75
    assert main(["artifacts", "best", "--experiment", "exp", "--metric", "pass@2", "--mode", "min"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[0] == a

    assert main(["artifacts", "export", a[:7], str(tmp_path / "out")]) == 0
    assert json.loads(capsys.readouterr().out)["path"] == str(tmp_path / "out")
    assert (tmp_path / "out" / "checkpoint.pt").exists()
    assert main(["artifacts", "verify", a]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True

    assert main(["eval", "--artifact", b[:8], "--limit", "8"]) == 0  # the store's copy, sha256-checked
    assert "pass@2" in json.loads(capsys.readouterr().out)
    store.prune("exp", "pass@2", keep_per_experiment=1)
    with open(Path(store.get(b)["path"]) / "checkpoint.pt", "ab") as f:
        f.write(b"x")
    assert main(["artifacts", "verify", b]) == 1
    capsys.readouterr()

    for argv, message in [
        (("artifacts", "verify", "nope"), "unknown artifact id 'nope'"),
        (("artifacts", "export", a, str(tmp_path / "x")), f"unknown artifact id '{a}'"),  # pruned
        (("artifacts", "best", "--experiment", "exp", "--metric", "pass@9"), "unknown metric 'pass@9'"),
        (("artifacts", "best", "--experiment", "nope", "--metric", "pass@2"), "no artifacts for experiment 'nope'"),
        (("artifacts", "list", "--root", str(tmp_path / "missing")), "no artifact store at"),
        (("artifacts", "list", "--experiment", "nope"), "no artifacts for experiment 'nope' .*known experiments: exp"),
        (("eval", "--artifact", b), "fails its sha256 check"),
    ]:
        assert main(list(argv)) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("hrm: error: "), err
        import re

        assert re.search(message, err), (message, err)


# ---------------------------------------------------------------------------
# on object storage: a real S3-compatible server on 127.0.0.1


@pytest.fixture(scope="module")
def s3_env(s3):
    s3.bucket("hrm")
    return s3.env


@pytest.mark.slow
def test_the_store_on_s3(s3_env, tmp_path, run):
    store = ArtifactStore("s3://hrm/exp-store/artifacts")
    ids = [put(store, run["ckpt"], "exp", f"t{i % 2}", i, i / 10) for i in range(1, 5)]
    assert store.prune("exp", "pass@2", keep_per_trial=1) == sorted(ids[:2])
    assert ids_of(store.table("exp")) == set(ids[2:]) and store.experiments() == ["exp"]
    row = store.get(ids[3])
    assert row["path"] == "s3://hrm/exp-store/artifacts/checkpoints/exp/t0/step_00000004" and store.verify(ids[3])
    path = store.index_file("exp")
    assert path == "s3://hrm/exp-store/artifacts/index/exp"
    # one path for the tools people use, on S3 too (the options delta-rs needs: hrm.artifact_index)
    import polars

    from hrm.artifact_index import storage_options
    from tests.helpers import duckdb_with_delta

    assert set(polars.read_delta(path, storage_options=storage_options(path))["artifact_id"].to_list()) == set(ids[2:])
    duck = duckdb_with_delta(s3_env["AWS_ENDPOINT_URL"]).sql(f"SELECT artifact_id FROM delta_scan('{path}')")
    assert {r[0] for r in duck.fetchall()} == set(ids[2:])
    with store.local_copy(ids[3]) as (folder, _):  # exported and sha256-checked
        assert (Path(folder) / "checkpoint.pt").read_bytes() == (Path(run["ckpt"]) / "checkpoint.pt").read_bytes()
    assert store.sweep("exp") == []
    from hrm.cli import main

    assert main(["artifacts", "best", "--root", "s3://hrm/exp-store/artifacts", "--experiment", "exp",
                 "--metric", "pass@2", "--json"]) == 0
