"""Search spaces: shipped files load, malformed files fail with one precise line,
define-by-run sampling respects types, bounds, log scale, choices and conditions,
and sampled points become validated configs."""

from __future__ import annotations

import functools
import pickle

import pytest

optuna = pytest.importorskip("optuna")
optuna.logging.set_verbosity(optuna.logging.WARNING)

from hrm.config import ConfigError, load_config, to_dict, with_values  # noqa: E402
from hrm.search import (SPACES_DIR, SpaceError, define_by_run, hparams, run_length, shipped_spaces, total_rounds,  # noqa: E402
                        trial_config)
from hrm.search import load_space  # noqa: E402

SPACE = """
name: t
base: quickstart
overrides:
  train.steps: 400
metric: pass@2
scheduler: {max_t: 4}
params:
  model.H_cycles: {type: int, low: 1, high: 3}
  model.halt_max_steps: {type: categorical, choices: [2, 4, 8]}
  model.eval_halt_max_steps: {type: categorical, choices: [null, 16], when: {model.halt_max_steps: [8]}}
  model.L_cycles: {type: int, low: 1, high: 3, when: {model.arch: [hrm]}}
  model.halt_exploration_prob: {type: float, low: 0.0, high: 0.3, step: 0.05}
  optim.lr: {type: logfloat, low: 3e-4, high: 3.0e-3}
  optim.betas: {type: categorical, choices: [[0.9, 0.95], [0.9, 0.999]]}
  train.global_batch_size: {type: int, low: 32, high: 64, step: 16}
"""


def write(tmp_path, text: str, name: str = "space.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture
def space(tmp_path):
    return load_space(str(write(tmp_path, SPACE)))


def tpe_points(space, n: int, seed: int = 0) -> list[dict]:
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed), direction="maximize")
    points = []
    for i in range(n):
        trial = study.ask()
        assert define_by_run(space, trial) is None
        points.append(dict(trial.params))
        study.tell(trial, float(i % 3))
    return points


# ---------------------------------------------------------------------------
# shipped spaces


def test_shipped_spaces_load_and_sample():
    names = {p.stem for p in shipped_spaces()}
    assert {"quickstart", "sudoku_extreme", "maze_hard", "arc_agi_1", "arc_agi_2"} <= names
    for path in shipped_spaces():
        space = load_space(path)
        assert space.name == path.stem
        # ASHA's max_t is the trial's whole budget in its time_attr (eval rounds or FLOPs)
        assert run_length(space.base_config)[space.scheduler.time_attr] >= space.scheduler.max_t
        if space.scheduler.time_attr == "flops":
            assert space.base_config.train.unit == "flops"
        for point in tpe_points(space, 2, seed=1):
            cfg = trial_config(space, point)
            for key, value in hparams(space, point).items():
                section, field = key.split(".")
                got = getattr(getattr(cfg, section), field)
                assert got == value or str(list(got)) == value, (path.name, key)


def test_ablation_spaces_are_grids_that_fit_the_cpu_budget():
    """Every ready experiment loads, is a grid whose size is its trial count, and trains at most
    20 runs of the CPU task (budget.seeds each); the mixed-family space samples per family."""
    folder = SPACES_DIR / "ablations"
    spaces = [load_space(str(p)) for p in sorted(folder.glob("*.yaml")) if p.name != "cpu_base.yaml"]
    assert {s.name for s in spaces} >= {"ablation_mmax", "ablation_cycles", "ablation_augmentation",
                                        "ablation_hrm_vs_transformer", "ablation_trm_recursion", "ablation_ema",
                                        "ablation_gradient"}
    for s in spaces:
        assert s.sampler == "grid" and s.budget.num_samples == s.grid_size and s.scheduler.type == "fifo"
        # at equal compute: every setting of a grid trains the same FLOP budget
        assert s.grid_size * s.budget.seeds <= 20 and s.base_config.train.flops == 1.2e13
    readme = (folder / "README.md").read_text()
    assert all(f"`{s.source.split('/')[-1]}`" in readme for s in spaces)
    families = load_space("families")
    arch = {p.name: p for p in families.params}
    assert set(arch["model.arch"].choices) == {"hrm", "trm", "urm", "transformer"}
    assert dict(arch["model.H_cycles"].when)["model.arch"] == ("hrm", "trm", "urm")
    assert "urm" not in dict(arch["model.mixer"].when)["model.arch"]  # URM mixes by attention only


def test_quickstart_space_is_a_short_cpu_search():
    space = load_space("quickstart")  # shipped name works too
    # at most 5 trials of what the 2/2-cycle model trains in 300 steps
    per_step = run_length(with_values(to_dict(space.base_config), [("train.flops", None), ("train.steps", 1)]))
    assert space.base_config.train.flops * space.budget.num_samples <= 1500 * per_step["flops"]
    b = space.budget
    assert b.gpus_per_worker == 0 and b.in_trial  # each trial trains in its own process
    assert b.max_concurrent_trials * (b.num_workers * b.cpus_per_worker + b.trainable_cpus) <= 2
    assert {p.name for p in space.params} >= {"model.H_cycles", "model.L_cycles", "optim.lr", "data.num_aug"}


# ---------------------------------------------------------------------------
# malformed spaces

OK = "base: quickstart\nparams:\n  model.H_cycles: {type: int, low: 1, high: 3}\n"
P = "base: quickstart\nparams:\n  "


@pytest.mark.parametrize(
    "text, pieces",
    [
        ("metrc: pass@2\n" + OK, ["unknown key 'metrc'", "did you mean 'metric'"]),
        ("budget: {num_sample: 3}\n" + OK, ["unknown key 'budget.num_sample'", "did you mean 'num_samples'"]),
        ("scheduler: {grace: 1}\n" + OK, ["unknown key 'scheduler.grace'", "grace_period"]),
        (P + "model.H_cycles: {type: int, low: 1, hgh: 3}", ["'params.model.H_cycles.hgh'", "did you mean 'high'"]),
        (P + "model.H_cycles: {type: integer, low: 1, high: 3}", ["params.model.H_cycles.type", "int, float"]),
        ("params:\n  model.H_cycles: {type: int, low: 1, high: 3}", ["base: missing"]),
        ("base: quickstart\n", ["params: missing"]),
        ("base: nosuch\n" + OK[16:], ["base: no shipped config 'nosuch'"]),
        ("base: other/base.yaml\n" + OK[16:], ["base: config file not found", "other/base.yaml"]),
        (P + "model.hiden_size: {type: categorical, choices: [64]}",
         ["params.model.hiden_size: ", "unknown key 'model.hiden_size'", "did you mean 'hidden_size'"]),
        (P + "model.hidden_size: {type: categorical, choices: [128, 130]}",
         ["params.model.hidden_size", "divisible", "(with choice 130)"]),
        (P + "model.H_cycles: {type: float, low: 1, high: 3}", ["params.model.H_cycles", "must be an integer"]),
        (P + "model.H_cycles: {type: int, low: 3, high: 3}", ["params.model.H_cycles", "low (3) must be < high (3)"]),
        (P + "optim.lr: {type: logfloat, low: 0, high: 1e-3}", ["params.optim.lr.low", "low > 0"]),
        (P + "model.H_cycles: {type: int, low: 1.5, high: 3}", ["params.model.H_cycles.low", "must be an integer"]),
        (P + "model.H_cycles: {type: int, low: 1, high: 4, step: 2}", ["params.model.H_cycles.step", "multiple"]),
        (P + "model.H_cycles: {type: categorical, choices: []}", ["params.model.H_cycles.choices", "non-empty"]),
        (P + "optim.lr: {type: categorical, choices: [1e-3, 0.001]}", ["params.optim.lr.choices", "duplicate"]),
        (P + "model.H_cycles: {type: categorical, choices: [{a: 1}]}", ["params.model.H_cycles.choices", "scalars"]),
        (P + "model.H_cycles: {type: int, low: 1, high: 3, when: {model.archh: [hrm]}}",
         ["params.model.H_cycles.when.model.archh", "neither an earlier param nor a config key", "'model.arch'"]),
        (P + "model.H_cycles: {type: int, low: 1, high: 3, when: {model.L_cycles: [2]}}\n"
         "  model.L_cycles: {type: int, low: 1, high: 3}",
         ["params.model.H_cycles.when.model.L_cycles", "later param"]),
        (P + "model.H_cycles: {type: int, low: 1, high: 3, when: {model.H_cycles: [2]}}", ["itself"]),
        (P + "model.H_cycles: {type: int, low: 1, high: 3, when: {model.L_cycles: [1]}}",
         ["never holds", "fixed at 2"]),
        (P + "model.H_cycles: {type: int, low: 1, high: 3}\n"
         "  model.L_cycles: {type: int, low: 1, high: 3, when: {model.H_cycles: [7]}}", ["when.model.H_cycles", "7"]),
        ("metric: accuracy\n" + OK, ["metric: must be a metric training reports", "pass@2"]),
        ("metric: pass@3\n" + OK, ["metric: must be a metric training reports", "got 'pass@3'"]),
        ("mode: maximize\n" + OK, ["mode: must be 'max' or 'min'"]),
        ("scheduler: {type: hyperband}\n" + OK, ["scheduler.type must be one of asha, fifo"]),
        ("scheduler: {time_attr: training_iteration}\n" + OK, ["scheduler.time_attr", "one of eval_round, step, samples, flops"]),
        ("scheduler: {grace_period: 5, max_t: 4}\n" + OK,
         ["scheduler.grace_period (5) must be <= scheduler.max_t (4)"]),
        ("scheduler: {reduction_factor: 1}\n" + OK, ["scheduler.reduction_factor must be >= 2"]),
        ("scheduler: {tie_break: token_acc}\n" + OK, ["scheduler.tie_break must be a metric", "'token_accuracy'"]),
        ("sampler: grid\n" + P + "optim.lr: {type: float, low: 0.1, high: 0.2}",
         ["params.optim.lr: a grid takes categorical and int params"]),
        ("sampler: grid\n" + OK, ["budget.num_samples must be the grid's size (3 combinations)", "got 8"]),
        ("sampler: random\n" + OK, ["sampler: must be one of tpe, grid"]),
        ("budget: {seeds: 0}\n" + OK, ["budget.seeds must be >= 1"]),
        ("overrides: {model.arch: trm}\n" + P + "model.H_layers: {type: int, low: 1, high: 2}",
         ["params.model.H_layers: model.H_layers does not apply to model.arch 'trm'", "remove it"]),
        ("overrides: {model.arch: transformer, model.H_cycles: 3}\n" + P + "optim.lr: {type: float, low: 0.1, high: 0.2}",
         ["overrides.model.H_cycles: model.H_cycles does not apply to model.arch 'transformer'"]),
        (P + "model.arch: {type: categorical, choices: [hrm, trm]}\n  model.H_layers: {type: int, low: 1, high: 2}",
         ["params.model.H_layers", "'trm'", "when: {model.arch: [hrm]}"]),
        ("scheduler: {tie_break: pass@2}\n" + OK, ["scheduler.tie_break must differ from metric (pass@2)"]),
        ("budget: {num_samples: 0}\n" + OK, ["budget.num_samples must be >= 1"]),
        ("budget: {max_concurrent_trials: 0}\n" + OK, ["budget.max_concurrent_trials must be >= 1"]),
        ("budget: {num_workers: 0}\n" + OK, ["budget.num_workers must be >= 1"]),
        ("budget: {gpus_per_worker: -1}\n" + OK, ["budget.gpus_per_worker must be >= 0"]),
        ("budget: {num_samples: many}\n" + OK, ["'budget.num_samples' must be an integer", "'many'"]),
        ("scheduler: {max_t: 9}\n" + OK, ["scheduler.max_t", "9 is more eval rounds than a trial reports (8"]),
        ("scheduler: {max_t: 3}\n" + P + "train.steps: {type: int, low: 100, high: 800}",
         ["scheduler.max_t", "(1: one per train.eval_interval (100) of its train.steps (100)"]),
        ("scheduler: {time_attr: flops, max_t: 1.0e9}\n" + OK,
         ["scheduler.time_attr: flops needs the trials' budget in flops (train.flops, with train.steps: null)"]),
        ("scheduler: {time_attr: samples, grace_period: 100, max_t: 1.0e9}\noverrides: {train.steps: null, "
         "train.samples: 6400, train.eval_interval: 1600}\n" + OK,
         ["scheduler.max_t: 1e+09 is more samples than a trial trains (6400, train.samples 6400)"]),
        ("scheduler: {time_attr: step, max_t: 2.5}\n" + OK, ["scheduler.max_t counts steps: it must be a whole number"]),
        ("claim: [1]\n" + OK, ["claim[0]: must be a mapping like"]),
        ("claim: {better: {model.H_cycles: 2}}\n" + OK, ["claim.than: missing or not a mapping"]),
        ("claim: {better: {model.H_cycles: 9}, than: {model.H_cycles: 1}}\n" + OK,
         ["claim.better.model.H_cycles: 9 is not a value the param takes (1..3, step 1)"]),
        ("claim: {better: {model.H_cyclez: 2}, than: {model.H_cycles: 1}}\n" + OK,
         ["claim.better.model.H_cyclez: not a param of this space", "did you mean 'model.H_cycles'"]),
        ("claim: {better: {model.H_cycles: 2}, than: {model.H_cycles: 1}, by: -3}\n" + OK,
         ["claim.by: must be a number >= 0"]),
        ("claim: {better: {model.H_cycles: 2}, than: {model.H_cycles: 2}}\n" + OK,
         ["claim: better and than are the same setting"]),
        ("claim: {better: {model.H_cycles: 2}, than: {model.H_cycles: 1}, by: 0.1, source: x}\n" + OK,
         ["unknown key 'claim.source'"]),
        ("scheduler: {rung_rule: median}\n" + OK, ["scheduler.rung_rule must be one of mean, lcb, ucb", "'median'"]),
        ("overrides: {train.stepz: 3}\n" + OK, ["overrides.train.stepz", "did you mean 'steps'"]),
        ("overrides: {model.H_cycles: 3}\n" + OK, ["params.model.H_cycles", "also fixed in overrides"]),
        ("params: [1, 2\n", ["not valid YAML"]),
    ],
)
def test_bad_spaces_give_one_precise_line(tmp_path, text, pieces):
    path = write(tmp_path, text, "bad.yaml")
    with pytest.raises(SpaceError) as err:
        load_space(str(path))
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(str(path))
    for piece in pieces:
        assert piece in msg, msg


def test_space_errors_are_config_errors(tmp_path):
    assert issubclass(SpaceError, ConfigError)
    with pytest.raises(SpaceError, match="search-space file not found"):
        load_space(str(tmp_path / "missing.yaml"))


def test_space_overrides_edit_the_file_with_the_same_checks(tmp_path):
    path = write(tmp_path, SPACE)
    space = load_space(
        str(path),
        ["budget.num_samples=4", "scheduler.max_t=2", "overrides.train.steps=100", "overrides.train.eval_interval=50",
         "params.model.H_cycles.high=5", "params.optim.weight_decay={type: float, low: 0, high: 1}", "metric=pass@1"],
    )
    assert space.budget.num_samples == 4 and space.scheduler.max_t == 2 and space.metric == "pass@1"
    assert dict(space.overrides)["train.steps"] == 100 and space.base_config.train.steps == 100
    by_name = {p.name: p for p in space.params}
    assert by_name["model.H_cycles"].high == 5 and by_name["optim.weight_decay"].kind == "float"
    with pytest.raises(SpaceError, match="scheduler.max_t.*more eval rounds"):
        load_space(str(path), ["overrides.train.steps=100"])
    with pytest.raises(SpaceError, match="budget.num_samples must be >= 1"):
        load_space(str(path), ["budget.num_samples=0"])
    with pytest.raises(SpaceError, match="key.sub=value"):
        load_space(str(path), ["budget.num_samples"])


def test_relative_base_resolves_against_the_space_folder(tmp_path, monkeypatch):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "spaces").mkdir()
    write(tmp_path / "cfg", "model: {hidden_size: 64, num_heads: 4}\ntrain: {steps: 40, eval_interval: 10}\n", "b.yaml")
    path = write(tmp_path / "spaces", "base: ../cfg/b.yaml\nscheduler: {max_t: 4}\n" + OK[16:], "s.yaml")
    monkeypatch.chdir(tmp_path / "cfg")
    space = load_space(str(path))
    assert space.base == str((tmp_path / "cfg" / "b.yaml").resolve())
    assert space.base_config.model.hidden_size == 64 and total_rounds(space.base_config) == 4
    write(tmp_path / "cfg", "model: {hiden_size: 3}\ntrain: {steps: 40}\n", "broken.yaml")
    bad = write(tmp_path / "spaces", "base: ../cfg/broken.yaml\n" + OK[16:], "s2.yaml")
    with pytest.raises(SpaceError, match=r"s2\.yaml: base: .*broken\.yaml: unknown key 'model\.hiden_size'"):
        load_space(str(bad))


def test_rung_score_orders_by_metric_then_tie_break(tmp_path):
    from hrm.search import RUNG_SCORE, with_rung_score

    space = load_space(str(write(tmp_path, "scheduler: {tie_break: token_accuracy}\n" + OK, "s.yaml")))
    assert space.rung_metric == RUNG_SCORE and space.rung == {"metric": "pass@2", "tie_break": "token_accuracy",
                                                              "mode": "max", "rule": "mean", "z": 1.0}
    score = lambda p2, tok: with_rung_score(space.rung, {"pass@2": p2, "token_accuracy": tok})[RUNG_SCORE]
    assert score(0.0, 0.9) > score(0.0, 0.8)  # a tie on pass@2: tokens decide
    assert score(0.001, 0.0) > score(0.0, 1.0)  # one question in a thousand outweighs every token
    low = {**space.rung, "mode": "min"}
    assert with_rung_score(low, {"pass@2": 0.0, "token_accuracy": 1.0})[RUNG_SCORE] < 0
    assert with_rung_score(space.rung, {"pass@2": 0.5}) == {"pass@2": 0.5}  # a report without it: unchanged
    assert load_space(str(write(tmp_path, OK, "plain.yaml"))).rung_metric == "pass@2"


def test_total_rounds():
    assert total_rounds(load_config("quickstart")) == 8
    assert total_rounds(load_config("quickstart", ["train.steps=801"])) == 9
    assert total_rounds(load_config("sudoku_extreme")) is None  # epochs: needs the dataset


# ---------------------------------------------------------------------------
# sampling


def test_define_by_run_respects_types_bounds_log_choices(space):
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0), direction="maximize")
    seen = {"model.eval_halt_max_steps": 0, "no eval_halt": 0}
    for i in range(24):
        trial = study.ask()
        define_by_run(space, trial)
        p, dist = trial.params, trial.distributions  # by short name, as Ray's result dataframes show them
        assert type(p["H_cycles"]) is int and 1 <= p["H_cycles"] <= 3
        assert type(p["L_cycles"]) is int and 1 <= p["L_cycles"] <= 3  # model.arch is hrm
        assert p["global_batch_size"] in (32, 48, 64)
        assert p["halt_max_steps"] in (2, 4, 8)
        assert 0.0 <= p["halt_exploration_prob"] <= 0.3
        assert abs(p["halt_exploration_prob"] / 0.05 - round(p["halt_exploration_prob"] / 0.05)) < 1e-6
        assert 3e-4 <= p["lr"] <= 3e-3 and dist["lr"].log
        assert not dist["halt_exploration_prob"].log
        assert p["betas"] in ("[0.9, 0.95]", "[0.9, 0.999]")
        if p["halt_max_steps"] == 8:
            assert p["eval_halt_max_steps"] in (None, 16)
            seen["model.eval_halt_max_steps"] += 1
        else:
            assert "eval_halt_max_steps" not in p
            seen["no eval_halt"] += 1
        study.tell(trial, p["lr"] * 100)
    assert all(seen.values()), seen  # both branches of the condition happened


def test_define_by_run_with_fixed_trial_follows_conditions(space):
    base = {"H_cycles": 2, "L_cycles": 1, "halt_exploration_prob": 0.1, "lr": 1e-3, "betas": "[0.9, 0.999]",
            "global_batch_size": 48}  # short names: what define_by_run suggests
    off = optuna.trial.FixedTrial({**base, "halt_max_steps": 4})
    define_by_run(space, off)
    assert "eval_halt_max_steps" not in off.params
    on = optuna.trial.FixedTrial({**base, "halt_max_steps": 8, "eval_halt_max_steps": 16})
    define_by_run(space, on)
    assert on.params["eval_halt_max_steps"] == 16
    cfg = trial_config(space, on.params)
    assert (cfg.model.halt_max_steps, cfg.model.eval_halt_max_steps) == (8, 16)
    assert cfg.optim.betas == (0.9, 0.999) and cfg.train.global_batch_size == 48 and cfg.model.L_cycles == 1
    assert trial_config(space, {f"model.{k}" if "cycles" in k else k: v for k, v in on.params.items()}) == cfg


def test_define_by_run_pickles_with_the_space(space):
    fn = pickle.loads(pickle.dumps(functools.partial(define_by_run, space)))
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    trial = study.ask()
    assert fn(trial) is None
    assert set(trial.params) >= {"H_cycles", "lr"}
    assert trial_config(fn.args[0], trial.params) == trial_config(space, trial.params)


def test_same_seed_same_sequence(space):
    assert tpe_points(space, 14, seed=3) == tpe_points(space, 14, seed=3)
    assert tpe_points(space, 14, seed=3) != tpe_points(space, 14, seed=4)


# ---------------------------------------------------------------------------
# trial configs and hparams


def test_trial_config_applies_values_and_maps_labels_back(space):
    point = {"model.H_cycles": 3, "model.halt_max_steps": 2, "model.L_cycles": 1, "model.halt_exploration_prob": 0.25,
             "optim.lr": 2e-3, "optim.betas": "[0.9, 0.95]", "train.global_batch_size": 32}
    cfg = trial_config(space, point)
    assert (cfg.model.H_cycles, cfg.model.L_cycles, cfg.model.halt_max_steps) == (3, 1, 2)
    assert cfg.model.halt_exploration_prob == 0.25 and cfg.optim.lr == 2e-3
    assert cfg.optim.betas == (0.9, 0.95) and cfg.train.global_batch_size == 32
    assert cfg.train.steps == 400  # the space's override
    assert cfg.model.hidden_size == load_config("quickstart").model.hidden_size  # the base elsewhere
    assert trial_config(space, {}) == space.base_config
    hp = hparams(space, point)
    assert hp["optim.betas"] == "[0.9, 0.95]" and hp["model.H_cycles"] == 3
    assert all(v is None or isinstance(v, (bool, int, float, str)) for v in hp.values())


@pytest.mark.parametrize(
    "point, piece",
    [
        ({"model.H_cycle": 2},
         "sampled key 'model.H_cycle' is not a param of this space; did you mean 'model.H_cycles'"),
        ({"model.H_cycles": 7}, "params.model.H_cycles: sampled 7 is outside [1, 3]"),
        ({"model.H_cycles": 1.5}, "params.model.H_cycles: sampled 1.5 is not an integer"),
        ({"optim.betas": "[0.5, 0.5]"}, "params.optim.betas: sampled '[0.5, 0.5]' is not one of its choices"),
        ({"model.halt_max_steps": 4, "model.eval_halt_max_steps": 16}, "condition model.halt_max_steps in [8]"),
    ],
)
def test_trial_config_rejects_bad_points(space, point, piece):
    with pytest.raises(SpaceError) as err:
        trial_config(space, point)
    assert piece in str(err.value) and str(err.value).startswith(space.source)


def test_trial_config_reports_combinations_the_config_rejects(tmp_path):
    # each choice is valid alone on the base (hidden 128, 4 heads); 136 / 8 = 17 is an odd head dim
    text = OK + "  model.num_heads: {type: categorical, choices: [4, 8]}\n" \
        "  model.hidden_size: {type: categorical, choices: [128, 136]}\n"
    space = load_space(str(write(tmp_path, text, "combo.yaml")))
    assert trial_config(space, {"model.num_heads": 8, "model.hidden_size": 128}).model.num_heads == 8
    with pytest.raises(SpaceError) as err:
        trial_config(space, {"model.num_heads": 8, "model.hidden_size": 136})
    msg = str(err.value)
    assert "combo.yaml: trial config" in msg and "even head dim" in msg and "\n" not in msg


def test_store_section_and_what_the_user_watches(tmp_path):
    from hrm.search import short_names, trial_table

    space = load_space("smoke", ["store.keep_per_trial=3"])
    assert (space.store.keep_per_trial, space.store.keep_per_experiment) == (3, 5)
    with pytest.raises(ConfigError, match="store.keep_per_experiment must be >= 1, got 0"):
        load_space("smoke", ["store.keep_per_experiment=0"])
    with pytest.raises(ConfigError, match="store"):
        load_space("smoke", ["store.keep=1"])
    grid = load_space("smoke", ["store.views=[1, 4]", "store.paths=[1, 4]", "store.noise=0.1", "store.noise_on=HL"])
    assert [(p.k, p.noise, p.on) for p in grid.store.path_grid()] == [(4, 0.1, "HL")]  # one path is always measured
    with pytest.raises(ConfigError, match=r"store.paths \[4\] needs store.noise > 0"):
        load_space("smoke", ["store.paths=[4]", "store.noise=0"])
    with pytest.raises(ConfigError, match=r"store.views: counts >= 1, got \[0\]"):
        load_space("smoke", ["store.views=[0]"])
    with pytest.raises(ConfigError, match="store.noise_on"):
        load_space("smoke", ["store.noise_on=Z"])

    assert short_names(space)["model.H_cycles"] == "H_cycles" and short_names(space)["optim.lr"] == "lr"
    clash = load_space("smoke", ["params.data.seed={type: int, low: 0, high: 3}",
                                 "params.train.seed={type: int, low: 0, high: 3}"])
    assert short_names(clash)["data.seed"] == "data.seed" and short_names(clash)["train.seed"] == "train.seed"

    s = space.scheduler  # smoke: ASHA in FLOPs, max_t 3.6e10
    assert s.stopped_early({"flops": 1.2e10}) and not s.stopped_early({"flops": 3.6e10})
    assert not load_space("smoke", ["scheduler.type=fifo"]).scheduler.stopped_early({"flops": 1.2e10})
    table = trial_table(space, [
        ("t1", "TERMINATED", {"model.H_cycles": 2, "optim.lr": 1e-3}, {"token_accuracy": 0.5, "flops": 1.2e10}),
        ("t2", "TERMINATED", {"model.H_cycles": 1}, {"token_accuracy": 0.9, "flops": 3.6e10}),
        ("t3", "PENDING", {}, {}),
    ]).splitlines()
    assert table[0].split()[:3] == ["trial", "status", "H_cycles"] and "token_accuracy" in table[0]
    header = table[0].split()
    assert header.index("token_accuracy") == len(space.params) + 2  # first metric after the params
    assert table[1].split()[:3] == ["t1", "STOPPED", "2"] and table[2].split()[:2] == ["t2", "TERMINATED"]
    assert table[3].split()[:3] == ["t3", "PENDING", "-"]


def test_job_arguments_are_checked_before_ray(tmp_path, monkeypatch):
    from hrm.jobs import make_private, search_args, train_args

    monkeypatch.chdir(tmp_path)
    args, space, name, storage = search_args(["--smoke", "--storage", "st"])
    assert (name, storage) == ("smoke", str(tmp_path / "st")) and not (tmp_path / "st").exists()
    assert space.base_config.data.root == str(tmp_path / "data")  # anchored where the driver runs
    _, shared, _, _ = search_args(["--smoke", "--storage", "st2", "--set", "overrides.data.share=cache"])
    assert shared.base_config.data.share == str(tmp_path / "cache")
    _, shared, _, _ = search_args(["--smoke", "--storage", "st2", "--set", "overrides.data.share=s3://b/d"])
    assert shared.base_config.data.share == "s3://b/d"  # a URI stays as it is
    make_private(storage, f"{storage}/{name}")
    assert oct((tmp_path / "st" / "smoke").stat().st_mode & 0o777) == "0o700"
    make_private("s3://bkt/hrm", "s3://bkt/hrm/smoke", "gs://b/x")  # URIs are the object store's: nothing local
    assert sorted(p.name for p in tmp_path.iterdir()) == ["st"]
    for argv, piece in [
        (["--smoke", "--name", "../x"], "--name '../x' is not allowed"),
        (["--smoke", "--name", "a/b"], "--name 'a/b' is not allowed"),
        (["--smoke", "--resume", "--storage", "st"], "does not exist"),
        (["--space", "nope"], "search-space file not found"),
        (["--smoke", "--set", "budget.trainable_cpus=0"], "budget.trainable_cpus must be > 0 in a search"),
    ]:
        with pytest.raises(ConfigError, match=piece):
            search_args(argv)
    (tmp_path / "st" / "smoke" / "tuner.pkl").write_bytes(b"")
    with pytest.raises(ConfigError, match="exists: pass --resume"):
        search_args(["--smoke", "--storage", "st"])
    with pytest.raises(ConfigError, match="divisible by --num-workers"):
        train_args(["--config", "quickstart", "--num-workers", "3"])
    with pytest.raises(ConfigError, match="budget.cpus_per_worker must be >= 0"):
        train_args(["--config", "quickstart", "--cpus-per-worker", "-1"])


def test_a_claim_is_data_the_report_reads(tmp_path):
    from hrm.search import describe

    text = ("claim:\n  better: {model.halt_max_steps: 4}\n  than: {model.halt_max_steps: 2}\n  by: 0.13\n"
            "  note: published on ARC\n" + P + "model.halt_max_steps: {type: categorical, choices: [2, 4]}\n")
    space = load_space(str(write(tmp_path, text)))
    claim = space.claims[0]
    assert claim.better == (("model.halt_max_steps", 4),) and claim.than == (("model.halt_max_steps", 2),)
    record = describe(space)
    assert record["claims"] == [{"better": {"model.halt_max_steps": 4}, "than": {"model.halt_max_steps": 2},
                                 "by": 0.13, "note": "published on ARC"}]
    assert record["params"][0]["values"] == [2, 4] and record["scheduler"]["time_attr"] == "eval_round"
