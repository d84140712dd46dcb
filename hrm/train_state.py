"""The training state of one run: built from a config (model, optimisers, the sample stream,
the ACT carry), saved into a checkpoint folder (hrm.checkpoint writes it atomically) and
restored from one exactly, so a resumed run continues bit for bit."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist

from hrm.checkpoint import checkpoint_dirs, fits, load_checkpoint, seed_folders, verify_checkpoint, write_checkpoint
from hrm.compile_plan import PROBE_STEPS, CompilePlan
from hrm.compiled import cache_key, compile_blocks, load_cache, save_cache
from hrm.compute import budget_steps, step_cost
from hrm.config import Config, ConfigError, to_dict
from hrm.data.loader import SampleStream, Split
from hrm.model import Carry, Recurrent, build_model
from hrm.optim import EMA, AdamATan2, Chained, SparseSignSGD, build_optimizer
from hrm.runtime import Runtime


@dataclass
class TrainState:
    cfg: Config
    rt: Runtime
    model: Recurrent
    optimizer: AdamATan2 | Chained | torch.optim.Optimizer
    puzzle_optimizer: SparseSignSGD | None
    stream: SampleStream
    carry: Carry
    total_steps: int
    task: dict[str, int]
    cost: dict[str, int]  # what a step adds to each compute counter (hrm.compute)
    ema: EMA | None = None
    rng: dict[str, torch.Tensor] | None = None  # its own torch RNG stream, when seeds train in lockstep
    step: int = 0
    eval_round: int = 0
    compile_plan: CompilePlan | None = None  # train.compile on, or auto with steps to decide on
    compile_cached: bool = False  # this process wrote its compiled blocks to train.compile_cache

    @property
    def local_batch(self) -> int:
        return self.cfg.train.global_batch_size // self.rt.world_size


def total_steps(cfg: Config, train_split: Split) -> int:
    if cfg.train.unit != "epoch":
        meta = train_split.meta
        return budget_steps(cfg, step_cost(cfg, meta["seq_len"], meta["vocab_size"]))
    # An epoch takes one variant per puzzle group; mean examples per puzzle is 1
    # for Sudoku/Maze and the demonstration count for ARC.
    groups = train_split.meta["num_groups"]
    mean_examples = train_split.meta.get("mean_examples_per_puzzle", 1.0)
    return max(1, int(cfg.train.epochs * groups * mean_examples / cfg.train.global_batch_size))


def compile_key(cfg: Config, rt: Runtime, seq_len: int) -> dict[str, Any]:
    """The compile cache's key of a run (`hrm.compiled.cache_key`)."""
    return cache_key(cfg.model, seq_len, cfg.train.global_batch_size // rt.world_size, rt.dtype, rt.device)


def share_compiled(state: TrainState) -> None:
    """After the first evaluation (every graph a run needs is compiled by then), the main
    rank writes them to train.compile_cache once, for the search's other trials."""
    t, rt, plan = state.cfg.train, state.rt, state.compile_plan
    if plan is not None and plan.compiled and t.compile_cache and rt.is_main and not state.compile_cached:
        state.compile_cached = True
        try:
            save_cache(t.compile_cache, compile_key(state.cfg, rt, state.task["seq_len"]))
        except OSError as exc:  # a cache that cannot be written only costs later runs a compile
            _warn(f"compile cache {t.compile_cache}: not written ({exc}); training goes on")


def _warn(line: str) -> None:
    print(f"[train] warning: {line}", file=sys.stderr, flush=True)


def init_state(cfg: Config, rt: Runtime, train_split: Split) -> TrainState:
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg, train_split.meta).to(rt.device)
    o = cfg.optim
    optimizer = build_optimizer(model, o)
    puzzle_optimizer = (
        SparseSignSGD(model.puzzle_emb, lr=0.0, weight_decay=o.puzzle_emb_weight_decay)
        if model.puzzle_emb is not None
        else None
    )
    stream = SampleStream(train_split, seed=cfg.train.seed, rank=rt.rank, world_size=rt.world_size)
    B = cfg.train.global_batch_size // rt.world_size
    seq = train_split.meta["seq_len"]
    zeros = torch.zeros(B, seq, dtype=torch.int64, device=rt.device)
    carry = model.initial_carry(zeros, zeros.clone(), torch.zeros(B, dtype=torch.int64, device=rt.device))
    task = {k: int(train_split.meta[k]) for k in ("vocab_size", "seq_len", "num_puzzle_ids")}
    ema = EMA(model, cfg.train.ema) if cfg.train.ema else None
    cost = step_cost(cfg, task["seq_len"], task["vocab_size"])
    steps = total_steps(cfg, train_split)
    return TrainState(cfg, rt, model, optimizer, puzzle_optimizer, stream, carry, steps, task, cost, ema,
                      compile_plan=compile_plan(cfg, rt, model, task["seq_len"], steps))


def compile_plan(cfg: Config, rt: Runtime, model: Recurrent, seq_len: int, steps: int) -> CompilePlan | None:
    """train.compile on: the blocks compiled now; auto: compiled when the plan decides to
    (hrm.compiled: each block one graph for every setting; the ACT loop stays eager)."""
    if rt.compile == "off" or (rt.compile == "auto" and steps <= PROBE_STEPS):
        return None
    folder, key = cfg.train.compile_cache, compile_key(cfg, rt, seq_len)

    def compile_now() -> float:
        compile_blocks(model)
        start = time.perf_counter()
        if folder:
            load_cache(folder, key, _warn)
        return time.perf_counter() - start

    return CompilePlan(rt.compile, folder, key, rt.device, compile_now, main=rt.is_main, runs=cfg.train.compile_runs)


def _rank_state(state: TrainState) -> dict[str, Any]:
    rng = {"torch": torch.get_rng_state()}
    if state.rt.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(state.rt.device)
    return {
        "carry": {k: v.cpu() for k, v in state.carry.to_dict().items()},
        "stream": state.stream.state_dict(),
        "rng": rng,
    }


def save_checkpoint(state: TrainState, out_dir: str | Path, metrics: dict[str, float],
                    root: str | Path | None = None) -> Path | None:
    """Write out_dir/checkpoints/step_N (or root/step_N) atomically (rank 0); returns its path."""
    rank_state = _rank_state(state)
    ranks = [rank_state]
    if state.rt.world_size > 1:
        ranks = [None] * state.rt.world_size
        dist.all_gather_object(ranks, rank_state)
    if not state.rt.is_main:
        return None
    payload = {
        **_weights(state),
        "optimizer": state.optimizer.state_dict(),
        "step": state.step,
        "eval_round": state.eval_round,
        "total_steps": state.total_steps,
        "task": state.task,
        "ranks": ranks,
        "config": to_dict(state.cfg),
        "metrics": metrics,
    }
    return write_checkpoint(
        out_dir, step=state.step, eval_round=state.eval_round, payload=payload, metrics=metrics, cfg=state.cfg,
        keep=state.cfg.train.keep_checkpoints, root=root,
    )


def _weights(state: TrainState) -> dict[str, Any]:
    """The checkpoint's weights: "model" is what evaluation uses (the EMA of the parameters
    when train.ema is on, with the live buffers), "live_params" the parameters training goes
    on from (only with an EMA)."""
    if state.ema is None:
        return {"model": state.model.state_dict()}
    names = [n for n, _ in state.model.named_parameters()]
    averaged = dict(zip(names, state.ema.shadow))
    model = {k: averaged.get(k, v) for k, v in state.model.state_dict().items()}
    return {"model": model, "live_params": dict(zip(names, state.ema.params)), "ema_updates": state.ema.updates}


def restore(state: TrainState, payload: dict[str, Any]) -> None:
    state.model.load_state_dict(payload["model"])
    if "optimizer" not in payload:  # weights only (an imported checkpoint): a new run from them, at step 0
        if state.ema is not None:
            state.ema.shadow = [p.detach().clone() for p in state.ema.params]
        return
    if "live_params" in payload:  # "model" held the average: the parameters come next
        with torch.no_grad():
            if state.ema is not None:
                state.ema.shadow = [p.detach().clone() for p in state.ema.params]
                state.ema.updates = payload["ema_updates"]
            for name, p in state.model.named_parameters():
                p.copy_(payload["live_params"][name])
    elif state.ema is not None:  # a checkpoint without an EMA: the average starts from its weights
        state.ema.shadow = [p.detach().clone() for p in state.ema.params]
    state.optimizer.load_state_dict(payload["optimizer"])
    state.step = payload["step"]
    state.eval_round = payload["eval_round"]
    ranks = payload["ranks"]
    if len(ranks) != state.rt.world_size:
        raise ConfigError(
            f"checkpoint was written by {len(ranks)} workers, this run has {state.rt.world_size}: resume needs the same count"
        )
    mine = ranks[state.rt.rank]
    state.carry = Carry.from_dict({k: v.to(state.rt.device) for k, v in mine["carry"].items()})
    state.stream.load_state_dict(mine["stream"])
    torch.set_rng_state(mine["rng"]["torch"])
    if "cuda" in mine["rng"] and state.rt.device.type == "cuda":
        torch.cuda.set_rng_state(mine["rng"]["cuda"], state.rt.device)


def resume_point(cfg: Config, out: Path, resume: bool, resume_from: str | Path | None,
                 say: Callable[[str], None]) -> Path | None:
    """The checkpoint folder to resume from (verified, and holding weights this config's model
    takes) or None; refuses a fresh run into a folder that has checkpoints. Checked before any
    work: no dataset is built and no file written for a run that cannot start."""
    if resume and resume_from is None:
        ckpts = checkpoint_dirs(out)
        resume_from = ckpts[-1] if ckpts else None
        if resume_from is None:
            say(f"[train] --resume: no checkpoint under {out}/checkpoints, starting fresh")
    elif resume_from is None and checkpoint_dirs(out):
        raise ConfigError(
            f"run folder {out} already has checkpoints: resume it (--resume) or choose another output folder"
        )
    if resume_from is not None:
        verify_checkpoint(str(resume_from))
        _check_shapes(cfg, Path(resume_from))
    return resume_from


def _check_shapes(cfg: Config, folder: Path) -> None:
    """One line unless the checkpoint's weights fit `cfg`'s model, built on the meta device
    (shapes only, no memory) for the checkpoint's data shape (a seeds checkpoint: its first seed)."""
    seeds = seed_folders(folder)
    payload = load_checkpoint(seeds[0] if seeds else folder, verified=True)
    with torch.device("meta"):
        model = build_model(cfg, payload["task"])
    changed = [k for k in diff_keys(payload["config"], to_dict(cfg)) if k.startswith("model.")]
    fits(model, payload["model"], f"resume from {folder}",
         f"this config differs in {', '.join(changed) or 'the model'}: resume with the checkpoint's config "
         "(its config.yaml) or start a new run")


def resume_state(state: TrainState, resume_from: str | Path, say: Callable[[str], None]) -> dict[str, float]:
    """Restore `state` from a checkpoint; returns its evaluation metrics."""
    payload = load_checkpoint(resume_from, map_location=state.rt.device, verified=True)  # by resume_point
    changed = diff_keys(payload["config"], to_dict(state.cfg))
    if changed:
        say(f"[train] warning: config differs from the checkpoint's in {', '.join(changed)}")
    restore(state, payload)
    if "optimizer" not in payload:
        say(f"[train] starting from the weights of {resume_from} (they carry no optimizer or data state: "
            "a new run from step 0)")
        return {}
    say(f"[train] resumed from {resume_from} at step {state.step}")
    return dict(payload["metrics"])


def diff_keys(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += diff_keys(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}")
    return out


def check_finite(state: TrainState) -> None:
    """Raise FloatingPointError if a weight or the puzzle table is NaN or infinite (one pass
    over the parameters per checkpoint; the loss alone is checked every log_interval)."""
    bad = [n for n, p in state.model.named_parameters() if not bool(torch.isfinite(p).all())]
    bad += [n for n, b in state.model.named_buffers() if b.is_floating_point() and not bool(torch.isfinite(b).all())]
    if bad:
        raise FloatingPointError(f"non-finite weights at step {state.step} ({', '.join(bad[:3])}): no checkpoint saved")


def rng_state(rt: Runtime) -> dict[str, torch.Tensor]:
    rng = {"torch": torch.get_rng_state()}
    if rt.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(rt.device)
    return rng


def use_rng(rng: dict[str, torch.Tensor], device: torch.device) -> None:
    """Make `rng` (a `rng_state`) the process's torch RNG stream."""
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng:
        torch.cuda.set_rng_state(rng["cuda"], device)
