"""Evaluation: exact accuracy, test-time-augmentation voting and pass@k.

Every sample runs all Mmax segments (eval Mmax) and its last prediction counts.
A *question* is one test input (a Sudoku, a maze, one test input of an ARC task);
it is asked in K *views*: the input itself and K-1 augmented copies (Sudoku: the
HRM augmentations; Maze: dihedral maps; ARC: the test split's augmented variants).
Each view's prediction is mapped back to the question's frame (inverse
augmentation; ARC: crop to the colour region first), and distinct answers are
ranked by (votes, mean sigmoid(q_halt)). pass@k counts a *task* solved when each
of its questions has a right answer among its k best; an ARC task with several
test inputs needs all of them. "Right" is the task's own check: the exact grid
for Sudoku and ARC, a valid optimal path for Maze (another shortest path counts).

Metrics (named, never positional):
- exact_accuracy: share of questions whose un-augmented view is right
  (with one view, pass@1 == exact_accuracy);
- token_accuracy: share of labelled tokens right, over all views;
- q_halt_accuracy: share of views where "q_halt > 0" agrees with "view exactly right";
- mean_steps: mean segment at which the Q head first chose to halt (Mmax if never);
- pass@k for each requested k (1 and 2 always);
- `<metric>_se` for exact_accuracy and each pass@k: the evaluation's own standard error
  from the number of questions (tasks for pass@k), beside any seeds' spread;
- inference_flops: the model FLOPs spent per question (segments x views x members).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.distributed as dist

from hrm import tasks
from hrm.config import ConfigError
from hrm.runtime import autocast
from hrm.tasks.base import TaskEval, Views
from hrm.data.loader import Split
from hrm.model import flops_per_segment
from hrm.model.act import Recurrent
from hrm.model.losses import IGNORE_LABEL


NOISE_ON = ("L", "H", "HL")  # which latent the paths' noise goes on: z_L (TRM's z), z_H (TRM's y), both


@dataclass(frozen=True)
class Paths:
    """Parallel latent paths at inference (PTRM's test-time scaling): `k` trajectories of each
    sample; after every segment, paths 1..k-1 get Gaussian noise of std `noise` added to the
    latent `on` (path 0 never does: it is the plain evaluation, and more paths cannot change
    it). Path k's noise comes from its own generator, seeded by (`seed`, batch, k), so a
    path's trajectory does not depend on how many others run. At each kept segment the path
    with the highest q_halt logit gives the sample's answer (the lowest index on ties)."""

    k: int = 1
    noise: float = 0.0
    on: str = "L"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.k < 1 or not self.noise >= 0 or self.on not in NOISE_ON:
            raise ConfigError(f"paths: k >= 1, noise >= 0 and noise on one of {', '.join(NOISE_ON)}; got k={self.k}, "
                              f"noise={self.noise}, on={self.on!r}")

    def for_batch(self, start: int) -> "Paths":
        return replace(self, seed=int(np.random.SeedSequence([self.seed, start]).generate_state(1)[0]))


@torch.no_grad()
def predict_at(model: Recurrent, batch: dict[str, torch.Tensor], steps: list[int],
               paths: Paths | None = None) -> dict[int, dict[str, torch.Tensor]]:
    """Run a fresh carry for max(steps) segments and keep the outputs after each of `steps`:
    {s: preds, q_halt, halt_step}, halt_step being the first segment < s where the Q head
    chose to halt (s if none). One pass serves every s (inference-time scaling). With
    `paths`, each sample's answer is its chosen path's (`Paths`)."""
    per_path = trajectories(model, batch, steps, paths or Paths())
    return {s: choose_path(out) for s, out in per_path.items()}


@torch.no_grad()
def trajectories(model: Recurrent, batch: dict[str, torch.Tensor], steps: list[int],
                 paths: Paths) -> dict[int, dict[str, torch.Tensor]]:
    """`predict_at`'s outputs for every path, each with a leading path axis of size paths.k."""
    was_training = model.training
    model.eval()
    K, B = paths.k, batch["inputs"].shape[0]
    rows = {key: batch[key].repeat(K, *([1] * (batch[key].dim() - 1))) for key in ("inputs", "labels", "puzzle_ids")}
    carry = model.reset_halted(model.initial_carry(rows["inputs"], rows["labels"], rows["puzzle_ids"]))
    gens = [torch.Generator(device=carry.z_H.device).manual_seed(paths.seed * 1009 + i) for i in range(1, K)]
    first_halt = torch.full_like(carry.steps, max(steps) + 1)
    kept: dict[int, dict[str, torch.Tensor]] = {}
    for s in range(1, max(steps) + 1):
        carry, out = model(carry)
        if s in steps:
            halt_step = torch.where(first_halt < s, first_halt, torch.full_like(first_halt, s))
            kept[s] = {"preds": out["logits"].argmax(-1), "q_halt": out["q_halt"], "halt_step": halt_step}
            kept[s] = {key: v.reshape(K, B, *v.shape[1:]) for key, v in kept[s].items()}
        first_halt = torch.where(model.wants_halt(out) & (first_halt > s), torch.full_like(first_halt, s), first_halt)
        if K > 1 and paths.noise > 0 and s < max(steps):
            carry = _perturbed(carry, gens, paths, B)
    model.train(was_training)
    return kept


def _perturbed(carry, gens: list[torch.Generator], paths: Paths, B: int):
    """The carry with each noisy path's latent moved by its own Gaussian draw."""
    changes = {}
    for name in (("z_L",) if paths.on == "L" else ("z_H",) if paths.on == "H" else ("z_H", "z_L")):
        z = getattr(carry, name)
        draws = [torch.randn(z[:B].shape, generator=g, device=z.device, dtype=torch.float32) for g in gens]
        noise = torch.cat([torch.zeros_like(draws[0]), *draws]) * paths.noise
        changes[name] = (z.float() + noise).to(z.dtype)
    return replace(carry, **changes)


def choose_path(out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each sample's outputs from its path of highest q_halt (argmax: the first on ties)."""
    best = out["q_halt"].argmax(0)
    pick = torch.arange(best.shape[0], device=best.device)
    return {key: v[best, pick] for key, v in out.items()}


def predict(model: Recurrent, batch: dict[str, torch.Tensor], steps: int | None = None) -> dict[str, torch.Tensor]:
    """Run a fresh carry for `steps` segments (default: eval Mmax); last outputs."""
    steps = steps or model.cfg.eval_steps
    return predict_at(model, batch, [steps])[steps]


def task_eval(split: Split) -> TaskEval:
    """The evaluator of the split's task (`hrm.tasks`)."""
    return tasks.get(split.meta["task"]).evaluator(split)


# ---------------------------------------------------------------------------
# voting


def rank_answers(answers: list[bytes], q_halt: np.ndarray) -> list[tuple[bytes, int, float]]:
    """Distinct answers of one question, best first: (answer, votes, mean sigmoid q_halt)."""
    votes: dict[bytes, list[float]] = defaultdict(list)
    conf = 1 / (1 + np.exp(-q_halt.astype(np.float64)))
    for a, c in zip(answers, conf):
        votes[a].append(float(c))
    ranked = [(a, len(c), float(np.mean(c))) for a, c in votes.items()]
    ranked.sort(key=lambda t: (t[1], t[2]), reverse=True)
    return ranked


def pass_at_k(
    ranked: list[list[tuple[bytes, int, float]]],
    correct: list[list[bool]],
    question_task: np.ndarray,
    ks: tuple[int, ...],
) -> dict[int, tuple[int, int]]:
    """For each k: (tasks solved, tasks). A task needs every question right in top-k.

    `correct[q][i]` says whether the i-th ranked answer of question q is right.
    """
    tasks = np.unique(question_task)
    out = {}
    for k in ks:
        q_ok = np.array([any(c[:k]) for c in correct], dtype=bool)
        solved = sum(bool(q_ok[question_task == t].all()) for t in tasks)
        out[k] = (solved, len(tasks))
    return out


# ---------------------------------------------------------------------------
# the evaluator


@dataclass
class EvalResult:
    metrics: dict[str, float]
    # per question: ranked (answer, votes, mean q) and correctness, for reports
    ranked: list[list[tuple[bytes, int, float]]]
    correct: list[list[bool]]
    questions: np.ndarray
    examples: list[dict[str, np.ndarray]]


def _shard(question_task: np.ndarray, rank: int, world: int) -> np.ndarray:
    """Questions of this rank: whole tasks, so per-task rules stay local."""
    return np.flatnonzero(question_task % world == rank)


def run_eval(
    model: Recurrent | list[Recurrent],
    split: Split,
    *,
    batch_size: int,
    limit: int = 0,
    views: int = 1,
    ks: tuple[int, ...] = (1, 2),
    device: torch.device = torch.device("cpu"),
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    keep_examples: int = 0,
    steps: int | None = None,
    paths: Paths | None = None,
) -> EvalResult:
    """Evaluate one model, or an ensemble (a list: every member's every view is a vote), at
    `steps` segments (default: each model's eval Mmax)."""
    return run_eval_at(model, split, [steps], batch_size=batch_size, limit=limit, views=views, ks=ks, device=device,
                       dtype=dtype, seed=seed, keep_examples=keep_examples, paths=paths)[steps]


def run_eval_at(
    model: Recurrent | list[Recurrent],
    split: Split,
    steps: list[int | None],
    *,
    batch_size: int,
    limit: int = 0,
    views: int = 1,
    ks: tuple[int, ...] = (1, 2),
    device: torch.device = torch.device("cpu"),
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    keep_examples: int = 0,
    paths: Paths | None = None,
) -> dict[int | None, EvalResult]:
    """`run_eval` at each of several Mmax values in one pass of max(steps) segments."""
    paths = paths or Paths()
    models = list(model) if isinstance(model, (list, tuple)) else [model]
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    te = task_eval(split)
    qt_all = te.question_task()
    if limit > 0:
        # the first `limit` questions, rounded up to whole tasks
        qt_all = qt_all[np.isin(qt_all, qt_all[:limit])]
    questions = _shard(qt_all, rank, world)
    ks = tuple(sorted(set(ks) | {1, 2}))
    v = te.views(questions, views, seed)
    per_step: dict[int | None, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {s: [] for s in steps}
    for member in models:
        with autocast(device, dtype):
            outputs = _member_outputs(member, v, steps, batch_size, device, paths)
        for s in steps:
            per_step[s].append(outputs[s])
    votes = _members(v, len(models))
    results = {}
    for s in steps:
        preds, q_halt, halt_step = (np.concatenate(parts) for parts in zip(*per_step[s]))
        result = score_views(te, votes, questions, preds, q_halt, halt_step, ks, views, keep_examples, device)
        if len(models) > 1:
            result.metrics["ensemble_members"] = float(len(models))
        if paths.k > 1:
            result.metrics["paths"] = float(paths.k)
        # Inference compute per question: every member's every view runs all its segments on every path.
        result.metrics["inference_flops"] = float(views * paths.k * sum(
            (s or m.cfg.eval_steps) * flops_per_segment(m.cfg, m.seq_len, m.vocab_size, training=False) for m in models))
        results[s] = result
    return results


def _member_outputs(member: Recurrent, v: Views, steps: list[int | None], batch_size: int, device: torch.device,
                    paths: Paths) -> dict[int | None, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """One model's (preds, q_halt, halt_step) for every view, at each of `steps` (None: its eval Mmax)."""
    M = len(v.question)
    want = {s: s or member.cfg.eval_steps for s in steps}
    preds = {s: np.zeros_like(v.labels) for s in steps}
    q_halt = {s: np.zeros(M, dtype=np.float32) for s in steps}
    halt_step = {s: np.zeros(M, dtype=np.float64) for s in steps}
    for start in range(0, M, batch_size):
        sl = slice(start, start + batch_size)
        batch = {key: torch.from_numpy(getattr(v, key)[sl].astype(np.int64)).to(device)
                 for key in ("inputs", "labels", "puzzle_ids")}
        out = predict_at(member, batch, sorted(set(want.values())), paths.for_batch(start))
        for s in steps:
            o = out[want[s]]
            preds[s][sl] = o["preds"].cpu().numpy()
            q_halt[s][sl] = o["q_halt"].float().cpu().numpy()
            halt_step[s][sl] = o["halt_step"].cpu().numpy()
    return {s: (preds[s], q_halt[s], halt_step[s]) for s in steps}


def _members(v: Views, n: int) -> Views:
    """The views of `n` ensemble members, member after member: each (member, view) votes
    once; member 0's un-augmented view is the one `exact_accuracy` reads."""
    if n == 1:
        return v
    return Views(inputs=np.concatenate([v.inputs] * n), labels=np.concatenate([v.labels] * n),
                 puzzle_ids=np.concatenate([v.puzzle_ids] * n), question=np.tile(v.question, n),
                 view=np.tile(v.view, n), aug=np.concatenate([v.aug] * n), question_task=v.question_task,
                 task_names=v.task_names)


def score_views(
    te: TaskEval,
    v: Views,
    questions: np.ndarray,
    preds: np.ndarray,
    q_halt: np.ndarray,
    halt_step: np.ndarray,
    ks: tuple[int, ...] = (1, 2),
    views: int = 1,
    keep_examples: int = 0,
    device: torch.device = torch.device("cpu"),
) -> EvalResult:
    """Vote the views' predictions per question and compute the metrics."""
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    ks = tuple(sorted(set(ks) | {1, 2}))
    M = len(v.question)
    valid = v.labels != IGNORE_LABEL
    view_exact = ((preds == v.labels) | ~valid).all(-1)
    answers = te.answers(preds, v.aug)
    truths = te.truth(questions)
    ranked, correct = [], []
    first_right = np.zeros(len(questions), dtype=bool)
    for qi in range(len(questions)):
        idx = np.flatnonzero(v.question == qi)
        r = rank_answers([answers[i] for i in idx], q_halt[idx])
        c = [te.is_correct(truths[qi], a) for a, _, _ in r]
        ranked.append(r)
        correct.append(c)
        i0 = idx[v.view[idx] == 0][0]
        first_right[qi] = te.is_correct(truths[qi], answers[i0])
    passes = pass_at_k(ranked, correct, v.question_task, ks)
    counts = [((preds == v.labels) & valid).sum(), valid.sum(), first_right.sum(), len(questions),
              ((q_halt > 0) == view_exact).sum(), halt_step.sum(), M] + [x for k in ks for x in passes[k]]
    metrics = _metrics(_summed(counts, world, device), ks, views)
    examples = []
    for i in np.flatnonzero(v.view == 0)[:keep_examples]:
        examples.append({"input": v.inputs[i], "label": v.labels[i], "pred": preds[i]})
    return EvalResult(metrics, ranked, correct, questions, examples)


def _summed(counts: list, world: int, device: torch.device) -> list[float]:
    """The counts summed over the data-parallel ranks, as plain floats (checkpoints load with
    weights_only)."""
    totals = np.array([float(c) for c in counts], dtype=np.float64)
    if world > 1:
        t = torch.from_numpy(totals).to(device)
        dist.all_reduce(t)
        totals = t.cpu().numpy()
    return [float(x) for x in totals]


def _metrics(totals: list[float], ks: tuple[int, ...], views: int) -> dict[str, float]:
    """Named metrics from the summed counts of `score_views` (in its order)."""
    tok_c, tok_n, right, nq, q_agree, steps, m = totals[:7]
    metrics = {
        "exact_accuracy": right / max(nq, 1.0),
        "token_accuracy": tok_c / max(tok_n, 1.0),
        "q_halt_accuracy": q_agree / max(m, 1.0),
        "mean_steps": steps / max(m, 1.0),
        "eval_questions": nq,
        "eval_views": float(views),
    }
    metrics["exact_accuracy_se"] = binomial_se(metrics["exact_accuracy"], nq)
    for i, k in enumerate(ks):
        solved, n_tasks = totals[7 + 2 * i], totals[8 + 2 * i]
        metrics[f"pass@{k}"] = solved / max(n_tasks, 1.0)
        metrics[f"pass@{k}_se"] = binomial_se(metrics[f"pass@{k}"], n_tasks)
    return metrics


def binomial_se(p: float, n: float) -> float:
    """The standard error of a success rate `p` measured on `n` independent questions (or
    tasks): how far another draw of as many test puzzles would move it, sqrt(p(1-p)/n)."""
    return math.sqrt(max(p * (1.0 - p), 0.0) / n) if n > 0 else 0.0
