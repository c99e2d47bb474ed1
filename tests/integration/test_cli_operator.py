"""The operator's command line (issue 21, item 10): one form of error, views, settings, `up`.

Run as real subprocesses on a real database and Redis, as an operator types them.
"""

from __future__ import annotations

import json
import socket
import time
from collections import Counter
from pathlib import Path

import peewee
import redis
from click.testing import CliRunner
from rq import SimpleWorker

from cli.main import cli
from core.platform.runs import RunSummary, record_run
from core.store.models import Event
from jobs.queues import queue
from tests import factories
from tests.integration.test_cli import run


def _error(out: object, message: str) -> None:
    """One form for every error: `error: ...` on stderr, exit 2, no traceback, no click `Error:`."""
    stdout, stderr, code = out.stdout, out.stderr, out.returncode  # type: ignore[attr-defined]
    assert code == 2, (code, stdout, stderr)
    assert stderr.startswith("error: "), stderr
    assert message in stderr, stderr
    assert "Error:" not in stderr and "Traceback" not in stdout + stderr


def test_every_error_is_error_colon_with_exit_code_2(tmp_path: Path) -> None:
    env = {"RACHEL_DATA_DIR": str(tmp_path / "data")}
    _error(run("fleet", "--bogus", cwd=tmp_path, env=env), "No such option")  # click's usage
    _error(run("no-such-command", cwd=tmp_path, env=env), "No such command")
    _error(run("retry", "seven", cwd=tmp_path, env=env), "'seven' is not a valid integer")
    refused = run("redis", "start", cwd=tmp_path, env={**env, "REDIS_URL": "redis://x:1/0"})
    _error(refused, "REDIS_URL is set")  # a ClickException of a command (was exit 1)
    _error(run("keys", "status", cwd=tmp_path, env=env), "rachel-cloud db upgrade")  # ours
    assert run("db", "upgrade", cwd=tmp_path, env=env).returncode == 0
    _error(run("user-data", "42", cwd=tmp_path, env=env), "server 42 does not exist")
    _error(run("deploy", cwd=tmp_path, env=env), "give CUSTOMER")


def test_settings_prints_durations_as_durations(tmp_path: Path) -> None:
    out = run("settings", cwd=tmp_path, env={"RACHEL_SLA": "90", "RACHEL_SWEEP_GRACE": "2m"})
    assert out.returncode == 0, out.stderr
    shown = dict(line.split(None, 1) for line in out.stdout.splitlines() if " " in line.strip())
    assert shown["RACHEL_SLA"].strip() == "90s"
    assert shown["RACHEL_SWEEP_GRACE"].strip() == "2m"
    assert shown["RACHEL_BOOT_TIMEOUT"].strip() == "10m"  # the default, not 600.0
    assert shown["RACHEL_GRACE_PERIOD"].strip() == "3d"
    assert shown["RACHEL_SIM_CREATE_TIME"].strip() == "200ms"


def test_up_on_a_taken_port_says_to_use_another_data_dir(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        data = tmp_path / "data"
        out = run("up", "--headless", cwd=tmp_path, env={
            "RACHEL_DATA_DIR": str(data), "RACHEL_WEB_PORT": str(port), "RACHEL_SIM_PORT": "0",
        })  # fmt: skip
    _error(out, f"web port {port} in use")
    assert "RACHEL_DATA_DIR=" in out.stderr and f"RACHEL_WEB_PORT={port + 1}" in out.stderr
    assert "share the database" in out.stderr
    # Refused before anything was made: a running stack's data directory stays untouched.
    assert not (data / "rachel-cloud.db").exists()


def _env(tmp_path: Path, database_url: str, redis_url: str | None = None) -> dict[str, str]:
    env = {"RACHEL_DATA_DIR": str(tmp_path / "data"), "DATABASE_URL": database_url}
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


def test_fleet_json_is_one_object_per_server(
    tmp_path: Path, db: peewee.Database, database_url: str
) -> None:
    servers = [factories.server(status=s) for s in ("ready", "failed", "pending")]
    out = run("fleet", "--json", cwd=tmp_path, env=_env(tmp_path, database_url))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == len(servers)
    objects = [json.loads(line) for line in lines]
    assert sorted(o["id"] for o in objects) == sorted(s.id for s in servers)
    assert Counter(o["status"] for o in objects) == Counter({"ready": 1, "failed": 1, "pending": 1})


def test_server_show_with_events(tmp_path: Path, db: peewee.Database, database_url: str) -> None:
    owner = factories.customer(external_id="cus_show")
    server = factories.server(
        owner,
        name="rachel-show",
        status="failed",
        failed_phase="cloud_init",
        last_error="boot deadline passed: the VPS never called back",
        ipv4="203.0.113.9",
        provider_id=4711,
    )
    for n, (src, dst) in enumerate((("pending", "creating"), ("creating", "cloud_init"))):
        Event.create(
            server=server, kind="transition", actor="system", from_status=src, to_status=dst,
            message=f"step {n} of a long message that an operator wants to read whole",
        )  # fmt: skip
    env = _env(tmp_path, database_url)
    out = run("server", "show", str(server.id), "--events", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert f"server {server.id} (rachel-show)" in out.stdout
    for text in ("cus_show", "failed", "cloud_init", "203.0.113.9", "4711", "never called back"):
        assert text in out.stdout, text
    assert "creating -> cloud_init" in out.stdout
    assert "step 1 of a long message that an operator wants to read whole" in out.stdout
    plain = run("server", "show", str(server.id), cwd=tmp_path, env=env)
    assert plain.returncode == 0 and "events:" not in plain.stdout
    as_json = run("server", "show", str(server.id), "--events", "--json", cwd=tmp_path, env=env)
    data = json.loads(as_json.stdout)
    assert data["status"] == "failed" and [e["to"] for e in data["events"]] == [
        "creating",
        "cloud_init",
    ]
    assert "ssh_private_key" not in data and "callback_token_hash" not in data
    _error(run("server", "show", "999", cwd=tmp_path, env=env), "server 999 does not exist")


def test_jobs_shows_queues_workers_failed_jobs_and_cron_runs(
    tmp_path: Path,
    db: peewee.Database,
    database_url: str,
    redis_client: redis.Redis,
    redis_server_url: str,
) -> None:
    queue(redis_client, "rc-start").enqueue("os.getcwd", job_id="srv1-start-1")
    finish = queue(redis_client, "rc-finish")
    finish.enqueue("os.getpid", job_id="cron-sweep-1")
    SimpleWorker([finish], connection=redis_client, name="cli-burst").work(burst=True)
    live = SimpleWorker([finish], connection=redis_client, name="cli-live")
    live.register_birth()  # type: ignore[no-untyped-call]
    summary = RunSummary("reconcile", found=Counter({"orphan": 2}), acted=Counter({"delete": 1}))
    record_run(redis_client, summary, at=time.time(), duration=1.5)
    env = _env(tmp_path, database_url, redis_server_url)
    out = run("jobs", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line.split()[1:] for line in out.stdout.splitlines() if line.strip()}
    assert rows["rc-start"] == ["1", "0", "0", "0"]
    assert "workers: 1" in out.stdout and "failed jobs: 0" in out.stdout
    (worker,) = [line for line in out.stdout.splitlines() if "cli-live" in line]
    assert "heartbeat 20" in worker and "ok 0 failed 0" in worker
    assert "reconcile: found 2 (orphan 2); did 1 (delete 1)" in out.stdout
    assert "took 1.5s, 1 runs), next " in out.stdout
    assert "grace          every 5m   never ran, due" in out.stdout
    assert "started jobs: 0" in out.stdout and "finished jobs: 1 (the newest)" in out.stdout
    (done,) = [line for line in out.stdout.splitlines() if "cron-sweep-1" in line]
    assert "cli-burst" in done and done.split()[-1].isdigit()  # the worker and the result
    data = json.loads(run("jobs", "--json", cwd=tmp_path, env=env).stdout)
    assert {q["name"]: q["queued"] for q in data["queues"]}["rc-start"] == 1
    assert [w["name"] for w in data["workers"]] == ["cli-live"] and data["started"] == []
    assert [j["id"] for j in data["finished"]] == ["cron-sweep-1"]
    cron = {c["task"]: c for c in data["cron"]}
    assert cron["reconcile"]["runs"] == 1 and cron["reconcile"]["due"] is False
    assert cron["grace"]["last_run"] is None and cron["grace"]["due"] is True
    unreachable = run(
        "jobs", cwd=tmp_path, env=_env(tmp_path, database_url, "redis://127.0.0.1:1/0")
    )
    _error(unreachable, "does not answer")


def test_deploy_new_customer_refuses_missing_or_bad_secrets_clearly(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"RACHEL_DATA_DIR": str(tmp_path / "data")}
    missing = runner.invoke(cli, ["deploy", "--new-customer", "cus_1"], env=env)
    assert missing.exit_code == 2
    assert "error: --new-customer needs --telegram-bot-token" in missing.output
    assert "--fake-secrets" in missing.output
    bad = runner.invoke(
        cli,
        ["deploy", "--new-customer", "cus_1", "--fake-secrets", "--telegram-bot-token", "1:x"],
        env=env,
    )
    assert bad.exit_code == 2 and "error: --telegram-bot-token: " in bad.output
    credentials = tmp_path / "credentials.json"
    credentials.write_text("{not json")
    args = ["deploy", "--new-customer", "cus_1", "--fake-secrets"]
    broken = runner.invoke(cli, [*args, "--claude-credentials", str(credentials)], env=env)
    assert broken.exit_code == 2 and "error: --claude-credentials: " in broken.output
    both = runner.invoke(cli, ["deploy", "cus_1", "--fake-secrets"], env=env)
    assert both.exit_code == 2 and "only go with --new-customer" in both.output
    nowhere = runner.invoke(cli, [*args, "--url", "http://127.0.0.1:9"], env=env)
    assert nowhere.exit_code == 2 and "is the web app running there?" in nowhere.output
