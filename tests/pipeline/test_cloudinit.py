"""The user data is valid cloud-config (cloud-init's own schema), small, and secret-free."""

from __future__ import annotations

import json
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
    UserDataError,
    callback_url,
    render,
)
from core.security.crypto import generate_ssh_keypair

SCHEMA_PATH = (
    Path(__file__).resolve().parents[2].parent
    / "shared"
    / "cloud-init"
    / "schema-cloud-config-v1.json"
)


def sample(**overrides: Any) -> CloudConfigInput:
    values: dict[str, Any] = dict(
        hostname="rachel-42",
        authorized_key=generate_ssh_keypair().public_openssh,
        callback_url=callback_url("https://cp.example.com/", 42),
        callback_token="tok-123",
        install_command="pip3 install --break-system-packages rachel8",
        service_exec="/usr/local/bin/rachel8",
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


def test_user_data_content(schema: dict[str, Any]) -> None:
    data = sample()
    config = yaml.safe_load(render(data))
    assert config["ssh_pwauth"] is False
    assert config["users"][0]["name"] == "root"
    assert config["users"][0]["ssh_authorized_keys"] == [data.authorized_key]
    files = {f["path"]: f for f in config["write_files"]}
    env = files[vps.BOOTSTRAP_ENV_PATH]
    assert env["permissions"] == "0600"
    assert "RACHEL_CALLBACK_URL=https://cp.example.com/callbacks/cloud-init/42" in env["content"]
    assert "RACHEL_CALLBACK_TOKEN=tok-123" in env["content"]
    unit = files[vps.SERVICE_UNIT_PATH]["content"]
    assert (
        f"EnvironmentFile={vps.SECRETS_PATH}" in unit and "ExecStart=/usr/local/bin/rachel8" in unit
    )
    assert config["runcmd"][-1] == [vps.BOOTSTRAP_SCRIPT_PATH]
    assert len(render(data).encode()) < MAX_USER_DATA_BYTES


def test_hostile_settings_cannot_inject_shell(schema: dict[str, Any]) -> None:
    config = yaml.safe_load(render(sample(callback_token="x; rm -rf / #")))
    env = next(f for f in config["write_files"] if f["path"] == vps.BOOTSTRAP_ENV_PATH)
    assert "RACHEL_CALLBACK_TOKEN='x; rm -rf / #'" in env["content"]


def test_oversized_user_data_is_refused() -> None:
    with pytest.raises(UserDataError, match="32768"):
        render(sample(install_command="echo " + "x" * 40_000))


def test_only_ed25519_keys() -> None:
    with pytest.raises(UserDataError):
        render(sample(authorized_key="ssh-rsa AAAA"))


def test_libyaml_dumper_renders_the_same_text_as_pure_python() -> None:
    # render() uses libyaml's emitter when PyYAML has it, for speed only.
    class PurePython(yaml.SafeDumper):
        pass

    PurePython.add_representer(str, cloudinit._str)
    data = sample(
        install_command="curl -fsSL 'https://x/i.sh' | sh -s -- \"--yes\" # comment: not",
        service_exec="/usr/local/bin/rachel8 --opt: value\\n",
    )
    config = cloudinit.build_cloud_config(data)
    options: dict[str, Any] = dict(sort_keys=False, default_flow_style=False, width=1000)
    expected = yaml.dump(config, Dumper=PurePython, **options)
    assert render(data) == "#cloud-config\n" + expected
