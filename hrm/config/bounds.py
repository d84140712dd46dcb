"""Bounds declared beside each config field (`x: Annotated[float, Range(gt=0)]`) and the one
check that enforces them for any dataclass, search-space sections included."""

from __future__ import annotations

import functools
import math
import typing
from dataclasses import dataclass
from typing import Annotated, Any

from hrm.errors import ConfigError


@dataclass(frozen=True)
class Range:
    """A field's bounds, declared beside it: `x: Annotated[float, Range(gt=0)]`. Every float
    field must also be finite. `checked(obj, section)` enforces both for any dataclass."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def why(self, v: float) -> str | None:
        """None if `v` is within the bounds, else what is allowed ("in [0, 1]", ">= 1")."""
        ok = ((self.ge is None or v >= self.ge) and (self.gt is None or v > self.gt)
              and (self.le is None or v <= self.le) and (self.lt is None or v < self.lt))
        if ok:
            return None
        lo = f"[{self.ge:g}" if self.ge is not None else f"({self.gt:g}" if self.gt is not None else ""
        hi = f"{self.le:g}]" if self.le is not None else f"{self.lt:g})" if self.lt is not None else ""
        if lo and hi:
            return f"in {lo}, {hi}"
        return f"{'>=' if lo[0] == '[' else '>'} {lo[1:]}" if lo else f"{'<=' if hi[-1] == ']' else '<'} {hi[:-1]}"


AtLeast1 = Annotated[int, Range(ge=1)]
NonNeg = Annotated[float, Range(ge=0)]


@functools.cache
def _bounds(cls: type) -> dict[str, tuple[Range | None, bool]]:
    """field name -> (its Range or None, whether it holds floats)."""
    out = {}
    for name, tp in typing.get_type_hints(cls, include_extras=True).items():
        ranges = [m for m in getattr(tp, "__metadata__", ()) if isinstance(m, Range)]
        base = typing.get_args(tp)[0] if ranges else tp
        floats = base is float or float in typing.get_args(base)
        out[name] = (ranges[0] if ranges else None, floats)
    return out


def checked(obj: Any, section: str, error: type[ConfigError] = ConfigError) -> None:
    """Raise ConfigError naming `section.field` if a field is out of its declared Range or a
    float field is not finite (NaN and infinities are never meant)."""
    for name, (bounds, floats) in _bounds(type(obj)).items():
        v = getattr(obj, name)
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if floats and not math.isfinite(v):
            raise error(f"{section}.{name} must be a finite number, got {v}")
        why = bounds.why(v) if bounds else None
        if why:
            raise error(f"{section}.{name} must be {why}, got {v:g}")
