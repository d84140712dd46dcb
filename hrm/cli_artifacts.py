"""`hrm artifacts ...`: read-only views of the checkpoint store (its one writer is the search driver)."""

from __future__ import annotations

import argparse
import json
import os

from hrm.config import int_at_least
from hrm.errors import UsageError

DEFAULT_ROOT = "runs/artifacts"  # artifact store used when neither --root nor HRM_ARTIFACTS is given


def store_of(args: argparse.Namespace):
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

    store = store_of(args)
    rows = store.table(args.experiment)
    if args.experiment is not None and rows.num_rows == 0:
        known = ", ".join(store.experiments()) or "none"
        raise UsageError(f"no artifacts for experiment '{args.experiment}' in {store.root} (known experiments: {known})")
    _print_rows(rows, ["artifact_id", "experiment", "trial_id", "step"] + metric_columns(rows))
    return 0


def _cmd_artifacts_best(args: argparse.Namespace) -> int:
    from hrm.artifacts import metric_columns

    rows = store_of(args).best(args.experiment, args.metric, k=args.k, mode=args.mode)
    if args.json:
        plain = [{k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in r.items()} for r in rows.to_pylist()]
        print(json.dumps(plain))
    else:
        metric = args.metric if args.metric.startswith("metric.") else "metric." + args.metric
        others = [c for c in metric_columns(rows) if c != metric]
        _print_rows(rows, ["artifact_id", "trial_id", "step", metric] + others + ["path"])
    return 0


def _cmd_artifacts_export(args: argparse.Namespace) -> int:
    from hrm.storage import check_folder

    check_folder("dir", args.dir)  # before any copying
    store = store_of(args)
    row = store.get(args.id)
    print(json.dumps({"artifact_id": row["artifact_id"], "path": store.export(row["artifact_id"], args.dir)}))
    return 0


def _cmd_artifacts_verify(args: argparse.Namespace) -> int:
    store = store_of(args)
    row = store.get(args.id)
    ok = store.verify(row["artifact_id"])
    print(json.dumps({"artifact_id": row["artifact_id"], "ok": ok, "path": row["path"]}))
    return 0 if ok else 1


def add_parser(subparsers) -> None:
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
