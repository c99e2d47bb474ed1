"""User data, `.env` and credentials shaped like the control plane's, for the simulator tests.

Written here from the VPS contract, not built by `core.cloud.cloudinit`: these
tests pin what the simulated VPS does with a given document, whatever the
control plane currently renders.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import yaml

from core.cloud import vps_contract as contract
from sim.rachel8 import CURRENT_COMMIT
from sim.telegram import TelegramSim
from sim.vps import Vps

LAYOUT = contract.Layout("rachel")
TOKEN = "123456789:" + "A" * 35
UNIT = f"""[Unit]
Description=Rachel8 personal assistant
StartLimitIntervalSec=120
StartLimitBurst=3

[Service]
User={LAYOUT.user}
WorkingDirectory={LAYOUT.clone_dir}
Environment=HOME={LAYOUT.home}
Environment=PATH={LAYOUT.service_path_env}
ExecStart={LAYOUT.bun_path} run src/index.ts
Restart=on-failure
RestartSec=10

[Install]
WantedBy=multi-user.target
"""


def user_data(
    *,
    callback_url: str | None = None,
    root_key: str | None = None,
    commit: str = CURRENT_COMMIT,
    bun: str = "1.4.5",
    claude_code: str = "2.1.332",
    repo: str = "https://github.com/polly3223/Rachel8.git",
    sudo: bool = False,
    unit: str = UNIT,
    extra_files: list[dict[str, object]] | None = None,
) -> str:
    """A Rachel8 cloud-config: the user, the manifest, the install script, the unit
    (and `extra_files`, `write_files` entries such as the health agent's)."""
    rachel: dict[str, object] = {"name": LAYOUT.user, "shell": "/bin/bash", "lock_passwd": True}
    if sudo:
        rachel["sudo"] = "ALL=(ALL) NOPASSWD:ALL"
    manifest = {
        contract.REPO_VAR: repo,
        contract.COMMIT_VAR: commit,
        contract.BUN_VERSION_VAR: bun,
        contract.CLAUDE_CODE_VERSION_VAR: claude_code,
        contract.USER_VAR: LAYOUT.user,
    }
    files: list[dict[str, object]] = [
        {
            "path": contract.INSTALL_ENV_PATH,
            "permissions": "0644",
            "content": "".join(f"{k}={v}\n" for k, v in manifest.items()),
        },
        {"path": contract.INSTALL_SCRIPT_PATH, "permissions": "0700", "content": "#!/bin/sh\n"},
        {"path": contract.SERVICE_UNIT_PATH, "permissions": "0644", "content": unit},
    ]
    files += extra_files or []
    if callback_url:
        files.append(
            {
                "path": contract.BOOTSTRAP_ENV_PATH,
                "permissions": "0600",
                "content": f"RACHEL_CALLBACK_URL={callback_url}\nRACHEL_CALLBACK_TOKEN=tok\n",
            }
        )
    root: dict[str, object] = {"name": "root"}
    if root_key:
        root["ssh_authorized_keys"] = [root_key]
    document = {
        "users": [root, rachel],
        "packages": list(contract.PACKAGES),
        "write_files": files,
        "runcmd": [[contract.INSTALL_SCRIPT_PATH], [contract.BOOTSTRAP_SCRIPT_PATH]],
    }
    return "#cloud-config\n" + yaml.safe_dump(document, sort_keys=False)


def make_vps(
    tmp_path: Path,
    *,
    install_fail: str | None = None,
    telegram: TelegramSim | None = None,
    **fields: Any,
) -> Vps:
    """A VPS (no SSH) built from Rachel8 user data, its cloud-init run to the end."""
    vps = Vps(
        server_id=1,
        name="rc-1",
        ip="127.0.0.1",
        ssh_port=0,
        base_dir=tmp_path,
        user_data=user_data(**fields),
        api_keys=[],
        install_fail=install_fail,
        time_scale=0.001,
        telegram=telegram,
    )
    vps.run_cloud_init()
    return vps


def env_text(**overrides: str | None) -> str:
    """A `.env` Rachel8 accepts; an override of None leaves the key out."""
    values: dict[str, str | None] = {
        contract.ENV_BOT_TOKEN: TOKEN,
        contract.ENV_OWNER_ID: "424242",
        contract.ENV_SHARED_FOLDER: LAYOUT.shared_dir,
        contract.ENV_AI_PROVIDER: "claudecode",
        contract.ENV_NODE_ENV: "production",
        contract.ENV_LOG_LEVEL: "info",
    }
    values.update(overrides)
    return "".join(f"{k}={v}\n" for k, v in values.items() if v is not None)


def credentials(expires_at_ms: int | None = None) -> str:
    """A `.credentials.json` the Claude Code CLI reads."""
    expires = expires_at_ms or int(time.time() * 1000) + 3_600_000
    oauth = {
        "accessToken": "sk-ant-oat01-simulated",
        "refreshToken": "sk-ant-ort01-simulated",
        "expiresAt": expires,
        "scopes": ["user:inference", "user:profile"],
    }
    return json.dumps({"claudeAiOauth": oauth})


def configure(vps: Vps, *, env: str | None = None, creds: str | None = None) -> None:
    """Write `.env` and the credentials as the injection does: 0600, owned by the user."""
    account = vps.fs.accounts.get(LAYOUT.user)
    assert account is not None
    owner = (account.uid, account.gid)
    if env is not None:
        vps.fs.write(LAYOUT.env_path, env.encode(), contract.SECRET_MODE, owner=owner)
    if creds is not None:
        vps.fs.makedirs(LAYOUT.claude_dir, contract.PRIVATE_DIR_MODE, owner)
        vps.fs.write(LAYOUT.credentials_path, creds.encode(), contract.SECRET_MODE, owner=owner)
