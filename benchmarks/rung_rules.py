"""Which ASHA rung rule to default to when a trial trains several seeds: simulated searches
over synthetic noisy learning curves, replayed through Ray's own ASHAScheduler.

    python benchmarks/rung_rules.py --searches 1000 --seed 0

Each search draws fresh settings (a true final pass@2 and a curve per setting, a seed effect
per seed, binomial evaluation noise per report), starts its trials in sequence,
`--concurrency` at a time, each report at a time proportional to the compute the trial
trained (a stopped trial frees its slot for the next), and feeds every report to a fresh
`ray.tune.schedulers.ASHAScheduler` (time in eval rounds, as `search_spaces/quickstart.yaml`
counts it) comparing `rung_score` from `hrm.search.with_rung_score`. Every rule of one search
sees the same draws (common random numbers), so rules are compared on the same worlds and
the differences to the mean rule have their own, smaller, Monte-Carlo error.

Per (seeds, shared fraction, rungs, rule): P(the truly best setting, highest true final mean,
trains to the end), P(the winner, best reported mean at any report as the artifact store
picks it, is the truly best), the mean regret (true final mean of the best minus the
winner's) and the trial-steps trained as a share of running every trial to the end (FIFO).

`paired:Z` is a candidate rule, not in the product: a rung records each trial's mean (as the
mean rule does) and keeps a trial unless mean + Z x (the standard error of its seed-by-seed
differences from the recorded trial nearest the cutoff) is below the cutoff: a one-sided
paired test against the cutoff, so a seed effect every setting shares (every trial trains
the same seed numbers) counts as no noise. Here it is Ray's bracket with the recorded value
set back to the mean after the decision; the product would need a custom scheduler.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

if __package__ in (None, ""):  # run as a script: make `hrm` importable from the repository
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hrm.search import RUNG_SCORE, rung_value, with_rung_score  # noqa: E402

# ---------------------------------------------------------------------------
# The generative model (benchmarks/RESULTS.md), in fractions of training and of puzzles.

ROUNDS = 4  # 4 evaluations per 300-step trial, every 75 steps (quickstart.yaml: eval_interval 75, max_t 4)
PUZZLES = 200  # pass@2 is measured on 200 held-out puzzles: binomial noise, SE ~0.035 at 0.5
# Share of settings that barely learn: 3 of the default search's first 5 trials end at
# 0.015-0.055 (Mmax 4), 13 of its 20 below 0.45 ("Early stopping" tables).
WEAK_SHARE = 0.35
WEAK_RANGE = (0.005, 0.15)  # the weak trials end at 0.015-0.11 (RESULTS.md, "Early stopping on the search at fixed steps")
GOOD_RANGE = (0.22, 0.88)  # setting means of the ablation grids spread over 0.22-0.88
# Curve: pass@2(t) = final x S((t - onset)/WIDTH) / S((1 - onset)/WIDTH), S the logistic. The
# default search's curves, as a share of their final value, are 0 through t = 1/3, 0.01-0.08
# at t = 1/2 and 0.36-0.59 at t = 3/4, still rising at the end: onset 0.71-0.80, width 0.08.
ONSET_MEAN, ONSET_SD = 0.755, 0.03
WIDTH = 0.08
# Seed effect on the final value, in logits: the seeds' sample std pooled over the 34
# ablation settings is 0.114 at means ~0.5; less binomial noise (0.035) that is 0.109,
# 0.109 / (0.5 x 0.5) = 0.44 logits. One sd for every setting: the measured 2-30 points
# are what 2 draws of one sd give (|x1 - x2| / sqrt(2) ranges 0.06-2 sd).
SEED_LOGIT_SD = 0.44
# A better seed also learns earlier (onset earlier by this, per sd of seed effect), so the
# seed effect persists from the rung to the end. Not measured (no per-seed curves were
# kept); 0.02 of training is 6 steps, a third of the onset spread between settings.
SEED_ONSET_SHIFT = 0.02
# Compute per step differs between settings (HRM runs H x (L + 1) block updates per segment:
# 2 at 1/1 to 6 at 2/2), so report times are drawn log-uniform over a factor of 3.
COST_SPREAD = 3.0
# Which share of the seed-effect variance the same seed number shares across settings: the
# EMA pair's 5 seeds correlate 0.995, the gradient pair's -0.07, so it is a flag.
SHARED = (0.0, 0.5, 0.9)
RULES = ("mean", "lcb:1", "ucb:1", "ucb:2", "paired:1")
RUNGS = ("2:3", "1:2")  # grace:rf in eval rounds: one rung at 1/2; rungs at 1/4 and 1/2


@dataclass(frozen=True)
class World:
    """One search's settings and seeds, before the shared fraction mixes the seed effects."""

    final: np.ndarray  # (trials,) the setting's final pass@2 at a seed effect of 0
    onset: np.ndarray  # (trials,) where its curve is half way up, as a fraction of training
    cost: np.ndarray  # (trials,) time per eval round
    shared: np.ndarray  # (seeds,) the seed number's effect, common to every setting
    own: np.ndarray  # (trials, seeds) the setting-specific part


def logistic(x):
    return 1.0 / (1.0 + np.exp(-x))


def draw_world(rng: np.random.Generator, trials: int, seeds: int) -> World:
    weak = rng.random(trials) < WEAK_SHARE
    final = np.where(weak, rng.uniform(*WEAK_RANGE, trials), rng.uniform(*GOOD_RANGE, trials))
    onset = rng.normal(ONSET_MEAN, ONSET_SD, trials)
    cost = np.exp(rng.uniform(-0.5, 0.5, trials) * math.log(COST_SPREAD))
    return World(final, onset, cost, rng.standard_normal(seeds), rng.standard_normal((trials, seeds)))


def seed_effects(world: World, shared: float) -> np.ndarray:
    """Unit-variance seed effects, `shared` of their variance common to a seed number."""
    return math.sqrt(shared) * world.shared[None, :] + math.sqrt(1.0 - shared) * world.own


def curves(world: World, shared: float, rounds: int = ROUNDS) -> np.ndarray:
    """True pass@2 of every (trial, seed) at the end of each eval round: (trials, seeds, rounds)."""
    e = seed_effects(world, shared)
    final = logistic(np.log(world.final / (1.0 - world.final))[:, None] + SEED_LOGIT_SD * e)
    onset = world.onset[:, None] - SEED_ONSET_SHIFT * e
    t = np.arange(1, rounds + 1) / rounds
    shape = logistic((t[None, None, :] - onset[..., None]) / WIDTH) / logistic((1.0 - onset) / WIDTH)[..., None]
    return final[..., None] * shape


def observe(rng: np.random.Generator, p: np.ndarray, puzzles: int | None = PUZZLES) -> np.ndarray:
    """What an evaluation reports: the share of `puzzles` solved (None: the truth itself)."""
    return p.copy() if puzzles is None else rng.binomial(puzzles, p) / puzzles


def true_final(final: np.ndarray, seed_sd: float = SEED_LOGIT_SD) -> np.ndarray:
    """A setting's true final mean: its final pass@2 averaged over the seed population."""
    x, w = np.polynomial.hermite_e.hermegauss(32)
    logit = np.log(final / (1.0 - final))[:, None]
    return (logistic(logit + seed_sd * x[None, :]) * w).sum(1) / w.sum()


# ---------------------------------------------------------------------------
# Rules: the product's own (hrm.search.with_rung_score), and the candidate.


def parse_rule(text: str) -> tuple[str, float]:
    name, _, z = text.partition(":")
    if name not in ("mean", "lcb", "ucb", "paired"):
        raise ValueError(f"unknown rule {name!r} (mean, lcb:Z, ucb:Z, paired:Z)")
    return name, float(z or 0.0)


def product_score(rule: tuple[str, float], mean: float, std: float, seeds: int) -> float:
    """The rung_score a trial of the product reports (no tie-break)."""
    rung = {"metric": "pass@2", "tie_break": None, "mode": "max", "rule": rule[0], "z": rule[1]}
    return with_rung_score(rung, {"pass@2": mean, "pass@2_std": std, "seeds": float(seeds)})[RUNG_SCORE]


def paired_score(z: float, per_seed: np.ndarray, mean: float, rung: dict[str, np.ndarray],
                 cutoff: float | None) -> float:
    """The candidate: the trial's mean plus z standard errors of its seed-by-seed differences
    from the recorded trial nearest the rung's cutoff (same seed numbers, so a seed effect both
    share cancels). Kept iff this is not below the cutoff: a one-sided paired test."""
    if cutoff is None or not rung or per_seed.size < 2:
        return mean
    ref = min(rung.values(), key=lambda v: abs(float(v.mean()) - cutoff))
    return rung_value("ucb", z, mean, float((per_seed - ref).std(ddof=1)), per_seed.size, "max")


# ---------------------------------------------------------------------------
# One search: trials in sequence, `concurrency` at a time, through Ray's ASHAScheduler.


def make_asha(rungs: str, rounds: int):
    from ray.tune.schedulers import ASHAScheduler

    grace, rf = rungs.split(":")
    return ASHAScheduler(time_attr="eval_round", metric=RUNG_SCORE, mode="max", max_t=rounds,
                         grace_period=int(grace), reduction_factor=float(rf))


def decide(asha, rule: tuple[str, float], trial: str, k: int, per_seed: np.ndarray, mean: float, std: float,
           seen: dict[int, dict[str, np.ndarray]]) -> bool:
    """Whether ASHA stops `trial` at its k-th report. For the candidate, Ray's bracket keeps
    recording the trial's mean (what later trials' cutoffs are taken over) while the decision
    is on the paired score: what a custom scheduler in the product would do."""
    from ray.tune.schedulers import TrialScheduler

    rungs = dict(asha._brackets[0]._rungs)  # milestone -> {trial: recorded score}, Ray's own
    if rule[0] == "paired":
        cutoff = asha._brackets[0].cutoff(rungs[k]) if k in rungs else None
        value = paired_score(rule[1], per_seed, mean, seen.get(k, {}), cutoff)
    else:
        value = product_score(rule, mean, std, per_seed.size)
    stop = asha.on_trial_result(None, SimpleNamespace(trial_id=trial), {"eval_round": k, RUNG_SCORE: value})
    if k in rungs and trial in rungs[k]:
        seen.setdefault(k, {})[trial] = per_seed
        if rule[0] == "paired":
            rungs[k][trial] = mean
    return stop == TrialScheduler.STOP


def run_search(values: np.ndarray, cost: np.ndarray, rule: tuple[str, float] | None, rungs: str | None,
               concurrency: int = 2) -> dict:
    """Replay one search of `values` (trials, seeds, rounds: reported pass@2 per seed), trial i
    reporting every cost[i]. rungs None (or rule None) is FIFO. Returns the rounds each trial
    trained and the winner (best reported mean at any report, earliest trial on ties)."""
    n, seeds, rounds = values.shape
    means = values.mean(1)
    stds = values.std(1, ddof=1) if seeds > 1 else np.zeros_like(means)
    asha = make_asha(rungs, rounds) if rungs is not None and rule is not None else None
    trained, best = np.zeros(n, dtype=int), np.full(n, -np.inf)
    seen: dict[int, dict[str, np.ndarray]] = {}
    heap: list[tuple[float, int, int]] = []
    started = 0
    while started < min(concurrency, n):
        heapq.heappush(heap, (float(cost[started]), started, 1))
        started += 1
    while heap:
        now, i, k = heapq.heappop(heap)
        trained[i], best[i] = k, max(best[i], float(means[i, k - 1]))
        stop = k >= rounds
        if asha is not None:
            if k == 1:
                asha.on_trial_add(None, SimpleNamespace(trial_id=str(i)))
            stop = decide(asha, rule, str(i), k, values[i, :, k - 1], float(means[i, k - 1]), float(stds[i, k - 1]),
                          seen)
        if not stop:
            heapq.heappush(heap, (now + float(cost[i]), i, k + 1))
        elif started < n:  # the slot goes to the next trial
            heapq.heappush(heap, (now + float(cost[started]), started, 1))
            started += 1
    return {"trained": trained, "winner": int(np.argmax(best))}


# ---------------------------------------------------------------------------
# Many searches, and the table.


def outcome(run: dict, truth: np.ndarray, rounds: int) -> tuple[float, float, float, float]:
    """(best kept to the end, winner is the best, regret, share of FIFO's trial-steps)."""
    top = int(np.argmax(truth))
    return (float(run["trained"][top] >= rounds), float(run["winner"] == top),
            float(truth[top] - truth[run["winner"]]), float(run["trained"].sum() / (rounds * truth.size)))


def simulate(searches: int, seed: int, seeds: int, shared: tuple[float, ...], rungs: tuple[str, ...],
             rules: tuple[str, ...], trials: tuple[int, int], concurrency: int) -> dict:
    """{(shared, rungs, rule): (searches, 4) outcomes}; rungs and rule None is FIFO. Search s
    draws the same world for every shared fraction, rung setting and rule."""
    out: dict[tuple, list] = {}
    for s in range(searches):
        rng = np.random.default_rng([seed, seeds, s])
        n = int(rng.integers(trials[0], trials[1] + 1))
        world = draw_world(rng, n, seeds)
        truth = true_final(world.final)
        for rho in shared:
            values = observe(np.random.default_rng([seed, seeds, s, 1]), curves(world, rho))
            fifo = run_search(values, world.cost, None, None, concurrency)
            out.setdefault((rho, None, None), []).append(outcome(fifo, truth, ROUNDS))
            for rung in rungs:
                for rule in rules:
                    run = run_search(values, world.cost, parse_rule(rule), rung, concurrency)
                    out.setdefault((rho, rung, rule), []).append(outcome(run, truth, ROUNDS))
    return {key: np.array(rows) for key, rows in out.items()}


def summary(rows: np.ndarray, ref: np.ndarray | None) -> dict:
    """Means, their Monte-Carlo standard errors, and the paired differences to `ref` (the
    mean rule on the same searches) with theirs."""
    n = len(rows)
    mean, se = rows.mean(0), rows.std(0, ddof=1) / math.sqrt(n)
    out = {"searches": n, "kept": mean[0], "kept_se": se[0], "win": mean[1], "win_se": se[1],
           "regret": mean[2], "regret_se": se[2], "share": mean[3], "share_se": se[3]}
    if ref is not None:
        d = rows - ref
        dse = d.std(0, ddof=1) / math.sqrt(n)
        out.update({"d_kept": d[:, 0].mean(), "d_kept_se": dse[0], "d_win": d[:, 1].mean(), "d_win_se": dse[1],
                    "d_regret": d[:, 2].mean(), "d_regret_se": dse[2]})
    return {k: round(float(v), 4) if isinstance(v, float | np.floating) else v for k, v in out.items()}


def pm(row: dict, key: str, digits: int = 3) -> str:
    if key not in row:
        return ""
    return f"{row[key]:+.{digits}f} ± {row[key + '_se']:.{digits}f}" if key.startswith("d_") \
        else f"{row[key]:.{digits}f} ± {row[key + '_se']:.{digits}f}"


HEADER = ("| seeds | shared | rungs | rule | P(best kept) | Δ vs mean | P(winner = best) | Δ vs mean "
          "| regret | Δ vs mean | trial-steps |\n|---|---|---|---|---|---|---|---|---|---|---|")


def table_row(row: dict) -> str:
    cells = [str(row["seeds"]), f"{row['shared']:g}", row["rungs"] or "-", row["rule"],
             pm(row, "kept"), pm(row, "d_kept"), pm(row, "win"), pm(row, "d_win"),
             pm(row, "regret", 4), pm(row, "d_regret", 4), f"{row['share']:.3f}"]
    return "| " + " | ".join(cells) + " |"


def rows_for(results: dict, seeds: int) -> list[dict]:
    rows = []
    for (rho, rung, rule), outcomes in results.items():
        ref = results.get((rho, rung, "mean")) if rule not in (None, "mean") else None
        rows.append({"seeds": seeds, "shared": rho, "rungs": rung, "rule": rule or "fifo",
                     **summary(outcomes, ref)})
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--searches", type=int, default=1000, help="simulated searches per seeds count")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, action="append", help="seeds per trial (default 2, 3, 5)")
    p.add_argument("--shared", type=float, action="append", help="shared fraction of the seed effect")
    p.add_argument("--rungs", action="append", metavar="GRACE:RF", help="in eval rounds (default 2:3, 1:2)")
    p.add_argument("--rule", action="append", metavar="NAME[:Z]", help="mean, lcb:Z, ucb:Z, paired:Z")
    p.add_argument("--trials", default="5:20", metavar="LO:HI", help="trials per search, drawn uniformly")
    p.add_argument("--concurrency", type=int, default=2)
    args = p.parse_args(argv)
    rules = tuple(args.rule or RULES)
    for rule in rules:
        parse_rule(rule)
    if "mean" not in rules:
        rules = ("mean", *rules)  # the reference of every difference
    lo, hi = (int(x) for x in args.trials.split(":"))
    rows = []
    for seeds in args.seeds or [2, 3, 5]:
        results = simulate(args.searches, args.seed, seeds, tuple(args.shared or SHARED),
                           tuple(args.rungs or RUNGS), rules, (lo, hi), args.concurrency)
        rows += rows_for(results, seeds)
    for row in rows:
        print(json.dumps({**row, "trials": args.trials, "concurrency": args.concurrency, "seed": args.seed}))
    print()
    print(HEADER)
    for row in rows:
        print(table_row(row))


if __name__ == "__main__":
    main()
