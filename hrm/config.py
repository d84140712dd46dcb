"""Typed, frozen configuration for model, data, optimiser and training.

Every component owns a keyword-only frozen dataclass; `load_config` builds them from
YAML and rejects unknown keys (suggesting the closest one) and wrong types with one
line that names the file, the dotted key and what is allowed. Cross-field checks
live in `__post_init__`. `--set a.b=value` overrides are applied to the raw mapping
before validation, so they get the same checks.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from hrm.errors import ConfigError
from hrm.storage import write_atomic

# The tasks (hrm.tasks registers one module each, in this order) and how many augmented
# variants a task has at most where it has a limit (a maze has 7 dihedral maps besides itself).
TASK_NAMES = ("sudoku", "maze", "arc")
MOST_AUGMENTATIONS = {"maze": 7}




@dataclass(frozen=True)
class Range:
    """A field's bounds, declared beside it: `x: Annotated[float, Range(gt=0)]`. Every float
    field must also be finite. `checked(obj, section)` enforces both for any dataclass."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def why(self, v: float) -> str | None:
        """None if `v` is within the bounds, else what is allowed ("in [0, 1]", ">= 1")."""
        ok = ((self.ge is None or v >= self.ge) and (self.gt is None or v > self.gt)
              and (self.le is None or v <= self.le) and (self.lt is None or v < self.lt))
        if ok:
            return None
        lo = f"[{self.ge:g}" if self.ge is not None else f"({self.gt:g}" if self.gt is not None else ""
        hi = f"{self.le:g}]" if self.le is not None else f"{self.lt:g})" if self.lt is not None else ""
        if lo and hi:
            return f"in {lo}, {hi}"
        return f"{'>=' if lo[0] == '[' else '>'} {lo[1:]}" if lo else f"{'<=' if hi[-1] == ']' else '<'} {hi[:-1]}"


AtLeast1 = Annotated[int, Range(ge=1)]
NonNeg = Annotated[float, Range(ge=0)]


@functools.cache
def _bounds(cls: type) -> dict[str, tuple[Range | None, bool]]:
    """field name -> (its Range or None, whether it holds floats)."""
    out = {}
    for name, tp in typing.get_type_hints(cls, include_extras=True).items():
        ranges = [m for m in getattr(tp, "__metadata__", ()) if isinstance(m, Range)]
        base = typing.get_args(tp)[0] if ranges else tp
        floats = base is float or float in typing.get_args(base)
        out[name] = (ranges[0] if ranges else None, floats)
    return out


def checked(obj: Any, section: str, error: type[ConfigError] = ConfigError) -> None:
    """Raise ConfigError naming `section.field` if a field is out of its declared Range or a
    float field is not finite (NaN and infinities are never meant)."""
    for name, (bounds, floats) in _bounds(type(obj)).items():
        v = getattr(obj, name)
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if floats and not math.isfinite(v):
            raise error(f"{section}.{name} must be a finite number, got {v}")
        why = bounds.why(v) if bounds else None
        if why:
            raise error(f"{section}.{name} must be {why}, got {v:g}")


# The family-specific model keys and the families that use them (hrm.model: HRM, TRM, the
# plain transformer). TRM reads H_cycles as its T recursions, L_cycles as its n latent
# updates and L_layers as the depth of its one network; the transformer is one stack of
# H_layers + L_layers blocks (HRM's parameters exactly). Every other model key is shared.
ARCHS = ("hrm", "trm", "transformer")
FAMILY_KEYS = {
    "H_layers": ("hrm", "transformer"),
    "L_layers": ("hrm", "trm", "transformer"),
    "H_cycles": ("hrm", "trm"),
    "L_cycles": ("hrm", "trm"),
    "gradient": ("hrm", "trm"),
}


def arch_misfit(arch: Any, keys: Any, where: str = "model.") -> str | None:
    """Why one of `keys` (model keys someone set) does not apply to `arch`, or None."""
    for key in keys:
        users = FAMILY_KEYS.get(key)
        if arch in ARCHS and users is not None and arch not in users:
            uses = [k for k, fams in FAMILY_KEYS.items() if arch in fams]
            return (f"{where}{key} does not apply to model.arch '{arch}' (it is used by {', '.join(users)}; "
                    f"'{arch}' uses {', '.join(uses) or 'none of ' + ', '.join(FAMILY_KEYS)})")
    return None


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    # The family (hrm.model.FAMILIES): HRM, TRM (one small recursive network) or a plain
    # transformer in the same ACT loop. FAMILY_KEYS lists the keys only some families use.
    arch: Literal[ARCHS] = "hrm"
    hidden_size: AtLeast1 = 512
    num_heads: AtLeast1 = 8
    expansion: Annotated[float, Range(gt=0)] = 4.0
    H_layers: AtLeast1 = 4
    L_layers: AtLeast1 = 4
    H_cycles: AtLeast1 = 2
    L_cycles: AtLeast1 = 2
    halt_max_steps: AtLeast1 = 16
    halt_exploration_prob: Annotated[float, Range(ge=0, le=1)] = 0.1
    # Inference may run more segments than training (trained at 8, run at 16 helps
    # Sudoku); None = halt_max_steps.
    eval_halt_max_steps: Annotated[int | None, Range(ge=1)] = None
    pos_encoding: Literal["rope", "learned"] = "rope"
    rope_theta: Annotated[float, Range(gt=0)] = 10000.0
    rms_norm_eps: Annotated[float, Range(gt=0)] = 1e-5
    puzzle_emb: bool = True
    loss: Literal["stablemax", "softmax"] = "stablemax"
    # Token mixing in every block: attention, or (TRM's option for fixed-size grids) an MLP
    # across the sequence axis, which holds the positions itself (RoPE is then not applied).
    mixer: Literal["attention", "mlp"] = "attention"
    # Which updates of a segment are differentiated: one_step = the last L and H update
    # (HRM's approximation), last_recursion = the whole last H cycle / TRM recursion (its
    # n+1 calls); auto = the family's published choice (HRM one_step, TRM last_recursion).
    gradient: Literal["auto", "one_step", "last_recursion"] = "auto"
    # ACT halting in training; false: every slot runs halt_max_steps segments (the Q head is
    # still trained on correctness, with no continue target and no extra Q segment).
    act: bool = True

    def __post_init__(self) -> None:
        checked(self, "model")
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"model.hidden_size ({self.hidden_size}) must be divisible by model.num_heads ({self.num_heads})"
            )
        if self.pos_encoding == "rope" and (self.hidden_size // self.num_heads) % 2:
            raise ConfigError("model.pos_encoding 'rope' needs an even head dim (hidden_size / num_heads)")

    @property
    def eval_steps(self) -> int:
        return self.eval_halt_max_steps or self.halt_max_steps

    @property
    def gradient_mode(self) -> str:
        if self.gradient != "auto":
            return self.gradient
        return "last_recursion" if self.arch == "trm" else "one_step"


@dataclass(frozen=True, kw_only=True)
class SudokuConfig:
    size: Literal[4, 6, 9] = 9
    difficulty: Literal["easy", "minimal", "hard"] = "hard"
    # Cells removed from the solution for difficulty 'easy' (ignored otherwise).
    blanks: int | None = None
    # Published CSVs (source,question,answer,rating) instead of generating.
    train_csv: str | None = None
    test_csv: str | None = None

    def __post_init__(self) -> None:
        if self.difficulty == "easy" and self.train_csv is None:
            if self.blanks is None or not 0 < self.blanks < self.size * self.size:
                raise ConfigError(
                    f"data.sudoku.blanks must be in 1..{self.size * self.size - 1} for difficulty 'easy', "
                    f"got {self.blanks}"
                )
        if (self.train_csv is None) != (self.test_csv is None):
            raise ConfigError("data.sudoku.train_csv and data.sudoku.test_csv must be given together")
        if self.train_csv is not None and self.size != 9:
            raise ConfigError("data.sudoku.train_csv is the published 9x9 format: data.sudoku.size must be 9")


@dataclass(frozen=True, kw_only=True)
class MazeConfig:
    size: Annotated[int, Range(ge=4, le=30)] = 30
    # Keep mazes whose shortest path is longer than this (moves; published: 110).
    min_path: AtLeast1 = 110

    def __post_init__(self) -> None:
        checked(self, "data.maze")


ARCVersion = Literal["arc-agi-1", "arc-agi-2"]


@dataclass(frozen=True, kw_only=True)
class ARCConfig:
    # Its training tasks train, its evaluation tasks are the test split.
    version: ARCVersion = "arc-agi-1"
    # Other versions whose training and evaluation tasks are added to training.
    extra_versions: tuple[ARCVersion, ...] = ()
    # Folders of ARC task JSON added to training (e.g. ConceptARC).
    extra_dirs: tuple[str, ...] = ()
    # Random placement of each grid on the 30x30 canvas (train split only).
    translate: bool = True
    # Use only the first N training / evaluation tasks (smoke tests; null = all).
    max_train_tasks: Annotated[int | None, Range(ge=1)] = None
    max_eval_tasks: Annotated[int | None, Range(ge=1)] = None

    def __post_init__(self) -> None:
        if self.version == "arc-agi-1" and "arc-agi-2" in self.extra_versions:
            raise ConfigError(
                "data.arc.extra_versions: training on arc-agi-2 while evaluating on arc-agi-1 is refused "
                "(ARC-AGI-2's training set contains 376 ARC-AGI-1 evaluation tasks)"
            )
        checked(self, "data.arc")
        if self.version in self.extra_versions:
            raise ConfigError(f"data.arc.extra_versions repeats data.arc.version '{self.version}'")


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    task: Literal[TASK_NAMES] = "sudoku"  # the tasks of hrm.tasks
    # Built datasets are cached under root/<task>-<hash of the builder options>;
    # `path` points at a prebuilt dataset folder instead. `share`: a folder or URI every
    # node reads (searches on object storage default it to <storage>/datasets): a dataset
    # missing under root is fetched from there, or built and published there.
    root: str = "data"
    path: str | None = None
    share: str | None = None
    seed: int = 0
    num_train: Annotated[int | None, Range(ge=1)] = 1000  # null: all (of a CSV)
    num_test: AtLeast1 = 1000
    num_aug: Annotated[int, Range(ge=0)] = 1000
    sudoku: SudokuConfig = field(default_factory=SudokuConfig)
    maze: MazeConfig = field(default_factory=MazeConfig)
    arc: ARCConfig = field(default_factory=ARCConfig)

    def __post_init__(self) -> None:
        checked(self, "data")
        most = MOST_AUGMENTATIONS.get(self.task)
        if most is not None and self.num_aug > most:
            raise ConfigError(f"data.num_aug for {self.task} must be in 0..{most} (it has {most} augmentations), "
                              f"got {self.num_aug}")


@dataclass(frozen=True, kw_only=True)
class OptimConfig:
    lr: NonNeg = 1e-4
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: NonNeg = 0.1
    puzzle_emb_lr: NonNeg = 1e-2
    puzzle_emb_weight_decay: NonNeg = 0.1
    warmup_steps: Annotated[int, Range(ge=0)] = 2000
    # Cosine decay ends at lr * lr_min_ratio; 1.0 keeps lr constant after warm-up.
    lr_min_ratio: Annotated[float, Range(ge=0, le=1)] = 1.0

    def __post_init__(self) -> None:
        checked(self, "optim")
        if not all(0.0 <= b < 1.0 for b in self.betas):  # NaN fails this too
            raise ConfigError(f"optim.betas must both be in [0, 1), got {list(self.betas)}")


BUDGETS = ("steps", "epochs", "samples", "flops")  # train.<one of them> is a run's length


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    global_batch_size: AtLeast1 = 768
    # The run's length, exactly one of: optimiser steps (= ACT segments), epochs (one
    # augmented variant per puzzle group each), samples (puzzle-segments: steps x batch) or
    # flops (the model's training FLOPs, as `hrm model-info` counts them; hrm.compute).
    # Budgets in samples or flops compare settings that differ in cost per step at equal compute.
    steps: Annotated[int | None, Range(ge=1)] = None
    epochs: Annotated[int | None, Range(ge=1)] = None
    samples: Annotated[int | None, Range(ge=1)] = None
    flops: Annotated[float | None, Range(gt=0)] = None
    # Evaluate every this much of the budget's unit (steps for steps and epochs), and at the end.
    eval_interval: Annotated[int | float, Range(gt=0)] = 1000
    # Questions evaluated each round (0 = the whole test split).
    eval_samples: Annotated[int, Range(ge=0)] = 0
    # Test-time-augmented views per question voted for pass@k (1 = no voting).
    eval_views: AtLeast1 = 1
    eval_batch_size: Annotated[int | None, Range(ge=1)] = None
    log_interval: AtLeast1 = 50
    checkpoint: bool = True
    keep_checkpoints: AtLeast1 = 2
    seed: int = 0
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"  # auto: CUDA, else Apple's MPS, else the CPU
    # dtype auto: bfloat16 on CUDA and on CPUs with native bf16 matmuls (AVX512-BF16/AMX),
    # float32 elsewhere; compile auto: on for CUDA only (hrm.runtime.auto_dtype).
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    compile: Literal["auto", "on", "off"] = "auto"
    # Exponential moving average of the weights (e.g. 0.999, TRM's); evaluation uses it and
    # checkpoints store it as the model (hrm.optim.EMA). null: off, as in HRM.
    ema: Annotated[float | None, Range(gt=0, lt=1)] = None
    out_dir: str = "runs/default"
    tensorboard: bool = True

    def __post_init__(self) -> None:
        checked(self, "train")
        given = [k for k in BUDGETS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ConfigError(f"train: give exactly one of {', '.join(f'train.{k}' for k in BUDGETS)}"
                              + (f", got {' and '.join(given)}" if given else ""))
        if self.unit in ("step", "epoch") and (self.eval_interval != int(self.eval_interval) or self.eval_interval < 1):
            raise ConfigError(f"train.eval_interval counts steps with a train.{given[0]} budget: it must be a whole "
                              f"number >= 1, got {self.eval_interval:g}")

    @property
    def unit(self) -> str:
        """The budget's unit: step, epoch, samples or flops (hrm.compute)."""
        return {"steps": "step", "epochs": "epoch", "samples": "samples", "flops": "flops"}[
            next(k for k in BUDGETS if getattr(self, k) is not None)]

    @property
    def budget(self) -> float:
        return getattr(self, {"step": "steps", "epoch": "epochs"}.get(self.unit, self.unit))


@dataclass(frozen=True, kw_only=True)
class Config:
    name: str = "hrm"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=1000))


# ---------------------------------------------------------------------------
# building dataclasses from plain mappings, strictly


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


def from_dict(raw: dict[str, Any]) -> Config:
    if not isinstance(raw, dict):
        raise ConfigError("a config must be a mapping at the top level")
    return _build(Config, raw)


def to_dict(cfg: Any) -> dict[str, Any]:
    def plain(v: Any) -> Any:
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(cfg))


# ---------------------------------------------------------------------------
# files and overrides


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


# Plain nested mappings addressed by dotted keys ("optim.lr"): the one implementation
# that overrides, search spaces and their edits share.


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
