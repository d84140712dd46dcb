"""The main job: search HRM hyperparameters with Ray Tune + Optuna, ASHA on the space's metric.

    python ray_jobs/tune.py                 # search_spaces/quickstart.yaml on a new local Ray
    python ray_jobs/tune.py --smoke         # = --space smoke: a 4-trial plumbing check
    ray job submit --working-dir . -- python ray_jobs/tune.py --space search_spaces/sudoku_extreme.yaml

A trial trains hrm.train.train (in its own process, or a TorchTrainer of several
workers); ASHA counts eval rounds. The driver alone writes the artifact index, prints the
trial table and, at the end, evaluates the kept checkpoints at growing Mmax. --resume
unpickles Ray's experiment state: resume only from storage you trust.
"""

import functools
import json
import os
import sys
import time

from hrm.config import ConfigError
from hrm.jobs import (exit_now, make_private, report_search, scale_kept, scaling_of, search_args, search_summary,
                      write_space)
from hrm.search.study import StudyJournal, journal_uri
from hrm.search import SearchSpace, define_by_run


def build_tuner(space: SearchSpace, name: str, storage: str, resume: bool, extra_callbacks: tuple = ()):
    import optuna
    from optuna.storages import JournalStorage
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from ray_jobs.common import IndexCheckpoints, LiveTable, Search, train_in_trial, train_worker_group

    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"  # see the callbacks below
    trial = train_in_trial if space.budget.in_trial else train_worker_group  # chosen once, for every trial
    trainable = tune.with_parameters(trial, space=space, storage=storage, name=name)
    trainable = tune.with_resources(trainable, space.budget.trial_resources())
    if resume:
        return tune.Tuner.restore(f"{storage}/{name}", trainable=trainable, resume_errored=True)
    journal = JournalStorage(StudyJournal(journal_uri(storage, name)))  # <storage>/<name>/optuna.journal
    searcher = Search(space=functools.partial(define_by_run, space), metric=space.metric, mode=space.mode,
                      sampler=optuna.samplers.GridSampler(space.grid(), seed=space.seed) if space.sampler == "grid"
                      else optuna.samplers.TPESampler(seed=space.seed), study_name=name, storage=journal,
                      hrm_scheduler=space.scheduler)
    s, b = space.scheduler, space.budget
    scheduler = ASHAScheduler(time_attr=s.time_attr, metric=space.rung_metric, mode=space.mode, max_t=s.max_t,
                              grace_period=s.grace_period, reduction_factor=s.reduction_factor,
                              ) if s.type == "asha" else FIFOScheduler()
    # No metric here: the searcher optimises the space's metric, ASHA compares its rung metric.
    tune_config = tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=b.num_samples,
                                  max_concurrent_trials=b.max_concurrent_trials)
    # verbose=0: LiveTable is the table. Tune's loggers without its TensorBoard one, whose
    # start-up hint names a driver folder without our events (hrm writes the HParams).
    callbacks = [IndexCheckpoints(space, name, storage), LiveTable(space), CSVLoggerCallback(), JsonLoggerCallback(),
                 *extra_callbacks]
    run_config = tune.RunConfig(name=name, storage_path=storage, verbose=0, callbacks=callbacks,
                                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),  # in-trial training's
                                failure_config=tune.FailureConfig(max_failures=b.tune_retries))
    return tune.Tuner(trainable, tune_config=tune_config, run_config=run_config)


def main(argv: list[str] | None = None) -> int:
    try:  # bad input, or a budget this Ray can never place: nothing started, nothing written
        args, space, name, storage = search_args(argv, __doc__)
        import ray

        from ray_jobs.common import connect

        owns_ray = connect(args.address, space.budget, prog="tune.py", num_cpus=args.num_cpus,
                           fix="Lower budget.num_workers / cpus_per_worker / gpus_per_worker "
                               "(e.g. --set budget.gpus_per_worker=0), or submit to a cluster.")
    except ConfigError as exc:
        print(f"tune.py: error: {exc}", file=sys.stderr)
        return 2
    start = time.monotonic()
    make_private(storage, f"{storage}/{name}")
    write_space(space, name, storage)
    try:
        print(f"[tune] experiment {name}: {space.budget.num_samples} trials of {space.base}, "
              f"metric {space.metric} ({space.mode}), storage {storage}", flush=True)
        results = build_tuner(space, name, storage, args.resume).fit()
        summary = search_summary(space, name, storage, [(r.metrics or {}, r.error and str(r.error)) for r in results])
        task = ray.remote(num_cpus=space.budget.cpus_per_worker, num_gpus=space.budget.gpus_per_worker)(scaling_of)
        summary.update(scale_kept(space, name, storage, lambda jobs: ray.get([task.remote(*j) for j in jobs])))
    finally:
        if owns_ray:
            ray.shutdown()
    summary["report"] = report_search(name, storage, lambda m: print(m, flush=True))
    summary["seconds"] = round(time.monotonic() - start, 1)
    print("[tune] done: " + json.dumps(summary, default=str, indent=1), flush=True)
    return 0 if summary["errors"] == 0 and summary["report"] else 1


if __name__ == "__main__":
    exit_now(main())
