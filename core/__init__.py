"""rachel-cloud core: the domain and its edges, shared by every other package.

Subpackages, each a room of its own (lower rooms never import higher ones):

- `core.errors`: the exception hierarchy (imports nothing of ours).
- `core.security`: encryption at rest, redaction, webhook signatures.
- `core.platform`: settings, clock, logging, Redis clients, development secrets,
  scheduled-task run summaries.
- `core.store`: the database: connection, models, migrations, row reads, sealing
  model secrets and key rotation.
- `core.cloud`: the edge to the cloud and the VPS: Hetzner adapter and its
  errors, the API budget, cloud-init user data, the VPS contract, SSH injection.
- `core.domain`: the rules of the business: lifecycle transitions, deploys,
  customers, subscriptions, grace, callbacks, reconciliation, sweeping,
  backoff, the fleet view, notifications, live events, metrics.

Nothing in `core` imports Litestar, RQ or Textual (ruff bans them), or any of
`jobs`, `webhook`, `tui`, `sim`, `cli` (tests/test_layering.py checks it).
"""
