"""Sampling a search space and what its trials become: define-by-run sampling, a trial's
config and its HParams, and the live trial table.

- No Ray, no Optuna here. `define_by_run` only calls `trial.suggest_int`,
  `trial.suggest_float` and `trial.suggest_categorical` on the object it is given (an
  Optuna `Trial` or `FixedTrial`, or the captor Ray's `OptunaSearch` wraps around one), so
  it works with any of them and `hrm` imports neither library.
- A conditional param (`when`) is sampled only if every listed key has one of the listed
  values; the value tested is the trial's effective one: the sampled value, or the base
  value when the key is not sampled.
- The validated base config (base file + overrides) travels inside `SearchSpace`
  (`base_config`), so `trial_config` needs no file on a Ray worker; `trial_config` maps
  categorical labels back to their choices, `hparams` keeps the labels.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from hrm.config import Config, ConfigError, freeze, number, thaw, to_dict, with_values
from hrm.runlog import format_table
from hrm.search.space import Param, SearchSpace, SpaceError, hint, member, same, short_names


def _effective(space: SearchSpace, values: dict[str, Any], key: str) -> Any:
    if key in values:
        return values[key]
    node: Any = space.base_config
    for part in key.split("."):
        node = getattr(node, part)
    return freeze(node)


def _holds(space: SearchSpace, p: Param, values: dict[str, Any]) -> bool:
    return all(member(_effective(space, values, key), allowed) for key, allowed in p.when)


def define_by_run(space: SearchSpace, trial: Any) -> None:
    """Sample `space` on an Optuna-like trial, params in order, skipping those whose `when` fails.
    Each param is suggested under its short name (`short_names`): the study, Tune's trial
    configs and Ray's result dataframes show `H_cycles`, not `model.H_cycles`."""
    values: dict[str, Any] = {}
    short = short_names(space)
    for p in space.params:
        if not _holds(space, p, values):
            continue
        name = short[p.name]
        if p.kind == "int":
            values[p.name] = trial.suggest_int(name, p.low, p.high, step=p.step or 1)
        elif p.kind == "categorical":
            values[p.name] = _choice(space, p, trial.suggest_categorical(name, list(p.labels)))
        else:
            values[p.name] = trial.suggest_float(name, p.low, p.high, step=p.step, log=p.log)
    return None


def _choice(space: SearchSpace, p: Param, value: Any) -> Any:
    """The canonical choice for a label (or for the choice itself)."""
    for label, choice in zip(p.labels, p.choices):
        if same(value, label) or same(freeze(value), choice):
            return choice
    raise SpaceError(f"{space.source}: params.{p.name}: sampled {value!r} is not one of its choices {list(p.labels)}")


def _value(space: SearchSpace, p: Param, value: Any) -> Any:
    if p.kind == "categorical":
        return _choice(space, p, value)
    num = number(value)
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
    full = {short: name for name, short in short_names(space).items()}
    sampled = {full.get(key, key): value for key, value in sampled.items()}  # short names (define_by_run's) or full
    for key in sampled:
        if key not in by_name:
            raise SpaceError(
                f"{space.source}: sampled key '{key}' is not a param of this space{hint(key, by_name)} "
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
    return ", ".join(f"{k} in {[thaw(v) for v in vs]}" for k, vs in when)


def trial_config(space: SearchSpace, sampled: Mapping[str, Any]) -> Config:
    """Base config + space overrides + sampled values (labels mapped back), validated."""
    values = _values(space, sampled)
    try:
        return with_values(to_dict(space.base_config), values.items())
    except ConfigError as exc:
        raise SpaceError(f"{space.source}: trial config {json.dumps(hparams(space, sampled))}: {exc}") from None


def hparams(space: SearchSpace, sampled: Mapping[str, Any]) -> dict[str, Any]:
    """Sampled values as plain scalars by param name (list choices as their labels)."""
    values = _values(space, sampled)
    out: dict[str, Any] = {}
    for p in space.params:
        if p.name in values:
            v = values[p.name]
            out[p.name] = p.labels[[same(v, c) for c in p.choices].index(True)] if p.kind == "categorical" else v
    return out


def trial_table(space: SearchSpace, trials: list[tuple[str, str, Mapping, Mapping]]) -> str:
    """The live trial table from (trial id, status, sampled config, last result) per trial:
    hyperparameters by short name, then the search metric first; ASHA's cuts show as STOPPED."""
    short = short_names(space)
    # the metric, then its noise: the seeds' spread (std) and the evaluation's standard error (se)
    spread = [f"{space.metric}_std"] if space.budget.seeds > 1 else []
    noise = [f"{space.metric}_se"] if space.metric in ("exact_accuracy", "pass@1", "pass@2") else []
    metrics = list(dict.fromkeys([space.metric, *spread, *noise, "pass@2", "exact_accuracy", "eval_round", "step",
                                  space.scheduler.time_attr]))
    rows = []
    for trial_id, status, config, result in trials:
        stopped = status == "TERMINATED" and space.scheduler.stopped_early(result)
        rows.append([trial_id, "STOPPED" if stopped else status, *(config.get(n, config.get(p)) for p, n in short.items()),
                     *(result.get(m) for m in metrics)])
    return format_table(["trial", "status", *short.values(), *metrics], rows)
