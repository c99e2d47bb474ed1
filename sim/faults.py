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
  "capacity": [{"location": "fsn1", "server_type": "cx23"}],
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
- `capacity`: locations out of room for server types: creating one there
  answers `resource_unavailable` or `placement_error`, and the catalogue
  may say so ahead (`sim.capacity`).
- `seed`: makes the random decisions reproducible.

## Faults of running VPSs

Besides that document, the admin API (`POST /_sim/vps/faults`, see
`sim.admin`) aims faults at running VPSs, by Hetzner server name or at a
seeded random share of them (`VPS_FAULTS`, `VpsFaults`):

- `crash_once`: Rachel8's process exits 1 once (now if it runs, else at its
  next start); systemd restarts it (`Restart=on-failure`). Then it is gone.
- `crash_loop`: every start of Rachel8 exits 1 (a running one now), until
  systemd's start limit fails the unit (`start-limit-hit`); survives a reboot.
- `freeze`: the box hangs: SSH connections hang (no banner), no heartbeat;
  cleared by a Hetzner reboot or reset.
- `heartbeat_loss`: the agent's POSTs are lost on the way (the run fails
  like a timeout); all else is fine.
- `conflict`: a second process polls the bot: Rachel8's long poll ends with
  409 Conflict (`terminated by other getUpdates request`), which grammY
  rethrows: Rachel8 exits 1 within seconds of every start.
- `partition`: the box is cut from the network: SSH hangs, the agent
  reaches neither Telegram nor the control plane; not cleared by a reboot.
"""

from __future__ import annotations

import fnmatch
import random
from dataclasses import dataclass, fields
from typing import Any

import msgspec

from core.cloud.vps_contract import INSTALL_STEPS
from sim.capacity import CapacityFault, problem
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
    capacity: list[CapacityFault] = msgspec.field(default_factory=list)
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
    wrong = problem(faults.capacity)
    if wrong is not None:
        raise FaultError(wrong)
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


#: Faults of running VPSs (see "Faults of running VPSs" above).
VPS_FAULTS = ("crash_once", "crash_loop", "freeze", "heartbeat_loss", "conflict", "partition")
#: What a Hetzner reboot or reset clears (crash_once is spent by then anyway).
CLEARED_BY_REBOOT = ("crash_once", "freeze")


@dataclass
class VpsFaults:
    """The faults aimed at one running VPS (each a flag; `crash_once` until it fires)."""

    crash_once: bool = False
    crash_loop: bool = False
    freeze: bool = False
    heartbeat_loss: bool = False
    conflict: bool = False
    partition: bool = False

    def active(self) -> list[str]:
        """The names of the faults set, in `VPS_FAULTS` order."""
        return [f.name for f in fields(self) if getattr(self, f.name)]

    def take_crash_once(self) -> bool:
        """Whether a pending `crash_once` fires now (it is spent)."""
        pending, self.crash_once = self.crash_once, False
        return pending

    @property
    def unreachable(self) -> bool:
        """No SSH answer, no heartbeat: frozen or partitioned."""
        return self.freeze or self.partition


@dataclass(frozen=True)
class FaultRequest:
    """A checked `POST`/`DELETE /_sim/vps/faults` body.

    Attributes:
        fault: one of `VPS_FAULTS`; None (DELETE only) for every fault.
        servers: server names; None for a share (POST) or every VPS (DELETE).
        share: the share of running VPSs to hit (POST), in [0, 1].
        seed: seeds the choice of that share.
    """

    fault: str | None
    servers: list[str] | None = None
    share: float | None = None
    seed: int | None = None


def _names(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise FaultError("servers must be a list of server names")
    return list(value)


def _fault_name(value: Any, *, optional: bool) -> str | None:
    if value is None and optional:
        return None
    if value not in VPS_FAULTS:
        raise FaultError(f"fault: unknown fault {value!r} (one of {', '.join(VPS_FAULTS)})")
    return str(value)


def parse_fault_request(body: dict[str, Any], *, clearing: bool) -> FaultRequest:
    """Check a VPS fault request body (`clearing`: the DELETE's, where nulls mean all).

    Raises:
        FaultError: an unknown fault or field, or a bad value.
    """
    allowed = {"fault", "servers"} if clearing else {"fault", "servers", "share", "seed"}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise FaultError(f"unknown field {unknown[0]!r} (expected {', '.join(sorted(allowed))})")
    fault = _fault_name(body.get("fault"), optional=clearing)
    servers = _names(body.get("servers"))
    if clearing:
        return FaultRequest(fault, servers)
    share, seed = body.get("share"), body.get("seed")
    if (servers is None) == (share is None):
        raise FaultError('give either "servers" (a list of server names) or "share"')
    if share is not None and (
        isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1
    ):
        raise FaultError(f"share must be a number between 0 and 1, got {share!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise FaultError("seed must be an integer")
    return FaultRequest(fault, servers, None if share is None else float(share), seed)


def pick_share(names: list[str], share: float, rng: random.Random) -> list[str]:
    """A random `share` of `names` (rounded to the nearest count), in name order."""
    count = round(share * len(names))
    return sorted(rng.sample(sorted(names), count))
