"""`hrm data build`: a dataset from a config, or from flags."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from hrm.config import ARCConfig, DataConfig, MazeConfig, SudokuConfig, int_at_least, load_config
from hrm.errors import UsageError
from hrm.storage import check_folder
from hrm.tasks import TASKS


def add_parser(sub) -> None:
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
                   help="hard: Sudoku-Extreme grade on the guess rating (docs/data.md); the build prints the ratings")
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
    p.set_defaults(func=run)



def run(args: argparse.Namespace) -> int:
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
    check_folder("--out" if args.out else "--root", out)  # a file, or a folder under a file: before the build
    theirs = sorted(p.name for p in out.iterdir() if p.name not in DATASET_FILES) if out.is_dir() else []
    if theirs and not args.force:
        raise UsageError(f"--out {out} holds files that are not a dataset's ({', '.join(theirs[:3])}"
                         f"{', ...' if len(theirs) > 3 else ''}): choose an empty or new folder, or pass --force "
                         f"to write train.arrow and test.arrow beside them")
    build_dataset(cfg, out, workers=args.workers)
    print(json.dumps({"path": str(out)}))
    return 0
