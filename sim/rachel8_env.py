"""Rachel8's `.env`, as its own code reads and validates it, written independently.

Not `core.cloud.rachel8`: the simulator checks what the control plane
writes against Rachel8's published rules (`../shared/rachel8/README.md`),
so a mistake in the control plane's copy of them fails a test. Parsing
follows Bun's dotenv (`KEY=value`, quotes, `#` comments, `$VAR`
expansion); validation follows Rachel8's schema (zod: coerce, enum and
default semantics) and prints what Rachel8 prints.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*=\s*(.*)$")
_EXPAND = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
BOT_TOKEN = re.compile(r"^\d{8,}:[A-Za-z0-9_-]{35,}$")
NODE_ENVS = ("development", "production", "test")
LOG_LEVELS = ("debug", "info", "warn", "error")
AI_PROVIDERS = ("claudecode", "codex", "claude")

TOKEN_MESSAGE = (
    "Invalid format. Expected: 123456789:ABCdef... Get yours from @BotFather on Telegram"  # noqa: S105
)
OWNER_MESSAGE = (
    "Must be a positive integer. Send /start to @userinfobot on Telegram to find your user ID"
)


def _unquote(raw: str) -> tuple[str, bool]:
    """The value and whether it was quoted (quoted values are not expanded)."""
    raw = raw.strip()
    if raw[:1] in ("'", '"', "`"):
        quote = raw[0]
        end = raw.find(quote, 1)
        if end > 0:
            value = raw[1:end]
            return (value.replace("\\n", "\n") if quote == '"' else value), quote == "'"
    # Unquoted: a `#` after whitespace starts a comment.
    return re.split(r"\s+#", raw, maxsplit=1)[0].strip(), False


def parse_dotenv(text: str, environ: Mapping[str, str]) -> dict[str, str]:
    """`.env` text to its assignments, `$VAR` expanded from earlier lines and `environ`."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            continue
        value, literal = _unquote(match.group(2))
        if not literal:
            value = _EXPAND.sub(
                lambda m: (
                    values.get(m.group(1) or m.group(2), "")
                    or environ.get(m.group(1) or m.group(2), "")
                ),
                value,
            )
        values[match.group(1)] = value
    return values


def _js_number(text: str) -> float:
    """JavaScript's `Number(text)`, for what a `.env` value can hold."""
    stripped = text.strip()
    if not stripped:
        return 0.0
    try:
        if re.fullmatch(r"0[xX][0-9a-fA-F]+", stripped):
            return float(int(stripped, 16))
        if re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?Infinity", stripped):
            return float(stripped.replace("Infinity", "inf"))
    except ValueError:
        pass
    return math.nan


def _enum(value: str | None, allowed: tuple[str, ...]) -> str | None:
    if value is None or value in allowed:
        return None
    expected = " | ".join(f"'{a}'" for a in allowed)
    return f"Invalid enum value. Expected {expected}, received '{value}'"


def _owner_issue(value: str | None) -> str | None:
    number = _js_number(value) if value is not None else math.nan
    if math.isnan(number):
        return "Expected number, received nan"
    if math.isinf(number) or number != int(number):
        return "Expected integer, received float"
    return OWNER_MESSAGE if number <= 0 else None


def validate(env: Mapping[str, str]) -> list[tuple[str, str]]:
    """Rachel8's schema: (key, message) for every issue, in schema order."""
    issues: list[tuple[str, str | None]] = []
    token = env.get("TELEGRAM_BOT_TOKEN")
    issues.append(
        (
            "TELEGRAM_BOT_TOKEN",
            "Required" if token is None else None if BOT_TOKEN.match(token) else TOKEN_MESSAGE,
        )
    )
    issues.append(("OWNER_TELEGRAM_USER_ID", _owner_issue(env.get("OWNER_TELEGRAM_USER_ID"))))
    shared = env.get("SHARED_FOLDER_PATH")
    issues.append(
        (
            "SHARED_FOLDER_PATH",
            "Required" if shared is None else None if shared else "Shared folder path is required",
        )
    )
    issues.append(("NODE_ENV", _enum(env.get("NODE_ENV"), NODE_ENVS)))
    issues.append(("LOG_LEVEL", _enum(env.get("LOG_LEVEL"), LOG_LEVELS)))
    issues.append(("AI_PROVIDER", _enum(env.get("AI_PROVIDER"), AI_PROVIDERS)))
    return [(key, message) for key, message in issues if message is not None]


def ai_provider(env: Mapping[str, str]) -> str:
    """The provider Rachel8 uses: `codex` by default, `claude` meaning `claudecode`."""
    value = env.get("AI_PROVIDER", "codex")
    return "claudecode" if value == "claude" else value


def report(issues: list[tuple[str, str]]) -> tuple[str, ...]:
    """What Rachel8 prints before exiting 1 on an invalid configuration."""
    lines = ["Invalid environment configuration:"]
    lines += [f"  {key}: {message}" for key, message in issues]
    lines.append("Run the setup wizard to fix: bun run setup")
    return tuple(lines)
