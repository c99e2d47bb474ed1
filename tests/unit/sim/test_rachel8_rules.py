"""The simulator's own reading of Rachel8's rules, its unit files, owners and fault document."""

from __future__ import annotations

import random

import pytest

from sim.accounts import Accounts
from sim.cloudconfig import parse_user_data, runs
from sim.faults import FaultError, InstallFault, decide_server_faults, parse_faults
from sim.owners import Owners
from sim.rachel8_env import ai_provider, parse_dotenv, validate
from sim.units import parse_timespan, parse_unit

TOKEN = "123456789:" + "A" * 35
VALID = {
    "TELEGRAM_BOT_TOKEN": TOKEN,
    "OWNER_TELEGRAM_USER_ID": "42",
    "SHARED_FOLDER_PATH": "/home/rachel/shared",
}


def test_dotenv_is_read_as_bun_reads_it() -> None:
    text = (
        "# a comment\n"
        "A=plain # trailing comment\n"
        "B='single # kept'\n"
        'C="line\\nbreak"\n'
        "export D=exported\n"
        "E=$A-${HOME}\n"
        "F='$A'\n"
        "not a line\n"
    )
    values = parse_dotenv(text, {"HOME": "/home/rachel"})
    assert values == {
        "A": "plain", "B": "single # kept", "C": "line\nbreak", "D": "exported",
        "E": "plain-/home/rachel", "F": "$A",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("change", "key", "message"),
    [
        ({"TELEGRAM_BOT_TOKEN": "123:abc"}, "TELEGRAM_BOT_TOKEN", "Invalid format"),
        ({"TELEGRAM_BOT_TOKEN": None}, "TELEGRAM_BOT_TOKEN", "Required"),
        ({"OWNER_TELEGRAM_USER_ID": "0"}, "OWNER_TELEGRAM_USER_ID", "Must be a positive"),
        ({"OWNER_TELEGRAM_USER_ID": "-5"}, "OWNER_TELEGRAM_USER_ID", "Must be a positive"),
        ({"OWNER_TELEGRAM_USER_ID": ""}, "OWNER_TELEGRAM_USER_ID", "Must be a positive"),
        ({"OWNER_TELEGRAM_USER_ID": "1.5"}, "OWNER_TELEGRAM_USER_ID", "Expected integer"),
        ({"OWNER_TELEGRAM_USER_ID": "12ab"}, "OWNER_TELEGRAM_USER_ID", "Expected number"),
        ({"SHARED_FOLDER_PATH": ""}, "SHARED_FOLDER_PATH", "Shared folder path is required"),
        ({"NODE_ENV": "prod"}, "NODE_ENV", "Invalid enum value"),
        ({"AI_PROVIDER": "openai"}, "AI_PROVIDER", "Invalid enum value"),
    ],
)
def test_each_rule_names_its_key(change: dict[str, str | None], key: str, message: str) -> None:
    env = {k: v for k, v in (VALID | change).items() if v is not None}
    issues = validate(env)
    assert [k for k, _ in issues] == [key] and message in issues[0][1]


def test_valid_values_and_the_provider_default() -> None:
    assert validate(VALID | {"OWNER_TELEGRAM_USER_ID": " 42 ", "LOG_LEVEL": "debug"}) == []
    assert ai_provider(VALID) == "codex"
    assert ai_provider(VALID | {"AI_PROVIDER": "claude"}) == "claudecode"


def test_unit_files_and_timespans() -> None:
    unit = parse_unit(
        "/etc/systemd/system/x.service",
        "[Unit]\nStartLimitIntervalSec=2min\nStartLimitBurst=3\n[Service]\nUser=rachel\n"
        'Environment="PATH=/a:/b" HOME=/home/rachel\nEnvironmentFile=-/etc/opt.env\n'
        "ExecStart=-/home/rachel/.bun/bin/bun run src/index.ts\nRestart=on-failure\n"
        "RestartSec=500ms\n",
    )
    assert unit.exec_start == ["/home/rachel/.bun/bin/bun", "run", "src/index.ts"]
    assert unit.environment == {"PATH": "/a:/b", "HOME": "/home/rachel"}
    assert unit.environment_files == [("/etc/opt.env", True)]
    assert (unit.restart_sec, unit.start_limit_interval, unit.start_limit_burst) == (0.5, 120, 3)
    assert parse_timespan("1min 30s", 0) == 90 and parse_timespan("soon", 7) == 7


def test_owners_move_with_renames_and_go_with_removals() -> None:
    owners = Owners()
    owners.set("/home/r/dir", 1000, 1000)
    owners.set("/home/r/dir/f", 1000, 1000)
    owners.set("/home/r/new", 5, 5)
    owners.move("/home/r/dir", "/home/r/new")
    assert owners.get("/home/r/new/f") == (1000, 1000) and owners.get("/home/r/dir/f") == (0, 0)
    owners.set("/home/r/new", -1, 7)
    assert owners.get("/home/r/new") == (1000, 7)
    owners.drop("/home/r/new")
    assert owners.get("/home/r/new/f") == (0, 0)


def test_accounts_and_chown_specs() -> None:
    accounts = Accounts()
    rachel = accounts.add("rachel", groups=("docker",))
    admin = accounts.add("admin", sudo_rule=None, groups=("sudo",))
    assert (rachel.uid, admin.uid) == (1000, 1001) and not rachel.has_sudo and admin.has_sudo
    assert accounts.resolve("rachel:rachel") == (1000, 1000)
    assert accounts.resolve("rachel:") == (1000, 1000) and accounts.resolve("0") == (0, -1)
    with pytest.raises(KeyError, match="invalid user: 'nobody'"):
        accounts.resolve("nobody")
    with pytest.raises(ValueError, match="already exists"):
        accounts.add("rachel")


def test_cloud_config_users_files_and_runcmd() -> None:
    config = parse_user_data(
        "#cloud-config\nusers:\n  - default\n  - name: root\n  - name: rachel\n"
        "    sudo: false\n    groups: [docker]\n  - name: ops\n    sudo: ['ALL=(ALL) ALL']\n"
        "write_files:\n  - path: /x\n    owner: rachel:rachel\n    defer: true\n"
        "runcmd:\n  - [sh, -c, '/usr/local/sbin/install >/var/log/i.log 2>&1']\n  - echo\n"
    )
    assert [(u.name, u.sudo_rule, u.groups) for u in config.users] == [
        ("rachel", None, ("docker",)),
        ("ops", "ALL=(ALL) ALL", ()),
    ]
    assert config.write_files[0].owner == "rachel:rachel" and config.write_files[0].defer
    assert runs(config.runcmd[0], "/usr/local/sbin/install")
    assert not runs("cat /usr/local/sbin/install.log", "/usr/local/sbin/install")


def test_install_fault_documents() -> None:
    faults = parse_faults('{"install_fail": {"step": "clone"}}')
    assert faults.install_fail == InstallFault(step="clone")
    assert decide_server_faults(faults, "any", random.Random(0)).install_fail == "clone"
    named = parse_faults('{"install_fail": {"step": "bun", "names": ["rc-9-*"]}}')
    assert decide_server_faults(named, "rc-9-x", random.Random(0)).install_fail == "bun"
    assert decide_server_faults(named, "rc-1-x", random.Random(0)).install_fail is None
    with pytest.raises(FaultError, match="unknown step 'compile'"):
        parse_faults('{"install_fail": {"step": "compile"}}')
    with pytest.raises(FaultError, match="rate must be between 0 and 1"):
        parse_faults('{"install_fail": {"step": "bun", "rate": 3}}')
