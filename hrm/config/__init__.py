"""Typed, frozen configuration for model, data, optimiser and training.

Every component owns a keyword-only frozen dataclass (`schema`); `load_config` (`files`)
builds them from YAML and rejects unknown keys (suggesting the closest one) and wrong
types (`coerce`) and values out of their bounds (`bounds`) with one line that names the
file, the dotted key and what is allowed. `--set a.b=value` overrides (`keys`) are applied
to the raw mapping before validation, so they get the same checks.
"""

from hrm.config.bounds import AtLeast1, NonNeg, Range, checked
from hrm.config.coerce import build, coerce, hint, number, to_dict
from hrm.config.files import (anchor_paths, builtin_config_path, builtin_configs, int_at_least, load_config,
                              read_yaml, resolve_config_path, save_config)
from hrm.config.keys import (apply_overrides, flat_items, freeze, get_key, parse_override, set_key, thaw,
                             with_values)
from hrm.config.schema import (ARCHS, BUDGETS, FAMILY_KEYS, MOST_AUGMENTATIONS, TASK_NAMES, ARCConfig, Config,
                               DataConfig, MazeConfig, ModelConfig, OptimConfig, SudokuConfig, TrainConfig, WandbConfig,
                               arch_misfit, from_dict)
from hrm.errors import ConfigError

__all__ = [
    "ARCHS", "BUDGETS", "FAMILY_KEYS", "MOST_AUGMENTATIONS", "TASK_NAMES", "ARCConfig", "AtLeast1", "Config",
    "ConfigError", "DataConfig", "MazeConfig", "ModelConfig", "NonNeg", "OptimConfig", "Range", "SudokuConfig",
    "TrainConfig", "WandbConfig", "anchor_paths", "apply_overrides", "arch_misfit", "build", "builtin_config_path",
    "builtin_configs", "checked", "coerce", "flat_items", "freeze", "from_dict", "get_key", "hint", "int_at_least",
    "load_config", "number", "parse_override", "read_yaml", "resolve_config_path", "save_config", "set_key", "thaw",
    "to_dict", "with_values",
]
