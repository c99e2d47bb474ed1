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

    Serves the API at http://HOST:PORT/v1 (token: HCLOUD_TOKEN, or the
    development token) and the admin API at /_sim/. Timings and faults come
    from the RACHEL_SIM_* settings.
    """
    try:
        config = SimConfig.from_settings(SimSettings.load())
    except SettingsError as exc:
        # A usage error of this command, like a bad option (exit 1).
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
        f"boot {config.boot_seconds}s, cloud-init {config.cloud_init_seconds}s). Ctrl-C stops."
    )
    try:
        serve_forever(config)
    except SimulatorError as exc:
        raise click.ClickException(str(exc)) from None
