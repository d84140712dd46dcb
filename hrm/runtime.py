"""Where and how a run computes: the device (CUDA, Apple's MPS or the CPU), the dtype
(`train.dtype: auto` is bfloat16 where the hardware multiplies it natively), torch.compile,
and the data-parallel rank when torch.distributed is initialised (e.g. by Ray Train)."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from hrm.config import Config, ConfigError


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    dtype: torch.dtype
    compile: str  # on | off | auto (hrm.compile_plan decides auto by measurement)
    rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AVX512-BF16 or AMX; oneDNN's check).
    Without it bf16 is emulated and slower than float32."""
    return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def auto_dtype(device_type: str) -> str:
    """train.dtype auto: bfloat16 where the hardware computes it natively (CUDA, bf16 CPUs),
    float32 elsewhere (other CPUs, MPS); why: docs/decisions/bf16-on-cpus.md."""
    return "bfloat16" if device_type == "cuda" or (device_type == "cpu" and cpu_has_bf16()) else "float32"


def resolve_dtype(name: str, device_type: str) -> torch.dtype:
    """train.dtype (`auto` resolved by `auto_dtype`) as a torch dtype on this kind of device."""
    return getattr(torch, name if name != "auto" else auto_dtype(device_type))


def pick_device(requested: str, cuda: bool, mps: bool) -> str:
    """The device type for train.device `requested` given what the machine has: auto
    takes CUDA, else Apple's MPS, else the CPU; asking for a missing one is an error."""
    have = {"cuda": cuda, "mps": mps, "cpu": True}
    if requested == "auto":
        return next(d for d in ("cuda", "mps", "cpu") if have[d])
    if not have[requested]:
        raise ConfigError(f"train.device is '{requested}' but no {requested.upper()} device is available "
                          "(use 'auto' or 'cpu')")
    return requested


def resolve_runtime(cfg: Config) -> Runtime:
    t = cfg.train
    kind = pick_device(t.device, torch.cuda.is_available(), _mps_available())
    distributed = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    use_cuda = kind == "cuda"
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device("cuda", local % torch.cuda.device_count())
        torch.cuda.set_device(device)
    else:
        device = torch.device(kind)  # MPS: float32 and eager unless asked (no float64: see losses)
    compile_mode = "off" if kind == "mps" and t.compile == "auto" else t.compile  # MPS: eager unless asked
    if t.global_batch_size % world:
        raise ConfigError(
            f"train.global_batch_size ({t.global_batch_size}) must be divisible by the number of workers ({world})"
        )
    return Runtime(device, resolve_dtype(t.dtype, kind), compile_mode, rank, world)


def all_reduce_grads(params: list[torch.nn.Parameter], world: int) -> None:
    if world == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def autocast(device: torch.device, dtype: torch.dtype):
    """Mixed precision in `dtype` on `device` (nothing to do for float32)."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
