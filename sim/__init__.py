"""The Hetzner Cloud simulator: the API, simulated VPSs on loopback, faults (dev and tests only).

- `app`, `routes`, `api_*`, `http`, `pagination`, `ratelimit`, `errors`, `render`:
  the API, faithful to `../shared/hetzner/`.
- `engine`, `state`, `catalog`, `labels`, `stats`: the simulated cloud;
  `lifecycle`: a server's create, boot, delete and power actions;
  `images`, `disk`: snapshot images and the disk copies they hold;
  `capacity`: locations out of room for a server type.
- `vps`, `rootfs`, `cloudconfig`, `shell`, `sshd`, `sftp`, `curl`, `bootstrap`,
  `scratch`, `addresses`: a simulated VPS, its real SSH server, its callback;
  `vps_view`: what `/_sim/vps` shows of it.
- `systemd`, `systemctl`, `systemd_text`, `service`, `timers`, `timer_units`,
  `timer_loop`, `units`, `spawn`: its systemd (services, timers, boots);
  `hardware`: its disk, memory, `/proc`; `install`, `rachel8*`: Rachel8, its
  install and its process; `agent`: the health agent's runs.
- `telegram`: the simulated Telegram Bot API.
- `faults`, `fleet_faults`, `admin`: fault injection; `settings`, `config`, `cli`,
  `server`: running it.

May import: `core` only (the VPS contract, errors). The control plane never
imports the simulator; only `cli` starts it.
"""
