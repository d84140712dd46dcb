"""A search space as data: its params (`Param`), metric, mode, sampler, budget, scheduler (with
the rung rules over seeds), store and published claims (`SearchSpace`), and the counters a
trial reports to ASHA. `hrm.search.spacefile.load_space` reads and checks the files;
`hrm.search.trials` samples them.

- The dataclasses hold the space's own rules (kinds, bounds, metric, mode, scheduler); the
  budget, scheduler and store fields declare their bounds the way config fields do
  (`hrm.config.Range`), so no range check is written twice.
- Scalar categorical choices are their own Optuna labels. A list choice (e.g. for
  `optim.betas`) is stored as a tuple and given to Optuna as the label
  `json.dumps(list(choice))`, e.g. "[0.9, 0.95]": Optuna needs scalar choices, and the
  label reads well in TensorBoard.
- ASHA measures time in reported eval rounds, steps or compute (samples, flops:
  hrm.compute), never wall clock. A compute time_attr needs the trial's budget in the same
  unit (train.samples or train.flops), so every trial evaluates and stops at the same compute.
- `scheduler.tie_break` (e.g. token_accuracy) makes ASHA compare trials on `metric` first
  and the tie-break metric only where the metric ties: each report carries `rung_score`
  = the rung rule's value + 1e-6 x tie-break (`with_rung_score`). Early in training pass@2
  is 0 for every trial, so without it a rung there cannot rank anyone.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from hrm.config import AtLeast1, Config, ConfigError, NonNeg, Range, checked, hint
from hrm.evaluate import Paths


class SpaceError(ConfigError):
    """A search-space problem; the message is one line meant for the user."""


KINDS = ("int", "float", "logfloat", "categorical")
# What every evaluation round of training reports (hrm.train, run_eval's default ks).
METRICS = ("exact_accuracy", "token_accuracy", "q_halt_accuracy", "pass@1", "pass@2")
MODES = ("max", "min")
SCHEDULERS = ("asha", "fifo")
SAMPLERS = ("tpe", "grid")
# What ASHA counts time in: eval rounds, optimiser steps, or compute (samples: puzzle-segments
# trained, every batch slot of every segment once; flops: the model's own training FLOPs).
TIME_ATTRS = ("eval_round", "step", "samples", "flops")
# How a rung compares trials that train several seeds (budget.seeds >= 2): the seeds' mean,
# or the mean minus (lcb) / plus (ucb) rung_z standard errors of it (`rung_value`).
RUNG_RULES = ("mean", "lcb", "ucb")
# The key a trial reports for ASHA when the space has a tie-break, and the tie-break's
# weight: every metric here lies in [0, 1] and moves in steps of 1/questions (1e-3 for
# a thousand), so 1e-6 x [0, 1] orders equal values without reordering unequal ones.
RUNG_SCORE = "rung_score"
TIE_WEIGHT = 1e-6
# Keys whose values decide how many eval rounds a trial reports.
ROUND_KEYS = ("train.steps", "train.epochs", "train.samples", "train.flops", "train.eval_interval")
SPACES_DIR = Path(__file__).resolve().parents[2] / "search_spaces"


def shipped_spaces() -> list[Path]:
    return sorted(SPACES_DIR.glob("*.yaml")) if SPACES_DIR.is_dir() else []


def run_length(cfg: Config) -> dict[str, Any]:
    """A run's last counters (eval_round, step, samples, flops: hrm.compute); None each for
    an epoch budget, which needs the dataset to count."""
    from hrm.compute import run_counters
    from hrm.dataset import task_spec

    spec = task_spec(cfg.data)
    return run_counters(cfg, spec.seq_len, spec.vocab_size)


def total_rounds(cfg: Config) -> int | None:
    """Eval rounds a run of `cfg` reports (each eval_interval of its budget and at the end); None if unknown."""
    return run_length(cfg)["eval_round"]


def same(a: Any, b: Any) -> bool:
    """Equality that keeps True apart from 1 and compares lists/tuples item by item."""
    if isinstance(a, tuple) or isinstance(b, tuple):
        return isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b) and all(map(same, a, b))
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def member(value: Any, allowed: tuple) -> bool:
    return any(same(value, a) for a in allowed)


@dataclass(frozen=True, kw_only=True)
class Param:
    name: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False
    # categorical: canonical values (lists as tuples) and the labels Optuna sees
    choices: tuple = ()
    labels: tuple = ()
    # ((key, (allowed values...)), ...): sampled only if every key has an allowed value
    when: tuple[tuple[str, tuple], ...] = ()

    def __post_init__(self) -> None:
        key = f"params.{self.name}"
        if self.kind not in KINDS:
            raise SpaceError(f"{key}.type: must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.kind == "categorical":
            if not self.choices or len(self.labels) != len(self.choices):
                raise SpaceError(f"{key}: a categorical needs choices and one label per choice")
            if len({(type(x), x) for x in self.labels}) != len(self.labels):
                raise SpaceError(f"{key}.choices: a string choice equals the label of a list choice: {list(self.labels)}")
            return
        low, high, step = self.low, self.high, self.step
        if low is None or high is None or not low < high:
            raise SpaceError(f"{key}: low ({low}) must be < high ({high})")
        if self.log and low <= 0:
            raise SpaceError(f"{key}.low: a logfloat needs low > 0, got {low}")
        if step is not None:
            if self.log or step <= 0:
                raise SpaceError(f"{key}.step: must be > 0 (and logfloat has none), got {step}")
            ratio = (high - low) / step
            if abs(ratio - round(ratio)) > 1e-9 * max(1.0, abs(ratio)):
                raise SpaceError(f"{key}.step: high - low ({high - low}) must be a multiple of step ({step})")

    def takes(self, value: Any) -> bool:
        """Whether sampling can give exactly `value` (categorical and int params)."""
        if self.kind == "categorical":
            return member(value, self.choices)
        return (self.kind == "int" and self.low <= value <= self.high
                and (value - self.low) % (self.step or 1) == 0)

    def describe(self) -> str:
        if self.kind == "categorical":
            return f"one of {list(self.labels)}"
        return f"{self.low}..{self.high}, step {self.step or 1}"


@dataclass(frozen=True, kw_only=True)
class Budget:
    num_samples: AtLeast1 = 8
    max_concurrent_trials: AtLeast1 = 1
    num_workers: AtLeast1 = 1
    cpus_per_worker: NonNeg = 1.0
    gpus_per_worker: NonNeg = 0.0
    trainable_cpus: NonNeg = 0.1  # the Tune trial's own actor (beyond its worker's share, see in_trial)
    # Faults: Ray Train restarts a trial's worker group from its last checkpoint up to
    # `worker_restarts` times; then Tune restarts the whole trial up to `trial_retries`
    # times (again from that checkpoint): (worker_restarts + 1) * (trial_retries + 1) runs.
    worker_restarts: Annotated[int, Range(ge=0)] = 2
    trial_retries: Annotated[int, Range(ge=0)] = 1
    # auto: a one-worker trial trains in the Tune trial's own process (no Train worker group:
    # less Ray overhead per trial: benchmarks/RESULTS.md, "Faster trials"); always: a worker group.
    worker_group: Literal["auto", "always"] = "auto"
    # Seeds each trial trains in lockstep (train.seed, +1, ...): its reports carry each metric's
    # mean (what ASHA, Optuna and the store rank by) and `<metric>_std` (hrm.seeds.train_seeds).
    seeds: AtLeast1 = 1

    def __post_init__(self) -> None:
        checked(self, "budget", SpaceError)

    in_trial = property(lambda self: self.num_workers == 1 and self.worker_group == "auto")
    # Tune's restarts of a trial (training in it, they stand in for the worker's restarts too)
    tune_retries = property(lambda s: (s.worker_restarts + 1) * (s.trial_retries + 1) - 1 if s.in_trial
                            else s.trial_retries)

    def trial_resources(self) -> dict[str, float]:
        """What Tune reserves for the trial's own process (a worker group is reserved apart)."""
        own = {"CPU": self.cpus_per_worker, "GPU": self.gpus_per_worker} if self.in_trial else {"CPU": 0.0}
        return {**own, "CPU": own["CPU"] + self.trainable_cpus}

    def shortfall(self, nodes: list[dict[str, float]], what: str = "a trial") -> str | None:
        """Why one run (the trial's own CPUs plus `num_workers` worker bundles) can never be
        placed on `nodes` (each node's total resources, as Ray lists them), or None when
        it fits. Ray itself would leave such a run PENDING forever."""
        eps = 1e-9
        cpu, gpu = self.cpus_per_worker, self.gpus_per_worker
        one = cpu + self.trainable_cpus * self.in_trial  # training in the trial: one node holds both
        want = f"{self.num_workers} worker(s) x {cpu:g} CPU" + (f" + {gpu:g} GPU" if gpu else "")
        if self.trainable_cpus:
            want += f", plus {self.trainable_cpus:g} CPU for the trial itself"
        total_cpu, total_gpu = (sum(n.get(r, 0.0) for n in nodes) for r in ("CPU", "GPU"))
        have = f"the cluster has {total_cpu:g} CPU and {total_gpu:g} GPU on {len(nodes)} node(s)"
        if not any(n.get("CPU", 0.0) + eps >= one and n.get("GPU", 0.0) + eps >= gpu for n in nodes):
            big = max(((n.get("CPU", 0.0), n.get("GPU", 0.0)) for n in nodes), default=(0.0, 0.0))
            largest = f"the largest has {big[0]:g} CPU, {big[1]:g} GPU"
            holds = "one worker" + (f" with its trial's {self.trainable_cpus:g} CPU (budget.worker_group: auto "
                                    "trains in the trial)" if one > cpu else "")
            return f"{what} needs {want}, but no node can hold {holds} ({largest}); {have}"
        if total_cpu + eps < self.trainable_cpus + self.num_workers * cpu or total_gpu + eps < self.num_workers * gpu:
            return f"{what} needs {want}, but {have}"
        return None


@dataclass(frozen=True, kw_only=True)
class Scheduler:
    type: str = "asha"
    time_attr: str = "eval_round"
    # In units of time_attr (for samples and flops, large numbers such as 1.2e13).
    grace_period: Annotated[int | float, Range(gt=0)] = 1
    reduction_factor: Annotated[int, Range(ge=2)] = 2
    max_t: Annotated[int | float, Range(gt=0)] = 8
    # A metric that orders trials whose search metric ties at a rung (null: ties go on).
    tie_break: str | None = None
    # With budget.seeds >= 2: what a rung compares (RUNG_RULES, `rung_value`); with one seed
    # every rule is the metric itself. lcb by default: in simulated searches it kept the best
    # setting more often than the mean at early rungs and was not separable from it at a rung
    # half-way (benchmarks/RESULTS.md, "Rung rules"; docs/decisions).
    rung_rule: str = "lcb"
    rung_z: Annotated[float, Range(ge=0)] = 1.0

    def __post_init__(self) -> None:
        checked(self, "scheduler", SpaceError)
        if self.tie_break is not None and self.tie_break not in METRICS:
            raise SpaceError(f"scheduler.tie_break must be a metric training reports ({', '.join(METRICS)}) or "
                             f"null, got {self.tie_break!r}{hint(self.tie_break, METRICS)}")
        if self.type not in SCHEDULERS:
            allowed = ", ".join(SCHEDULERS)
            raise SpaceError(f"scheduler.type must be one of {allowed}, got {self.type!r}{hint(self.type, SCHEDULERS)}")
        if self.time_attr not in TIME_ATTRS:
            raise SpaceError(f"scheduler.time_attr must be one of {', '.join(TIME_ATTRS)} (counters a trial reports), "
                             f"got {self.time_attr!r}{hint(self.time_attr, TIME_ATTRS)}")
        if self.rung_rule not in RUNG_RULES:
            raise SpaceError(f"scheduler.rung_rule must be one of {', '.join(RUNG_RULES)}, got {self.rung_rule!r}"
                             f"{hint(self.rung_rule, RUNG_RULES)}")
        if self.time_attr in ("eval_round", "step"):
            for key in ("grace_period", "max_t"):
                value = getattr(self, key)
                if value != int(value) or value < 1:
                    raise SpaceError(f"scheduler.{key} counts {self.time_attr}s: it must be a whole number >= 1, "
                                     f"got {value:g}")
        if self.grace_period > self.max_t:
            raise SpaceError(f"scheduler.grace_period ({self.grace_period}) must be <= scheduler.max_t ({self.max_t})")

    def stopped_early(self, result: Mapping[str, Any]) -> bool:
        """Whether a trial that ended without error with this last result was cut by ASHA
        (it ends by itself exactly at max_t: the space is checked to reach it)."""
        return self.type == "asha" and result.get(self.time_attr, 0) < self.max_t


@dataclass(frozen=True, kw_only=True)
class Store:
    """What the artifact store keeps of a search: a row survives iff it is among the
    best `keep_per_trial` of its trial and the best `keep_per_experiment` overall."""

    keep_per_trial: AtLeast1 = 2
    keep_per_experiment: AtLeast1 = 5
    # At the end of the search the kept checkpoints are evaluated at Mmax 1, 2, 4, ... up to
    # this many times their training Mmax (inference-time scaling; 0: not).
    scaling: Annotated[int, Range(ge=0)] = 4
    # ... and also at these view counts (besides the training's train.eval_views) and with
    # these numbers of parallel latent paths (besides 1; `hrm eval --paths`), noise of std
    # `noise` on the latent `noise_on`; an ensemble (a seeds checkpoint) also at its sizes
    # 1, 2, 4, ...: the inference-compute frontier over Mmax x views x paths x members.
    views: tuple[int, ...] = ()
    paths: tuple[int, ...] = ()
    noise: NonNeg = 0.0
    noise_on: Literal["L", "H", "HL"] = "L"

    def __post_init__(self) -> None:
        checked(self, "store", SpaceError)
        for key in ("views", "paths"):
            if any(n < 1 for n in getattr(self, key)):
                raise SpaceError(f"store.{key}: counts >= 1, got {list(getattr(self, key))}")
        if any(k > 1 for k in self.paths) and not self.noise > 0:
            raise SpaceError(f"store.paths {list(self.paths)} needs store.noise > 0 (the extra paths differ from "
                             "path 0 only by their noise)")

    def path_grid(self) -> list[Paths]:
        """The paths settings the end of a search measures besides one path."""
        return [Paths(k, self.noise, self.noise_on) for k in sorted(set(self.paths)) if k > 1]


@dataclass(frozen=True, kw_only=True)
class Claim:
    """A published comparison written as data: the setting `better` beats the setting `than`
    (each: param name -> value, the rest of the trial equal) on the space's metric, by `by`
    if given. `hrm.report` gives it a verdict: agrees, contradicts or not separable."""

    better: tuple[tuple[str, Any], ...]
    than: tuple[tuple[str, Any], ...]
    by: float | None = None
    note: str = ""


@dataclass(frozen=True, kw_only=True)
class SearchSpace:
    name: str
    source: str
    base: str
    overrides: tuple[tuple[str, Any], ...] = ()
    params: tuple[Param, ...]
    metric: str = "pass@2"
    mode: str = "max"
    seed: int = 0
    # tpe: Optuna's TPE proposes (seeded); grid: every combination of the params once, in a
    # seeded order (Optuna's GridSampler): ablations, where every point must run.
    sampler: str = "tpe"
    budget: Budget = dataclasses.field(default_factory=Budget)
    scheduler: Scheduler = dataclasses.field(default_factory=Scheduler)
    store: Store = dataclasses.field(default_factory=Store)
    claims: tuple[Claim, ...] = ()
    base_config: Config  # base file + overrides, validated

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise SpaceError(f"metric: must be a metric training reports ({', '.join(METRICS)}), "
                             f"got {self.metric!r}{hint(self.metric, METRICS)}")
        if self.mode not in MODES:
            raise SpaceError(f"mode: must be 'max' or 'min', got {self.mode!r}")
        if not self.name:
            raise SpaceError("name: must be a non-empty string")
        names = [p.name for p in self.params]
        if not names or len(set(names)) != len(names):
            raise SpaceError("params: must be a non-empty set of distinct config keys")
        if self.scheduler.tie_break == self.metric:
            raise SpaceError(f"scheduler.tie_break must differ from metric ({self.metric}): it breaks its ties")
        if self.sampler not in SAMPLERS:
            raise SpaceError(f"sampler: must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}{hint(self.sampler, SAMPLERS)}")
        if self.sampler == "grid":
            for p in self.params:
                if p.kind not in ("categorical", "int") or p.when:
                    raise SpaceError(f"params.{p.name}: a grid takes categorical and int params without conditions, "
                                     f"got {p.kind}{' with when' if p.when else ''}")
            if self.budget.num_samples != self.grid_size:
                raise SpaceError(f"budget.num_samples must be the grid's size ({self.grid_size} combinations) with "
                                 f"sampler grid, got {self.budget.num_samples}")

    def grid(self) -> dict[str, list]:
        """Each param's values as the sampler sees them (by short name: categorical labels, ints by step)."""
        short = short_names(self)
        return {short[p.name]: list(p.labels) if p.kind == "categorical" else list(range(p.low, p.high + 1, p.step or 1))
                for p in self.params}

    @property
    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.grid().values())

    @property
    def noise_aware(self) -> bool:
        """Whether ASHA's rungs compare a rule over the seeds rather than their mean."""
        return self.budget.seeds >= 2 and self.scheduler.rung_rule != "mean"

    @property
    def rung_metric(self) -> str:
        """What ASHA compares at its rungs: the metric, or `rung_score` with a tie-break or a
        noise-aware rule."""
        return RUNG_SCORE if self.rung is not None else self.metric

    @property
    def rung(self) -> dict[str, Any] | None:
        """How a trial scores itself for ASHA (`with_rung_score`), or None: the metric alone."""
        s = self.scheduler
        if not s.tie_break and not self.noise_aware:
            return None
        return {"metric": self.metric, "tie_break": s.tie_break, "mode": self.mode,
                "rule": s.rung_rule if self.noise_aware else "mean", "z": s.rung_z}


def rung_value(rule: str, z: float, mean: float, std: float, seeds: int, mode: str = "max") -> float:
    """What a rung compares for one trial: its seeds' mean (`mean`), or the mean moved by `z`
    standard errors of it (std / sqrt(seeds)) against the trial (`lcb`: a noisy trial must
    show more to be kept) or in its favour (`ucb`: a noisy trial is cut only when even its
    optimistic bound is below the cutoff). Both move toward worse/better in `mode`'s sense."""
    if rule == "mean" or seeds < 2:
        return mean
    se = z * std / math.sqrt(seeds)
    toward_better = 1.0 if (rule == "ucb") == (mode == "max") else -1.0
    return mean + toward_better * se


def describe(space: SearchSpace) -> dict[str, Any]:
    """The space as plain JSON (`space.json` beside a search's trials): what `hrm report`
    needs to read the search without the file it came from."""
    short = short_names(space)
    params = [{"name": p.name, "short": short[p.name], "kind": p.kind,
               "values": list(p.labels) if p.kind == "categorical" else (
                   list(range(p.low, p.high + 1, p.step or 1)) if p.kind == "int" else None),
               "low": p.low, "high": p.high} for p in space.params]
    by_name = {p.name: p for p in space.params}

    def labelled(setting: tuple) -> dict[str, Any]:  # values as params.json holds them (labels)
        return {k: by_name[k].labels[[same(v, c) for c in by_name[k].choices].index(True)]
                if by_name[k].kind == "categorical" else v for k, v in setting}

    return {"name": space.name, "source": space.source, "metric": space.metric, "mode": space.mode,
            "sampler": space.sampler, "seeds": space.budget.seeds,
            "scheduler": dataclasses.asdict(space.scheduler), "params": params,
            "claims": [{"better": labelled(c.better), "than": labelled(c.than), "by": c.by, "note": c.note}
                       for c in space.claims]}


def short_names(space: SearchSpace) -> dict[str, str]:
    """Param name -> the shortest dotted suffix that no other param shares ("model.H_cycles" -> "H_cycles")."""
    out = {}
    for p in space.params:
        parts = p.name.split(".")
        for n in range(1, len(parts) + 1):
            tail = ".".join(parts[-n:])
            if sum(q.name == tail or q.name.endswith("." + tail) for q in space.params) == 1:
                break
        out[p.name] = tail
    return out


def with_rung_score(rung: Mapping[str, Any] | None, metrics: dict[str, float]) -> dict[str, float]:
    """`metrics` plus `rung_score` = `rung_value` of the metric + TIE_WEIGHT x tie-break (minus,
    for mode min), when `rung` (`SearchSpace.rung`) is given and its metrics were reported."""
    if not rung or rung["metric"] not in metrics or (rung["tie_break"] and rung["tie_break"] not in metrics):
        return metrics
    metric, tie, mode = rung["metric"], rung["tie_break"], rung["mode"]
    value = rung_value(rung["rule"], rung["z"], metrics[metric], metrics.get(f"{metric}_std", 0.0),
                       int(metrics.get("seeds", 1)), mode)
    sign = 1.0 if mode == "max" else -1.0
    return {**metrics, RUNG_SCORE: value + (sign * TIE_WEIGHT * metrics[tie] if tie else 0.0)}
