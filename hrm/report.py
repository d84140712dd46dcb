"""`hrm report`: what a search found, and which of its differences are real at the noise it measured.
Reads `<root>/<experiment>/` (folder or URI): space.json, the trial folders, the Optuna journal, the
artifact index; writes `<root>/<experiment>/report/`. Two noises are kept apart: the seeds' spread
(`<metric>_std`) and the evaluation's binomial se (`<metric>_se`). A comparison pairs runs equal in all
but the compared values (same other params and seed number: same data order and init); each bootstrap
draw adds the evaluation noise, so two seeds still get an interval as wide as the evaluation allows."""

from __future__ import annotations

import itertools
import json
import math
import re
import tempfile
import warnings
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pyarrow.fs as pafs

from hrm.artifact_rows import index_points
from hrm.compute import pareto_front
from hrm.config import ConfigError
from hrm.search.study import journal_uri, load as load_study
from hrm.storage import is_uri, open_uri, upload_dir
from hrm.report_figures import BINOMIAL, render, setting_label as label

DRAWS = 10_000
SEED = 20_240_601  # fixed: the same storage gives the same report
MIN_STUDY_TRIALS = 4  # fewer complete trials cannot rank a parameter at all
MAX_LEVELS = 8  # an int param with more values is binned like a float, and not compared value by value


class ReportError(ConfigError):
    """A report that cannot be made from what is at the given path; one line for the user."""


@dataclass
class Trial:
    trial_id: str
    folder: str
    params: dict[str, Any]
    status: str  # completed | stopped | error | no eval
    evals: list[dict[str, Any]]  # the trial's eval rows (seeds' means), by step
    seeds: dict[int, tuple[float, float]] = field(default_factory=dict)  # seed -> final (value, eval se)


@dataclass
class Experiment:
    root: str
    name: str
    space: dict[str, Any]
    trials: list[Trial]
    notes: list[str] = field(default_factory=list)


def _text(fs: pafs.FileSystem, path: str) -> str | None:
    try:
        with fs.open_input_stream(path) as f:
            return f.read().decode()
    except FileNotFoundError:
        return None


def _rows(text: str | None) -> list[dict[str, Any]]:
    """JSON lines; a half-written last line (a running trial) is skipped."""
    out = []
    for line in (text or "").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _evals(text: str | None) -> list[dict[str, Any]]:
    """Eval rows by step; a resumed run may repeat a step: its later row wins."""
    by_step = {r["step"]: r for r in _rows(text) if r.get("kind") == "eval" and "step" in r}
    return [by_step[s] for s in sorted(by_step)]


def _check_root(root: str, experiment: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, experiment folder), or ReportError before anything is written."""
    try:
        fs, base = open_uri(root.rstrip("/") or "/")
    except (ValueError, OSError) as exc:
        raise ReportError(f"{root}: not a folder or a storage URI ({' '.join(str(exc).split())[:200]})") from None
    if fs.get_file_info(base).type != pafs.FileType.Directory:
        raise ReportError(f"{root}: no such folder (expected a search storage root holding <experiment>/space.json)")
    if not experiment or "/" in experiment or experiment in (".", ".."):
        raise ReportError(f"experiment {experiment!r}: expected one folder name under {root}")
    folder = f"{base}/{experiment}"
    if fs.get_file_info(folder).type != pafs.FileType.Directory:
        infos = fs.get_file_info(pafs.FileSelector(base))
        known = [i.base_name for i in infos if i.type == pafs.FileType.Directory
                 and fs.get_file_info(f"{i.path}/space.json").type == pafs.FileType.File]
        raise ReportError(f"{root.rstrip('/')}/{experiment}: no such experiment (expected a search folder holding "
                          f"space.json; searches here: {', '.join(sorted(known)) or 'none'})")
    return fs, folder


def _space(fs: pafs.FileSystem, folder: str, where: str) -> dict[str, Any]:
    text = _text(fs, f"{folder}/space.json")
    if text is None:
        raise ReportError(f"{where}/space.json: missing; expected a search folder with the space.json its search "
                          "driver writes at start")
    try:
        space = json.loads(text)
        assert isinstance(space, dict) and space["metric"] and space["mode"] in ("max", "min")
        assert all("name" in p and "kind" in p for p in space["params"])
    except (json.JSONDecodeError, AssertionError, KeyError, TypeError):
        raise ReportError(f"{where}/space.json: not a search space description (expected JSON with metric, "
                          "mode and params)") from None
    return {"claims": [], "scheduler": {"type": "fifo"}, **space}


def _se(row: dict[str, Any], metric: str) -> float:
    """The row's evaluation se; older rows lack it: binomial from eval_questions, else 0."""
    n, p = row.get("eval_questions"), row[metric]
    guess = math.sqrt(max(p * (1 - p), 0.0) / n) if metric in BINOMIAL and n else 0.0
    return float(row.get(f"{metric}_se", guess))


def _seed_finals(fs: pafs.FileSystem, folder: str, evals: list[dict], metric: str) -> dict[int, tuple[float, float]]:
    """Each seed's (final value, eval se): hrm/seed_<s>/metrics.jsonl's row at the trial's last
    step, or with one seed the trial's own row under its config's train.seed."""
    infos = fs.get_file_info(pafs.FileSelector(f"{folder}/hrm", allow_not_found=True))
    numbers = sorted(int(m.group(1)) for i in infos if i.type == pafs.FileType.Directory
                     and (m := re.fullmatch(r"seed_(\d+)", i.base_name)))
    last = evals[-1]
    rows = {}
    for s in numbers:
        own = _evals(_text(fs, f"{folder}/hrm/seed_{s}/metrics.jsonl"))
        at = [r for r in own if r["step"] == last["step"]] or own[-1:]
        if at and metric in at[-1]:
            rows[s] = at[-1]
    if not rows:
        import yaml  # a light read of one key; the config module would validate the whole file

        cfg = yaml.safe_load(_text(fs, f"{folder}/hrm/config.yaml") or "{}") or {}
        rows = {int((cfg.get("train") or {}).get("seed", 0)): last}
    return {s: (float(r[metric]), _se(r, metric)) for s, r in rows.items()}


def _trial(fs: pafs.FileSystem, folder: str, space: dict[str, Any]) -> Trial:
    metric, sched = space["metric"], space["scheduler"]
    full = {p.get("short", p["name"]): p["name"] for p in space["params"]}  # trials sample by short name
    params = {full.get(k, k): v for k, v in json.loads(_text(fs, f"{folder}/params.json") or "{}").items()}
    result = _rows(_text(fs, f"{folder}/result.json"))
    name = folder.rsplit("/", 1)[-1]
    trial_id = next((str(r["trial_id"]) for r in result if "trial_id" in r), name)
    evals = [r for r in _evals(_text(fs, f"{folder}/hrm/metrics.jsonl")) if metric in r]
    failed = fs.get_file_info(f"{folder}/error.txt").type == pafs.FileType.File
    cut = sched.get("type") == "asha" and evals and evals[-1].get(sched["time_attr"], 0) < sched["max_t"]
    status = "error" if failed else "no eval" if not evals else "stopped" if cut else "completed"
    seeds = _seed_finals(fs, folder, evals, metric) if evals else {}
    return Trial(trial_id, name, params, status, evals, seeds)


def load_experiment(root: str, experiment: str) -> Experiment:
    """Every trial of `<root>/<experiment>` (a trial folder is one holding params.json)."""
    fs, folder = _check_root(root, experiment)
    where = f"{root.rstrip('/')}/{experiment}"
    space = _space(fs, folder, where)
    infos = fs.get_file_info(pafs.FileSelector(folder))
    dirs = sorted(i.path for i in infos if i.type == pafs.FileType.Directory)
    marks = fs.get_file_info([f"{d}/params.json" for d in dirs]) if dirs else []
    trials = [_trial(fs, d, space) for d, m in zip(dirs, marks) if m.type == pafs.FileType.File]
    exp = Experiment(root, experiment, space, trials)
    if any(f"{space['metric']}_se" not in t.evals[-1] for t in trials if t.evals):
        exp.notes.append(f"Some eval rows carry no {space['metric']}_se: their evaluation se is estimated as binomial "
                         "from eval_questions (0 where that is unknown).")
    return exp


def _canon(value: Any) -> str:
    """One spelling per value, so 2 and 2.0 (JSON's int and float) fall in the same cell."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return json.dumps(value, sort_keys=True)


def paired_bootstrap(d: np.ndarray, se: np.ndarray, draws: int = DRAWS, seed: int = SEED) -> tuple[float, float, float]:
    """(mean, 2.5%, 97.5%) of the mean of paired differences `d`: each draw resamples the pairs
    and adds each picked pair's evaluation noise (normal, sd `se`): a two-level bootstrap of
    one-seed groups."""
    return two_level_bootstrap([[(float(x), float(e))] for x, e in zip(d, se)], draws, seed)


def two_level_bootstrap(trials: list[list[tuple[float, float]]], draws: int = DRAWS,
                        seed: int = SEED) -> tuple[float, float, float]:
    """(mean, 2.5%, 97.5%) of a group's mean final metric: each draw resamples trials, then
    seeds within each picked trial (adding their evaluation noise, as `paired_bootstrap`)."""
    count = np.array([len(t) for t in trials])
    t_n, r_max = len(trials), int(count.max())
    padded = np.array([list(t) + [(0.0, 0.0)] * (r_max - len(t)) for t in trials], float)  # trial, seed, (v, se)
    vals, ses = padded[..., 0], padded[..., 1]
    rng, stats = np.random.default_rng(seed), np.empty(draws)
    chunk = max(1, 1_000_000 // (t_n * r_max))
    for start in range(0, draws, chunk):
        m = min(chunk, draws - start)
        ti = rng.integers(0, t_n, size=(m, t_n))
        r = count[ti][..., None]
        si = (rng.random((m, t_n, r_max)) * r).astype(int)
        x = vals[ti[..., None], si] + rng.standard_normal((m, t_n, r_max)) * ses[ti[..., None], si]
        stats[start:start + m] = ((x * (np.arange(r_max) < r)).sum(-1) / count[ti]).mean(-1)
    lo, hi = np.quantile(stats, [0.025, 0.975])
    return float(np.mean([np.mean([v for v, _ in t]) for t in trials])), float(lo), float(hi)


def compare(trials: list[Trial], names: list[str], better: dict[str, Any], than: dict[str, Any],
            mode: str) -> dict[str, Any]:
    """`better` against `than` on trials equal in every other param: pairs are (matched cell,
    seed number); the difference is better - than in the metric's good direction. Its bootstrap
    is seeded by the two settings: the same comparison (a claim and a grid's pair) reads the same."""
    others = [n for n in names if n not in better and n not in than]
    hit = lambda params, want: all(_canon(params.get(k)) == _canon(v) for k, v in want.items())  # noqa: E731
    cells: dict[tuple, dict[str, list[Trial]]] = {}
    for t in trials:
        side = "b" if hit(t.params, better) else "a" if hit(t.params, than) else None
        if side:
            cells.setdefault(tuple(_canon(t.params.get(n)) for n in others), {"a": [], "b": []})[side].append(t)
    sign, d, se, n_cells = 1.0 if mode == "max" else -1.0, [], [], 0
    for cell in cells.values():
        if not (cell["a"] and cell["b"]):
            continue
        n_cells += 1
        a, b = _per_seed(cell["a"]), _per_seed(cell["b"])
        for s in sorted(set(a) & set(b)):
            d.append(sign * (b[s][0] - a[s][0]))
            se.append(math.hypot(a[s][1], b[s][1]))
    out: dict[str, Any] = {"n_pairs": len(d), "n_cells": n_cells, "diff": None, "lo": None, "hi": None}
    if not d:
        return {**out, "verdict": "no matched trials"}
    seed = SEED + zlib.crc32(_canon([sorted(better.items()), sorted(than.items())]).encode())
    out["diff"], out["lo"], out["hi"] = paired_bootstrap(np.array(d), np.array(se), seed=seed)
    return {**out, "verdict": "better" if out["lo"] > 0 else "worse" if out["hi"] < 0 else "not separable"}


def _per_seed(trials: list[Trial]) -> dict[int, tuple[float, float]]:
    """Seed -> (value, se) averaged over the cell's trials of one side (a repeated setting)."""
    seeds, n = sorted(set.intersection(*(set(t.seeds) for t in trials))), len(trials)
    return {s: (sum(t.seeds[s][0] for t in trials) / n, math.sqrt(sum(t.seeds[s][1] ** 2 for t in trials)) / n)
            for s in seeds}


def _evaluator(n: int) -> tuple[Any, str]:
    """fANOVA where scikit-learn is installed, else PED-ANOVA (why: report_figures.IMPORTANCE_CHOICE)."""
    from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator  # not at the top: as optuna

    try:
        import sklearn  # noqa: F401  (only probed)
        return FanovaImportanceEvaluator(seed=SEED), "fANOVA (a random forest's variance decomposition)"
    except ImportError:
        q = min(0.5, max(0.1, 5 / n))  # >= ~5 trials in the top quantile (PED-ANOVA's own advice), <= half
        return PedAnovaImportanceEvaluator(target_quantile=q), f"PED-ANOVA (what decides reaching the top {q:.0%})"


def importance(exp: Experiment) -> dict[str, Any]:
    """Each param's importance by Optuna's evaluator on the study's complete trials."""
    import optuna  # here, not at the top: hrm's training path must not import Optuna

    out: dict[str, Any] = {"evaluator": None, "values": None}
    uri = journal_uri(exp.root, exp.name)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = load_study(uri, exp.name)
    except Exception as exc:  # a missing or foreign journal: Optuna raises KeyError, ValueError, OSError...
        return {**out, "note": f"no Optuna study '{exp.name}' at {uri} ({type(exc).__name__})"}
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    out["trials"] = len(done)
    if len(done) < MIN_STUDY_TRIALS:
        return {**out, "note": f"the study has {len(done)} complete trial(s); importance needs {MIN_STUDY_TRIALS}"}
    evaluator, out["evaluator"] = _evaluator(len(done))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small-sample and experimental warnings: the note says how many trials
        values = optuna.importance.get_param_importances(study, evaluator=evaluator)
    full = {p.get("short", p["name"]): p["name"] for p in exp.space["params"]}  # the study holds short names
    return {**out, "values": {full.get(k, k): float(v) for k, v in values.items()},
            "note": f"{out['evaluator']} over {len(done)} complete trials"}


def _levels(p: dict[str, Any]) -> list | None:
    """The values shown one by one: a categorical's, an int's up to MAX_LEVELS; else None (binned)."""
    values = p.get("values") or []
    return values if p["kind"] == "categorical" or (p["kind"] == "int" and 0 < len(values) <= MAX_LEVELS) else None


def _groups(space_param: dict[str, Any], done: list[Trial]) -> list[tuple[str, list[Trial]]]:
    """(label, trials) per value; continuous params in up to 4 quantile bins."""
    name = space_param["name"]
    have = [t for t in done if name in t.params]
    if (values := _levels(space_param)) is not None:
        return [(str(v), [t for t in have if _canon(t.params[name]) == _canon(v)]) for v in values]
    xs = np.array([float(t.params[name]) for t in have])
    if not len(xs):
        return []
    edges = np.unique(np.quantile(xs, np.linspace(0, 1, min(4, len(set(xs))) + 1)))
    which = np.clip(np.searchsorted(edges, xs, side="right") - 1, 0, max(len(edges) - 2, 0))
    return [(f"[{edges[i]:.4g}, {edges[min(i + 1, len(edges) - 1)]:.4g}]", [t for t, w in zip(have, which) if w == i])
            for i in range(max(len(edges) - 1, 1))]


def effects(exp: Experiment, done: list[Trial]) -> list[dict[str, Any]]:
    out = []
    for i, p in enumerate(exp.space["params"]):
        rows = []
        for value, group in _groups(p, done):
            seeds = [list(t.seeds.values()) for t in group]
            stats = dict(zip(("mean", "lo", "hi"), two_level_bootstrap(seeds, seed=SEED + i))) if seeds else {}
            rows.append({"value": value, "trials": len(seeds), "seeds": sum(map(len, seeds)), **stats})
        out.append({"param": p["name"], "short": p.get("short", p["name"]), "kind": p["kind"], "groups": rows})
    return out


def comparisons(exp: Experiment, done: list[Trial]) -> list[dict[str, Any]]:
    names, mode, out = [p["name"] for p in exp.space["params"]], exp.space["mode"], []
    for p in exp.space["params"]:
        if not _levels(p):
            continue  # continuous (or many-valued) params are never matched exactly: binned in effects only
        for a, b in itertools.combinations(p["values"], 2):
            res = compare(done, names, {p["name"]: b}, {p["name"]: a}, mode)
            out.append({"param": p["name"], "short": p.get("short", p["name"]), "first": a, "second": b, **res})
    return out


def claims(exp: Experiment, done: list[Trial]) -> list[dict[str, Any]]:
    names, out = [p["name"] for p in exp.space["params"]], []
    for c in exp.space["claims"]:
        res = compare(done, names, c["better"], c["than"], exp.space["mode"])
        res["verdict"] = {"better": "agrees", "worse": "contradicts"}.get(res["verdict"], res["verdict"])
        by = c.get("by")
        inside = None if by is None or res["lo"] is None else bool(res["lo"] <= by <= res["hi"])
        out.append({"better": c["better"], "than": c["than"], "by": by, "note": c.get("note", ""), **res,
                    "by_inside": inside})
    return out


def summary(exp: Experiment, done: list[Trial]) -> dict[str, Any]:
    """Trials by status, each setting's final metric with both noises, the best, which noise dominates."""
    settings: dict[str, list[Trial]] = {}
    for t in done or [t for t in exp.trials if t.seeds]:  # no completed trial yet: what there is
        settings.setdefault(label(t.params, exp.space), []).append(t)
    rows = []
    for name, ts in settings.items():
        vals, ses = ([x[k] for t in ts for x in t.seeds.values()] for k in (0, 1))
        rows.append({"setting": name, "params": ts[0].params, "trials": [t.trial_id for t in ts],
                     "n_seeds": len(vals), "mean": float(np.mean(vals)),
                     "seeds_std": float(np.std(vals, ddof=1)) if len(vals) > 1 else None,
                     "eval_se": float(np.mean(ses))})
    rows.sort(key=lambda r: r["mean"], reverse=exp.space["mode"] == "max")
    status = {s: sum(t.status == s for t in exp.trials) for s in ("completed", "stopped", "error", "no eval")}
    stds = [r["seeds_std"] for r in rows if r["seeds_std"] is not None]
    std, se = (float(np.median(x)) if x else None for x in (stds, [r["eval_se"] for r in rows]))
    noise = {"median_seeds_std": std, "median_eval_se": se,
             "dominates": ("seeds" if std > se else "evaluation") if stds else None}
    return {"trials": len(exp.trials), "by_status": status, "from_completed": bool(done),
            "best": rows[0] if rows else None, "settings": rows, "noise": noise}


def curves(exp: Experiment) -> tuple[str, list[dict[str, Any]]]:
    """(compute axis, each trial's eval history): flops, or for older runs samples or steps."""
    evals = [r for t in exp.trials for r in t.evals]
    axis = next((a for a in ("flops", "samples") if evals and all(a in r for r in evals)), "step")
    m = exp.space["metric"]
    return axis, [{"trial_id": t.trial_id, "setting": label(t.params, exp.space), "status": t.status,
                   "step": [r["step"] for r in t.evals], "x": [float(r[axis]) for r in t.evals],
                   "mean": [float(r[m]) for r in t.evals], "std": [float(r.get(f"{m}_std", 0.0)) for r in t.evals]}
                  for t in exp.trials if t.evals]


def inference_pareto(exp: Experiment, labels: dict[str, str]) -> dict[str, Any]:
    """The metric against inference FLOPs per question at each setting (Mmax x views x paths x
    ensemble size) the end of the search measured (`hrm.artifact_rows.index_points`)."""
    from hrm.artifacts import ArtifactStore

    store = ArtifactStore(f"{exp.root.rstrip('/')}/artifacts")
    if not store.exists() or exp.name not in store.experiments():
        return {"mmax": [], "points": [], "front": [], "note": "no artifact index for this search"}
    points = [{**p, "trial_id": r["trial_id"], "step": r["step"], "checkpoint": f"{r['trial_id']}@{r['step']}",
               "setting": labels.get(r["trial_id"], "")}
              for r in store.table(exp.name).to_pylist() for p in index_points(r, exp.space["metric"])]
    axes = {axis: sorted({p[axis] for p in points if p[axis] is not None}) for axis in ("mmax", "views", "paths",
                                                                                           "members")}
    note = None if len(points) > len({p["checkpoint"] for p in points}) else \
        "the search measured one setting per checkpoint (store.scaling, store.views, store.paths)"
    return {**axes, "points": points, "front": pareto_front(points, exp.space["mode"]) if not note else [],
            "note": note}


def build(exp: Experiment) -> dict[str, Any]:
    """Every number and verdict of the report (report.json, before its figures are listed)."""
    done = [t for t in exp.trials if t.status == "completed" and t.seeds]
    axis, runs = curves(exp)
    points = [{"compute": x, "value": v, "trial_id": c["trial_id"], "setting": c["setting"], "step": s}
              for c in runs for x, v, s in zip(c["x"], c["mean"], c["step"])]
    labels = {t.trial_id: label(t.params, exp.space) for t in exp.trials}
    return {
        "experiment": exp.name, "root": exp.root, "metric": exp.space["metric"], "mode": exp.space["mode"],
        "space": exp.space, "bootstrap": {"draws": DRAWS, "seed": SEED, "confidence": 0.95}, "n_completed": len(done),
        "summary": summary(exp, done), "importance": importance(exp), "effects": effects(exp, done),
        "comparisons": comparisons(exp, done), "claims": claims(exp, done),
        "trials": [{"trial_id": t.trial_id, "folder": t.folder, "status": t.status, "params": t.params,
                    "setting": labels[t.trial_id], "final": t.evals[-1][exp.space["metric"]] if t.evals else None,
                    "seeds": {str(s): {"value": v, "se": e} for s, (v, e) in t.seeds.items()}} for t in exp.trials],
        "curves": {"axis": axis, "runs": runs},
        "pareto": {"training": {"axis": axis, "points": len(points), "front": pareto_front(points, exp.space["mode"])},
                   "inference": inference_pareto(exp, labels)},
        "notes": exp.notes,
    }


def _clear_old(out: str) -> None:
    """Drop an earlier report's figures and TensorBoard events (the rest is overwritten)."""
    fs, base = open_uri(out)
    for info in fs.get_file_info(pafs.FileSelector(base.rstrip("/"), recursive=True, allow_not_found=True)):
        rel = info.path[len(base.rstrip("/")):].lstrip("/")
        if info.type == pafs.FileType.File and rel.startswith(("figures/", "events.out.tfevents.")):
            fs.delete_file(info.path)


def write_report(root: str, experiment: str, out: str | None = None,
                 log: Callable[[str], None] = print) -> dict[str, Any]:
    """Write the report of `<root>/<experiment>` to `out` (default `<root>/<experiment>/report`,
    a folder or URI): report.md, report.json, figures/*.png and a TensorBoard run. Returns
    report.json's content. ReportError, before anything is written, for a bad root or experiment."""
    exp = load_experiment(root, experiment)
    out = (out or f"{root.rstrip('/')}/{experiment}/report").rstrip("/")
    report = build(exp)
    log(f"report: {experiment}: " + ", ".join(f"{n} {s}" for s, n in report["summary"]["by_status"].items()))
    with tempfile.TemporaryDirectory(prefix="hrm-report-") as tmp:
        report["figures"] = render(report, tmp)
        with open(f"{tmp}/report.json", "w") as f:
            json.dump(report, f, indent=1, default=str)
        _clear_old(out)
        upload_dir(tmp, out)
    report["out"] = out
    log(f"report: {out}/report.md" + ("" if is_uri(out) else f" (TensorBoard: tensorboard --logdir {out})"))
    return report
