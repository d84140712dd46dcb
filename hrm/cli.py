"""The `hrm` console script: data build, train, eval, model-info, artifacts, report.

Bad input ends with one line on stderr naming what was wrong and exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
from dataclasses import replace
from pathlib import Path

from hrm.config import (
    ARCConfig,
    ConfigError,
    DataConfig,
    MazeConfig,
    SudokuConfig,
    builtin_configs,
    int_at_least,
    load_config,
)
from hrm.tasks import TASKS


DEFAULT_ROOT = "runs/artifacts"  # artifact store used when neither --root nor HRM_ARTIFACTS is given


class UsageError(Exception):
    """Bad command-line input (exit code 2)."""


class Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (argparse prints the whole usage first)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config", required=True, help=f"YAML file or a shipped config name ({', '.join(builtin_configs())})"
    )
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. model.H_cycles=3")


def _cmd_model_info(args: argparse.Namespace) -> int:
    from hrm.dataset import task_spec
    from hrm.model import build_model, count_parameters, flops_per_segment

    cfg = load_config(args.config, args.set)
    spec = task_spec(cfg.data)
    model = build_model(cfg, {"vocab_size": spec.vocab_size, "seq_len": spec.seq_len, "num_puzzle_ids": spec.num_puzzle_ids})
    info = {
        "arch": cfg.model.arch,
        "parameters": count_parameters(model),
        "puzzle_table_rows": spec.num_puzzle_ids if cfg.model.puzzle_emb else 0,
        "puzzle_table_bytes": spec.num_puzzle_ids * cfg.model.hidden_size * 4 if cfg.model.puzzle_emb else 0,
        "vocab_size": spec.vocab_size,
        "seq_len": spec.seq_len,
        "flops_per_segment": flops_per_segment(cfg.model, spec.seq_len, spec.vocab_size, training=True),
        "flops_per_eval_segment": flops_per_segment(cfg.model, spec.seq_len, spec.vocab_size, training=False),
    }
    print(json.dumps(info))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from hrm.storage import check_folder
    from hrm.seeds import train_seeds

    cfg = load_config(args.config, args.set)
    out = args.out or cfg.train.out_dir
    if args.resume and not Path(out).exists():
        raise UsageError(f"--resume: run folder {out} does not exist")
    check_folder("--out" if args.out else "train.out_dir", out)
    if cfg.data.path is None:
        check_folder("data.root", cfg.data.root)
    metrics = train_seeds(cfg, args.seeds, out_dir=out, resume=args.resume)
    print(json.dumps({k: round(v, 6) if isinstance(v, float) else v for k, v in metrics.items()}))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from hrm.inference import evaluate_checkpoint, result_files
    from hrm.storage import write_json
    from hrm.storage import check_folder

    if args.checkpoint and not Path(args.checkpoint).exists():
        raise UsageError(f"--checkpoint {args.checkpoint} does not exist")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UsageError(f"--device cuda: no CUDA device here (torch {torch.__version__}); use --device cpu")
    for flag in ("out", "render"):
        if getattr(args, flag):
            check_folder(f"--{flag}", getattr(args, flag))
    if args.data and not Path(args.data).is_dir():
        raise UsageError(f"--data {args.data} is not a dataset folder")
    if args.experiment and not args.ensemble:
        raise UsageError("--experiment names the experiment of --ensemble best-K; it needs --ensemble")
    with contextlib.ExitStack() as stack:
        if args.ensemble:
            paths, verified = _ensemble_members(args, stack), True
        elif args.artifact:
            paths, verified = [stack.enter_context(_store(args).local_copy(args.artifact))[0]], True  # checked
        else:
            paths, verified = [args.checkpoint], False
        result, split = evaluate_checkpoint(
            paths if args.ensemble else paths[0], data=args.data, split=args.split, device=args.device,
            verified=verified, mmax=args.mmax, batch_size=args.batch_size, limit=args.limit, views=args.views,
            ks=tuple(args.k), keep_examples=args.render_count if args.render else 0,
        )
    task = split.meta["task"]
    if args.render:
        from hrm import tasks
        from hrm.render import save_png

        picture = tasks.get(task).picture
        for i, ex in enumerate(result.examples):
            save_png(picture(ex["input"], ex["label"], ex["pred"]), Path(args.render) / f"{task}_{i:03d}.png")
    if args.out:
        for name, content in result_files(result, split).items():
            write_json(Path(args.out) / name, content)
    print(json.dumps(result.metrics))
    return 0


_BEST_RE = re.compile(r"best-(\d+)")


def _ensemble_members(args: argparse.Namespace, stack: contextlib.ExitStack) -> list[str]:
    """Local, checked checkpoint folders of --ensemble's items: checkpoint folders, artifact ids
    (or unique prefixes) of the store at --root, and best-K (the experiment's K best by
    --metric, as `hrm artifacts best` lists them)."""
    ids: list[str] = []
    folders: list[str] = []
    for item in args.ensemble:
        best = _BEST_RE.fullmatch(item)
        if best:
            if not args.experiment:
                raise UsageError(f"--ensemble {item}: best-K needs --experiment (the experiment to take them from)")
            k = int(best.group(1))
            if k < 1:
                raise UsageError(f"--ensemble {item}: K must be >= 1")
            ids += _store(args).best(args.experiment, args.metric, k=k).column("artifact_id").to_pylist()
        elif Path(item).is_dir():
            folders.append(item)
        else:
            ids.append(_store(args).get(item)["artifact_id"])
    if len(set(ids)) != len(ids) or len(set(folders)) != len(folders):
        raise UsageError(f"--ensemble {' '.join(args.ensemble)}: a checkpoint is named twice")
    if len(ids) + len(folders) < 2:
        raise UsageError("--ensemble needs at least two checkpoints (for one, use --checkpoint or --artifact)")
    for folder in folders:
        from hrm.checkpoint import verify_checkpoint

        verify_checkpoint(folder)
    store = _store(args) if ids else None
    return folders + [stack.enter_context(store.local_copy(i))[0] for i in ids]


def _cmd_data_build(args: argparse.Namespace) -> int:
    from hrm import tasks
    from hrm.dataset import DATASET_FILES, build_dataset, dataset_dir

    if args.config:
        cfg = load_config(args.config, args.set).data
    else:
        if args.from_csv and len(args.from_csv) != 2:
            raise UsageError("--from-csv takes two files: TRAIN_CSV TEST_CSV")
        if args.from_csv and args.task != "sudoku":
            raise UsageError("--from-csv is the published Sudoku format: use it with task 'sudoku'")
        train_csv, test_csv = args.from_csv if args.from_csv else (None, None)
        num_aug = tasks.get(args.task).default_aug if args.num_aug is None else args.num_aug
        cfg = DataConfig(
            task=args.task,
            root=args.root,
            seed=args.seed,
            num_train=args.num_train,
            num_test=args.num_test,
            num_aug=num_aug,
            sudoku=SudokuConfig(
                size=args.size, difficulty=args.difficulty, blanks=args.blanks, train_csv=train_csv, test_csv=test_csv
            ),
            maze=MazeConfig(size=args.maze_size, min_path=args.min_path),
            arc=ARCConfig(
                version=args.version,
                extra_versions=tuple(args.extra_version),
                extra_dirs=tuple(args.extra_dir),
                translate=not args.no_translate,
            ),
        )
        for d in cfg.arc.extra_dirs:
            if not Path(d).is_dir():
                raise UsageError(f"--extra-dir {d} is not a folder")
    if args.out:
        cfg = replace(cfg, path=args.out)
    out = dataset_dir(cfg)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder")
    theirs = sorted(p.name for p in out.iterdir() if p.name not in DATASET_FILES) if out.is_dir() else []
    if theirs and not args.force:
        raise UsageError(f"--out {out} holds files that are not a dataset's ({', '.join(theirs[:3])}"
                         f"{', ...' if len(theirs) > 3 else ''}): choose an empty or new folder, or pass --force "
                         f"to write train.arrow and test.arrow beside them")
    build_dataset(cfg, out, workers=args.workers)
    print(json.dumps({"path": str(out)}))
    return 0


# ---------------------------------------------------------------------------
# `hrm artifacts ...`: read-only views of the store (its one writer is the search driver)

def _store(args: argparse.Namespace):
    from hrm.artifacts import ArtifactStore

    store = ArtifactStore(args.root or os.environ.get("HRM_ARTIFACTS") or DEFAULT_ROOT)
    if not store.exists():
        raise UsageError(f"no artifact store at {store.root} (set --root or HRM_ARTIFACTS)")
    return store


def _print_rows(rows, columns: list[str]) -> None:
    from hrm.artifacts import METRIC
    from hrm.runlog import format_table

    header = [c[len(METRIC):] if c.startswith(METRIC) else c for c in columns]
    print(format_table(header, [list(r) for r in zip(*(rows[c].to_pylist() for c in columns))]))


def _cmd_artifacts_list(args: argparse.Namespace) -> int:
    from hrm.artifacts import metric_columns

    store = _store(args)
    rows = store.table(args.experiment)
    if args.experiment is not None and rows.num_rows == 0:
        known = ", ".join(store.experiments()) or "none"
        raise UsageError(f"no artifacts for experiment '{args.experiment}' in {store.root} (known experiments: {known})")
    _print_rows(rows, ["artifact_id", "experiment", "trial_id", "step"] + metric_columns(rows))
    return 0


def _cmd_artifacts_best(args: argparse.Namespace) -> int:
    from hrm.artifacts import metric_columns

    rows = _store(args).best(args.experiment, args.metric, k=args.k, mode=args.mode)
    if args.json:
        plain = [{k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in r.items()} for r in rows.to_pylist()]
        print(json.dumps(plain))
    else:
        metric = args.metric if args.metric.startswith("metric.") else "metric." + args.metric
        others = [c for c in metric_columns(rows) if c != metric]
        _print_rows(rows, ["artifact_id", "trial_id", "step", metric] + others + ["path"])
    return 0


def _cmd_artifacts_export(args: argparse.Namespace) -> int:
    store = _store(args)
    row = store.get(args.id)
    print(json.dumps({"artifact_id": row["artifact_id"], "path": store.export(row["artifact_id"], args.dir)}))
    return 0


def _cmd_artifacts_verify(args: argparse.Namespace) -> int:
    store = _store(args)
    row = store.get(args.id)
    ok = store.verify(row["artifact_id"])
    print(json.dumps({"artifact_id": row["artifact_id"], "ok": ok, "path": row["path"]}))
    return 0 if ok else 1


def _add_artifacts_cli(subparsers) -> None:
    root_help = f"store root: path or URI (default: $HRM_ARTIFACTS or {DEFAULT_ROOT})"
    sub = subparsers.add_parser("artifacts", help="query the checkpoint store").add_subparsers(
        dest="artifacts_command", required=True
    )
    p = sub.add_parser("list", help="artifacts as a table")
    p.add_argument("--root", help=root_help)
    p.add_argument("--experiment")
    p.set_defaults(func=_cmd_artifacts_list)

    p = sub.add_parser("best", help="the top-k artifacts of an experiment by a metric")
    p.add_argument("--root", help=root_help)
    p.add_argument("--experiment", required=True)
    p.add_argument("--metric", required=True, help="e.g. pass@2, exact_accuracy")
    p.add_argument("-k", type=int_at_least(1), default=1)
    p.add_argument("--mode", choices=["max", "min"], default="max")
    p.add_argument("--json", action="store_true", help="full rows as JSON")
    p.set_defaults(func=_cmd_artifacts_best)

    p = sub.add_parser("export", help="copy a checkpoint folder out (sha256-checked)")
    p.add_argument("id", help="artifact id or a unique prefix")
    p.add_argument("dir", help="new or empty local folder")
    p.add_argument("--root", help=root_help)
    p.set_defaults(func=_cmd_artifacts_export)

    p = sub.add_parser("verify", help="check a stored checkpoint against its sha256 (exit 1 if it fails)")
    p.add_argument("id", help="artifact id or a unique prefix")
    p.add_argument("--root", help=root_help)
    p.set_defaults(func=_cmd_artifacts_verify)


def _cmd_report(args: argparse.Namespace) -> int:
    from hrm.report import write_report

    report = write_report(args.root, args.experiment, args.out)
    print(f"[report] {report['out']}/report.md")
    return 0


def _add_report_cli(subparsers) -> None:
    p = subparsers.add_parser("report", help="what a search found and which differences are real at its noise")
    p.add_argument("experiment", help="the experiment's name (tune.py --name; default there: the space's name)")
    p.add_argument("--root", default="runs/tune", help="the search's storage: path or URI (default: runs/tune)")
    p.add_argument("--out", help="report folder (default: <root>/<experiment>/report)")
    p.set_defaults(func=_cmd_report)


def make_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="hrm", description="Hierarchical Reasoning Models")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("model-info", help="parameters, puzzle-table rows and FLOPs of a config (JSON)")
    _add_config_args(p)
    p.set_defaults(func=_cmd_model_info)

    p = sub.add_parser("train", help="train one model in this process")
    _add_config_args(p)
    p.add_argument("--out", help="run folder (default: train.out_dir)")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's latest checkpoint")
    p.add_argument("--seeds", type=int_at_least(1), default=1, metavar="R",
                   help="train train.seed .. +R-1 in lockstep: metrics as mean and _std, one checkpoint of all")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", help="checkpoint folder (runs/X/checkpoints/step_N)")
    which.add_argument("--artifact", metavar="ID", help="artifact id (or a unique prefix) in the store at --root")
    which.add_argument("--ensemble", nargs="+", metavar="ITEM",
                       help="vote across checkpoints and their views: checkpoint folders, artifact ids, or best-K "
                            "(the K best of --experiment by --metric)")
    p.add_argument("--root", help="artifact store for --artifact/--ensemble: path or URI "
                                  f"(default: $HRM_ARTIFACTS or {DEFAULT_ROOT})")
    p.add_argument("--experiment", help="the experiment of --ensemble best-K")
    p.add_argument("--metric", default="pass@2", help="what --ensemble best-K ranks by (default: pass@2)")
    p.add_argument("--mmax", type=int_at_least(1), metavar="N",
                   help="segments each sample runs (model.eval_halt_max_steps; default: the checkpoint's)")
    p.add_argument("--data", help="dataset folder (default: the one in the checkpoint's config)")
    p.add_argument("--split", choices=["test", "train"], default="test")
    p.add_argument("--limit", type=int_at_least(0), default=0, help="first N rows only (0 = all)")
    p.add_argument("--views", type=int_at_least(1), default=1, help="test-time-augmented views voted per question")
    p.add_argument("-k", type=int_at_least(1), action="append", default=[1, 2], help="also report pass@k (repeatable)")
    p.add_argument("--batch-size", type=int_at_least(1), default=256)
    p.add_argument("--render", metavar="DIR", help="write PNG pictures of predictions here")
    p.add_argument("--render-count", type=int_at_least(0), default=8)
    p.add_argument("--out", metavar="DIR", help="write metrics.json (and submission.json for ARC) here")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.set_defaults(func=_cmd_eval)

    data = sub.add_parser("data", help="datasets").add_subparsers(dest="data_command", required=True)
    p = data.add_parser("build", help="build a dataset (from a config, or from flags)")
    p.add_argument("task", nargs="?", default="sudoku", choices=list(TASKS))
    p.add_argument("--config", help="build the dataset a train config describes")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", help="output folder (default: <root>/<task>-<options hash>)")
    p.add_argument("--force", action="store_true", help="build into an --out that holds other files (kept)")
    p.add_argument("--root", default="data")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int_at_least(1), metavar="N",
                   help="processes that generate Sudoku and mazes (default: one per core, at most 16; the "
                        "output does not depend on it); ARC builds vectorised in one process")
    p.add_argument("--num-train", type=int_at_least(1), default=1000, help="sudoku/maze: puzzles in the train split")
    p.add_argument("--num-test", type=int_at_least(1), default=1000, help="sudoku/maze: puzzles in the test split")
    p.add_argument("--num-aug", type=int_at_least(0), help="augmented variants per puzzle (default: "
                   + ", ".join(f"{t.name} {t.default_aug}" for t in TASKS.values()) + ")")
    g = p.add_argument_group("sudoku")
    g.add_argument("--size", type=int, choices=[4, 6, 9], default=9)
    g.add_argument("--difficulty", choices=["easy", "minimal", "hard"], default="hard",
                   help="hard: Sudoku-Extreme grade on the guess rating (see README); the build prints the ratings")
    g.add_argument("--blanks", type=int_at_least(1), help="cells to blank for --difficulty easy")
    g.add_argument("--from-csv", nargs="+", metavar="CSV", help="published format: TRAIN_CSV TEST_CSV")
    g = p.add_argument_group("maze")
    g.add_argument("--maze-size", type=int, default=30)
    g.add_argument("--min-path", type=int_at_least(1), default=110, help="keep mazes whose shortest path has more moves")
    g = p.add_argument_group("arc")
    g.add_argument("--version", choices=["arc-agi-1", "arc-agi-2"], default="arc-agi-1")
    g.add_argument("--extra-version", action="append", default=[], choices=["arc-agi-1", "arc-agi-2"])
    g.add_argument("--extra-dir", action="append", default=[], metavar="DIR", help="folder of ARC task JSON to train on")
    g.add_argument("--no-translate", action="store_true")
    p.set_defaults(func=_cmd_data_build)

    _add_artifacts_cli(sub)
    _add_report_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, UsageError, FileNotFoundError, ValueError) as exc:
        if os.environ.get("HRM_DEBUG"):
            raise
        print(f"hrm: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hrm: interrupted", file=sys.stderr)
        return 130


def exit_now(code: int) -> None:
    """End a command-line process with `code`, skipping interpreter teardown: pyarrow's
    native thread pools can abort it there (SIGABRT, "terminate called without an active
    exception"; a bare pq.read_table script aborted in 50 of 80 runs on a loaded 2-core
    machine, pyarrow 24-26). Output is flushed first; every file we write is closed by then."""
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run() -> None:
    """The `hrm` console script."""
    exit_now(main())


if __name__ == "__main__":
    run()
