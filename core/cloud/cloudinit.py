"""The `#cloud-config` user data of a server: the one place it is rendered.

It holds no customer secret, by construction: its inputs are the server's
public key, the callback URL and one-time token, and what to install (the
`RACHEL8_*` settings). What it does on first boot (`core.cloud.vps_contract`):
- authorises the server's own public key for root, with password logins off
  (Hetzner issues no root password either: servers are created with a key);
- creates the Rachel8 user (no sudo, locked password);
- writes the install manifest, the install script, the Rachel8 unit, the
  bootstrap env and the bootstrap script, and the health agent with its
  oneshot service and timer (enabled by the injection, which gives the agent
  its credential);
- runs the install (named steps, stops at the first failure, records the
  outcome), then the bootstrap, which reports the host key and that outcome
  to the callback URL with the bearer token, whatever the install did.
The scripts are `core.cloud.vps_scripts`; the simulator reads the same paths.
"""

from __future__ import annotations

import json
import posixpath
import shlex
from dataclasses import dataclass

import yaml

from core.cloud import vps_contract as vps
from core.cloud import vps_scripts
from core.errors import RachelError
from core.platform.settings import Settings

MAX_USER_DATA_BYTES = 32 * 1024
SAMPLE_TOKEN = "<one-time token, issued when the server is created>"  # noqa: S105
#: Where the install's full output stays on the VPS (root only), for an operator.
INSTALL_LOG_PATH = "/var/log/rachel-cloud-install.log"
BUN_INSTALLER_URL = "https://bun.sh/install"
CLAUDE_CODE_PACKAGE = "@anthropic-ai/claude-code"
#: The agent's first heartbeat after its timer starts: soon, yet after the
#: injection that enabled it has registered its credential.
AGENT_FIRST_RUN_SECONDS = 5.0
#: A run's limit: its commands and Telegram calls time out in 5 s each, the POST in 10 s.
AGENT_TIMEOUT_SECONDS = 60


class UserDataError(RachelError):
    """User data that cannot be built (too large, bad input)."""

    code = "user_data_error"


@dataclass(frozen=True)
class Rachel8Install:
    """What a VPS installs (the `RACHEL8_*` settings, validated there).

    Attributes:
        repo_url: the git repository to clone.
        commit: the full commit id to check out.
        bun_version: Bun's version, x.y.z.
        claude_code_version: the Claude Code CLI's version, x.y.z.
        user: the Linux user Rachel8 runs as.
    """

    repo_url: str
    commit: str
    bun_version: str
    claude_code_version: str
    user: str

    @classmethod
    def from_settings(cls, settings: Settings) -> Rachel8Install:
        """What the settings say new servers install."""
        return cls(
            repo_url=settings.rachel8_repo_url,
            commit=settings.rachel8_commit,
            bun_version=settings.rachel8_bun_version,
            claude_code_version=settings.rachel8_claude_code_version,
            user=settings.rachel8_user,
        )

    @property
    def layout(self) -> vps.Layout:
        return vps.Layout(self.user)


@dataclass(frozen=True)
class CloudConfigInput:
    """Everything that goes into a server's user data (no secrets accepted).

    Attributes:
        heartbeat_interval: seconds between two heartbeats of the health agent
            (RACHEL_HEARTBEAT_INTERVAL), its timer's period.
    """

    hostname: str
    authorized_key: str
    callback_url: str
    callback_token: str
    install: Rachel8Install
    heartbeat_interval: float


def service_unit(layout: vps.Layout) -> str:
    """The Rachel8 system unit: Rachel8's own restart policy, as its user, from its clone.

    `HOME` and `PATH` make `bun` and `claude` (a Bun global) resolve, and make
    the Claude Code CLI find its credentials in `~/.claude`.
    """
    return (
        "[Unit]\n"
        "Description=Rachel8 personal assistant (managed by rachel-cloud)\n"
        "After=network-online.target\n"
        "Wants=network-online.target\n"
        "StartLimitIntervalSec=120\n"
        "StartLimitBurst=3\n\n"
        "[Service]\n"
        "Type=simple\n"
        f"User={layout.user}\n"
        f"Group={layout.user}\n"
        f"WorkingDirectory={layout.clone_dir}\n"
        f"Environment=HOME={layout.home}\n"
        f"Environment=PATH={layout.service_path_env}\n"
        f"ExecStart={layout.bun_path} run src/index.ts\n"
        "Restart=on-failure\n"
        "RestartSec=10\n"
        "NoNewPrivileges=yes\n\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def env_line(name: str, value: str) -> str:
    """One `KEY=VALUE` line of an env file, the value shell-quoted."""
    # Sourced by /bin/sh and read by shlex: quote so that no value can run as a command.
    return f"{name}={shlex.quote(value)}\n"


def install_manifest(install: Rachel8Install) -> str:
    """`INSTALL_ENV_PATH`: what to install, one shell-quoted KEY=VALUE line each."""
    return (
        env_line(vps.REPO_VAR, install.repo_url)
        + env_line(vps.COMMIT_VAR, install.commit)
        + env_line(vps.BUN_VERSION_VAR, install.bun_version)
        + env_line(vps.CLAUDE_CODE_VERSION_VAR, install.claude_code_version)
        + env_line(vps.USER_VAR, install.user)
    )


def install_script(layout: vps.Layout, *, verify: bool = False) -> str:
    """The install script, its constants those of the contract and `layout`; with its
    checks (`INSTALL_VERIFY_ARG`) only when `verify`: a stock install has no use for
    them, and the user data no room to spare."""
    return vps_scripts.render(
        vps_scripts.INSTALL,
        {
            "INSTALL_ENV": vps.INSTALL_ENV_PATH,
            "BOOTSTRAP_ENV": vps.BOOTSTRAP_ENV_PATH,
            "RESULT": vps.INSTALL_RESULT_PATH,
            "LOG_PATH": INSTALL_LOG_PATH,
            "TOKEN_VAR": vps.CALLBACK_TOKEN_VAR,
            "REPO_VAR": vps.REPO_VAR,
            "COMMIT_VAR": vps.COMMIT_VAR,
            "BUN_VERSION_VAR": vps.BUN_VERSION_VAR,
            "CLAUDE_CODE_VERSION_VAR": vps.CLAUDE_CODE_VERSION_VAR,
            "USER_VAR": vps.USER_VAR,
            "STEPS": vps.INSTALL_STEPS,
            "PACKAGES": vps.PACKAGES,
            "UNIT": vps.SERVICE_UNIT,
            "UNIT_PATH": vps.SERVICE_UNIT_PATH,
            "HOME": layout.home,
            "CLONE_DIR": layout.clone_dir,
            "RELEASES_DIR": layout.releases_dir,
            "SHARED_DIR": layout.shared_dir,
            "BUN_DIR": posixpath.dirname(layout.bin_dir),
            "BUN_PATH": layout.bun_path,
            "CLAUDE_PATH": layout.claude_path,
            "PATH_ENV": layout.service_path_env,
            "BUN_INSTALLER_URL": BUN_INSTALLER_URL,
            "CLAUDE_CODE_PACKAGE": CLAUDE_CODE_PACKAGE,
            "MAX_LOG_TAIL": vps.MAX_LOG_TAIL,
            "MAX_CLOUD_INIT_ERRORS": vps.MAX_CLOUD_INIT_ERRORS,
            "VERIFY": vps.INSTALL_VERIFY_ARG,
        },
        drop=() if verify else ("verify",),
    )


def bootstrap_script() -> str:
    """The bootstrap script, its constants those of the contract."""
    return vps_scripts.render(
        vps_scripts.BOOTSTRAP,
        {
            "BOOTSTRAP_ENV": vps.BOOTSTRAP_ENV_PATH,
            "HOST_KEY_PATH": vps.HOST_KEY_PATH,
            "RESULT": vps.INSTALL_RESULT_PATH,
            "URL_VAR": vps.CALLBACK_URL_VAR,
            "TOKEN_VAR": vps.CALLBACK_TOKEN_VAR,
        },
    )


def agent_constants(layout: vps.Layout) -> dict[str, vps_scripts.Constant]:
    """The agent script's constants: the contract's paths and names."""
    return {
        "ENV_PATH": vps.AGENT_ENV_PATH,
        "STATE_PATH": vps.AGENT_STATE_PATH,
        "URL_VAR": vps.HEARTBEAT_URL_VAR,
        "CREDENTIAL_VAR": vps.HEARTBEAT_CREDENTIAL_VAR,
        "TELEGRAM_VAR": vps.TELEGRAM_API_VAR,
        "VERSION": vps.AGENT_VERSION,
        "UNIT": vps.SERVICE_UNIT,
        "PROPERTIES": vps.SERVICE_PROPERTIES,
        "BOT_ENV": layout.env_path,
        "TOKEN_KEY": vps.ENV_BOT_TOKEN,
        "HEAD_PATH": layout.git_head_path,
        "PROC": "/proc",
        "DISK": "/",
    }


def agent_script(layout: vps.Layout) -> str:
    """The health agent, its constants those of the contract and `layout`."""
    return vps_scripts.render(vps_scripts.AGENT, agent_constants(layout))


def _seconds(value: float) -> str:
    """A systemd time span: whole seconds, or milliseconds."""
    return f"{value:.0f}s" if float(value).is_integer() else f"{value * 1000:.0f}ms"


def agent_service_unit() -> str:
    """The agent's oneshot service, as root (it reads Rachel8's `.env` and journal)."""
    return (
        "[Unit]\n"
        "Description=rachel-cloud health agent: one heartbeat\n\n"
        "[Service]\n"
        "Type=oneshot\n"
        f"ExecStart={vps.AGENT_SCRIPT_PATH}\n"
        f"TimeoutStartSec={AGENT_TIMEOUT_SECONDS}s\n"
    )


def agent_timer_unit(interval: float) -> str:
    """The agent's timer: a heartbeat every `interval` seconds once enabled.

    The first comes soon after the injection enables it (or after a boot);
    each later one `interval` after the previous started. The random delay,
    drawn anew each time, makes the heartbeats of servers that booted
    together drift apart instead of arriving at once.
    """
    if interval <= 0:
        raise UserDataError(f"the heartbeat interval must be positive, got {interval}")
    return (
        "[Unit]\n"
        "Description=rachel-cloud health agent: a heartbeat every "
        f"{_seconds(interval)}\n\n"
        "[Timer]\n"
        f"OnActiveSec={_seconds(min(interval, AGENT_FIRST_RUN_SECONDS))}\n"
        f"OnUnitActiveSec={_seconds(interval)}\n"
        "AccuracySec=1s\n"
        f"RandomizedDelaySec={_seconds(max(0.001, round(interval / 10, 3)))}\n\n"
        "[Install]\n"
        "WantedBy=timers.target\n"
    )


def _file(path: str, mode: str, content: str) -> dict[str, str]:
    return {"path": path, "permissions": mode, "owner": "root:root", "content": content}


def build_cloud_config(data: CloudConfigInput) -> dict[str, object]:
    """The cloud-config as a dict (validated against cloud-init's schema in tests)."""
    if not data.authorized_key.startswith("ssh-ed25519 "):
        raise UserDataError("the authorised key must be an ssh-ed25519 public key")
    layout = data.install.layout
    return {
        "hostname": data.hostname,
        "ssh_pwauth": False,
        "disable_root": False,
        "users": [
            {"name": "root", "lock_passwd": True, "ssh_authorized_keys": [data.authorized_key]},
            # No `sudo` and no `groups`: an unprivileged user (the install checks it).
            {
                "name": layout.user,
                "lock_passwd": True,
                "shell": "/bin/bash",
                "homedir": layout.home,
            },
        ],
        "write_files": [
            _file(vps.INSTALL_ENV_PATH, "0644", install_manifest(data.install)),
            _file(vps.INSTALL_SCRIPT_PATH, "0700", install_script(layout)),
            _file(vps.SERVICE_UNIT_PATH, "0644", service_unit(layout)),
            _file(
                vps.BOOTSTRAP_ENV_PATH,
                "0600",
                env_line(vps.CALLBACK_URL_VAR, data.callback_url)
                + env_line(vps.CALLBACK_TOKEN_VAR, data.callback_token),
            ),
            _file(vps.BOOTSTRAP_SCRIPT_PATH, "0700", bootstrap_script()),
            _file(vps.AGENT_SCRIPT_PATH, "0700", agent_script(layout)),
            _file(vps.AGENT_SERVICE_PATH, "0644", agent_service_unit()),
            _file(vps.AGENT_TIMER_PATH, "0644", agent_timer_unit(data.heartbeat_interval)),
        ],
        # One command, so the bootstrap reports even when the install failed
        # (whatever cloud-init does with a failing runcmd line).
        "runcmd": [
            ["sh", "-c", f"{vps.INSTALL_SCRIPT_PATH}; exec {vps.BOOTSTRAP_SCRIPT_PATH}"],
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
    return dump(build_cloud_config(data))


def dump(config: dict[str, object]) -> str:
    """A cloud-config as user data text.

    Raises:
        UserDataError: the result exceeds Hetzner's 32 KiB limit.
    """
    body = yaml.dump(
        config,
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
