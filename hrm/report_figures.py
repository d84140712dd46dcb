"""What `hrm.report` measured, drawn and written: the PNG figures (matplotlib, Agg), report.md
(tables as markdown) and a TensorBoard run in the report folder holding the same figures as
images and the same tables as text. Works from the report's plain dict alone (report.json's
content), so nothing here reads storage or computes a statistic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

BINOMIAL = ("exact_accuracy", "pass@1", "pass@2")  # metrics with an evaluation se (a share of questions)
MAX_LEGEND = 12  # more lines than this and a legend hides the plot
MAX_ROWS = 30  # table rows shown in report.md (report.json has them all)
IMPORTANCE_CHOICE = (
    "Optuna's fANOVA where scikit-learn is installed (a dependency), else its PED-ANOVA (numpy only); fANOVA gave "
    "a parameter that changes nothing less importance (benchmarks/RESULTS.md, \"Importance evaluators\")")


def fmt(x: Any, sign: bool = False) -> str:
    """A number as report.md writes it (4 significant digits); None as a dash."""
    if x is None:
        return "–"
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return f"{x:+.4g}" if sign else f"{x:.4g}"
    return str(x)


def setting_label(params: dict[str, Any], space: dict[str, Any]) -> str:
    """A setting as `short=value, ...` in the space's param order (floats to 4 digits)."""
    return ", ".join(f"{p.get('short', p['name'])}={fmt(params[p['name']])}"
                     for p in space["params"] if p["name"] in params)


def _table(head: list[str], rows: list[list[Any]]) -> str:
    cell = lambda v: (fmt(v) if not isinstance(v, str) else v).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows[:MAX_ROWS]]
    if len(rows) > MAX_ROWS:
        lines.append(f"\n({len(rows) - MAX_ROWS} more rows in report.json)")
    return "\n".join(lines)


def _interval(row: dict[str, Any]) -> str:
    return f"[{fmt(row.get('lo'))}, {fmt(row.get('hi'))}]"


def _setting(values: dict[str, Any]) -> str:
    return ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in values.items())


# ---------------------------------------------------------------------------
# figures


def _plt():
    import matplotlib  # here, not at the top: hrm's training path must not import matplotlib

    matplotlib.use("Agg")  # files only: no display on a cluster head
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _plt().close(fig)


def _log_x(ax: Any, xs: list[float]) -> None:
    """Compute spans decades: a log axis keeps the early evaluations readable."""
    xs = [x for x in xs if x > 0]
    if xs and max(xs) / min(xs) > 20:
        ax.set_xscale("log")


def learning_curves(report: dict[str, Any], path: Path) -> None:
    plt, metric, axis = _plt(), report["metric"], report["curves"]["axis"]
    runs = report["curves"]["runs"]
    fig, ax = plt.subplots(figsize=(8, 5))
    colors = {s: plt.cm.tab20(i % 20) for i, s in enumerate(dict.fromkeys(r["setting"] for r in runs))}
    style = {"completed": "-", "stopped": "--", "error": ":"}
    for r in runs:
        x, m, s = (np.array(r[k]) for k in ("x", "mean", "std"))
        ax.plot(x, m, style.get(r["status"], "-"), marker=".", color=colors[r["setting"]],
                label=f"{r['setting']} ({r['status']})")
        ax.fill_between(x, m - s, m + s, color=colors[r["setting"]], alpha=0.15)
    _log_x(ax, [x for r in runs for x in r["x"]])
    ax.set(xlabel=f"training compute ({axis})", ylabel=metric,
           title=f"{metric} over training: seeds' mean ± seeds' std (dashed: stopped early)")
    if len(runs) <= MAX_LEGEND:
        ax.legend(fontsize=7)
    _save(fig, path)


def effects_figure(report: dict[str, Any], path: Path) -> None:
    plt, params = _plt(), [p for p in report["effects"] if p["groups"]]
    cols = min(3, len(params))
    lines = (len(params) + cols - 1) // cols
    fig, axes = plt.subplots(lines, cols, figsize=(4.5 * cols, 3.5 * lines), squeeze=False)
    for ax, p in zip(axes.flat, params):
        rows = [g for g in p["groups"] if "mean" in g]
        xs = np.arange(len(rows))
        means = np.array([g["mean"] for g in rows])
        err = np.array([[g["mean"] - g["lo"] for g in rows], [g["hi"] - g["mean"] for g in rows]])
        ax.errorbar(xs, means, yerr=err if len(rows) else None, fmt="o", capsize=4)
        labels = [g["value"] for g in rows]
        ax.set_xticks(xs, labels, rotation=30 if max(map(len, labels), default=0) > 6 else 0, fontsize=8)
        ax.set(title=p["short"], ylabel=report["metric"])
    for ax in list(axes.flat)[len(params):]:
        ax.axis("off")
    fig.suptitle(f"effect of each param: mean final {report['metric']}, 95% interval (completed trials)")
    _save(fig, path)


def importance_figure(report: dict[str, Any], path: Path) -> None:
    plt, values = _plt(), report["importance"]["values"]
    short = {p["name"]: p.get("short", p["name"]) for p in report["space"]["params"]}
    names = sorted(values, key=values.get)
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(names) + 1.5))
    ax.barh([short.get(n, n) for n in names], [values[n] for n in names])
    ax.set(xlabel=f"importance ({report['importance']['evaluator'].split(' (')[0]}; sums to 1)", xlim=(0, 1),
           title="parameter importance")
    _save(fig, path)


def differences_figure(report: dict[str, Any], path: Path) -> None:
    """Every matched comparison and claim as a difference with its interval (0: no difference)."""
    plt = _plt()
    rows = [(f"{c['short']}: {c['second']} vs {c['first']}", c, None) for c in report["comparisons"] if c["n_pairs"]]
    rows += [(f"claim {i}: {_setting(c['better'])} vs {_setting(c['than'])}", c, c["by"])
             for i, c in enumerate(report["claims"], 1) if c["n_pairs"]]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.5))
    for y, (_name, c, by) in enumerate(rows):
        color = "tab:green" if c["lo"] > 0 else "tab:red" if c["hi"] < 0 else "tab:gray"
        ax.plot([c["lo"], c["hi"]], [y, y], color=color, linewidth=3)
        ax.plot(c["diff"], y, "o", color="black")
        if by is not None:
            ax.plot(by, y, "x", color="tab:blue", markersize=9)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel=f"difference in {report['metric']} (toward better), 95% paired-seed interval",
           title="differences (x: a claim's stated size)")
    _save(fig, path)


def pareto_figure(points: list[dict], front: list[dict], path: Path, xlabel: str, metric: str, title: str,
                  what: str = "every evaluation") -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter([p["compute"] for p in points], [p["value"] for p in points], s=12, color="tab:gray", alpha=0.6,
               label=what)
    ax.step([p["compute"] for p in front], [p["value"] for p in front], where="post", color="tab:red", marker="o",
            label="Pareto front")
    _log_x(ax, [p["compute"] for p in points])
    ax.set(xlabel=xlabel, ylabel=metric, title=title)
    ax.legend(fontsize=8)
    _save(fig, path)


def figures(report: dict[str, Any], folder: Path) -> dict[str, str]:
    """Draw every figure the report has data for; {name: path relative to the report folder}."""
    (folder / "figures").mkdir(parents=True, exist_ok=True)
    metric, out = report["metric"], {}
    training, inference = report["pareto"]["training"], report["pareto"]["inference"]
    points = [{"compute": x, "value": v} for r in report["curves"]["runs"] for x, v in zip(r["x"], r["mean"])]
    jobs = {
        "learning_curves": (bool(report["curves"]["runs"]), lambda p: learning_curves(report, p)),
        "importance": (bool(report["importance"]["values"]), lambda p: importance_figure(report, p)),
        "effects": (any(g.get("mean") is not None for e in report["effects"] for g in e["groups"]),
                    lambda p: effects_figure(report, p)),
        "differences": (any(c["n_pairs"] for c in report["comparisons"] + report["claims"]),
                        lambda p: differences_figure(report, p)),
        "pareto_training": (bool(points), lambda p: pareto_figure(
            points, training["front"], p, f"training compute ({training['axis']})", metric,
            f"{metric} against training compute")),
        "pareto_inference": (bool(inference["front"]), lambda p: pareto_figure(
            inference["points"], inference["front"], p, "inference FLOPs per question", metric,
            f"{metric} against inference compute",
            "a kept checkpoint at one Mmax x views x paths x members")),
    }
    for name, (wanted, draw) in jobs.items():
        if wanted:
            draw(folder / "figures" / f"{name}.png")
            out[name] = f"figures/{name}.png"
    return out


# ---------------------------------------------------------------------------
# report.md and the TensorBoard run


def _summary(report: dict[str, Any]) -> str:
    s, metric = report["summary"], report["metric"]
    lines = [f"Search `{report['experiment']}` ({report['space'].get('sampler', '?')} sampler, "
             f"{report['space'].get('seeds', 1)} seed(s) per trial, {metric} {report['mode']}imised): "
             + ", ".join(f"{n} {k}" for k, n in s["by_status"].items() if n) + f" of {s['trials']} trials."]
    best = s["best"]
    if best:
        where = "completed trials" if s["from_completed"] else "trials so far (none completed)"
        lines.append(f"\nBest setting among {where}, by the seeds' mean of the final {metric}: **{best['setting']}** "
                     f"(trials {', '.join(best['trials'])}, {best['n_seeds']} seed run(s)):\n\n"
                     f"**{metric} {fmt(best['mean'])} ± "
                     + (f"{fmt(best['seeds_std'])} (seeds' std) ± " if best["seeds_std"] is not None else "")
                     + (f"{fmt(best['eval_se'])} (evaluation's se)**" if report["metric"] in BINOMIAL
                        else "(no evaluation se: it is computed for exact accuracy and pass@k)**"))
    n = s["noise"]
    if n["dominates"] == "seeds":
        lines.append(f"\nThe seeds' spread dominates: median seeds' std {fmt(n['median_seeds_std'])} against a median "
                     f"evaluation se of {fmt(n['median_eval_se'])}; more seeds narrow a comparison more than more "
                     "test puzzles.")
    elif n["dominates"] == "evaluation":
        lines.append(f"\nThe evaluation's noise dominates: median evaluation se {fmt(n['median_eval_se'])} against a "
                     f"median seeds' std of {fmt(n['median_seeds_std'])}; more test puzzles narrow a comparison "
                     "more than more seeds.")
    elif n["median_eval_se"] is not None:
        lines.append(f"\nOne seed run per setting: the seeds' spread was not measured (median evaluation se "
                     f"{fmt(n['median_eval_se'])}).")
    rows = [[r["setting"], len(r["trials"]), r["n_seeds"], r["mean"], r["seeds_std"], r["eval_se"]]
            for r in s["settings"]]
    lines += ["", _table(["setting", "trials", "seed runs", f"mean {metric}", "seeds' std", "eval se"], rows)]
    return "\n".join(lines)


def _importance(report: dict[str, Any]) -> str:
    imp = report["importance"]
    if imp["values"]:
        lines = [f"Importance by Optuna's {imp['note']}.", "",
                 _table(["param", "importance"], [[k, v] for k, v in imp["values"].items()])]
    else:
        lines = [f"No importance: {imp['note']}."]
    lines += ["", f"({IMPORTANCE_CHOICE}.)"]
    lines += ["", f"Effects from the final values of the **{report['n_completed']} completed trials** (trials ASHA "
              "stopped ended at less compute and are left out): the mean final metric per value (continuous params "
              "in quantile bins) and a 95% interval from a two-level bootstrap (trials, then seeds within each, "
              "plus each run's evaluation noise)."]
    for e in report["effects"]:
        rows = [[g["value"], g["trials"], g["seeds"], g.get("mean"), _interval(g) if "mean" in g else "–"]
                for g in e["groups"]]
        lines += ["", f"**{e['param']}** ({e['kind']})", "", _table(["value", "trials", "seed runs", "mean",
                                                                     "95% interval"], rows)]
    return "\n".join(lines)


def _comparisons(report: dict[str, Any]) -> str:
    rows = [[c["param"], str(c["first"]), str(c["second"]), c["n_pairs"], c["n_cells"], fmt(c["diff"], sign=True),
             _interval(c), c["verdict"]] for c in report["comparisons"] if c["n_pairs"]]
    unmatched = sum(not c["n_pairs"] for c in report["comparisons"])
    text = ("Each pair of values of a categorical or int param, on trials equal in every other param: the "
            "difference is second minus first in the metric's good direction (positive: second better), with a "
            f"paired-seed bootstrap 95% interval ({report['bootstrap']['draws']} draws over (matched trial, seed) "
            "pairs, each adding both runs' evaluation noise). better / worse: the interval excludes 0.\n\n")
    text += _table(["param", "first", "second", "pairs", "cells", "difference", "95% interval", "verdict"], rows) \
        if rows else "No pair of values was run on matched trials."
    if unmatched:
        text += f"\n\n{unmatched} pair(s) of values had no matched trials (a sampler that varies every param at once)."
    return text


def _claims(report: dict[str, Any]) -> str:
    if not report["claims"]:
        return "The space states no claims."
    rows = [[_setting(c["better"]), _setting(c["than"]), c["note"] or "–", c["n_pairs"], fmt(c["diff"], sign=True),
             _interval(c), c["verdict"], c["by"], {True: "yes", False: "no", None: "–"}[c["by_inside"]]]
            for c in report["claims"]]
    return ("Each claim of the space as a matched comparison (better minus than, toward better): agrees / "
            "contradicts when the interval lies on one side of 0.\n\n"
            + _table(["better", "than", "note", "pairs", "difference", "95% interval", "verdict", "claimed by",
                      "by inside"], rows))


def frontier_table(front: list[dict[str, Any]], metric: str) -> str:
    """An inference-compute front as a markdown table: FLOPs, the metric and its se, the
    setting (Mmax, views, paths, ensemble members; "trained" where the checkpoint's own) and
    the checkpoint (`trial@step`), plus its search setting where the point has one."""
    setting = any(p.get("setting") for p in front)
    rows = [[p["compute"], p["value"], p.get("se"), p["mmax"], p["views"] or "trained", p["paths"],
             p["members"] or "trained", p["checkpoint"]] + ([p.get("setting") or "–"] if setting else []) for p in front]
    return _table(["inference FLOPs", metric, "se", "Mmax", "views", "paths", "members", "checkpoint"]
                  + (["setting"] if setting else []), rows)


def _pareto(report: dict[str, Any]) -> str:
    t, i = report["pareto"]["training"], report["pareto"]["inference"]
    head = ["compute", report["metric"], "trial", "setting", "step"]
    text = (f"Training: the evaluations no other evaluation beats at less or equal compute ({t['axis']}; "
            f"{t['points']} evaluations).\n\n"
            + _table(head, [[p["compute"], p["value"], p["trial_id"], p["setting"], p["step"]] for p in t["front"]]))
    if i["front"]:
        text += ("\n\nInference: the kept checkpoints against inference FLOPs per question, at Mmax "
                 + ", ".join(map(str, i["mmax"])) + (f", views {', '.join(map(str, i['views']))}" if i["views"] else "")
                 + (f", paths {', '.join(map(str, i['paths']))}" if len(i["paths"]) > 1 else "")
                 + (f", ensembles of {', '.join(map(str, i['members']))}" if i["members"] else "")
                 + " (trained: the checkpoint's own views and whole ensemble).\n\n"
                 + frontier_table(i["front"], report["metric"]))
    else:
        text += f"\n\nInference: no front ({i['note']})."
    return text


def sections(report: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    """(title, markdown text, figure names) per section of report.md."""
    trials = _table(["trial", "status", "setting", f"last {report['metric']}"],
                    [[t["trial_id"], t["status"], t["setting"], t["final"]] for t in report["trials"]])
    notes = "\n".join(f"- {n}" for n in report["notes"]) or "None."
    return [
        ("Summary", _summary(report), []),
        ("Importance and effects", _importance(report), ["importance", "effects"]),
        ("Comparisons", _comparisons(report), ["differences"]),
        ("Learning curves", f"The metric against training compute ({report['curves']['axis']}) per trial.",
         ["learning_curves"]),
        ("Pareto fronts", _pareto(report), ["pareto_training", "pareto_inference"]),
        ("Claims", _claims(report), []),
        ("Trials", trials, []),
        ("Notes", notes, []),
    ]


def tensorboard(folder: Path, figs: dict[str, str], parts: list[tuple[str, str, list[str]]]) -> None:
    """The figures as images and the sections as text, in a TensorBoard run at `folder`."""
    from PIL import Image
    from torch.utils.tensorboard import SummaryWriter  # here: only a report needs TensorBoard's writer

    with SummaryWriter(str(folder)) as writer:
        for name, rel in figs.items():
            image = np.asarray(Image.open(folder / rel).convert("RGB"))
            writer.add_image(f"report/{name}", image, 0, dataformats="HWC")
        for i, (title, text, _figs) in enumerate(parts, 1):
            writer.add_text(f"report/{i}_{title.lower().replace(' ', '_')}", text, 0)


def render(report: dict[str, Any], folder: str | Path) -> dict[str, str]:
    """Figures, report.md and the TensorBoard run into `folder`; returns the figures drawn."""
    folder = Path(folder)
    figs = figures(report, folder)
    parts = sections(report)
    md = [f"# Search report: {report['experiment']}", "",
          f"Storage `{report['root']}`; metric {report['metric']} ({report['mode']}). Every number is in report.json."]
    for i, (title, text, names) in enumerate(parts, 1):
        md += ["", f"## {i}. {title}", "", text]
        md += [f"\n![{n}]({figs[n]})" for n in names if n in figs]
    (folder / "report.md").write_text("\n".join(md) + "\n")
    tensorboard(folder, figs, parts)
    return figs
