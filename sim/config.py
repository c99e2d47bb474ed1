"""The simulator's configuration, built from settings or directly in tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from core.platform.settings import SIMULATOR_DEV_TOKEN
from sim.bootstrap import CallbackPolicy
from sim.faults import Faults
from sim.settings import SimSettings


@dataclass(frozen=True)
class SimConfig:
    """Everything that shapes one simulator.

    Attributes:
        host: address the API binds.
        port: API port; 0 picks a free one (in-process tests).
        ssh_port: SSH port of every VPS (each on its own loopback address).
        token: the accepted bearer token.
        create_seconds: create -> the server `running` (create action done).
        boot_seconds: `running` -> SSH answering; also how long power actions take.
        cloud_init_seconds: SSH answering -> the bootstrap callback: cloud-init's
            per-server part, without the install.
        install_seconds: the stock install's work (apt, Bun, Claude Code, the
            clone, `bun install`), spent in cloud-init when its install runs on a
            disk without it (`sim.install.pending_work`).
        image_seconds: `create_image` -> the image `available`.
        rate_limit: token bucket size (`RateLimit-Limit`).
        rate_refill: tokens refilled per second.
        faults: faults active at start.
        callback: retry policy of the bootstrap callback.
        vps_dir: where VPS root directories are made; None: in a scratch
            directory of the simulator's own (`sim.scratch`), removed on close.
        vps_parent: where that scratch directory is made; None: a RAM-backed
            directory with room, else the system temp dir.
        seed: seeds the random choices (faults, addresses) when set.
        time_scale: real seconds per simulated second: of the timings above
            and of a VPS's systemd (RestartSec, start limits, Rachel8's
            start-up): 0.01 is 100x faster.
        update_seconds: simulated seconds an update's `prepare` takes to clone and
            install a release (`sim.update.seconds`), scaled by `time_scale`.
    """

    host: str = "127.0.0.1"
    port: int = 0
    ssh_port: int = 2222
    token: str = SIMULATOR_DEV_TOKEN
    create_seconds: float = 0.0
    boot_seconds: float = 0.0
    cloud_init_seconds: float = 0.0
    install_seconds: float = 0.0
    image_seconds: float = 0.0
    rate_limit: int = 3600
    rate_refill: float = 1.0
    faults: Faults = field(default_factory=Faults)
    callback: CallbackPolicy = field(default_factory=CallbackPolicy)
    vps_dir: Path | None = None
    vps_parent: Path | None = None
    seed: int | None = None
    time_scale: float = 1.0
    update_seconds: float = 0.0

    @classmethod
    def from_settings(cls, settings: SimSettings) -> SimConfig:
        """Build from `SimSettings.load()`; the token is HCLOUD_TOKEN or the dev token."""
        return cls(
            host=settings.host,
            port=settings.port,
            ssh_port=settings.ssh_port,
            token=settings.token,
            create_seconds=settings.create_seconds,
            boot_seconds=settings.boot_seconds,
            cloud_init_seconds=settings.cloud_init_seconds,
            install_seconds=settings.install_seconds,
            image_seconds=settings.image_seconds,
            rate_limit=settings.rate_limit,
            rate_refill=settings.rate_refill,
            faults=settings.faults,
            vps_parent=settings.vps_dir,
            time_scale=settings.time_scale,
            update_seconds=settings.update_seconds,
        )
