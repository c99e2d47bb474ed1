"""The exception hierarchy of rachel-cloud.

Every error we raise derives from `RachelError`, which carries a stable,
machine-readable `code` (as hcloud-python's `APIException` does) so that the
web app maps errors to JSON responses in one place and the CLI prints a clear
message instead of a traceback. Library errors are translated at the edge:
`raise OurError(...) from exc`.
"""

from __future__ import annotations


class RachelError(Exception):
    """Root of every rachel-cloud error.

    Attributes:
        code: a stable, machine-readable identifier such as `invalid_setting`.
        message: what went wrong, safe to show an operator (never a secret).
        transient: True when retrying the same operation later may succeed.
        correlation_id: the provider's request id when the error came from one.
    """

    code = "error"
    transient = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        transient: bool | None = None,
        correlation_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if transient is not None:
            self.transient = transient
        self.correlation_id = correlation_id

    def __str__(self) -> str:
        return self.message


class SettingsError(RachelError):
    """A setting is invalid or missing; the message names it."""

    code = "invalid_setting"

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


class CryptoError(RachelError):
    """A ciphertext cannot be opened: unknown key, wrong binding or tampering."""

    code = "crypto_error"


class DatabaseError(RachelError):
    """The database is unreachable or its schema does not match this release."""

    code = "database_error"


class SchemaVersionError(DatabaseError):
    """The database schema is older or newer than this release expects."""

    code = "schema_version"


class InvalidTransition(RachelError):
    """A lifecycle transition that the state machine does not allow."""

    code = "invalid_transition"


class RedisUnavailable(RachelError):
    """Redis cannot be reached or the embedded server would not start."""

    code = "redis_unavailable"
    transient = True
