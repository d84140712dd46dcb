"""The artifact index's rows as Arrow: the fixed columns, typed `hp.*` and `metric.*` columns,
tables of different columns read as one, and the ranking `best` and `prune` share."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from typing import Any

import pyarrow as pa

from hrm.checkpoint import code_version

_TS = pa.timestamp("us", tz="UTC")

_STR, _INT = pa.string(), pa.int64()
BASE_SCHEMA = pa.schema([
    ("artifact_id", _STR), ("experiment", _STR), ("trial_id", _STR), ("step", _INT), ("eval_round", _INT),
    ("path", _STR), ("bytes", _INT), ("sha256", _STR), ("created_at", _TS), ("code_version", _STR),
    ("hparams_json", _STR), ("metrics_json", _STR),
])
HP, METRIC = "hp.", "metric."


def flatten(d: dict, prefix: str = "") -> dict:
    """Nested dict -> {prefix + dotted key: leaf}; e.g. {"model": {"H_cycles": 2}} -> {"model.H_cycles": 2}."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        items = flatten(value, f"{name}.").items() if isinstance(value, dict) else [(name, value)]
        for k, v in items:
            if k in out:
                raise ValueError(f"key '{k}' appears twice after flattening (a dotted key and a nested one)")
            out[k] = v
    return out


def _hp_cell(value: Any) -> tuple[Any, pa.DataType]:
    """A hyperparameter leaf as a typed Arrow cell (non-scalars become JSON strings)."""
    if value is None:
        return None, pa.null()
    if isinstance(value, bool):
        return value, pa.bool_()
    if isinstance(value, int) and -(2**63) <= value < 2**63:
        return value, pa.int64()
    if isinstance(value, float):
        return value, pa.float64()
    if isinstance(value, str):
        return value, pa.string()
    return json.dumps(value, sort_keys=True, default=str), pa.string()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def ordered(table: pa.Table) -> pa.Table:
    """Fixed columns first, then hp.* and metric.* sorted, then anything else."""
    names = table.column_names
    base, hp = [n for n in BASE_SCHEMA.names if n in names], sorted(n for n in names if n.startswith(HP))
    metric = sorted(n for n in names if n.startswith(METRIC))
    return table.select(base + hp + metric + [n for n in names if n not in set(base) | set(hp) | set(metric)])


def concat(tables: list[pa.Table]) -> pa.Table:
    """Tables with different columns as one: missing columns null, clashing types widened, else string."""
    tables = tables or [BASE_SCHEMA.empty_table()]
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        types: dict[str, set] = {}
        for f in (f for t in tables for f in t.schema if f.type != pa.null()):
            types.setdefault(f.name, set()).add(f.type)
        clash = [n for n, ts in types.items() if len(ts) > 1]
        tables = [t.cast(pa.schema([pa.field(f.name, pa.string()) if f.name in clash else f for f in t.schema]))
                  for t in tables]
        return pa.concat_tables(tables, promote_options="permissive")


def rank(table: pa.Table, column: str, mode: str) -> list[int]:
    """Row indices best first: by column (max/min), then later step, then trial_id; missing values last."""
    values = table[column].to_pylist()
    steps = table["step"].to_pylist()
    trials = table["trial_id"].to_pylist()
    sign = -1.0 if mode == "max" else 1.0

    def key(i: int) -> tuple:
        v = values[i]
        missing = v is None or (isinstance(v, float) and math.isnan(v))
        return (missing, 0.0 if missing else sign * v, -steps[i], trials[i])

    return sorted(range(table.num_rows), key=key)


def check_counts(mode: str, **counts: int) -> None:
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    for name, value in counts.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def make_row(aid: str, experiment: str, trial_id: str, step: int, eval_round: int, path: str, size: int, digest: str,
         manifest: dict, hparams: dict, metrics: dict) -> pa.Table:
    """One index row: BASE_SCHEMA's columns, then `hp.*` and numeric `metric.*`."""
    row = dict(
        artifact_id=aid, experiment=experiment, trial_id=trial_id, step=step, eval_round=eval_round, path=path,
        bytes=size, sha256=digest, created_at=dt.datetime.now(dt.timezone.utc),
        code_version=manifest.get("code_version") or code_version(),  # the code that trained it, if known
        hparams_json=json.dumps(hparams, sort_keys=True, default=str),
        metrics_json=json.dumps(metrics, sort_keys=True, default=str),
    )
    fields = list(BASE_SCHEMA)
    for name, value in flatten(hparams, HP).items():
        row[name], typ = _hp_cell(value)
        fields.append(pa.field(name, typ))
    for name, value in metrics.items():
        if _is_number(value):
            row[METRIC + name] = float(value)
            fields.append(pa.field(METRIC + name, pa.float64()))
    return pa.Table.from_pylist([row], pa.schema(fields))


def metric_columns(rows: pa.Table) -> list[str]:
    """The metric.* columns that hold a value, without the counters that are base columns (step, ...)."""
    return [c for c in rows.column_names if c.startswith(METRIC) and rows[c].null_count < rows.num_rows
            and c[len(METRIC):] not in BASE_SCHEMA.names]


# The index's columns of a point `hrm.inference.inference_scaling` measured:
# metric.<name>@mmax<N> at the plain setting (the training's views, one path, the whole ensemble),
# metric.<name>@mmax<N>@views<V>@paths<K>@members<M> at any other.
_TAG = re.compile(r"mmax(\d+)(?:@views(\d+)@paths(\d+)@members(\d+))?")


def point_tag(point: dict[str, Any]) -> str:
    """The column suffix of a measured point."""
    return f"mmax{point['mmax']}" + ("" if point["plain"] else
                                     f"@views{point['views']}@paths{point['paths']}@members{point['members']}")


def index_values(points: list[dict[str, Any]], metric: str) -> dict[str, float]:
    """{name@tag: value} of the metric, its se and the inference FLOPs at every point (the
    artifact index's `metric.` columns)."""
    return {f"{key}@{point_tag(p)}": p["metrics"][key] for p in points
            for key in (metric, f"{metric}_se", "inference_flops") if key in p["metrics"]}


def index_points(row: dict[str, Any], metric: str) -> list[dict[str, Any]]:
    """The frontier points stored in one artifact index row (`index_values` read back):
    [{mmax, views, paths, members, plain, compute, value, se}]; views and members are None at
    the plain setting (the training's)."""
    head, out = f"{METRIC}{metric}@", []
    for column, value in row.items():
        found = _TAG.fullmatch(column[len(head):]) if column.startswith(head) else None
        flops = row.get(f"{METRIC}inference_flops@{column[len(head):]}")
        if found and value is not None and flops is not None:
            mmax, views, paths, members = (int(g) if g else None for g in found.groups())
            out.append({"mmax": mmax, "views": views, "paths": paths or 1, "members": members,
                        "plain": views is None, "compute": flops, "value": value,
                        "se": row.get(f"{METRIC}{metric}_se@{column[len(head):]}")})
    return sorted(out, key=lambda p: (p["compute"], p["mmax"]))
