"""The edges to the cloud and to a VPS: Hetzner, user data, SSH.

- `provider`: what we know of Hetzner apart from its client: labels, errors, records.
- `hetzner`: the one adapter over the `hcloud` SDK; `hetzner_images` its
  snapshot, power and capacity operations; `hetzner_project` the shared
  firewall and the fleet SSH key it creates servers with.
- `ratebudget`: the project's API budget, shared through Redis.
- `availability`: what the API last said of server types' availability, shared.
- `cloudinit`: a server's `#cloud-config` user data.
- `vps_contract`: the paths and formats a VPS and the control plane agree on.
- `ssh`: secret injection over SSH against a pinned host key.

May import: `core.errors`, `core.security`, `core.platform`. Not `core.store`
or `core.domain`: these edges take values, not rows.
"""
