"""`rachel-cloud up` and `rachel-cloud demo`: the whole product on one machine.

`up` prepares the embedded Redis and the database, then supervises the
simulator (when no HCLOUD_TOKEN is set), the web app, the workers and cron as
child processes, and opens the TUI (or, headless, prints their prefixed logs).
`demo` is a headless `up` that deploys N demo customers through the web app,
waits for every server to end, prints their phase timings and tears down.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType

import click
import httpx

from cli.demo import deploy_demo_customers, format_table, sla_summary, timings
from cli.embedded_redis import embedded_for
from cli.main import COMMANDS
from cli.supervisor import ChildSpec, Console, LogFiles, Sink, Supervisor
from core.errors import RachelError
from core.platform.dev_secrets import api_keys, webhook_secrets
from core.platform.logs import setup_logging
from core.platform.settings import Settings
from core.store import migrations
from core.store.db import connection, init_database
from core.store.models import Server
from sim.settings import SimSettings

#: Simulated create, boot and cloud-init seconds.
TIMINGS = {
    "fast": ("0.2s", "0.1s", "0.3s"),
    "demo": ("3s", "2s", "3s"),
    "hetzner": ("60s", "20s", "90s"),
}


class UpError(RachelError):
    """The stack cannot start (a port in use, a child that will not come up)."""

    code = "up_failed"


@dataclass
class LocalStack:
    """Everything `up` runs, and how to reach it."""

    settings: Settings
    supervisor: Supervisor
    web_url: str
    redis_url: str
    owns_redis: bool


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _wait_http(url: str, timeout: float, supervisor: Supervisor, name: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not supervisor.alive().get(name, True):
            raise UpError(f"{name} exited during start-up; see its log")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        time.sleep(0.1)
    raise UpError(f"{name} did not answer at {url} within {timeout:.0f}s")


def _check_ports(settings: Settings) -> None:
    """Refuse to start on a taken port, saying how to run a second stack beside the first.

    New ports alone are not enough: a second stack on the same data
    directory would share the first one's database and embedded Redis, and
    each one's workers would take the other's jobs.

    Raises:
        UpError: the web or simulator port is in use.
    """
    ports = [("web", "RACHEL_WEB_PORT", settings.web_host, settings.web_port)]
    if settings.uses_simulator:
        ports.append(("simulator", "RACHEL_SIM_PORT", settings.sim_host, settings.sim_port))
    taken = [f"{what} port {port}" for what, _, host, port in ports if not _port_free(host, port)]
    if not taken:
        return
    suggested = " ".join(f"{env}={port + 1}" for _, env, _, port in ports)
    data_dir = settings.data_dir
    raise UpError(
        f"{' and '.join(taken)} in use (another `rachel-cloud up`?). To run a second stack "
        "beside it, give it its own data directory as well as free ports, e.g. "
        f"RACHEL_DATA_DIR={data_dir}-2 {suggested}: with new ports alone both stacks "
        f"would share the database and Redis of {data_dir}"
    )


def start_stack(settings: Settings, sink: Sink, *, workers: int, timing: str) -> LocalStack:
    """Prepare Redis and the database, then start and wait for every child.

    Raises:
        SettingsError: a simulator setting is invalid.
        UpError: a port is taken or a child does not come up.
    """
    if settings.uses_simulator:
        # A bad simulator setting stops `up` here, naming it, like a bad setting
        # of the control plane, not as a simulator child that never answers.
        SimSettings.load(settings.source, env_file=None)
    # Before anything is started or migrated: a second stack refused here
    # leaves the first one's Redis and database untouched.
    _check_ports(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    owns_redis = not settings.redis_url
    redis_url = settings.redis_url or embedded_for(settings).acquire()
    init_database(settings.effective_database_url)
    with connection():
        migrations.upgrade()
    web_url = f"http://{settings.web_host}:{settings.web_port}"
    create, boot, cloud_init = TIMINGS[timing]
    env = {
        "RACHEL_DATA_DIR": str(settings.data_dir.resolve()),
        "DATABASE_URL": settings.effective_database_url,
        "REDIS_URL": redis_url,
        "RACHEL_PUBLIC_URL": settings.source.get("RACHEL_PUBLIC_URL") or web_url,
        "RACHEL_SIM_CREATE_TIME": create,
        "RACHEL_SIM_BOOT_TIME": boot,
        "RACHEL_SIM_CLOUD_INIT_TIME": cloud_init,
        "PYTHONUNBUFFERED": "1",
    }
    if settings.uses_simulator and "RACHEL_TELEGRAM_API_URL" not in settings.source:
        # The simulator's Telegram: with its URL given, RACHEL_TELEGRAM_CHECK=auto
        # is on, so the local stack checks bot tokens as production does.
        env["RACHEL_TELEGRAM_API_URL"] = f"http://{settings.sim_host}:{settings.sim_port}/telegram"
    cli = [sys.executable, "-m", "cli.main"]
    specs = []
    if settings.uses_simulator:
        specs.append(ChildSpec("sim", [*cli, "sim"]))
    specs.append(ChildSpec("web", [*cli, "web"]))
    specs += [
        ChildSpec(f"worker-{n}", [*cli, "worker", "--name", f"up-{os.getpid()}-{n}"])
        for n in range(1, workers + 1)
    ]
    if "cron" in COMMANDS:
        specs.append(ChildSpec("cron", [*cli, "cron"]))
    base_env = {**os.environ, **{k: v for k, v in settings.source.items() if k not in os.environ}}
    supervisor = Supervisor(specs, sink, base_env={**base_env, **env})
    supervisor.start()
    stack = LocalStack(settings, supervisor, web_url, redis_url, owns_redis)
    try:
        if settings.uses_simulator:
            # Any answer will do (401 without a token): the API is serving.
            _wait_http(
                f"http://{settings.sim_host}:{settings.sim_port}/v1/locations",
                30,
                supervisor,
                "sim",
            )
        _wait_http(f"{web_url}/healthz", 30, supervisor, "web")
    except BaseException:
        stop_stack(stack)
        raise
    return stack


def stop_stack(stack: LocalStack) -> None:
    """Stop every child, then the embedded Redis if this process started it."""
    stack.supervisor.stop()
    if stack.owns_redis:
        embedded_for(stack.settings).release()


@contextlib.contextmanager
def _interrupts_as_exit() -> Iterator[None]:
    # SIGTERM (a process manager, `kill`) stops the stack as Ctrl-C does.
    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield None
    finally:
        signal.signal(signal.SIGTERM, previous)


def _demo(stack: LocalStack, count: int, sink: Sink) -> list[int]:
    secret = webhook_secrets(stack.settings)[0]
    ids = deploy_demo_customers(stack.web_url, secret, api_keys(stack.settings)[0], count)
    sink("up", f"sent {count} signed deploy webhooks; servers {', '.join(map(str, ids))}")
    return ids


@click.command("up")
@click.option("--headless", is_flag=True, help="No TUI: print every process's log here.")
@click.option(
    "--demo",
    "demo_count",
    type=click.IntRange(0, 500),
    default=0,
    help="Deploy N demo customers through the web app once it is up.",
)
@click.option("--workers", type=click.IntRange(1, 32), default=2, show_default=True)
@click.option(
    "--timings",
    "timing",
    type=click.Choice(sorted(TIMINGS)),
    default="demo",
    show_default=True,
    help="Simulated cloud speed (hetzner: real-world timings).",
)
def up_command(headless: bool, demo_count: int, workers: int, timing: str) -> None:
    """Run everything: simulator, web, workers, cron, and the TUI."""
    settings = Settings.load()
    logs = settings.data_dir / "logs"
    sink: Sink = Console(sys.stdout, colour=sys.stdout.isatty()) if headless else LogFiles(logs)
    setup_logging(settings, "up", None if headless else (logs / "up.log").open("a"))
    with _interrupts_as_exit():
        stack = start_stack(settings, sink, workers=workers, timing=timing)
        try:
            if demo_count:
                _demo(stack, demo_count, sink)
            if headless:
                sink("up", f"up: web at {stack.web_url}; Ctrl-C stops everything")
                while True:
                    time.sleep(3600)
            else:
                from cli.tui import run_tui

                run_tui(settings, None, readonly=False)
        except KeyboardInterrupt:
            sink("up", "stopping")
        finally:
            stop_stack(stack)
            if isinstance(sink, LogFiles):
                sink.close()
                click.echo(f"stopped; logs are in {logs}")


@click.command("demo")
@click.option("--customers", type=click.IntRange(1, 500), default=3, show_default=True)
@click.option("--workers", type=click.IntRange(1, 32), default=2, show_default=True)
@click.option(
    "--timings", "timing", type=click.Choice(sorted(TIMINGS)), default="demo", show_default=True
)
@click.option(
    "--timeout",
    type=click.FloatRange(1, 3600),
    default=300,
    show_default=True,
    help="Seconds to wait for every server to end.",
)
@click.option("--quiet", is_flag=True, help="Do not print the processes' logs.")
def demo_command(customers: int, workers: int, timing: str, timeout: float, quiet: bool) -> None:
    """Deploy N demo customers end to end, print their timings; exit 0 if all are ready."""
    settings = Settings.load()
    sink: Sink = (
        LogFiles(settings.data_dir / "logs")
        if quiet
        else Console(sys.stderr, colour=sys.stderr.isatty())
    )
    setup_logging(settings, "demo", sys.stderr)
    with _interrupts_as_exit():
        stack = start_stack(settings, sink, workers=workers, timing=timing)
        try:
            ids = _demo(stack, customers, sink)
            deadline = time.monotonic() + timeout
            while True:
                with connection():
                    statuses = [
                        s.status for s in Server.select(Server.status).where(Server.id.in_(ids))
                    ]
                if all(s in ("ready", "failed") for s in statuses):
                    break
                if time.monotonic() > deadline:
                    break
                time.sleep(0.25)
            with connection():
                rows = timings(ids)
        finally:
            stop_stack(stack)
    click.echo(format_table(rows))
    click.echo(sla_summary(rows, settings.sla_seconds))
    if any(r.status != "ready" for r in rows):
        for r in rows:
            if r.status != "ready":
                click.echo(f"server {r.server_id}: {r.status} {r.last_error or ''}", err=True)
        raise SystemExit(1)
