"""The user data of a server made from an image: the per-server part only."""

from __future__ import annotations

from core.cloud import vps_contract as vps
from core.cloud.cloudinit import CloudConfigInput, Rachel8Install, build_cloud_config
from core.cloud.cloudinit_image import (
    BUILDER_LEFTOVERS,
    build_per_server_config,
    builder_cleanup_command,
    render_from_image,
)
from core.security.crypto import generate_ssh_keypair
from sim.cloudconfig import parse_user_data, runs, runs_with

INSTALL = Rachel8Install(
    "https://github.com/polly3223/Rachel8.git", "c" * 40, "1.2.3", "2.0.1", "rachel"
)


def data() -> CloudConfigInput:
    key = generate_ssh_keypair(comment="t").public_openssh
    return CloudConfigInput(
        "rachel-7", key, "https://cp/callbacks/cloud-init/7", "tok", INSTALL, 30
    )


def test_the_per_server_part_checks_the_install_and_reports_it() -> None:
    given = data()
    config = build_per_server_config(given)
    stock = build_cloud_config(given)
    assert config["users"] == stock["users"]  # its own key for root, the user (skipped if there)
    paths = [f["path"] for f in config["write_files"]]  # type: ignore[attr-defined]
    assert vps.SERVICE_UNIT_PATH not in paths  # the image holds it, enabled
    for path in (vps.INSTALL_ENV_PATH, vps.BOOTSTRAP_ENV_PATH, vps.INSTALL_SCRIPT_PATH):
        assert path in paths
    scripts = {f["path"]: f["content"] for f in config["write_files"]}  # type: ignore[attr-defined]
    stock_scripts = {f["path"]: f["content"] for f in stock["write_files"]}  # type: ignore[attr-defined]
    assert "class Verify" in scripts[vps.INSTALL_SCRIPT_PATH]  # the checks, here only
    assert "class Verify" not in stock_scripts[vps.INSTALL_SCRIPT_PATH]
    parsed = parse_user_data(render_from_image(given))
    (command,) = parsed.runcmd
    assert runs_with(command, vps.INSTALL_SCRIPT_PATH, vps.INSTALL_VERIFY_ARG)
    assert runs(command, vps.BOOTSTRAP_SCRIPT_PATH)
    # The stock user data installs: the same script, without the argument.
    stock_runcmd = stock["runcmd"]
    assert isinstance(stock_runcmd, list)
    assert not runs_with(stock_runcmd[0], vps.INSTALL_SCRIPT_PATH, vps.INSTALL_VERIFY_ARG)


def test_the_builder_cleanup_removes_every_leftover() -> None:
    command = builder_cleanup_command()
    assert command.startswith("rm -f ")
    for path in BUILDER_LEFTOVERS:
        assert path in command
    assert "/root/.ssh/authorized_keys" in BUILDER_LEFTOVERS
