"""The command lines of the Ray jobs (ray_jobs/*.py) and every check they make before Ray
starts, without Ray: a bad input ends here with one line and exit code 2, before any
cluster work, and `ray_jobs/` keeps only the calls into Ray."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hrm.artifacts import ArtifactStore, check_name
from hrm.cli import Parser, exit_now, make_parser  # noqa: F401 (exit_now: the jobs end through it)
from hrm.cli_artifacts import DEFAULT_ROOT
from hrm.config import Config, ConfigError, anchor_paths, int_at_least, load_config, to_dict
from hrm.runlog import check_wandb
from hrm.storage import check_storage, exists, is_uri, write_bytes
from hrm.search import Budget, SearchSpace, describe, hparams, with_rung_score
from hrm.search import load_space


def _parser(doc: str | None) -> argparse.ArgumentParser:
    p = Parser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--address", default=os.environ.get("RAY_ADDRESS"), help="Ray to join, e.g. auto (default: local)")
    return p


def storage_root(storage: str) -> str:
    """A URI as given, a local folder made absolute (Ray wants one or the other)."""
    return storage if "://" in storage else str(Path(storage).expanduser().resolve())


def search_args(argv: list[str] | None, doc: str | None = None) -> tuple[argparse.Namespace, SearchSpace, str, str]:
    """tune.py's arguments, the validated space (data paths anchored where the driver runs,
    as trials run in other folders), the checked experiment name and the storage root."""
    p = _parser(doc)
    p.add_argument("--space", default="quickstart", help="search-space YAML or shipped name (default: quickstart)")
    p.add_argument("--smoke", action="store_true", help="= --space smoke: 4 tiny trials, about 1.5 minutes on 2 CPU cores")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a space key")
    p.add_argument("--name", help="experiment name (default: the space's name)")
    p.add_argument("--storage", default="runs/tune", help="local folder or s3:// / gs:// URI")
    p.add_argument("--num-samples", type=int_at_least(1), help="number of trials (overrides budget.num_samples)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted experiment (trusted storage only)")
    p.add_argument("--num-cpus", type=int_at_least(1), help="CPUs for a local Ray (default: all)")
    args = p.parse_args(argv)
    edits = args.set + ([f"budget.num_samples={args.num_samples}"] if args.num_samples else [])
    space = load_space("smoke" if args.smoke else args.space, edits)
    try:
        name = check_name("--name", args.name or space.name)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    check_wandb(space.base_config.train.wandb)
    if space.budget.trainable_cpus <= 0:  # Tune refuses a trial that asks for no resources
        raise ConfigError(f"{space.source}: budget.trainable_cpus must be > 0 in a search (e.g. 0.1), "
                          f"got {space.budget.trainable_cpus:g}")
    storage = storage_root(args.storage)
    check_storage(storage)
    if args.resume != exists(f"{storage}/{name}/tuner.pkl"):
        why = "does not exist" if args.resume else "exists: pass --resume or another --name"
        raise ConfigError(f"experiment {storage}/{name} {why}")
    return args, dataclasses.replace(space, base_config=anchor_paths(space.base_config, Path.cwd())), name, storage


def worker_config(cfg: Config, run_dir: str, storage: str, hparams: dict | None = None,
                  rung: tuple | None = None, seeds: int = 1, runs: int = 1) -> dict:
    """What a Ray Train worker is given: the config, the folder its run files are mirrored to
    (`run_dir`, in the storage: workers write nothing a user needs on their own node), its
    HParams, the search's `SearchSpace.rung` (reports then carry ASHA's `rung_score`) and
    its seeds per trial.
    On object storage every node shares the datasets under <storage>/datasets. Every trial of
    an experiment shares its compiled blocks under <storage>/<experiment>/compile_cache
    (`hrm.compiled`), unless train.compile_cache names another place; `runs` (its number of
    trials) is train.compile_runs unless that was set above 1."""
    if is_uri(storage) and cfg.data.share is None:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, share=f"{storage}/datasets"))
    if cfg.train.compile_cache is None:
        shared = f"{run_dir.rstrip('/').rsplit('/', 1)[0]}/compile_cache"
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, compile_cache=shared))
    if cfg.train.compile_runs == 1:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, compile_runs=runs))
    if cfg.train.wandb is not None:  # one W&B run per trial, grouped by the experiment
        experiment, trial = run_dir.rstrip("/").rsplit("/", 2)[-2:]
        wandb = dataclasses.replace(cfg.train.wandb, group=cfg.train.wandb.group or experiment,
                                    name=cfg.train.wandb.name or trial)
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, wandb=wandb))
    return {"cfg": to_dict(cfg), "mirror": run_dir, "hparams": hparams, "rung": rung, "seeds": seeds}


def run_worker(config: dict, report: Callable[[dict, str | None], None], restored: Any,
               log: Callable[[str], None] | None) -> None:
    """One rank of `hrm.seeds.train_seeds` on a `worker_config`, the same code in a Ray Train worker
    and in a Tune trial that trains in its own process: `report(metrics, checkpoint_dir)`
    hands each evaluation to Ray; `restored` is Ray's checkpoint to resume from (or None).
    The run folder is node-local scratch, mirrored to the storage (checkpoints go through
    `report`), so a worker on any node writes where the user looks."""
    import torch

    from hrm.config import from_dict
    from hrm.storage import RUN_FILES, Mirror
    from hrm.seeds import train_seeds

    # As many intra-op threads as CPUs this worker was given (1.9 -> 2):
    # oversubscribed OpenMP threads on a shared machine run many times slower.
    torch.set_num_threads(max(1, round(config["cpus_per_worker"])))

    def scored(metrics: dict, ckpt_dir: str | None) -> None:
        report(with_rung_score(config.get("rung"), metrics), ckpt_dir)

    with restored.as_directory() if restored else contextlib.nullcontext() as resume_from, \
            tempfile.TemporaryDirectory(prefix="hrm-run-") as scratch:
        train_seeds(from_dict(config["cfg"]), config.get("seeds", 1), out_dir=f"{scratch}/hrm", resume_from=resume_from,
                    report=scored, log=log or (lambda _m: None), tensorboard_dir=scratch, hparams=config.get("hparams"),
                    mirror=Mirror(scratch, config["mirror"], only=RUN_FILES, skip=["hrm/checkpoints"]))


def index_checkpoint(space: SearchSpace, name: str, storage: str, trial_id: str, params: dict, path: str) -> None:
    """Copy a trial's reported checkpoint (`path` inside the storage's filesystem, as Ray
    reports it) into the artifact store, then prune it to the space's keep rules."""
    store = ArtifactStore(f"{storage}/artifacts")
    scheme = storage.split("://")[0] + "://" if is_uri(storage) else ""
    store.add(experiment=name, trial_id=trial_id, hparams=hparams(space, params), checkpoint_dir=scheme + path)
    store.prune(name, space.metric, space.mode, keep_per_trial=space.store.keep_per_trial,
                keep_per_experiment=space.store.keep_per_experiment)


def search_summary(space: SearchSpace, name: str, storage: str, trials: list[tuple[dict, str | None]]) -> dict:
    """The end-of-search summary from each trial's (last metrics, error or None) and the
    artifact store, whose leftover unindexed folders (a crash's) it sweeps first."""
    errors = [err.strip().splitlines()[-1][:300] for _, err in trials if err is not None]
    done = [metrics for metrics, err in trials if err is None]
    store = ArtifactStore(f"{storage}/artifacts")
    best = None
    if store.exists() and name in store.experiments():
        store.sweep(name)
        best = store.best(name, space.metric, k=1, mode=space.mode).to_pylist()[0]
    return {
        "experiment": name,
        "trials": len(trials),
        "completed": len(done),
        "stopped_early": sum(space.scheduler.stopped_early(m) for m in done),
        "errors": len(errors),
        "error_messages": errors,
        "best_trial": best and best["trial_id"],
        "best_hparams": best and json.loads(best["hparams_json"]),
        "best_metrics": best and json.loads(best["metrics_json"]),
        "best_artifact": best and {k: v for k, v in best.items()
                                   if not k.startswith(("hp.", "metric.", "hparams_", "metrics_"))},
        "tensorboard": f"tensorboard --logdir {storage}/{name}",
    }


def scaling_of(root: str, artifact_id: str, factor: int, views: list[int], paths: list, device: str) -> list[dict]:
    """Inference-time scaling of one stored checkpoint (`hrm.inference.inference_scaling`), run
    where Ray places it: it reads its own copy from the store."""
    from hrm.inference import inference_scaling

    with ArtifactStore(root).local_copy(artifact_id) as (folder, _row):
        return inference_scaling(folder, factor=factor, views=views, paths=paths, device=device, verified=True)


def scale_kept(space: SearchSpace, name: str, storage: str,
               run: Callable[[list[tuple]], list[list[dict]]]) -> dict[str, Any]:
    """The end of a search: the inference-compute frontier of the checkpoints the store kept,
    at Mmax 1, 2, 4, ... up to `store.scaling` x their training Mmax x `store.views` x
    `store.paths` x ensemble sizes (`run(jobs)` calls `scaling_of(*job)` for each, in Ray
    tasks with a trial's resources). Every point goes into the index
    (`metric.<metric>@mmax<N>[@views<V>@paths<K>@members<M>]`, and each row's own Pareto front
    as `frontier_json`) and into TensorBoard at <storage>/<name>/inference_scaling: a series
    per checkpoint against Mmax at its training setting, the metric against inference FLOPs
    with the search's Pareto front as a picture, and the front as a table. Returns
    {"inference_scaling": {"<trial>@<step>": {Mmax: metric}}, "inference_frontier": front}."""
    from hrm.compute import pareto_front
    from hrm.artifact_rows import index_values
    from hrm.inference import frontier_point

    store = ArtifactStore(f"{storage}/artifacts")
    if not space.store.scaling or not store.exists() or name not in store.experiments():
        return {"inference_scaling": {}, "inference_frontier": []}
    rows = store.table(name).to_pylist()
    device = "cuda" if space.budget.gpus_per_worker else "cpu"
    s = space.store
    measured = run([(store.root, r["artifact_id"], s.scaling, list(s.views), s.path_grid(), device) for r in rows])
    values = {r["artifact_id"]: index_values(m, space.metric) for r, m in zip(rows, measured)}
    points = {r["artifact_id"]: [{**frontier_point(p, space.metric), "plain": p["plain"]} for p in m]
              for r, m in zip(rows, measured)}
    store.annotate(name, {a: {**v, "frontier_json": json.dumps(pareto_front(points[a], space.mode))}
                          for a, v in values.items()})
    labels = {r["artifact_id"]: f"{r['trial_id']}@{r['step']}" for r in rows}
    every = [{**p, "checkpoint": labels[a]} for a, ps in points.items() for p in ps]
    front = pareto_front(every, space.mode)
    curves = {labels[r["artifact_id"]]: {p["mmax"]: p["metrics"][space.metric] for p in m if p["plain"]}
              for r, m in zip(rows, measured)}
    _scaling_tensorboard(curves, every, front, space.metric, f"{storage}/{name}/inference_scaling")
    return {"inference_scaling": curves, "inference_frontier": front}


def _scaling_tensorboard(curves: dict[str, dict[int, float]], points: list[dict], front: list[dict], metric: str,
                         remote: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on a cluster head
    import matplotlib.pyplot as plt
    from torch.utils.tensorboard import SummaryWriter

    from hrm.report_figures import frontier_table, pareto_figure
    from hrm.storage import Mirror

    with tempfile.TemporaryDirectory(prefix="hrm-scaling-") as tmp:
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        with SummaryWriter(tmp) as writer:
            for label, curve in curves.items():
                for mmax, value in sorted(curve.items()):
                    writer.add_scalar(f"inference_scaling/{metric}/{label}", value, mmax)
                ax.plot(sorted(curve), [curve[m] for m in sorted(curve)], marker="o", label=label)
            ax.set_xscale("log", base=2)
            mmaxes = sorted({m for curve in curves.values() for m in curve})
            ax.set_xticks(mmaxes, [str(m) for m in mmaxes])  # 1, 2, 4, 8 rather than 2^0 ... 2^3
            ax.minorticks_off()
            ax.set(xlabel="Mmax (segments at inference)", ylabel=metric, title="inference-time scaling")
            ax.legend(fontsize=7)
            fig.tight_layout()
            fig.savefig(f"{tmp}/inference_scaling.png")
            writer.add_figure("inference_scaling/picture", fig)
            pareto_figure(points, front, Path(tmp, "inference_frontier.png"), "inference FLOPs per question", metric,
                          f"{metric} against inference compute",
                          "a kept checkpoint at one Mmax x views x paths x members")
            writer.add_image("inference_frontier/picture", _png(f"{tmp}/inference_frontier.png"), dataformats="HWC")
            writer.add_text("inference_frontier/front", frontier_table(front, metric))
        Mirror(tmp, remote).push()


def _png(path: str):
    """An RGB array of a PNG (Pillow comes with tensorboard)."""
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def write_space(space: SearchSpace, name: str, storage: str) -> None:
    """`<storage>/<name>/space.json`: the space as `hrm report` reads it (`hrm.search.describe`)."""
    write_bytes(f"{storage}/{name}/space.json", json.dumps(describe(space), indent=1, default=str).encode())


def report_search(name: str, storage: str, log: Callable[[str], None]) -> str | None:
    """The end-of-search report (`hrm.report.write_report`); its folder, or None when it failed.
    A failure is one warning line: the search's results are stored already, and the line
    says how to make the report again."""
    from hrm.report import write_report

    try:
        return write_report(storage, name, log=log)["out"]
    except (ConfigError, OSError, ValueError) as exc:
        log(f"[tune] warning: the report failed ({exc}); rerun it with: hrm report {name} --root {storage}")
        return None


def make_private(*folders: str) -> None:
    """Create the local folders that do not exist yet, readable by the user alone (they will
    hold results and Ray's pickled experiment state); URIs are left to the object store."""
    for folder in folders:
        if not is_uri(folder) and not Path(folder).exists():  # a URI's "//" does not survive Path()
            Path(folder).mkdir(mode=0o700, parents=True)


def train_args(argv: list[str] | None, doc: str | None = None) -> tuple[argparse.Namespace, Config, Budget, str]:
    """ray_jobs/train.py's arguments, the validated config (data paths anchored here), its
    worker budget and the storage root."""
    p = _parser(doc)
    p.add_argument("--config", required=True, help="YAML file or shipped config name")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--name", help="run name (default: the config's name)")
    p.add_argument("--storage", default="runs/ray_train")
    p.add_argument("--num-workers", type=int_at_least(1), default=1)
    p.add_argument("--cpus-per-worker", type=float, default=1.0)
    p.add_argument("--gpus-per-worker", type=float, default=0.0)
    args = p.parse_args(argv)
    cfg = anchor_paths(load_config(args.config, args.set), Path.cwd())
    budget = Budget(num_workers=args.num_workers, cpus_per_worker=args.cpus_per_worker,
                    gpus_per_worker=args.gpus_per_worker, trainable_cpus=0.0)  # no Tune trial around it
    if cfg.train.global_batch_size % args.num_workers:
        raise ConfigError(f"train.global_batch_size ({cfg.train.global_batch_size}) must be divisible by "
                          f"--num-workers ({args.num_workers})")
    check_storage(storage_root(args.storage))
    return args, cfg, budget, storage_root(args.storage)


def evaluate_args(argv: list[str] | None, doc: str | None = None) -> tuple[argparse.Namespace, list[str]]:
    """ray_jobs/evaluate.py's own arguments and the `hrm eval` arguments it passes on
    (checked here, by the `hrm` parser, before Ray starts)."""
    p = _parser(doc)
    p.add_argument("--gpus", type=float, default=0.0, help="GPUs for the task (it evaluates on CUDA when > 0)")
    args, rest = p.parse_known_args(argv)
    rest = ["eval", *rest, "--device", "cuda" if args.gpus > 0 else "cpu"]
    parsed = make_parser().parse_args(rest)
    if parsed.artifact or parsed.ensemble:  # the store must be there before the Ray task would look
        root = parsed.root or os.environ.get("HRM_ARTIFACTS") or DEFAULT_ROOT
        try:
            there = ArtifactStore(root).exists()
        except (ValueError, OSError) as exc:  # an unknown scheme or an unreachable store
            raise ConfigError(f"--root {root}: not an artifact store ({' '.join(str(exc).split())[:200]})") from None
        if not there:
            raise ConfigError(f"--root {root}: no artifact store there (a search's <storage>/artifacts)")
    return args, rest
