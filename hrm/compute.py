"""Training compute: what a run has spent, and budgets and evaluation intervals in it.

A run counts three things after each optimiser step k (one ACT segment of every batch slot):

- `step`: k;
- `samples`: puzzle-segments trained, k x train.global_batch_size (every batch slot of
  every segment counts once, whether its puzzle is new or carried on);
- `flops`: the model's own training FLOPs, samples x `hrm.model.flops_per_segment` (the
  figure `hrm model-info` prints: forward, the differentiated part's backward, and a
  continue head's extra Q-target segment). A step's cost is the same at every step, so
  the counters are exact functions of the step and need no state of their own.

A config's budget is one of train.steps, train.epochs, train.samples or train.flops, and
train.eval_interval is in the budget's unit (steps for epochs). A run evaluates at the
first step whose counter reaches each multiple of the interval, and at its last step; it
stops at the first step whose counter reaches the budget. Two settings that differ in
cost per step are therefore evaluated, compared by ASHA (scheduler.time_attr samples or
flops) and stopped at the same compute, give or take one step. `pareto_front` keeps the
points of a metric against compute (training or inference) that no cheaper point beats.
"""

from __future__ import annotations

import math
from typing import Any

from hrm.config import Config

COUNTERS = ("step", "samples", "flops")


def step_cost(cfg: Config, seq_len: int, vocab_size: int) -> dict[str, int]:
    """What one optimiser step adds to each counter (training FLOPs, so never evaluation's)."""
    from hrm.model import flops_per_segment

    batch = cfg.train.global_batch_size
    return {"step": 1, "samples": batch, "flops": batch * flops_per_segment(cfg.model, seq_len, vocab_size)}


def spent(cost: dict[str, int], step: int) -> dict[str, int]:
    """The counters after `step` steps (exact integers)."""
    return {name: cost[name] * step for name in COUNTERS}


def budget_steps(cfg: Config, cost: dict[str, int]) -> int | None:
    """The steps a run takes to reach its budget; None for an epoch budget (it needs the dataset)."""
    t = cfg.train
    if t.unit in ("step", "epoch"):
        return t.steps
    return max(1, math.ceil(t.budget / cost[t.unit]))


def evaluates_at(cfg: Config, cost: dict[str, int], step: int, last: int) -> bool:
    """Whether step `step` (1-based) of a run of `last` steps ends with an evaluation: its
    counter crossed a multiple of train.eval_interval, or it is the last step."""
    unit = "step" if cfg.train.unit == "epoch" else cfg.train.unit
    every, c = cfg.train.eval_interval, cost[unit]
    return step >= last or math.floor(step * c / every) > math.floor((step - 1) * c / every)


def eval_steps(cfg: Config, cost: dict[str, int], last: int) -> list[int]:
    """Every step of a `last`-step run that evaluates (closed form, no loop over the steps)."""
    unit = "step" if cfg.train.unit == "epoch" else cfg.train.unit
    every, c = cfg.train.eval_interval, cost[unit]
    marks = math.floor(last * c / every)
    steps = sorted({max(1, math.ceil(j * every / c)) for j in range(1, marks + 1)} | {last})
    return [s for s in steps if s <= last]


def run_counters(cfg: Config, seq_len: int, vocab_size: int) -> dict[str, Any]:
    """A config's whole run in each unit (None where an epoch budget needs the dataset)."""
    cost = step_cost(cfg, seq_len, vocab_size)
    last = budget_steps(cfg, cost)
    if last is None:
        return {"eval_round": None, **{name: None for name in COUNTERS}}
    return {"eval_round": len(eval_steps(cfg, cost, last)), **spent(cost, last)}


def pareto_front(points: list[dict[str, Any]], mode: str) -> list[dict[str, Any]]:
    """The points no other point beats at less or equal `compute` (ascending compute)."""
    sign = 1.0 if mode == "max" else -1.0
    front, best = [], -math.inf
    for p in sorted(points, key=lambda p: (p["compute"], -sign * p["value"])):
        if sign * p["value"] > best:
            front.append(p)
            best = sign * p["value"]
    return front
