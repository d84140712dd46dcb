"""When a run compiles its blocks (`train.compile: auto`), decided by measurement.

The rule (`worth_compiling`): a run trains its first PROBE_STEPS steps eager, timing them,
then compiles if the steps it has left, times the eager step, times (1 - 1/speed-up), save
more than the compile costs at the cache state it finds (STATES). A cold compile is paid
once for the runs that will load it (`train.compile_runs`, a search's trials), so each
bears its share (`compile_cost`); while another run on the node is compiling the same
blocks, a run keeps training eager and decides once that compile is done, when it finds
them on the node.

The numbers: what earlier runs of the same key measured, the median of each (a ledger
beside the search's cache file, and one in this node's inductor cache), else PRIORS. Every
compiled run records the compile's cost at the state it found and its step's speed-up.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch._inductor.runtime.cache_dir_utils import cache_dir  # inductor's own (TORCHINDUCTOR_CACHE_DIR)

from hrm.compiled import cache_file, digest
from hrm.storage import exists, read_bytes, write_atomic, write_bytes

PROBE_STEPS = 6  # eager steps timed before auto decides; the first (a warm-up) is not counted
MEASURE_STEPS = 5  # compiled steps timed after the compile, for the speed-up
HISTORY = 9  # measurements of each cost a ledger keeps (their median is used)
STATES = {"cold": "nothing cached", "storage": "the search's cache file", "node": "compiled on this node before"}
MARKER_S = 900.0  # a compile marker older than this is a dead run's

# Until a key has been measured: seconds to compile the blocks' training and evaluation graphs
# at each cache state, and a training step's speed-up, eager over compiled. CPU: measured on
# the 2-core EPYC at the quickstart size (benchmarks/RESULTS.md, "Compiling once per
# search"). CUDA: not measured yet (no GPU run); a generous compile cost.
PRIORS: dict[str, dict[str, float]] = {
    "cpu": {"cold": 40.0, "storage": 30.0, "node": 5.0, "speedup": 1.25},
    "cuda": {"cold": 60.0, "storage": 30.0, "node": 10.0, "speedup": 1.3},
}


def compile_cost(state: str, costs: dict[str, float], runs: int) -> float:
    """What compiling costs this run at cache `state`: a cold compile is paid once for the
    `runs` runs that will load it (a search's trials), so each bears its share."""
    return costs[state] / runs if state == "cold" else costs[state]


def worth_compiling(steps: int, eager_step_s: float, cost: float, speedup: float) -> tuple[bool, float]:
    """The rule: compile when `steps` more steps, each `eager_step_s` eager and `speedup`
    times faster compiled, save more than the compile `cost`; and the saving."""
    saving = steps * eager_step_s * (1.0 - 1.0 / speedup)
    return saving > cost, saving


# ---------------------------------------------------------------------------
# ledgers: what runs of a key measured


def node_file(key: dict[str, Any], suffix: str) -> str:
    """This node's file for `key` in the inductor cache: `.json` its ledger (there once a
    run compiled the key here), `.compiling` a run's marker while it compiles."""
    return os.path.join(cache_dir(), "hrm", f"{digest(key)}{suffix}")


def ledgers(folder: str | None, key: dict[str, Any]) -> list[str]:
    """A key's ledgers: beside the search's cache file, then this node's."""
    return ([f"{folder.rstrip('/')}/{digest(key)}.json"] if folder else []) + [node_file(key, ".json")]


def cache_state(folder: str | None, key: dict[str, Any]) -> str:
    """cold, storage or node (STATES): what a compile of `key` would find now."""
    if os.path.exists(node_file(key, ".json")):
        return "node"
    return "storage" if folder and exists(cache_file(folder, key)) else "cold"


def known_costs(folder: str | None, key: dict[str, Any], device_type: str) -> tuple[dict[str, float], set[str]]:
    """The costs to decide with (PRIORS' keys), and which of them were measured: the median
    of each cost's history, this node's ledger over the search's."""
    costs, measured = dict(PRIORS["cuda" if device_type == "cuda" else "cpu"]), set()
    for path in ledgers(folder, key):
        history = _read_json(path).get("history", {})
        for k in costs:
            values = [v for v in history.get(k, []) if isinstance(v, (int, float)) and v > 0]
            if values:
                costs[k] = float(statistics.median(values))
                measured.add(k)
    return costs, measured


def record_costs(folder: str | None, key: dict[str, Any], measured: dict[str, float]) -> None:
    """Add what a run measured to both ledgers' histories (OSError if one cannot be written)."""
    for path in ledgers(folder, key):
        found = _read_json(path)
        history = found.get("history") if isinstance(found.get("history"), dict) else {}
        for k, v in measured.items():
            history[k] = [*history.get(k, []), round(v, 4)][-HISTORY:]
        _write(path, {"key": key, "history": history})


def _read_json(path: str) -> dict[str, Any]:
    try:
        found = json.loads(read_bytes(path))
        return found if isinstance(found, dict) else {}
    except (OSError, ValueError):  # none yet, or unreadable: the priors stand
        return {}


def _write(path: str, obj: dict[str, Any]) -> None:
    write_bytes(path, json.dumps(obj, sort_keys=True, indent=1).encode())


def another_compiling(key: dict[str, Any]) -> bool:
    """Whether a live process on this node is compiling `key` now (its marker)."""
    path = node_file(key, ".compiling")
    try:
        pid, age = int(Path(path).read_text().strip() or 0), time.time() - os.path.getmtime(path)
    except (OSError, ValueError):
        return False
    if pid == os.getpid() or age > MARKER_S:
        return False
    try:
        os.kill(pid, 0)  # signal 0: is it alive
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    return True


# ---------------------------------------------------------------------------
# one run's plan

T = TypeVar("T")
_WAIT, _ON, _OFF = 0, 1, 2


@dataclass
class CompilePlan:
    """train.compile on or auto in one run: it times the run's steps and first evaluations
    around the compile, decides `auto` after PROBE_STEPS eager steps (`compile` compiles the
    blocks and returns the seconds it spent loading the search's cache), and records what
    compiling cost and saved. `main`: the rank that decides (the others follow) and writes."""

    mode: str  # on | auto
    folder: str | None
    key: dict[str, Any]
    device: torch.device
    compile: Callable[[], float]
    main: bool = True
    runs: int = 1  # runs sharing this compile (train.compile_runs)
    phase: str = "probe"  # probe (eager, timing) | first (the next step compiles) | measure | done | eager
    state: str = "cold"
    load_s: float = 0.0
    eager: list[float] = field(default_factory=list)
    steps: list[float] = field(default_factory=list)  # compiled: the first step (with the compile), then timed ones
    evals: list[float] = field(default_factory=list)
    waited: bool = False
    found: dict[str, float] = field(default_factory=dict)  # measured: the training graphs' compile, the speed-up

    def __post_init__(self) -> None:
        if self.mode == "on":  # compiled from the start: no eager step to compare with
            self.state = cache_state(self.folder, self.key)
            self._start()

    @property
    def compiled(self) -> bool:
        return self.phase not in ("probe", "eager")

    @property
    def eager_step_s(self) -> float:
        """The median eager step of the latest probed steps (the first, a warm-up, left out)."""
        return statistics.median(self.eager[1:][-2 * PROBE_STEPS:])

    def step(self, run: Callable[[], T], steps_left: int, say: Callable[[str], None]) -> T:
        """`run()` (one training step), timed while the plan still measures."""
        if self.phase in ("done", "eager"):
            return run()
        seconds, out = self._timed(run)
        if self.phase == "probe":
            self.eager.append(seconds)
            if len(self.eager) >= PROBE_STEPS:
                self._decide(steps_left, say)
        else:  # first or measure
            if self.phase == "first":
                self._compiled_here()
            self.steps.append(seconds)
            self.phase = "measure"
            if len(self.steps) == MEASURE_STEPS + 1:
                self._measured(say)
        return out

    def evaluation(self, run: Callable[[], T]) -> T:
        """`run()` (one evaluation): the first two compiled ones are timed, for the compile
        of the evaluation's graphs (the first minus the second)."""
        if not self.compiled or len(self.evals) == 2:
            return run()
        seconds, out = self._timed(run)
        self.evals.append(seconds)
        if len(self.evals) == 2 and self.phase == "done":
            self._record()
        return out

    def _timed(self, run: Callable[[], T]) -> tuple[float, T]:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        out = run()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - start, out

    def _decide(self, steps_left: int, say: Callable[[str], None]) -> None:
        eager_s = self.eager_step_s
        verdict, line = _WAIT, ""
        if self.main and not another_compiling(self.key):
            self.state = cache_state(self.folder, self.key)
            costs, measured = known_costs(self.folder, self.key, self.device.type)
            cost = compile_cost(self.state, costs, self.runs)
            on, saving = worth_compiling(steps_left, eager_s, cost, costs["speedup"])
            verdict = _ON if on else _OFF
            source = lambda k: "measured" if k in measured else "prior"  # noqa: E731
            line = (f"[train] compile auto: {'on' if on else 'off'}: {steps_left} steps x {eager_s:.3f} s x (1 - 1/"
                    f"{costs['speedup']:.2f} {source('speedup')}) = {saving:.1f} s to save, {'>' if on else '<='} "
                    f"{cost:.1f} s to compile ({STATES[self.state]}, {source(self.state)}"
                    + (f", shared by {self.runs} runs)" if cost != costs[self.state] else ")"))
        if dist.is_available() and dist.is_initialized():  # every rank does what rank 0 decided
            flag = torch.tensor([float(verdict)], device=self.device)
            dist.broadcast(flag, 0)
            verdict = int(flag.item())
        if verdict == _WAIT:
            if self.main and not self.waited:
                say("[train] compile auto: another run on this node is compiling the same blocks; "
                    "training eager until it is done")
            self.waited = True
            return
        if line:
            say(line)
        if verdict == _ON:
            self._start()
        else:
            self.phase = "eager"

    def _start(self) -> None:
        """Compile (the next step runs the compiled blocks), marking the node while it does."""
        if self.main and self.state != "node":
            try:
                write_atomic(node_file(self.key, ".compiling"), str(os.getpid()))
            except OSError:  # no marker: others may compile at the same time, nothing worse
                pass
        self.load_s, self.phase = self.compile(), "first"

    def _compiled_here(self) -> None:
        """The first compiled step is done: the node now holds the blocks (its ledger says
        so), and others on it may load them."""
        if not self.main:
            return
        ledger = node_file(self.key, ".json")
        try:
            if not os.path.exists(ledger):
                _write(ledger, {"key": self.key, "history": {}})
        except OSError:  # no ledger: the node's other runs take it for cold, and hit its caches
            pass
        with contextlib.suppress(OSError):  # on its own: a marker left behind keeps the others eager
            os.remove(node_file(self.key, ".compiling"))

    def _measured(self, say: Callable[[str], None]) -> None:
        step_s = statistics.median(self.steps[1:])
        compile_s = max(0.0, self.steps[0] - step_s) + self.load_s
        line = f"[train] compiled in {compile_s:.1f} s ({STATES[self.state]}): {step_s:.3f} s/step"
        self.found = {"train": compile_s}
        if self.eager:
            eager_s = self.eager_step_s
            self.found["speedup"] = eager_s / step_s
            line += f", {eager_s:.3f} eager ({eager_s / step_s:.2f}x)"
        say(line)
        self.phase = "done"
        if len(self.evals) == 2:
            self._record()

    def _record(self) -> None:
        """The state's compile seconds (its training graphs', plus its evaluation graphs' as
        the first compiled evaluation's excess over the second) and the speed-up, into the
        ledgers."""
        eval_s = max(0.0, self.evals[0] - self.evals[1]) if len(self.evals) == 2 else 0.0
        measured = {self.state: self.found["train"] + eval_s}
        if "speedup" in self.found:
            measured["speedup"] = self.found["speedup"]
        if self.main:
            try:
                record_costs(self.folder, self.key, measured)
            except OSError:  # a ledger that cannot be written only leaves later runs the priors
                pass
