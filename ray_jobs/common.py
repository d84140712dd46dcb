"""What runs inside Ray: the Train worker, the Tune trial and the search driver's callbacks
(a module of the installed project, so Ray workers import it by name)."""

import logging
import sys
import time
from pathlib import Path
from typing import Any

import ray
import ray.train
import ray.tune
from ray.tune.search.optuna import OptunaSearch

from hrm.config import ConfigError
from hrm.jobs import index_checkpoint, run_worker, worker_config
from hrm.search import Budget, Scheduler, SearchSpace, hparams, trial_config, trial_table


def connect(address: str | None, budget: Budget, *, prog: str, fix: str, num_cpus: int | None = None) -> bool:
    """Join the Ray at `address` or start a new local one; whether we own (must stop) it. A budget
    it can never place is a ConfigError on a Ray we started (stopped again first), a warning
    on a cluster (it may grow)."""
    owns = not ray.is_initialized()  # tests and notebooks connect first
    if owns:
        ray.init(address=address or "local", num_cpus=None if address else num_cpus)
    why = budget.shortfall([n["Resources"] for n in ray.nodes() if n.get("Alive")], what=f"one {prog} run")
    if why and owns and address in (None, "local"):
        ray.shutdown()
        raise ConfigError(f"{why}. {fix}")
    if why:
        print(f"[{prog}] warning: {why}; it stays PENDING until nodes that fit join", flush=True)
    return owns


def trainer(config: dict[str, Any], b: Budget, **run: Any) -> Any:
    """A TorchTrainer of `train_worker` over the budget's workers, keeping 2 checkpoints (so
    the search driver can copy the one it indexes before Ray deletes it)."""
    from ray.train.torch import TorchTrainer

    scaling = ray.train.ScalingConfig(num_workers=b.num_workers, use_gpu=b.gpus_per_worker > 0,
                                      resources_per_worker={"CPU": b.cpus_per_worker, "GPU": b.gpus_per_worker})
    run_config = ray.train.RunConfig(checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
                                     failure_config=ray.train.FailureConfig(max_failures=b.worker_restarts), **run)
    return TorchTrainer(train_worker, train_loop_config={**config, "cpus_per_worker": b.cpus_per_worker},
                        scaling_config=scaling, run_config=run_config)


def quiet_checkpoints() -> None:
    """Ray logs a line with the whole path of every checkpoint it stores; the trial's own
    eval line already says the round, and the driver indexes the checkpoint."""
    logging.getLogger("ray.train").setLevel(logging.WARNING)


def say(msg: str) -> None:  # not print(): Ray Train echoes that twice
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


def train_worker(config: dict[str, Any]) -> None:
    """Ray Train worker: one data-parallel rank of `hrm.seeds.train_seeds`."""
    quiet_checkpoints()
    def report(metrics: dict[str, float], ckpt_dir: str | None) -> None:
        ray.train.report(dict(metrics), checkpoint=ckpt_dir and ray.train.Checkpoint.from_directory(ckpt_dir))

    # get_checkpoint: after a worker-group restart or a Tune restore
    run_worker(config, report, ray.train.get_checkpoint(), say if ray.train.get_context().get_world_rank() == 0 else None)


def _worker(space: SearchSpace, storage: str, name: str, config: dict[str, Any]) -> dict:
    """What the trial's training gets (`hrm.jobs.worker_config`): its run files go into Tune's
    folder for the trial in the storage (one TensorBoard run per trial)."""
    trial_dir = Path(ray.tune.get_context().get_trial_dir()).name
    return worker_config(trial_config(space, config), f"{storage}/{name}/{trial_dir}", storage,
                         hparams(space, config), space.rung, space.budget.seeds, space.budget.num_samples)


def train_in_trial(config: dict[str, Any], *, space: SearchSpace, storage: str, name: str) -> None:
    """Tune function trainable of a one-worker budget: trains in the trial's own process."""
    quiet_checkpoints()
    def report(metrics: dict[str, float], ckpt_dir: str | None) -> None:
        ray.tune.report(dict(metrics), checkpoint=ckpt_dir and ray.tune.Checkpoint.from_directory(ckpt_dir))

    run_worker({**_worker(space, storage, name, config), "cpus_per_worker": space.budget.cpus_per_worker}, report,
               ray.tune.get_checkpoint(), say)


def train_worker_group(config: dict[str, Any], *, space: SearchSpace, storage: str, name: str) -> None:
    """Tune function trainable of a data-parallel budget: fits a TorchTrainer of its workers."""
    from ray.tune.integration.ray_train import TuneReportCallback

    trainer(_worker(space, storage, name, config), space.budget, name=ray.tune.get_context().get_trial_id(),
            storage_path=f"{storage}/{name}/train", callbacks=[TuneReportCallback()]).fit()


class IndexCheckpoints(ray.tune.Callback):
    """The artifact index's one writer, in the driver: each reported checkpoint is copied in
    once, then the store is pruned to the space's keep rules. Tune calls callbacks one at
    a time from its event loop, so writes never overlap."""

    def __init__(self, space: SearchSpace, name: str, storage: str):
        self.space, self.name, self.storage = space, name, storage

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if "checkpoint_path" in result:  # TuneReportCallback's key: a path inside the storage's filesystem
            self._index(trial, result["checkpoint_path"])

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any) -> None:
        self._index(trial, checkpoint.path)  # a trial that trains in its own process, once Tune stored it

    def _index(self, trial: Any, path: str) -> None:
        index_checkpoint(self.space, self.name, self.storage, trial.trial_id, trial.config, path)


class LiveTable(ray.tune.Callback):
    """`hrm.search.trial_table` every `every_s` seconds and at the end. Ray 2.60's output
    engine lists params only for Tune-domain spaces (ours is define-by-run) and at most
    four inferred metrics, so tune.py turns it off for this one."""

    def __init__(self, space: SearchSpace, every_s: float = 20.0):
        self.space, self.every_s, self.last = space, every_s, 0.0

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if time.monotonic() - self.last >= self.every_s:
            self.on_experiment_end(trials)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.last = time.monotonic()
        rows = [(t.trial_id, t.status, t.config, t.last_result or {}) for t in trials]
        print(trial_table(self.space, rows), flush=True)


class Search(OptunaSearch):
    """Optuna's TPE; the study records trials ASHA stopped as PRUNED, not COMPLETE
    (OptunaSearch prunes a trial that completes without its metric)."""

    def __init__(self, *args: Any, hrm_scheduler: Scheduler, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.hrm_scheduler = hrm_scheduler

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if result and not error and self.hrm_scheduler.stopped_early(result):
            super().on_trial_result(trial_id, result)  # Tune skips the result that stopped it
            result = {k: v for k, v in result.items() if k != self.metric}
        super().on_trial_complete(trial_id, result, error)
