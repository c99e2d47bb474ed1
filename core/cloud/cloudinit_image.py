"""The user data of a server made from a snapshot image: only the per-server part.

The image holds the install (`core.cloud.vps_contract`, "From a snapshot
image"): the user, Bun, Claude Code, the release and its dependencies, the
enabled unit. What stays this server's own: its hostname, its public key for
root, the manifest of what it must run (its release), the bootstrap env with
its callback URL and one-time token, and the scripts (written again, so that
they are this control plane's, whatever the image holds). The runcmd checks
the install in place (`INSTALL_SCRIPT_PATH verify`), which writes this
server's own outcome, then runs the bootstrap that reports it. No package,
no download, no clone: cloud-init's own work only.

Also here: the command a builder runs, over SSH, before it is snapshotted,
which removes what must not be in an image.
"""

from __future__ import annotations

import shlex
from typing import cast

from core.cloud import vps_contract as vps
from core.cloud.cloudinit import (
    INSTALL_LOG_PATH,
    CloudConfigInput,
    build_cloud_config,
    dump,
    install_script,
)

#: What a builder leaves that no server made from its image may inherit: root's
#: keys (the builder's key would open every such server), the bootstrap env
#: (the builder's callback URL and token), the install's result and log (the
#: builder's outcome, which a server would otherwise report as its own).
BUILDER_LEFTOVERS = (
    "/root/.ssh/authorized_keys",
    vps.BOOTSTRAP_ENV_PATH,
    vps.INSTALL_RESULT_PATH,
    INSTALL_LOG_PATH,
)


def builder_cleanup_command() -> str:
    """The shell command that removes `BUILDER_LEFTOVERS` (run as root, idempotent)."""
    return "rm -f " + " ".join(shlex.quote(path) for path in BUILDER_LEFTOVERS)


def build_per_server_config(data: CloudConfigInput) -> dict[str, object]:
    """The cloud-config of a server made from an image: the stock one's users, keys and
    files but the unit (the image holds it, enabled), the install script with its
    checks, and a runcmd that checks the install in place instead of doing it."""
    stock = build_cloud_config(data)
    files = cast(list[dict[str, str]], stock["write_files"])
    checking = install_script(data.install.layout, verify=True)
    verify = f"{vps.INSTALL_SCRIPT_PATH} {vps.INSTALL_VERIFY_ARG}"
    return {
        **stock,
        "write_files": [
            {**f, "content": checking} if f["path"] == vps.INSTALL_SCRIPT_PATH else f
            for f in files
            if f["path"] != vps.SERVICE_UNIT_PATH
        ],
        # One command, so the bootstrap reports even when the check failed.
        "runcmd": [["sh", "-c", f"{verify}; exec {vps.BOOTSTRAP_SCRIPT_PATH}"]],
    }


def render_from_image(data: CloudConfigInput) -> str:
    """The user data text of a server made from an image.

    Raises:
        UserDataError: bad input, or over Hetzner's 32 KiB limit.
    """
    return dump(build_per_server_config(data))
