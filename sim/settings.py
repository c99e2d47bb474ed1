"""The simulator's settings, declared once the way the control plane's are.

`SimSettings` reads the same environment and `.env` as every other process.
Its own settings (timings, rate limit, VPS directory, faults) are declared
here; where it listens and the token it accepts are the control plane's
settings (`RACHEL_SIM_HOST`, `RACHEL_SIM_PORT`, `RACHEL_SIM_SSH_PORT`,
`HCLOUD_TOKEN`), shared so that both sides agree without either declaring
them twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.platform.settings import SIMULATOR_DEV_TOKEN, Settings
from core.platform.settings_parsing import parse_duration, parse_float, parse_int
from core.platform.settings_spec import DeclaredSettings, setting, shared
from sim.faults import Faults, parse_faults


def parse_vps_dir(text: str) -> Path | None:
    """Text to the VPS directory's parent; empty: the simulator picks one."""
    # Not `expanduser`ed: it never was, and a literal `~` directory stays possible.
    return Path(text.strip()) if text.strip() else None


@dataclass(frozen=True)
class SimSettings(DeclaredSettings):
    """The parsed, validated settings of `rachel-cloud sim`.

    Build with `SimSettings.load()`; unlike the control plane's, nothing here
    depends on being in production: the simulator never is.
    """

    host: str = shared(Settings, "sim_host")
    port: int = shared(Settings, "sim_port")
    ssh_port: int = shared(Settings, "sim_ssh_port")
    hcloud_token: str | None = shared(Settings, "hcloud_token")
    create_seconds: float = setting(
        "RACHEL_SIM_CREATE_TIME",
        "0.2s",
        "Simulated time from create to the server running.",
        parse_duration,
    )
    boot_seconds: float = setting(
        "RACHEL_SIM_BOOT_TIME",
        "0.1s",
        "Simulated time from running to SSH answering.",
        parse_duration,
    )
    cloud_init_seconds: float = setting(
        "RACHEL_SIM_CLOUD_INIT_TIME",
        "0.2s",
        "Simulated time of cloud-init's per-server part (users, files, the "
        "bootstrap) before the VPS calls back; the install's work is apart.",
        parse_duration,
    )
    install_seconds: float = setting(
        "RACHEL_SIM_INSTALL_TIME",
        "0.5s",
        "Simulated time of the stock Rachel8 install (apt, Bun, Claude Code, the clone, "
        "`bun install`) within cloud-init, for the part of its work not on the disk yet: "
        "all of it from a stock image, none from a snapshot of an installed server.",
        parse_duration,
    )
    image_seconds: float = setting(
        "RACHEL_SIM_IMAGE_TIME",
        "0.3s",
        "Simulated time from `create_image` to the snapshot image being available.",
        parse_duration,
    )
    rate_limit: int = setting(
        "RACHEL_SIM_RATE_LIMIT",
        "3600",
        "Simulated API rate limit: bucket size in requests.",
        parse_int(1, 10_000_000),
    )
    rate_refill: float = setting(
        "RACHEL_SIM_RATE_REFILL",
        "1",
        "Simulated API rate limit: requests refilled per second.",
        parse_float(0.0, 1_000_000.0),
    )
    vps_dir: Path | None = setting(
        "RACHEL_SIM_VPS_DIR",
        "",
        "Where the simulator makes its directory of simulated VPSs' root filesystems "
        "(removed when it stops). Default: `/dev/shm` when it has 1 GiB free (RAM: a VPS "
        "costs a fifth of the CPU it costs on a disk), else the system temp directory.",
        parse_vps_dir,
    )
    time_scale: float = setting(
        "RACHEL_SIM_TIME_SCALE",
        "1",
        "Real seconds per simulated second: of the create, boot, cloud-init, install and "
        "image times above, and of a VPS's systemd timers (Rachel8's RestartSec=10, its "
        "start limit, its start-up): 0.01 runs a crash loop 100 times faster.",
        parse_float(0.0001, 1000.0),
    )
    update_seconds: float = setting(
        "RACHEL_SIM_UPDATE_TIME",
        "0s",
        "Simulated time the update script's `prepare` takes when it clones a release and runs "
        "`bun install` (a prepared release is ok at once), scaled by RACHEL_SIM_TIME_SCALE: "
        "20s with a scale of 0.1 answers 2 s later.",
        parse_duration,
    )
    faults: Faults = setting(
        "RACHEL_SIM_FAULTS",
        "",
        'Simulator fault injection at start, as JSON (see "Fault injection" in the README; '
        "`sim/faults.py`); also settable at run time through `PUT /_sim/faults`.",
        parse_faults,
    )

    @property
    def token(self) -> str:
        """The bearer token the API accepts: HCLOUD_TOKEN, or the development token."""
        return self.hcloud_token or SIMULATOR_DEV_TOKEN
