"""Config files: the shipped configs, the one strict YAML reader (of configs and search
spaces), loading with `--set` overrides, saving the resolved config beside every run."""

from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from hrm.config.coerce import to_dict
from hrm.config.keys import apply_overrides, parse_override
from hrm.config.schema import Config, arch_misfit, from_dict
from hrm.errors import ConfigError
from hrm.storage import write_atomic


def builtin_config_path(name: str) -> Path:
    """Path of a config shipped in hrm/configs (name with or without .yaml)."""
    stem = name[:-5] if name.endswith(".yaml") else name
    return Path(str(resources.files("hrm") / "configs" / f"{stem}.yaml"))


def builtin_configs() -> list[str]:
    return sorted(p.name[:-5] for p in (resources.files("hrm") / "configs").iterdir() if p.name.endswith(".yaml"))


def resolve_config_path(spec: str) -> Path:
    """A file path, or the name of a shipped config ('quickstart', 'sudoku_extreme')."""
    path = Path(spec)
    if path.exists():
        return path
    builtin = builtin_config_path(spec)
    if "/" not in spec and builtin.exists():
        return builtin
    raise ConfigError(f"config file not found: {spec} (shipped configs: {', '.join(builtin_configs())})")


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path, label: str | None = None,
              sections: str = "model, data, optim, train") -> dict[str, Any]:
    """The mapping in a YAML file, strictly: one line (ConfigError, naming `label` or the
    path) for a missing, unreadable, non-UTF-8, empty or invalid file, a duplicate key or a
    top level that is not a mapping of `sections`. The one YAML reader of configs and spaces."""
    path, label = Path(path), label or str(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{label}: file not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{label}: not UTF-8 text (byte {exc.start}); YAML files must be UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{label}: cannot read ({exc.strerror})") from None
    try:
        raw = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}:" if mark else ""
        raise ConfigError(f"{label}:{where} not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if raw is None:
        raise ConfigError(f"{label}: the file is empty (it must be a mapping of sections: {sections})")
    if not isinstance(raw, dict):
        raise ConfigError(f"{label}: the top level must be a mapping of sections ({sections})")
    return raw


def load_config(spec: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a YAML config (file path or shipped name) with `key=value` overrides.

    A family-specific model key (FAMILY_KEYS) that the file or an override sets for a
    family that does not use it is an error; keys a file set for its own family and an
    override switches away from (`--set model.arch=trm` on an HRM config) are left
    unused, as the file was written for another family."""
    path = resolve_config_path(str(spec))
    raw = read_yaml(path)
    try:
        cfg = from_dict(apply_overrides(raw, list(overrides)))
        model = raw.get("model") if isinstance(raw.get("model"), dict) else {}
        why = arch_misfit(model.get("arch", "hrm"), model)
        set_keys = [parse_override(o)[0] for o in overrides]
        why = why or arch_misfit(cfg.model.arch, [k[1] for k in set_keys if len(k) == 2 and k[0] == "model"])
        if why:
            raise ConfigError(why)
        return cfg
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def save_config(cfg: Config, path: str | Path) -> None:
    write_atomic(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))


def int_at_least(minimum: int):
    """An argparse `type=` for integers >= `minimum`, with a one-line error."""
    import argparse

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"  # argparse names the type in some messages
    return parse


def anchor_paths(cfg: Config, base: str | Path) -> Config:
    """`cfg` with relative data paths made absolute against `base`: Ray workers run in
    other folders, and every trial must find the one dataset cache of the driver."""
    def absolute(p: str | None) -> str | None:
        return p if p is None or "://" in p or Path(p).is_absolute() else str(Path(base) / p)

    data = dataclasses.replace(cfg.data, root=absolute(cfg.data.root), path=absolute(cfg.data.path),
                               share=absolute(cfg.data.share))
    return dataclasses.replace(cfg, data=data)
