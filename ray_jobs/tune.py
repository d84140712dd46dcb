"""The main job: search HRM hyperparameters with Ray Tune + Optuna, ASHA on pass@2.

    python ray_jobs/tune.py                                    # laptop default (local Ray)
    ray job submit --working-dir . -- python ray_jobs/tune.py --space search_spaces/sudoku_extreme.yaml

Each trial is a Tune function trainable that runs a Ray Train `TorchTrainer`
(DDP over `budget.num_workers`, gloo on CPU, NCCL on GPU) around `hrm.train.train`.
Rank 0 reports the all-reduced evaluation metrics and the checkpoint; a
`TuneReportCallback` forwards them to Tune, where ASHA measures time in reported
eval rounds. Every checkpoint is also added to the Arrow-indexed artifact store
(`<storage>/artifacts`), which keeps the best per trial and per experiment. The
Optuna study lives in a journal file in the experiment folder, so it survives the
driver and can be browsed with optuna's tools.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python ray_jobs/tune.py` from a checkout without install
    sys.path.insert(0, str(ROOT))

from hrm.config import ConfigError, int_at_least  # noqa: E402
from hrm.search import SearchSpace, define_by_run, load_space  # noqa: E402
from ray_jobs.common import (  # noqa: E402
    ensure_importable,
    refuse_unplaceable,
    run_trial,
    storage_root,
)

DEFAULT_SPACE = ROOT / "search_spaces" / "quickstart.yaml"
# --smoke: seconds per trial on CPU (tiny model, 4x4 Sudoku, a few eval rounds).
SMOKE_OVERRIDES = [
    # Smoke trials are seconds long: whole-grid accuracy (pass@2) is still 0 for
    # every trial (measured), so this plumbing check ranks by token accuracy.
    "metric=token_accuracy",
    "budget.num_samples=4",
    "budget.max_concurrent_trials=1",
    "budget.num_workers=1",
    "budget.cpus_per_worker=1",
    "scheduler.grace_period=1",
    "scheduler.reduction_factor=2",
    "scheduler.max_t=3",
]
SMOKE_BASE = {
    "model.hidden_size": 32,
    "model.num_heads": 4,
    "model.H_layers": 1,
    "model.L_layers": 1,
    "data.num_train": 200,
    "data.num_test": 50,
    "data.sudoku.size": 6,
    "data.sudoku.difficulty": "easy",
    "data.sudoku.blanks": 4,
    "train.global_batch_size": 32,
    "train.steps": 30,
    "train.eval_interval": 10,
    "train.log_interval": 10,
    "train.eval_samples": 50,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default=str(DEFAULT_SPACE), help="search-space YAML (default: quickstart)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a space key")
    p.add_argument("--name", help="experiment name (default: the space's name)")
    p.add_argument("--storage", default=str(ROOT / "runs" / "tune"), help="local folder or s3:// / gs:// URI")
    p.add_argument("--num-samples", type=int_at_least(1), help="number of trials (overrides budget.num_samples)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted experiment of this name")
    p.add_argument("--smoke", action="store_true", help="a tiny search that runs in about a minute on CPU")
    p.add_argument("--address", default=os.environ.get("RAY_ADDRESS"), help="Ray cluster (default: local)")
    p.add_argument("--num-cpus", type=int_at_least(1), help="CPUs for a local Ray (default: all)")
    return p.parse_args(argv)


def resolve_space(args: argparse.Namespace) -> SearchSpace:
    overrides = list(args.set)
    if args.smoke:
        overrides = SMOKE_OVERRIDES + [f"overrides.{k}={v}" for k, v in SMOKE_BASE.items()] + overrides
    if args.num_samples is not None:
        overrides.append(f"budget.num_samples={args.num_samples}")
    return load_space(args.space, overrides)


# ---------------------------------------------------------------------------
# the driver


def build_tuner(space: SearchSpace, name: str, storage: str, resume: bool):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search.optuna import OptunaSearch

    trainable = tune.with_parameters(run_trial, space=space, storage=storage, name=name)
    trainable = tune.with_resources(trainable, {"CPU": space.budget.trainable_cpus})
    exp_path = f"{storage}/{name}"
    if resume:
        return tune.Tuner.restore(exp_path, trainable=trainable, resume_errored=True)

    journal = None
    if "://" not in storage:
        Path(exp_path).mkdir(parents=True, exist_ok=True)
        journal = JournalStorage(JournalFileBackend(f"{exp_path}/optuna-journal.log"))
    searcher = OptunaSearch(
        space=functools.partial(define_by_run, space),
        metric=space.metric,
        mode=space.mode,
        sampler=optuna.samplers.TPESampler(seed=space.seed),
        study_name=name,
        storage=journal,
    )
    s = space.scheduler
    if s.type == "asha":
        scheduler = ASHAScheduler(
            time_attr=s.time_attr, max_t=s.max_t, grace_period=s.grace_period, reduction_factor=s.reduction_factor
        )
    else:
        scheduler = FIFOScheduler()
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=space.metric,
            mode=space.mode,
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=space.budget.num_samples,
            max_concurrent_trials=space.budget.max_concurrent_trials,
        ),
        run_config=tune.RunConfig(name=name, storage_path=storage, verbose=1),
    )


def summarize(results, space: SearchSpace, name: str, storage: str) -> dict[str, Any]:
    from hrm.artifacts import ArtifactStore

    metric = space.metric
    stopped_early, completed = 0, 0
    for r in results:
        rounds = (r.metrics or {}).get(space.scheduler.time_attr, 0)
        if r.error is None:
            completed += 1
            if rounds < space.scheduler.max_t:
                stopped_early += 1
    errors = [str(r.error).strip().splitlines()[-1][:300] for r in results if r.error is not None]
    try:
        best = results.get_best_result(metric=metric, mode=space.mode, scope="all")
    except RuntimeError:  # no trial reported the metric (all failed)
        best = None
    rows = []
    if best is not None:
        store = ArtifactStore(f"{storage}/artifacts")
        store.compact(name)  # one index part per experiment for direct readers
        rows = store.best(name, metric, k=1, mode=space.mode).to_pylist()
    return {
        "experiment": name,
        "trials": len(results),
        "completed": completed,
        "stopped_early": stopped_early,
        "errors": len(errors),
        "error_messages": errors,
        "best_trial": best.path if best is not None else None,
        "best_config": dict(best.config or {}) if best is not None else None,
        "best_metrics": {k: (best.metrics or {}).get(k) for k in (metric, "exact_accuracy", "step", "eval_round")}
        if best is not None
        else None,
        "best_artifact": {k: v for k, v in rows[0].items() if not k.endswith("_json")} if rows else None,
        "tensorboard": f"tensorboard --logdir {storage}/{name}",
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        space = resolve_space(args)
    except ConfigError as exc:  # bad space: fail before Ray starts
        print(f"tune.py: error: {exc}", file=sys.stderr)
        return 2
    name = args.name or (f"{space.name}-smoke" if args.smoke else space.name)
    storage = storage_root(args.storage)
    exp_path = f"{storage}/{name}"
    if args.resume and "://" not in storage and not Path(exp_path).exists():
        print(f"tune.py: error: --resume: no experiment at {exp_path}", file=sys.stderr)
        return 2
    if not args.resume and "://" not in storage and Path(exp_path, "tuner.pkl").exists():
        print(f"tune.py: error: experiment {exp_path} exists: pass --resume or another --name", file=sys.stderr)
        return 2

    import ray

    start = time.monotonic()
    ensure_importable()
    owns_ray = not ray.is_initialized()  # tests (and notebooks) may have connected already
    if owns_ray:
        ray.init(address=args.address, num_cpus=args.num_cpus if not args.address else None)
    try:
        b = space.budget
        if refuse_unplaceable(
            prog="tune.py", owns_ray=owns_ray, num_workers=b.num_workers, cpus_per_worker=b.cpus_per_worker,
            gpus_per_worker=b.gpus_per_worker, driver_cpus=b.trainable_cpus,
            fix="Lower budget.num_workers / cpus_per_worker / gpus_per_worker "
                "(e.g. --set budget.gpus_per_worker=0), or submit to a cluster.",
        ):
            return 2
        print(f"[tune] experiment {name}: {space.budget.num_samples} trials of {Path(space.base).name}, "
              f"metric {space.metric} ({space.mode}), storage {storage}", flush=True)
        tuner = build_tuner(space, name, storage, args.resume)
        results = tuner.fit()
        summary = summarize(results, space, name, storage)
    finally:
        if owns_ray:
            ray.shutdown()
    summary["seconds"] = round(time.monotonic() - start, 1)
    print("[tune] done: " + json.dumps(summary, default=str, indent=1), flush=True)
    return 0 if summary["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
