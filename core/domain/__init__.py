"""The rules of the business, as pure decisions and the transactions that apply them.

- `lifecycle`: the one owner of server status transitions.
- `intake`, `deploys`, `customers`, `deliveries`: accepting and carrying out deploys.
- `subscriptions`, `grace`: lapsed subscriptions and their grace period.
- `callbacks`: the cloud-init callback and its one-time tokens.
- `reconcile`, `sweep`: drift between Hetzner, the database and the queues; lost work.
- `backoff`: the retry policy.
- `placement`: the capacity fallback: the next (location, server type) to try.
- `pool`, `pool_store`, `costs`, `pool_metrics`: the warm pool: its adaptive size, what a
  refill creates and recycles (pure); its rows, callback and claim; what idle capacity
  costs; its `/metrics` families.
- `heartbeats`, `health`, `repair`, `herd`, `health_store`, `vps_access`: fleet health:
  heartbeats pushed by each VPS, health decisions, repair by escalation, the herd
  guard, the health task's working state, the SSH way into a VPS.
- `rollout_gate`: the health gate of one server's update or rollback, and its soak.
- `fleet`, `metrics`, `health_metrics`, `exposition`, `events`: what operators see:
  rows, counts, Prometheus text, live messages.
- `notify`: messages to owners (their own bot) and operators (a webhook).
- `releases`, `rollouts`, `rollout_states`, `rollout_waves`, `rollout_store`,
  `rollout_steps`, `rollout_claims`: Rachel8 releases across the fleet: the releases
  and the fleet's current one, rollouts as pure decisions (`decide`, the halt rule),
  their states and transitions, their waves, the store and the driver's steps that
  apply them, and the update claims they give back.
- `work`: the port through which the web app asks the job system for work.

May import: any other room of `core`. Never Litestar, RQ or Textual.
"""
