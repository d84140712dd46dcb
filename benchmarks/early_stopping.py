"""How much ASHA saves, and whether it keeps the winner: a search that ran every trial to
the end, replayed through Ray's own ASHAScheduler under several rung settings.

First run the search without early stopping, evaluating often, e.g. the default search
(two trials at a time) with an eval every 25 steps:

    python ray_jobs/tune.py --set scheduler.type=fifo --set overrides.train.eval_interval=25 \\
        --num-samples 20 --storage /tmp/es --name fifo20
    python benchmarks/early_stopping.py /tmp/es/fifo20 --first 5 --first 20
    python benchmarks/early_stopping.py /tmp/es/fifo20 --first 5 --tie-break token_accuracy

With --tie-break, ASHA compares what a search with `scheduler.tie_break` compares
(`hrm.search.with_rung_score`: the metric, and the tie-break where it ties); the winner is
still the best metric.

Each trial's reported history (result.json: one row per evaluation) is fed, report by
report in the order the search made them, to `ray.tune.schedulers.ASHAScheduler` with time_attr "step", so
the rungs are in training steps: a setting `grace:rf` puts rungs at grace x rf^k below max_t.
A trial ASHA stops at a rung trains that many steps. For each setting and each --first N
(the first N trials; TPE's first 10 proposals are its seeded random start-up, so a search
of N <= 10 trials proposes these same configs with or without early stopping) it prints
the trial-steps trained as a share of running every trial to the end, the winner (the
trial with the best metric at any step it trained, as the artifact store's `best` picks)
and its metric against the winner without early stopping. Beyond 10 trials TPE would have
proposed from ASHA-cut histories; the replay keeps the configs of the search it replays.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace


def histories(experiment: Path, metric: str, tie_break: str | None = None,
              mode: str = "max") -> list[tuple[str, list[tuple[float, int, float, float]]]]:
    """(trial id, [(report time, step, what ASHA compares, metric)] in step order) per trial,
    by start time. ASHA compares the metric, or with `tie_break` the rung score."""
    from hrm.search import RUNG_SCORE, with_rung_score

    rung = {"metric": metric, "tie_break": tie_break, "mode": mode, "rule": "mean", "z": 0.0} if tie_break else None
    trials = []
    for result in experiment.glob("*/result.json"):
        rows = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        rows = [with_rung_score(rung, r) for r in rows if metric in r and (tie_break is None or tie_break in r)]
        if rows:
            start = rows[0]["timestamp"] - rows[0]["time_total_s"]
            key = RUNG_SCORE if rung else metric
            trials.append((start, rows[0]["trial_id"], [(r["timestamp"], r["step"], r[key], r[metric]) for r in rows]))
    return [(trial_id, points) for _, trial_id, points in sorted(trials)]


def replay(trials: list[tuple[str, list[tuple[float, int, float, float]]]], grace: int, rf: float, max_t: int,
           metric: str, mode: str) -> dict:
    """Feed every report, in the order the search made them (by report time; trials that ran
    side by side interleave), through a fresh ASHAScheduler; a stopped trial's later
    reports are dropped. (A real ASHA search would start the next trial sooner instead.)"""
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    asha = ASHAScheduler(time_attr="step", metric=metric, mode=mode, max_t=max_t, grace_period=grace,
                         reduction_factor=rf)
    better = max if mode == "max" else min
    trained, best, stopped = {}, {}, set()
    events = sorted((t, order, step, rank, value, trial_id) for order, (trial_id, points) in enumerate(trials)
                    for t, step, rank, value in points)
    for trial_id, _ in trials:
        asha.on_trial_add(None, SimpleNamespace(trial_id=trial_id))
    for _, _, step, rank, value, trial_id in events:
        if trial_id in stopped:
            continue
        trained[trial_id], best[trial_id] = step, better(best.get(trial_id, value), value)
        action = asha.on_trial_result(None, SimpleNamespace(trial_id=trial_id), {"step": step, metric: rank})
        if action == TrialScheduler.STOP:
            stopped.add(trial_id)
    pick = better(best, key=best.get)
    rungs = sorted({int(m) for m, _ in asha._brackets[0]._rungs if m < max_t})
    return {"trial_steps": sum(trained.values()), "winner": pick, "winner_metric": best[pick], "rungs": rungs,
            "stopped": sum(s < max_t for s in trained.values())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("experiment", type=Path, help="a finished search's folder (scheduler fifo)")
    p.add_argument("--metric", default="pass@2")
    p.add_argument("--mode", default="max", choices=["max", "min"])
    p.add_argument("--setting", action="append", default=None, metavar="GRACE:RF",
                   help="rungs to try (default: a grid); steps, e.g. 75:2")
    p.add_argument("--first", type=int, action="append", default=None, help="replay the first N trials")
    p.add_argument("--tie-break", default=None, help="a metric that orders trials tied on --metric at a rung")
    args = p.parse_args()
    trials = histories(args.experiment, args.metric, args.tie_break, args.mode)
    if not trials:
        p.exit(2, f"early_stopping.py: {args.experiment}: no trial results with {args.metric!r}\n")
    max_t = max(points[-1][1] for _, points in trials)
    settings = args.setting or ["75:2", "75:3", "100:2", "100:3", "150:2", "50:3", "50:4", "100:4"]
    for n in args.first or [len(trials)]:
        subset = trials[:n]
        full = {t: (max if args.mode == "max" else min)(v for *_, v in pts) for t, pts in subset}
        winner = (max if args.mode == "max" else min)(full, key=full.get)
        print(json.dumps({"trials": len(subset), "max_t": max_t, "trial_steps": sum(pts[-1][1] for _, pts in subset),
                          "winner": winner, "winner_metric": full[winner],
                          "curves": {t: [v for *_, v in pts] for t, pts in subset}}))
        for setting in settings:
            grace, rf = setting.split(":")
            r = replay(subset, int(grace), float(rf), max_t, args.metric, args.mode)
            share = r["trial_steps"] / sum(pts[-1][1] for _, pts in subset)
            print(json.dumps({"trials": len(subset), "setting": setting, "tie_break": args.tie_break, **r,
                              "share": round(share, 3),
                              "same_winner": r["winner"] == winner,
                              "winner_gap": round(full[winner] - full[r["winner"]], 4)}))


if __name__ == "__main__":
    main()
