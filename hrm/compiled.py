"""torch.compile of what every setting of a search shares, and a cache of it the search's
trials share.

What is compiled: each transformer `Block` (regional compilation). Every family runs its
blocks with the same shapes whatever its H/L cycles, T and n, Mmax or halting settings,
and torch.compile (with `inline_inbuilt_nn_modules`, torch's default) treats a block's
weights as inputs, so every block of every module reuses one graph per grad mode: two
graphs in training (with and without grad), none recompiled when another setting runs in
the same process. Compiling the whole recurrence instead fuses a little more but makes one
graph per (family, cycles, gradient) setting.

Where it is cached: the inductor and AOTAutograd caches on the node (torch's own, under
TORCHINDUCTOR_CACHE_DIR), and torch's portable cache artifacts
(`torch.compiler.save_cache_artifacts`) in `train.compile_cache`, a folder or URI the search
points at its storage: one file per (torch, device kind, block shapes, dtype, batch), with a
header naming them. A file that is corrupt, or made by another torch or for other shapes,
is ignored with one warning line: the run compiles afresh.

When a run compiles (`train.compile: auto`): hrm.compile_plan.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from hrm.model.layers import Block
from hrm.storage import exists, read_bytes, write_bytes

MAGIC = b"hrm-compile-cache 1\n"


def compile_blocks(model: nn.Module) -> int:
    """Compile every `Block` of `model` in place (module docstring); the number compiled."""
    blocks = [m for m in model.modules() if isinstance(m, Block)]
    for block in blocks:
        block.compile()
    return len(blocks)


def device_kind(device: torch.device) -> str:
    """What compiled code depends on besides the shapes: the GPU and its compute capability,
    or the CPU's architecture and the instruction sets inductor generates code for."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return f"cuda:{torch.cuda.get_device_name(device)}:sm{major}{minor}"
    return f"cpu:{platform.machine()}:{torch.backends.cpu.get_cpu_capability()}"


def cache_key(model_cfg: Any, seq_len: int, batch: int, dtype: torch.dtype, device: torch.device) -> dict[str, Any]:
    """What a cache file is valid for: torch, the device kind and the block graph's shapes."""
    m = model_cfg
    return {"torch": torch.__version__, "device": device_kind(device), "dtype": str(dtype).removeprefix("torch."),
            "batch": batch, "seq_len": seq_len,
            "block": [m.hidden_size, m.num_heads, m.expansion, m.rms_norm_eps, m.mixer, m.pos_encoding,
                      m.arch == "urm", m.prefix_len]}  # URM's blocks carry its ConvSwiGLU


def digest(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


def cache_file(folder: str, key: dict[str, Any]) -> str:
    return f"{folder.rstrip('/')}/{digest(key)}.bin"


def load_cache(folder: str, key: dict[str, Any], warn: Callable[[str], None]) -> bool:
    """Pre-load torch's caches from the file for `key` in `folder`; False (and one `warn`
    line when a file was there but could not be used) if there is none to use."""
    path = cache_file(folder, key)
    if not exists(path):
        return False
    data = read_bytes(path)
    head, _, payload = data[len(MAGIC):].partition(b"\n")
    try:
        found = json.loads(head) if data.startswith(MAGIC) else None
    except ValueError:
        found = None
    if found != key:
        why = "not a compile cache" if found is None else "made for " + ", ".join(
            f"{k} {found.get(k)!r}" for k in key if found.get(k) != key[k])
        warn(f"compile cache {path}: {why}; compiling afresh")
        return False
    torch_log = logging.getLogger("torch.compiler._cache")  # it logs a traceback; ours is the one line
    level = torch_log.level
    torch_log.setLevel(logging.CRITICAL)
    try:
        info = torch.compiler.load_cache_artifacts(payload)  # None when it cannot read them
        why = None if info is not None else "its artifacts do not deserialise"
    except Exception as exc:  # noqa: BLE001 - any unreadable cache is only a slower start
        why = f"{type(exc).__name__}: {exc}"
    finally:
        torch_log.setLevel(level)
    if why:
        warn(f"compile cache {path}: unreadable ({why}); compiling afresh")
    return why is None


def save_cache(folder: str, key: dict[str, Any]) -> bool:
    """Write what this process compiled (or loaded) to the file for `key`; False if nothing."""
    artifacts = torch.compiler.save_cache_artifacts()
    if not artifacts:
        return False
    write_bytes(cache_file(folder, key), MAGIC + json.dumps(key, sort_keys=True).encode() + b"\n" + artifacts[0])
    return True
