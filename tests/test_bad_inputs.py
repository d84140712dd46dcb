"""The catalogue of bad inputs, each run as a user would (a subprocess of `hrm` or a Ray
job script): exit code 2, one line on stderr that names the input, no traceback, and
no file written or changed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HRM = str(Path(sys.executable).with_name("hrm"))
# The shared tiny run (conftest's Tiny), shorter still: "{tiny}" in a command stands for its --set flags.
SHORT = {"data": {"num_train": 40, "num_test": 8}, "train": {"global_batch_size": 8, "steps": 2, "eval_interval": 2}}


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("HRM_DEBUG", "RAY_ADDRESS", "HRM_ARTIFACTS")}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def made(tmp_path_factory, tiny) -> dict[str, Path]:
    """A tiny trained run (its checkpoint and dataset), built once for the catalogue."""
    root = tmp_path_factory.mktemp("made")
    done = _run([HRM, "train", "--config", "quickstart", *tiny.flags(root, **SHORT), "--out", str(root / "run")], root)
    assert done.returncode == 0, done.stderr[-3000:]
    (ckpt,) = sorted((root / "run" / "checkpoints").iterdir())
    (data,) = [d for d in (root / "data").iterdir() if d.is_dir()]
    return {"ckpt": ckpt, "data": data, "root": root}


def _tree(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


# Each case: (what it writes into the test's folder first: {name: text or bytes or a
# callable(made, folder)}, the command (strings; {ckpt}, {data} and {dir} filled in, {tiny} expanded),
# a piece the one line must hold).
CASES = {
    # configs
    "config: empty file": ({"c.yaml": ""}, ["hrm", "train", "--config", "c.yaml"], "c.yaml: the file is empty"),
    "config: not a mapping": ({"c.yaml": "- 1\n- 2\n"}, ["hrm", "train", "--config", "c.yaml"],
                              "c.yaml: the top level must be a mapping"),
    "config: duplicate key": ({"c.yaml": "model:\n  hidden_size: 64\n  hidden_size: 32\n"},
                              ["hrm", "train", "--config", "c.yaml"], "duplicate key 'hidden_size'"),
    "config: not UTF-8": ({"c.yaml": b"name: caf\xe9\n"}, ["hrm", "train", "--config", "c.yaml"], "not UTF-8"),
    "config: NaN lr": ({}, ["hrm", "train", "--config", "quickstart", "--set", "optim.lr=.nan"],
                       "optim.lr must be a finite number"),
    "config: negative rms_norm_eps": ({}, ["hrm", "train", "--config", "quickstart", "--set",
                                           "model.rms_norm_eps=-1e-5"], "model.rms_norm_eps must be > 0"),
    "config: negative weight decay": ({}, ["hrm", "train", "--config", "quickstart", "--set",
                                           "optim.weight_decay=-0.1"], "optim.weight_decay must be >= 0"),
    "config: unknown key": ({}, ["hrm", "train", "--config", "quickstart", "--set", "model.hiden_size=8"],
                            "did you mean 'hidden_size'"),
    "config: wrong type": ({}, ["hrm", "model-info", "--config", "quickstart", "--set", "model.H_cycles=two"],
                           "'model.H_cycles' must be an integer"),
    "config: two budgets": ({}, ["hrm", "train", "--config", "quickstart", "--set", "train.flops=1e12"],
                            "give exactly one of train.steps, train.epochs, train.samples, train.flops"),
    "config: missing file": ({}, ["hrm", "train", "--config", "nope.yaml"], "config file not found: nope.yaml"),
    "config: unknown arch": ({}, ["hrm", "train", "--config", "quickstart", "--set", "model.arch=rnn"],
                             "'model.arch' must be one of 'hrm', 'trm', 'urm', 'transformer'"),
    "config: a key the arch does not use": ({}, ["hrm", "train", "--config", "quickstart", "--set", "model.arch=trm",
                                                 "--set", "model.H_layers=2"],
                                            "model.H_layers does not apply to model.arch 'trm'"),
    # search spaces
    "space: empty file": ({"s.yaml": ""}, ["tune", "--space", "s.yaml"], "s.yaml: the file is empty"),
    "space: unknown time_attr": ({}, ["tune", "--smoke", "--set", "scheduler.time_attr=wallclock"],
                                 "scheduler.time_attr must be one of eval_round, step, samples, flops"),
    "space: a compute rung over a step budget": ({}, ["tune", "--smoke", "--set", "overrides.train.flops=null",
                                                      "--set", "overrides.train.steps=30"],
                                                 "scheduler.time_attr: flops needs the trials' budget in flops"),
    "space: malformed claim": ({}, ["tune", "--smoke", "--set", "claim={{better: {{model.H_cycles: 2}}}}"],
                               "claim.than: missing or not a mapping"),
    "space: duplicate key": ({"s.yaml": "name: a\nname: b\n"}, ["tune", "--space", "s.yaml"], "duplicate key 'name'"),
    "space: metric never reported": ({}, ["tune", "--smoke", "--set", "metric=pass@3"], "got 'pass@3'"),
    "space: unknown top key": ({}, ["tune", "--smoke", "--set", "budgets.num_samples=2"], "budgets"),
    "space: zero samples": ({}, ["tune", "--smoke", "--set", "budget.num_samples=0"],
                            "budget.num_samples must be >= 1"),
    "space: NaN bound": ({}, ["tune", "--smoke", "--set", "budget.cpus_per_worker=.nan"],
                         "budget.cpus_per_worker must be a finite number"),
    "space: unknown worker group": ({}, ["tune", "--smoke", "--set", "budget.worker_group=never"],
                                    "budget.worker_group"),
    "space: bad scheduler": ({}, ["tune", "--smoke", "--set", "scheduler.reduction_factor=1"],
                             "scheduler.reduction_factor must be >= 2"),
    "space: not a mapping": ({"s.yaml": "[1, 2]\n"}, ["tune", "--space", "s.yaml"], "the top level must be a mapping"),
    "space: zero seeds": ({}, ["tune", "--smoke", "--set", "budget.seeds=0"], "budget.seeds must be >= 1"),
    "space: a param the arch does not use": ({}, ["tune", "--smoke", "--set", "overrides.model.arch=transformer"],
                                             "params.model.H_cycles: model.H_cycles does not apply to model.arch"),
    # CLI flags
    "flag: --device cuda without CUDA": ({}, ["hrm", "eval", "--checkpoint", "{ckpt}", "--device", "cuda"], "CUDA"),
    "flag: --limit negative": ({}, ["hrm", "eval", "--checkpoint", "{ckpt}", "--limit", "-1"], "--limit"),
    "flag: --views 0": ({}, ["hrm", "eval", "--checkpoint", "{ckpt}", "--views", "0"], "--views"),
    "flag: data build --workers 0": ({}, ["hrm", "data", "build", "maze", "--workers", "0"], "--workers"),
    "flag: -k 0": ({}, ["hrm", "eval", "--checkpoint", "{ckpt}", "-k", "0"], "-k"),
    "flag: --num-workers 0": ({}, ["train.py", "--config", "quickstart", "--num-workers", "0"], "--num-workers"),
    "flag: --num-samples 0": ({}, ["tune", "--smoke", "--num-samples", "0"], "--num-samples"),
    "flag: --name with a slash": ({}, ["tune", "--smoke", "--name", "a/b"], "--name 'a/b' is not allowed"),
    "flag: --seeds 0": ({}, ["hrm", "train", "--config", "quickstart", "--seeds", "0"], "--seeds"),
    "flag: --mmax 0": ({}, ["hrm", "eval", "--checkpoint", "{ckpt}", "--mmax", "0"], "--mmax"),
    "flag: --ensemble of one": ({}, ["hrm", "eval", "--ensemble", "{ckpt}"], "--ensemble needs at least two"),
    "flag: --resume of nothing": ({}, ["hrm", "train", "--config", "quickstart", "--resume", "--out", "none"],
                                  "--resume: run folder none does not exist"),
    # datasets
    "data: folder without splits": ({"ds/readme.txt": "x"}, ["hrm", "eval", "--checkpoint", "{ckpt}", "--data", "ds"],
                                    "ds"),
    "data: not a folder": ({"ds": "x"}, ["hrm", "eval", "--checkpoint", "{ckpt}", "--data", "ds"], "ds"),
    "data: arrow file that is not Arrow": ({"ds/train.arrow": "x", "ds/test.arrow": "x"},
                                           ["hrm", "eval", "--checkpoint", "{ckpt}", "--data", "ds"], "test.arrow"),
    "data: another task's dataset": ("maze", ["hrm", "eval", "--checkpoint", "{ckpt}", "--data", "maze"], "maze"),
    "data: build into a folder with other files": ({"out/notes.txt": "mine"},
                                                   ["hrm", "data", "build", "sudoku", "--size", "4", "--difficulty",
                                                    "easy", "--blanks", "4", "--out", "out"], "--out out holds files"),
    "data: build into a file": ({"out": "x"}, ["hrm", "data", "build", "sudoku", "--out", "out"],
                                "--out out: is a file"),
    "data: tokens outside the vocabulary": ("oov", ["hrm", "train", "--config", "quickstart", "{tiny}", "--set",
                                                    "data.path=ds", "--out", "run"],
                                            "column inputs holds values in"),
    "data: an empty test split": ("empty-test", ["hrm", "train", "--config", "quickstart", "{tiny}", "--set",
                                                 "data.path=ds", "--out", "run"], "test.arrow has no rows"),
    "data: --from-csv missing": ({}, ["hrm", "data", "build", "sudoku", "--from-csv", "a.csv", "b.csv"], "a.csv"),
    "data: --extra-dir missing": ({}, ["hrm", "data", "build", "arc", "--extra-dir", "nope"], "--extra-dir nope"),
    # checkpoints
    "checkpoint: missing": ({}, ["hrm", "eval", "--checkpoint", "nope"], "--checkpoint nope does not exist"),
    "checkpoint: a YAML file": ({"c.yaml": "a: 1\n"}, ["hrm", "eval", "--checkpoint", "c.yaml"], "c.yaml"),
    "checkpoint: flipped bytes": ("flip", ["hrm", "eval", "--checkpoint", "ck"], "fails its sha256 check"),
    "checkpoint: truncated": ("truncate", ["hrm", "eval", "--checkpoint", "ck"], "truncated"),
    "checkpoint: no manifest": ("no-manifest", ["hrm", "eval", "--checkpoint", "ck"], "no manifest.json"),
    "checkpoint: empty folder": ({"ck/.keep": ""}, ["hrm", "eval", "--checkpoint", "ck"], "ck"),
    "checkpoint: resume from a damaged one": ("resume-flip", ["hrm", "train", "--config", "quickstart", "{tiny}",
                                                              "--resume", "--out", "run"], "fails its sha256 check"),
    "checkpoint: resume with another model shape": ("run-exists", ["hrm", "train", "--config", "quickstart", "{tiny}",
                                                                    "--set", "model.hidden_size=64", "--resume",
                                                                    "--out", "run"],
                                                    "its weights do not fit the model"),
    "checkpoint: a config that does not describe its weights": ("misfit", ["hrm", "eval", "--checkpoint", "ck"],
                                                                "its config.yaml does not describe its checkpoint.pt"),
    "checkpoint: manifest not JSON": ("bad-manifest", ["hrm", "eval", "--checkpoint", "ck"], "is not JSON"),
    "checkpoint: an ensemble of two tasks": ("maze-ckpt", ["hrm", "eval", "--ensemble", "{ckpt}", "mz"],
                                             "an ensemble's checkpoints must come from one task"),
    # output paths
    "out: eval --out under a file": ({"f": "x"}, ["hrm", "eval", "--checkpoint", "{ckpt}", "--out", "f/sub"], "f/sub"),
    "out: eval --render under a file": ({"f": "x"}, ["hrm", "eval", "--checkpoint", "{ckpt}", "--render", "f/sub"],
                                        "f/sub"),
    "out: train --out is a file": ({"f": "x"}, ["hrm", "train", "--config", "quickstart", "--out", "f"], "f"),
    "out: train --out under a file": ({"f": "x"}, ["hrm", "train", "--config", "quickstart", "--out", "f/run"],
                                      "f/run"),
    "out: export into a non-empty folder": ("store", ["hrm", "artifacts", "export", "{aid}", "full",
                                                      "--root", "store"], "not an empty folder"),
    "out: data build --out under a file": ({"f": "x"}, ["hrm", "data", "build", "sudoku", "--size", "4",
                                                        "--difficulty", "easy", "--blanks", "4", "--out", "f/sub"],
                                           "--out f/sub: {dir}/f is not a folder this user can write"),
    "out: export under a file": ("store", ["hrm", "artifacts", "export", "{aid}", "full/x/sub", "--root", "store"],
                                 "dir full/x/sub"),
    "out: data.root under a file": ({"f": "x"}, ["hrm", "train", "--config", "quickstart", "--set", "data.root=f/d"],
                                    "f/d"),
    "out: train --out with checkpoints": ("run-exists", ["hrm", "train", "--config", "quickstart", "{tiny}",
                                                         "--out", "run"], "already has checkpoints"),
    "out: tune --storage under a file": ({"f": "x"}, ["tune", "--smoke", "--storage", "f/st"],
                                         "f/st: {dir}/f is not a folder this user can write"),
    # storage and artifacts
    "store: no store at --root": ({}, ["hrm", "artifacts", "list", "--root", "nowhere"], "no artifact store at"),
    "store: unknown artifact": ("store", ["hrm", "artifacts", "verify", "ffffffff", "--root", "store"], "ffffffff"),
    "store: unknown metric": ("store", ["hrm", "artifacts", "best", "--experiment", "e", "--metric", "pass@9",
                                        "--root", "store"], "pass@9"),
    "store: unknown experiment": ("store", ["hrm", "artifacts", "best", "--experiment", "nope", "--metric", "pass@2",
                                            "--root", "store"], "nope"),
    "store: unknown storage scheme": ({}, ["tune", "--smoke", "--storage", "s4://b/x"], "--storage s4://b/x"),
    "store: eval an unknown artifact": ("store", ["hrm", "eval", "--artifact", "ffffffff", "--root", "store"],
                                        "ffffffff"),
    "store: ensemble best-K without --experiment": ("store", ["hrm", "eval", "--ensemble", "best-2", "--root",
                                                              "store"], "best-K needs --experiment"),
    "store: report of a missing root": ({}, ["hrm", "report", "quickstart", "--root", "nowhere"],
                                        "nowhere: no such folder"),
    "store: report of a missing experiment": ({"st/other/space.json": "{}"}, ["hrm", "report", "quickstart", "--root",
                                                                            "st"], "st/quickstart: no such experiment"),
    "store: report of a folder that is not a search": ({"st/quickstart/x": "1"},
                                                       ["hrm", "report", "quickstart", "--root", "st"],
                                                       "quickstart/space.json: missing"),
    "store: evaluate.py of a store that does not exist": ({}, ["evaluate.py", "--root", "nostore", "--artifact", "abc"],
                                                           "--root nostore: no artifact store there"),
    "store: --resume of nothing": ({}, ["tune", "--smoke", "--resume", "--storage", "st"], "does not exist"),
    "store: train.py storage under a file": ({"f": "x"}, ["train.py", "--config", "quickstart", "--storage", "f/s"],
                                             "f/s: {dir}/f is not a folder this user can write"),
}


def _prepare(kind, made: dict[str, Path], folder: Path, tiny) -> dict[str, str]:
    """Write the case's files; returns the names to fill into its command."""
    import shutil

    fill = {"ckpt": str(made["ckpt"]), "data": str(made["data"]), "dir": str(folder)}
    if isinstance(kind, dict):
        for name, content in kind.items():
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
        return fill
    if kind in ("flip", "truncate", "no-manifest", "bad-manifest"):
        shutil.copytree(made["ckpt"], folder / "ck")
        weights = folder / "ck" / "checkpoint.pt"
        data = bytearray(weights.read_bytes())
        if kind == "flip":
            data[len(data) // 2] ^= 0xFF  # same size, one byte of the weights
            weights.write_bytes(bytes(data))
        elif kind == "truncate":
            weights.write_bytes(bytes(data[: len(data) // 2]))
        elif kind == "no-manifest":
            (folder / "ck" / "manifest.json").unlink()
        else:
            (folder / "ck" / "manifest.json").write_text("{not json")
    elif kind in ("oov", "empty-test"):  # the made dataset, one token out of range or the test split emptied
        import numpy as np

        from hrm.data import arrow

        for split in arrow.SPLITS:
            cols, meta = arrow.read_split(arrow.split_path(made["data"], split))
            cols = {k: np.array(v) for k, v in cols.items()}
            if kind == "oov" and split == "train":
                cols["inputs"][0, 0] = meta["vocab_size"] + 5
            if kind == "empty-test" and split == "test":
                cols = {k: v[:0] for k, v in cols.items()}
            arrow.write_split(arrow.split_path(folder / "ds", split), cols, meta)
    elif kind == "misfit":  # a well-formed checkpoint whose stored config asks for another width
        from hrm.checkpoint import load_checkpoint, write_checkpoint
        from hrm.config import from_dict

        payload = load_checkpoint(made["ckpt"])
        payload["config"]["model"]["hidden_size"] *= 2
        written = write_checkpoint(folder / "w", step=payload["step"], eval_round=payload["eval_round"], payload=payload,
                                   cfg=from_dict(payload["config"]), metrics=payload["metrics"], keep=1)
        written.rename(folder / "ck")
    elif kind in ("resume-flip", "run-exists"):
        shutil.copytree(made["ckpt"].parents[1], folder / "run")
        if kind == "resume-flip":
            (ckpt,) = (folder / "run" / "checkpoints").iterdir()
            data = bytearray((ckpt / "checkpoint.pt").read_bytes())
            data[len(data) // 2] ^= 0xFF
            (ckpt / "checkpoint.pt").write_bytes(bytes(data))
    elif kind == "maze-ckpt":  # a tiny maze model, trained here: the ensemble's other task
        done = _run([HRM, "train", "--config", "quickstart", *tiny.flags(folder, **SHORT), "--set", "data.task=maze",
                     "--set", "data.maze.size=4", "--set", "data.maze.min_path=1", "--out", str(folder / "run")],
                    folder)
        assert done.returncode == 0, done.stderr[-3000:]
        (last,) = sorted((folder / "run" / "checkpoints").iterdir())[-1:]
        last.rename(folder / "mz")
    elif kind == "maze":
        done = _run([HRM, "data", "build", "maze", "--num-train", "2", "--num-test", "2", "--maze-size", "6",
                     "--min-path", "1", "--out", str(folder / "maze")], folder)
        assert done.returncode == 0, done.stderr
    elif kind == "store":
        from hrm.artifacts import ArtifactStore

        store = ArtifactStore(str(folder / "store"))
        fill["aid"] = store.add(experiment="e", trial_id="t", hparams={}, checkpoint_dir=str(made["ckpt"]))
        (folder / "full").mkdir()
        (folder / "full" / "x").write_text("mine")
    return fill


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_input(case, made, tmp_path, tiny):
    kind, argv, piece = CASES[case]
    fill = _prepare(kind, made, tmp_path, tiny)
    program = {"hrm": [HRM], "tune": [sys.executable, str(ROOT / "ray_jobs" / "tune.py")],
               "train.py": [sys.executable, str(ROOT / "ray_jobs" / "train.py")],
               "evaluate.py": [sys.executable, str(ROOT / "ray_jobs" / "evaluate.py")]}[argv[0]]
    before = _tree(tmp_path)
    args = [x for a in argv[1:] for x in (tiny.flags(tmp_path, **SHORT) if a == "{tiny}" else [a.format(**fill)])]
    done = _run([*program, *args], tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, f"exit {done.returncode}: {done.stderr[-3000:]}"
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert piece.format(**fill) in lines[0], lines[0]
    assert _tree(tmp_path) == before, "a bad input wrote or changed files"


def test_the_catalogue_covers_every_category():
    counts: dict[str, int] = {}
    for case in CASES:
        counts[case.split(":")[0]] = counts.get(case.split(":")[0], 0) + 1
    assert set(counts) == {"config", "space", "flag", "data", "checkpoint", "out", "store"}
    assert min(counts.values()) >= 8, counts
