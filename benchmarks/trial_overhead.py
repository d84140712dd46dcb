"""Ray overhead per trial: a trial's wall time in the search driver minus the time its
training loop ran, for a trial that trains in its own process (budget.worker_group auto,
the default for one worker) and for one that fits a Ray Train worker group (always).

    python benchmarks/trial_overhead.py                  # smoke space, 4 trials per mode
    python benchmarks/trial_overhead.py --trials 5 --set overrides.train.steps=20

Both modes run the same FIFO search (same seed, so the same configs) one trial at a time
on one local Ray. Per trial, the driver's clock marks Tune's trial start and its end
(a Tune callback); the trial's last report carries `train_seconds`, the time `hrm.train`
spent in its loop (first step to last report). overhead = wall - train_seconds: actor or
worker-group start, imports, dataset open, model build, then teardown. The first trial of
each mode is the warm-up (imports into a fresh worker process, first dataset build).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def search(group: str, trials: int, sets: list[str], storage: str) -> list[dict]:
    import ray.tune

    from hrm.jobs import search_args
    from ray_jobs.tune import build_tuner

    class Clock(ray.tune.Callback):
        def __init__(self):
            self.rows: dict[str, dict] = {}

        def on_trial_start(self, iteration, trials, trial, **info):
            self.rows[trial.trial_id] = {"trial": trial.trial_id, "start": time.monotonic()}

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.rows[trial.trial_id]["train_seconds"] = result.get("train_seconds", 0.0)

        def on_trial_complete(self, iteration, trials, trial, **info):
            row = self.rows[trial.trial_id]
            row["wall"] = time.monotonic() - row.pop("start")
            row["overhead"] = row["wall"] - row["train_seconds"]

    argv = ["--smoke", "--storage", storage, "--name", group, "--num-samples", str(trials),
            "--set", "scheduler.type=fifo", "--set", f"budget.worker_group={group}", *sum((["--set", s] for s in sets), [])]
    _, space, name, storage = search_args(argv)
    clock = Clock()
    build_tuner(space, name, storage, False, extra_callbacks=(clock,)).fit()
    return list(clock.rows.values())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--set", action="append", default=[], help="more space edits for both searches")
    args = p.parse_args()
    import ray

    ray.init(address="local", num_cpus=2)
    try:
        with tempfile.TemporaryDirectory() as storage:
            for group in ("auto", "always"):
                rows = search(group, args.trials, args.set, storage)
                for row in rows:
                    print(json.dumps({"worker_group": group, **{k: round(v, 2) if isinstance(v, float) else v
                                                                for k, v in row.items()}}), flush=True)
                warm = [r["overhead"] for r in rows[1:]]
                print(json.dumps({"worker_group": group, "first_trial_overhead_s": round(rows[0]["overhead"], 2),
                                  "overhead_after_warmup_s": round(statistics.mean(warm), 2) if warm else None,
                                  "max_after_warmup_s": round(max(warm), 2) if warm else None}), flush=True)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
