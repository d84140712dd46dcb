"""What a killed Ray Train worker costs a trial: one smoke trial run uninterrupted, then
the same seed with its worker SIGKILLed right after a checkpoint is indexed.

    python benchmarks/worker_loss.py                    # kill after the first checkpoint
    python benchmarks/worker_loss.py --set train.steps=60 --kill-after 2

Prints, per run, the trial's wall time (first to last result, Tune's time_total_s)
and, for the killed one, the gap from the kill to the first result of the restarted
worker group, and the steps it had to redo (those after the last checkpoint).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _results(storage: Path, name: str) -> list[dict]:
    (trial,) = [d for d in (storage / name).iterdir() if (d / "result.json").exists()]
    return [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--set", action="append", default=[], help="space override, as tune.py --set")
    p.add_argument("--kill-after", type=int, default=1, help="kill once this many checkpoints are indexed")
    args = p.parse_args()
    import ray
    from ray.util.state import list_actors

    from hrm.artifacts import ArtifactStore

    ray.init(address="local", num_cpus=2)
    gcs = ray.get_runtime_context().gcs_address
    storage = Path(tempfile.mkdtemp(prefix="worker-loss-"))
    sets = [x for s in ["budget.num_samples=1", "scheduler.type=fifo", "store.keep_per_trial=100", *args.set]
            for x in ("--set", s)]

    def search(name: str) -> subprocess.Popen:
        cmd = [sys.executable, str(ROOT / "ray_jobs" / "tune.py"), "--smoke", "--storage", str(storage),
               "--name", name, "--address", gcs, *sets]
        return subprocess.Popen(cmd, cwd=storage, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    try:
        plain = search("plain")
        assert plain.wait() == 0, plain.stdout.read()[-3000:]
        killed = search("killed")
        store = ArtifactStore(str(storage / "artifacts"))
        while not (store.exists() and "killed" in store.experiments()
                   and store.table("killed").num_rows >= args.kill_after):
            time.sleep(0.2)
        (worker,) = list_actors(address=gcs, filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")])
        os.kill(worker.pid, signal.SIGKILL)
        killed_at = time.time()
        assert killed.wait() == 0, killed.stdout.read()[-3000:]
    finally:
        ray.shutdown()
    out = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs", "runs": {}}
    for name in ("plain", "killed"):
        rows = _results(storage, name)
        out["runs"][name] = {"trial_s": round(rows[-1]["time_total_s"], 1), "final_step": rows[-1]["step"],
                             "token_accuracy": rows[-1]["token_accuracy"]}
    rows = _results(storage, "killed")
    after = [r for r in rows if r["timestamp"] >= killed_at]
    before = [r for r in rows if r["timestamp"] < killed_at]
    out["runs"]["killed"]["kill_to_next_result_s"] = round(after[0]["timestamp"] - killed_at, 1) if after else None
    out["runs"]["killed"]["last_checkpoint_step"] = before[-1]["step"] if before else 0
    out["extra_s"] = round(out["runs"]["killed"]["trial_s"] - out["runs"]["plain"]["trial_s"], 1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
