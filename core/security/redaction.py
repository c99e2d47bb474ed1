"""Redaction of secret values from any text that leaves the process.

Two nets, because one is not enough:
- known values: every secret this process has decrypted, generated or read
  from settings is registered here, and `redact` replaces each occurrence;
- known shapes: private keys, webhook secrets, bearer tokens, Telegram bot
  tokens and Anthropic credentials are replaced even if never registered.

The logging filter (`core.platform.logs`) runs every record through `redact`; the
web app and the TUI use it for anything that shows an error.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict

MASK = "[REDACTED]"
#: Shorter values are not registered: they would mask ordinary words.
MIN_SECRET_LENGTH = 8
#: A worker decrypts a few values per job; keep the most recent ones.
MAX_REGISTERED = 20_000
_PREFIX = MIN_SECRET_LENGTH

_PATTERNS = (
    re.compile(
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)", re.DOTALL
    ),
    re.compile(r"whsec_[A-Za-z0-9+/=_-]{8,}"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"\b\d{6,12}:[A-Za-z0-9_-]{30,}\b"),  # Telegram bot token
    re.compile(r"sk-ant-[A-Za-z0-9_-]{8,}"),  # Anthropic API keys and OAuth tokens
)


class SecretRegistry:
    """A bounded set of secret values, indexed by prefix so that redaction is linear."""

    def __init__(self, capacity: int = MAX_REGISTERED) -> None:
        self._capacity = capacity
        self._values: OrderedDict[str, None] = OrderedDict()
        self._by_prefix: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def add(self, value: str) -> None:
        if len(value) < MIN_SECRET_LENGTH:
            return
        with self._lock:
            if value in self._values:
                self._values.move_to_end(value)
                return
            self._values[value] = None
            self._by_prefix.setdefault(value[:_PREFIX], set()).add(value)
            while len(self._values) > self._capacity:
                old, _ = self._values.popitem(last=False)
                bucket = self._by_prefix.get(old[:_PREFIX])
                if bucket is not None:
                    bucket.discard(old)
                    if not bucket:
                        del self._by_prefix[old[:_PREFIX]]

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self._by_prefix.clear()

    def __len__(self) -> int:
        return len(self._values)

    def redact(self, text: str) -> str:
        """Replace every registered value found in `text` with the mask."""
        if not self._by_prefix or len(text) < MIN_SECRET_LENGTH:
            return text
        out: list[str] = []
        start = 0  # first character not yet copied to `out`
        i = 0
        n = len(text)
        with self._lock:
            while i <= n - MIN_SECRET_LENGTH:
                bucket = self._by_prefix.get(text[i : i + _PREFIX])
                match = None
                if bucket:
                    for value in sorted(bucket, key=len, reverse=True):
                        if text.startswith(value, i):
                            match = value
                            break
                if match is None:
                    i += 1
                    continue
                out.append(text[start:i])
                out.append(MASK)
                i += len(match)
                start = i
        if not out:
            return text
        out.append(text[start:])
        return "".join(out)


_REGISTRY = SecretRegistry()


def register_secret(value: str | None) -> None:
    """Remember `value` as a secret of this process, so logs never show it.

    The first secret a process registers also switches on the redaction of
    every log record it creates, whoever logs it (httpx logging a Bot API URL
    with a token in it, say) and whether or not logging was set up.
    """
    if value:
        install_log_redaction()
        _REGISTRY.add(value)
        # Multi-line secrets (private keys) also leak line by line in tracebacks.
        if "\n" in value:
            for raw_line in value.splitlines():
                line = raw_line.strip()
                if not line.startswith("-----"):  # PEM armour is not secret, and common
                    _REGISTRY.add(line)


def redact(text: str) -> str:
    """`text` with every registered secret and every secret-shaped token masked."""
    for pattern in _PATTERNS:
        if pattern.groups:
            text = pattern.sub(lambda m: m.group(1) + MASK, text)
        else:
            text = pattern.sub(MASK, text)
    return _REGISTRY.redact(text)


def registry() -> SecretRegistry:
    """The process-wide registry (tests inspect and clear it)."""
    return _REGISTRY


_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def redact_record(record: logging.LogRecord) -> None:
    """Mask secrets in a log record: message and arguments, traceback, stack, extras."""
    try:
        message = record.getMessage()
    except Exception:  # a bad format string must not lose the record
        message = f"{record.msg!r} % {record.args!r}"
    record.msg = redact(message)
    record.args = None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
        # The formatted text is what gets written; drop the live objects so that
        # no other formatter renders an unredacted copy.
        record.exc_info = None
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    for key, value in list(vars(record).items()):
        if key not in _STANDARD_ATTRS and isinstance(value, str):
            setattr(record, key, redact(value))


_factory_lock = threading.Lock()
_factory_installed = False


def install_log_redaction() -> None:
    """Redact every log record at creation (idempotent, once per process).

    Handler filters guard only the handlers they sit on; a record factory also
    covers handlers that others attach (pytest's, an error reporter's).
    """
    global _factory_installed  # noqa: PLW0603 - once per process
    with _factory_lock:
        if _factory_installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: object, **kwargs: object) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            redact_record(record)
            return record

        logging.setLogRecordFactory(factory)
        _factory_installed = True
