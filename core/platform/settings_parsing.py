"""The parsers of setting values: text from the environment to typed values.

Each raises ValueError with the reason; `core.platform.settings` names the setting.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Parse `90`, `90s`, `5m`, `2h`, `3d` or `250ms` into seconds.

    Raises:
        ValueError: the text is not a non-negative duration.
    """
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"expected a duration such as 90s, 5m, 2h or 3d, got {text!r}")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]


def parse_period(text: str) -> float:
    """A duration that is the period of something recurring: above zero.

    Raises:
        ValueError: not a duration, or zero.
    """
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError(f"expected a period above zero, got {text!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """A duration as `parse_duration` reads it, in its largest whole unit: `15s`, `10m`, `3d`.

    What is not a whole number of any unit keeps its decimals in seconds
    (`1.5s`), and under a second is shown in ms (`250ms`).
    """
    if seconds < 0:
        return f"-{format_duration(-seconds)}"
    if 0 < seconds < 1:
        return f"{seconds * 1000:g}ms"
    for unit in ("d", "h", "m"):
        size = _DURATION_UNITS[unit]
        if seconds >= size and float(seconds / size).is_integer():
            return f"{int(seconds / size)}{unit}"
    return f"{seconds:g}s"


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def parse_int(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError(f"expected a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise ValueError(f"expected a number from {low} to {high}, got {value}")
        return value

    return parse


def parse_float(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise ValueError(f"expected a number, got {text!r}") from None
        if not low <= value <= high:
            raise ValueError(f"expected a number from {low} to {high}, got {value}")
        return value

    return parse


def parse_choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {text!r}")
        return value

    return parse


def parse_list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def parse_url(*schemes: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip()
        scheme = value.split("://", 1)[0].lower() if "://" in value else ""
        if scheme not in schemes:
            raise ValueError(
                f"expected a URL starting with {' or '.join(schemes)}://, got {value!r}"
            )
        return value.rstrip("/")

    return parse


def parse_name(text: str) -> str:
    value = text.strip().lower()
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,30}", value):
        raise ValueError(f"expected a short hostname label (a-z, 0-9, -), got {text!r}")
    return value


def parse_cidrs(text: str) -> tuple[str, ...]:
    ranges = parse_list(text)
    if not ranges:
        raise ValueError("expected at least one CIDR range")
    for item in ranges:
        try:
            ipaddress.ip_network(item, strict=True)
        except ValueError as exc:
            raise ValueError(f"{item!r} is not a CIDR range ({exc})") from None
    return ranges


def parse_optional_cidrs(text: str) -> tuple[str, ...]:
    return parse_cidrs(text) if text.strip() else ()


#: The phases whose time limit `RACHEL_PHASE_LIMITS` sets.
PHASE_LIMIT_PHASES = ("pending", "creating", "injecting_secrets", "deprovisioning")


def parse_phase_limits(text: str) -> Mapping[str, float]:
    """Parse `phase=duration` pairs, one for every phase, into seconds per phase."""
    limits: dict[str, float] = {}
    for item in parse_list(text):
        phase, sep, duration = item.partition("=")
        phase = phase.strip()
        if not sep or phase not in PHASE_LIMIT_PHASES:
            raise ValueError(
                f"expected phase=duration pairs for {', '.join(PHASE_LIMIT_PHASES)}, got {item!r}"
            )
        limits[phase] = parse_duration(duration)
    missing = [p for p in PHASE_LIMIT_PHASES if p not in limits]
    if missing:
        raise ValueError(f"missing a limit for {', '.join(missing)}")
    # Read-only, so that the frozen settings cannot be changed through it.
    return MappingProxyType({p: limits[p] for p in PHASE_LIMIT_PHASES})


def parse_text(text: str) -> str:
    return text.strip()


def parse_path(text: str) -> Path:
    return Path(text.strip()).expanduser()
