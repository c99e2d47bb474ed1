"""The web app (Litestar): signed webhooks, cloud-init callbacks, the status API, health.

- `app`: the application factory; `context`: what a web process holds.
- `webhooks`, `intake`, `api`, `ops`, `sse`: controllers, thin over `services`.
- `structs`: msgspec request and response bodies.
- `guards`: signature, API key and callback authentication.
- `heartbeats`, `heartbeat_asgi`: the heartbeat route, and its hot path before Litestar's.
- `errors`: the one mapping from errors to HTTP statuses and JSON bodies.
- `observe`: metrics and readiness.

May import: `core`, Litestar and msgspec. Never `jobs`, `tui`, `sim` or `cli`:
what it needs of the job system is handed to it by `cli`.
"""
