"""The health agent's files shaped as cloud-init writes them, and an injection that arms it.

Written here from the VPS contract (`core.cloud.vps_contract`, "The health
agent"), not built by `core.cloud.cloudinit`: these tests pin what the
simulated VPS does with given files.
"""

from __future__ import annotations

from typing import Any

from hcloud.images import Image
from hcloud.server_types import ServerType

from core.cloud import vps_contract as contract
from sim.server import SimulatorServer
from sim.vps import Vps
from tests.sim.conftest import fast_client
from tests.sim.helpers import CallbackReceiver, wait_for
from tests.sim.rachel8_data import configure, credentials, env_text, user_data

CREDENTIAL = "hb-credential-" + "x" * 30
SCRIPT = "#!/usr/bin/python3\n# the rachel-cloud health agent (its body is not simulated)\n"
SERVICE = f"""[Unit]
Description=rachel-cloud health agent

[Service]
Type=oneshot
ExecStart={contract.AGENT_SCRIPT_PATH}
"""
#: What makes the timer periodic from its start: OnActiveSec= beside OnUnitActiveSec=.
PERIODIC = "OnActiveSec=1s\nOnUnitActiveSec=30s\nAccuracySec=1s\n"


def timer(schedule: str = PERIODIC) -> str:
    """The agent's timer unit with the given `[Timer]` lines."""
    return (
        "[Unit]\nDescription=rachel-cloud health agent timer\n\n"
        f"[Timer]\n{schedule}\n[Install]\nWantedBy=timers.target\n"
    )


def agent_files(
    *, schedule: str = PERIODIC, script: str | None = SCRIPT, service: str = SERVICE
) -> list[dict[str, object]]:
    """`write_files` entries: the script (none when `script` is None), service and timer."""
    files: list[dict[str, object]] = [
        {"path": contract.AGENT_SERVICE_PATH, "permissions": "0644", "content": service},
        {"path": contract.AGENT_TIMER_PATH, "permissions": "0644", "content": timer(schedule)},
    ]
    if script is not None:
        files.append({"path": contract.AGENT_SCRIPT_PATH, "permissions": "0755", "content": script})
    return files


def agent_env(url: str, telegram_url: str | None, credential: str = CREDENTIAL) -> str:
    """`AGENT_ENV_PATH`'s lines, as the injection writes them."""
    lines = [
        f"{contract.HEARTBEAT_URL_VAR}={url}",
        f"{contract.HEARTBEAT_CREDENTIAL_VAR}={credential}",
    ]
    if telegram_url is not None:
        lines.append(f"{contract.TELEGRAM_API_VAR}={telegram_url}")
    return "".join(f"{line}\n" for line in lines)


def inject(
    vps: Vps,
    url: str,
    telegram_url: str | None,
    *,
    token: str | None = None,
    env_mode: int = contract.SECRET_MODE,
    enable: bool = True,
) -> None:
    """What the injection does, straight into the root fs: `.env`, credentials, the agent's
    env file (root's, 0600), Rachel8 restarted, the agent's timer enabled and started."""
    configure(
        vps, env=env_text(**({contract.ENV_BOT_TOKEN: token} if token else {})), creds=credentials()
    )
    vps.fs.write(
        contract.AGENT_ENV_PATH, agent_env(url, telegram_url).encode(), env_mode, owner=(0, 0)
    )
    assert vps.systemd.systemctl(["restart", contract.SERVICE_UNIT]).exit_status == 0
    if enable:
        enabled = vps.systemd.systemctl(["enable", "--now", contract.AGENT_TIMER_UNIT])
        assert enabled.exit_status == 0, enabled.stderr


def boot(sim: SimulatorServer, name: str, **fields: Any) -> Vps:
    """Create a server through the API with Rachel8's and the agent's user data (`fields`
    go to `rachel8_data.user_data`; `extra_files` defaults to the agent's); its VPS once
    cloud-init ran."""
    fields.setdefault("extra_files", agent_files())
    created = fast_client(sim).servers.create(
        name,
        server_type=ServerType(name="cx23"),
        image=Image(name="ubuntu-24.04"),
        user_data=user_data(**fields),
    )
    server_id = created.server.id
    assert server_id is not None
    vps: Vps = wait_for(lambda: sim.vps(server_id), what="the VPS")
    wait_for(lambda: vps.cloud_init_done, what="cloud-init")
    return vps


def show(vps: Vps, unit: str, *properties: str) -> dict[str, str]:
    """`systemctl show <unit> -p ...` as a dict."""
    result = vps.systemd.systemctl(["show", unit, "-p", ",".join(properties)])
    assert result.exit_status == 0, result.stderr
    return dict(line.split("=", 1) for line in result.stdout.splitlines())


def heartbeats_from(receiver: CallbackReceiver, ip: str) -> list[dict[str, Any]]:
    """The bodies of the heartbeats `receiver` got from the VPS at `ip`, in order."""
    return [call.body for call in list(receiver.calls) if call.client_ip == ip]


def wait_heartbeats(receiver: CallbackReceiver, ip: str, more_than: int) -> list[dict[str, Any]]:
    """Wait until the VPS at `ip` sent more than `more_than` heartbeats; all of them."""
    sent: list[dict[str, Any]] = wait_for(
        lambda: len(got := heartbeats_from(receiver, ip)) > more_than and got,
        what=f"heartbeats from {ip}",
    )
    return sent
