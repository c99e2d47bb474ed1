"""What the control plane expects of a VPS, shared by cloud-init and the simulator.

A real VPS gets these through its `#cloud-config` user data; the simulator
reads the same files from the user data it is given and acts on them as a
real box would. Keeping the paths and formats in one module means the two can
never drift apart.

Bootstrap callback: cloud-init writes `BOOTSTRAP_ENV_PATH` (mode 0600) with
`RACHEL_CALLBACK_URL` and `RACHEL_CALLBACK_TOKEN` lines, and the bootstrap
script, as cloud-init's last step, POSTs
`{"host_key": "<contents of HOST_KEY_PATH>"}` to that URL with the header
`Authorization: Bearer <token>`, retrying until it gets a 2xx answer.
"""

from __future__ import annotations

#: KEY=VALUE lines (shell-sourceable) with the callback URL and one-time token.
BOOTSTRAP_ENV_PATH = "/etc/rachel-cloud/bootstrap.env"
#: The bootstrap script cloud-init runs last.
BOOTSTRAP_SCRIPT_PATH = "/usr/local/sbin/rachel-cloud-bootstrap"
CALLBACK_URL_VAR = "RACHEL_CALLBACK_URL"
CALLBACK_TOKEN_VAR = "RACHEL_CALLBACK_TOKEN"  # noqa: S105 - a variable name, not a token
#: The SSH host public key the callback reports (OpenSSH one-line format).
HOST_KEY_PATH = "/etc/ssh/ssh_host_ed25519_key.pub"

#: The Rachel8 systemd unit and the secrets file it reads (EnvironmentFile=).
SERVICE_UNIT = "rachel8.service"
SERVICE_UNIT_PATH = "/etc/systemd/system/rachel8.service"
SECRETS_PATH = "/etc/rachel8/secrets.env"
SECRETS_MODE = 0o600
