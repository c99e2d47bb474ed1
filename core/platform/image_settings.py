"""The image settings: building snapshot images of the fleet's release, keeping them.

Declared apart from `core.platform.settings` (which inherits them, as it does
`core.platform.rollout_settings`); documented and parsed like every other setting.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.platform.settings_parsing import parse_bool, parse_int, parse_period
from core.platform.settings_spec import DeclaredSettings, setting


@dataclass(frozen=True, kw_only=True)
class ImageSettings(DeclaredSettings):
    """How snapshot images are built and kept (`core.domain.images`, `jobs.images`)."""

    images_enabled: bool = setting(
        "RACHEL_IMAGES",
        "true",
        "Build a snapshot image of the fleet's current release (a scheduled check) and create "
        "new servers from it; off: every server installs on the stock image (RACHEL_IMAGE).",
        parse_bool,
    )
    image_keep: int = setting(
        "RACHEL_IMAGE_KEEP",
        "3",
        "How many available images are kept, newest first (the current release's newest is "
        "always kept); older ones are deleted, except one an in-flight create uses.",
        parse_int(1, 100),
    )
    image_build_timeout_seconds: float = setting(
        "RACHEL_IMAGE_BUILD_TIMEOUT",
        "30m",
        "Time limit of one image build (builder created, installed, called back, powered "
        "off, snapshotted); past it the build fails and its builder is deleted.",
        parse_period,
    )
    image_retry_seconds: float = setting(
        "RACHEL_IMAGE_RETRY_AFTER",
        "1h",
        "After a failed build of the current release, how long the scheduled check waits "
        "before it tries again (`rachel-cloud image build` does not wait).",
        parse_period,
    )
    image_interval_seconds: float = setting(
        "RACHEL_IMAGE_INTERVAL",
        "5m",
        "How often the scheduled image check runs: a build when the current release has no "
        "image, stale builds failed, old images deleted.",
        parse_period,
    )
