"""The Rachel8 install a simulated VPS runs: the contract checked step by step."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from core.cloud import vps_contract as contract
from sim.install import FAULT_OUTPUT
from sim.rachel8 import BAD_RELEASES, CURRENT_COMMIT, INSTALL_FAILS, RELEASES
from sim.shell import Shell
from sim.vps import Vps
from tests.sim.rachel8_data import LAYOUT, make_vps, user_data


def _mode(vps: object, path: str) -> int:
    return stat.S_IMODE((vps.root / path.lstrip("/")).stat().st_mode)  # type: ignore[attr-defined]


def test_a_successful_install_leaves_rachel8_ready_to_configure(tmp_path: Path) -> None:
    vps = make_vps(tmp_path)
    result = vps.install_result
    assert result is not None
    assert result["ok"] is True and result["failed_step"] is None and result["exit_status"] is None
    assert result["commit"] == CURRENT_COMMIT
    assert result["versions"] == {"bun": "1.4.5", "claude_code": "2.1.332"}
    assert result["cloud_init"] == {"status": "running", "errors": []}
    assert (
        len(result["log_tail"]) <= contract.MAX_LOG_TAIL
        and "HEAD is now at 63f162e" in (result["log_tail"])
    )
    on_disk = json.loads((vps.root / contract.INSTALL_RESULT_PATH.lstrip("/")).read_text())
    assert on_disk == result
    assert set(contract.PACKAGES) <= set(vps.packages)

    rachel = vps.fs.accounts.get("rachel")
    assert rachel is not None and rachel.uid == rachel.gid == 1000 and not rachel.has_sudo
    mine = (rachel.uid, rachel.gid)
    for path, mode in [
        (LAYOUT.home, 0o750),
        (LAYOUT.bun_path, 0o755),
        (LAYOUT.claude_path, 0o755),
        (LAYOUT.clone_dir, 0o755),
        (f"{LAYOUT.clone_dir}/package.json", 0o644),
        (f"{LAYOUT.clone_dir}/src/index.ts", 0o644),
        (f"{LAYOUT.clone_dir}/node_modules/grammy/package.json", 0o644),
        (LAYOUT.git_head_path, 0o644),
        (LAYOUT.shared_dir, 0o700),
    ]:
        assert vps.fs.owners.get(path) == mine, path
        assert _mode(vps, path) == mode, path
    assert set(RELEASES[CURRENT_COMMIT].files()) <= {
        str(p.relative_to(vps.root / LAYOUT.clone_dir.lstrip("/")))
        for p in (vps.root / LAYOUT.clone_dir.lstrip("/")).rglob("*")
    }
    assert (vps.root / LAYOUT.git_head_path.lstrip("/")).read_text() == CURRENT_COMMIT + "\n"
    # The clone is the release dir of its commit; ~/rachel8 a relative link to it.
    link = vps.root / LAYOUT.clone_dir.lstrip("/")
    assert link.is_symlink() and str(link.readlink()) == LAYOUT.link_target(CURRENT_COMMIT)
    release = vps.root / LAYOUT.release_dir(CURRENT_COMMIT).lstrip("/")
    assert release.is_dir() and not release.is_symlink()
    assert vps.fs.owners.get(LAYOUT.release_dir(CURRENT_COMMIT)) == mine
    # The unit file is root's; the unit is enabled, not started (no .env yet).
    assert vps.fs.owners.get(contract.SERVICE_UNIT_PATH) == (0, 0)
    assert vps.systemd.systemctl(["is-enabled", contract.SERVICE_UNIT]).stdout == "enabled\n"
    assert vps.systemd.systemctl(["is-active", "rachel8"]).stdout == "inactive\n"
    shown = vps.describe()
    assert shown["install"] == result
    assert [u["name"] for u in shown["users"]] == ["root", "rachel"]
    assert shown["rachel8"] == {"loaded": False, "enabled": True}


@pytest.mark.parametrize("step", contract.INSTALL_STEPS)
def test_each_step_fails_on_demand_and_stops_the_install(tmp_path: Path, step: str) -> None:
    vps = make_vps(tmp_path, install_fail=step)
    result = vps.install_result
    assert result is not None
    assert result["ok"] is False and result["failed_step"] == step
    assert result["exit_status"] == FAULT_OUTPUT[step][0] != 0
    assert FAULT_OUTPUT[step][1].strip() in result["log_tail"]
    later = contract.INSTALL_STEPS[contract.INSTALL_STEPS.index(step) + 1 :]
    for name in later:
        assert f"==> {name}\n" not in result["log_tail"]
    ran = {
        contract.STEP_BUN: LAYOUT.bun_path,
        contract.STEP_CLONE: LAYOUT.git_head_path,
        contract.STEP_SHARED_FOLDER: LAYOUT.shared_dir,
    }
    for name, path in ran.items():
        done = contract.INSTALL_STEPS.index(name) < contract.INSTALL_STEPS.index(step)
        assert (vps.root / path.lstrip("/")).exists() == done, (name, path)
    # The unit is the last step: whichever fails, it is not enabled.
    assert contract.SERVICE_UNIT not in vps.systemd.enabled
    cloned = contract.INSTALL_STEPS.index(step) > contract.INSTALL_STEPS.index(contract.STEP_CLONE)
    assert result["commit"] == (CURRENT_COMMIT if cloned else None)


def test_an_unknown_commit_fails_the_clone_as_git_does(tmp_path: Path) -> None:
    unknown = "0123456789abcdef0123456789abcdef01234567"
    result = make_vps(tmp_path, commit=unknown).install_result
    assert result is not None
    assert (result["failed_step"], result["exit_status"]) == (contract.STEP_CLONE, 128)
    assert f"fatal: reference is not a tree: {unknown}" in result["log_tail"]
    assert result["commit"] is None


@pytest.mark.parametrize("commit", sorted(c for c, r in RELEASES.items() if r.defect is None))
def test_every_good_release_installs(tmp_path: Path, commit: str) -> None:
    result = make_vps(tmp_path, commit=commit).install_result
    assert result is not None and result["ok"] and result["commit"] == commit


def test_a_release_whose_lockfile_is_out_of_date_fails_bun_install(tmp_path: Path) -> None:
    commit = BAD_RELEASES[INSTALL_FAILS].commit
    result = make_vps(tmp_path, commit=commit).install_result
    assert result is not None
    assert (result["failed_step"], result["exit_status"]) == (contract.STEP_DEPENDENCIES, 1)
    assert "lockfile had changes, but lockfile is frozen" in result["log_tail"]


@pytest.mark.parametrize(
    ("fields", "step", "message"),
    [
        ({"sudo": True}, contract.STEP_USER, "rachel can use sudo"),
        ({"bun": "9.9.9"}, contract.STEP_BUN, "bun-v9.9.9"),
        ({"claude_code": "0.0.1"}, contract.STEP_CLAUDE_CODE, 'No version matching "0.0.1"'),
        ({"repo": "https://github.com/someone/else.git"}, contract.STEP_CLONE, "not found"),
    ],
)
def test_what_a_real_box_refuses_fails_its_step(
    tmp_path: Path, fields: dict[str, object], step: str, message: str
) -> None:
    result = make_vps(tmp_path, **fields).install_result
    assert result is not None and result["failed_step"] == step
    assert message in result["log_tail"]


def test_no_install_without_runcmd_running_the_script(tmp_path: Path) -> None:
    text = user_data().replace(f"- - {contract.INSTALL_SCRIPT_PATH}\n", "")
    vps = Vps(
        server_id=2, name="rc-2", ip="127.0.0.1", ssh_port=0, base_dir=tmp_path,
        user_data=text, api_keys=[],
    )  # fmt: skip
    vps.run_cloud_init()
    assert vps.install_result is None
    assert not (vps.root / contract.INSTALL_RESULT_PATH.lstrip("/")).exists()


def test_write_files_owners_exist_only_after_users_unless_deferred(tmp_path: Path) -> None:
    early = Vps(
        server_id=3, name="rc-3", ip="127.0.0.1", ssh_port=0, base_dir=tmp_path, api_keys=[],
        user_data="#cloud-config\nusers: [{name: rachel}]\nwrite_files:\n"
        "  - {path: /home/rachel/early, owner: 'rachel:rachel', content: x}\n"
        "  - {path: /etc/after, content: x}\n"
        "  - {path: /home/rachel/late, owner: 'rachel:rachel', content: x, defer: true}\n",
    )  # fmt: skip
    assert early.cloud_config_errors == [
        "write_files /home/rachel/early: owner rachel:rachel: invalid user: 'rachel'"
    ]
    assert early.fs.owners.get("/home/rachel/early") == (0, 0)
    assert not (early.root / "etc/after").exists()  # cloud-init abandons the module
    assert early.fs.owners.get("/home/rachel/late") == (1000, 1000)


def test_the_shell_reports_and_changes_virtual_owners(tmp_path: Path) -> None:
    vps = make_vps(tmp_path)
    shell = Shell(vps.fs, vps.systemd)
    assert shell.run(f"stat -c '%u:%g %U:%G %a %F' {LAYOUT.shared_dir}").stdout == (
        "1000:1000 rachel:rachel 700 directory\n"
    )
    assert shell.run("mkdir -p /home/rachel/a/b && stat -c %U /home/rachel/a/b").stdout == "root\n"
    assert shell.run(
        "chown -R rachel: /home/rachel/a && stat -c %U:%G /home/rachel/a/b"
    ).stdout == ("rachel:rachel\n")
    assert shell.run("mv /home/rachel/a /home/rachel/c && stat -c %u /home/rachel/c/b").stdout == (
        "1000\n"
    )
    failed = shell.run("chown nobody /home/rachel/c")
    assert (failed.exit_status, failed.stderr) == (1, "chown: invalid user: 'nobody'\n")
    assert shell.run("rm -r /home/rachel/c").exit_status == 0
    assert vps.fs.owners.get("/home/rachel/c/b") == (0, 0)
