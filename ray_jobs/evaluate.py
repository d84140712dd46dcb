"""`hrm eval` in a Ray task, e.g. of an artifact-index row on a cluster's GPU:

    ray job submit --working-dir . -- python ray_jobs/evaluate.py --gpus 1 --root s3://bucket/hrm/artifacts --artifact 3f2a9c --views 8

Every `hrm eval` option works; its output (metrics, --out, --render) is the task's.
"""

import argparse
import os
import sys

from hrm.cli import main as hrm, make_parser
from hrm.search import Budget


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gpus", type=float, default=0.0, help="GPUs for the task (it evaluates on CUDA when > 0)")
    p.add_argument("--address", default=os.environ.get("RAY_ADDRESS"), help="Ray to join, e.g. auto (default: local)")
    args, rest = p.parse_known_args(argv)
    rest += ["--device", "cuda" if args.gpus > 0 else "cpu"]
    make_parser().parse_args(["eval", *rest])  # bad options end here (exit 2), before Ray starts

    import ray

    from ray_jobs.common import connect

    owns_ray = connect(args.address, Budget(gpus_per_worker=args.gpus), prog="evaluate.py",
                       fix="Lower --gpus, or submit to a cluster.")
    if owns_ray is None:
        return 2
    try:
        return ray.get(ray.remote(num_gpus=args.gpus, num_cpus=1)(hrm).remote(["eval", *rest]))
    finally:
        if owns_ray:
            ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
