"""`hrm eval` in a Ray task, e.g. of an artifact-index row on a cluster's GPU:

    ray job submit --working-dir . -- python ray_jobs/evaluate.py --gpus 1 --root s3://bucket/hrm/artifacts --artifact 3f2a9c --views 8

Every `hrm eval` option works; its output (metrics, --out, --render) is the task's.
"""

import sys

from hrm.cli import main as hrm
from hrm.config import ConfigError
from hrm.jobs import evaluate_args, exit_now
from hrm.search import Budget


def main(argv: list[str] | None = None) -> int:
    try:  # bad options or a missing store, or a budget this Ray can never place: before any work
        args, hrm_argv = evaluate_args(argv, __doc__)
        import ray

        from ray_jobs.common import connect

        owns_ray = connect(args.address, Budget(gpus_per_worker=args.gpus), prog="evaluate.py",
                           fix="Lower --gpus, or submit to a cluster.")
    except ConfigError as exc:
        print(f"evaluate.py: error: {exc}", file=sys.stderr)
        return 2
    try:
        return ray.get(ray.remote(num_gpus=args.gpus, num_cpus=1)(hrm).remote(hrm_argv))
    finally:
        if owns_ray:
            ray.shutdown()


if __name__ == "__main__":
    exit_now(main())
