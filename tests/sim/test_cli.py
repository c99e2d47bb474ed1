"""`rachel-cloud sim` as its own process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import hcloud

from tests.sim.conftest import REPO_ROOT, free_port
from tests.sim.helpers import wait_for


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    environ = {k: v for k, v in os.environ.items() if k != "HCLOUD_TOKEN"}
    environ.update({"RACHEL_SIM_SSH_PORT": str(free_port()), **(env or {})})
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", "sim", *args],
        cwd=REPO_ROOT,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _answers(client: hcloud.Client, process: subprocess.Popen[str]) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"the simulator exited: {process.communicate()[1]}")
    try:
        return bool(client.locations.get_all())
    except Exception:
        return False


def test_sim_command_serves_the_api_with_the_token() -> None:
    port = free_port()
    process = _run("--port", str(port), env={"HCLOUD_TOKEN": "tok-123"})
    try:
        client = hcloud.Client(token="tok-123", api_endpoint=f"http://127.0.0.1:{port}/v1")
        wait_for(lambda: _answers(client, process), timeout=20, what="the simulator process")
        server = client.servers.create(
            "cli-1",
            server_type=hcloud.server_types.ServerType(name="cx23"),
            image=hcloud.images.Image(name="debian-12"),
        )
        assert server.server.status == "initializing"
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    # Ctrl-C: a graceful stop, reported as the conventional 130 by the CLI.
    assert process.returncode in (0, 130), err
    assert f"http://127.0.0.1:{port}/v1" in out
    assert "Traceback" not in err


def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        process = _run("--port", str(taken.getsockname()[1]))
        _, err = process.communicate(timeout=20)
    assert process.returncode != 0
    assert "cannot listen on 127.0.0.1" in err
    assert "Traceback" not in err


def test_bad_fault_setting_is_a_clear_error() -> None:
    process = _run("--port", "0", env={"RACHEL_SIM_FAULTS": '{"nope": 1}'})
    _, err = process.communicate(timeout=20)
    assert process.returncode != 0 and "RACHEL_SIM_FAULTS" in err and "Traceback" not in err
