"""The user data is valid cloud-config (cloud-init's own schema), small, secret-free, and
installs Rachel8 as its own setup does."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from core.cloud import cloudinit
from core.cloud import vps_contract as vps
from core.cloud.cloudinit import (
    MAX_USER_DATA_BYTES,
    CloudConfigInput,
    Rachel8Install,
    UserDataError,
    callback_url,
    render,
)
from core.platform.install_parsing import MAX_REPO_URL_LENGTH
from core.platform.settings import Settings
from core.security.crypto import generate_ssh_keypair

SCHEMA_PATH = (
    Path(__file__).resolve().parents[2].parent
    / "shared"
    / "cloud-init"
    / "schema-cloud-config-v1.json"
)


INSTALL = Rachel8Install(
    repo_url="https://github.com/polly3223/Rachel8.git",
    commit="63f162e9302a66344772ab23653789f701c7bcf9",
    bun_version="1.4.5",
    claude_code_version="2.1.332",
    user="rachel",
)


def sample(**overrides: Any) -> CloudConfigInput:
    values: dict[str, Any] = dict(
        hostname="rachel-42",
        authorized_key=generate_ssh_keypair().public_openssh,
        callback_url=callback_url("https://cp.example.com/", 42),
        callback_token="tok-123",
        install=INSTALL,
        heartbeat_interval=30.0,
    )
    values.update(overrides)
    return CloudConfigInput(**values)


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    if not SCHEMA_PATH.exists():
        pytest.skip("../shared/cloud-init is absent (a clone without the shared reference data)")
    data: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    return data


def test_user_data_validates_against_cloud_init_schema(schema: dict[str, Any]) -> None:
    text = render(sample())
    assert text.startswith("#cloud-config\n")
    config = yaml.safe_load(text)
    jsonschema.Draft4Validator(schema).validate(config)
    # The schema does not flag unknown top-level keys: check them against its modules.
    known: set[str] = set()
    for part in schema["allOf"]:
        ref = part["$ref"].split("/")[-1]
        known |= set(schema["$defs"][ref].get("properties", {}))
    assert set(config) <= known, set(config) - known


def _files(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["path"]: f for f in config["write_files"]}


def test_user_data_content(schema: dict[str, Any]) -> None:
    data = sample()
    config = yaml.safe_load(render(data))
    assert config["ssh_pwauth"] is False
    root, rachel = config["users"]
    assert root["name"] == "root" and root["ssh_authorized_keys"] == [data.authorized_key]
    assert rachel == {
        "name": "rachel",
        "lock_passwd": True,
        "shell": "/bin/bash",
        "homedir": "/home/rachel",
    }  # no sudo, no groups, no key: nobody logs in as rachel
    files = _files(config)
    assert {p: f["permissions"] for p, f in files.items()} == {
        vps.INSTALL_ENV_PATH: "0644",
        vps.INSTALL_SCRIPT_PATH: "0700",
        vps.SERVICE_UNIT_PATH: "0644",
        vps.BOOTSTRAP_ENV_PATH: "0600",
        vps.BOOTSTRAP_SCRIPT_PATH: "0700",
        vps.AGENT_SCRIPT_PATH: "0700",
        vps.AGENT_SERVICE_PATH: "0644",
        vps.AGENT_TIMER_PATH: "0644",
    }
    assert {f["owner"] for f in files.values()} == {"root:root"}
    assert files[vps.INSTALL_ENV_PATH]["content"] == (
        "RACHEL8_REPO=https://github.com/polly3223/Rachel8.git\n"
        "RACHEL8_COMMIT=63f162e9302a66344772ab23653789f701c7bcf9\n"
        "BUN_VERSION=1.4.5\n"
        "CLAUDE_CODE_VERSION=2.1.332\n"
        "RACHEL_USER=rachel\n"
    )
    env = files[vps.BOOTSTRAP_ENV_PATH]["content"]
    assert "RACHEL_CALLBACK_URL=https://cp.example.com/callbacks/cloud-init/42" in env
    assert "RACHEL_CALLBACK_TOKEN=tok-123" in env
    # The install, then the bootstrap whatever the install's exit status.
    assert config["runcmd"] == [
        ["sh", "-c", f"{vps.INSTALL_SCRIPT_PATH}; exec {vps.BOOTSTRAP_SCRIPT_PATH}"]
    ]
    assert "packages" not in config  # installed by the install's named step
    assert len(render(data).encode()) < MAX_USER_DATA_BYTES


def _sections(unit: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if line.startswith("["):
            current = sections.setdefault(line, [])
        elif line:
            current.append(line)
    return sections


def test_unit_runs_rachel8_as_its_user_enabled_not_started() -> None:
    config = yaml.safe_load(render(sample(install=replace(INSTALL, user="assistant"))))
    unit = _files(config)[vps.SERVICE_UNIT_PATH]["content"]
    sections = _sections(unit)
    assert {"StartLimitIntervalSec=120", "StartLimitBurst=3"} <= set(sections["[Unit]"])
    assert {
        "User=assistant",
        "Group=assistant",
        "WorkingDirectory=/home/assistant/rachel8",
        "Environment=HOME=/home/assistant",
        "Environment=PATH=/home/assistant/.bun/bin:/usr/local/bin:/usr/bin:/bin",
        "ExecStart=/home/assistant/.bun/bin/bun run src/index.ts",
        "Restart=on-failure",
        "RestartSec=10",
        "NoNewPrivileges=yes",
    } <= set(sections["[Service]"])
    assert sections["[Install]"] == ["WantedBy=multi-user.target"]
    assert "DynamicUser" not in unit and "EnvironmentFile" not in unit
    # Enabled by the install's last step, never started: it has no .env yet.
    script = _files(config)[vps.INSTALL_SCRIPT_PATH]["content"]
    assert '"systemctl", "enable", UNIT' in script and "--now" not in script
    assert '"start"' not in script


def test_the_agent_runs_as_a_oneshot_on_a_timer_of_the_heartbeat_interval() -> None:
    files = _files(yaml.safe_load(render(sample(heartbeat_interval=45.0))))
    service = _sections(files[vps.AGENT_SERVICE_PATH]["content"])["[Service]"]
    assert {"Type=oneshot", f"ExecStart={vps.AGENT_SCRIPT_PATH}"} <= set(service)
    assert any(line.startswith("TimeoutStartSec=") for line in service)
    assert not any(line.startswith("User=") for line in service)  # root: it reads the journal
    timer = _sections(files[vps.AGENT_TIMER_PATH]["content"])
    assert {
        "OnUnitActiveSec=45s",
        "OnActiveSec=5s",
        "AccuracySec=1s",
        "RandomizedDelaySec=4500ms",
    } == set(timer["[Timer]"])
    assert timer["[Install]"] == ["WantedBy=timers.target"]
    # Not enabled at first boot: it has no credential until the injection.
    assert vps.AGENT_TIMER_UNIT not in json.dumps(yaml.safe_load(render(sample()))["runcmd"])
    install = files[vps.INSTALL_SCRIPT_PATH]["content"]
    assert vps.AGENT_TIMER_UNIT not in install and vps.AGENT_SERVICE_UNIT not in install
    # Short intervals (tests, the simulator) keep their milliseconds.
    fast = _files(yaml.safe_load(render(sample(heartbeat_interval=0.25))))
    timer = _sections(fast[vps.AGENT_TIMER_PATH]["content"])
    assert {"OnUnitActiveSec=250ms", "OnActiveSec=250ms", "RandomizedDelaySec=25ms"} <= set(
        timer["[Timer]"]
    )


@pytest.mark.parametrize("interval", [0.0, -1.0])
def test_a_heartbeat_interval_must_be_positive(interval: float) -> None:
    with pytest.raises(UserDataError, match="heartbeat interval"):
        render(sample(heartbeat_interval=interval))


def test_scripts_carry_the_contract(schema: dict[str, Any]) -> None:
    config = yaml.safe_load(render(sample(install=replace(INSTALL, user="assistant"))))
    files = _files(config)
    install = files[vps.INSTALL_SCRIPT_PATH]["content"]
    namespace: dict[str, Any] = {"__name__": "rendered"}
    exec(compile(install, "install", "exec"), namespace)
    assert namespace["STEPS"] == list(vps.INSTALL_STEPS)
    assert namespace["PACKAGES"] == list(vps.PACKAGES)
    assert namespace["RESULT"] == vps.INSTALL_RESULT_PATH
    assert namespace["CLONE_DIR"] == vps.Layout("assistant").clone_dir
    assert namespace["SHARED_DIR"] == vps.Layout("assistant").shared_dir
    assert namespace["CLAUDE_PATH"] == vps.Layout("assistant").claude_path
    assert (namespace["MAX_LOG_TAIL"], namespace["MAX_CLOUD_INIT_ERRORS"]) == (
        vps.MAX_LOG_TAIL,
        vps.MAX_CLOUD_INIT_ERRORS,
    )
    job = namespace["Install"]({vps.USER_VAR: "assistant"})
    assert list(job.steps) == list(vps.INSTALL_STEPS)
    bootstrap = files[vps.BOOTSTRAP_SCRIPT_PATH]["content"]
    namespace = {"__name__": "rendered"}
    exec(compile(bootstrap, "bootstrap", "exec"), namespace)
    assert namespace["HOST_KEY_PATH"] == vps.HOST_KEY_PATH
    assert namespace["TOKEN_VAR"] == vps.CALLBACK_TOKEN_VAR
    agent = files[vps.AGENT_SCRIPT_PATH]["content"]
    namespace = {"__name__": "rendered"}
    exec(compile(agent, "agent", "exec"), namespace)
    assert {name: namespace[name] for name in cloudinit.agent_constants(vps.Layout())} == {
        "ENV_PATH": vps.AGENT_ENV_PATH,
        "STATE_PATH": vps.AGENT_STATE_PATH,
        "URL_VAR": vps.HEARTBEAT_URL_VAR,
        "CREDENTIAL_VAR": vps.HEARTBEAT_CREDENTIAL_VAR,
        "TELEGRAM_VAR": vps.TELEGRAM_API_VAR,
        "VERSION": vps.AGENT_VERSION,
        "UNIT": vps.SERVICE_UNIT,
        "PROPERTIES": list(vps.SERVICE_PROPERTIES),
        "BOT_ENV": vps.Layout("assistant").env_path,
        "TOKEN_KEY": vps.ENV_BOT_TOKEN,
        "HEAD_PATH": vps.Layout("assistant").git_head_path,
        "PROC": "/proc",
        "DISK": "/",
    }


@pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="no system python3")
def test_scripts_compile_under_the_system_python(tmp_path: Path) -> None:
    # The VPS runs them with the image's python3, not ours.
    config = yaml.safe_load(render(sample()))
    for path in (vps.INSTALL_SCRIPT_PATH, vps.BOOTSTRAP_SCRIPT_PATH, vps.AGENT_SCRIPT_PATH):
        script = tmp_path / Path(path).name
        script.write_text(_files(config)[path]["content"])
        assert script.read_text().startswith("#!/usr/bin/python3\n")
        checked = subprocess.run(
            ["/usr/bin/python3", "-m", "py_compile", str(script)],
            check=False,
            capture_output=True,
            text=True,
        )
        assert checked.returncode == 0, checked.stderr
        # Nothing of ours is on the VPS: the shared code is spliced in, not imported.
        assert not re.search(r"^\s*(from|import) core\b", script.read_text(), re.MULTILINE)
    if not Path(vps.BOOTSTRAP_ENV_PATH).exists():  # not on a machine that is a VPS of ours
        # It runs standalone: no env file here, so it says so and stops.
        ran = subprocess.run(
            ["/usr/bin/python3", "-I", str(tmp_path / Path(vps.BOOTSTRAP_SCRIPT_PATH).name)],
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert (ran.returncode, ran.stderr.strip()) == (
            1,
            "rachel-cloud: no callback URL or token in the bootstrap env",
        )


@pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="no system python3")
def test_the_agent_without_its_env_file_says_so(tmp_path: Path) -> None:
    if Path(vps.AGENT_ENV_PATH).exists():
        pytest.skip("this machine is a VPS of ours")
    script = tmp_path / "agent"
    script.write_text(_files(yaml.safe_load(render(sample())))[vps.AGENT_SCRIPT_PATH]["content"])
    ran = subprocess.run(
        ["/usr/bin/python3", "-I", str(script)],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (ran.returncode, ran.stderr.strip()) == (
        1,
        f"rachel-cloud agent: no heartbeat URL or credential in {vps.AGENT_ENV_PATH}",
    )


def test_the_token_is_only_in_the_bootstrap_env() -> None:
    token = "planted-callback-token-0123456789abcdef"
    config = yaml.safe_load(render(sample(callback_token=token)))
    holders = [p for p, f in _files(config).items() if token in f["content"]]
    assert holders == [vps.BOOTSTRAP_ENV_PATH]
    assert token not in json.dumps(config["users"]) + json.dumps(config["runcmd"])


def test_hostile_settings_cannot_inject_shell(schema: dict[str, Any]) -> None:
    config = yaml.safe_load(render(sample(callback_token="x; rm -rf / #")))
    env = next(f for f in config["write_files"] if f["path"] == vps.BOOTSTRAP_ENV_PATH)
    assert "RACHEL_CALLBACK_TOKEN='x; rm -rf / #'" in env["content"]
    odd = replace(INSTALL, repo_url="git@example.com:a/b$(id).git")
    manifest = _files(yaml.safe_load(render(sample(install=odd))))[vps.INSTALL_ENV_PATH]
    assert "RACHEL8_REPO='git@example.com:a/b$(id).git'" in manifest["content"]


def test_longest_allowed_settings_fit_in_32_kib(schema: dict[str, Any]) -> None:
    longest = Settings.load(
        environ={
            "RACHEL8_REPO_URL": "https://e.com/" + "r" * (MAX_REPO_URL_LENGTH - 14),
            "RACHEL8_BUN_VERSION": "999999.999999.999999",
            "RACHEL8_CLAUDE_CODE_VERSION": "999999.999999.999999",
            "RACHEL8_USER": "u" * 32,
            "RACHEL_PUBLIC_URL": "https://" + "p" * 240 + ".example.com",
        },
        env_file=None,
    )
    assert len(longest.rachel8_repo_url) == MAX_REPO_URL_LENGTH
    data = sample(
        hostname="h" * 63,
        callback_url=callback_url(longest.public_url, 2**31 - 1),
        callback_token="t" * 64,
        install=Rachel8Install.from_settings(longest),
    )
    text = render(data)
    # 2 KiB to spare (4 KiB before the health agent's ~7 KiB came in).
    assert len(text.encode()) < MAX_USER_DATA_BYTES - 2048, len(text.encode())
    jsonschema.Draft4Validator(schema).validate(yaml.safe_load(text))


def test_oversized_user_data_is_refused() -> None:
    with pytest.raises(UserDataError, match="32768"):
        render(sample(callback_url="https://cp.example.com/" + "x" * 40_000))


def test_only_ed25519_keys() -> None:
    with pytest.raises(UserDataError):
        render(sample(authorized_key="ssh-rsa AAAA"))


def test_libyaml_dumper_renders_the_same_text_as_pure_python() -> None:
    # render() uses libyaml's emitter when PyYAML has it, for speed only.
    class PurePython(yaml.SafeDumper):
        pass

    PurePython.add_representer(str, cloudinit._str)
    data = sample(callback_token="x: 'y' # \"z\"\n")
    config = cloudinit.build_cloud_config(data)
    options: dict[str, Any] = dict(sort_keys=False, default_flow_style=False, width=1000)
    expected = yaml.dump(config, Dumper=PurePython, **options)
    assert render(data) == "#cloud-config\n" + expected
