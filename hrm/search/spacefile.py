"""Search-space files: strict YAML -> a validated `hrm.search.space.SearchSpace`.

A file names a base config, fixed overrides, the metric to optimise, the budget, the
scheduler and the searched params (dotted config keys -> distributions). Everything
is checked here, before any search code runs, with one line that starts with the
file's name and names the key; unknown keys get the closest allowed key suggested.
The checks are not written here a second time: YAML is read by `hrm.config.read_yaml`,
types and declared bounds come from `hrm.config` (its builder for the budget,
scheduler and store sections, its fields for every config key), and the space's own
rules live in the dataclasses of `hrm.search.space`.

- A param is a config key because the config says so: every value it can take
  (int/float/logfloat: low and high; categorical: each choice) is applied, alone, to
  the base config plus overrides and validated by `hrm.config`, whose own error comes
  through. Combinations are not enumerated; one the config rejects fails that trial.
- Categorical choices are canonicalised through the config (the value read back, so
  `1e-3` and `0.001` are the same choice and duplicates are caught).
- `when` makes a param conditional: it is sampled only if every listed key has one of
  the listed values. A key is an earlier param (order in the file matters, so cycles
  cannot happen) or a config key; a condition on a fixed key that can never hold is
  an error, and conditions on continuous params are refused (equality never holds).
- ASHA's `scheduler.max_t` must be reachable in its time_attr's unit (`run_length`).
  Params that change the budget or train.eval_interval are checked at their extreme
  values; epoch budgets cannot be counted without the dataset, so they are not checked.
- `load_space(path, edits)` takes `key=value` edits of the file itself:
  `budget.num_samples=4`, `overrides.train.steps=100` (the rest of the key after
  `overrides.` is one dotted config key), `params.optim.lr.high=1e-2` (the longest
  param name that prefixes the key is the param), `params.a.b.when.model.arch=[hrm]`
  or `params.optim.lr={type: float, low: 0, high: 1}`. They get the same checks.
- A `base` that is a bare name is a shipped config; any other value is a path, relative
  to the space file's folder (a missing bare `name.yaml` falls back to the shipped one).
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from pathlib import Path
from typing import Any

from hrm.config import (FAMILY_KEYS, ConfigError, arch_misfit, build, builtin_config_path, builtin_configs, coerce,
                        flat_items, freeze, from_dict, get_key, hint, number, parse_override, read_yaml, to_dict,
                        with_values)
from hrm.search.space import (
    KINDS,
    Claim,
    ROUND_KEYS,
    SPACES_DIR,
    Budget,
    Param,
    Scheduler,
    SearchSpace,
    SpaceError,
    Store,
    member,
    same,
    shipped_spaces,
    run_length,
)

TOP_KEYS = ("name", "base", "overrides", "metric", "mode", "seed", "sampler", "budget", "scheduler", "store",
            "params", "claim")
CLAIM_KEYS = ("better", "than", "by", "note")
PARAM_KEYS = {
    "int": ("type", "low", "high", "step", "when"),
    "float": ("type", "low", "high", "step", "when"),
    "logfloat": ("type", "low", "high", "when"),
    "categorical": ("type", "choices", "when"),
}


def load_space(path: str | Path, edits: list[str] | tuple[str, ...] = ()) -> SearchSpace:
    """Read and fully validate a search-space file (path or shipped name), with `key=value` edits."""
    file, src = _space_path(path), str(path)
    try:
        raw = read_yaml(file, src, sections=", ".join(TOP_KEYS))
    except ConfigError as exc:
        raise SpaceError(str(exc)) from None
    try:
        return _load(file, src, _edit(raw, list(edits)))
    except ConfigError as exc:  # every check below names its key; the file goes in front
        raise SpaceError(f"{src}: {exc}") from None


def _load(file: Path, src: str, raw: dict[str, Any]) -> SearchSpace:
    _check_keys(raw, TOP_KEYS)
    for key in ("base", "params"):
        if raw.get(key) is None:
            raise ConfigError(f"{key}: missing (required)")
    top = {key: coerce(raw.get(key, default), tp, key)
           for key, tp, default in (("name", str, file.stem), ("metric", str, "pass@2"), ("mode", str, "max"),
                                    ("seed", int, 0), ("sampler", str, "tpe"))}
    sections = {key: build(cls, raw[key], key) if raw.get(key) is not None else cls()
                for key, cls in (("budget", Budget), ("scheduler", Scheduler), ("store", Store))}

    base_path = _base_path(file.parent, raw["base"])
    fixed = _fixed(raw.get("overrides"))
    try:
        base = read_yaml(base_path)
    except ConfigError as exc:
        raise ConfigError(f"base: {exc}") from None
    try:
        base_config = with_values(base, fixed)
    except ConfigError as exc:
        raise _blame(base_path, base, fixed, exc) from None
    base_dict = to_dict(base_config)

    if not isinstance(raw["params"], dict) or not raw["params"]:
        raise ConfigError("params: must be a non-empty mapping of config keys to distributions")
    names = list(raw["params"])
    params: list[Param] = []
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name or not all(name.split(".")):
            raise ConfigError(f"params: param names must be dotted config keys like model.H_cycles, got {name!r}")
        if name in dict(fixed):
            raise ConfigError(f"params.{name}: is also fixed in overrides; keep one of the two")
        params.append(_param(name, raw["params"][name], params, names[i + 1:], base_dict))

    _check_families(params, fixed, base_dict)
    claims = _claims(raw.get("claim"), params, base_dict)
    space = SearchSpace(source=src, base=str(base_path), overrides=tuple(fixed), params=tuple(params),
                        claims=claims, base_config=base_config, **top, **sections)
    _check_rounds(space, base_dict)
    return space


# ---------------------------------------------------------------------------
# files and edits


def _space_path(spec: str | Path) -> Path:
    path = Path(spec).expanduser()
    if path.exists():
        return path
    stem = str(spec)[:-5] if str(spec).endswith(".yaml") else str(spec)
    shipped = SPACES_DIR / f"{stem}.yaml"
    if "/" not in str(spec) and shipped.exists():
        return shipped
    names = ", ".join(p.stem for p in shipped_spaces())
    raise SpaceError(f"{spec}: search-space file not found (shipped spaces: {names})")


def _base_path(folder: Path, spec: Any) -> Path:
    shipped = ", ".join(builtin_configs())
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"base: must be a shipped config name ({shipped}) or a YAML path, got {spec!r}")
    if "/" not in spec and not spec.endswith((".yaml", ".yml")):
        if not builtin_config_path(spec).exists():
            raise ConfigError(f"base: no shipped config '{spec}'{hint(spec, builtin_configs())} (shipped: {shipped})")
        return builtin_config_path(spec)
    path = Path(spec).expanduser()
    path = path if path.is_absolute() else folder / path
    if path.is_file():
        return path.resolve()
    if "/" not in spec and builtin_config_path(spec).exists():
        return builtin_config_path(spec)
    raise ConfigError(f"base: config file not found: {path}")


def _edit(raw: dict[str, Any], edits: list[str]) -> dict[str, Any]:
    """The file's mapping with `key=value` edits applied (see the module docstring)."""
    raw = copy.deepcopy(raw)
    if isinstance(raw.get("overrides"), dict):
        raw["overrides"] = dict(flat_items(raw["overrides"]))
    for text in edits:
        parts, value = parse_override(text)
        path = _edit_path(raw, parts)
        node = raw
        for i, part in enumerate(path[:-1]):
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                raise ConfigError(f"override '{text}': '{'.'.join(path[: i + 1])}' is not a mapping")
        node[path[-1]] = value
    return raw


def _edit_path(raw: dict[str, Any], parts: list[str]) -> list[str]:
    """Where an edit's dotted key lands in the file's nested mapping."""
    head, rest = parts[0], ".".join(parts[1:])
    if head == "overrides" and rest:
        return ["overrides", rest]
    if head != "params" or not rest:
        return parts
    section = raw.get("params")
    names = sorted((n for n in section if rest == n or rest.startswith(f"{n}.")), key=len) \
        if isinstance(section, dict) else []
    if not names or rest == names[-1]:
        return ["params", rest]
    field = rest[len(names[-1]) + 1:]
    sub, _, cond = field.partition(".")
    return ["params", names[-1], "when", cond] if sub == "when" and cond else ["params", names[-1], field]


def _check_keys(raw: dict, allowed: tuple[str, ...], prefix: str = "", what: str = "") -> None:
    for key in raw:
        if key not in allowed:
            dotted = f"{prefix}.{key}" if prefix else str(key)
            raise ConfigError(f"unknown key '{dotted}'{what}{hint(key, allowed)} (allowed: {', '.join(allowed)})")


def _fixed(raw: Any) -> list[tuple[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, dict):
        raise ConfigError(f"overrides: must be a mapping of dotted config keys to values, got {raw!r}")
    items = flat_items(raw)
    for key, _ in items:
        if not all(key.split(".")):
            raise ConfigError(f"overrides.{key}: has an empty key part")
    return [(k, freeze(v)) for k, v in items]


def _blame(base_path: Path, base: dict[str, Any], fixed: list[tuple[str, Any]], exc: ConfigError) -> ConfigError:
    """Name the override that breaks the base when one alone gives the same error."""
    try:
        from_dict(copy.deepcopy(base))
    except ConfigError as base_exc:
        if str(base_exc) == str(exc):
            return ConfigError(f"base: {base_path}: {base_exc}")
    for key, value in fixed:
        try:
            with_values(base, [(key, value)])
        except ConfigError as one:
            if str(one) == str(exc):
                return ConfigError(f"overrides.{key}: {exc}")
    return ConfigError(f"overrides: {exc}")


# ---------------------------------------------------------------------------
# params


def _canonical(key: str, base: dict[str, Any], name: str, value: Any, what: str = "") -> Any:
    """`value` for config key `name` as the config reads it back; errors name `key` (and `what`)."""
    try:
        out = get_key(to_dict(with_values(base, [(name, value)])), name)
    except ConfigError as exc:
        raise ConfigError(f"{key}: {exc}{f' (with {what})' if what else ''}") from None
    if isinstance(out, dict):
        raise ConfigError(f"{key}: '{name}' is a config section, not a value")
    return freeze(out)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _param(name: str, spec: Any, earlier: list[Param], later: list[str], base: dict[str, Any]) -> Param:
    key = f"params.{name}"
    if not isinstance(spec, dict):
        raise ConfigError(f"{key}: must be a mapping like {{type: int, low: 1, high: 4}}, got {spec!r}")
    kind = spec.get("type")
    if kind is None:
        raise ConfigError(f"{key}.type: missing (one of {', '.join(KINDS)})")
    if kind not in KINDS:
        raise ConfigError(f"{key}.type: must be one of {', '.join(KINDS)}, got {kind!r}{hint(kind, KINDS)}")
    _check_keys(spec, PARAM_KEYS[kind], key, f" for type {kind}")
    when = _when(name, spec.get("when"), earlier, later, base)

    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{key}.choices: must be a non-empty list, got {choices!r}")
        canon: list[Any] = []
        for choice in choices:
            if not (_is_scalar(choice) or (isinstance(choice, list) and all(map(_is_scalar, choice)))):
                raise ConfigError(
                    f"{key}.choices: choices must be scalars (bool, int, float, str, null) or lists of them, got {choice!r}")
            value = _canonical(key, base, name, choice, f"choice {choice!r}")
            if member(value, tuple(canon)):
                raise ConfigError(f"{key}.choices: duplicate choice {choice!r} (equal to another choice as the config reads it)")
            canon.append(value)
        labels = tuple(json.dumps(list(v)) if isinstance(v, tuple) else v for v in canon)
        return Param(name=name, kind=kind, choices=tuple(canon), labels=labels, when=when)

    num = int if kind == "int" else float
    bounds = {}
    for bound in ("low", "high", "step"):
        if spec.get(bound) is None and bound != "step":
            raise ConfigError(f"{key}.{bound}: missing (type {kind} needs low and high)")
        bounds[bound] = None if spec.get(bound) is None else coerce(spec[bound], num, f"{key}.{bound}")
    param = Param(name=name, kind=kind, log=kind == "logfloat", when=when, **bounds)
    for bound in ("low", "high"):
        _canonical(key, base, name, bounds[bound], f"{bound} {bounds[bound]}")
    return param


def _when(name: str, raw: Any, earlier: list[Param], later: list[str], base: dict[str, Any]) -> tuple:
    key = f"params.{name}.when"
    if raw is None:
        return ()
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{key}: must be a mapping of keys to lists of values, got {raw!r}")
    by_name = {p.name: p for p in earlier}
    leaves = [k for k, _ in flat_items(base)]
    out = []
    for ref, values in raw.items():
        ckey = f"{key}.{ref}"
        if ref == name:
            raise ConfigError(f"{ckey}: a param cannot depend on itself")
        if ref in later:
            raise ConfigError(f"{ckey}: refers to a later param (a cycle or forward reference); "
                              "a condition may only use earlier params")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{ckey}: must be a non-empty list of values, got {values!r}")
        if ref not in by_name and ref not in leaves:
            raise ConfigError(f"{ckey}: '{ref}' is neither an earlier param nor a config key"
                              f"{hint(ref, [*by_name, *leaves])}")
        canon = tuple(_canonical(ckey, base, ref, v) for v in values)
        p = by_name.get(ref)
        if p is None:
            current = freeze(get_key(base, ref))
            if not member(current, canon):
                raise ConfigError(f"{ckey}: never holds: '{ref}' is fixed at {current!r} (not a param) "
                                  f"and not in {values!r}")
        elif p.kind == "float" or p.kind == "logfloat":
            raise ConfigError(f"{ckey}: params.{ref} is continuous ({p.kind}): equality never holds; "
                              "make it categorical")
        else:
            for v, c in zip(values, canon):
                if not p.takes(c):
                    raise ConfigError(f"{ckey}: {v!r} is not a value params.{ref} can take ({p.describe()})")
        out.append((ref, canon))
    return tuple(out)


def _claims(raw: Any, params: list[Param], base: dict[str, Any]) -> tuple[Claim, ...]:
    """`claim:` (one mapping or a list): {better: {param: value}, than: {param: value}, by: number,
    note: text}; both settings name the same params of this space, with values they can take."""
    if raw is None:
        return ()
    items = raw if isinstance(raw, list) else [raw]
    by_name = {p.name: p for p in params}
    out = []
    for i, item in enumerate(items):
        key = f"claim[{i}]" if isinstance(raw, list) else "claim"
        if not isinstance(item, dict):
            raise ConfigError(f"{key}: must be a mapping like {{better: {{model.halt_max_steps: 2}}, "
                              f"than: {{model.halt_max_steps: 1}}, by: 0.13}}, got {item!r}")
        _check_keys(item, CLAIM_KEYS, key)
        sides = [_claim_side(f"{key}.{side}", item.get(side), by_name, base) for side in ("better", "than")]
        if [k for k, _ in sides[0]] != [k for k, _ in sides[1]]:
            raise ConfigError(f"{key}: better and than must name the same params, got {[k for k, _ in sides[0]]} "
                              f"and {[k for k, _ in sides[1]]}")
        if all(same(a, b) for (_, a), (_, b) in zip(*sides)):
            raise ConfigError(f"{key}: better and than are the same setting")
        by = item.get("by")
        if by is not None and (number(by) is None or not math.isfinite(float(number(by))) or float(number(by)) < 0):
            raise ConfigError(f"{key}.by: must be a number >= 0 (the claimed gain in the metric), got {by!r}")
        note = item.get("note", "")
        if not isinstance(note, str):
            raise ConfigError(f"{key}.note: must be a string, got {note!r}")
        out.append(Claim(better=sides[0], than=sides[1], by=None if by is None else float(number(by)), note=note))
    return tuple(out)


def _claim_side(key: str, raw: Any, by_name: dict[str, Param], base: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{key}: missing or not a mapping of searched params to values (e.g. "
                          f"{{model.halt_max_steps: 2}}), got {raw!r}")
    out = []
    for name, value in sorted(raw.items()):
        p = by_name.get(name)
        if p is None:
            raise ConfigError(f"{key}.{name}: not a param of this space{hint(str(name), by_name)} "
                              f"(params: {', '.join(by_name)})")
        canon = _canonical(f"{key}.{name}", base, name, value)
        if p.kind in ("int", "categorical") and not p.takes(canon):
            raise ConfigError(f"{key}.{name}: {value!r} is not a value the param takes ({p.describe()})")
        out.append((name, canon))
    return tuple(out)


def _check_families(params: list[Param], fixed: list[tuple[str, Any]], base: dict[str, Any]) -> None:
    """A family-specific model key (hrm.config.FAMILY_KEYS) that the space sets, fixed or
    sampled, must apply to every family its trials can have: the arch param's choices
    (narrowed by the param's own `when` on model.arch), else the base's arch."""
    arch = next((p for p in params if p.name == "model.arch"), None)
    every = arch.choices if arch is not None else (base["model"]["arch"],)
    for key, _ in fixed:
        why = arch_misfit_any(every, key)
        if why:
            raise ConfigError(f"overrides.{key}: {why}; set it in params with when: {{model.arch: [...]}}")
    for p in params:
        archs = dict(p.when).get("model.arch", every)
        why = arch_misfit_any(archs, p.name)
        if why:
            users = [a for a in archs if a in FAMILY_KEYS[p.name.split(".", 1)[1]]]
            fix = f"sample it only where it applies (when: {{model.arch: [{', '.join(users)}]}})" if users \
                else "no family of this space uses it: remove it"
            raise ConfigError(f"params.{p.name}: {why}; {fix}")


def arch_misfit_any(archs: Any, key: str) -> str | None:
    section, _, name = key.partition(".")
    if section != "model":
        return None
    return next((why for a in archs if (why := arch_misfit(a, [name]))), None)


def _check_rounds(space: SearchSpace, base: dict[str, Any]) -> None:
    """ASHA's max_t must be reachable by every trial, in its time_attr's unit; a compute
    time_attr needs the budget in that unit (trials of different cost per step would end
    at different compute otherwise)."""
    s = space.scheduler
    if s.type != "asha":
        return
    unit = space.base_config.train.unit
    if s.time_attr in ("samples", "flops") and unit != s.time_attr:
        raise ConfigError(f"scheduler.time_attr: {s.time_attr} needs the trials' budget in {s.time_attr} "
                          f"(train.{s.time_attr}, with train.{space.base_config.train.unit}s: null), got a "
                          f"train.{'steps' if unit == 'step' else 'epochs' if unit == 'epoch' else unit} budget")
    options = [[(p.name, v) for v in (p.choices if p.kind == "categorical" else (p.low, p.high))]
               for p in space.params if p.name in ROUND_KEYS]
    for combo in itertools.product(*options):
        try:
            cfg = with_values(base, combo)
        except ConfigError:
            continue
        t, reach = cfg.train, run_length(cfg)[s.time_attr]
        if reach is None or reach >= s.max_t:
            continue
        if s.time_attr == "eval_round":
            raise ConfigError(
                f"scheduler.max_t: {s.max_t} is more eval rounds than a trial reports ({reach}: one per "
                f"train.eval_interval ({t.eval_interval:g}) of its train.{_budget_key(t)} ({t.budget:g}) and one at "
                "the end); ASHA would never reach max_t")
        raise ConfigError(f"scheduler.max_t: {s.max_t:g} is more {s.time_attr} than a trial trains "
                          f"({reach:g}, train.{_budget_key(t)} {t.budget:g}); ASHA would never reach max_t")


def _budget_key(t: Any) -> str:
    return {"step": "steps", "epoch": "epochs"}.get(t.unit, t.unit)
