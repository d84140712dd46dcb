"""Evaluate an artifact-index row on the cluster (a GPU when asked for).

    python ray_jobs/evaluate.py --artifacts runs/tune/artifacts --id 3f2a9c --views 8 --out eval_out
    ray job submit --working-dir . -- python ray_jobs/evaluate.py --artifacts s3://bucket/hrm/artifacts --id 3f2a9c --gpus 1

Runs `hrm.evaluate.run_eval` in one Ray task next to the data and prints the
metrics; with --out, writes metrics.json (and the ARC submission.json) there.
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

from hrm.config import int_at_least  # noqa: E402
from ray_jobs.common import ensure_importable  # noqa: E402


def evaluate_row(artifacts: str, artifact_id: str, views: int, limit: int, split: str, use_gpu: bool) -> dict:
    import torch

    from hrm.artifacts import ArtifactStore
    from hrm.data.build import ensure_dataset
    from hrm.data.loader import Split
    from hrm.evaluate import arc_submission, run_eval, task_eval

    device = torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")
    model, cfg, row = ArtifactStore(artifacts).load_model(artifact_id, device=str(device))
    data = Split.load(ensure_dataset(cfg.data), split)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    result = run_eval(model, data, batch_size=256, limit=limit, views=views, device=device, dtype=dtype)
    out = {"artifact_id": row["artifact_id"], "metrics": result.metrics}
    if data.meta["task"] == "arc":
        out["submission"] = arc_submission(task_eval(data), result)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifacts", required=True, help="artifact store root (path or URI)")
    p.add_argument("--id", required=True, help="artifact id (or a unique prefix)")
    p.add_argument("--views", type=int_at_least(1), default=1)
    p.add_argument("--limit", type=int_at_least(0), default=0)
    p.add_argument("--split", choices=["test", "train"], default="test")
    p.add_argument("--gpus", type=float, default=0.0)
    p.add_argument("--out", help="local folder for metrics.json / submission.json")
    p.add_argument("--address", default=os.environ.get("RAY_ADDRESS"))
    args = p.parse_args(argv)
    if args.views < 1:
        print("evaluate.py: error: --views must be >= 1", file=sys.stderr)
        return 2

    import ray

    ensure_importable()
    owns_ray = not ray.is_initialized()
    if owns_ray:
        ray.init(address=args.address)
    try:
        task = ray.remote(num_gpus=args.gpus, num_cpus=1)(evaluate_row)
        out = ray.get(task.remote(args.artifacts, args.id, args.views, args.limit, args.split, args.gpus > 0))
    finally:
        if owns_ray:
            ray.shutdown()
    if args.out:
        from hrm.evaluate import write_json

        write_json(Path(args.out) / "metrics.json", out["metrics"])
        if "submission" in out:
            write_json(Path(args.out) / "submission.json", out["submission"])
    print(json.dumps({"artifact_id": out["artifact_id"], **out["metrics"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
