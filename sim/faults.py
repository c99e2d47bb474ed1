"""Fault injection: what can go wrong, as data, and the pure decisions.

Faults are a JSON document (setting `RACHEL_SIM_FAULTS`, or `PUT /_sim/faults`):

```json
{
  "errors": {"create_server": {"code": "server_error", "rate": 1.0, "count": 2}},
  "rate_limit_burst": 3,
  "action_delay": 5.0,
  "action_errors": {"create_server": 1.0},
  "never_running": 1.0,
  "no_callback": {"rate": 0, "names": ["rc-7-*"]},
  "ssh_refuse": 0.5,
  "install_fail": {"step": "clone", "rate": 1.0, "names": ["rc-9-*"]},
  "seed": 42
}
```

- `errors`: per API operation (the spec's operationId, or `*` for every one)
  the error code to answer with, the probability and optionally how many
  times (then the rule is spent).
- `rate_limit_burst`: the next N API requests answer 429 `rate_limit_exceeded`.
- `action_delay`: extra seconds every action stays `running` (slow actions).
- `action_errors`: per action command (`create_server`, `delete_server`,
  `poweron`...) the probability that it ends in `error`.
- `never_running`, `no_callback`, `ssh_refuse`: per-server faults decided when
  a server is created, as a probability or `{"rate": p, "names": [globs]}`:
  the server stays `initializing`, its cloud-init never calls back, its SSH
  port refuses connections.
- `install_fail`: the Rachel8 install (`core.cloud.vps_contract.INSTALL_STEPS`)
  fails at `step` on the servers it hits: those matching `names`, and others
  with probability `rate` (default 1 without `names`, else 0). The step
  prints a plausible error and exits non-zero; later steps do not run, and
  the bootstrap still calls back, reporting the failure.
- `seed`: makes the random decisions reproducible.
"""

from __future__ import annotations

import fnmatch
import random
from dataclasses import dataclass

import msgspec

from core.cloud.vps_contract import INSTALL_STEPS
from sim.errors import ERROR_STATUS


class ErrorRule(msgspec.Struct, forbid_unknown_fields=True):
    """Answer an operation with an error.

    Attributes:
        code: the Hetzner error code.
        rate: probability in [0, 1] per request.
        count: how many more times it may fire; None means unlimited.
        message: the error message, default the code's usual one.
    """

    code: str = "server_error"
    rate: float = 1.0
    count: int | None = None
    message: str | None = None


class ServerFault(msgspec.Struct, forbid_unknown_fields=True):
    """A per-server fault: by probability, or for server names matching a glob."""

    rate: float = 0.0
    names: list[str] = msgspec.field(default_factory=list)


class InstallFault(msgspec.Struct, forbid_unknown_fields=True):
    """Make one install step fail: on servers matching `names`, or by probability."""

    step: str
    rate: float | None = None
    names: list[str] = msgspec.field(default_factory=list)

    @property
    def effective_rate(self) -> float:
        """`rate`, defaulting to 1 alone and to 0 beside `names`."""
        if self.rate is not None:
            return self.rate
        return 0.0 if self.names else 1.0


class Faults(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=False):
    """Every fault the simulator can inject (see the module docstring)."""

    errors: dict[str, ErrorRule] = msgspec.field(default_factory=dict)
    rate_limit_burst: int = 0
    action_delay: float = 0.0
    action_errors: dict[str, float] = msgspec.field(default_factory=dict)
    never_running: float | ServerFault = 0.0
    no_callback: float | ServerFault = 0.0
    ssh_refuse: float | ServerFault = 0.0
    install_fail: InstallFault | None = None
    seed: int | None = None


class FaultError(ValueError):
    """A fault document is invalid; the message says what is wrong."""


def _check_rate(name: str, rate: float) -> None:
    if not 0.0 <= rate <= 1.0:
        raise FaultError(f"{name}: rate must be between 0 and 1, got {rate}")


def validate(faults: Faults) -> Faults:
    """Check value ranges and error codes.

    Raises:
        FaultError: a value is out of range or a code is unknown.
    """
    for op, rule in faults.errors.items():
        if rule.code not in ERROR_STATUS:
            raise FaultError(f"errors.{op}.code: unknown error code {rule.code!r}")
        _check_rate(f"errors.{op}", rule.rate)
        if rule.count is not None and rule.count < 0:
            raise FaultError(f"errors.{op}.count must not be negative")
    for command, rate in faults.action_errors.items():
        _check_rate(f"action_errors.{command}", rate)
    for name in ("never_running", "no_callback", "ssh_refuse"):
        value = getattr(faults, name)
        _check_rate(name, value.rate if isinstance(value, ServerFault) else value)
    if faults.install_fail is not None:
        if faults.install_fail.step not in INSTALL_STEPS:
            raise FaultError(
                f"install_fail.step: unknown step {faults.install_fail.step!r} "
                f"(one of {', '.join(INSTALL_STEPS)})"
            )
        _check_rate("install_fail", faults.install_fail.effective_rate)
    if faults.rate_limit_burst < 0:
        raise FaultError("rate_limit_burst must not be negative")
    if faults.action_delay < 0:
        raise FaultError("action_delay must not be negative")
    return faults


def parse_faults(raw: str | bytes) -> Faults:
    """Parse a JSON fault document; empty text means no faults.

    Raises:
        FaultError: the document is not valid JSON or not a valid fault document.
    """
    if not raw or not raw.strip():
        return Faults()
    try:
        return validate(msgspec.json.decode(raw, type=Faults))
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise FaultError(f"invalid fault document: {exc}") from None


def to_dict(faults: Faults) -> dict[str, object]:
    """The fault document as plain JSON-ready data."""
    result: dict[str, object] = msgspec.to_builtins(faults)
    return result


def pick_error_rule(faults: Faults, operation: str, roll: float) -> ErrorRule | None:
    """The error rule that fires for `operation` given a random `roll` in [0, 1).

    A rule for the operation itself takes precedence over the `*` rule. Spent
    rules (count 0) never fire. The caller decrements `count` when it fires.
    """
    rule = faults.errors.get(operation) or faults.errors.get("*")
    if rule is None or rule.count == 0:
        return None
    return rule if roll < rule.rate else None


def action_fails(faults: Faults, command: str, roll: float) -> bool:
    """True when an action with `command` should end in error."""
    rate = faults.action_errors.get(command, faults.action_errors.get("*", 0.0))
    return roll < rate


def server_fault_applies(fault: float | ServerFault, server_name: str, roll: float) -> bool:
    """True when a per-server fault hits the server named `server_name`."""
    if isinstance(fault, ServerFault):
        if any(fnmatch.fnmatchcase(server_name, pattern) for pattern in fault.names):
            return True
        return roll < fault.rate
    return roll < fault


@dataclass
class ServerFaults:
    """The per-server faults decided for one server at its creation."""

    never_running: bool = False
    no_callback: bool = False
    ssh_refuse: bool = False
    #: The install step this server's install fails at, if any.
    install_fail: str | None = None


def decide_server_faults(faults: Faults, server_name: str, rng: random.Random) -> ServerFaults:
    """Decide once, at create time, which per-server faults hit a new server."""
    return ServerFaults(
        never_running=server_fault_applies(faults.never_running, server_name, rng.random()),
        no_callback=server_fault_applies(faults.no_callback, server_name, rng.random()),
        ssh_refuse=server_fault_applies(faults.ssh_refuse, server_name, rng.random()),
        # Rolled only when configured, so seeded runs without it draw as they always did.
        install_fail=_install_fail(
            faults.install_fail, server_name, rng.random() if faults.install_fail else 1.0
        ),
    )


def _install_fail(fault: InstallFault | None, server_name: str, roll: float) -> str | None:
    if fault is None:
        return None
    hit = server_fault_applies(ServerFault(fault.effective_rate, fault.names), server_name, roll)
    return fault.step if hit else None
