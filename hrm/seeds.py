"""Seeds in lockstep: one config trained with train.seed, +1, ..., +R-1 side by side, one
evaluation round of every seed at a time, reported once per round as each metric's mean
over the seeds and its spread (`<metric>_std`), with one checkpoint holding every seed's.

Each seed runs the single-seed rounds of hrm.train (`train_round`) on its own torch RNG
stream and with its own run files (`out/seed_<s>`, TensorBoard run `seed_<s>`, checkpoints
under out/checkpoints/seed_<s>), so it trains exactly as `train.seed: s` alone would.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import torch

from hrm.checkpoint import read_manifest, seed_folders, write_seeds_checkpoint
from hrm.config import Config, ConfigError, save_config, to_dict
from hrm.runlog import RunLog, check_wandb, print_flushed
from hrm.runtime import resolve_runtime
from hrm.storage import Mirror
from hrm.train import Report, Run, announce, load_splits, train, train_round
from hrm.train_state import TrainState, init_state, resume_point, resume_state, rng_state, use_rng


def train_seeds(cfg: Config, seeds: int = 1, *, out_dir: str | Path | None = None, resume: bool = False,
                resume_from: str | Path | None = None, report: Report | None = None,
                log: Callable[[str], None] | None = None, tensorboard_dir: str | Path | None = None,
                hparams: dict[str, Any] | None = None, mirror: Mirror | None = None) -> dict[str, float]:
    """`hrm.train.train` of `cfg` with `seeds` seeds in lockstep (one seed: `train` itself);
    the same arguments, each report over the seeds (`over_seeds`)."""
    if seeds < 1:
        raise ConfigError(f"seeds must be >= 1, got {seeds}")
    if seeds == 1:
        return train(cfg, out_dir=out_dir, resume=resume, resume_from=resume_from, report=report, log=log,
                     tensorboard_dir=tensorboard_dir, hparams=hparams, mirror=mirror)
    rt, out, t = resolve_runtime(cfg), Path(out_dir or cfg.train.out_dir), cfg.train
    say = (log or print_flushed) if rt.is_main else (lambda _msg: None)
    check_wandb(t.wandb)
    resume_from = resume_point(cfg, out, resume, resume_from, say)
    if resume_from is not None and not seed_folders(resume_from) and "imported" not in read_manifest(str(resume_from)):
        raise ConfigError(f"{resume_from} is one seed's checkpoint with its optimizer and data state: resume it with "
                          "one seed, or start several seeds from imported weights (hrm import)")
    train_split, test_split = load_splits(cfg, rt, say)
    states = [_member(replace(cfg, train=replace(t, seed=t.seed + i)), rt, train_split, resume_from, say)
              for i in range(seeds)]
    last = dict(read_manifest(str(resume_from))["metrics"]) if resume_from is not None else {}
    if rt.is_main:
        save_config(cfg, out / "config.yaml")
    tb = Path(tensorboard_dir) if tensorboard_dir else out / "tensorboard"
    with contextlib.ExitStack() as stack:
        main = stack.enter_context(RunLog(out, main=rt.is_main, step=states[0].step, log=log, tensorboard=t.tensorboard,
                                          tensorboard_dir=tensorboard_dir, hparams=hparams, mirror=mirror,
                                          wandb=t.wandb, config=to_dict(cfg)))
        runs = [Run(st, test_split, stack.enter_context(_seed_log(st, out, tb, say)), out,
                    root=out / "checkpoints" / f"seed_{st.cfg.train.seed}") for st in states]
        main.say(announce(states[0], train_split, test_split, f", seeds {t.seed}..{t.seed + seeds - 1} in lockstep"))
        if report is not None and resume_from is not None:
            report(last, str(resume_from) if rt.is_main else None)
        start = time.monotonic()
        while not runs[0].done:
            rounds = [_round_on_own_rng(run) for run in runs]
            last, ckpt = _combine(states, rounds, main, out)
            if report is not None:
                report({**last, "train_seconds": time.monotonic() - start}, str(ckpt) if ckpt else None)
    return last


def _member(cfg: Config, rt: Any, train_split: Any, resume_from: str | Path | None, say: Callable) -> TrainState:
    state = init_state(cfg, rt, train_split)
    if resume_from is not None:
        own = Path(resume_from) / f"seed_{cfg.train.seed}"  # a seeds checkpoint; else one set of weights for all
        resume_state(state, own if own.is_dir() else Path(resume_from), say)
    state.rng = rng_state(rt)  # this seed's stream from here on (set by its seed or its checkpoint)
    return state


def _seed_log(state: TrainState, out: Path, tensorboard: Path, say: Callable[[str], None]) -> RunLog:
    """A seed's own history and TensorBoard run; its lines go out prefixed `[seed s]`."""
    s = state.cfg.train.seed
    return RunLog(out / f"seed_{s}", main=state.rt.is_main, step=state.step, tensorboard=state.cfg.train.tensorboard,
                  tensorboard_dir=tensorboard / f"seed_{s}", log=lambda m: say(f"[seed {s}] {m}"))


def _round_on_own_rng(run: Run) -> tuple[dict[str, float], Path | None]:
    """`train_round` of one seed among several, on that seed's own torch RNG stream."""
    use_rng(run.state.rng, run.state.rt.device)
    try:
        return train_round(run)
    finally:
        run.state.rng = rng_state(run.state.rt)


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


def _combine(states: list[TrainState], rounds: list, main: RunLog, out: Path) -> tuple[dict[str, float], Path | None]:
    """One report of an eval round of every seed: the metrics over the seeds, logged and
    checkpointed together."""
    metrics = over_seeds([m for m, _ in rounds])
    state = states[0]
    main.say(f"[eval] step {state.step} round {state.eval_round} over {len(states)} seeds: "
             + " ".join(f"{k} {metrics[k]:.4f}±{metrics[k + '_std']:.4f}" for k in ("exact_accuracy", "pass@2")))
    main.record("eval", state.step, metrics, prefix="eval/")
    ckpt = None
    if all(c is not None for _, c in rounds):
        ckpt = write_seeds_checkpoint(out, step=state.step, eval_round=state.eval_round, metrics=metrics,
                                      members={st.cfg.train.seed: c for st, (_, c) in zip(states, rounds)},
                                      keep=state.cfg.train.keep_checkpoints)
    main.sync()
    return metrics, ckpt
