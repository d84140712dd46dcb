"""`hrm import {hrm,trm,urm}`: a checkpoint of the published reference code as one of ours.

The references save (see docs/import.md for where each fact comes from):
- HRM and TRM: a bare `model.state_dict()` in a file `step_<N>` (no extension), every key
  prefixed by torch.compile's and the ACT wrapper's `_orig_mod.model.inner.`, with
  `all_config.yaml` beside it (their run's config, keys sorted);
- URM: `step_<N>.pt`, a dict holding `model_state_dict` (same prefix) among optimizer and
  RNG states, and its config beside it (all_config.yaml, or the config.yaml its code writes);
  its one stack `layers.*` is our `net`, its `init_hidden` our `H_init`.
Files are read with `torch.load(weights_only=True)`: tensors and plain containers only, so
loading never runs code from the file. Every tensor of the file must find its place in our
model and every parameter and buffer of our model must be filled, else one line names what
is extra or missing. The puzzle table: Sudoku's and Maze's single trained row comes across;
an ARC table must have the rows of our dataset's identifiers, else one line gives both sizes,
unless `puzzle_table="mean"` fills ours with the row mean (what TRM's and URM's own loaders
do). The result is one of our checkpoint folders whose manifest records the source file, its
sha256, its format and the puzzle-table choice.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import yaml

from hrm.checkpoint import fits, sha256_of, write_checkpoint_folder
from hrm.config import Config, ConfigError, from_dict, load_config, to_dict
from hrm.dataset import task_spec

FAMILIES = ("hrm", "trm", "urm")
PREFIXES = ("_orig_mod.model.inner.", "model.inner.", "_orig_mod.")
# Reference key -> ours, by part: the network modules first, then the pieces every family shares.
_SHARED = {"embed_tokens.embedding_weight": "embed_tokens.weight", "lm_head.weight": "lm_head.weight",
           "q_head.weight": "q_head.weight", "q_head.bias": "q_head.bias", "puzzle_emb.weights": "puzzle_emb.table",
           "embed_pos.embedding_weight": "embed_pos.weight", "H_init": "H_init", "L_init": "L_init",
           "init_hidden": "H_init"}
_LAYER = {"self_attn.qkv_proj.weight": "attn.qkv.weight", "self_attn.o_proj.weight": "attn.out.weight",
          "mlp_t.gate_up_proj.weight": "attn.mlp.gate_up.weight", "mlp_t.down_proj.weight": "attn.mlp.down.weight",
          "mlp.gate_up_proj.weight": "mlp.gate_up.weight", "mlp.down_proj.weight": "mlp.down.weight",
          "mlp.dwconv.weight": "mlp.conv.weight", "mlp.dwconv.bias": "mlp.conv.bias"}
_STACKS = {"hrm": {"H_level": "H", "L_level": "L"}, "trm": {"L_level": "net"}, "urm": {"": "net"}}
_LAYER_KEY = re.compile(r"^(?:(H_level|L_level)\.)?layers\.(\d+)\.(.+)$")


def our_key(family: str, key: str) -> str | None:
    """Our state-dict key for a reference key (prefix already stripped), or None if it has none."""
    if key in _SHARED:
        return _SHARED[key]
    m = _LAYER_KEY.match(key)
    if not m or m.group(3) not in _LAYER:
        return None
    stack = _STACKS[family].get(m.group(1) or "")
    return None if stack is None else f"{stack}.layers.{m.group(2)}.{_LAYER[m.group(3)]}"


def read_state(path: Path) -> tuple[dict[str, Any], str, int]:
    """(the model's tensors without the prefix, the file's format, its step) from a reference file."""
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)  # never runs code from the file
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a file it cannot read as tensors
        why = " ".join(str(exc).split())[:160]
        raise ConfigError(f"{path}: not a checkpoint of tensors (torch.load with weights_only refused it: {why})") \
            from None
    fmt = "urm-step-dict" if isinstance(obj, dict) and "model_state_dict" in obj else "bare-state-dict"
    state = obj["model_state_dict"] if fmt == "urm-step-dict" else obj
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{path}: not a state dict (a mapping of names to tensors)")
    for prefix in PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
            break
    step = obj.get("step") if fmt == "urm-step-dict" else None
    digits = re.findall(r"\d+", path.name)
    return state, fmt, int(step if isinstance(step, int) else digits[-1] if digits else 0)


def detect_family(state: dict[str, Any]) -> str | None:
    """Which reference a state dict is from, by its modules."""
    if any(k.startswith("H_level.") for k in state):
        return "hrm"
    if any(k.startswith("L_level.") for k in state):
        return "trm"
    return "urm" if any(k.startswith("layers.") for k in state) else None


def find_files(source: Path) -> tuple[Path, Path]:
    """(weights file, all_config.yaml) of a release folder or a step file."""
    if not source.exists():
        raise ConfigError(f"{source}: no such file or folder")
    folder = source if source.is_dir() else source.parent
    if source.is_dir():
        steps = sorted((p for p in folder.iterdir() if p.is_file() and re.fullmatch(r"(step_\d+(\.pt)?|checkpoint)",
                                                                                    p.name)),
                       key=lambda p: int(re.findall(r"\d+", p.name)[0]) if re.findall(r"\d+", p.name) else -1)
        if not steps:
            raise ConfigError(f"{source}: no step_<N>, step_<N>.pt or checkpoint file in the folder")
        source = steps[-1]
    config = next((folder / n for n in ("all_config.yaml", "config.yaml") if (folder / n).is_file()), None)
    if config is None:
        raise ConfigError(f"{folder}: no all_config.yaml (or URM's config.yaml) beside {source.name} (the reference "
                          "writes it with the checkpoint; it holds the architecture)")
    return source, config


def reference_config(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not a readable YAML file ({type(exc).__name__})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("arch"), dict):
        raise ConfigError(f"{path}: not a reference run's config (no 'arch' section)")
    return raw


def shipped_config_for(ref: dict[str, Any]) -> str:
    """Our shipped config of the task a reference run trained on, from its data path."""
    paths = ref.get("data_paths") or [ref.get("data_path") or ""]
    name = str(paths[0]).lower()
    if "sudoku" in name:
        return "sudoku_extreme"
    if "maze" in name:
        return "maze_hard"
    if "arc" in name:
        return "arc_agi_2" if re.search(r"arc[-_]?(agi[-_]?)?2", name) else "arc_agi_1"
    raise ConfigError(f"the reference's data path {paths[0]!r} names no task we know (sudoku, maze, arc): "
                      "give our config of its task with --config")


def _model(family: str, arch: dict[str, Any]) -> dict[str, Any]:
    """Our model section from the reference's `arch`."""
    loss = str((arch.get("loss") or {}).get("loss_type", "stablemax_cross_entropy"))
    pos = str(arch.get("pos_encodings", "rope"))
    model = {"arch": family, "hidden_size": arch["hidden_size"], "num_heads": arch["num_heads"],
             "expansion": float(arch["expansion"]), "halt_max_steps": arch.get("halt_max_steps", arch.get("loops")),
             "halt_exploration_prob": arch.get("halt_exploration_prob", 0.1), "H_cycles": arch["H_cycles"],
             "L_cycles": arch["L_cycles"], "loss": "softmax" if loss.startswith("softmax") else "stablemax",
             "pos_encoding": "learned" if pos == "learned" else "rope",
             "puzzle_emb": int(arch.get("puzzle_emb_ndim", arch["hidden_size"])) > 0}
    if family == "hrm":
        model.update(H_layers=arch["H_layers"], L_layers=arch["L_layers"])
    elif family == "urm":
        model.update(L_layers=arch["num_layers"])
    elif family == "trm":
        model.update(L_layers=arch["L_layers"], mixer="mlp" if arch.get("mlp_t") else "attention",
                     puzzle_positions=int(arch.get("puzzle_emb_len", 16)))
        if pos not in ("rope", "learned") and not arch.get("mlp_t"):
            raise ConfigError(f"TRM with attention and pos_encodings {pos!r} has no counterpart here (rope or learned)")
    ndim = int(arch.get("puzzle_emb_ndim", arch["hidden_size"]) or 0)
    if ndim and family != "trm":
        model["puzzle_positions"] = max(1, math.ceil(ndim / arch["hidden_size"]))
    return model


def convert_config(family: str, ref: dict[str, Any], base: Config) -> Config:
    """Our config of the reference's run: its model, optimiser and training settings over the
    data section of `base` (our shipped config of the same task, or the user's)."""
    raw = to_dict(base)
    raw["model"] = {**raw["model"], **_model(family, ref["arch"])}
    raw["optim"].update(lr=ref.get("lr", raw["optim"]["lr"]), weight_decay=ref.get("weight_decay",
                        raw["optim"]["weight_decay"]), puzzle_emb_lr=ref.get("puzzle_emb_lr", raw["optim"]["puzzle_emb_lr"]),
                        puzzle_emb_weight_decay=ref.get("puzzle_emb_weight_decay",
                                                        raw["optim"]["puzzle_emb_weight_decay"]),
                        warmup_steps=ref.get("lr_warmup_steps", raw["optim"]["warmup_steps"]),
                        lr_min_ratio=ref.get("lr_min_ratio", raw["optim"]["lr_min_ratio"]),
                        betas=[ref.get("beta1", 0.9), ref.get("beta2", 0.95)])
    train = raw["train"]
    train.update(global_batch_size=ref.get("global_batch_size", train["global_batch_size"]),
                 ema=ref.get("ema_rate", 0.999) if ref.get("ema") else None, seed=ref.get("seed", train["seed"]))
    if ref.get("epochs"):
        train.update(epochs=ref["epochs"], steps=None, samples=None, flops=None)
    for key in ("H_layers",) if family != "hrm" else ():
        raw["model"].pop(key, None)
    return from_dict(raw)


def import_checkpoint(family: str, source: str | Path, out: str | Path, *, config: str | None = None,
                      overrides: tuple[str, ...] = (), puzzle_table: str = "keep") -> Path:
    """Convert a reference checkpoint (a release folder or a step file) into our checkpoint folder
    `out`; every check comes before anything is written."""
    if family not in FAMILIES:
        raise ConfigError(f"family {family!r}: must be one of {', '.join(FAMILIES)}")
    if puzzle_table not in ("keep", "mean"):
        raise ConfigError(f"--puzzle-table {puzzle_table!r}: must be keep or mean")
    weights, config_file = find_files(Path(source))
    ref = reference_config(config_file)
    state, fmt, step = read_state(weights)
    found = detect_family(state)
    if found != family:
        raise ConfigError(f"{weights}: a {found or 'unknown'} checkpoint (by its keys), not {family}: "
                          f"use `hrm import {found}`" if found else f"{weights}: no {family} modules in its keys")
    cfg = convert_config(family, ref, load_config(config or shipped_config_for(ref), list(overrides)))
    spec = task_spec(cfg.data)
    weights_map, table = _convert(family, state, weights)
    model, task = _model_for(cfg, spec, weights_map, weights)
    note = _puzzle_table(weights_map, table, model, puzzle_table, weights)
    fits(model, weights_map, f"{weights}", "the checkpoint and its all_config.yaml do not describe one model")
    model.load_state_dict(weights_map)
    payload = {"model": model.state_dict(), "config": to_dict(cfg), "task": task, "step": step, "eval_round": 0,
               "metrics": {}}
    imported = {"family": family, "format": fmt, "source": str(Path(weights).resolve()),
                "sha256": sha256_of(str(weights)), "puzzle_table": note}
    return write_checkpoint_folder(out, payload={**payload, "imported": imported}, cfg=cfg,
                                   manifest={"step": step, "eval_round": 0, "metrics": {}, "imported": imported})


def _convert(family: str, state: dict[str, Any], weights: Path) -> tuple[dict[str, Any], Any]:
    """(our state dict in float32 but the puzzle table, the reference's puzzle table or None)."""
    out, extra = {}, []
    for key, tensor in state.items():
        ours = our_key(family, key)
        if ours is None:
            extra.append(key)
        else:
            out[ours] = tensor.float()
    if extra:
        raise ConfigError(f"{weights}: {len(extra)} tensor(s) with no place in our {family} model "
                          f"({', '.join(sorted(extra)[:3])}{', ...' if len(extra) > 3 else ''})")
    return out, out.pop("puzzle_emb.table", None)


def _model_for(cfg: Config, spec: Any, weights_map: dict[str, Any], weights: Path) -> tuple[Any, dict[str, int]]:
    """Our model of `cfg` for its task's shape; the vocabulary must be the checkpoint's."""
    from hrm.model import build_model

    vocab = int(weights_map["lm_head.weight"].shape[0]) if "lm_head.weight" in weights_map else None
    if vocab is not None and vocab != spec.vocab_size:
        raise ConfigError(f"{weights}: a vocabulary of {vocab} tokens, but the data of our config has {spec.vocab_size} "
                          f"(give our config of its task with --config)")
    task = {"vocab_size": spec.vocab_size, "seq_len": spec.seq_len, "num_puzzle_ids": spec.num_puzzle_ids}
    return build_model(cfg, task), task


def _puzzle_table(weights_map: dict[str, Any], table: Any, model: Any, how: str, weights: Path) -> str:
    """Put the reference's puzzle table into `weights_map` as ours: kept row for row, or (how
    "mean") its row mean in every row; one line when the sizes differ and `how` is keep."""
    if model.puzzle_emb is None:
        if table is not None:
            raise ConfigError(f"{weights}: holds a puzzle table but the converted config has none")
        return "none"
    ours = model.puzzle_emb.table
    if table is None:
        raise ConfigError(f"{weights}: no puzzle_emb.weights, but the model has a puzzle table")
    if how == "keep":
        if tuple(table.shape) != tuple(ours.shape):
            raise ConfigError(f"{weights}: a puzzle table of {table.shape[0]} rows, our dataset's identifiers need "
                              f"{ours.shape[0]}: rebuild the reference's dataset identically, or pass --puzzle-table mean")
        weights_map["puzzle_emb.table"] = table
        return "kept"
    weights_map["puzzle_emb.table"] = table.mean(0, keepdim=True).expand_as(ours).clone()
    return f"mean of {table.shape[0]} rows"
