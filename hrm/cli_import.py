"""`hrm import {hrm,trm,urm}`: a checkpoint of the published reference code as one of ours."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hrm.checkpoint import MANIFEST_FILE
from hrm.errors import UsageError


def add_parser(sub) -> None:
    from hrm.importer import FAMILIES

    p = sub.add_parser("import", help="convert a checkpoint of the published HRM, TRM or URM code into ours")
    p.add_argument("family", choices=FAMILIES, help="which reference wrote the checkpoint")
    p.add_argument("source", help="its release folder (weights file and its config) or its step_<N> (URM: step_<N>.pt) file")
    p.add_argument("--out", required=True, metavar="DIR", help="our checkpoint folder to write (must not exist)")
    p.add_argument("--config", help="our config of the task it was trained on, whose data section is used "
                                    "(default: the shipped config named by the reference's data path)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override in that config, e.g. data.path=data/sudoku-extreme")
    p.add_argument("--puzzle-table", choices=["keep", "mean"], default="keep",
                   help="keep: the reference's table row for row (sizes must match our dataset's identifiers); "
                        "mean: every row its row mean, as TRM's and URM's loaders do on a mismatch")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hrm.importer import import_checkpoint
    from hrm.storage import check_folder

    out = Path(args.out)
    check_folder("--out", out)
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"--out {out}: exists and is not empty; choose a new folder")
    folder = import_checkpoint(args.family, args.source, out, config=args.config, overrides=tuple(args.set),
                               puzzle_table=args.puzzle_table)
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    print(json.dumps({"checkpoint": str(folder), **manifest["imported"]}))
    return 0
