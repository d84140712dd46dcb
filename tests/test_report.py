"""hrm.report on small synthetic searches the tests write themselves (tmp_path): space.json,
trial folders with each seed's history, the Optuna journal and an artifact index, with
values drawn from a fixed numpy generator, so every verdict below is known in advance."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from hrm.compute import pareto_front
from hrm.report import ReportError, Trial, compare, paired_bootstrap, write_report
from hrm.report_figures import fmt

N_QUESTIONS = 400


def _over_seeds(rows: list[dict]) -> dict:
    """The trial's own row as hrm.seeds.over_seeds writes it: means, _std, _se of the mean."""
    out = {k: rows[0][k] for k in ("step", "samples", "flops", "eval_round", "eval_questions", "inference_flops")}
    for key in ("pass@2", "exact_accuracy"):
        values = np.array([r[key] for r in rows])
        out[key], out[f"{key}_std"] = float(values.mean()), float(values.std(ddof=1)) if len(rows) > 1 else 0.0
        out[f"{key}_se"] = math.sqrt(sum(r[f"{key}_se"] ** 2 for r in rows)) / len(rows)
    return {"kind": "eval", **out, "seeds": float(len(rows))}


def _history(rng, p_final: float, cost: float, rounds: int, seed_fx: float) -> list[dict]:
    rows = []
    for r in range(1, rounds + 1):
        p = float(np.clip(p_final * (0.4 + 0.6 * r / rounds) + seed_fx, 0.01, 0.99))
        v = rng.binomial(N_QUESTIONS, p) / N_QUESTIONS
        se = math.sqrt(v * (1 - v) / N_QUESTIONS)
        rows.append({"kind": "eval", "step": 10 * r, "samples": 160 * r, "flops": cost * r, "eval_round": r,
                     "eval_questions": N_QUESTIONS, "inference_flops": cost / 100, "pass@2": v, "pass@2_se": se,
                     "exact_accuracy": v, "exact_accuracy_se": se})
    return rows


def write_search(root: Path, name: str, settings: list[dict], truth, *, params: list[dict], seeds: int = 3,
                 rounds: int = 3, mode: str = "max", claims: list[dict] = (), extra: list[tuple[dict, str]] = (),
                 seed_sd: float = 0.08, study: bool = True, rng_seed: int = 0) -> Path:
    """A search folder: one completed trial per setting, plus `extra` (setting, "stopped"|"error")."""
    rng = np.random.default_rng(rng_seed)
    folder = root / name
    folder.mkdir(parents=True)
    space = {"name": name, "source": "test", "metric": "pass@2", "mode": mode, "sampler": "grid", "seeds": seeds,
             "scheduler": {"type": "asha", "time_attr": "eval_round", "grace_period": 1, "max_t": rounds,
                           "reduction_factor": 2, "rung_rule": "mean", "rung_z": 1.0, "tie_break": None},
             "params": params, "claims": list(claims)}
    (folder / "space.json").write_text(json.dumps(space))
    shared = rng.normal(0, seed_sd, size=seeds)  # seed s: the same data order and init in every trial
    trials = [(s, "completed") for s in settings] + list(extra)
    finals = []
    for i, (setting, status) in enumerate(trials):
        t = folder / f"run_trial_{i:04d}_{i}"
        (t / "hrm").mkdir(parents=True)
        (t / "params.json").write_text(json.dumps(setting))
        (t / "result.json").write_text(json.dumps({"trial_id": f"t{i:04d}", "done": True}) + "\n")
        (t / "hrm" / "config.yaml").write_text("train:\n  seed: 0\n")
        cost = 1e11 * (1 + list(setting.values())[0] if isinstance(list(setting.values())[0], int) else 1)
        n_rounds = 1 if status == "stopped" else rounds
        per_seed = [_history(rng, truth(setting), cost, n_rounds, shared[s] + rng.normal(0, 0.01))
                    for s in range(seeds)]
        for s, rows in enumerate(per_seed if seeds > 1 else []):  # one seed: the trial's own rows alone
            (t / "hrm" / f"seed_{s}").mkdir()
            (t / "hrm" / f"seed_{s}" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        means = [_over_seeds(list(rs)) for rs in zip(*per_seed)] if seeds > 1 else per_seed[0]
        (t / "hrm" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in means))
        if status == "error":
            (t / "error.txt").write_text("RuntimeError: boom\n")
        finals.append((setting, status, means[-1]["pass@2"]))
    if study:
        _study(root, name, params, mode, finals)
    return folder


def _study(root: Path, name: str, params: list[dict], mode: str, finals: list) -> None:
    import optuna

    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = {p["name"]: optuna.distributions.CategoricalDistribution(p["values"]) if p["kind"] == "categorical"
             else optuna.distributions.IntDistribution(p["low"], p["high"]) if p["kind"] == "int"
             else optuna.distributions.FloatDistribution(p["low"], p["high"], log=p["kind"] == "logfloat")
             for p in params}
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(root / name / "optuna.journal")))
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize" if mode == "max" else "minimize")
    states = {"completed": optuna.trial.TrialState.COMPLETE, "stopped": optuna.trial.TrialState.PRUNED,
              "error": optuna.trial.TrialState.FAIL}
    for setting, status, value in finals:
        study.add_trial(optuna.trial.create_trial(params=setting, distributions=dists, state=states[status],
                                                  value=value if status == "completed" else None))


HALT = {"name": "model.halt_max_steps", "short": "halt_max_steps", "kind": "int", "values": [1, 2, 3],
        "low": 1, "high": 3}
NULL = {"name": "model.null", "short": "null", "kind": "categorical", "values": ["a", "b"], "low": None, "high": None}
TRUTH = {1: 0.3, 2: 0.6, 3: 0.35}  # halt 1 -> 2: much better; 2 -> 3: much worse; null: nothing


def grid_settings(params: list[dict]) -> list[dict]:
    return [dict(zip([p["name"] for p in params], vs)) for vs in itertools.product(*(p["values"] for p in params))]


CLAIMS = [
    {"better": {"model.halt_max_steps": 2}, "than": {"model.halt_max_steps": 1}, "by": 0.3, "note": "agrees, by 0.3"},
    {"better": {"model.halt_max_steps": 2}, "than": {"model.halt_max_steps": 1}, "by": 0.9, "note": "too large a by"},
    {"better": {"model.halt_max_steps": 3}, "than": {"model.halt_max_steps": 2}, "by": None, "note": "contradicted"},
    {"better": {"model.null": "b"}, "than": {"model.null": "a"}, "by": None, "note": "nothing to see"},
]


def _add_index(root: Path, name: str, tmp: Path) -> None:
    """Two kept checkpoints, evaluated again at Mmax 1, 2, 4 (more segments: more FLOPs, a better metric)."""
    from hrm.artifacts import ArtifactStore

    store = ArtifactStore(str(root / "artifacts"))
    ids = {}
    for trial, base in (("t0001", 0.5), ("t0004", 0.45)):
        ckpt = tmp / f"ckpt_{trial}"
        ckpt.mkdir()
        (ckpt / "checkpoint.pt").write_bytes(b"not a real checkpoint")
        aid = store.add(experiment=name, trial_id=trial, hparams={}, checkpoint_dir=str(ckpt), step=30, eval_round=3,
                        metrics={"pass@2": base})
        ids[aid] = {**{f"pass@2@mmax{m}": base + 0.05 * k for k, m in enumerate((1, 2, 4))},
                    **{f"inference_flops@mmax{m}": 1e9 * m * (1 + (trial == "t0004")) for m in (1, 2, 4)},
                    # and with 4 latent paths at one view (4x the FLOPs, better)
                    "pass@2@mmax4@views1@paths4@members1": base + 0.2, "pass@2_se@mmax4@views1@paths4@members1": 0.02,
                    "inference_flops@mmax4@views1@paths4@members1": 16e9 * (1 + (trial == "t0004"))}
    store.annotate(name, ids)


@pytest.fixture(scope="module")
def grid_report(tmp_path_factory):
    """A 3x2 grid (halt_max_steps matters, null changes nothing) with 3 seeds, a stopped and a
    failed extra trial, claims and an artifact index: its report, written once."""
    root = tmp_path_factory.mktemp("storage")
    write_search(root, "grid", grid_settings([HALT, NULL]), lambda s: TRUTH[s["model.halt_max_steps"]],
                 params=[HALT, NULL], claims=CLAIMS,
                 extra=[({"model.halt_max_steps": 1, "model.null": "a"}, "stopped"),
                        ({"model.halt_max_steps": 2, "model.null": "b"}, "error")])
    _add_index(root, "grid", tmp_path_factory.mktemp("ckpts"))
    logs: list[str] = []
    report = write_report(str(root), "grid", log=logs.append)
    return root, report, logs


def _comparison(report: dict, short: str, first, second) -> dict:
    [row] = [c for c in report["comparisons"] if c["short"] == short and c["first"] == first and c["second"] == second]
    return row


def test_large_differences_are_better_or_worse_and_a_null_param_is_not_separable(grid_report):
    _root, report, _logs = grid_report
    up = _comparison(report, "halt_max_steps", 1, 2)
    assert up["verdict"] == "better" and up["lo"] > 0.15 and up["n_pairs"] == 2 * 3 and up["n_cells"] == 2
    down = _comparison(report, "halt_max_steps", 2, 3)
    assert down["verdict"] == "worse" and down["hi"] < -0.15
    same = _comparison(report, "null", "a", "b")
    assert same["verdict"] == "not separable" and same["lo"] < 0 < same["hi"] and same["n_pairs"] == 3 * 3


def test_summary_counts_statuses_and_names_the_best_setting_with_both_noises(grid_report):
    root, report, logs = grid_report
    s = report["summary"]
    assert s["by_status"] == {"completed": 6, "stopped": 1, "error": 1, "no eval": 0}
    assert report["n_completed"] == 6 and s["from_completed"]
    best = s["best"]
    assert best["params"]["model.halt_max_steps"] == 2 and best["n_seeds"] == 3 and len(s["settings"]) == 6
    assert best["seeds_std"] > 0 and best["eval_se"] > 0
    # shared seed effects of sd 0.08 against an evaluation se of ~0.025 at 400 questions
    assert s["noise"]["dominates"] == "seeds"
    md = (root / "grid" / "report" / "report.md").read_text()
    assert (f"pass@2 {fmt(best['mean'])} ± {fmt(best['seeds_std'])} (seeds' std) ± {fmt(best['eval_se'])} "
            "(evaluation's se)") in md
    assert "The seeds' spread dominates" in md
    assert any("report.md" in line for line in logs)


def test_effects_use_completed_trials_only(grid_report):
    _root, report, _logs = grid_report
    [halt] = [e for e in report["effects"] if e["short"] == "halt_max_steps"]
    groups = {g["value"]: g for g in halt["groups"]}
    assert [g["trials"] for g in groups.values()] == [2, 2, 2]  # the stopped halt=1 and failed halt=2 left out
    assert groups["2"]["lo"] > groups["1"]["hi"] and groups["2"]["lo"] > groups["3"]["hi"]
    assert groups["1"]["lo"] < TRUTH[1] < groups["1"]["hi"] + 0.1  # near the truth (shared seed effects shift all)


def test_claims_agree_contradict_or_are_not_separable(grid_report):
    _root, report, _logs = grid_report
    verdicts = [(c["note"], c["verdict"], c["by_inside"]) for c in report["claims"]]
    assert verdicts == [("agrees, by 0.3", "agrees", True), ("too large a by", "agrees", False),
                        ("contradicted", "contradicts", None), ("nothing to see", "not separable", None)]


def test_figures_exist_and_open_and_report_md_holds_report_json_numbers(grid_report):
    from PIL import Image

    root, report, _logs = grid_report
    out = root / "grid" / "report"
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["comparisons"] == report["comparisons"] and on_disk["figures"] == report["figures"]
    assert set(report["figures"]) == {"learning_curves", "importance", "effects", "differences", "pareto_training",
                                      "pareto_inference"}
    for rel in report["figures"].values():
        with Image.open(out / rel) as image:
            image.verify()
    md = (out / "report.md").read_text()
    for rel in report["figures"].values():
        assert f"]({rel})" in md
    numbers = [v for c in report["comparisons"] + report["claims"] for v in (c["diff"], c["lo"], c["hi"])]
    numbers += list(report["importance"]["values"].values())
    numbers += [g[k] for e in report["effects"] for g in e["groups"] for k in ("mean", "lo", "hi")]
    numbers += [p["value"] for p in report["pareto"]["training"]["front"] + report["pareto"]["inference"]["front"]]
    missing = [v for v in numbers if fmt(v) not in md]
    assert not missing and len(numbers) > 30


def test_pareto_fronts(grid_report):
    _root, report, _logs = grid_report
    front = report["pareto"]["training"]["front"]
    xs, ys = [p["compute"] for p in front], [p["value"] for p in front]
    assert xs == sorted(xs) and ys == sorted(ys) and len(front) >= 2
    assert report["pareto"]["training"]["points"] == 7 * 3 + 1  # every eval of every trial, the stopped one's too
    inference = report["pareto"]["inference"]
    assert inference["mmax"] == [1, 2, 4] and inference["paths"] == [1, 4] and len(inference["points"]) == 8
    assert {p["trial_id"] for p in inference["front"]} == {"t0001"}  # t0004 pays twice the FLOPs for less
    top = inference["front"][-1]  # the 4 paths at Mmax 4: the most compute, the best
    assert (top["mmax"], top["views"], top["paths"], top["members"], top["se"]) == (4, 1, 4, 1, 0.02)
    assert [p["paths"] for p in inference["front"]] == [1, 1, 1, 4] and not top["plain"]


def test_tensorboard_run_holds_the_figures_and_the_tables(grid_report):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root, report, _logs = grid_report
    acc = EventAccumulator(str(root / "grid" / "report"), size_guidance={"images": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {f"report/{name}" for name in report["figures"]} <= set(tags["images"])
    texts = {t: acc.Tensors(t)[0].tensor_proto.string_val[0].decode() for t in tags["tensors"]}
    comparisons = next(v for t, v in texts.items() if t.startswith("report/3_comparisons"))
    assert "| model.halt_max_steps | 1 | 2 | 6 | 2 |" in comparisons and "better" in comparisons
    summary = next(v for t, v in texts.items() if t.startswith("report/1_summary"))
    assert fmt(report["summary"]["best"]["mean"]) in summary


def test_importance_gives_a_null_param_close_to_none(tmp_path):
    halt = {**HALT, "values": [1, 2, 3, 4], "high": 4}
    null = {**NULL, "values": ["a", "b", "c", "d"]}
    write_search(tmp_path, "imp", grid_settings([halt, null]), lambda s: 0.15 * s["model.halt_max_steps"],
                 params=[halt, null], seeds=1)
    from hrm.report import importance, load_experiment

    imp = importance(load_experiment(str(tmp_path), "imp"))
    assert imp["trials"] == 16
    assert imp["values"]["model.halt_max_steps"] > 0.9 and imp["values"]["model.null"] < 0.05


def test_a_rerun_reproduces_the_numbers_and_a_missing_study_is_said(tmp_path):
    settings = grid_settings([HALT, NULL])
    for name in ("a", "b"):
        write_search(tmp_path, name, settings, lambda s: TRUTH[s["model.halt_max_steps"]], params=[HALT, NULL],
                     study=name == "a", rng_seed=3)
    ra, rb = (write_report(str(tmp_path), name, log=lambda _m: None) for name in ("a", "b"))
    assert ra["comparisons"] == rb["comparisons"] and ra["effects"] == rb["effects"]
    assert rb["importance"]["values"] is None and "no Optuna study" in rb["importance"]["note"]
    assert "No importance: no Optuna study" in (tmp_path / "b" / "report" / "report.md").read_text()
    assert "importance" not in rb["figures"]


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_bad_inputs_raise_report_error_and_write_nothing(tmp_path):
    write_search(tmp_path, "ok", grid_settings([HALT]), lambda s: 0.5, params=[HALT], seeds=1, study=False)
    (tmp_path / "not_a_search" / "trial").mkdir(parents=True)
    before = _tree(tmp_path)
    cases = [(str(tmp_path / "nowhere"), "ok", "no such folder"), (str(tmp_path), "missing", "searches here: ok"),
             (str(tmp_path), "not_a_search", "space.json: missing"), (str(tmp_path), "../ok", "one folder name")]
    for root, name, says in cases:
        with pytest.raises(ReportError, match=says) as info:
            write_report(root, name, out=str(tmp_path / "out"), log=lambda _m: None)
        assert "\n" not in str(info.value)
    assert _tree(tmp_path) == before


def test_paired_bootstrap_keeps_the_evaluation_noise_with_two_seeds():
    mean, lo, hi = paired_bootstrap(np.array([0.1, 0.1]), np.array([0.03, 0.03]))
    assert mean == pytest.approx(0.1) and hi - lo > 0.05  # 2 x 1.96 x 0.03 / sqrt(2) ~ 0.083
    assert paired_bootstrap(np.array([0.1, 0.1]), np.array([0.03, 0.03])) == (mean, lo, hi)
    assert paired_bootstrap(np.array([0.1, 0.1]), np.zeros(2)) == pytest.approx((0.1, 0.1, 0.1))


def test_compare_in_mode_min_counts_lower_as_better():
    trials = [Trial(f"t{i}", "", {"x": x}, "completed", [], {s: (v + 0.01 * s, 0.01) for s in range(4)})
              for i, (x, v) in enumerate([(1, 0.2), (2, 0.5)])]
    assert compare(trials, ["x"], {"x": 2}, {"x": 1}, "min")["verdict"] == "worse"
    assert compare(trials, ["x"], {"x": 2}, {"x": 1}, "max")["verdict"] == "better"
    assert compare(trials, ["x"], {"x": 3}, {"x": 1}, "max")["verdict"] == "no matched trials"


def test_pareto_front_keeps_points_no_cheaper_point_beats():
    points = [{"compute": c, "value": v} for c, v in [(1, 0.2), (2, 0.1), (2, 0.3), (3, 0.3), (4, 0.5), (5, 0.4)]]
    assert [(p["compute"], p["value"]) for p in pareto_front(points, "max")] == [(1, 0.2), (2, 0.3), (4, 0.5)]
    assert [(p["compute"], p["value"]) for p in pareto_front(points, "min")] == [(1, 0.2), (2, 0.1)]


def test_continuous_and_many_valued_params_are_binned_not_compared(tmp_path):
    rng = np.random.default_rng(7)
    lr = {"name": "optim.lr", "short": "lr", "kind": "logfloat", "values": None, "low": 1e-4, "high": 1e-2}
    width = {"name": "model.width", "short": "width", "kind": "int", "values": list(range(1, 21)), "low": 1, "high": 20}
    settings = [{"optim.lr": float(10 ** rng.uniform(-4, -2)), "model.width": int(rng.integers(1, 21))} for _ in range(12)]
    write_search(tmp_path, "tpe", settings, lambda s: 0.3 + 50 * s["optim.lr"], params=[width, lr], seeds=1)
    report = write_report(str(tmp_path), "tpe", log=lambda _m: None)
    assert report["comparisons"] == []
    for e in report["effects"]:
        assert 2 <= len(e["groups"]) <= 4 and sum(g["trials"] for g in e["groups"]) == 12
        assert all(g["value"].startswith("[") for g in e["groups"])
    [lr_bins] = [e["groups"] for e in report["effects"] if e["short"] == "lr"]
    assert lr_bins[-1]["lo"] > lr_bins[0]["hi"]  # the largest learning rates do best here
    assert report["summary"]["noise"]["dominates"] is None and report["summary"]["best"]["seeds_std"] is None
    assert all(list(t["seeds"]) == ["0"] for t in report["trials"])  # one seed: train.seed of config.yaml
    assert "the seeds' spread was not measured" in (tmp_path / "tpe" / "report" / "report.md").read_text()


@pytest.mark.slow
def test_a_report_on_object_storage_reads_and_writes_the_bucket(grid_report, s3):
    """The fixture search copied to an S3-compatible server (moto): the report reads it from
    the bucket, writes report.md/report.json/figures back under the experiment, and gives the
    numbers the local report gave."""
    import pyarrow.fs as pafs

    from hrm.storage import open_uri, upload_dir

    root, local, _ = grid_report
    bucket = s3.bucket("reports")
    upload_dir(root / "grid", f"{bucket}/st/grid")
    upload_dir(root / "artifacts", f"{bucket}/st/artifacts")
    remote = write_report(f"{bucket}/st", "grid", log=lambda _m: None)
    fs, base = open_uri(f"{bucket}/st/grid/report")
    names = {i.path.removeprefix(base + "/") for i in fs.get_file_info(pafs.FileSelector(base, recursive=True))}
    with fs.open_input_stream(f"{base}/report.json") as f:
        stored = json.loads(f.read())
    assert {"report.md", "report.json", *local["figures"].values()} <= names
    assert stored["comparisons"] == local["comparisons"] == remote["comparisons"]
    assert stored["claims"] == local["claims"]
