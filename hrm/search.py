"""Search spaces: strict YAML -> `SearchSpace`, define-by-run sampling, trial configs.

A search-space file names a base config, fixed overrides, the metric to optimise,
the budget, the scheduler and the searched params (dotted config keys ->
distributions). Design choices:

- No Ray, no Optuna here. `define_by_run` only calls `trial.suggest_int`,
  `trial.suggest_float` and `trial.suggest_categorical` on the object it is given
  (an Optuna `Trial` or `FixedTrial`, or the captor Ray's `OptunaSearch` wraps
  around one), so it works with any of them and `hrm` imports neither library.
- Everything is checked by `load_space`, before any search code runs, with one
  line naming the file, the key and the reason; unknown keys get the closest
  allowed key suggested (as in `hrm.config`). `SpaceError` is a `ConfigError`.
- A param is a config key because the config system says so: every value it can
  take (int/float/logfloat: low and high; categorical: each choice) is applied,
  alone, to the base config plus overrides and validated by `hrm.config`, whose
  own error comes through behind the space file's name. Combinations are not
  enumerated; a combination the config rejects fails that trial in `trial_config`.
- Categorical choices are canonicalised through the config (the value read back
  after validation, so `1e-3` and `0.001` are the same choice and duplicates are
  caught). Scalar choices are their own Optuna labels. A list choice (e.g. for
  `optim.betas`) is stored as a tuple and given to Optuna as the label
  `json.dumps(list(choice))`, e.g. "[0.9, 0.95]": Optuna needs scalar choices, and
  the label reads well in TensorBoard. `trial_config` maps labels back; `hparams`
  keeps them.
- `when` makes a param conditional: it is sampled only if every listed key has one
  of the listed values. A key is an earlier param (order in the file matters, so
  cycles cannot happen; a later param is an error) or a config key. The value
  tested is the trial's effective one: the sampled value, or the base value when
  the key is not sampled. A condition on a fixed config key that can never hold is
  an error; conditions on continuous params are refused (equality never holds).
- The validated base config (base file + overrides) travels inside `SearchSpace`
  (`base_config`), so `trial_config` needs no file on a Ray worker and
  `define_by_run` reads base values from it.
- ASHA measures time in reported eval rounds (or steps), never wall clock.
  `scheduler.max_t` must be reachable: with `time_attr: eval_round` a trial
  reports `total_rounds(cfg)` = ceil(train.steps / train.eval_interval) rounds
  (the last step always evaluates); epoch-based configs cannot be counted without
  the dataset, so the check is skipped for them. Params that change train.steps,
  train.epochs or train.eval_interval are checked at their extreme values.
- `load_space(path, overrides)` takes `key=value` edits of the space file itself:
  `budget.num_samples=4`, `scheduler.max_t=4`, `overrides.train.steps=100` (the
  rest of the key after `overrides.` is one dotted config key),
  `params.optim.lr.high=1e-2` (the longest param name that prefixes the key is the
  param) or `params.optim.lr={type: float, low: 0, high: 1}`. They get the same checks.
- A `base` that is a bare name (no '/', no .yaml suffix) is a shipped config; any
  other value is a path, relative to the space file's folder (a bare `name.yaml`
  missing there falls back to the shipped config of that name).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import itertools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from hrm.config import (
    AtLeast1,
    Config,
    build,
    ConfigError,
    NonNeg,
    Range,
    checked,
    builtin_config_path,
    builtin_configs,
    from_dict,
    parse_override,
    read_yaml,
    to_dict,
)


class SpaceError(ConfigError):
    """A search-space problem; the message is one line meant for the user."""


KINDS = ("int", "float", "logfloat", "categorical")
# What every evaluation round of training reports (hrm.train, run_eval's default ks).
METRICS = ("exact_accuracy", "token_accuracy", "q_halt_accuracy", "pass@1", "pass@2")
MODES = ("max", "min")
SCHEDULERS = ("asha", "fifo")
TIME_ATTRS = ("eval_round", "step")
TOP_KEYS = ("name", "base", "overrides", "metric", "mode", "seed", "budget", "scheduler", "store", "params")
PARAM_KEYS = {
    "int": ("type", "low", "high", "step", "when"),
    "float": ("type", "low", "high", "step", "when"),
    "logfloat": ("type", "low", "high", "when"),
    "categorical": ("type", "choices", "when"),
}
# Keys whose values decide how many eval rounds a trial reports.
ROUND_KEYS = ("train.steps", "train.epochs", "train.eval_interval")
SPACES_DIR = Path(__file__).resolve().parents[1] / "search_spaces"

_NUM_RE = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def valid_metric(metric: str) -> bool:
    return metric in METRICS


def _metric_reason(metric: str) -> str:
    return (f"must be a metric training reports ({', '.join(METRICS)}), got {metric!r}"
            + _hint(metric, METRICS))


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
        if self.kind not in KINDS:
            raise SpaceError(f"params.{self.name}.type must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.kind == "categorical" and (not self.choices or len(self.labels) != len(self.choices)):
            raise SpaceError(f"params.{self.name}: a categorical needs choices and one label per choice")
        if self.kind != "categorical" and not (self.low is not None and self.high is not None and self.low < self.high):
            raise SpaceError(f"params.{self.name}: needs low < high, got low {self.low}, high {self.high}")


@dataclass(frozen=True, kw_only=True)
class Budget:
    num_samples: AtLeast1 = 8
    max_concurrent_trials: AtLeast1 = 1
    num_workers: AtLeast1 = 1
    cpus_per_worker: NonNeg = 1.0
    gpus_per_worker: NonNeg = 0.0
    trainable_cpus: NonNeg = 0.1  # the Tune trial's own actor (it only waits on its Train workers)
    # Faults: Ray Train restarts a trial's worker group from its last checkpoint up to
    # `worker_restarts` times; then Tune restarts the whole trial up to `trial_retries`
    # times (again from that checkpoint). A trial that always fails runs
    # (worker_restarts + 1) * (trial_retries + 1) times in all.
    worker_restarts: Annotated[int, Range(ge=0)] = 2
    trial_retries: Annotated[int, Range(ge=0)] = 1

    def __post_init__(self) -> None:
        checked(self, "budget", SpaceError)

    def shortfall(self, nodes: list[dict[str, float]], what: str = "a trial") -> str | None:
        """Why one run (the trial's own CPUs plus `num_workers` worker bundles) can never be
        placed on `nodes` (each node's total resources, as Ray lists them), or None when
        it fits. Ray itself would leave such a run PENDING forever."""
        eps = 1e-9
        cpu, gpu = self.cpus_per_worker, self.gpus_per_worker
        want = f"{self.num_workers} worker(s) x {cpu:g} CPU" + (f" + {gpu:g} GPU" if gpu else "")
        if self.trainable_cpus:
            want += f", plus {self.trainable_cpus:g} CPU for the trial itself"
        total_cpu = sum(n.get("CPU", 0.0) for n in nodes)
        total_gpu = sum(n.get("GPU", 0.0) for n in nodes)
        have = f"the cluster has {total_cpu:g} CPU and {total_gpu:g} GPU on {len(nodes)} node(s)"
        if not any(n.get("CPU", 0.0) + eps >= cpu and n.get("GPU", 0.0) + eps >= gpu for n in nodes):
            big = max(((n.get("CPU", 0.0), n.get("GPU", 0.0)) for n in nodes), default=(0.0, 0.0))
            largest = f"the largest has {big[0]:g} CPU, {big[1]:g} GPU"
            return f"{what} needs {want}, but no node can hold one worker ({largest}); {have}"
        if total_cpu + eps < self.trainable_cpus + self.num_workers * cpu or total_gpu + eps < self.num_workers * gpu:
            return f"{what} needs {want}, but {have}"
        return None


@dataclass(frozen=True, kw_only=True)
class Scheduler:
    type: str = "asha"
    time_attr: str = "eval_round"
    grace_period: AtLeast1 = 1
    reduction_factor: Annotated[int, Range(ge=2)] = 2
    max_t: AtLeast1 = 8

    def __post_init__(self) -> None:
        checked(self, "scheduler", SpaceError)
        if self.type not in SCHEDULERS:
            allowed = ", ".join(SCHEDULERS)
            raise SpaceError(f"scheduler.type must be one of {allowed}, got {self.type!r}{_hint(self.type, SCHEDULERS)}")
        if self.time_attr not in TIME_ATTRS:
            raise SpaceError(
                f"scheduler.time_attr must be 'eval_round' or 'step' (counters a trial reports), got {self.time_attr!r}"
            )
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

    def __post_init__(self) -> None:
        checked(self, "store", SpaceError)


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
    budget: Budget = dataclasses.field(default_factory=Budget)
    scheduler: Scheduler = dataclasses.field(default_factory=Scheduler)
    store: Store = dataclasses.field(default_factory=Store)
    # base file + overrides, validated; None = rebuilt from `base` and `overrides`
    base_config: Config | None = None

    def __post_init__(self) -> None:
        if not valid_metric(self.metric):
            raise SpaceError(f"metric {_metric_reason(self.metric)}")
        if self.mode not in MODES:
            raise SpaceError(f"mode must be 'max' or 'min', got {self.mode!r}")
        names = [p.name for p in self.params]
        if not names or len(set(names)) != len(names):
            raise SpaceError("params must be a non-empty set of distinct config keys")


# ---------------------------------------------------------------------------
# small helpers


def _hint(word: Any, allowed: Any) -> str:
    close = difflib.get_close_matches(str(word), [str(a) for a in allowed], n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def _fail(src: str, key: str, reason: str) -> SpaceError:
    return SpaceError(f"{src}: {key}: {reason}")


def _check_keys(src: str, raw: Mapping, allowed: tuple[str, ...], prefix: str = "", what: str = "") -> None:
    for key in raw:
        if key not in allowed:
            dotted = f"{prefix}.{key}" if prefix else str(key)
            raise SpaceError(
                f"{src}: unknown key '{dotted}'{what}{_hint(key, allowed)} (allowed: {', '.join(allowed)})"
            )


def _freeze(value: Any) -> Any:
    return tuple(_freeze(v) for v in value) if isinstance(value, (list, tuple)) else value


def _thaw(value: Any) -> Any:
    return [_thaw(v) for v in value] if isinstance(value, tuple) else value


def _same(a: Any, b: Any) -> bool:
    """Equality that keeps True apart from 1 and compares lists/tuples item by item."""
    if isinstance(a, tuple) or isinstance(b, tuple):
        return isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b) and all(map(_same, a, b))
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def _member(value: Any, allowed: tuple) -> bool:
    return any(_same(value, a) for a in allowed)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _number(value: Any) -> float | int | None:
    """A YAML number, or a numeric string (PyYAML reads `1e-3` as a string)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str) and _NUM_RE.fullmatch(value.strip()):
        return float(value)
    return None


def _set(raw: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    if not all(parts):
        raise ConfigError(f"'{key}' has an empty key part")
    node = raw
    for i, part in enumerate(parts[:-1]):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"'{'.'.join(parts[: i + 1])}' is not a section, so '{key}' is not a config key")
    node[parts[-1]] = _thaw(value)


def _lookup(raw: Mapping[str, Any], key: str) -> Any:
    node: Any = raw
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def _leaf_keys(raw: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key, value in raw.items():
        dotted = f"{prefix}.{key}" if prefix else key
        out.extend(_leaf_keys(value, dotted) if isinstance(value, Mapping) else [dotted])
    return out


def _apply(base: dict[str, Any], items: Any) -> Config:
    raw = copy.deepcopy(base)
    for key, value in items:
        _set(raw, key, value)
    return from_dict(raw)


def _flatten(raw: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for key, value in raw.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        out.extend(_flatten(value, dotted) if isinstance(value, Mapping) and value else [(dotted, value)])
    return out


def total_rounds(cfg: Config) -> int | None:
    """Eval rounds a run of `cfg` reports (every eval_interval steps and at the end); None if unknown."""
    t = cfg.train
    if t.steps is None:
        return None
    return math.ceil(t.steps / t.eval_interval)


def shipped_spaces() -> list[Path]:
    return sorted(SPACES_DIR.glob("*.yaml")) if SPACES_DIR.is_dir() else []


def _resolve_space_path(spec: str | Path) -> Path:
    path = Path(spec).expanduser()
    if path.exists():
        return path
    stem = str(spec)[:-5] if str(spec).endswith(".yaml") else str(spec)
    shipped = SPACES_DIR / f"{stem}.yaml"
    if "/" not in str(spec) and shipped.exists():
        return shipped
    names = ", ".join(p.stem for p in shipped_spaces())
    raise SpaceError(f"{spec}: search-space file not found (shipped spaces: {names})")


def _resolve_base(src: str, folder: Path, spec: Any) -> Path:
    if not isinstance(spec, str) or not spec.strip():
        shipped = ", ".join(builtin_configs())
        raise _fail(src, "base", f"must be a shipped config name ({shipped}) or a YAML path, got {spec!r}")
    if "/" not in spec and not spec.endswith((".yaml", ".yml")):
        path = builtin_config_path(spec)
        if not path.exists():
            shipped = ", ".join(builtin_configs())
            raise _fail(src, "base", f"no shipped config '{spec}'{_hint(spec, builtin_configs())} (shipped: {shipped})")
        return path
    path = Path(spec).expanduser()
    path = path if path.is_absolute() else folder / path
    if path.is_file():
        return path.resolve()
    if "/" not in spec and builtin_config_path(spec).exists():
        return builtin_config_path(spec)
    raise _fail(src, "base", f"config file not found: {path}")


# ---------------------------------------------------------------------------
# loading


def _read(src: str, path: Path) -> dict[str, Any]:
    try:
        return read_yaml(path, src, sections=", ".join(TOP_KEYS))
    except ConfigError as exc:
        raise SpaceError(str(exc)) from None


def _edit(src: str, raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `key=value` edits of the space file (see the module docstring)."""
    raw = copy.deepcopy(raw)
    if isinstance(raw.get("overrides"), dict):
        raw["overrides"] = dict(_flatten(raw["overrides"]))
    for text in overrides:
        try:
            parts, value = parse_override(text)
        except ConfigError as exc:
            raise SpaceError(f"{src}: {exc}") from None
        head, rest = parts[0], ".".join(parts[1:])
        section = raw.get(head)
        if head in ("overrides", "params") and rest:
            if section is None:
                section = raw[head] = {}
            if not isinstance(section, dict):
                raise SpaceError(f"{src}: override '{text}': '{head}' is not a mapping")
        if head == "overrides" and rest:
            section[rest] = value
        elif head == "params" and rest:
            names = sorted((n for n in section if rest == n or rest.startswith(f"{n}.")), key=len)
            if not names or rest == names[-1]:
                section[rest] = value
                continue
            name, field = names[-1], rest[len(names[-1]) + 1 :]
            spec = section[name]
            if not isinstance(spec, dict):
                raise SpaceError(f"{src}: override '{text}': 'params.{name}' is not a mapping")
            sub, _, cond = field.partition(".")
            if sub == "when" and cond:
                when = spec.get("when")
                spec["when"] = when = when if isinstance(when, dict) else {}
                when[cond] = value
            else:
                spec[field] = value
        else:
            node = raw
            for i, part in enumerate(parts[:-1]):
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise SpaceError(f"{src}: override '{text}': '{'.'.join(parts[: i + 1])}' is not a mapping")
            node[parts[-1]] = value
    return raw


def _typed(src: str, key: str, value: Any, kind: type) -> Any:
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _fail(src, key, f"must be an integer, got {value!r}")
    if kind is float:
        num = _number(value)
        if num is None:
            raise _fail(src, key, f"must be a number, got {value!r}")
        return float(num)
    if not isinstance(value, str) or not value:
        raise _fail(src, key, f"must be a non-empty string, got {value!r}")
    return value


def _section(src: str, raw: dict[str, Any], name: str, cls: type) -> Any:
    section = raw.get(name)
    if section is None:
        return cls()
    try:  # the config's strict builder: types, unknown keys and declared bounds alike
        return build(cls, section, name)
    except ConfigError as exc:
        raise SpaceError(f"{src}: {exc}") from None


def load_space(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> SearchSpace:
    """Read and fully validate a search-space file (path or shipped name), with `key=value` edits."""
    file = _resolve_space_path(path)
    src = str(path)
    raw = _edit(src, _read(src, file), list(overrides))
    _check_keys(src, raw, TOP_KEYS)
    for key in ("base", "params"):
        if raw.get(key) is None:
            raise _fail(src, key, "missing (required)")

    name = _typed(src, "name", raw.get("name", file.stem), str)
    metric = _typed(src, "metric", raw.get("metric", "pass@2"), str)
    mode = _typed(src, "mode", raw.get("mode", "max"), str)
    seed = _typed(src, "seed", raw.get("seed", 0), int)
    if not valid_metric(metric):
        raise _fail(src, "metric", _metric_reason(metric))
    if mode not in MODES:
        raise _fail(src, "mode", f"must be 'max' or 'min', got {mode!r}")
    budget = _section(src, raw, "budget", Budget)
    scheduler = _section(src, raw, "scheduler", Scheduler)
    store = _section(src, raw, "store", Store)

    base_path = _resolve_base(src, file.parent, raw["base"])
    fixed = _base_overrides(src, raw.get("overrides"))
    try:
        base = read_yaml(base_path)
    except ConfigError as exc:
        raise _fail(src, "base", str(exc)) from None
    try:
        base_config = _apply(base, fixed)
    except ConfigError as exc:
        raise _blame(src, base_path, base, fixed, exc) from None
    base_dict = to_dict(base_config)

    if not isinstance(raw["params"], dict) or not raw["params"]:
        raise _fail(src, "params", "must be a non-empty mapping of config keys to distributions")
    names = list(raw["params"])
    params: list[Param] = []
    for i, pname in enumerate(names):
        if not isinstance(pname, str) or not pname or not all(pname.split(".")):
            raise _fail(src, "params", f"param names must be dotted config keys like model.H_cycles, got {pname!r}")
        if pname in dict(fixed):
            raise _fail(src, f"params.{pname}", "is also fixed in overrides; keep one of the two")
        params.append(_param(src, pname, raw["params"][pname], params, names[i + 1 :], base_dict))

    space = SearchSpace(
        name=name, source=src, base=str(base_path), overrides=tuple(fixed), params=tuple(params), metric=metric,
        mode=mode, seed=seed, budget=budget, scheduler=scheduler, store=store, base_config=base_config,
    )
    _check_rounds(src, space, base_dict)
    return space


def _base_overrides(src: str, raw: Any) -> list[tuple[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, dict):
        raise _fail(src, "overrides", f"must be a mapping of dotted config keys to values, got {raw!r}")
    items = _flatten(raw)
    for key, _ in items:
        if not all(key.split(".")):
            raise _fail(src, f"overrides.{key}", "has an empty key part")
    return [(k, _freeze(v)) for k, v in items]


def _blame(
    src: str, base_path: Path, base: dict[str, Any], fixed: list[tuple[str, Any]], exc: ConfigError
) -> SpaceError:
    """Name the override that breaks the base when one alone gives the same error."""
    try:
        from_dict(copy.deepcopy(base))
    except ConfigError as base_exc:
        if str(base_exc) == str(exc):
            return _fail(src, "base", f"{base_path}: {base_exc}")
    for key, value in fixed:
        try:
            _apply(base, [(key, value)])
        except ConfigError as one:
            if str(one) == str(exc):
                return _fail(src, f"overrides.{key}", str(exc))
    return _fail(src, "overrides", str(exc))


def _canonical(src: str, key: str, base: dict[str, Any], name: str, value: Any, what: str = "") -> Any:
    """`value` for config key `name` as the config reads it back; errors name `key` (and `what`)."""
    try:
        cfg = _apply(base, [(name, value)])
    except ConfigError as exc:
        raise _fail(src, key, f"{exc}{f' (with {what})' if what else ''}") from None
    out = _lookup(to_dict(cfg), name)
    if isinstance(out, dict):
        raise _fail(src, key, f"'{name}' is a config section, not a value")
    return _freeze(out)


def _param(
    src: str, name: str, spec: Any, earlier: list[Param], later: list[str], base: dict[str, Any]
) -> Param:
    key = f"params.{name}"
    if not isinstance(spec, dict):
        raise _fail(src, key, f"must be a mapping like {{type: int, low: 1, high: 4}}, got {spec!r}")
    kind = spec.get("type")
    if kind is None:
        raise _fail(src, f"{key}.type", f"missing (one of {', '.join(KINDS)})")
    if kind not in KINDS:
        raise _fail(src, f"{key}.type", f"must be one of {', '.join(KINDS)}, got {kind!r}{_hint(kind, KINDS)}")
    _check_keys(src, spec, PARAM_KEYS[kind], key, f" for type {kind}")
    when = _when(src, name, spec.get("when"), earlier, later, base)

    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise _fail(src, f"{key}.choices", f"must be a non-empty list, got {choices!r}")
        canon: list[Any] = []
        for choice in choices:
            ok = _is_scalar(choice) or (isinstance(choice, list) and all(map(_is_scalar, choice)))
            if not ok:
                reason = f"choices must be scalars (bool, int, float, str, null) or lists of them, got {choice!r}"
                raise _fail(src, f"{key}.choices", reason)
            value = _canonical(src, key, base, name, choice, f"choice {choice!r}")
            if _member(value, tuple(canon)):
                reason = f"duplicate choice {choice!r} (equal to another choice as the config reads it)"
                raise _fail(src, f"{key}.choices", reason)
            canon.append(value)
        labels = tuple(json.dumps(_thaw(v)) if isinstance(v, tuple) else v for v in canon)
        if len({(type(x), x) for x in labels}) != len(labels):
            raise _fail(src, f"{key}.choices", f"a string choice equals the label of a list choice: {list(labels)}")
        return Param(name=name, kind=kind, choices=tuple(canon), labels=labels, when=when)

    for bound in ("low", "high"):
        if spec.get(bound) is None:
            raise _fail(src, f"{key}.{bound}", f"missing (type {kind} needs low and high)")
    num = int if kind == "int" else float
    low = _typed(src, f"{key}.low", spec["low"], num)
    high = _typed(src, f"{key}.high", spec["high"], num)
    step = None if spec.get("step") is None else _typed(src, f"{key}.step", spec["step"], num)
    if low >= high:
        raise _fail(src, key, f"low ({low}) must be < high ({high})")
    if kind == "logfloat" and low <= 0:
        raise _fail(src, f"{key}.low", f"a logfloat needs low > 0, got {low}")
    if step is not None:
        if step <= 0:
            raise _fail(src, f"{key}.step", f"must be > 0, got {step}")
        ratio = (high - low) / step
        if abs(ratio - round(ratio)) > 1e-9 * max(1.0, abs(ratio)):
            raise _fail(src, f"{key}.step", f"high - low ({high - low}) must be a multiple of step ({step})")
    for bound, value in (("low", low), ("high", high)):
        _canonical(src, key, base, name, value, f"{bound} {value}")
    return Param(name=name, kind=kind, low=low, high=high, step=step, log=kind == "logfloat", when=when)


def _when(
    src: str, name: str, raw: Any, earlier: list[Param], later: list[str], base: dict[str, Any]
) -> tuple[tuple[str, tuple], ...]:
    key = f"params.{name}.when"
    if raw is None:
        return ()
    if not isinstance(raw, dict) or not raw:
        raise _fail(src, key, f"must be a mapping of keys to lists of values, got {raw!r}")
    by_name = {p.name: p for p in earlier}
    leaves = _leaf_keys(base)
    out = []
    for ref, values in raw.items():
        ckey = f"{key}.{ref}"
        if ref == name:
            raise _fail(src, ckey, "a param cannot depend on itself")
        if ref in later:
            reason = "refers to a later param (a cycle or forward reference); a condition may only use earlier params"
            raise _fail(src, ckey, reason)
        if not isinstance(values, list) or not values:
            raise _fail(src, ckey, f"must be a non-empty list of values, got {values!r}")
        if ref not in by_name and ref not in leaves:
            hint = _hint(ref, [*by_name, *leaves])
            raise _fail(src, ckey, f"'{ref}' is neither an earlier param nor a config key{hint}")
        canon = tuple(_canonical(src, ckey, base, ref, v) for v in values)
        p = by_name.get(ref)
        if p is None:
            current = _freeze(_lookup(base, ref))
            if not _member(current, canon):
                reason = f"never holds: '{ref}' is fixed at {current!r} (not a param) and not in {values!r}"
                raise _fail(src, ckey, reason)
        elif p.kind == "categorical":
            for v, c in zip(values, canon):
                if not _member(c, p.choices):
                    raise _fail(src, ckey, f"{v!r} is not one of the choices of params.{ref} {list(p.labels)}")
        elif p.kind == "int":
            for v, c in zip(values, canon):
                if not (p.low <= c <= p.high and (c - p.low) % (p.step or 1) == 0):
                    reason = f"{v!r} is not a value params.{ref} can take ({p.low}..{p.high}, step {p.step or 1})"
                    raise _fail(src, ckey, reason)
        else:
            raise _fail(src, ckey, f"params.{ref} is continuous ({p.kind}): equality never holds; make it categorical")
        out.append((ref, canon))
    return tuple(out)


def _check_rounds(src: str, space: SearchSpace, base: dict[str, Any]) -> None:
    s = space.scheduler
    if s.type != "asha":
        return
    options = []
    for p in space.params:
        if p.name in ROUND_KEYS:
            values = p.choices if p.kind == "categorical" else (p.low, p.high)
            options.append([(p.name, v) for v in values])
    for combo in itertools.product(*options):
        try:
            cfg = _apply(base, combo)
        except ConfigError:
            continue
        t = cfg.train
        if t.steps is None:
            continue
        if s.time_attr == "eval_round" and total_rounds(cfg) < s.max_t:
            raise _fail(
                src, "scheduler.max_t",
                f"{s.max_t} is more eval rounds than a trial reports ({total_rounds(cfg)} = "
                f"ceil(train.steps {t.steps} / train.eval_interval {t.eval_interval})); ASHA would never reach max_t",
            )
        if s.time_attr == "step" and t.steps < s.max_t:
            raise _fail(src, "scheduler.max_t", f"{s.max_t} is more steps than a trial runs (train.steps {t.steps})")


# ---------------------------------------------------------------------------
# sampling and trial configs


def _base_config(space: SearchSpace) -> Config:
    if space.base_config is not None:
        return space.base_config
    return _apply(read_yaml(space.base), space.overrides)


def _effective(space: SearchSpace, values: dict[str, Any], key: str) -> Any:
    if key in values:
        return values[key]
    node: Any = _base_config(space)
    for part in key.split("."):
        node = getattr(node, part)
    return _freeze(node)


def _holds(space: SearchSpace, p: Param, values: dict[str, Any]) -> bool:
    return all(_member(_effective(space, values, key), allowed) for key, allowed in p.when)


def define_by_run(space: SearchSpace, trial: Any) -> None:
    """Sample `space` on an Optuna-like trial, params in order, skipping those whose `when` fails."""
    values: dict[str, Any] = {}
    for p in space.params:
        if not _holds(space, p, values):
            continue
        if p.kind == "int":
            values[p.name] = trial.suggest_int(p.name, p.low, p.high, step=p.step or 1)
        elif p.kind == "categorical":
            label = trial.suggest_categorical(p.name, list(p.labels))
            values[p.name] = _choice(space, p, label)
        else:
            values[p.name] = trial.suggest_float(p.name, p.low, p.high, step=p.step, log=p.log)
    return None


def _choice(space: SearchSpace, p: Param, value: Any) -> Any:
    """The canonical choice for a label (or for the choice itself)."""
    for label, choice in zip(p.labels, p.choices):
        if _same(value, label) or _same(_freeze(value), choice):
            return choice
    raise SpaceError(f"{space.source}: params.{p.name}: sampled {value!r} is not one of its choices {list(p.labels)}")


def _value(space: SearchSpace, p: Param, value: Any) -> Any:
    if p.kind == "categorical":
        return _choice(space, p, value)
    num = _number(value)
    if p.kind == "int" and isinstance(num, float) and num.is_integer():
        num = int(num)
    if num is None or (p.kind == "int" and not isinstance(num, int)):
        what = "an integer" if p.kind == "int" else "a number"
        raise SpaceError(f"{space.source}: params.{p.name}: sampled {value!r} is not {what}")
    slack = 1e-12 * max(1.0, abs(p.high))
    if not p.low - slack <= num <= p.high + slack:
        raise SpaceError(f"{space.source}: params.{p.name}: sampled {value!r} is outside [{p.low}, {p.high}]")
    return num if p.kind == "int" else float(num)


def _values(space: SearchSpace, sampled: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(sampled, Mapping):
        raise SpaceError(f"{space.source}: sampled values must be a mapping of param names, got {sampled!r}")
    by_name = {p.name: p for p in space.params}
    for key in sampled:
        if key not in by_name:
            raise SpaceError(
                f"{space.source}: sampled key '{key}' is not a param of this space{_hint(key, by_name)} "
                f"(params: {', '.join(by_name)})"
            )
    values: dict[str, Any] = {}
    for p in space.params:
        if p.name in sampled:
            values[p.name] = _value(space, p, sampled[p.name])
    for p in space.params:
        if p.name in values and not _holds(space, p, values):
            reason = f"was sampled but its condition {_show(p.when)} does not hold"
            raise SpaceError(f"{space.source}: params.{p.name} {reason}")
    return values


def _show(when: tuple[tuple[str, tuple], ...]) -> str:
    return ", ".join(f"{k} in {[_thaw(v) for v in vs]}" for k, vs in when)


def trial_config(space: SearchSpace, sampled: Mapping[str, Any]) -> Config:
    """Base config + space overrides + sampled values (labels mapped back), validated."""
    values = _values(space, sampled)
    try:
        return _apply(to_dict(_base_config(space)), values.items())
    except ConfigError as exc:
        raise SpaceError(f"{space.source}: trial config {json.dumps(hparams(space, sampled))}: {exc}") from None


def hparams(space: SearchSpace, sampled: Mapping[str, Any]) -> dict[str, Any]:
    """Sampled values as plain scalars by param name (list choices as their labels)."""
    values = _values(space, sampled)
    out: dict[str, Any] = {}
    for p in space.params:
        if p.name in values:
            v = values[p.name]
            out[p.name] = p.labels[[_same(v, c) for c in p.choices].index(True)] if p.kind == "categorical" else v
    return out


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


def search_summary(space: SearchSpace, name: str, storage: str, trials: list[tuple[dict, str | None]]) -> dict:
    """The end-of-search summary from each trial's (last metrics, error or None) and the
    artifact store, whose leftover unindexed folders (a crash's) it sweeps first."""
    from hrm.artifacts import ArtifactStore

    errors = [err.strip().splitlines()[-1][:300] for _, err in trials if err is not None]
    done = [metrics for metrics, err in trials if err is None]
    store = ArtifactStore(f"{storage}/artifacts")
    best = None
    if store.exists() and name in store.experiments():
        store.sweep(name)
        best = store.best(name, space.metric, k=1, mode=space.mode).to_pylist()[0]
    return {
        "experiment": name,
        "trials": len(trials),
        "completed": len(done),
        "stopped_early": sum(space.scheduler.stopped_early(m) for m in done),
        "errors": len(errors),
        "error_messages": errors,
        "best_trial": best and best["trial_id"],
        "best_hparams": best and json.loads(best["hparams_json"]),
        "best_metrics": best and json.loads(best["metrics_json"]),
        "best_artifact": best and {k: v for k, v in best.items()
                                   if not k.startswith(("hp.", "metric.", "hparams_", "metrics_"))},
        "tensorboard": f"tensorboard --logdir {storage}/{name}",
    }


def trial_table(space: SearchSpace, trials: list[tuple[str, str, Mapping, Mapping]]) -> str:
    """The live trial table from (trial id, status, sampled config, last result) per trial:
    hyperparameters by short name, then the search metric first; ASHA's cuts show as STOPPED."""
    from hrm.cli import format_table

    short = short_names(space)
    metrics = list(dict.fromkeys([space.metric, "pass@2", "exact_accuracy", "eval_round", "step"]))
    rows = []
    for trial_id, status, config, result in trials:
        stopped = status == "TERMINATED" and space.scheduler.stopped_early(result)
        rows.append([trial_id, "STOPPED" if stopped else status, *(config.get(p) for p in short),
                     *(result.get(m) for m in metrics)])
    return format_table(["trial", "status", *short.values(), *metrics], rows)
