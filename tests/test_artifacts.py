"""The artifact store: rows, ranking, pruning, concurrency, checksums, direct reads, CLI."""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from pyarrow.fs import _MockFileSystem

from hrm.artifacts import BASE_SCHEMA, ArtifactStore, add_cli, artifact_id, code_version, flatten

# Light imports only at module level: the multiprocessing test spawns children
# that import this module. Torch-using modules are imported inside fixtures.

HPARAMS = {"model": {"H_cycles": 2, "hidden_size": 32}, "optim": {"lr": 1e-3, "betas": [0.9, 0.95]}, "tag": "a"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny training run: two real checkpoints and the metrics reported with them."""
    from hrm.config import from_dict
    from hrm.train import train

    base = tmp_path_factory.mktemp("artifacts-run")
    raw = {
        "name": "tiny",
        "model": {"hidden_size": 32, "num_heads": 2, "H_layers": 1, "L_layers": 1, "halt_max_steps": 2},
        "data": {
            "root": str(base / "data"),
            "num_train": 64,
            "num_test": 32,
            "num_aug": 1,
            "sudoku": {"size": 4, "difficulty": "easy", "blanks": 4},
        },
        "optim": {"lr": 3e-3, "warmup_steps": 2},
        "train": {
            "global_batch_size": 16,
            "steps": 4,
            "eval_interval": 2,
            "log_interval": 2,
            "out_dir": str(base / "run"),
            "tensorboard": False,
            "device": "cpu",
        },
    }
    cfg = from_dict(raw)
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


def parts(root: Path) -> list[Path]:
    return sorted((root / "index").glob("part-*.parquet"))


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
    assert (Path(row["path"]) / "checkpoint.pt").exists() and not row["deleted"]
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
    with pytest.raises(FileNotFoundError, match="has no checkpoint.pt"):
        put(store, str(tmp_path), "exp", "t9", 1, 0.0)

    got = store.get(row["artifact_id"][:6])
    assert got["artifact_id"] == row["artifact_id"] and got["metric.pass@2"] == 0.2
    with pytest.raises(ValueError, match="unknown artifact id 'zzz'"):
        store.get("zzz")
    with pytest.raises(KeyError):  # also a KeyError
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


def test_readd_keeps_one_row_the_newest(tmp_path, run):
    store = ArtifactStore(str(tmp_path / "store"))
    a = put(store, run["ckpt"], "exp", "t1", 4, 0.3)
    b = put(store, run["ckpt"], "exp", "t1", 4, 0.7)  # a resumed search re-reports it
    assert a == b
    t = store.table()
    assert t.num_rows == 1 and t["metric.pass@2"].to_pylist() == [0.7]
    assert len(parts(tmp_path / "store")) == 2  # both versions are on disk until compaction
    assert store.get(a)["metric.pass@2"] == 0.7


def test_parts_with_different_columns_are_unified(tmp_path, run):
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


# ---------------------------------------------------------------------------
# concurrency


def _child_adds(root: str, ckpt: str, worker: int, count: int) -> None:
    store = ArtifactStore(root)
    for i in range(count):
        put(store, ckpt, "exp", f"p{worker}", i, worker + i / 10)
    put(store, ckpt, "exp", f"p{worker}", 0, worker + 0.5)  # a re-add


def test_concurrent_appends_threads_and_processes(tmp_path, run):
    root = str(tmp_path / "store")
    ckpt = run["ckpt"]
    store = ArtifactStore(root)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda w: _child_adds(root, ckpt, w, 3), range(4)))
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_child_adds, args=(root, ckpt, 10 + w, 2)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    want = {artifact_id("exp", f"p{w}", i) for w in range(4) for i in range(3)}
    want |= {artifact_id("exp", f"p{10 + w}", i) for w in range(3) for i in range(2)}
    t = store.table()
    assert ids_of(t) == want and t.num_rows == len(want)
    assert len(parts(tmp_path / "store")) == 4 * 4 + 3 * 3
    for part in parts(tmp_path / "store"):  # every part is whole
        assert pq.read_table(part).num_rows == 1
    assert not list((tmp_path / "store" / "index").glob(".*"))
    re_added = t.filter(pc.equal(t["step"], 0))
    assert sorted(re_added["metric.pass@2"].to_pylist()) == [w + 0.5 for w in (0, 1, 2, 3, 10, 11, 12)]


# ---------------------------------------------------------------------------
# prune


def test_prune_keeps_exactly_the_best_and_is_idempotent(tmp_path, run):
    store = ArtifactStore(str(tmp_path / "store"))
    rows = {("A", 1): 0.9, ("A", 2): 0.5, ("A", 3): 0.7, ("B", 1): 0.8, ("B", 2): 0.8, ("C", 1): 0.1}
    ids = {key: put(store, run["ckpt"], "exp", *key, v) for key, v in rows.items()}
    untouched = put(store, run["ckpt"], "other", "A", 1, 0.0)
    # Experiment order: A1 .9, B2 .8 (later step wins the tie), B1 .8, A3 .7, A2 .5, C1 .1.
    # Best 3 of the experiment: A1 B2 B1; best 2 per trial: A1 A3 B2 B1 C1 -> both: A1 B2 B1.
    # Two prunes at once delete nothing else (the later one may find the work done).
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: store.prune("exp", "pass@2", keep_per_experiment=3), [0, 1]))
    doomed = sorted(ids[k] for k in [("A", 2), ("A", 3), ("C", 1)])
    assert sorted(set(results[0]) | set(results[1])) == doomed and doomed in results
    kept = {ids[k] for k in [("A", 1), ("B", 1), ("B", 2)]}
    assert ids_of(store.table("exp")) == kept
    assert ids_of(store.table("other")) == {untouched}
    for key, aid in ids.items():
        folder = tmp_path / "store" / "checkpoints" / "exp" / key[0] / f"step_{key[1]:08d}"
        assert folder.exists() == (aid in kept), key
    assert store.prune("exp", "pass@2", keep_per_trial=2, keep_per_experiment=3) == []
    everything = store.table("exp", include_deleted=True)
    assert ids_of(everything) == set(ids.values())
    assert ids_of(everything.filter(everything["deleted"])) == set(doomed)
    with pytest.raises(ValueError, match="was deleted"):
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


# ---------------------------------------------------------------------------
# checkpoints: export, verify, load


def test_export_verify_and_corruption(tmp_path, run):
    store = ArtifactStore(str(tmp_path / "store"))
    aid = put(store, run["ckpt"], "exp", "t1", 2, 0.5)
    assert store.verify(aid)
    out = store.export(aid, str(tmp_path / "out" / "ckpt"))
    assert (Path(out) / "checkpoint.pt").read_bytes() == (Path(run["ckpt"]) / "checkpoint.pt").read_bytes()
    assert (Path(out) / "config.yaml").exists()
    with pytest.raises(ValueError, match="not an empty folder"):
        store.export(aid, out)
    (tmp_path / "empty").mkdir()
    assert store.export(aid, str(tmp_path / "empty")) == str(tmp_path / "empty")

    stored = Path(store.get(aid)["path"]) / "checkpoint.pt"
    with open(stored, "ab") as f:
        f.write(b"bitrot")
    assert not store.verify(aid)
    with pytest.raises(ValueError, match="checksum mismatch"):
        store.export(aid, str(tmp_path / "bad"))
    assert not (tmp_path / "bad").exists() and not list(tmp_path.glob(".bad*"))
    with pytest.raises(ValueError, match="sha256"):
        store.load_model(aid)
    stored.unlink()
    assert not store.verify(aid)
    with pytest.raises(FileNotFoundError, match="is missing"):
        store.export(aid, str(tmp_path / "bad"))


def test_load_model_reproduces_the_stored_metrics(tmp_path, run):
    from hrm.data.build import ensure_dataset
    from hrm.data.loader import Split
    from hrm.evaluate import evaluate

    cfg = run["cfg"]
    split = Split.load(ensure_dataset(cfg.data), "test")
    local = ArtifactStore(str(tmp_path / "store"))
    remote = ArtifactStore("bucket/store", filesystem=_MockFileSystem())  # not local: goes through export
    assert not remote.is_local
    for store in (local, remote):
        for metrics, path in run["reports"]:
            aid = store.add(
                experiment="exp", trial_id="t1", step=metrics["step"], eval_round=metrics["eval_round"],
                hparams={"model": {"H_cycles": cfg.model.H_cycles}}, metrics=metrics, checkpoint_dir=path,
            )
            model, loaded_cfg, row = store.load_model(aid[:8])
            assert loaded_cfg == cfg and row["artifact_id"] == aid
            again = evaluate(model, split, batch_size=cfg.train.global_batch_size)  # the batch training evaluated with
            for name in ("exact_accuracy", "token_accuracy", "pass@1", "pass@2"):
                assert again[name] == row[f"metric.{name}"] == metrics[name], name
    assert remote.table()["path"].to_pylist()[0].startswith("bucket/store/checkpoints/exp/t1/step_")


# ---------------------------------------------------------------------------
# compaction and direct readers


def test_compact_leaves_live_rows_readable_directly(tmp_path, run):
    root = tmp_path / "store"
    store = ArtifactStore(str(root))
    for trial, step, v in [("a", 1, 0.1), ("a", 2, 0.2), ("a", 3, 0.3), ("b", 1, 0.4)]:
        put(store, run["ckpt"], "exp", trial, step, v)
    put(store, run["ckpt"], "exp", "a", 3, 0.35)  # superseded version
    put(store, run["ckpt"], "y", "t", 1, 0.5)
    pruned = store.prune("exp", "pass@2", keep_per_trial=1, keep_per_experiment=5)
    assert len(pruned) == 2
    live = store.table()
    assert live.num_rows == 3 and len(parts(root)) == 7

    # Orphans: an old temp part and an old unindexed folder go; fresh ones stay.
    old = time.time() - 2 * 3600
    (root / "index" / ".part-old.parquet.tmp").write_bytes(b"torn")
    os.utime(root / "index" / ".part-old.parquet.tmp", (old, old))
    (root / "index" / ".part-new.parquet.tmp").write_bytes(b"in flight")
    orphan = root / "checkpoints" / "exp" / "zz" / "step_00000001"
    orphan.mkdir(parents=True)
    (orphan / "checkpoint.pt").write_bytes(b"x")
    os.utime(orphan / "checkpoint.pt", (old, old))

    store.compact()
    assert len(parts(root)) == 1
    assert not (root / "index" / ".part-old.parquet.tmp").exists()
    assert (root / "index" / ".part-new.parquet.tmp").exists()
    assert not orphan.exists()
    assert store.table().equals(live)
    direct = pq.read_table(str(root / "index"))
    assert direct.num_rows == 3 and ids_of(direct) == ids_of(live) and not any(direct["deleted"].to_pylist())
    assert direct.filter(pc.equal(direct["trial_id"], "a"))["metric.pass@2"].to_pylist() == [0.35]
    if _has("pandas"):
        import pandas as pd

        frame = pd.read_parquet(str(root / "index"))
        assert sorted(frame["artifact_id"]) == sorted(ids_of(live))
    if _has("duckdb"):
        import duckdb

        sql = f"SELECT artifact_id FROM read_parquet('{root}/index/*.parquet', union_by_name=true)"
        got = duckdb.sql(sql).fetchall()
        assert {r[0] for r in got} == ids_of(live)
    before = parts(root)
    store.compact()  # nothing to do: no rewrite
    assert parts(root) == before


def test_compact_one_experiment_keeps_other_tombstones(tmp_path, run):
    store = ArtifactStore(str(tmp_path / "store"))
    put(store, run["ckpt"], "x", "t", 1, 0.1)
    put(store, run["ckpt"], "y", "t", 1, 0.1)
    put(store, run["ckpt"], "y", "t", 2, 0.2)
    store.compact()  # one part holding x and y
    assert store.prune("y", "pass@2", keep_per_trial=1) == [artifact_id("y", "t", 1)]
    put(store, run["ckpt"], "x", "t", 2, 0.2)
    store.compact("x")  # rewrites the mixed part and x's part; y's tombstone part stays
    assert ids_of(store.table("y")) == {artifact_id("y", "t", 2)}
    assert ids_of(store.table("x")) == {artifact_id("x", "t", 1), artifact_id("x", "t", 2)}
    store.compact()
    assert len(parts(tmp_path / "store")) == 1 and store.table().num_rows == 3


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_file_uri_root_is_the_same_store(tmp_path, run):
    uri = ArtifactStore(f"file://{tmp_path}/store")
    plain = ArtifactStore(str(tmp_path / "store"))
    aid = put(uri, run["ckpt"], "exp", "t1", 1, 0.5)
    put(plain, run["ckpt"], "exp", "t2", 1, 0.6)
    assert uri.table().drop(["path"]).equals(plain.table().drop(["path"]))
    assert uri.get(aid)["path"] == f"file://{tmp_path}/store/checkpoints/exp/t1/step_00000001"
    assert uri.verify(aid) and Path(uri.export(aid, str(tmp_path / "out")), "checkpoint.pt").exists()
    assert uri.best("exp", "pass@2")["trial_id"].to_pylist() == ["t2"]
    uri.compact()
    assert pq.read_table(f"file://{tmp_path}/store/index").num_rows == 2


# ---------------------------------------------------------------------------
# CLI


def cli(*argv):
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command")
    add_cli(sub)
    args = p.parse_args(list(argv))
    return args.func(args)


def test_cli(tmp_path, run, capsys, monkeypatch):
    root = str(tmp_path / "store")
    store = ArtifactStore(root)
    a = put(store, run["ckpt"], "exp", "t1", 1, 0.25)
    b = put(store, run["ckpt"], "exp", "t2", 1, 0.75)
    capsys.readouterr()

    assert cli("artifacts", "list", "--root", root) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["artifact_id", "experiment", "trial_id", "step", "exact_accuracy", "pass@2"]
    assert {line.split()[0] for line in out[1:]} == {a, b}

    monkeypatch.setenv("HRM_ARTIFACTS", root)  # --root defaults to it
    assert cli("artifacts", "best", "--experiment", "exp", "--metric", "pass@2", "-k", "2", "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["artifact_id"] for r in rows] == [b, a] and rows[0]["metric.pass@2"] == 0.75
    assert cli("artifacts", "best", "--experiment", "exp", "--metric", "pass@2", "--mode", "min") == 0
    assert capsys.readouterr().out.splitlines()[1].split()[0] == a

    assert cli("artifacts", "export", a[:7], str(tmp_path / "out")) == 0
    assert json.loads(capsys.readouterr().out)["path"] == str(tmp_path / "out")
    assert (tmp_path / "out" / "checkpoint.pt").exists()
    assert cli("artifacts", "verify", a) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True

    store.prune("exp", "pass@2", keep_per_experiment=1)
    assert cli("artifacts", "list", "--all") == 0
    assert "True" in capsys.readouterr().out
    assert cli("artifacts", "compact") == 0
    assert json.loads(capsys.readouterr().out)["parts_after"] == 1
    with open(Path(store.get(b)["path"]) / "checkpoint.pt", "ab") as f:
        f.write(b"x")
    assert cli("artifacts", "verify", b) == 1

    for argv, message in [
        (("verify", "nope"), "unknown artifact id 'nope'"),
        (("export", a, str(tmp_path / "x")), f"unknown artifact id '{a}'"),  # pruned, then compacted away
        (("best", "--experiment", "exp", "--metric", "pass@9"), "unknown metric 'pass@9'"),
        (("best", "--experiment", "nope", "--metric", "pass@2"), "no artifacts for experiment 'nope'"),
        (("list", "--root", str(tmp_path / "missing")), "no artifact store at"),
        (("list", "--experiment", "nope"), "no artifacts for experiment 'nope' .*known experiments: exp"),
    ]:
        with pytest.raises(ValueError, match=message) as err:
            cli("artifacts", *argv)
        assert "\n" not in str(err.value)
