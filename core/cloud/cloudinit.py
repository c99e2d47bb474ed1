"""The `#cloud-config` user data of a server.

It holds no customer secret, by construction: its inputs are the server's
public key, the callback URL and one-time token, and the install settings.
What it does on first boot:
- authorises the server's own public key for root, with password logins off
  (Hetzner issues no root password either: servers are created with a key);
- installs Rachel8 and its systemd unit (enabled, started only once the
  secrets are injected);
- last, runs the bootstrap script, which POSTs the VPS's SSH host key to the
  callback URL with the bearer token, retrying until it gets a 2xx answer.
The paths are those of `core.cloud.vps_contract`, which the simulator reads too.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

import yaml

from core.cloud import vps_contract as vps
from core.errors import RachelError

MAX_USER_DATA_BYTES = 32 * 1024
SAMPLE_TOKEN = "<one-time token, issued when the server is created>"  # noqa: S105


class UserDataError(RachelError):
    """User data that cannot be built (too large, bad input)."""

    code = "user_data_error"


@dataclass(frozen=True)
class CloudConfigInput:
    """Everything that goes into a server's user data (no secrets accepted)."""

    hostname: str
    authorized_key: str
    callback_url: str
    callback_token: str
    install_command: str
    service_exec: str


BOOTSTRAP_SCRIPT = """#!/bin/sh
# rachel-cloud bootstrap: report this VPS's SSH host key to the control plane.
set -u
. {env_path}
key=$(cat {host_key_path})
body=$(printf '{{"host_key": "%s"}}' "$key")
delay=2
while :; do
  code=$(curl -sS -o /dev/null -w '%{{http_code}}' --max-time 15 -X POST \\
    -H "Authorization: Bearer $RACHEL_CALLBACK_TOKEN" \\
    -H 'Content-Type: application/json' --data "$body" "$RACHEL_CALLBACK_URL") || code=000
  case "$code" in
    2??) echo "rachel-cloud: callback accepted"; exit 0 ;;
  esac
  echo "rachel-cloud: callback answered $code, retrying in ${{delay}}s" >&2
  sleep "$delay"
  [ "$delay" -lt 60 ] && delay=$((delay * 2))
done
"""


def service_unit(service_exec: str) -> str:
    """The Rachel8 systemd unit: reads its secrets from the 0600 environment file."""
    return (
        "[Unit]\n"
        "Description=Rachel8 personal assistant (managed by rachel-cloud)\n"
        "After=network-online.target\n"
        "Wants=network-online.target\n\n"
        "[Service]\n"
        f"EnvironmentFile={vps.SECRETS_PATH}\n"
        f"ExecStart={service_exec}\n"
        "Restart=on-failure\n"
        "RestartSec=5\n"
        "DynamicUser=yes\n"
        "NoNewPrivileges=yes\n"
        "ProtectSystem=strict\n"
        "ProtectHome=yes\n\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def _env_line(name: str, value: str) -> str:
    # Sourced by /bin/sh: quote so that no value can run as a command.
    return f"{name}={shlex.quote(value)}\n"


def build_cloud_config(data: CloudConfigInput) -> dict[str, object]:
    """The cloud-config as a dict (validated against cloud-init's schema in tests)."""
    if not data.authorized_key.startswith("ssh-ed25519 "):
        raise UserDataError("the authorised key must be an ssh-ed25519 public key")
    return {
        "hostname": data.hostname,
        "ssh_pwauth": False,
        "disable_root": False,
        "users": [
            {"name": "root", "lock_passwd": True, "ssh_authorized_keys": [data.authorized_key]}
        ],
        "package_update": False,
        "packages": ["curl", "python3-pip"],
        "write_files": [
            {
                "path": vps.BOOTSTRAP_ENV_PATH,
                "permissions": "0600",
                "owner": "root:root",
                "content": _env_line(vps.CALLBACK_URL_VAR, data.callback_url)
                + _env_line(vps.CALLBACK_TOKEN_VAR, data.callback_token),
            },
            {
                "path": vps.BOOTSTRAP_SCRIPT_PATH,
                "permissions": "0700",
                "owner": "root:root",
                "content": BOOTSTRAP_SCRIPT.format(
                    env_path=vps.BOOTSTRAP_ENV_PATH, host_key_path=vps.HOST_KEY_PATH
                ),
            },
            {
                "path": vps.SERVICE_UNIT_PATH,
                "permissions": "0644",
                "owner": "root:root",
                "content": service_unit(data.service_exec),
            },
        ],
        "runcmd": [
            ["install", "-d", "-m", "0700", "/etc/rachel8"],
            ["sh", "-c", data.install_command],
            ["systemctl", "daemon-reload"],
            ["systemctl", "enable", vps.SERVICE_UNIT],
            [vps.BOOTSTRAP_SCRIPT_PATH],
        ],
    }


#: libyaml's emitter when PyYAML was built with it: the same text (checked in
#: tests/unit/test_cloudinit_render.py) for a sixth of the CPU, 2.3 ms -> 0.4 ms
#: per server created.
_BaseDumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Dumper(_BaseDumper):  # type: ignore[valid-type,misc]
    """Multi-line strings as literal blocks, so the scripts read as scripts."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:  # any SafeRepresenter
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render(data: CloudConfigInput) -> str:
    """The user data text: `#cloud-config` and YAML.

    Raises:
        UserDataError: the result exceeds Hetzner's 32 KiB limit.
    """
    body = yaml.dump(
        build_cloud_config(data),
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        width=1000,
    )
    text = "#cloud-config\n" + body
    size = len(text.encode("utf-8"))
    if size > MAX_USER_DATA_BYTES:
        raise UserDataError(f"user data is {size} bytes, over Hetzner's {MAX_USER_DATA_BYTES}")
    return text


def callback_url(public_url: str, server_id: int | str) -> str:
    """Where the VPS reports back."""
    return f"{public_url.rstrip('/')}/callbacks/cloud-init/{server_id}"


def describe(data: CloudConfigInput) -> str:
    """A one-line summary for logs (no token)."""
    return json.dumps({"hostname": data.hostname, "callback_url": data.callback_url})
