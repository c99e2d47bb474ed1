"""`rachel-cloud sim`: run the Hetzner Cloud API simulator in the foreground."""

from __future__ import annotations

import click

from core.errors import SettingsError
from sim.config import SimConfig
from sim.scratch import ScratchError, check_parent
from sim.server import SimulatorError, bind_socket, serve_forever
from sim.settings import SimSettings


@click.command("sim")
@click.option("--host", default=None, help="Address to bind (default RACHEL_SIM_HOST, 127.0.0.1).")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=None,
    help="Port to listen on (default RACHEL_SIM_PORT, 4010).",
)  # fmt: skip
def sim_command(host: str | None, port: int | None) -> None:
    """Run the Hetzner Cloud API simulator with simulated VPSs.

    Serves the API at http://HOST:PORT/v1 and its admin API at /_sim/, both
    with the bearer token HCLOUD_TOKEN, or the development token
    rachel-cloud-simulator-dev-token. Timings come from the RACHEL_SIM_*
    settings (`rachel-cloud settings --doc`).

    \b
    Fault injection: a JSON document in RACHEL_SIM_FAULTS at start, or at run
    time PUT /_sim/faults (GET shows it, DELETE clears it) and
    PUT /_sim/servers/ID/faults for one server. Faults: errors (per API
    operation), rate_limit_burst, action_delay, action_errors, and the
    per-server never_running, no_callback, ssh_refuse and install_fail
    (a step of the Rachel8 install), and capacity (locations out of room for
    a server type). Every fault, with examples: the README's
    "Fault injection (the simulator)" section. For example:

    \b
      RACHEL_SIM_FAULTS='{"install_fail": {"step": "clone"}}' rachel-cloud sim
      curl -X PUT http://127.0.0.1:4010/_sim/faults \\
        -H "authorization: Bearer rachel-cloud-simulator-dev-token" \\
        -d '{"rate_limit_burst": 20}'
    """
    try:
        config = SimConfig.from_settings(SimSettings.load())
    except SettingsError as exc:
        # A usage error of this command, like a bad option: `error: ...`.
        raise click.ClickException(str(exc)) from None
    overrides = {"host": host or config.host, "port": config.port if port is None else port}
    config = SimConfig(**{**config.__dict__, **overrides})
    # Fail on a taken port or an unusable VPS directory before printing that we are up.
    bind_socket(config.host, config.port).close()
    if config.vps_dir is None:
        try:
            check_parent(config.vps_parent)
        except ScratchError as exc:
            raise click.ClickException(f"RACHEL_SIM_VPS_DIR: {exc}") from None
    click.echo(
        f"Hetzner Cloud API simulator on http://{config.host}:{config.port}/v1 "
        f"(VPS SSH port {config.ssh_port}; create {config.create_seconds}s, "
        f"boot {config.boot_seconds}s, cloud-init {config.cloud_init_seconds}s, "
        f"install {config.install_seconds}s, at {config.time_scale} real s each). Ctrl-C stops."
    )
    try:
        serve_forever(config)
    except SimulatorError as exc:
        raise click.ClickException(str(exc)) from None
