"""One data-parallel Ray Train run of an hrm config (no search); the same --name again resumes it.

    python ray_jobs/train.py --config quickstart --num-workers 2 --cpus-per-worker 1
    ray job submit --working-dir . -- python ray_jobs/train.py --config sudoku_extreme --num-workers 8 --gpus-per-worker 1

Each worker runs `hrm.seeds.train_seeds` on global_batch/num_workers slots: the math of one
process with the same global batch.
"""

import json
import sys

from hrm.config import ConfigError
from hrm.jobs import exit_now, train_args, worker_config


def main(argv: list[str] | None = None) -> int:
    try:  # bad input, or a budget this Ray can never place: nothing started, nothing written
        args, cfg, budget, storage = train_args(argv, __doc__)
        import ray

        from ray_jobs.common import connect, trainer

        owns_ray = connect(args.address, budget, prog="train.py",
                           fix="Lower --num-workers / --cpus-per-worker / --gpus-per-worker, or submit to a cluster.")
    except ConfigError as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        return 2
    name = args.name or cfg.name
    try:
        result = trainer(worker_config(cfg, f"{storage}/{name}", storage), budget, name=name,
                         storage_path=storage).fit()
    finally:
        if owns_ray:
            ray.shutdown()
    checkpoint = result.checkpoint.path if result.checkpoint else None
    print(json.dumps({"metrics": result.metrics, "checkpoint": checkpoint}, default=str))
    return 0


if __name__ == "__main__":
    exit_now(main())
