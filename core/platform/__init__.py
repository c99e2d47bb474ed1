"""What every process stands on: settings, time, logging, Redis, development secrets.

- `settings`, `settings_spec`, `settings_parsing`: 12-factor settings, each
  declared once as a typed field; `settings` inherits the groups declared in
  modules of their own: `provisioning_settings` (creating, installing, injecting),
  `scheduler_settings` (the cron tasks), `simulator_address_settings` (where the
  simulator is), `placement_settings` (the locations and server types new servers
  go to, and Hetzner's network zones), `health_settings`, `rollout_settings`,
  `image_settings`, `pool_settings`; `install_parsing` the parsers of the Rachel8
  install's settings.
- `clock`: naive UTC time from an injectable clock.
- `logs`: one logging setup, text or JSON, redacted.
- `redis`: the Redis client every process uses (the embedded server is `cli`'s).
- `dev_secrets`: the key ring, webhook secret and API key of a local data dir.
- `runs`: the scheduled tasks' run summaries, kept in Redis.
- `process`: whether a pid still runs.

May import: `core.errors`, `core.security`.
"""
