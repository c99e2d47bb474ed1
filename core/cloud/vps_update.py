"""Updating Rachel8 on a VPS over SSH: the update script's stages, one session each.

Each call opens an SSH session (`core.cloud.ssh`, the pinned host key),
uploads the update script (`core/cloud/vps_scripts/update.py`, rendered for
the server's layout) over SFTP to `UPDATE_SCRIPT_PATH` (root's, 0700, a temp
file renamed over it: a half-written script never runs), runs one stage and
reads its outcome: ONE line of JSON (`core.cloud.vps_contract`, "Updates"),
parsed strictly into a `StageResult`. A stage that failed on the VPS (the
clone, `bun install`...) is a result with `ok` False, not an exception; the
caller decides. What could not run or be read raises `VpsUpdateError`.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict, Unpack

import paramiko

from core.cloud import vps_contract as vps
from core.cloud import vps_scripts
from core.cloud.rachel8_unit import ServiceState, parse_show
from core.cloud.ssh import SecretsSFTP, SSHError, Target, connect, run, write_atomically
from core.errors import RachelError

#: Opens an SSH session to a target (`core.cloud.ssh.connect`; tests may pass another).
Connect = Callable[[Target, float], paramiko.SSHClient]

#: How long a stage may run: a clone and `bun install` take minutes on a slow mirror.
STAGE_SECONDS = {vps.STAGE_PREPARE: 900.0, vps.STAGE_SWITCH: 120.0, vps.STAGE_PRUNE: 120.0}
#: Characters of the script's output kept: its one line, with a tail of MAX_LOG_TAIL
#: characters that JSON may escape several times over.
_MAX_OUTPUT = 64 * 1024
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_FIELDS = frozenset(
    {
        "ok",
        "stage",
        "commit",
        "previous",
        "failed_step",
        "exit_status",
        "log_tail",
        "service",
        "removed",
    }
)


class Options(TypedDict, total=False):
    """How a stage is run (`run_stage`'s keywords): `timeout`, `wait`, `connect`."""

    timeout: float
    wait: float
    connect: Connect


class VpsUpdateError(RachelError):
    """A stage could not run or its outcome could not be read.

    Codes: `vps_unreachable` (transient: no session, or it broke),
    `host_key_mismatch` and `ssh_auth_failed` (as `core.cloud.ssh` says),
    `update_script_error` (the script did not answer in the contract's format).
    """

    code = "update_script_error"


@dataclass(frozen=True)
class StageResult:
    """A stage's outcome, as the update script reported it.

    Attributes:
        ok: the stage did all it should.
        stage: `prepare`, `switch` or `prune`.
        commit: the release the stage was about (prune: the one running).
        previous: prepare: the release running; switch: the one it switched from
            (the same commit when nothing changed); prune: the one kept as previous.
        failed_step: one of `vps_contract.UPDATE_STEPS` when not ok.
        exit_status: the failed step's command's exit status, when one ran.
        log_tail: the end of the stage's output (no secret; bounded).
        service: switch: the Rachel8 unit right after the restart.
        removed: prune: the releases deleted.
    """

    ok: bool
    stage: str
    commit: str | None
    previous: str | None
    failed_step: str | None
    exit_status: int | None
    log_tail: str
    service: ServiceState | None = None
    removed: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line for events and logs."""
        what = f"{self.stage} {self.commit[:12] if self.commit else '-'}"
        if not self.ok:
            status = "" if self.exit_status is None else f", exit {self.exit_status}"
            return f"{what} failed at {self.failed_step}{status}: {_last_line(self.log_tail)}"
        service = f"; Rachel8 {self.service.describe()}" if self.service is not None else ""
        removed = f"; removed {len(self.removed)} release(s)" if self.removed else ""
        return f"{what} ok{service}{removed}"


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


def update_constants(layout: vps.Layout) -> dict[str, vps_scripts.Constant]:
    """The update script's constants: the contract's paths and names, for `layout`."""
    return {
        "INSTALL_ENV": vps.INSTALL_ENV_PATH,
        "REPO_VAR": vps.REPO_VAR,
        "STATE_PATH": vps.UPDATE_STATE_PATH,
        "LOCK_PATH": vps.UPDATE_LOCK_PATH,
        "LOG_PATH": vps.UPDATE_LOG_PATH,
        "USER": layout.user,
        "HOME": layout.home,
        "CLONE_DIR": layout.clone_dir,
        "RELEASES_DIR": layout.releases_dir,
        "PARTIAL_SUFFIX": vps.PARTIAL_SUFFIX,
        "BUN_DIR": posixpath.dirname(layout.bin_dir),
        "BUN_PATH": layout.bun_path,
        "PATH_ENV": layout.service_path_env,
        "UNIT": vps.SERVICE_UNIT,
        "AGENT_UNIT": vps.AGENT_SERVICE_UNIT,
        "PROPERTIES": vps.SERVICE_PROPERTIES,
        "SECRET_MODE": vps.SECRET_MODE,
        "MAX_LOG_TAIL": vps.MAX_LOG_TAIL,
    }


def update_script(layout: vps.Layout) -> str:
    """The update script, its constants those of the contract and `layout`."""
    return vps_scripts.render(vps_scripts.UPDATE, update_constants(layout))


def _optional(data: Mapping[str, Any], key: str, kind: type) -> Any:
    """`data[key]`: None or a `kind` (JSON's true is no integer here)."""
    value = data[key]
    if value is not None and (type(value) is bool or not isinstance(value, kind)):
        raise ValueError(f"{key} is {type(value).__name__}, not {kind.__name__} or null")
    return value


def _commit(data: Mapping[str, Any], key: str) -> str | None:
    value = _optional(data, key, str)
    if value is not None and not _COMMIT.fullmatch(value):
        raise ValueError(f"{key} is not a full commit id")
    return value  # type: ignore[no-any-return]


def _service(value: Any) -> ServiceState | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != set(vps.SERVICE_PROPERTIES):
        raise ValueError(f"service does not hold exactly {', '.join(vps.SERVICE_PROPERTIES)}")
    if not all(isinstance(v, str) for v in value.values()):
        raise ValueError("service holds values that are not strings")
    return parse_show("".join(f"{key}={text}\n" for key, text in value.items()))


def parse_result(line: str, stage: str) -> StageResult:
    """The script's JSON line as a `StageResult`, checked field by field.

    Raises:
        ValueError: not one JSON object with exactly the contract's fields and types,
            or the outcome of another stage.
    """
    data = json.loads(line)
    if not isinstance(data, dict) or set(data) != _FIELDS:
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"expected the fields {sorted(_FIELDS)}, got {keys}")
    ok, failed_step = data["ok"], _optional(data, "failed_step", str)
    if not isinstance(ok, bool) or data["stage"] != stage:
        raise ValueError(f"ok is {ok!r} and stage {data['stage']!r} (ran {stage})")
    if ok != (failed_step is None) or (failed_step and failed_step not in vps.UPDATE_STEPS):
        raise ValueError(f"ok is {ok} with failed_step {failed_step!r}")
    removed = data["removed"]
    if not isinstance(removed, list) or not all(
        isinstance(c, str) and _COMMIT.fullmatch(c) for c in removed
    ):
        raise ValueError("removed is not a list of commits")
    tail = data["log_tail"]
    if not isinstance(tail, str) or len(tail) > vps.MAX_LOG_TAIL:
        raise ValueError(f"log_tail is not a string of at most {vps.MAX_LOG_TAIL} characters")
    return StageResult(
        ok=ok,
        stage=stage,
        commit=_commit(data, "commit"),
        previous=_commit(data, "previous"),
        failed_step=failed_step,
        exit_status=_optional(data, "exit_status", int),
        log_tail=tail,
        service=_service(data["service"]),
        removed=tuple(removed),
    )


def _edge_error(target: Target, exc: SSHError) -> VpsUpdateError:
    code = "vps_unreachable" if exc.code == "ssh_unreachable" else exc.code
    return VpsUpdateError(f"{target.host}: {exc.message}", code=code, transient=exc.transient)


def _unreachable(target: Target, what: str, exc: Exception) -> VpsUpdateError:
    return VpsUpdateError(
        f"{target.host}: {what} failed: {exc}", code="vps_unreachable", transient=True
    )


def _upload(client: paramiko.SSHClient, script: str) -> None:
    transport = client.get_transport()
    sftp = SecretsSFTP.from_transport(transport) if transport is not None else None
    if sftp is None:
        raise paramiko.SSHException("the SSH session closed before SFTP started")
    try:
        write_atomically(sftp, vps.UPDATE_SCRIPT_PATH, script, vps.UPDATE_SCRIPT_MODE, (0, 0))
    finally:
        sftp.close()


def run_stage(
    target: Target,
    stage: str,
    arg: str,
    *,
    layout: vps.Layout,
    timeout: float = 30.0,
    wait: float | None = None,
    connect: Connect = connect,
) -> StageResult:
    """Upload the update script, run `stage arg` as root, read its outcome.

    Args:
        wait: seconds the stage may take (default: its `STAGE_SECONDS`).
        timeout: seconds to connect, and for each SSH request.
        connect: opens the session (`core.cloud.ssh.connect`).

    Raises:
        VpsUpdateError: `vps_unreachable` (transient), `host_key_mismatch`,
            `ssh_auth_failed`, or `update_script_error` (no outcome in the contract's format).
    """
    script = update_script(layout)
    try:
        client = connect(target, timeout)
    except SSHError as exc:
        raise _edge_error(target, exc) from exc
    try:
        try:
            _upload(client, script)
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise _unreachable(target, f"uploading {vps.UPDATE_SCRIPT_PATH}", exc) from exc
        command = f"{vps.UPDATE_SCRIPT_PATH} {stage} {arg}"
        try:
            limit = STAGE_SECONDS[stage] if wait is None else wait
            status, out, err = run(client, command, timeout, limit=_MAX_OUTPUT, wait=limit)
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise _unreachable(target, f"`{command}`", exc) from exc
    finally:
        client.close()
    try:
        if status not in (0, 1, 2) or "\n" in out:
            raise ValueError("not one line of JSON")
        result = parse_result(out, stage)
        if result.ok != (status == 0):
            raise ValueError(f"exit status {status} with ok {result.ok}")
    except ValueError as exc:
        said = (err or out or "no output")[-300:]
        raise VpsUpdateError(
            f"{target.host}: `{command}` exited {status} without an outcome "
            f"in the contract's format ({exc}): {said}",
            code="update_script_error",
        ) from exc
    return result


def _full_commit(commit: str) -> str:
    if not _COMMIT.fullmatch(commit):
        raise ValueError(f"not a full commit id: {commit[:60]!r}")
    return commit


def prepare(
    target: Target, commit: str, *, layout: vps.Layout, **options: Unpack[Options]
) -> StageResult:
    """Install `commit` beside the running release (idempotent); nothing switches.

    Raises:
        ValueError: `commit` is not 40 hex characters.
        VpsUpdateError: as `run_stage`.
    """
    return run_stage(target, vps.STAGE_PREPARE, _full_commit(commit), layout=layout, **options)


def switch(
    target: Target, commit: str, *, layout: vps.Layout, **options: Unpack[Options]
) -> StageResult:
    """Make the prepared `commit` the running release and restart Rachel8 (idempotent).

    Raises:
        ValueError: `commit` is not 40 hex characters.
        VpsUpdateError: as `run_stage`.
    """
    return run_stage(target, vps.STAGE_SWITCH, _full_commit(commit), layout=layout, **options)


def prune(
    target: Target, keep: int, *, layout: vps.Layout, **options: Unpack[Options]
) -> StageResult:
    """Delete old releases: all but the running one, the previous one and the newest,
    `keep` in all.

    Raises:
        ValueError: `keep` is negative.
        VpsUpdateError: as `run_stage`.
    """
    if keep < 0:
        raise ValueError(f"keep must be at least 0, got {keep}")
    return run_stage(target, vps.STAGE_PRUNE, str(keep), layout=layout, **options)
