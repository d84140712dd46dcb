"""Hyperparameter searches, without Ray or Optuna: the search space as data (`space`), its
files (`spacefile`) and its trials (`trials`). The Ray jobs (ray_jobs/, hrm.jobs) run them."""

from hrm.search.space import (KINDS, METRICS, ROUND_KEYS, RUNG_RULES, RUNG_SCORE, SPACES_DIR, TIME_ATTRS, Budget,
                              Claim, Param, Scheduler, SearchSpace, SpaceError, Store, describe, rung_value,
                              run_length, shipped_spaces, short_names, total_rounds, with_rung_score)
from hrm.search.spacefile import load_space
from hrm.search.trials import define_by_run, hparams, trial_config, trial_table

__all__ = [
    "KINDS", "METRICS", "ROUND_KEYS", "RUNG_RULES", "RUNG_SCORE", "SPACES_DIR", "TIME_ATTRS", "Budget", "Claim",
    "Param", "Scheduler", "SearchSpace", "SpaceError", "Store", "define_by_run", "describe", "hparams", "load_space",
    "rung_value", "run_length", "shipped_spaces", "short_names", "total_rounds", "trial_config", "trial_table",
    "with_rung_score",
]
