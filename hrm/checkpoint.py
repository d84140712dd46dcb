"""Checkpoint folders: atomic writes, a manifest readable without torch, loading.

A checkpoint is a folder `step_<N>/` holding `checkpoint.pt` (model, optimiser,
ACT carry, data-stream position, RNG states, config, metrics), `config.yaml` and
`manifest.json`: step, eval round, metrics, the code version that wrote it and
the size and sha256 of every file.
The manifest lets callers (the artifact store, the Ray driver) learn a
checkpoint's step and checksum without unpickling its tensors.

A *seeds* checkpoint (a trial trained with several seeds in lockstep) is a folder of
`seed_<s>/` checkpoint folders, one per seed, with a manifest of its own: the step,
the metrics over the seeds (mean and `_std`), each seed's metrics and every file.
Evaluating it votes across its seeds (`hrm.inference.load_members`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from hrm.config import Config, ConfigError, from_dict, save_config
from hrm.storage import atomic_path

CHECKPOINT_FILE = "checkpoint.pt"
MANIFEST_FILE = "manifest.json"
_HASH_CHUNK = 1 << 20  # bytes read at a time when hashing (1 MiB)
_GIT_TIMEOUT_S = 5  # seconds allowed for `git describe`


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """`git describe --always --dirty` of the repository holding the hrm package, else hrm.__version__."""
    import hrm

    git = ["git", "-C", str(Path(hrm.__file__).resolve().parent)]
    try:
        # The package must be tracked there (not an installed copy inside some other repository).
        if subprocess.run([*git, "ls-files", "--error-unmatch", "__init__.py"], capture_output=True,
                          timeout=_GIT_TIMEOUT_S).returncode == 0:
            out = subprocess.run([*git, "describe", "--always", "--dirty"], capture_output=True, text=True,
                                 timeout=_GIT_TIMEOUT_S)
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return hrm.__version__


def sha256_of(path: str, filesystem: pafs.FileSystem | None = None) -> str:
    """sha256 of one file, local or on any pyarrow filesystem (one routine for checkpoints and the store)."""
    h = hashlib.sha256()
    with (filesystem or pafs.LocalFileSystem()).open_input_stream(path) as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def checkpoint_dirs(out_dir: str | Path, root: str | Path | None = None) -> list[Path]:
    """Complete checkpoint folders under out_dir/checkpoints (or `root`), oldest first."""
    root = Path(root) if root is not None else Path(out_dir) / "checkpoints"
    if not root.exists():
        return []
    # the manifest is written last, inside the temporary folder, before the rename
    dirs = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("step_") and (p / MANIFEST_FILE).exists()]
    return sorted(dirs, key=lambda p: int(p.name.split("_")[1]))


def _publish(root: Path, step: int, fill, keep: int) -> Path:
    """root/step_N written atomically: `fill(tmp)` writes the files into a temporary folder,
    which is renamed into place; the newest `keep` step folders are kept."""
    final = root / f"step_{step:08d}"
    with atomic_path(final, folder=True) as tmp:  # a rerun from an earlier checkpoint may reach this step again
        tmp.mkdir()
        fill(tmp)
    for old in checkpoint_dirs(root, root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def write_checkpoint(
    out_dir: str | Path, *, step: int, eval_round: int, payload: dict[str, Any], cfg: Config,
    metrics: dict[str, float], keep: int, root: str | Path | None = None,
) -> Path:
    """Write out_dir/checkpoints/step_N (or root/step_N) atomically, keep the newest `keep`."""
    def fill(tmp: Path) -> None:
        _fill(tmp, payload, cfg, {"step": step, "eval_round": eval_round, "metrics": metrics})

    return _publish(Path(root) if root is not None else Path(out_dir) / "checkpoints", step, fill, keep)


def write_checkpoint_folder(folder: str | Path, *, payload: dict[str, Any], cfg: Config, manifest: dict[str, Any]) -> Path:
    """One checkpoint folder at `folder` (atomically): checkpoint.pt, config.yaml and a manifest
    holding `manifest` (step, eval_round, metrics, and e.g. what it was imported from)."""
    with atomic_path(folder, folder=True) as tmp:
        tmp.mkdir()
        _fill(tmp, payload, cfg, manifest)
    return Path(folder)


def _fill(tmp: Path, payload: dict[str, Any], cfg: Config, manifest: dict[str, Any]) -> None:
    import torch  # here: the artifact store reads manifests without torch

    torch.save(payload, tmp / CHECKPOINT_FILE)
    save_config(cfg, tmp / "config.yaml")
    files = {p.name: {"bytes": p.stat().st_size, "sha256": sha256_of(str(p))} for p in sorted(tmp.iterdir())}
    manifest = {**manifest, "code_version": code_version(), "files": files}
    (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1, sort_keys=True))


def write_seeds_checkpoint(out_dir: str | Path, *, step: int, eval_round: int, metrics: dict[str, float],
                           members: dict[int, Path], keep: int) -> Path:
    """out_dir/checkpoints/step_N holding each seed's checkpoint folder as seed_<s>/ (hard
    links, so no bytes are copied on one disk) and a manifest over all of them."""
    def fill(tmp: Path) -> None:
        files, seed_metrics = {}, {}
        for seed, folder in sorted(members.items()):
            sub = tmp / f"seed_{seed}"
            sub.mkdir()
            manifest = read_manifest(str(folder))
            for name in [*manifest["files"], MANIFEST_FILE]:
                try:
                    os.link(Path(folder) / name, sub / name)
                except OSError:  # another filesystem, or no hard links there
                    shutil.copy2(Path(folder) / name, sub / name)
            for name, info in manifest["files"].items():
                files[f"{sub.name}/{name}"] = info
            files[f"{sub.name}/{MANIFEST_FILE}"] = {"bytes": (sub / MANIFEST_FILE).stat().st_size,
                                                    "sha256": sha256_of(str(sub / MANIFEST_FILE))}
            seed_metrics[str(seed)] = manifest["metrics"]
        manifest = {"step": step, "eval_round": eval_round, "metrics": metrics, "seeds": sorted(members),
                    "seed_metrics": seed_metrics, "code_version": code_version(), "files": files}
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1, sort_keys=True))

    return _publish(Path(out_dir) / "checkpoints", step, fill, keep)


def content_digest(manifest: dict[str, Any]) -> str:
    """One sha256 for a checkpoint's content: checkpoint.pt's; for a seeds checkpoint, the
    sha256 of its files' names and sha256s (the artifact index's `sha256`)."""
    if "seeds" not in manifest:
        return manifest["files"][CHECKPOINT_FILE]["sha256"]
    lines = "".join(f"{name} {info.get('sha256')}\n" for name, info in sorted(manifest["files"].items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def seed_folders(folder: str | Path) -> list[Path] | None:
    """The seed_<s> checkpoint folders of a seeds checkpoint, or None for a single one."""
    manifest = read_manifest(str(folder))
    return [Path(folder) / f"seed_{s}" for s in manifest["seeds"]] if "seeds" in manifest else None


class CheckpointError(ConfigError):
    """A checkpoint that is missing, damaged or not one of ours; the message is one line."""


def read_manifest(folder: str, filesystem: pafs.FileSystem | None = None) -> dict[str, Any]:
    """The manifest of a checkpoint folder (local path, or a path on `filesystem`)."""
    fs = filesystem or pafs.LocalFileSystem()
    try:
        with fs.open_input_stream(f"{str(folder).rstrip('/')}/{MANIFEST_FILE}") as f:
            manifest = json.loads(f.read())
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {folder}: no {MANIFEST_FILE} (not a checkpoint folder hrm wrote)") from None
    except (ValueError, UnicodeDecodeError):
        raise CheckpointError(f"checkpoint {folder}: {MANIFEST_FILE} is not JSON") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict) \
            or (CHECKPOINT_FILE not in manifest["files"] and not isinstance(manifest.get("seeds"), list)):
        raise CheckpointError(f"checkpoint {folder}: {MANIFEST_FILE} does not list {CHECKPOINT_FILE}")
    return manifest


def verify_checkpoint(folder: str, filesystem: pafs.FileSystem | None = None,
                      sha256: str | None = None) -> dict[str, Any]:
    """The manifest of a checkpoint folder once every file it lists has its size and sha256
    (and checkpoint.pt the `sha256` an artifact index holds, if given); else CheckpointError
    naming the file. The one check of checkpoints: on load, on resume and in the store."""
    fs = filesystem or pafs.LocalFileSystem()
    folder = str(folder).rstrip("/")
    manifest = read_manifest(folder, fs)
    if sha256 is not None and content_digest(manifest) != sha256:
        raise CheckpointError(f"checkpoint {folder}: its manifest and the artifact index disagree on its sha256")
    for name, want in sorted(manifest["files"].items()):
        info = fs.get_file_info(f"{folder}/{name}")
        if info.type != pafs.FileType.File:
            raise CheckpointError(f"checkpoint {folder}: {name} is missing")
        if want.get("bytes") is not None and info.size != want["bytes"]:
            raise CheckpointError(f"checkpoint {folder}: {name} has {info.size} bytes, its manifest says "
                                  f"{want['bytes']} (truncated or replaced)")
        if sha256_of(f"{folder}/{name}", fs) != want.get("sha256"):
            raise CheckpointError(f"checkpoint {folder}: {name} fails its sha256 check (damaged)")
    return manifest


def load_checkpoint(path: str | Path, map_location: Any = "cpu", verified: bool = False) -> dict[str, Any]:
    """The payload of a checkpoint folder (or its checkpoint.pt), verified against its manifest
    unless the caller just did (`verified`: no second read and hash of every file)."""
    import torch

    path = Path(path)
    folder = path if path.is_dir() else path.parent
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    if not path.is_dir() and path.name != CHECKPOINT_FILE:
        raise CheckpointError(f"{path} is not a checkpoint: give a checkpoint folder (with {CHECKPOINT_FILE})")
    if not verified:
        verify_checkpoint(str(folder))
    if path.is_dir() and seed_folders(folder):
        raise CheckpointError(f"checkpoint {folder} holds one checkpoint per seed: load one of its seed_<s> folders "
                              "(hrm eval takes the whole folder and votes across the seeds)")
    try:
        payload = torch.load(folder / CHECKPOINT_FILE, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many kinds for a file it cannot read
        raise CheckpointError(f"checkpoint {folder}: {CHECKPOINT_FILE} cannot be read ({type(exc).__name__})") from None
    missing = [k for k in ("model", "config", "task", "step") if not isinstance(payload, dict) or k not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {folder}: {CHECKPOINT_FILE} lacks {', '.join(missing)}")
    return payload


def fits(model: Any, weights: dict[str, Any], what: str, fix: str) -> None:
    """CheckpointError (one line) unless `weights` has exactly `model`'s tensors and shapes:
    torch's own load_state_dict error is a page of key lists."""
    mine = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in weights.items()}
    wrong = [f"{k} {theirs[k]} vs {mine[k]}" for k in mine if k in theirs and theirs[k] != mine[k]]
    missing, extra = sorted(set(mine) - set(theirs)), sorted(set(theirs) - set(mine))
    if wrong or missing or extra:
        parts = [f"{len(wrong)} of other shape ({', '.join(wrong[:2])})" if wrong else "",
                 f"{len(missing)} missing ({', '.join(missing[:2])})" if missing else "",
                 f"{len(extra)} extra ({', '.join(extra[:2])})" if extra else ""]
        raise CheckpointError(f"{what}: its weights do not fit the model: {'; '.join(p for p in parts if p)}; {fix}")


def load_model(path: str | Path, device: Any = "cpu", verified: bool = False):
    """(model, cfg, payload): a ready (eval-mode) model from a checkpoint folder or file."""
    from hrm.model import build_model

    payload = load_checkpoint(path, map_location=device, verified=verified)
    cfg = from_dict(payload["config"])
    model = build_model(cfg, payload["task"]).to(device)
    fits(model, payload["model"], f"checkpoint {path}", "its config.yaml does not describe its checkpoint.pt")
    model.load_state_dict(payload["model"])
    model.eval()
    return model, cfg, payload
