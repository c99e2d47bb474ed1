"""What a VPS's install reported in its callback, and whether it fails the server.

The bootstrap reports the outcome of the install steps (`core.cloud.vps_contract`)
with the host key. A failed step, or a clone at another commit than the one the
server was created with, fails the server at once with a reason an operator can
act on: the step, its exit status, the end of its output and cloud-init's own
errors, redacted and bounded (it is stored, shown in the TUI and the status API).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.security.redaction import redact

#: Longest reason stored on the server and its event.
MAX_REASON = 1500
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_BREAKS = re.compile(r"\s*\n\s*")


@dataclass(frozen=True)
class InstallOutcome:
    """The install result as the VPS reported it (validated by the web edge).

    Attributes:
        ok: every step succeeded.
        failed_step: the step that failed (None when ok, or when none reported).
        exit_status: the failed step's exit status, when a process ran.
        log_tail: the end of the failed step's output (the VPS removed the token).
        cloud_init_status: `cloud-init status` (`running` while it runs the install).
        cloud_init_errors: cloud-init's first errors.
        commit: the commit checked out in the clone, if any.
        bun_version: what `bun --version` said, if the step ran.
        claude_code_version: what `claude --version` said, if the step ran.
    """

    ok: bool
    failed_step: str | None = None
    exit_status: int | None = None
    log_tail: str = ""
    cloud_init_status: str = "unknown"
    cloud_init_errors: tuple[str, ...] = ()
    commit: str | None = None
    bun_version: str | None = None
    claude_code_version: str | None = None

    def describe(self) -> str:
        """What was installed, for the timeline of a successful install."""
        return (
            f"Rachel8 {self.commit or '(no commit)'}, Bun {self.bun_version or '?'}, "
            f"Claude Code {self.claude_code_version or '?'}"
        )


def one_line(text: str) -> str:
    """`text` on one line: line breaks become ` | `, control characters go."""
    return _CONTROL.sub("", _BREAKS.sub(" | ", text.strip()))


def failure_reason(outcome: InstallOutcome, expected_commit: str | None) -> str | None:
    """Why `outcome` fails the server, redacted and bounded; None when it does not.

    Args:
        outcome: what the VPS reported.
        expected_commit: the commit the server was created with (None: unknown,
            a server created before commits were recorded; any commit passes).
    """
    if outcome.ok and (expected_commit is None or outcome.commit == expected_commit):
        return None
    if outcome.ok:
        head = (
            f"install checked out Rachel8 commit {outcome.commit or '(none reported)'}, "
            f"expected {expected_commit}"
        )
        tail = ""
    else:
        where = f"at step '{outcome.failed_step}'" if outcome.failed_step else "before any step ran"
        status = f" (exit {outcome.exit_status})" if outcome.exit_status is not None else ""
        head = f"install failed {where}{status}"
        tail = one_line(outcome.log_tail)
    if outcome.cloud_init_errors:
        errors = "; ".join(one_line(e) for e in outcome.cloud_init_errors)
        head += f" [cloud-init {one_line(outcome.cloud_init_status)}: {errors}]"
    head = redact(head)[: MAX_REASON // 2]
    if not tail:
        return head
    # The end of the output is where the error is: keep it, cut its beginning.
    room = MAX_REASON - len(head) - 2
    return f"{head}: {redact(tail)[-room:]}"
