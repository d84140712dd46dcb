"""The `hrm` console script: data build, train, eval, model-info, artifacts, report, import.

Bad input ends with one line on stderr naming what was wrong and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from hrm import cli_artifacts, cli_data, cli_eval, cli_import
from hrm.config import ConfigError, builtin_configs, int_at_least, load_config
from hrm.errors import UsageError




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
    if args.resume and args.resume_from:
        raise UsageError("--resume and --resume-from: give one (--resume continues the run folder's own checkpoint)")
    check_folder("--out" if args.out else "train.out_dir", out)
    if cfg.data.path is None:
        check_folder("data.root", cfg.data.root)
    metrics = train_seeds(cfg, args.seeds, out_dir=out, resume=args.resume, resume_from=args.resume_from)
    print(json.dumps({k: round(v, 6) if isinstance(v, float) else v for k, v in metrics.items()}))
    return 0


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
    p.add_argument("--resume-from", metavar="CKPT",
                   help="start from this checkpoint folder: a run's continues where it stopped, an imported one "
                        "(hrm import) gives its weights to a new run from step 0")
    p.add_argument("--seeds", type=int_at_least(1), default=1, metavar="R",
                   help="train train.seed .. +R-1 in lockstep: metrics as mean and _std, one checkpoint of all")
    p.set_defaults(func=_cmd_train)

    for command in (cli_eval, cli_data, cli_artifacts, cli_import):
        command.add_parser(sub)
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
