"""Plain mappings (read from YAML) into frozen config dataclasses, strictly: unknown keys (with
the closest allowed one), wrong types and values out of their declared bounds are one line
that names the dotted key and what is allowed.

Written here rather than with pydantic (which ships with Ray): the configs are frozen
standard dataclasses that the rest of the library copies with `dataclasses.replace`,
their bounds are `Range` annotations that the search spaces reuse, and YAML 1.1 reads
`1e-3` as a string and `on`/`off` as booleans; pydantic's errors are multi-line tables
that would need the same amount of code to be turned back into these lines.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from typing import Any, Literal

from hrm.errors import ConfigError


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple and typing.get_args(tp)[-1] is Ellipsis:
        return f"a list of ({_type_name(typing.get_args(tp)[0])})"
    if origin is tuple:
        return "a list [" + ", ".join(_type_name(a) for a in typing.get_args(tp)) + "]"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string"}.get(tp, str(tp))


_MISSING = object()
_FLOAT_RE = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def number(value: Any) -> float | int | None:
    """A YAML number, or a numeric string (PyYAML follows YAML 1.1, which reads `1e-3`,
    with no dot, as a string); None for anything else, booleans included."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str) and _FLOAT_RE.fullmatch(value.strip()):
        return float(value)
    return None


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Return `value` as type `tp` or _MISSING if it does not fit."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        allowed = typing.get_args(tp)
        # YAML reads `on`/`off` as booleans; our literals mean the words.
        if isinstance(value, bool) and "on" in allowed:
            value = "on" if value else "off"
        return value if value in allowed and type(value) in {type(a) for a in allowed} else _MISSING
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            out = _coerce(value, arg, key)
            if out is not _MISSING:
                return out
        return _MISSING
    if origin is tuple and len(typing.get_args(tp)) == 2 and typing.get_args(tp)[1] is Ellipsis:
        if not isinstance(value, (list, tuple)):
            return _MISSING
        items = [_coerce(v, typing.get_args(tp)[0], key) for v in value]
        return _MISSING if any(i is _MISSING for i in items) else tuple(items)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            return _MISSING
        items = [_coerce(v, a, key) for v, a in zip(value, args)]
        return _MISSING if any(i is _MISSING for i in items) else tuple(items)
    if tp is type(None):
        return None if value is None else _MISSING
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            return _MISSING
        return _build(tp, value, key)
    if tp is bool:
        return value if isinstance(value, bool) else _MISSING
    if tp is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _MISSING
    if tp is float:
        num = number(value)
        return _MISSING if num is None else float(num)
    if tp is str:
        return value if isinstance(value, str) else _MISSING
    raise TypeError(f"unsupported config type {tp} at {key}")


def build(cls: type, raw: Any, prefix: str = "") -> Any:
    """A config dataclass from a plain mapping, strictly (types, unknown keys, bounds)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"'{prefix}' must be a mapping, got {raw!r}")
    return _build(cls, raw, prefix)


def _build(cls: type, raw: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise ConfigError(f"unknown key '{dotted}'{hint(key, names)} (allowed: {', '.join(names)})")
        kwargs[key] = coerce(value, hints[key], dotted)
    return cls(**kwargs)


def coerce(value: Any, tp: Any, key: str) -> Any:
    """`value` as type `tp` (as a config field reads it), or one line naming `key`."""
    out = _coerce(value, tp, key)
    if out is _MISSING:
        raise ConfigError(f"'{key}' must be {_type_name(tp)}, got {value!r}")
    return out


def hint(word: Any, allowed: Any) -> str:
    """"; did you mean 'x'?" for the allowed word closest to `word`, or ""."""
    close = difflib.get_close_matches(str(word), [str(a) for a in allowed], n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def to_dict(cfg: Any) -> dict[str, Any]:
    def plain(v: Any) -> Any:
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(cfg))
