"""`hrm eval`: one checkpoint, an artifact of the store, or an ensemble that votes."""

from __future__ import annotations

import argparse
import contextlib
import json
import re
from pathlib import Path

from hrm.cli_artifacts import DEFAULT_ROOT, store_of
from hrm.config import int_at_least
from hrm.errors import UsageError


def add_parser(sub) -> None:
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
    p.add_argument("--paths", type=int_at_least(1), default=1, metavar="K",
                   help="parallel latent paths per sample, the Q head choosing (path 0 is the plain one; default 1)")
    p.add_argument("--noise", type=float, default=0.0, metavar="SIGMA",
                   help="std of the Gaussian noise added to paths 1..K-1's latent after every segment")
    p.add_argument("--noise-on", choices=["L", "H", "HL"], default="L",
                   help="the latent that gets the noise: L (z_L, TRM's z; default), H (z_H, TRM's y) or both")
    p.add_argument("--noise-seed", type=int, default=0, help="seed of the paths' noise (default 0)")
    p.add_argument("--frontier", action="store_true",
                   help="pass@2 against inference FLOPs at Mmax 1, 2, 4, ... (up to --mmax, default 4x the training "
                        "Mmax) x views {1, --views} x paths {1, --paths}, and its Pareto front (JSON; frontier.json in --out)")
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
    p.set_defaults(func=run)



def run(args: argparse.Namespace) -> int:
    from hrm.evaluate import Paths
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
    if args.noise < 0 or args.noise != args.noise:
        raise UsageError(f"--noise {args.noise}: must be a number >= 0")
    if args.noise > 0 and args.paths < 2:
        raise UsageError("--noise needs --paths >= 2 (path 0 is always the noise-free one)")
    if args.frontier and args.render:
        raise UsageError("--frontier and --render: render pictures from one evaluation, without --frontier")
    if args.experiment and not args.ensemble:
        raise UsageError("--experiment names the experiment of --ensemble best-K; it needs --ensemble")
    with contextlib.ExitStack() as stack:
        if args.ensemble:
            paths, verified = _ensemble_members(args, stack), True
        elif args.artifact:
            paths, verified = [stack.enter_context(store_of(args).local_copy(args.artifact))[0]], True  # checked
        else:
            paths, verified = [args.checkpoint], False
        if args.frontier:
            return _frontier(args, paths if args.ensemble else paths[0], verified)
        result, split = evaluate_checkpoint(
            paths if args.ensemble else paths[0], data=args.data, split=args.split, device=args.device,
            verified=verified, mmax=args.mmax, batch_size=args.batch_size, limit=args.limit, views=args.views,
            ks=tuple(args.k), keep_examples=args.render_count if args.render else 0,
            paths=Paths(args.paths, args.noise, args.noise_on, args.noise_seed),
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


def _frontier(args: argparse.Namespace, checkpoints, verified: bool) -> int:
    from hrm.evaluate import Paths
    from hrm.inference import frontier, scaling_steps
    from hrm.storage import write_json

    grid = [Paths(1)] + ([Paths(args.paths, args.noise, args.noise_on, args.noise_seed)] if args.paths > 1 else [])
    found = frontier(checkpoints, views=[1, args.views], paths=grid, data=args.data, split=args.split,
                     device=args.device, verified=verified, batch_size=args.batch_size, limit=args.limit,
                     mmax=scaling_steps(args.mmax, 1) if args.mmax else None, ks=tuple(args.k))
    if args.out:
        write_json(Path(args.out) / "frontier.json", found)
    print(json.dumps(found))
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
            ids += store_of(args).best(args.experiment, args.metric, k=k).column("artifact_id").to_pylist()
        elif Path(item).is_dir():
            folders.append(item)
        else:
            ids.append(store_of(args).get(item)["artifact_id"])
    if len(set(ids)) != len(ids) or len(set(folders)) != len(folders):
        raise UsageError(f"--ensemble {' '.join(args.ensemble)}: a checkpoint is named twice")
    if len(ids) + len(folders) < 2:
        raise UsageError("--ensemble needs at least two checkpoints (for one, use --checkpoint or --artifact)")
    for folder in folders:
        from hrm.checkpoint import verify_checkpoint

        verify_checkpoint(folder)
    store = store_of(args) if ids else None
    return folders + [stack.enter_context(store.local_copy(i))[0] for i in ids]
