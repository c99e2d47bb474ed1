"""Snapshot images and the warm pool: deploy to ready on each path, side by side (issue 24).

Issue 24's targets: with simulated timings of create 10 s, boot 20 s, stock
install 180 s and per-server cloud-init 10 s, deploy to ready p95 under 10 s
on a pool hit, under 45 s from the image on a miss, against the stock path
(about 210 s); a burst of 20 deploys a minute served at least 95% from the
pool at its adaptive size; the Hetzner calls per provision and the idle cost
reported; 0 orphans after image builds, pool refills and recycling.

One stack (`cli.up.start_stack`: simulator, web, workers, cron with the image
check and the pool refill) with those timings, images and the pool on, the
pool holding fsn1/cx23 only (`--pool-min..--pool-max`), then four phases:

1. **stock**: at once, while no image exists yet, `--stock` deploys to nbg1
   (a place the pool does not hold: never a hit); with no image they install
   on the stock image. Meanwhile the image check (run by cron at start) builds
   the release's image (`--image-time` for the snapshot itself).
2. **image miss**: once the image is available, `--misses` deploys to nbg1:
   created from the snapshot, only the per-server cloud-init.
3. **burst**: deploys to fsn1 at `--rate` a minute, `--warmup-minutes` first
   (RACHEL_POOL_WINDOW is as long: the adaptive target, the base-stock rule
   on rate x refill time, is reached by its end), then `--burst-minutes` measured: the share
   served from the pool (a pool row claimed by the server), deploy to ready
   of hits and misses, the target and the warm servers sampled every
   simulated second, the idle cost `/metrics` shows at the end.
4. **recycling**: NEWER_COMMIT made the fleet's release: the pool recycles
   the old release's servers, the image check builds the new image (and
   deletes images beyond `--image-keep`); watched until the pool holds only
   the new release, warm, and the image is there.

Then every server and snapshot on the simulator is classified against the
database (a customer's, the pool's, a running build's builder, or an orphan)
and the reconciler's own diff is run. Deploy to ready is the deploy webhook
sent to `Server.ready_at`; which path a server took is checked from its row
(`Server.image`: the stock image's name or the snapshot's id; a claimed pool
row). Hetzner calls are the simulator's counters over each phase, all of them
and the deploys' own (the builds', refills' and listings' taken out, counted
from their rows).

Every period is scaled with the simulator's clock (`--scale`, real seconds per
simulated second): the figures are reported unscaled (wall / scale). Below 1
the control plane's own work (intake, queues, the claim, the injection over
SSH) counts 1/scale times in them: scale 1, the default, does not inflate the
pool hit's few seconds. The settle (RACHEL_SERVICE_SETTLE) is production's
15 s: a server is ready once Rachel8 says it serves its bot, which the
settle only bounds.

    uv run python bench/pool.py                        # the issue's run: ~20 min
    uv run python bench/pool.py --scale 0.2 --stock 3 --misses 3 \\
        --warmup-minutes 1 --burst-minutes 1 --name pool-quick    # ~3 min
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import _common as c
import _pool_report as rep
from _pool_watch import PoolWatch, attribute, audit, epoch, others_in
from provision import (
    _cpu,
    _post_all,
    _requests_delta,
    _servers_of,
    _sim_stats,
    _wait,
    local_stack,
    stack_options,
)

c.ensure_repo_on_path()

import httpx  # noqa: E402
import redis  # noqa: E402

from cli import up  # noqa: E402
from cli.demo import demo_payloads  # noqa: E402
from core.domain import releases  # noqa: E402
from core.domain.images import ImageState  # noqa: E402
from core.store.db import connection, write_transaction  # noqa: E402
from core.store.models import Image, PoolServer, Server  # noqa: E402
from core.store.vault import load_keyring  # noqa: E402
from jobs.context import JobContext  # noqa: E402
from sim import rachel8  # noqa: E402

#: Issue 24's simulated seconds: the stock install.
INSTALL = 180.0
#: The pool's place; the misses' (and stock deploys') place, which it does not hold.
POOL_PLACE, OTHER_PLACE, SERVER_TYPE = "fsn1", "nbg1", "cx23"
ACTOR = "operator:bench"
DONE = ("ready", "failed")


def scaled_env(args: argparse.Namespace) -> dict[str, str]:
    """The stack's settings: images and the pool on, every period scaled with the clock."""

    def period(seconds: float) -> str:
        return f"{seconds * args.scale:g}s"

    return {
        "RACHEL_SIM_TIME_SCALE": f"{args.scale:g}",
        "RACHEL_SIM_INSTALL_TIME": f"{INSTALL:g}s",
        "RACHEL_SIM_IMAGE_TIME": f"{args.image_time:g}s",
        "RACHEL_LOCATION": f"{POOL_PLACE},{OTHER_PLACE},hel1",
        "RACHEL_SERVER_TYPE": SERVER_TYPE,
        "RACHEL_IMAGES": "true",
        "RACHEL_IMAGE_INTERVAL": period(args.image_interval),
        "RACHEL_IMAGE_BUILD_TIMEOUT": period(1800),
        "RACHEL_IMAGE_KEEP": str(args.image_keep),
        "RACHEL_POOL": "true",
        "RACHEL_POOL_PLACES": f"{POOL_PLACE}/{SERVER_TYPE}={args.pool_min}..{args.pool_max}",
        "RACHEL_POOL_INTERVAL": period(args.pool_interval),
        "RACHEL_POOL_WINDOW": period(args.warmup_minutes * 60),
        "RACHEL_POOL_REFILL_TIME": period(args.refill_time),
        "RACHEL_BOOT_TIMEOUT": period(600),
        "RACHEL_SERVICE_SETTLE": period(args.settle),
        "RACHEL_PRICES": args.prices,
        "RACHEL_SNAPSHOT_PRICE": f"{args.snapshot_price:g}",
    }


class Run:
    """The stack under measurement, the pool's sampler, and the next customer's number."""

    def __init__(self, stack: up.LocalStack, args: argparse.Namespace) -> None:
        self.stack, self.args, self.scale = stack, args, args.scale
        settings = stack.settings
        self.ctx = JobContext(
            settings, load_keyring(settings), redis.Redis.from_url(stack.redis_url)
        )
        self.watch = PoolWatch(self.ctx, (POOL_PLACE, SERVER_TYPE), max(0.25, args.scale))
        self.next_customer = 1

    def deploy(self, count: int, location: str, rate: float = 0.0) -> dict[int, float]:
        """Subscribe `count` new customers, send their deploys to `location` (per
        second: `rate`, 0 at once); {server id: deploy sent at} once all are taken in."""
        first, self.next_customer = self.next_customer, self.next_customer + count
        pairs = [demo_payloads(i) for i in range(first, first + count)]
        _post_all(self.stack, "/webhooks/subscription", [p[0] for p in pairs], 16)
        deploys = [{**p[1], "location": location} for p in pairs]
        # Signed a minute's worth at a time: the web app refuses a signature older
        # than 5 minutes, and a long burst's last deploys would carry one.
        chunk = max(1, round(rate * 60)) if rate > 0 else len(deploys)
        answers: list[Any] = []
        for start in range(0, len(deploys), chunk):
            began = time.monotonic()
            part = deploys[start : start + chunk]
            answers += _post_all(self.stack, "/webhooks/deploy", part, 16, rate)[0]
            if rate > 0 and start + chunk < len(deploys):
                time.sleep(max(0.0, began + len(part) / rate - time.monotonic()))
        sent = _servers_of(answers, self.args.timeout)
        if len(sent) != count:
            raise RuntimeError(f"{len(sent)} of {count} deploys made a server")
        return {server_id: at for server_id, (at, _) in sent.items()}

    def phase(self, count: int, location: str, rate: float = 0.0) -> dict[str, Any]:
        """Deploy, wait for every server to end: the outcomes and the phase's API calls."""
        before, started = _sim_stats(self.stack.settings), time.time()
        sent = self.deploy(count, location, rate)
        finished = _wait(list(sent), DONE, self.args.timeout)
        ended, after = time.time(), _sim_stats(self.stack.settings)
        calls = _requests_delta(before, after)
        others = others_in(started, ended)
        return {
            "deploys": count,
            "finished": finished,
            "outcomes": outcomes(sent, self.scale),
            "wall_seconds": ended - started,
            "window": (started, ended),
            "calls": calls,
            "others": others,
            "own_calls": attribute(calls, others),
        }

    def metrics(self) -> dict[str, float]:
        """The pool's and images' gauges as `/metrics` shows them now."""
        text = httpx.get(f"{self.stack.web_url}/metrics", timeout=30).text
        return rep.parse_metrics(text)


def outcomes(sent: dict[int, float], scale: float) -> list[dict[str, Any]]:
    """Each server's path and deploy to ready (unscaled seconds; None: not ready)."""
    with connection():
        rows = list(Server.select().where(Server.id.in_(list(sent))))
        claims = {
            p.server_id: p for p in PoolServer.select().where(PoolServer.server_id.in_(list(sent)))
        }
    found = []
    for row in rows:
        ready, claim = epoch(row.ready_at), claims.get(row.id)
        claimed = epoch(claim.claimed_at) if claim is not None else None
        found.append(
            {
                "server": row.id,
                "status": row.status,
                "location": row.location,
                "image": row.image,
                "sent": sent[row.id],
                "seconds": (ready - sent[row.id]) / scale if ready else None,
                "hit": claim is not None,
                "claim_seconds": (claimed - sent[row.id]) / scale if claimed else None,
            }
        )
    return sorted(found, key=lambda o: float(o["sent"]))


def wait_image(commit: str, timeout: float) -> Image | None:
    """The available image of `commit` once there is one (None: not within `timeout`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection():
            row: Image | None = (
                Image.select()
                .where((Image.commit == commit) & (Image.state == ImageState.AVAILABLE.value))
                .first()
            )
        if row is not None:
            return row
        time.sleep(0.5)
    return None


def refill_seconds(start: float, end: float, scale: float) -> float | None:
    """The median create-to-warm time (unscaled) of the pool servers warm from `start` to `end`."""
    with connection():
        rows = list(PoolServer.select().where(PoolServer.warm_at.is_null(False)))
    took = [
        (warm - made) / scale
        for r in rows
        if (warm := epoch(r.warm_at)) is not None
        and start <= warm <= end
        and (made := epoch(r.created_at)) is not None
    ]
    return statistics.median(took) if took else None


def burst(run: Run) -> dict[str, Any]:
    """Phase 3: the warm-up and the measured burst at the pool's place, and the pool."""
    args = run.args
    warm_count = round(args.rate * args.warmup_minutes)
    measured_count = round(args.rate * args.burst_minutes)
    per_second = args.rate / 60 / args.scale
    result = run.phase(warm_count + measured_count, POOL_PLACE, per_second)
    # In the order sent (deploy i no earlier than i / rate): the warm-up's first.
    result["warmup"] = result["outcomes"][:warm_count]
    result["measured"] = result["outcomes"][warm_count:]
    measure_from = result["measured"][0]["sent"]
    measure_to = result["measured"][-1]["sent"]
    result["measured_from"] = measure_from
    samples = run.watch.between(measure_from, measure_to)
    window = args.warmup_minutes * 60 * args.scale
    refill = refill_seconds(measure_from - window, measure_to, args.scale)
    result["pool"] = rep.pool_figures(samples, args.rate, refill, args.scale)
    result["metrics_after"] = run.metrics()
    return result


def recycling(run: Run, timeout: float) -> dict[str, Any]:
    """Phase 4: a new release; until the pool holds only it, warm, and its image exists."""
    settings = run.stack.settings
    before, started = _sim_stats(settings), time.time()
    commit = rachel8.NEWER_COMMIT
    with connection():
        releases.add_release(commit, rachel8.RELEASES[commit].subject, ACTOR)
    with connection() as db, write_transaction(db):
        releases.set_current(releases.resolve(commit), ACTOR, "bench/pool.py: phase 4")
    marks: dict[str, float | None] = {"old_gone": None, "image": None, "settled": None}
    deadline = time.monotonic() + timeout
    seen = run.watch.sample()
    while time.monotonic() < deadline:
        seen, now = run.watch.sample(), time.time()
        if marks["old_gone"] is None and seen.old_release == 0:
            marks["old_gone"] = now
        with connection():
            image = Image.get_or_none(
                (Image.commit == commit) & (Image.state == ImageState.AVAILABLE.value)
            )
            kept = Image.select().where(Image.state == ImageState.AVAILABLE.value).count()
        if marks["image"] is None and image is not None:
            marks["image"] = epoch(image.available_at)
        quiet = seen.making == 0 and seen.recycling == 0 and seen.warm >= seen.target
        if marks["old_gone"] and marks["image"] and quiet and kept <= run.args.image_keep:
            marks["settled"] = now
            break
        time.sleep(max(0.25, run.scale))
    after = _sim_stats(settings)
    calls, others = _requests_delta(before, after), others_in(started, time.time())
    return {
        "commit": commit,
        "after_unscaled": {k: (v - started) / run.scale if v else None for k, v in marks.items()},
        "pool_at_end": {"target": seen.target, "warm": seen.warm, "making": seen.making},
        "calls": calls,
        "others": others,
    }


def _measure(run: Run) -> dict[str, Any]:
    args, stack = run.args, run.stack
    cpu_before, started = _cpu(stack), time.time()
    run.watch.start()
    with connection():
        commit = releases.current_commit(stack.settings.rachel8_commit)
    print(f"phase 1: {args.stock} stock deploys to {OTHER_PLACE}...", file=sys.stderr)
    stock = run.phase(args.stock, OTHER_PLACE)
    print("waiting for the release's image...", file=sys.stderr)
    image = wait_image(commit, args.timeout)
    if image is None:
        raise RuntimeError(f"no image of {commit[:12]} within {args.timeout:.0f} s")
    print(f"phase 2: {args.misses} deploys to {OTHER_PLACE} from the image...", file=sys.stderr)
    misses = run.phase(args.misses, OTHER_PLACE)
    print(
        f"phase 3: {args.rate:g} deploys a minute to {POOL_PLACE}, {args.warmup_minutes:g} min "
        f"warm-up, {args.burst_minutes:g} min measured...",
        file=sys.stderr,
    )
    burst_result = burst(run)
    print("phase 4: a new release, the pool recycled...", file=sys.stderr)
    recycled = recycling(run, args.timeout)
    final_stats, cpu_after, ended = _sim_stats(stack.settings), _cpu(stack), time.time()
    run.watch.stop()
    end = audit(run.ctx, 60)
    return {
        "scale": args.scale,
        "workers": args.workers,
        "stock_image": stack.settings.image,
        "snapshot": str(image.provider_image_id),
        "stock": stock,
        "misses": misses,
        "burst": burst_result,
        "recycling": recycled,
        "end": end,
        "metrics_end": run.metrics(),
        "rate_limited": final_stats["rate_limited"],
        "api_errors": final_stats["errors"],
        "wall_seconds": ended - started,
        "cpu_seconds": {k: round(v - cpu_before.get(k, 0.0), 1) for k, v in cpu_after.items()},
        "cpu_cores": {
            k: round((cpu_after[k] - cpu_before.get(k, 0.0)) / (ended - started), 3)
            for k in cpu_after
        },
        "pool_series": run.watch.series(5 * args.scale),
        "watch_errors": run.watch.errors,
    }


def run_one(args: argparse.Namespace) -> dict[str, Any]:
    """Start the stack, measure, stop everything."""
    logs = c.RESULTS / f"{args.name}-logs"
    with local_stack(args, scaled_env(args), workers=args.workers, logs=logs) as stack:
        result = _measure(Run(stack, args))
    result.update(load_before=args.load_before, logs=str(logs))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="real s per simulated s")
    parser.add_argument("--stock", type=int, default=10, help="stock deploys (phase 1)")
    parser.add_argument("--misses", type=int, default=10, help="image-miss deploys (phase 2)")
    parser.add_argument("--rate", type=float, default=20, help="burst deploys per minute")
    parser.add_argument(
        "--warmup-minutes", type=float, default=3, help="burst warm-up; also RACHEL_POOL_WINDOW"
    )
    parser.add_argument("--burst-minutes", type=float, default=3, help="measured burst")
    parser.add_argument("--pool-min", type=int, default=1)
    parser.add_argument("--pool-max", type=int, default=30)
    parser.add_argument("--image-time", type=float, default=60, help="snapshot time (sim s)")
    parser.add_argument(
        "--image-keep", type=int, default=1, help="RACHEL_IMAGE_KEEP (1: phase 4 prunes)"
    )
    parser.add_argument("--image-interval", type=float, default=10, help="image check (sim s)")
    parser.add_argument("--pool-interval", type=float, default=30, help="pool refill (sim s)")
    parser.add_argument(
        "--refill-time", type=float, default=40, help="RACHEL_POOL_REFILL_TIME until measured"
    )
    parser.add_argument("--settle", type=float, default=15, help="RACHEL_SERVICE_SETTLE (sim s)")
    parser.add_argument("--prices", default="cx23=4.49", help="RACHEL_PRICES")
    parser.add_argument("--snapshot-price", type=float, default=0.0119, help="EUR per GB-month")
    stack_options(parser, workers=4, timings="10s,20s,10s", timeout=1800, name="pool")
    args = parser.parse_args(argv)
    if round(args.rate * args.burst_minutes) < 1:
        parser.error("the burst needs at least one deploy")
    return c.run_once_and_publish(args, run_one, rep.report)


if __name__ == "__main__":
    raise SystemExit(main())
