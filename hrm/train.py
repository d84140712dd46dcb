"""Training one model: deep supervision with an ACT carry, in one loop (`train`).

Each optimiser step is one ACT segment on every batch slot: forward, loss, backward,
step. Slots whose example halted take a fresh example from the stream first; the
others keep working on theirs. At each eval interval of the budget (hrm.compute) the
model is evaluated (all Mmax segments), a checkpoint is written atomically, and the
`report(metrics, checkpoint_dir)` hook is called (the Ray jobs use it). Seeds trained
in lockstep wrap the same rounds (hrm.seeds); the training state and its checkpoints
live in hrm.train_state.

Data parallel: when torch.distributed is initialised (e.g. by Ray Train) each
rank owns global_batch/world slots, gradients and puzzle-table updates are
summed across ranks, and metrics are all-reduced, so any world size follows
the same math as one process with the same global batch.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist

from hrm import tasks
from hrm.compute import evaluates_at, spent
from hrm.config import Config, save_config, to_dict
from hrm.data.loader import Split
from hrm.dataset import ensure_dataset
from hrm.evaluate import run_eval
from hrm.model.losses import act_loss
from hrm.optim import lr_at
from hrm.runlog import MIRROR_S, RunLog, check_wandb, print_flushed
from hrm.runtime import Runtime, all_reduce_grads, autocast, resolve_runtime
from hrm.storage import Mirror
from hrm.train_state import (TrainState, check_finite, init_state, resume_point, resume_state, save_checkpoint,
                             share_compiled)

Report = Callable[[dict[str, float], "str | None"], None]
_IMAGES_PER_EVAL = 4  # prediction pictures logged to TensorBoard per evaluation


def train(cfg: Config, *, out_dir: str | Path | None = None, resume: bool = False,
          resume_from: str | Path | None = None, report: Report | None = None,
          log: Callable[[str], None] | None = None, tensorboard_dir: str | Path | None = None,
          hparams: dict[str, Any] | None = None, mirror: Mirror | None = None) -> dict[str, float]:
    """Train `cfg` to the end of its budget; returns the last evaluation's metrics.

    `resume`: continue from the newest checkpoint in `out_dir` (none there: start fresh).
    `resume_from`: continue from this checkpoint folder instead (the Ray jobs pass the one
    Ray restored). TensorBoard goes to `out_dir/tensorboard` unless `tensorboard_dir` is
    given, with `hparams` for its HParams dashboard; `mirror`: see hrm.runlog.
    `report(metrics, checkpoint_dir)` after every evaluation (with `train_seconds`, the time
    this process spent in the loop so far), and first for the checkpoint resumed from (so a
    report lost with its node still arrives)."""
    rt, out = resolve_runtime(cfg), Path(out_dir or cfg.train.out_dir)
    say = (log or print_flushed) if rt.is_main else (lambda _msg: None)
    check_wandb(cfg.train.wandb)
    resume_from = resume_point(cfg, out, resume, resume_from, say)  # the inputs first, then the work
    train_split, test_split = load_splits(cfg, rt, say)  # data
    state = init_state(cfg, rt, train_split)  # model, optimisers, sample stream, carry
    last = resume_state(state, resume_from, say) if resume_from is not None else {}
    if rt.is_main:
        save_config(cfg, out / "config.yaml")
    with RunLog(out, main=rt.is_main, step=state.step, log=log, tensorboard=cfg.train.tensorboard,
                tensorboard_dir=tensorboard_dir, hparams=hparams, mirror=mirror, wandb=cfg.train.wandb,
                config=to_dict(cfg)) as runlog:
        run = Run(state, test_split, runlog, out)
        runlog.say(announce(state, train_split, test_split))
        if report is not None and resume_from is not None and last:
            report(last, str(resume_from) if rt.is_main else None)
        start = time.monotonic()  # train_seconds: this process's time in the loop (set-up excluded)
        while not run.done:  # until the budget is spent
            last, ckpt = train_round(run)  # steps, logs, one evaluation and its checkpoint
            if report is not None:
                report({**last, "train_seconds": time.monotonic() - start}, str(ckpt) if ckpt else None)
    return last


@dataclass
class Run:
    """One run's loop state: what it trains and evaluates on, where it logs and checkpoints
    (`root`: the checkpoint folder, default out/checkpoints), and the training metrics
    summed since the last log line."""

    state: TrainState
    test_split: Split
    log: RunLog
    out: Path
    root: Path | None = None
    sums: dict[str, torch.Tensor] = field(default_factory=dict)
    window: int = 0

    @property
    def done(self) -> bool:
        return self.state.step >= self.state.total_steps


def train_round(run: Run) -> tuple[dict[str, float], Path | None]:
    """Train to the next evaluation: a step at a time, a log line every log_interval steps,
    then evaluate and checkpoint. Returns (the evaluation's metrics, its checkpoint or None)."""
    state, t = run.state, run.state.cfg.train
    started = time.monotonic()  # evaluation time is not training throughput
    plan = state.compile_plan
    while True:
        sums = train_step(state) if plan is None else plan.step(lambda: train_step(state),
                                                                 state.total_steps - state.step, run.log.say)
        for k, v in sums.items():  # step
            run.sums[k] = run.sums.get(k, 0) + v
        run.window += 1
        if state.step % t.log_interval == 0 or run.done:  # log
            metrics = window_metrics(state, run.sums, run.window, time.monotonic() - started)
            run.log.say(log_line(state.step, state.total_steps, metrics))
            run.log.record("train", state.step, metrics)
            run.log.sync(MIRROR_S)
            run.sums, run.window, started = {}, 0, time.monotonic()
        if evaluates_at(state.cfg, state.cost, state.step, state.total_steps):  # evaluate, checkpoint
            metrics = (evaluate(state, run.test_split, run.log) if plan is None
                       else plan.evaluation(lambda: evaluate(state, run.test_split, run.log)))
            share_compiled(state)
            if t.checkpoint:  # never a checkpoint of broken weights: a resume would only repeat them
                check_finite(state)
            ckpt = save_checkpoint(state, run.out, metrics, run.root) if t.checkpoint else None
            run.log.sync()
            return metrics, ckpt


def announce(state: TrainState, train_split: Split, test_split: Split, extra: str = "") -> str:
    rt = state.rt
    return (f"[train] {sum(p.numel() for p in state.model.parameters()):,} parameters, {len(train_split):,} train "
            f"rows, {len(test_split):,} test rows, steps {state.step}..{state.total_steps}, device {rt.device} "
            f"{str(rt.dtype).removeprefix('torch.')}, {rt.world_size} worker(s){extra}")


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


def window_metrics(state: TrainState, sums: dict[str, torch.Tensor], steps: int, seconds: float) -> dict[str, float]:
    """The training metrics of the last `steps` steps; FloatingPointError if the loss is not finite."""
    metrics = summarize(sums, steps, state)
    if not math.isfinite(metrics["loss/total"]):
        raise FloatingPointError(f"loss became {metrics['loss/total']} at step {state.step}")
    metrics["lr"] = state.optimizer.param_groups[0]["lr"]
    metrics["segments_per_s"] = steps / max(seconds, 1e-9)
    metrics["samples_per_s"] = metrics["segments_per_s"] * state.cfg.train.global_batch_size
    return metrics


# ---------------------------------------------------------------------------
# data, logs, evaluation


def load_splits(cfg: Config, rt: Runtime, say: Callable[[str], None]) -> tuple[Split, Split]:
    """The dataset's splits, built first if need be (by rank 0, the others wait)."""
    if rt.is_main:
        data_dir = ensure_dataset(cfg.data, log=say)
    if rt.world_size > 1:
        dist.barrier()
    if not rt.is_main:
        data_dir = ensure_dataset(cfg.data, log=say)
    return Split.load(data_dir, "train"), Split.load(data_dir, "test")


def log_line(step: int, total: int, metrics: dict[str, float]) -> str:
    keys = ("loss/total", "train/exact_accuracy", "train/mean_steps", "lr", "segments_per_s")
    parts = [f"{k.split('/')[-1]} {metrics[k]:.4g}" for k in keys if k in metrics]
    return f"[train] step {step}/{total} " + " ".join(parts)


def evaluate(state: TrainState, test_split: Split, run: RunLog) -> dict[str, float]:
    """One evaluation round: metrics (with step, round, epoch) logged, pictures drawn."""
    t, start = state.cfg.train, time.monotonic()
    state.eval_round += 1
    with state.ema.applied() if state.ema is not None else contextlib.nullcontext():  # evaluation uses the EMA
        result = run_eval(
            state.model, test_split, batch_size=t.eval_batch_size or state.local_batch, limit=t.eval_samples,
            views=t.eval_views, device=state.rt.device, dtype=state.rt.dtype,
            keep_examples=_IMAGES_PER_EVAL if run.pictures else 0,
        )
    metrics = dict(result.metrics, **spent(state.cost, state.step), eval_round=state.eval_round,
                   epoch=state.stream.epoch)
    run.say(
        f"[eval] step {state.step} round {state.eval_round}: exact {metrics['exact_accuracy']:.4f} "
        f"token {metrics['token_accuracy']:.4f} q_halt {metrics['q_halt_accuracy']:.3f} "
        f"steps {metrics['mean_steps']:.2f} ({time.monotonic() - start:.1f}s)"
    )
    run.record("eval", state.step, metrics, prefix="eval/")
    if run.pictures:
        picture = tasks.get(test_split.meta["task"]).picture
        run.images(state.step, [picture(ex["input"], ex["label"], ex["pred"]) for ex in result.examples])
    return metrics
