"""`rachel-cloud demo` as a user runs it: a subprocess that must leave nothing behind."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def descendants(pid: int) -> set[int]:
    found: set[int] = set()
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            kids = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        for kid in map(int, kids):
            if kid not in found:
                found.add(kid)
                stack.append(kid)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_demo_deploys_three_customers_and_leaves_no_process(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RACHEL_", "HCLOUD_", "DATABASE_URL", "REDIS_URL"))
    }
    env.update(
        {
            "RACHEL_WEB_PORT": str(free_port()),
            "RACHEL_SIM_PORT": str(free_port()),
            "PYTHONPATH": str(REPO),
        }
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli.main",
            "demo",
            "--customers",
            "3",
            "--timings",
            "fast",
            "--timeout",
            "120",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: set[int] = set()
    deadline = time.monotonic() + 180
    while proc.poll() is None and time.monotonic() < deadline:
        seen |= descendants(proc.pid)
        time.sleep(0.05)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-4000:]
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["SERVER", "CUSTOMER", "STATUS"]
    assert sum(1 for line in lines[1:4] if " ready " in line) == 3, out
    assert "3 of 3 servers ready" in out and "within the 120s SLA" in out
    assert len(seen) >= 5, "sim, web, workers, cron and redis ran as children"
    time.sleep(0.5)
    survivors = [pid for pid in seen if alive(pid)]
    assert survivors == [], f"processes left behind: {survivors}"
    assert not (tmp_path / ".rachel-cloud" / "redis" / "redis.sock").exists()
