"""The embedded redis-server is shared by processes and stopped by the last one out."""

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from cli.embedded_redis import EmbeddedRedis

USER = textwrap.dedent(
    """
    import sys, redis
    from pathlib import Path
    from cli.embedded_redis import EmbeddedRedis
    server = EmbeddedRedis(Path(sys.argv[1]))
    url = server.acquire()
    client = redis.Redis.from_url(url)
    client.incr("users")
    print(url, server.pid(), client.get("users").decode(), flush=True)
    sys.stdin.readline()           # stay until told to leave
    print(client.get("users").decode(), flush=True)
    """
)


def _spawn(data_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", USER, str(data_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )


def _leave(proc: subprocess.Popen[str]) -> str:
    out, _ = proc.communicate("\n", timeout=30)
    assert proc.returncode == 0
    return out.strip()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_two_processes_share_one_server_and_the_last_stops_it(tmp_path: Path) -> None:
    first = _spawn(tmp_path)
    url_a, pid_a, count_a = first.stdout.readline().split()  # type: ignore[union-attr]
    second = _spawn(tmp_path)
    url_b, pid_b, count_b = second.stdout.readline().split()  # type: ignore[union-attr]
    assert (url_a, pid_a) == (url_b, pid_b), "the second process joined the first's server"
    assert (count_a, count_b) == ("1", "2")

    assert _leave(first) == "2"
    server = EmbeddedRedis(tmp_path)
    assert server.answers(), "the server outlives a process while another still uses it"

    assert _leave(second) == "2"
    deadline = time.monotonic() + 10
    while _alive(int(pid_a)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(int(pid_a)), "the last user stopped the server"
    assert not server.answers()


def test_concurrent_starts_start_one_server(tmp_path: Path) -> None:
    procs = [_spawn(tmp_path) for _ in range(3)]
    firsts = [p.stdout.readline().split() for p in procs]  # type: ignore[union-attr]
    assert len({pid for _, pid, _ in firsts}) == 1
    assert sorted(count for _, _, count in firsts) == ["1", "2", "3"]
    for p in procs:
        _leave(p)


def test_data_survives_a_restart(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path)
    server.ensure_running()
    server.client().set("job", "queued")
    server.client().execute_command("BGREWRITEAOF")
    time.sleep(0.3)
    assert server.stop()
    server.ensure_running()
    try:
        assert server.client().get("job") == b"queued"
    finally:
        server.stop()


def test_long_data_dirs_use_a_short_socket_path(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    server = EmbeddedRedis(deep)
    assert len(str(server.socket_path)) <= 100
    server.ensure_running()
    try:
        assert server.answers()
    finally:
        server.stop()


def test_stop_when_not_running_is_harmless(tmp_path: Path) -> None:
    assert EmbeddedRedis(tmp_path).stop() is False
