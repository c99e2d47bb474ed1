"""The Hetzner Cloud simulator: the API, simulated VPSs on loopback, faults (dev and tests only).

- `app`, `routes`, `api_*`, `http`, `pagination`, `ratelimit`, `errors`, `render`:
  the API, faithful to `../shared/hetzner/`.
- `engine`, `state`, `catalog`, `labels`, `stats`: the simulated cloud.
- `vps`, `rootfs`, `cloudconfig`, `shell`, `systemd`, `sshd`, `curl`, `scratch`,
  `addresses`: a simulated VPS and its real SSH server.
- `faults`, `admin`: fault injection; `settings`, `config`, `cli`,
  `server`: running it.

May import: `core` only (the VPS contract, errors). The control plane never
imports the simulator; only `cli` starts it.
"""
