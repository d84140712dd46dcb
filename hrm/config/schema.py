"""The config schema: one frozen, keyword-only dataclass per component (model, data, optimiser,
training), bounds beside each field, cross-field checks in `__post_init__`. Task names and
the model families are data here; the registries that use them sit above."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from hrm.config.bounds import AtLeast1, NonNeg, Range, checked
from hrm.config.coerce import build
from hrm.errors import ConfigError

# The tasks (hrm.tasks registers one module each, in this order) and how many augmented
# variants a task has at most where it has a limit (a maze has 7 dihedral maps besides itself).
TASK_NAMES = ("sudoku", "maze", "arc")
MOST_AUGMENTATIONS = {"maze": 7}




# The family-specific model keys and the families that use them (hrm.model: HRM, TRM, URM, the
# plain transformer). TRM reads H_cycles as its T recursions, L_cycles as its n latent
# updates and L_layers as the depth of its one network; URM reads L_layers as its one shared
# stack (its num_layers) and runs it H_cycles x L_cycles times per segment; the transformer
# is one stack of H_layers + L_layers blocks (HRM's parameters exactly). Every other model
# key is shared.
ARCHS = ("hrm", "trm", "urm", "transformer")
FAMILY_KEYS = {
    "H_layers": ("hrm", "transformer"),
    "L_layers": ("hrm", "trm", "urm", "transformer"),
    "H_cycles": ("hrm", "trm", "urm"),
    "L_cycles": ("hrm", "trm", "urm"),
    "gradient": ("hrm", "trm", "urm"),
}


def arch_misfit(arch: Any, keys: Any, where: str = "model.") -> str | None:
    """Why one of `keys` (model keys someone set) does not apply to `arch`, or None."""
    for key in keys:
        users = FAMILY_KEYS.get(key)
        if arch in ARCHS and users is not None and arch not in users:
            uses = [k for k, fams in FAMILY_KEYS.items() if arch in fams]
            return (f"{where}{key} does not apply to model.arch '{arch}' (it is used by {', '.join(users)}; "
                    f"'{arch}' uses {', '.join(uses) or 'none of ' + ', '.join(FAMILY_KEYS)})")
    return None


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    # The family (hrm.model.FAMILIES): HRM, TRM (one small recursive network), URM (one shared
    # stack looped over a single state) or a plain transformer in the same ACT loop. FAMILY_KEYS lists the keys only some families use.
    arch: Literal[ARCHS] = "hrm"
    hidden_size: AtLeast1 = 512
    num_heads: AtLeast1 = 8
    expansion: Annotated[float, Range(gt=0)] = 4.0
    H_layers: AtLeast1 = 4
    L_layers: AtLeast1 = 4
    H_cycles: AtLeast1 = 2
    L_cycles: AtLeast1 = 2
    halt_max_steps: AtLeast1 = 16
    halt_exploration_prob: Annotated[float, Range(ge=0, le=1)] = 0.1
    # Inference may run more segments than training (trained at 8, run at 16 helps
    # Sudoku); None = halt_max_steps.
    eval_halt_max_steps: Annotated[int | None, Range(ge=1)] = None
    pos_encoding: Literal["rope", "learned"] = "rope"
    rope_theta: Annotated[float, Range(gt=0)] = 10000.0
    rms_norm_eps: Annotated[float, Range(gt=0)] = 1e-5
    puzzle_emb: bool = True
    # Prefix positions before the tokens: the puzzle embedding's vector in the first, zeros after
    # (the Q head reads the first). null: the family's published layout (TRM 16, others 1).
    puzzle_positions: Annotated[int | None, Range(ge=1)] = None
    loss: Literal["stablemax", "softmax"] = "stablemax"
    # Token mixing in every block: attention, or (TRM's option for fixed-size grids) an MLP
    # across the sequence axis, which holds the positions itself (RoPE is then not applied).
    mixer: Literal["attention", "mlp"] = "attention"
    # Which updates of a segment are differentiated: one_step = the last L and H update
    # (HRM's approximation), last_recursion = the whole last H cycle / TRM recursion (its
    # n+1 calls) / URM's last L_cycles loops; auto = the family's published choice (HRM
    # one_step, TRM and URM last_recursion).
    gradient: Literal["auto", "one_step", "last_recursion"] = "auto"
    # ACT halting in training; false: every slot runs halt_max_steps segments (the Q head is
    # still trained on correctness, with no continue target and no extra Q segment).
    act: bool = True

    def __post_init__(self) -> None:
        checked(self, "model")
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"model.hidden_size ({self.hidden_size}) must be divisible by model.num_heads ({self.num_heads})"
            )
        if self.arch == "urm" and (self.mixer, self.pos_encoding) != ("attention", "rope"):
            raise ConfigError("model.arch 'urm' is published with attention and RoPE only: model.mixer attention, "
                              "model.pos_encoding rope")
        if self.pos_encoding == "rope" and (self.hidden_size // self.num_heads) % 2:
            raise ConfigError("model.pos_encoding 'rope' needs an even head dim (hidden_size / num_heads)")

    @property
    def eval_steps(self) -> int:
        return self.eval_halt_max_steps or self.halt_max_steps

    @property
    def prefix_len(self) -> int:
        """Positions before the tokens (`puzzle_positions`, or the family's published count)."""
        return self.puzzle_positions or (16 if self.arch == "trm" else 1)

    @property
    def gradient_mode(self) -> str:
        if self.gradient != "auto":
            return self.gradient
        return "last_recursion" if self.arch in ("trm", "urm") else "one_step"


@dataclass(frozen=True, kw_only=True)
class SudokuConfig:
    size: Literal[4, 6, 9] = 9
    difficulty: Literal["easy", "minimal", "hard"] = "hard"
    # Cells removed from the solution for difficulty 'easy' (ignored otherwise).
    blanks: int | None = None
    # Published CSVs (source,question,answer,rating) instead of generating.
    train_csv: str | None = None
    test_csv: str | None = None

    def __post_init__(self) -> None:
        if self.difficulty == "easy" and self.train_csv is None:
            if self.blanks is None or not 0 < self.blanks < self.size * self.size:
                raise ConfigError(
                    f"data.sudoku.blanks must be in 1..{self.size * self.size - 1} for difficulty 'easy', "
                    f"got {self.blanks}"
                )
        if (self.train_csv is None) != (self.test_csv is None):
            raise ConfigError("data.sudoku.train_csv and data.sudoku.test_csv must be given together")
        if self.train_csv is not None and self.size != 9:
            raise ConfigError("data.sudoku.train_csv is the published 9x9 format: data.sudoku.size must be 9")


@dataclass(frozen=True, kw_only=True)
class MazeConfig:
    size: Annotated[int, Range(ge=4, le=30)] = 30
    # Keep mazes whose shortest path is longer than this (moves; published: 110).
    min_path: AtLeast1 = 110

    def __post_init__(self) -> None:
        checked(self, "data.maze")


ARCVersion = Literal["arc-agi-1", "arc-agi-2"]


@dataclass(frozen=True, kw_only=True)
class ARCConfig:
    # Its training tasks train, its evaluation tasks are the test split.
    version: ARCVersion = "arc-agi-1"
    # Other versions whose training and evaluation tasks are added to training.
    extra_versions: tuple[ARCVersion, ...] = ()
    # Folders of ARC task JSON added to training (e.g. ConceptARC).
    extra_dirs: tuple[str, ...] = ()
    # Random placement of each grid on the 30x30 canvas (train split only).
    translate: bool = True
    # Use only the first N training / evaluation tasks (smoke tests; null = all).
    max_train_tasks: Annotated[int | None, Range(ge=1)] = None
    max_eval_tasks: Annotated[int | None, Range(ge=1)] = None

    def __post_init__(self) -> None:
        if self.version == "arc-agi-1" and "arc-agi-2" in self.extra_versions:
            raise ConfigError(
                "data.arc.extra_versions: training on arc-agi-2 while evaluating on arc-agi-1 is refused "
                "(ARC-AGI-2's training set contains 376 ARC-AGI-1 evaluation tasks)"
            )
        checked(self, "data.arc")
        if self.version in self.extra_versions:
            raise ConfigError(f"data.arc.extra_versions repeats data.arc.version '{self.version}'")


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    task: Literal[TASK_NAMES] = "sudoku"  # the tasks of hrm.tasks
    # Built datasets are cached under root/<task>-<hash of the builder options>;
    # `path` points at a prebuilt dataset folder instead. `share`: a folder or URI every
    # node reads (searches on object storage default it to <storage>/datasets): a dataset
    # missing under root is fetched from there, or built and published there.
    root: str = "data"
    path: str | None = None
    share: str | None = None
    seed: int = 0
    num_train: Annotated[int | None, Range(ge=1)] = 1000  # null: all (of a CSV)
    num_test: AtLeast1 = 1000
    num_aug: Annotated[int, Range(ge=0)] = 1000
    sudoku: SudokuConfig = field(default_factory=SudokuConfig)
    maze: MazeConfig = field(default_factory=MazeConfig)
    arc: ARCConfig = field(default_factory=ARCConfig)

    def __post_init__(self) -> None:
        checked(self, "data")
        most = MOST_AUGMENTATIONS.get(self.task)
        if most is not None and self.num_aug > most:
            raise ConfigError(f"data.num_aug for {self.task} must be in 0..{most} (it has {most} augmentations), "
                              f"got {self.num_aug}")


@dataclass(frozen=True, kw_only=True)
class OptimConfig:
    # adam_atan2 (HRM, TRM, URM) or muon (URM's ARC-AGI-2 recipe): hrm.optim.build_optimizer.
    optimizer: Literal["adam_atan2", "muon"] = "adam_atan2"
    lr: NonNeg = 1e-4
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: NonNeg = 0.1
    puzzle_emb_lr: NonNeg = 1e-2
    puzzle_emb_weight_decay: NonNeg = 0.1
    warmup_steps: Annotated[int, Range(ge=0)] = 2000
    # Cosine decay ends at lr * lr_min_ratio; 1.0 keeps lr constant after warm-up.
    lr_min_ratio: Annotated[float, Range(ge=0, le=1)] = 1.0

    def __post_init__(self) -> None:
        checked(self, "optim")
        if not all(0.0 <= b < 1.0 for b in self.betas):  # NaN fails this too
            raise ConfigError(f"optim.betas must both be in [0, 1), got {list(self.betas)}")


BUDGETS = ("steps", "epochs", "samples", "flops")  # train.<one of them> is a run's length


@dataclass(frozen=True, kw_only=True)
class WandbConfig:
    """Weights & Biases logging of a run (hrm.runlog): the scalars, prediction pictures and the
    resolved config TensorBoard gets. Offline writes the run's files under its run folder
    (`wandb sync` uploads them later); online needs the user's W&B login. Nothing reaches
    the network unless `mode: online`."""

    project: str
    mode: Literal["offline", "online"] = "offline"
    entity: str | None = None
    group: str | None = None  # a search sets its experiment's name: one W&B run per trial, grouped
    name: str | None = None  # the run's name (a search: the trial's)

    def __post_init__(self) -> None:
        if not self.project.strip():
            raise ConfigError("train.wandb.project must be a non-empty string")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    global_batch_size: AtLeast1 = 768
    # The run's length, exactly one of: optimiser steps (= ACT segments), epochs (one
    # augmented variant per puzzle group each), samples (puzzle-segments: steps x batch) or
    # flops (the model's training FLOPs, as `hrm model-info` counts them; hrm.compute).
    # Budgets in samples or flops compare settings that differ in cost per step at equal compute.
    steps: Annotated[int | None, Range(ge=1)] = None
    epochs: Annotated[int | None, Range(ge=1)] = None
    samples: Annotated[int | None, Range(ge=1)] = None
    flops: Annotated[float | None, Range(gt=0)] = None
    # Evaluate every this much of the budget's unit (steps for steps and epochs), and at the end.
    eval_interval: Annotated[int | float, Range(gt=0)] = 1000
    # Questions evaluated each round (0 = the whole test split).
    eval_samples: Annotated[int, Range(ge=0)] = 0
    # Test-time-augmented views per question voted for pass@k (1 = no voting).
    eval_views: AtLeast1 = 1
    eval_batch_size: Annotated[int | None, Range(ge=1)] = None
    log_interval: AtLeast1 = 50
    checkpoint: bool = True
    keep_checkpoints: AtLeast1 = 2
    seed: int = 0
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"  # auto: CUDA, else Apple's MPS, else the CPU
    # dtype auto: bfloat16 on CUDA and on CPUs with native bf16 matmuls (AVX512-BF16/AMX),
    # float32 elsewhere (hrm.runtime.auto_dtype).
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    # torch.compile of the model's blocks. auto: by measurement, after a few eager steps, when
    # the rest of the run saves more than the compile costs (hrm.compile_plan); eager on MPS.
    compile: Literal["auto", "on", "off"] = "auto"
    # Where compiled blocks are cached for other runs (a folder or URI; hrm.compiled): a search
    # points it at <storage>/<name>/compile_cache. null: the node's own torch caches only.
    compile_cache: str | None = None
    # How many runs share this run's compile through compile_cache (a search: its trials): a
    # cold compile's cost is split among them when auto decides.
    compile_runs: AtLeast1 = 1
    # Exponential moving average of the weights (e.g. 0.999, TRM's); evaluation uses it and
    # checkpoints store it as the model (hrm.optim.EMA). null: off, as in HRM.
    ema: Annotated[float | None, Range(gt=0, lt=1)] = None
    out_dir: str = "runs/default"
    tensorboard: bool = True
    # Weights & Biases as well as TensorBoard (an optional extra: pip install -e '.[wandb]'); null: off.
    wandb: WandbConfig | None = None

    def __post_init__(self) -> None:
        checked(self, "train")
        given = [k for k in BUDGETS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ConfigError(f"train: give exactly one of {', '.join(f'train.{k}' for k in BUDGETS)}"
                              + (f", got {' and '.join(given)}" if given else ""))
        if self.unit in ("step", "epoch") and (self.eval_interval != int(self.eval_interval) or self.eval_interval < 1):
            raise ConfigError(f"train.eval_interval counts steps with a train.{given[0]} budget: it must be a whole "
                              f"number >= 1, got {self.eval_interval:g}")

    @property
    def unit(self) -> str:
        """The budget's unit: step, epoch, samples or flops (hrm.compute)."""
        return {"steps": "step", "epochs": "epoch", "samples": "samples", "flops": "flops"}[
            next(k for k in BUDGETS if getattr(self, k) is not None)]

    @property
    def budget(self) -> float:
        return getattr(self, {"step": "steps", "epoch": "epochs"}.get(self.unit, self.unit))


@dataclass(frozen=True, kw_only=True)
class Config:
    name: str = "hrm"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=1000))


def from_dict(raw: dict[str, Any]) -> Config:
    if not isinstance(raw, dict):
        raise ConfigError("a config must be a mapping at the top level")
    return build(Config, raw)
