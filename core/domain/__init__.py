"""The rules of the business, as pure decisions and the transactions that apply them.

- `lifecycle`: the one owner of server status transitions.
- `intake`, `deploys`, `customers`, `deliveries`: accepting and carrying out deploys.
- `subscriptions`, `grace`: lapsed subscriptions and their grace period.
- `callbacks`: the cloud-init callback and its one-time tokens.
- `reconcile`, `sweep`: drift between Hetzner, the database and the queues; lost work.
- `backoff`: the retry policy.
- `fleet`, `metrics`, `events`: what operators see: rows, counts, live messages.
- `notify`: messages to customers.
- `work`: the port through which the web app asks the job system for work.

May import: any other room of `core`. Never Litestar, RQ or Textual.
"""
