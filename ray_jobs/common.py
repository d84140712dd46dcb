"""What runs inside Ray for the jobs: the Ray Train worker and the Tune trial.

Kept in an importable module (not in a script's __main__) so Ray workers load it
by name: locally through PYTHONPATH (see `ensure_importable`), on a cluster
through `ray job submit --working-dir .`.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from hrm.config import Config, from_dict, to_dict
from hrm.search import SearchSpace, hparams, trial_config

ROOT = Path(__file__).resolve().parents[1]


def ensure_importable() -> None:
    """Local Ray workers inherit the driver's environment: let them import ray_jobs."""
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(ROOT) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *paths])


def absolute_paths(cfg: Config) -> Config:
    """Ray workers run in other folders: anchor relative data paths at the checkout,
    so every trial shares one dataset cache."""
    data = cfg.data
    root = data.root if Path(data.root).is_absolute() else str(ROOT / data.root)
    path = data.path if data.path is None or Path(data.path).is_absolute() else str(ROOT / data.path)
    return replace(cfg, data=replace(data, root=root, path=path))


def storage_root(storage: str) -> str:
    """Absolute local path or URI (Ray wants one or the other)."""
    return storage if "://" in storage else str(Path(storage).expanduser().resolve())


def resource_shortfall(
    nodes: list[dict[str, float]],
    *,
    num_workers: int,
    cpus_per_worker: float,
    gpus_per_worker: float,
    driver_cpus: float = 0.0,
    what: str = "a trial",
) -> str | None:
    """Why one run (a driver bundle plus `num_workers` worker bundles) can never be
    placed on `nodes` (each node's total resources, as `ray.nodes()` gives them),
    or None when it fits. Ray itself would just leave the run PENDING forever."""
    eps = 1e-9
    want = f"{num_workers} worker(s) x {cpus_per_worker:g} CPU" + (
        f" + {gpus_per_worker:g} GPU" if gpus_per_worker else ""
    )
    if driver_cpus:
        want += f", plus {driver_cpus:g} CPU for the trial itself"
    total_cpu = sum(n.get("CPU", 0.0) for n in nodes)
    total_gpu = sum(n.get("GPU", 0.0) for n in nodes)
    have = f"the cluster has {total_cpu:g} CPU and {total_gpu:g} GPU on {len(nodes)} node(s)"
    fits_one = any(
        n.get("CPU", 0.0) + eps >= cpus_per_worker and n.get("GPU", 0.0) + eps >= gpus_per_worker for n in nodes
    )
    if not fits_one:
        biggest = max(((n.get("CPU", 0.0), n.get("GPU", 0.0)) for n in nodes), default=(0.0, 0.0))
        return (
            f"{what} needs {want}, but no node can hold one worker "
            f"(the largest has {biggest[0]:g} CPU, {biggest[1]:g} GPU); {have}"
        )
    if total_cpu + eps < driver_cpus + num_workers * cpus_per_worker or total_gpu + eps < num_workers * gpus_per_worker:
        return f"{what} needs {want}, but {have}"
    return None


def started_ray_here() -> bool:
    """Whether this process started the Ray it is connected to (a local instance
    that will not grow), as opposed to joining a cluster, which may autoscale.
    `ray.init()` without an address joins a running local cluster if there is one,
    so the address alone does not tell. Ray has no public call for this; the
    private one is pinned with Ray, and anything unexpected counts as a cluster."""
    try:
        import ray._private.worker as worker

        return bool(worker._global_node is not None and worker._global_node.is_head())
    except Exception:  # a Ray without these internals: warn rather than refuse
        return False


def cluster_nodes() -> list[dict[str, float]]:
    """Total resources of each live node of the connected Ray cluster."""
    import ray

    return [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]


def refuse_unplaceable(*, prog: str, fix: str, owns_ray: bool, what: str = "a trial", **need: Any) -> bool:
    """Check `need` (resource_shortfall's keywords) against the connected cluster.
    On a Ray this process started, which will not grow, print `prog: error: ...`
    and return True (the caller exits 2 rather than hang); on a cluster, which may
    autoscale, print a warning and return False."""
    why = resource_shortfall(cluster_nodes(), what=what, **need)
    if why is None:
        return False
    if owns_ray and started_ray_here():
        print(f"{prog}: error: {why}. {fix}", file=sys.stderr)
        return True
    print(f"[{prog.removesuffix('.py')}] warning: {why}; it stays PENDING until nodes that fit join", flush=True)
    return False


def train_worker(config: dict[str, Any]) -> None:
    """Ray Train worker: one data-parallel rank of `hrm.train.train`."""
    import ray.train
    import torch

    from hrm.artifacts import ArtifactStore
    from hrm.train import CHECKPOINT_FILE, checkpoint_dirs, train

    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    # As many intra-op threads as CPUs this worker was given (1.9 -> 2):
    # oversubscribed OpenMP threads on a shared 2-core machine ran 10-25x slower.
    torch.set_num_threads(max(1, round(config["cpus_per_worker"])))
    cfg = from_dict(config["cfg"])
    out_dir = Path(config["out_dir"])
    # Tune restore: bring the trial's last reported checkpoint back into its run folder.
    # Every rank does it, so each finds it even when run folders are node-local.
    restored = ray.train.get_checkpoint()
    if restored is not None:
        with restored.as_directory() as d:
            dest = out_dir / "checkpoints" / f"step_{_checkpoint_step(Path(d) / CHECKPOINT_FILE):08d}"
            if not dest.exists():
                tmp = dest.with_name(f".{dest.name}.restore-{rank}")
                shutil.rmtree(tmp, ignore_errors=True)
                shutil.copytree(d, tmp)
                try:
                    os.replace(tmp, dest)
                except OSError:  # another rank on this node put the same files there first
                    shutil.rmtree(tmp, ignore_errors=True)
    store = ArtifactStore(config["artifacts"]) if rank == 0 and config.get("artifacts") else None

    def report(metrics: dict[str, float], ckpt_dir: str | None) -> None:
        checkpoint = None
        if rank == 0 and ckpt_dir is not None:
            checkpoint = ray.train.Checkpoint.from_directory(ckpt_dir)
        if store is not None and ckpt_dir is not None:
            store.add(
                experiment=config["experiment"],
                trial_id=config["trial_id"],
                step=int(metrics["step"]),
                eval_round=int(metrics["eval_round"]),
                hparams=config["hparams"],
                metrics=metrics,
                checkpoint_dir=ckpt_dir,
            )
            store.prune(
                config["experiment"],
                config["metric"],
                config["mode"],
                keep_per_trial=config["keep_per_trial"],
                keep_per_experiment=config["keep_per_experiment"],
            )
        ray.train.report(dict(metrics), checkpoint=checkpoint)

    resume = bool(checkpoint_dirs(out_dir))
    train(
        cfg,
        out_dir=out_dir,
        resume=resume,
        report=report,
        log=_say if rank == 0 else (lambda _m: None),
        tensorboard_dir=config.get("tensorboard_dir"),
    )


def _say(msg: str) -> None:
    # Not print(): Ray Train patches it to log *and* echo, which doubles every line.
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


def _checkpoint_step(path: Path) -> int:
    import torch

    return int(torch.load(path, map_location="cpu", weights_only=True)["step"])


def run_trial(config: dict[str, Any], *, space: SearchSpace, storage: str, name: str) -> None:
    """Tune function trainable: builds and fits one TorchTrainer."""
    import ray.tune
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    ctx = ray.tune.get_context()
    trial_id = ctx.get_trial_id()
    cfg = absolute_paths(trial_config(space, config))
    b = space.budget
    exp_dir = f"{storage}/{name}"
    # Tune's own folder for the trial (its HParams and result events live there).
    trial_dir = f"{exp_dir}/{Path(ctx.get_trial_dir()).name}"
    local = "://" not in storage
    worker_config = {
        "cfg": to_dict(cfg),
        "hparams": hparams(space, config),
        "experiment": name,
        "trial_id": trial_id,
        "metric": space.metric,
        "mode": space.mode,
        "keep_per_trial": 2,
        "keep_per_experiment": 5,
        "artifacts": f"{storage}/artifacts",
        # TensorBoard (scalars, prediction images), metrics.jsonl and the resumable
        # run live beside Tune's own files for the trial.
        "out_dir": f"{trial_dir}/hrm" if local else str(Path(ctx.get_trial_dir()) / "hrm"),
        # One TensorBoard run per trial: our scalars and pictures beside Tune's HParams.
        "tensorboard_dir": trial_dir if local else None,
        "cpus_per_worker": b.cpus_per_worker,
    }
    trainer = TorchTrainer(
        train_worker,
        train_loop_config=worker_config,
        scaling_config=ScalingConfig(
            num_workers=b.num_workers,
            use_gpu=b.gpus_per_worker > 0,
            resources_per_worker={"CPU": b.cpus_per_worker, "GPU": b.gpus_per_worker},
        ),
        run_config=RunConfig(
            name=trial_id,
            storage_path=f"{exp_dir}/train",
            callbacks=[TuneReportCallback()],
            checkpoint_config=CheckpointConfig(num_to_keep=1),
        ),
    )
    trainer.fit()


