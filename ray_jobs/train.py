"""One data-parallel Ray Train run of an hrm config (no search).

    python ray_jobs/train.py --config quickstart --num-workers 2 --cpus-per-worker 1
    ray job submit --working-dir . -- python ray_jobs/train.py --config sudoku_extreme --num-workers 8 --gpus-per-worker 1

Each worker runs `hrm.train.train` on global_batch/num_workers slots: the math of
one process with the same global batch. The same --name again continues the run.
"""

import argparse
import json
import os
import sys
from pathlib import Path

from hrm.config import ConfigError, anchor_paths, int_at_least, load_config, to_dict
from hrm.search import Budget


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="YAML file or shipped config name")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--name", help="run name (default: the config's name)")
    p.add_argument("--storage", default="runs/ray_train")
    p.add_argument("--num-workers", type=int_at_least(1), default=1)
    p.add_argument("--cpus-per-worker", type=float, default=1.0)
    p.add_argument("--gpus-per-worker", type=float, default=0.0)
    p.add_argument("--address", default=os.environ.get("RAY_ADDRESS"), help="Ray to join, e.g. auto (default: local)")
    args = p.parse_args(argv)
    try:
        cfg = anchor_paths(load_config(args.config, args.set), Path.cwd())
        budget = Budget(num_workers=args.num_workers, cpus_per_worker=args.cpus_per_worker,
                        gpus_per_worker=args.gpus_per_worker)
        if cfg.train.global_batch_size % args.num_workers:
            raise ConfigError(f"train.global_batch_size ({cfg.train.global_batch_size}) must be divisible by "
                              f"--num-workers ({args.num_workers})")
    except ConfigError as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        return 2

    import ray

    from ray_jobs.common import connect, trainer

    name, storage = args.name or cfg.name, args.storage
    storage = storage if "://" in storage else str(Path(storage).expanduser().resolve())
    owns_ray = connect(args.address, budget, prog="train.py",
                       fix="Lower --num-workers / --cpus-per-worker / --gpus-per-worker, or submit to a cluster.")
    if owns_ray is None:
        return 2
    try:
        config = {"cfg": to_dict(cfg), "out_dir": f"{storage}/{name}/hrm"}
        result = trainer(config, budget, name=name, storage_path=storage).fit()
    finally:
        if owns_ray:
            ray.shutdown()
    checkpoint = result.checkpoint.path if result.checkpoint else None
    print(json.dumps({"metrics": result.metrics, "checkpoint": checkpoint}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
