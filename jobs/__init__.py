"""rachel-cloud jobs: the work done outside requests, on RQ.

- the job functions, one module per concern (`creating` and its create call
  with the capacity fallback `capacity`, `deadlines`,
  `injecting`, `deprovisioning`, `cleanup`, `intake`, the health task's probes
  and repairs `repair` and messages `notifying`, and the scheduled `grace`,
  `reconcile`, `sweeper`, `housekeeping`, `callback_poll`, `health`; Rachel8
  rollouts: the driver `rollout`, the per-server `update` and `rollback` jobs
  and what they share, `update_step`; snapshot images `images` and
  `image_build`; the warm pool's refill `pool`);
- `registry`: every job function named once; each enqueue names its job there;
- `queues` and `enqueue`: queues, job ids, and the public enqueue helpers the
  CLI and the TUI use; `work`: the same for the web app, as `core`'s port;
- `operator`: operator actions shared by the CLI and the TUI; `rollout_operator`: the
  same for the rollout (pause, resume, abort, roll back, each waking the driver);
- `cron`: the scheduled tasks; `worker`: the worker process;
- `inspect`, `jobscan`: reading the queues (job views, the sweeper).

May import: `core` (and RQ, Redis, peewee). Never `webhook`, `tui`, `sim` or
`cli`: they reach the job system through `core`'s ports, wired by `cli`.
"""
