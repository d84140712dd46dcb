"""One data-parallel Ray Train run of an hrm config (no search).

    python ray_jobs/train.py --config quickstart --num-workers 2 --cpus-per-worker 1
    ray job submit --working-dir . -- python ray_jobs/train.py --config sudoku_extreme --num-workers 8 --gpus-per-worker 1

Each worker runs `hrm.train.train` on global_batch/num_workers slots; gradients,
puzzle-table updates and metrics are summed across workers (gloo on CPU, NCCL on
GPU), so the math is that of one process with the same global batch. Re-running
the same --name continues from the last checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hrm.config import ConfigError, int_at_least, load_config, to_dict  # noqa: E402
from ray_jobs.common import (  # noqa: E402
    absolute_paths,
    ensure_importable,
    refuse_unplaceable,
    storage_root,
    train_worker,
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="YAML file or shipped config name")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--name", help="run name (default: the config's name)")
    p.add_argument("--storage", default=str(ROOT / "runs" / "ray_train"))
    p.add_argument("--num-workers", type=int_at_least(1), default=1)
    p.add_argument("--cpus-per-worker", type=float, default=1.0)
    p.add_argument("--gpus-per-worker", type=float, default=0.0)
    p.add_argument("--address", default=os.environ.get("RAY_ADDRESS"))
    args = p.parse_args(argv)
    try:
        cfg = absolute_paths(load_config(args.config, args.set))
        if args.num_workers < 1 or args.cpus_per_worker < 0 or args.gpus_per_worker < 0:
            raise ConfigError("--num-workers must be >= 1 and resources >= 0")
        if cfg.train.global_batch_size % args.num_workers:
            raise ConfigError(
                f"train.global_batch_size ({cfg.train.global_batch_size}) must be divisible by --num-workers ({args.num_workers})"
            )
    except ConfigError as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        return 2

    import ray
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    name = args.name or cfg.name
    storage = storage_root(args.storage)
    ensure_importable()
    owns_ray = not ray.is_initialized()
    if owns_ray:
        ray.init(address=args.address)
    try:
        if refuse_unplaceable(
            prog="train.py", owns_ray=owns_ray, what="this run", num_workers=args.num_workers,
            cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.gpus_per_worker,
            fix="Lower --num-workers / --cpus-per-worker / --gpus-per-worker, or submit to a cluster.",
        ):
            return 2
        trainer = TorchTrainer(
            train_worker,
            train_loop_config={
                "cfg": to_dict(cfg),
                "out_dir": f"{storage}/{name}/hrm",
                "cpus_per_worker": args.cpus_per_worker,
            },
            scaling_config=ScalingConfig(
                num_workers=args.num_workers,
                use_gpu=args.gpus_per_worker > 0,
                resources_per_worker={"CPU": args.cpus_per_worker, "GPU": args.gpus_per_worker},
            ),
            run_config=RunConfig(name=name, storage_path=storage, checkpoint_config=CheckpointConfig(num_to_keep=2)),
        )
        result = trainer.fit()
    finally:
        if owns_ray:
            ray.shutdown()
    print(json.dumps({"metrics": result.metrics, "checkpoint": result.checkpoint.path if result.checkpoint else None}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
