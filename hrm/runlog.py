"""What a training run tells, in one place: lines on stdout (or the caller's `log`),
full-precision metrics.jsonl, TensorBoard (scalars, prediction pictures, HParams), optionally
Weights & Biases (the same scalars and pictures, and the resolved config), and, when the
run's folder lives on node-local scratch, its mirror in the storage.

`RunLog` is a context manager: its files are closed, and the mirror gets its last push,
when the run ends, by an error too. Only rank 0 of a data-parallel run writes; the
other ranks get a RunLog that says and writes nothing.
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path
from typing import Any, Callable

from hrm.config import ConfigError, WandbConfig
from hrm.storage import Mirror, write_atomic

MIRROR_S = 30.0  # a mirrored run pushes its logs at least this often (and after every evaluation)
EVAL_SCALARS = ("pass@1", "pass@2", "exact_accuracy", "token_accuracy")  # HParams' metrics


def check_wandb(cfg: WandbConfig | None) -> None:
    """One line before any work when train.wandb is set and its optional extra is missing."""
    if cfg is not None and importlib.util.find_spec("wandb") is None:
        raise ConfigError("train.wandb is set but wandb is not installed: pip install -e '.[wandb]' (or set "
                          "train.wandb: null)")


def _wandb_run(cfg: WandbConfig, out: Path, config: dict[str, Any]) -> Any:
    """A W&B run for this run folder. Its console capture is off: our lines already reach the
    user (and Ray's log capture), and W&B's own banner lines are silenced."""
    import wandb  # an optional extra: imported only when train.wandb is set

    settings = wandb.Settings(console="off", silent=True, disable_git=True, save_code=False)
    return wandb.init(project=cfg.project, entity=cfg.entity, group=cfg.group, name=cfg.name, mode=cfg.mode,
                      dir=str(out), config=config, settings=settings, reinit="create_new")


def print_flushed(msg: str) -> None:
    # Flush: logs often go to a file or a Ray job log, where Python buffers.
    print(msg, flush=True)


def _truncate_history(path: Path, step: int) -> None:
    """Drop history lines past `step` (written by a run that died after its checkpoint)."""
    keep = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
    write_atomic(path, "".join(line + "\n" for line in keep))


class RunLog:
    """`out`: the run folder (metrics.jsonl); TensorBoard goes to `tensorboard_dir` (default
    `out/tensorboard`) when `tensorboard`. `step`: where the run starts (a resumed run
    drops the history and hides the events its last life wrote past it). `mirror`: pulled
    on entry, pushed every MIRROR_S seconds of logging, by `sync()` and on exit."""

    def __init__(self, out: str | Path, *, main: bool, step: int, log: Callable[[str], None] | None = None,
                 tensorboard: bool = True, tensorboard_dir: str | Path | None = None,
                 hparams: dict[str, Any] | None = None, mirror: Mirror | None = None,
                 wandb: WandbConfig | None = None, config: dict[str, Any] | None = None):
        self.out, self.main, self.step = Path(out), main, step
        self.log = (log or print_flushed) if main else (lambda _msg: None)
        self.tensorboard = tensorboard and main
        self.tensorboard_dir = Path(tensorboard_dir) if tensorboard_dir else self.out / "tensorboard"
        self.hparams, self.mirror = hparams, mirror if main else None
        self.wandb_cfg, self.config = (wandb if main else None), config
        self.history = self.writer = self.wandb = None

    @property
    def pictures(self) -> bool:
        """Whether prediction pictures have somewhere to go."""
        return self.writer is not None or self.wandb is not None

    def __enter__(self) -> "RunLog":
        if not self.main:
            return self
        pulled = self.mirror.pull() if self.mirror is not None else 0
        if pulled:
            self.say(f"[train] pulled {pulled} run file(s) from {self.mirror.remote}")
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / "metrics.jsonl"
        if path.exists():
            _truncate_history(path, self.step)
        self.history = open(path, "a")
        if self.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step: TensorBoard hides the events an earlier life wrote from here on.
            self.writer = SummaryWriter(str(self.tensorboard_dir), purge_step=self.step if self.step or pulled else None)
            if self.hparams:
                self._write_hparams(self.hparams)
        if self.wandb_cfg is not None:
            self.wandb = _wandb_run(self.wandb_cfg, self.out, {**(self.config or {}), "hparams": self.hparams or {}})
        self.sync()
        return self

    def __exit__(self, *exc: Any) -> None:
        for f in (self.writer, self.history):
            if f is not None:
                f.close()
        if self.wandb is not None:
            self.wandb.finish(exit_code=1 if exc and exc[0] is not None else 0)
        if self.mirror is not None:
            self.mirror.push()

    def say(self, msg: str) -> None:
        self.log(msg)

    def record(self, kind: str, step: int, metrics: dict[str, float], prefix: str = "") -> None:
        """A history line and the scalars `prefix + name` at `step`."""
        if self.history is not None:
            self.history.write(json.dumps({"kind": kind, "step": step, **metrics}) + "\n")
            self.history.flush()
        if self.writer is not None:
            for k, v in metrics.items():
                self.writer.add_scalar(prefix + k, v, step)
            self._against_compute(metrics)
        if self.wandb is not None:
            self.wandb.log({prefix + k: v for k, v in metrics.items() if isinstance(v, (int, float))}, step=step)

    def _against_compute(self, metrics: dict[str, float]) -> None:
        """An evaluation's scalars again with compute as their x axis (TensorBoard's axis is an
        integer step): `eval_by_samples/<m>` at the samples trained, `eval_by_mflop/<m>` at the
        training MFLOP, so runs of different cost per step line up at equal compute."""
        if "samples" not in metrics or "flops" not in metrics:
            return
        for key in (k for k in EVAL_SCALARS if k in metrics):
            self.writer.add_scalar(f"eval_by_samples/{key}", metrics[key], int(metrics["samples"]))
            self.writer.add_scalar(f"eval_by_mflop/{key}", metrics[key], int(metrics["flops"] // 1_000_000))

    def images(self, step: int, pictures: list[Any]) -> None:
        if self.writer is not None:
            for i, image in enumerate(pictures):
                self.writer.add_image(f"predictions/{i}", image, step, dataformats="HWC")
        if self.wandb is not None:
            import wandb  # the optional extra, present: `check_wandb` said so before the run

            self.wandb.log({"predictions": [wandb.Image(image) for image in pictures]}, step=step)

    def sync(self, every_s: float = 0.0) -> None:
        """Flush TensorBoard and push the mirror (at most every `every_s` seconds)."""
        if self.writer is not None:
            self.writer.flush()
        if self.mirror is not None and time.monotonic() - self.mirror.pushed_at >= every_s:
            self.mirror.push()

    def _write_hparams(self, hparams: dict[str, Any]) -> None:
        """HParams in this run itself (SummaryWriter.add_hparams would make a sub-run),
        against the evaluation scalars the loop logs."""
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        metrics = {f"eval/{k}": 0.0 for k in EVAL_SCALARS}
        values = {k: v if isinstance(v, (bool, int, float, str)) else json.dumps(v) for k, v in hparams.items()}
        for summary in hparams_summary(values, metrics):
            self.writer.file_writer.add_summary(summary)


def cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) or (isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 1e7):
        return f"{value:.4g}"  # a FLOP count reads as 2.048e+12
    if hasattr(value, "isoformat"):
        return value.isoformat(timespec="seconds")
    return str(value)


def format_table(header: list[str], rows: list[list]) -> str:
    """An aligned plain-text table (also the live trial table of ray_jobs/tune.py)."""
    body = [[cell(v) for v in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in body]
    return "\n".join(line.rstrip() for line in lines)
