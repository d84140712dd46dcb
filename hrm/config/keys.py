"""Dotted keys ("optim.lr") on plain nested mappings: the one implementation that `--set`
overrides, search spaces and their edits share."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import yaml

from hrm.config.schema import Config, from_dict
from hrm.errors import ConfigError


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key.sub=value")
    key, value = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override '{text}' has an empty key part")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{text}': value is not valid YAML ({exc.__class__.__name__})") from None
    return parts, parsed


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    raw = copy.deepcopy(raw)
    for text in overrides:
        parts, value = parse_override(text)
        try:
            set_key(raw, ".".join(parts), value)
        except ConfigError as exc:
            raise ConfigError(f"override '{text}': {exc}") from None
    return raw


def set_key(raw: dict[str, Any], key: str, value: Any) -> None:
    """raw[a][b] = value for key "a.b", making sections on the way (tuples become lists)."""
    parts = key.split(".")
    if not all(parts):
        raise ConfigError(f"'{key}' has an empty key part")
    node = raw
    for i, part in enumerate(parts[:-1]):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"'{'.'.join(parts[: i + 1])}' is not a section, so '{key}' is not a config key")
    node[parts[-1]] = thaw(value)


def get_key(raw: Mapping[str, Any], key: str) -> Any:
    """raw[a][b] for key "a.b"; KeyError if it is not there."""
    node: Any = raw
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def flat_items(raw: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, value) of every leaf; an empty mapping is a leaf."""
    out = []
    for key, value in raw.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        out.extend(flat_items(value, dotted) if isinstance(value, Mapping) and value else [(dotted, value)])
    return out


def with_values(raw: dict[str, Any], items: Any) -> Config:
    """The config `raw` describes with each (dotted key, value) of `items` set, validated."""
    raw = copy.deepcopy(raw)
    for key, value in items:
        set_key(raw, key, value)
    return from_dict(raw)


def freeze(value: Any) -> Any:
    """Lists as tuples, recursively (hashable, and how config fields hold lists)."""
    return tuple(freeze(v) for v in value) if isinstance(value, (list, tuple)) else value


def thaw(value: Any) -> Any:
    return [thaw(v) for v in value] if isinstance(value, tuple) else value
