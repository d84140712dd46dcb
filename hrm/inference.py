"""Evaluating stored checkpoints: one, or an ensemble of several (a seeds checkpoint is the
ensemble of its seeds), at their own Mmax or at several Mmax in one pass (inference-time
scaling), in the dtype each trained in; the files `hrm eval --out` writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from hrm import tasks
from hrm.config import ConfigError
from hrm.checkpoint import load_model, seed_folders, verify_checkpoint
from hrm.data.loader import Split
from hrm.dataset import ensure_dataset
from hrm.compute import pareto_front
from hrm.evaluate import EvalResult, Paths, run_eval, run_eval_at, task_eval
from hrm.runtime import resolve_dtype


def evaluate_checkpoint(
    path: str | Path | list[str | Path], *, data: str | Path | None = None, split: str = "test", device: str = "cpu",
    verified: bool = False, mmax: int | None = None, **options: Any,
) -> tuple[EvalResult, Split]:
    """Load a checkpoint folder, or several as an ensemble (each checked against its manifest
    unless `verified`), and `run_eval` on the first one's dataset (or `data`), at `mmax`
    segments (default: each checkpoint's eval Mmax); `options` go to run_eval (views, ks,
    limit, batch_size, keep_examples, paths). An ensemble's checkpoints must share one task and
    dataset shape (vocabulary, sequence length, puzzle ids)."""
    models, cfg, data_split, dev = _loaded(path, data, split, device, verified)
    options.setdefault("batch_size", 256)
    return run_eval(models, data_split, device=dev, dtype=eval_dtype(cfg, dev), steps=mmax, **options), data_split


def frontier(
    path: str | Path | list[str | Path], *, views: list[int], paths: list[Paths], mmax: list[int] | None = None,
    data: str | Path | None = None, split: str = "test", device: str = "cpu", verified: bool = False,
    metric: str = "pass@2", **options: Any,
) -> dict[str, Any]:
    """The inference-compute frontier of a checkpoint (or an ensemble): `metric` and its se
    against inference FLOPs per question at every Mmax (default: 1, 2, 4, ... up to 4x the
    training Mmax) x views x paths x ensemble size (`ensemble_sizes`), and the Pareto front
    (the points no cheaper or equally cheap point beats)."""
    models, cfg, data_split, dev = _loaded(path, data, split, device, verified)
    steps = sorted(set(mmax or scaling_steps(cfg.model.halt_max_steps, 4)))
    options.setdefault("batch_size", 256)
    points = [frontier_point(p, metric) for p in measure_grid(models, cfg, data_split, dev, steps, views, paths,
                                                              **options)]
    return {"metric": metric, "members": len(models), "points": points, "front": pareto_front(points, "max")}


def measure_grid(models: list, cfg: Any, data_split: Split, dev: torch.device, steps: list[int], views: list[int],
                 paths: list[Paths], **options: Any) -> list[dict[str, Any]]:
    """The metrics at every Mmax in `steps` x views x paths x ensemble size (the first m of
    `models`, m in `ensemble_sizes`): [{mmax, views, paths, members, metrics}]. Each
    (members, views, paths) is one pass over the Mmax values."""
    out = []
    for m in ensemble_sizes(len(models)):
        for v in sorted(set(views)):
            for p in paths:
                results = run_eval_at(models[:m], data_split, steps, views=v, paths=p, device=dev,
                                      dtype=eval_dtype(cfg, dev), **options)
                out += [{"mmax": s, "views": v, "paths": p.k, "members": m, "metrics": results[s].metrics}
                        for s in steps]
    return out


def frontier_point(measured: dict[str, Any], metric: str) -> dict[str, Any]:
    """A `measure_grid` entry as a point of the frontier: its axes, compute (inference FLOPs
    per question), value and se."""
    m = measured["metrics"]
    return {**{k: measured[k] for k in ("mmax", "views", "paths", "members")}, "compute": m["inference_flops"],
            "value": m[metric], "se": m.get(f"{metric}_se")}


def ensemble_sizes(n: int) -> list[int]:
    """The ensemble sizes a frontier measures for n members: 1, 2, 4, ... and n."""
    return scaling_steps(n, 1)


def _loaded(path: str | Path | list[str | Path], data: str | Path | None, split: str, device: str, verified: bool):
    """(models, config, split, device) of checkpoint(s) and their dataset (or `data`), checked to fit."""
    dev = torch.device(device)
    models, cfg = load_members(path if isinstance(path, (list, tuple)) else [path], dev, verified)
    folder = Path(data) if data else ensure_dataset(cfg.data)
    data_split = Split.load(folder, split)
    meta, model = data_split.meta, models[0]
    if (meta["task"], meta["vocab_size"], meta["seq_len"]) != (cfg.data.task, model.vocab_size, model.seq_len):
        raise ConfigError(f"dataset {folder}: {meta['task']} with vocabulary {meta['vocab_size']} and sequence length "
                          f"{meta['seq_len']}; the checkpoint's model is {cfg.data.task} with {model.vocab_size} and "
                          f"{model.seq_len}")
    return models, cfg, data_split, dev


def eval_dtype(cfg: Any, device: torch.device) -> torch.dtype:
    """The dtype a checkpoint's training evaluated in on this kind of device (its
    train.dtype, `auto` resolved as hrm.train does), so evaluating it again gives its
    reported metrics."""
    return resolve_dtype(cfg.train.dtype, device.type)


def load_members(paths: list[str | Path], device: torch.device, verified: bool = False):
    """(models, the first one's config) of checkpoint folders that can vote together (a seeds
    checkpoint gives one per seed), else one ConfigError line naming the first that does not fit."""
    expanded = []
    for path in paths:  # a seeds checkpoint is one member per seed, checked as a whole
        if Path(path).is_dir() and (seeds := seed_folders(path)):
            if not verified:
                verify_checkpoint(str(path))
            expanded += seeds
        else:
            expanded.append(path)
    models, shapes, cfg = [], [], None
    for path in expanded:
        model, member_cfg, payload = load_model(path, device=device, verified=verified or path not in paths)
        task = payload["task"]
        shape = (member_cfg.data.task, task["vocab_size"], task["seq_len"], task["num_puzzle_ids"])
        if shapes and shape != shapes[0]:
            def show(s):
                return f"{s[0]} (vocabulary {s[1]}, sequence length {s[2]}, {s[3]} puzzle ids)"

            raise ConfigError(f"ensemble: {path} is a model of {show(shape)} but {expanded[0]} of {show(shapes[0])}: "
                              "an ensemble's checkpoints must come from one task and dataset")
        models.append(model)
        shapes.append(shape)
        cfg = cfg or member_cfg
    return models, cfg


def scaling_steps(train_mmax: int, factor: int) -> list[int]:
    """Mmax 1, 2, 4, ... up to factor x the training Mmax (and that value itself)."""
    top = factor * train_mmax
    return sorted({2**i for i in range(top.bit_length()) if 2**i <= top} | {top})


def inference_scaling(path: str | Path, *, factor: int = 4, views: list[int] = (), paths: list[Paths] = (),
                      device: str = "cpu", verified: bool = False) -> list[dict[str, Any]]:
    """Inference-time scaling of a checkpoint (a seeds checkpoint: its ensemble, and its
    prefixes as `ensemble_sizes` gives them), on the evaluation its training used
    (train.eval_samples; its eval_views besides `views`; one path besides `paths`):
    `measure_grid` at each Mmax of `scaling_steps`, each setting in one pass of the largest
    Mmax. A point is `plain` at the training's views, one path and the whole ensemble."""
    dev = torch.device(device)
    models, cfg = load_members([path], dev, verified)
    t = cfg.train
    split = Split.load(ensure_dataset(cfg.data), "test")
    steps = scaling_steps(cfg.model.halt_max_steps, factor)
    grid = [Paths(1)] + [p for p in paths if p.k > 1]
    measured = measure_grid(models, cfg, split, dev, steps, [t.eval_views, *views], grid,
                            batch_size=t.eval_batch_size or t.global_batch_size, limit=t.eval_samples)
    return [{**p, "plain": (p["views"], p["paths"], p["members"]) == (t.eval_views, 1, len(models))} for p in measured]


def result_files(result: EvalResult, split: Split) -> dict[str, Any]:
    """What `--out` gets: metrics.json and the task's own files (ARC: submission.json)."""
    return {"metrics.json": result.metrics, **tasks.get(split.meta["task"]).files(task_eval(split), result)}
