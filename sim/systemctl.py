"""`systemctl` and `journalctl` command lines on a simulated VPS, answering as systemd's do.

Verbs: `start`, `restart`, `try-restart`, `reload-or-restart`, `stop`,
`enable [--now]`, `disable [--now]`, `is-active`, `is-enabled`, `status`,
`show [-p A,B | --property=A] [--value]`, `reset-failed`, `daemon-reload`;
for services and timers alike; an option the simulator does not know is
refused. Exit codes and messages follow systemctl's (5 for a unit not found,
3 for `is-active` of an inactive unit...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sim.systemd_text import journal_lines, status_text, timer_status_text

if TYPE_CHECKING:
    from sim.service import JournalEntry
    from sim.systemd import Systemd

_ACTIONS = ("start", "restart", "try-restart", "reload-or-restart")
#: Options that take a value (`-p X`, `--property X`).
_VALUED = {
    "-p", "--property", "-n", "--lines", "-o", "--output", "-u", "--unit", "-t", "--type",
    "-S", "--since",
}  # fmt: skip
#: The options of `systemctl` the simulator honours (or that change nothing it prints):
#: any other is refused, so that a command relying on one fails a test, not production.
#: `--no-block` returns once the job is queued: the simulator's jobs are queued and
#: answered at once, and an asynchronous main process (the health agent) runs after.
_SYSTEMCTL_OPTIONS = {
    "--now", "--value", "-p", "--property", "-q", "--quiet", "--no-block", "--no-pager",
    "--no-ask-password", "--system", "--no-legend", "-l", "--full",
}  # fmt: skip
#: The journal outputs the simulator prints (others are refused, as unknown ones are).
_OUTPUTS = ("short", "short-iso", "cat")


@dataclass
class Result:
    """What a command printed and its exit status."""

    exit_status: int = 0
    stdout: str = ""
    stderr: str = ""


def see(unit: str) -> str:
    """systemctl's pointer to the details of a failed job."""
    return f'See "systemctl status {unit}" and "journalctl -xeu {unit}" for details.\n'


def unit_name(name: str) -> str:
    """`rachel8` -> `rachel8.service`; names with a unit suffix are kept."""
    return name if "." in name else f"{name}.service"


def split_args(args: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Words and options (`--name=value`, `--name value`, `-p value`, `-pvalue`, flags)."""
    words: list[str] = []
    options: dict[str, list[str]] = {}
    it = iter(args)
    for arg in it:
        if arg.startswith("--") and "=" in arg:
            name, _, value = arg.partition("=")
            options.setdefault(name, []).append(value)
        elif arg in _VALUED:
            options.setdefault(arg, []).append(next(it, ""))
        elif arg[:2] in _VALUED and len(arg) > 2 and not arg.startswith("--"):
            options.setdefault(arg[:2], []).append(arg[2:])
        elif arg.startswith("-") and arg != "-":
            options.setdefault(arg, [])
        else:
            words.append(arg)
    return words, options


def _each(units: list[str], run: Callable[[str], Result]) -> Result:
    for unit in units:
        result = run(unit)
        if result.exit_status:
            return result
    return Result(0)


def is_active(systemd: Systemd, names: list[str], quiet: bool = False) -> Result:
    """`systemctl is-active <unit>...`: prints each state; 0 only if all are active."""
    states = [systemd.active_state(n) for n in names]
    ok = all(s == "active" for s in states)
    return Result(0 if ok else 3, "" if quiet else "".join(f"{s}\n" for s in states))


def show(systemd: Systemd, units: list[str], options: dict[str, list[str]]) -> Result:
    """`systemctl show [-p A -p B | --property=A,B] [--value] <unit>...`."""
    wanted = [
        p
        for value in options.get("-p", []) + options.get("--property", [])
        for p in value.split(",")
        if p
    ]
    blocks = []
    for name in units:
        props = systemd.properties(name)
        # systemd prints in its own order, not the order asked for.
        chosen = [(k, v) for k, v in props.items() if not wanted or k in wanted]
        lines = [v if "--value" in options else f"{k}={v}" for k, v in chosen]
        blocks.append("".join(f"{line}\n" for line in lines))
    return Result(0, "\n".join(blocks))


def status(systemd: Systemd, units: list[str]) -> Result:
    """`systemctl status <unit>`: the unit's state and its last journal lines."""
    unit = unit_name(units[0])
    known = unit in systemd.services or unit in systemd.timers
    if not known and systemd.unit_file(unit) is None:
        return Result(4, stderr=f"Unit {unit} could not be found.\n")
    props = systemd.properties(unit)
    code = 0 if props["ActiveState"] == "active" else 3
    if unit.endswith(".timer"):
        timer = systemd.timers[unit]
        return Result(code, timer_status_text(props, timer, systemd.hostname, systemd.clock))
    service = systemd.services[unit]
    return Result(code, status_text(props, service, systemd.hostname, systemd.clock))


def _is_enabled(systemd: Systemd, units: list[str]) -> Result:
    states = [systemd.unit_file_state(unit_name(u)) for u in units]
    ok = all(s in ("enabled", "static") for s in states)
    return Result(0 if ok else 1, stdout="".join(f"{s}\n" for s in states))


def run_systemctl(systemd: Systemd, args: list[str]) -> Result:
    """Run `systemctl` with `args` (options may come anywhere)."""
    words, options = split_args(args)
    unknown = sorted(set(options) - _SYSTEMCTL_OPTIONS)
    if unknown or not words:
        what = f"unrecognized option '{unknown[0]}'" if unknown else "a command is required"
        return Result(1, stderr=f"systemctl: {what} (simulated systemctl)\n")
    verb, units = words[0], words[1:]
    if verb == "daemon-reload":
        return Result(0)
    if verb == "reset-failed":
        return systemd.reset_failed(units)
    quiet = "-q" in options or "--quiet" in options
    now = "--now" in options
    verbs: dict[str, Callable[[list[str]], Result]] = {
        "enable": lambda u: systemd.enable(u, now),
        "disable": lambda u: systemd.disable(u, now),
        "stop": lambda u: _each(u, systemd.stop),
        "is-active": lambda u: is_active(systemd, u, quiet),
        "is-enabled": lambda u: _is_enabled(systemd, u),
        "status": lambda u: status(systemd, u),
        "show": lambda u: show(systemd, u, options),
    }
    handler = verbs.get(verb)
    if verb in _ACTIONS:
        handler = lambda u: _each(u, lambda unit: systemd.start(verb, unit))  # noqa: E731
    if handler is None:
        return Result(1, stderr=f'Unknown command verb "{verb}" (simulated systemctl).\n')
    if not units:
        return Result(1, stderr=f"Too few arguments for {verb}.\n")
    return handler(units)


def _since(options: dict[str, list[str]]) -> float | Result | None:
    text = (options.get("-S") or options.get("--since") or [""])[-1]
    if not text:
        return None
    if not text.startswith("@") or not text[1:].replace(".", "", 1).isdigit():
        # The simulator reads only `@<epoch seconds>`, what a script passes.
        return Result(1, stderr=f"Failed to parse timestamp: {text}\n")
    return float(text[1:])


def journalctl(systemd: Systemd, args: list[str]) -> Result:
    """`journalctl -u <unit> [-n N] [--since @EPOCH] [-o short|short-iso|cat] [--no-pager]`."""
    _words, options = split_args(args)
    units = [unit_name(u) for u in options.get("-u", []) + options.get("--unit", [])]
    count_text = (options.get("-n") or options.get("--lines") or [""])[-1]
    if count_text and not count_text.isdigit():
        return Result(1, stderr=f"Failed to parse lines '{count_text}'.\n")
    count = int(count_text) if count_text else None
    output = (options.get("-o") or options.get("--output") or ["short"])[-1]
    if output not in _OUTPUTS:
        return Result(1, stderr=f"Unknown output format '{output}'.\n")
    since = _since(options)
    if isinstance(since, Result):
        return since
    entries: list[JournalEntry] = []
    for unit in units:
        if unit in systemd.services:
            service = systemd.services[unit]
            service.advance()
            entries.extend(service.journal)
        elif unit in systemd.timers:
            entries.extend(systemd.timers[unit].journal)
    entries.sort(key=lambda entry: entry.at)
    if since is not None:
        # The journal's timestamps are the box's (scaled) wall clock.
        entries = [entry for entry in entries if systemd.clock.wall(entry.at) >= since]
    text = journal_lines(entries, count, output, systemd.hostname, systemd.clock)
    return Result(0, text or "-- No entries --\n")
