"""Logging: one setup for every process, text or JSON lines, secrets redacted.

Records carry context an operator needs at 3 a.m. (`server_id`, `phase`,
`job_id`) through `extra=` or `server_logger`; both formats show it. The
`RedactingFilter` sits on every handler, so nothing (messages, arguments,
tracebacks, extra fields) reaches a log with a secret value in it.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import MutableMapping
from datetime import UTC, datetime
from typing import Any, TextIO

from core.platform.settings import Settings
from core.security.redaction import install_log_redaction, redact_record, register_secret

#: Context attributes shown by both formats when a record has them.
CONTEXT_FIELDS = ("server_id", "phase", "job_id", "customer_id", "attempt")
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class RedactingFilter(logging.Filter):
    """Masks secret values in the message, its arguments, the traceback and extras."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


class TextFormatter(logging.Formatter):
    """`2026-11-26T11:43:52Z INFO  worker jobs.creating [server=42 phase=creating] message`."""

    def __init__(self, process_name: str) -> None:
        super().__init__()
        self.process_name = process_name

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        context = " ".join(
            f"{name.removesuffix('_id')}={getattr(record, name)}"
            for name in CONTEXT_FIELDS
            if getattr(record, name, None) is not None
        )
        line = (
            f"{when} {record.levelname:<7} {self.process_name} {record.name}"
            f"{' [' + context + ']' if context else ''} {record.getMessage()}"
        )
        if record.exc_text:
            line += "\n" + record.exc_text
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with every extra field."""

    def __init__(self, process_name: str) -> None:
        super().__init__()
        self.process_name = process_name

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "process": self.process_name,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD:
                data[key] = value if isinstance(value, int | float | bool | None) else str(value)
        if record.exc_text:
            data["traceback"] = record.exc_text
        return json.dumps(data, default=str)


def setup_logging(
    settings: Settings,
    process_name: str,
    stream: TextIO | None = None,
    *,
    log_format: str | None = None,
) -> logging.Handler:
    """Configure the root logger for this process and register the settings' secrets.

    Returns:
        The handler installed (tests attach to it).
    """
    for secret in settings.secret_values():
        register_secret(secret)
    install_log_redaction()
    handler = logging.StreamHandler(stream or sys.stderr)
    fmt = log_format or settings.log_format
    handler.setFormatter(
        JsonFormatter(process_name) if fmt == "json" else TextFormatter(process_name)
    )
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_rachel_cloud", False):
            root.removeHandler(old)
    handler._rachel_cloud = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    # Libraries that are chatty at INFO drown the lines an operator needs.
    for noisy in ("paramiko", "asyncssh", "httpx", "httpcore", "urllib3", "hpack"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return handler


class ServerLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger whose records carry a server id and phase."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        extra = dict(self.extra or {})
        extra.update(kwargs.get("extra") or {})
        kwargs["extra"] = extra
        return msg, kwargs


def server_logger(
    logger: logging.Logger, server_id: int, phase: str | None = None, **context: Any
) -> ServerLogger:
    """`logger` with `server_id` (and `phase`, and any other context) on every record."""
    return ServerLogger(logger, {"server_id": server_id, "phase": phase, **context})
