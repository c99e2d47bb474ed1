"""The Prometheus text exposition format (0.0.4): families, samples, histograms.

Written by hand rather than with a client library's registry: every figure of
`/metrics` is counted afresh from shared state (`core.domain.metrics`), so
there is nothing to register, only text to print.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def labels(**values: str) -> str:
    """`{name="value",...}` (escaped), or nothing without labels."""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in values.items())
    return "{" + inner + "}" if inner else ""


def number(value: float) -> str:
    """A sample value as Prometheus prints it."""
    if math.isinf(value):
        return "+Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Exposition:
    """Prometheus text (format 0.0.4), built family by family."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, **label_values: str) -> None:
        self.lines.append(f"{name}{labels(**label_values)} {number(value)}")

    def histogram(
        self,
        name: str,
        help_text: str,
        bounds: Sequence[float],
        cumulative: Sequence[int],
        *,
        total: float,
        count: int,
    ) -> None:
        """A histogram from its cumulative bucket counts (one per bound, then +Inf: `count`)."""
        self.family(name, "histogram", help_text)
        for bound, seen in zip(bounds, cumulative, strict=True):
            self.lines.append(f"{name}_bucket{labels(le=repr(float(bound)))} {seen}")
        self.lines.append(f'{name}_bucket{{le="+Inf"}} {count}')
        self.lines.append(f"{name}_sum {number(total)}")
        self.lines.append(f"{name}_count {count}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def cumulative_counts(values: Sequence[float], bounds: Sequence[float]) -> list[int]:
    """How many of `values` are at most each bound."""
    ordered = sorted(values)
    return [bisect.bisect_right(ordered, bound) for bound in bounds]
