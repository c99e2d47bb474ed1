"""Where the local simulator is (development and tests only): its host, API port, SSH port.

`rachel-cloud sim` reads these too (`sim.settings`, which shares them): they
are declared in `core.platform` because the control plane must find the
simulator without importing it. `core.platform.settings` inherits them, as it
does `core.platform.health_settings`; the simulator's own settings are
`sim.settings.SimSettings`.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.platform.settings_parsing import parse_int
from core.platform.settings_spec import DeclaredSettings, setting


@dataclass(frozen=True, kw_only=True)
class SimulatorAddressSettings(DeclaredSettings):
    """The address of the simulator the control plane calls when HCLOUD_TOKEN is unset."""

    sim_host: str = setting(
        "RACHEL_SIM_HOST",
        "127.0.0.1",
        "Address of the simulator: `rachel-cloud sim` binds it, and the control plane "
        "calls it there when HCLOUD_TOKEN is unset.",
    )
    sim_port: int = setting(
        "RACHEL_SIM_PORT",
        "4010",
        "Port of the simulator: `rachel-cloud sim` listens on it, and the control plane "
        "calls it there when HCLOUD_TOKEN is unset.",
        parse_int(0, 65535),
    )
    sim_ssh_port: int = setting(
        "RACHEL_SIM_SSH_PORT",
        "2222",
        "SSH port of every simulated VPS (each VPS has its own loopback address); the "
        "secret injection connects to it unless the endpoint is the real Hetzner.",
        parse_int(0, 65535),
    )
