"""Helpers shared by the benchmark scripts: machine facts, percentiles, JSON, throwaway stores.

Benchmarks are not tests: they print figures and write them to
`bench/results/<name>.json` (gitignored); BENCHMARKS.md publishes them.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import psycopg2

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pct(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) by nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def summary(values: Sequence[float]) -> dict[str, float | None]:
    """mean, p50, p95, p99 and max of `values` (seconds or whatever unit they are in)."""
    return {
        "n": len(values),
        "mean": statistics.fmean(values) if values else None,
        "p50": pct(values, 50),
        "p95": pct(values, 95),
        "p99": pct(values, 99),
        "max": max(values) if values else None,
    }


def machine() -> dict[str, Any]:
    """What the figures were taken on, and under what load."""
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
        mem_gib = round(kib / 1024 / 1024, 1)
    others = subprocess.run(
        ["pgrep", "-f", "pytest"], capture_output=True, text=True, check=False
    ).stdout.split()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": os.getloadavg(),
        "other_pytest_processes": len([p for p in others if int(p) != os.getpid()]),
        "when": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process and its waited-for children; zeros if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    tick = os.sysconf("SC_CLK_TCK")
    return (utime + cutime) / tick, (stime + cstime) / tick


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of a process and its waited-for children; 0 if gone."""
    return sum(cpu_times(pid))


def pids_named(pattern: str) -> list[int]:
    """Processes whose command line matches `pattern` (pgrep -f)."""
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


def pids_in_group(pgid: int) -> list[int]:
    """Live processes of a process group."""
    out = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


def group_cpu(pgid: int) -> float:
    """CPU seconds of every live process in the process group `pgid`."""
    return sum(cpu_seconds(pid) for pid in pids_in_group(pgid))


def rss_bytes(pid: int, field: str = "VmRSS") -> int:
    """A process's resident memory now (`VmHWM`: its peak); 0 if gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def write_json(name: str, data: dict[str, Any]) -> Path:
    """Write `data` to bench/results/<name>.json; returns the path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def publish(name: str, args: Any, report: str, runs: list[dict[str, Any]]) -> int:
    """Print a benchmark's report, write its runs (with the machine and arguments) as JSON."""
    print(report)
    path = write_json(name, {"machine": machine(), "args": vars(args), "runs": runs})
    print(f"written to {path}")
    return 0


def ms(value: float | None) -> str:
    """Seconds as a short millisecond string."""
    return "-" if value is None else f"{value * 1000:.0f} ms" if value < 10 else f"{value:.1f} s"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain text table."""
    cells = [list(map(str, headers)), *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(
            c.rjust(w) if i else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops a benchmark the way Ctrl-C does (everything it started is stopped)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database for one run, dropped afterwards; yields its URL."""
    name = f"rc_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = psycopg2.connect(admin_url)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        base = admin_url.rsplit("/", 1)[0]
        yield f"{base}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration (children inherit them)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def ensure_repo_on_path() -> None:
    """Make the project's packages importable when a script runs as `python bench/x.py`.

    bench/ itself moves to the end of the path: `bench/tui.py` and
    `bench/webhook.py` would otherwise hide the `tui` and `webhook` packages,
    and the scripts' helpers (`_http`, `_heartbeat_agents`...) stay importable.
    """
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if str(Path(p or ".").resolve()) != here]
    sys.path.insert(0, str(REPO))
    sys.path.append(here)


@contextlib.contextmanager
def serve(
    argv: list[str], env: dict[str, str], port: int, log: Path, cwd: Path | None = None
) -> Iterator[int]:
    """Run a server in its own process group (in `cwd`) until the block ends."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{argv} did not start; see {log}")
            time.sleep(0.2)
        time.sleep(1.0 if "--workers" in argv else 0.2)  # every worker up
        yield proc.pid
    finally:
        # Politely first; a group still there after 15 s is killed.
        for stop in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, stop)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=15)
                break


def run_and_publish(
    args: Any,
    produce: Callable[[], list[dict[str, Any]]],
    report: Callable[[list[dict[str, Any]]], str],
) -> int:
    """Run a benchmark (Ctrl-C or SIGTERM stop it: 130), then print and write its figures."""
    with sigterm_as_interrupt():
        try:
            results = produce()
        except KeyboardInterrupt:
            print("interrupted; everything started was stopped", file=sys.stderr)
            return 130
    return publish(args.name, args, report(results), results)


def run_once_and_publish(
    args: Any,
    run_one: Callable[[Any], dict[str, Any]],
    report: Callable[[list[dict[str, Any]]], str],
) -> int:
    """One run of a benchmark on a whole stack: the load average before it noted in
    `args.load_before` (and printed), then `run_and_publish`."""
    args.load_before = list(os.getloadavg())
    print(f"load before: {args.load_before}", file=sys.stderr)
    return run_and_publish(args, lambda: [run_one(args)], report)
