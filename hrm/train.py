"""Device-agnostic HRM training: deep supervision with an ACT carry.

Each optimiser step is one ACT segment on every batch slot: forward, loss,
backward, step. Slots whose example halted take a fresh example from the stream
first; the others keep working on theirs. Every `eval_interval` steps the model is
evaluated (all Mmax segments), a checkpoint is written atomically, and the
`report(metrics, checkpoint_dir)` hook is called (the Ray jobs use it).

Data parallel: when torch.distributed is initialised (e.g. by Ray Train) each
rank owns global_batch/world slots, gradients and puzzle-table updates are
summed across ranks, and metrics are all-reduced, so any world size follows
the same math as one process with the same global batch.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist

from hrm import tasks
from hrm.checkpoint import (checkpoint_dirs, load_checkpoint, read_manifest, verify_checkpoint, write_checkpoint,
                            write_seeds_checkpoint)
from hrm.compute import budget_steps, evaluates_at, spent, step_cost
from hrm.config import Config, ConfigError, save_config, to_dict
from hrm.dataset import ensure_dataset
from hrm.data.loader import SampleStream, Split
from hrm.evaluate import run_eval
from hrm.runtime import Runtime, all_reduce_grads, autocast, resolve_runtime
from hrm.model import build_model
from hrm.model import Carry, Recurrent
from hrm.model.losses import act_loss
from hrm.optim import EMA, AdamATan2, SparseSignSGD, lr_at
from hrm.storage import Mirror
from hrm.runlog import MIRROR_S, RunLog, print_flushed

Report = Callable[[dict[str, float], "str | None"], None]
_IMAGES_PER_EVAL = 4  # prediction pictures logged to TensorBoard per evaluation


# ---------------------------------------------------------------------------
# state


@dataclass
class TrainState:
    cfg: Config
    rt: Runtime
    model: Recurrent
    optimizer: AdamATan2
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


def init_state(cfg: Config, rt: Runtime, train_split: Split) -> TrainState:
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg, train_split.meta).to(rt.device)
    if rt.compile:
        # Compile the segment's recurrence (the hot path); the puzzle-row lookup and the
        # ACT bookkeeping stay eager (hrm.model.act.Recurrent.segment says why).
        model.recurrence = torch.compile(model.recurrence)
    o = cfg.optim
    optimizer = AdamATan2(model.parameters(), lr=0.0, betas=o.betas, weight_decay=o.weight_decay)
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
    return TrainState(cfg, rt, model, optimizer, puzzle_optimizer, stream, carry, total_steps(cfg, train_split), task,
                      cost, ema)


# ---------------------------------------------------------------------------
# one step


def train_step(state: TrainState) -> dict[str, torch.Tensor]:
    """One ACT segment with its own backward and optimiser step.

    Returns per-step sums as tensors (no host sync here beyond the refill count).
    """
    cfg, rt, model = state.cfg, state.rt, state.model
    carry = state.carry
    # Host sync: the loader must know how many slots to refill.
    num_new = int(carry.halted.sum())
    if num_new:
        new = {k: v.to(rt.device) for k, v in state.stream.take(num_new).items()}
        carry = model.reset_halted(carry, new)
    state.step += 1
    o = cfg.optim
    lr = lr_at(state.step, o.lr, o.warmup_steps, state.total_steps, o.lr_min_ratio)
    for group in state.optimizer.param_groups:
        group["lr"] = lr
    if state.puzzle_optimizer is not None:
        state.puzzle_optimizer.lr = lr_at(
            state.step, o.puzzle_emb_lr, o.warmup_steps, state.total_steps, o.lr_min_ratio
        )

    model.train()
    with autocast(rt.device, rt.dtype):
        carry, out = model(carry)
    loss, stats = act_loss(out, carry.labels, cfg.model.loss)
    (loss / cfg.train.global_batch_size).backward()
    params = [p for p in model.parameters()]
    all_reduce_grads(params, rt.world_size)
    state.optimizer.step()
    state.optimizer.zero_grad(set_to_none=True)
    if state.puzzle_optimizer is not None:
        state.puzzle_optimizer.step()
        state.puzzle_optimizer.zero_grad()
    if state.ema is not None:
        state.ema.update()
    state.carry = carry

    halted = carry.halted
    seq_correct = stats["seq_correct"]
    sums = {
        "loss/total": loss.detach().double(),
        "halted": halted.sum().double(),
        "exact": (seq_correct & halted).sum().double(),
        "token_correct": stats["token_correct"][halted].sum().double(),
        "token_count": stats["token_count"][halted].sum().double(),
        "q_agree": (((out["q_halt"] > 0) == seq_correct) & halted).sum().double(),
        "steps": carry.steps[halted].sum().double(),
    }
    for k, v in stats.items():
        if k.startswith("loss/"):
            sums[k] = v.double()
    return sums


def summarize(sums: dict[str, torch.Tensor], num_steps: int, state: TrainState) -> dict[str, float]:
    """Turn accumulated step sums into named metrics (all-reduced across ranks)."""
    keys = sorted(sums)
    vec = torch.stack([sums[k] for k in keys])
    if state.rt.world_size > 1:
        dist.all_reduce(vec)
    s = dict(zip(keys, vec.tolist()))
    halted = max(s["halted"], 1.0)
    per_sample = num_steps * state.cfg.train.global_batch_size
    metrics = {k: v / per_sample for k, v in s.items() if k.startswith("loss/")}
    metrics.update(
        {
            "train/exact_accuracy": s["exact"] / halted,
            "train/token_accuracy": s["token_correct"] / max(s["token_count"], 1.0),
            "train/q_halt_accuracy": s["q_agree"] / halted,
            "train/mean_steps": s["steps"] / halted,
            "train/halted_per_step": s["halted"] / num_steps,
        }
    )
    return metrics


# ---------------------------------------------------------------------------
# checkpoints


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


# ---------------------------------------------------------------------------
# the loop


def _log_line(step: int, total: int, metrics: dict[str, float]) -> str:
    keys = ("loss/total", "train/exact_accuracy", "train/mean_steps", "lr", "segments_per_s")
    parts = [f"{k.split('/')[-1]} {metrics[k]:.4g}" for k in keys if k in metrics]
    return f"[train] step {step}/{total} " + " ".join(parts)


def _diff_keys(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff_keys(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}")
    return out


def _check_finite(state: TrainState) -> None:
    """Raise FloatingPointError if a weight or the puzzle table is NaN or infinite (one pass
    over the parameters per checkpoint; the loss alone is checked every log_interval)."""
    bad = [n for n, p in state.model.named_parameters() if not bool(torch.isfinite(p).all())]
    bad += [n for n, b in state.model.named_buffers() if b.is_floating_point() and not bool(torch.isfinite(b).all())]
    if bad:
        raise FloatingPointError(f"non-finite weights at step {state.step} ({', '.join(bad[:3])}): no checkpoint saved")


def _resume_point(out: Path, resume: bool, resume_from: str | Path | None, say: Callable[[str], None]):
    """The checkpoint folder to resume from (verified) or None; refuses a fresh run into a
    folder that has checkpoints. Checked before any work."""
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
    return resume_from


def _load_splits(cfg: Config, rt: Runtime, say: Callable[[str], None]) -> tuple[Split, Split]:
    """The dataset's splits, built first if need be (by rank 0, the others wait)."""
    if rt.is_main:
        data_dir = ensure_dataset(cfg.data, log=say)
    if rt.world_size > 1:
        dist.barrier()
    if not rt.is_main:
        data_dir = ensure_dataset(cfg.data, log=say)
    return Split.load(data_dir, "train"), Split.load(data_dir, "test")


def _resume(state: TrainState, resume_from: str | Path, say: Callable[[str], None]) -> dict[str, float]:
    """Restore `state` from a checkpoint; returns its evaluation metrics."""
    payload = load_checkpoint(resume_from, map_location=state.rt.device, verified=True)  # by _resume_point
    changed = _diff_keys(payload["config"], to_dict(state.cfg))
    if changed:
        say(f"[train] warning: config differs from the checkpoint's in {', '.join(changed)}")
    restore(state, payload)
    say(f"[train] resumed from {resume_from} at step {state.step}")
    return dict(payload["metrics"])


def _window_metrics(state: TrainState, sums: dict[str, torch.Tensor], steps: int, seconds: float) -> dict[str, float]:
    """The training metrics of the last `steps` steps; FloatingPointError if the loss is not finite."""
    metrics = summarize(sums, steps, state)
    if not math.isfinite(metrics["loss/total"]):
        raise FloatingPointError(f"loss became {metrics['loss/total']} at step {state.step}")
    metrics["lr"] = state.optimizer.param_groups[0]["lr"]
    metrics["segments_per_s"] = steps / max(seconds, 1e-9)
    metrics["samples_per_s"] = metrics["segments_per_s"] * state.cfg.train.global_batch_size
    return metrics


def _eval_round(state: TrainState, test_split: Split, run: RunLog) -> dict[str, float]:
    """One evaluation round: metrics (with step, round, epoch) logged, pictures drawn."""
    t, start = state.cfg.train, time.monotonic()
    state.eval_round += 1
    with state.ema.applied() if state.ema is not None else contextlib.nullcontext():  # evaluation uses the EMA
        result = run_eval(
            state.model, test_split, batch_size=t.eval_batch_size or state.local_batch, limit=t.eval_samples,
            views=t.eval_views, device=state.rt.device, dtype=state.rt.dtype,
            keep_examples=_IMAGES_PER_EVAL if run.writer is not None else 0,
        )
    metrics = dict(result.metrics, **spent(state.cost, state.step), eval_round=state.eval_round,
                   epoch=state.stream.epoch)
    run.say(
        f"[eval] step {state.step} round {state.eval_round}: exact {metrics['exact_accuracy']:.4f} "
        f"token {metrics['token_accuracy']:.4f} q_halt {metrics['q_halt_accuracy']:.3f} "
        f"steps {metrics['mean_steps']:.2f} ({time.monotonic() - start:.1f}s)"
    )
    run.record("eval", state.step, metrics, prefix="eval/")
    if run.writer is not None:
        picture = tasks.get(test_split.meta["task"]).picture
        run.images(state.step, [picture(ex["input"], ex["label"], ex["pred"]) for ex in result.examples])
    return metrics


def train(
    cfg: Config,
    *,
    out_dir: str | Path | None = None,
    resume: bool = False,
    resume_from: str | Path | None = None,
    report: Report | None = None,
    log: Callable[[str], None] | None = None,
    tensorboard_dir: str | Path | None = None,
    hparams: dict[str, Any] | None = None,
    mirror: Mirror | None = None,
    seeds: int = 1,
) -> dict[str, float]:
    """Train `cfg` to the end; returns the last evaluation's metrics.

    `resume`: continue from the newest checkpoint in `out_dir` (none there: start
    fresh). `resume_from`: continue from this checkpoint folder instead (the Ray
    jobs pass the one Ray Train restored). TensorBoard goes to `out_dir/tensorboard`
    unless `tensorboard_dir` is given, with `hparams` for its HParams dashboard; `mirror`:
    see hrm.runlog. `report(metrics, checkpoint_dir)` after every evaluation (with
    `train_seconds`, the time this process spent in the loop so far), and first for the
    checkpoint resumed from (so a report lost with its node still arrives).

    `seeds` > 1 trains the config with train.seed, +1, ..., in lockstep: one eval round of
    every seed, then one report with each metric's mean over the seeds and its spread
    (`<metric>_std`), and one checkpoint holding every seed's (`write_seeds_checkpoint`).
    Each seed has its own torch RNG stream and run files (`out_dir/seed_<s>`, TensorBoard
    run `seed_<s>`), so it trains exactly as `train.seed: s` alone would.
    """
    rt, out, t = resolve_runtime(cfg), Path(out_dir or cfg.train.out_dir), cfg.train
    say = (log or print_flushed) if rt.is_main else (lambda _msg: None)
    if seeds < 1:
        raise ConfigError(f"seeds must be >= 1, got {seeds}")
    resume_from = _resume_point(out, resume, resume_from, say)  # the inputs first, then the work
    train_split, test_split = _load_splits(cfg, rt, say)
    members = [cfg] if seeds == 1 else [replace(cfg, train=replace(t, seed=t.seed + i)) for i in range(seeds)]
    states, last_eval = [], {}
    for c in members:
        state = init_state(c, rt, train_split)
        if resume_from is not None:
            last_eval = _resume(state, resume_from if seeds == 1 else Path(resume_from) / f"seed_{c.train.seed}", say)
        state.rng = _rng_state(rt)  # this seed's stream from here on (set by its seed or its checkpoint)
        states.append(state)
    if resume_from is not None and seeds > 1:
        last_eval = dict(read_manifest(str(resume_from))["metrics"])
    if rt.is_main:
        save_config(cfg, out / "config.yaml")
    tb = Path(tensorboard_dir) if tensorboard_dir else None
    with contextlib.ExitStack() as stack:
        run = stack.enter_context(RunLog(out, main=rt.is_main, step=states[0].step, log=log, tensorboard=t.tensorboard,
                                         tensorboard_dir=tb, hparams=hparams, mirror=mirror))
        if report is not None and resume_from is not None:
            report(dict(last_eval), str(resume_from) if rt.is_main else None)
        runs, roots = [run], [None]
        if seeds > 1:  # each seed's own history and TensorBoard run; checkpoints under out/checkpoints/seed_<s>
            runs = [stack.enter_context(RunLog(
                out / f"seed_{st.cfg.train.seed}", main=rt.is_main, step=st.step, tensorboard=t.tensorboard,
                tensorboard_dir=(tb or out / "tensorboard") / f"seed_{st.cfg.train.seed}",
                log=lambda m, s=st.cfg.train.seed: say(f"[seed {s}] {m}"))) for st in states]
            roots = [out / "checkpoints" / f"seed_{st.cfg.train.seed}" for st in states]
        state = states[0]
        run.say(f"[train] {sum(p.numel() for p in state.model.parameters()):,} parameters, "
                f"{len(train_split):,} train rows, {len(test_split):,} test rows, steps {state.step}..{state.total_steps}, "
                f"device {rt.device} {str(rt.dtype).removeprefix('torch.')}, {rt.world_size} worker(s)"
                + (f", seeds {t.seed}..{t.seed + seeds - 1} in lockstep" if seeds > 1 else ""))
        loop = [_rounds(st, test_split, r, out, root) for st, r, root in zip(states, runs, roots)]
        loop_start = time.monotonic()  # report's train_seconds: this process's time in the loop (set-up excluded)
        while True:
            rounds = [_advance(st, gen) if seeds > 1 else next(gen, None) for st, gen in zip(states, loop)]
            if rounds[0] is None:
                break
            last_eval, ckpt = rounds[0] if seeds == 1 else _over_seeds(states, rounds, run, out)
            if report is not None:
                report({**last_eval, "train_seconds": time.monotonic() - loop_start},
                       str(ckpt) if ckpt is not None else None)
    return last_eval


def _rounds(state: TrainState, test_split: Split, run: RunLog, out: Path,
            root: Path | None) -> Iterator[tuple[dict[str, float], Path | None]]:
    """Train `state` to the end, yielding (eval metrics, checkpoint folder or None) after
    every evaluation; checkpoints go to out/checkpoints (or `root`)."""
    t = state.cfg.train
    sums, window, started = {}, 0, time.monotonic()
    while state.step < state.total_steps:
        for k, v in train_step(state).items():
            sums[k] = sums.get(k, 0) + v
        window += 1
        done = state.step >= state.total_steps
        if state.step % t.log_interval == 0 or done:
            metrics = _window_metrics(state, sums, window, time.monotonic() - started)
            run.say(_log_line(state.step, state.total_steps, metrics))
            run.record("train", state.step, metrics)
            run.sync(MIRROR_S)
            sums, window, started = {}, 0, time.monotonic()
        if evaluates_at(state.cfg, state.cost, state.step, state.total_steps):
            last_eval = _eval_round(state, test_split, run)
            if t.checkpoint:  # never a checkpoint of broken weights: a resume would only repeat them
                _check_finite(state)
            ckpt = save_checkpoint(state, out, last_eval, root) if t.checkpoint else None
            run.sync()
            yield last_eval, ckpt
            started = time.monotonic()  # eval time is not training throughput


def _rng_state(rt: Runtime) -> dict[str, torch.Tensor]:
    rng = {"torch": torch.get_rng_state()}
    if rt.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(rt.device)
    return rng


def _advance(state: TrainState, rounds: Iterator) -> Any:
    """The next round of one seed among several, on that seed's own torch RNG stream."""
    torch.set_rng_state(state.rng["torch"])
    if "cuda" in state.rng:
        torch.cuda.set_rng_state(state.rng["cuda"], state.rt.device)
    try:
        return next(rounds, None)
    finally:
        state.rng = _rng_state(state.rt)


# Counters every seed shares: reported once, with no spread.
_SHARED = ("step", "samples", "flops", "eval_round", "epoch", "eval_questions", "eval_views", "ensemble_members",
           "inference_flops")


def over_seeds(per_seed: list[dict[str, float]]) -> dict[str, float]:
    """Each metric's mean over the seeds and `<metric>_std`, their sample standard deviation
    (the seed-to-seed spread); an evaluation's standard error `<metric>_se` as the standard
    error of that mean from the evaluations alone; shared counters once."""
    out: dict[str, float] = {}
    for key, value in per_seed[0].items():
        if key in _SHARED or not isinstance(value, (int, float)):
            out[key] = value
            continue
        if key.endswith("_se"):  # an evaluation's own standard error: that of the mean of R evaluations
            out[key] = math.sqrt(sum(float(m[key]) ** 2 for m in per_seed)) / len(per_seed)
            continue
        values = torch.tensor([float(m[key]) for m in per_seed], dtype=torch.float64)
        out[key] = float(values.mean())
        out[f"{key}_std"] = float(values.std()) if len(values) > 1 else 0.0
    out["seeds"] = float(len(per_seed))
    return out


def _over_seeds(states: list[TrainState], rounds: list, run: RunLog, out: Path) -> tuple[dict[str, float], Path | None]:
    """One report of an eval round of every seed: the metrics over the seeds, logged and
    checkpointed together."""
    metrics = over_seeds([m for m, _ in rounds])
    state = states[0]
    run.say(f"[eval] step {state.step} round {state.eval_round} over {len(states)} seeds: "
            + " ".join(f"{k} {metrics[k]:.4f}±{metrics[k + '_std']:.4f}" for k in ("exact_accuracy", "pass@2")))
    run.record("eval", state.step, metrics, prefix="eval/")
    ckpt = None
    if all(c is not None for _, c in rounds):
        ckpt = write_seeds_checkpoint(out, step=state.step, eval_round=state.eval_round, metrics=metrics,
                                      members={st.cfg.train.seed: c for st, (_, c) in zip(states, rounds)},
                                      keep=state.cfg.train.keep_checkpoints)
    run.sync()
    return metrics, ckpt
