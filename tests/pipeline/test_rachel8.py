"""Every VPS runs Rachel8 as published: end to end on the simulator (issue 20's "Show").

Real web app (the VPSs call back to it), real workers (`Stack.drain`), real
SSH and SFTP to the simulated VPSs, whose Rachel8 applies its own rules
(`sim.rachel8_service`) and whose install runs the contract's steps
(`sim.install`). Each test runs on SQLite and, with TEST_DATABASE_URL, on
PostgreSQL (the `db` fixture).

- A deploy ends ready: `.env` and the credentials in place (content, owner,
  mode), the unit running as `rachel`, the server's commit the clone's.
- A value Rachel8 refuses makes it crash-loop, and the server fails saying
  why (the unit's state and Rachel8's own words); a value the customer never
  gave is refused before any SSH, naming it.
- Each failing install step fails the server at once, naming the step; an
  unknown commit fails the clone with git's message.
- Credentials written back never replace newer ones on the VPS.
- No planted secret (bot token, credentials, OAuth tokens, STT key) leaks.
- A unit that crash-looped into its start limit runs again after a re-inject.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import peewee
import pytest
import redis

from cli.demo import send_signed
from core.cloud import vps_contract as vps
from core.cloud.rachel8 import ClaudeCredentials, parse_credentials_document
from core.domain.lifecycle import Status
from core.platform.dev_secrets import webhook_secrets
from core.store.models import Customer, Event, Server, WebhookDelivery
from core.store.vault import seal
from jobs import operator
from sim import rachel8
from sim.config import SimConfig
from sim.install import FAULT_OUTPUT
from sim.server import SimulatorServer
from sim.vps import Vps
from tests import factories
from tests.leaks import search_everything
from tests.pipeline import rachel8_vps
from tests.pipeline.harness import Stack, served_stack

LAYOUT = rachel8_vps.LAYOUT
#: A well-formed commit that is not among the simulator's Rachel8 releases.
UNKNOWN_COMMIT = "0123456789abcdef0123456789abcdef01234567"
#: The boot deadline of the install-failure tests: far longer than they may take.
LONG_BOOT = 60.0

StackOf = Callable[..., Stack]


@pytest.fixture
def stack_of(
    db: peewee.Database,
    tmp_path: Path,
    redis_client: redis.Redis,
    redis_server_url: str,
    sim: SimulatorServer,
) -> Iterator[StackOf]:
    """Build the served stack with these settings (once per test)."""
    with ExitStack() as exits:

        def build(**env: str) -> Stack:
            env.setdefault("RACHEL_BOOT_TIMEOUT", "8s")
            return exits.enter_context(
                served_stack(tmp_path, redis_client, redis_server_url, sim, **env)
            )

        yield build


@pytest.fixture
def stack(stack_of: StackOf) -> Stack:
    return stack_of()


def deploy(stack: Stack, owner: Customer | None = None) -> int:
    owner = owner or factories.paying_customer(stack.ring)
    return operator.deploy(
        stack.redis, stack.settings, owner.external_id, "operator:test"
    ).server_id


def machine_of(stack: Stack, server_id: int) -> Vps:
    machine = stack.sim.vps(Server.get_by_id(server_id).provider_id or 0)
    assert machine is not None, f"server {server_id} has no VPS"
    return machine


def ready(stack: Stack) -> tuple[int, Vps]:
    return ready_for(stack, factories.paying_customer(stack.ring))


def ready_for(stack: Stack, owner: Customer) -> tuple[int, Vps]:
    server_id = deploy(stack, owner)
    stack.wait_status(server_id, Status.READY)
    return server_id, machine_of(stack, server_id)


def transitions(server_id: int) -> list[tuple[str | None, str]]:
    return [
        (e.from_status, e.to_status)
        for e in Event.select().where(Event.server == server_id).order_by(Event.id)
        if e.to_status
    ]


def cleaned_up(stack: Stack) -> None:
    stack.drain(lambda: stack.provider_servers() == [], what="cleanup of the VPS")


# --- 1. ready: the files, the unit, the commit ----------------------------------------


def test_a_deploy_runs_rachel8_as_its_user_at_the_pinned_commit(stack: Stack) -> None:
    server_id, machine = ready(stack)
    row = Server.get_by_id(server_id)
    uid, gid = rachel8_vps.user_ids(machine)
    assert uid != 0 and gid != 0
    for path in (LAYOUT.env_path, LAYOUT.credentials_path):
        written = rachel8_vps.read(machine, path)
        assert (written.mode, written.uid, written.gid) == (0o600, uid, gid), path
    unit = rachel8_vps.service(machine)
    assert unit["User"] == LAYOUT.user
    assert unit["WorkingDirectory"] == LAYOUT.clone_dir
    assert (unit["ActiveState"], unit["SubState"], unit["Result"]) == (
        "active",
        "running",
        "success",
    )
    assert unit["NRestarts"] == "0" and unit["MainPID"] != "0"
    assert unit["UnitFileState"] == "enabled"
    assert rachel8_vps.journal(machine)[-1].endswith(
        "Rachel8 is running. Listening for messages..."
    )
    head = rachel8_vps.read(machine, LAYOUT.git_head_path).text.strip()
    assert row.rachel8_commit == head == stack.settings.rachel8_commit


def _injected_to_ready(server_id: int) -> float:
    """Seconds from entering injecting_secrets to ready, by the server's own Events."""
    at = {e.to_status: e.at for e in Event.select().where(Event.server == server_id) if e.to_status}
    return float((at[Status.READY] - at[Status.INJECTING_SECRETS]).total_seconds())


def test_a_server_is_ready_once_rachel8_says_it_serves_its_bot(stack_of: StackOf) -> None:
    settle = 30.0
    stack = stack_of(RACHEL_SERVICE_SETTLE=f"{settle:.0f}s")
    server_id = deploy(stack)
    stack.wait_status(server_id, Status.READY, timeout=settle / 2)
    # Not the settle period: its journal said so a few seconds after the injection.
    assert _injected_to_ready(server_id) < settle / 2
    messages = [e.message for e in Event.select().where(Event.server == server_id)]
    assert not any("never logged" in m for m in messages)


def test_a_release_that_never_says_it_serves_is_ready_once_it_stayed_up(
    stack_of: StackOf,
) -> None:
    # Webhook mode: Rachel8 runs but never starts polling, so never logs that it serves.
    silent = rachel8.BAD_RELEASES[rachel8.POLLING_FAILS].commit
    settle = 4.0
    stack = stack_of(RACHEL_SERVICE_SETTLE=f"{settle:.0f}s", RACHEL8_COMMIT=silent)
    server_id = deploy(stack)
    stack.wait_status(server_id, Status.READY, timeout=settle * 5)
    assert _injected_to_ready(server_id) >= settle
    messages = [e.message for e in Event.select().where(Event.server == server_id)]
    assert any("never logged that it serves its bot" in m for m in messages)


# --- 2. a value Rachel8 refuses: it crash-loops, the server fails saying why -----------


def _unit_overrides_ai_provider(machine: Vps) -> None:
    rachel8_vps.set_unit_environment(machine, vps.ENV_AI_PROVIDER, "gpt")


def _unit_blanks_the_owner_id(machine: Vps) -> None:
    rachel8_vps.set_unit_environment(machine, vps.ENV_OWNER_ID, "")


def _shared_folder_deleted(machine: Vps) -> None:
    rachel8_vps.remove(machine, LAYOUT.shared_dir)


def _claude_cli_gone(machine: Vps) -> None:
    rachel8_vps.remove(machine, LAYOUT.claude_path)


@pytest.mark.parametrize(
    ("breakage", "words"),
    [
        (_unit_overrides_ai_provider, ["Invalid environment configuration", "AI_PROVIDER"]),
        (
            _unit_blanks_the_owner_id,
            ["Invalid environment configuration", "OWNER_TELEGRAM_USER_ID"],
        ),
        (_shared_folder_deleted, ["SHARED_FOLDER_PATH", "not a directory owned by rachel"]),
        (_claude_cli_gone, ["Claude Code executable not found on PATH"]),
    ],
)
def test_rachel8_refusing_its_configuration_fails_the_server_saying_why(
    stack: Stack, breakage: Callable[[Vps], None], words: list[str]
) -> None:
    server_id, machine = ready(stack)
    breakage(machine)
    operator.reinject(stack.redis, server_id, "operator:test")
    row = stack.wait_status(server_id, Status.FAILED)
    assert row.failed_phase == Status.INJECTING_SECRETS
    # Rachel8 exited 1 and systemd restarts it (Restart=on-failure): a crash loop,
    # told by the unit's state and by what Rachel8 itself printed.
    for word in ["service_failed: ", "Rachel8 is not running", "exit status 1", *words]:
        assert word in (row.last_error or ""), row.last_error
    cleaned_up(stack)


def test_a_value_the_customer_never_gave_is_refused_naming_it(stack: Stack) -> None:
    owner = factories.paying_customer(stack.ring)
    server_id = deploy(stack, owner)
    # A customer from before the deploy webhook asked for the owner id (the
    # migration leaves it empty), caught between the deploy and the injection.
    Customer.update(owner_telegram_user_id=None).where(Customer.id == owner.id).execute()
    row = stack.wait_status(server_id, Status.FAILED)
    assert row.failed_phase == Status.INJECTING_SECRETS
    error = row.last_error or ""
    assert error.startswith("missing_owner_id: "), error
    assert f"customer {owner.external_id} never gave owner_telegram_user_id" in error
    cleaned_up(stack)


def test_re_injection_is_refused_while_a_value_is_missing(stack: Stack) -> None:
    server_id, machine = ready(stack)
    customer_id = Server.get_by_id(server_id).customer_id
    Customer.update(owner_telegram_user_id=None).where(Customer.id == customer_id).execute()
    with pytest.raises(operator.OperatorError, match="never gave owner_telegram_user_id"):
        operator.reinject(stack.redis, server_id, "operator:test")
    assert stack.status(server_id) == Status.READY
    assert rachel8_vps.service(machine)["ActiveState"] == "active"


def test_an_invalid_stored_value_is_refused_before_any_ssh(stack: Stack) -> None:
    owner = factories.paying_customer(stack.ring)
    server_id = deploy(stack, owner)
    Customer.update(owner_telegram_user_id=-5).where(Customer.id == owner.id).execute()
    row = stack.wait_status(server_id, Status.FAILED)
    assert row.failed_phase == Status.INJECTING_SECRETS
    error = row.last_error or ""
    assert error.startswith("invalid_stored_config: "), error
    assert "owner_telegram_user_id: must be a positive integer" in error
    cleaned_up(stack)


# --- 3. a failed install fails the server at once, naming the step -------------------


def _fails_at_once(stack: Stack, server_id: int, started: float) -> Server:
    row = stack.wait_status(server_id, Status.FAILED, timeout=LONG_BOOT / 2)
    assert time.monotonic() - started < LONG_BOOT / 3, "it waited for the boot deadline"
    assert row.failed_phase == Status.CLOUD_INIT
    assert transitions(server_id)[-2:] == [("creating", "cloud_init"), ("cloud_init", "failed")]
    assert row.host_key is None and row.callback_token_used_at is not None
    return row


@pytest.mark.parametrize("step", vps.INSTALL_STEPS)
def test_each_failing_install_step_fails_the_server_at_once_naming_it(
    stack_of: StackOf, step: str
) -> None:
    stack = stack_of(RACHEL_BOOT_TIMEOUT=f"{LONG_BOOT:.0f}s")
    stack.sim.set_faults({"install_fail": {"step": step, "rate": 1.0}})
    started = time.monotonic()
    server_id = deploy(stack)
    row = _fails_at_once(stack, server_id, started)
    status, output = FAULT_OUTPUT[step]
    error = row.last_error or ""
    assert f"install failed at step '{step}' (exit {status})" in error, error
    assert output.strip().splitlines()[-1].strip() in error, error
    cleaned_up(stack)


def test_an_unknown_commit_fails_the_clone_with_git_s_message(stack_of: StackOf) -> None:
    stack = stack_of(RACHEL_BOOT_TIMEOUT=f"{LONG_BOOT:.0f}s", RACHEL8_COMMIT=UNKNOWN_COMMIT)
    started = time.monotonic()
    server_id = deploy(stack)
    row = _fails_at_once(stack, server_id, started)
    error = row.last_error or ""
    assert "install failed at step 'clone' (exit 128)" in error, error
    assert f"fatal: reference is not a tree: {UNKNOWN_COMMIT}" in error, error
    cleaned_up(stack)


# --- 4. the credentials written back never replace newer ones -----------------------


def _vps_refreshed(machine: Vps, expires_at_ms: int) -> str:
    """What the VPS's Claude Code CLI leaves after refreshing its tokens itself."""
    document = ClaudeCredentials(
        f"sk-ant-oat01-planted-vps-refreshed-{expires_at_ms}",
        f"sk-ant-ort01-planted-vps-rotated-{expires_at_ms}",
        expires_at_ms,
    ).document()
    rachel8_vps.write(
        machine, LAYOUT.credentials_path, document, 0o600, rachel8_vps.user_ids(machine)
    )
    return document


def _kept_events(server_id: int) -> list[str]:
    return [
        e.message
        for e in Event.select().where((Event.server == server_id) & (Event.kind == "credentials"))
    ]


def _redeploy(stack: Stack, owner: Customer, **changes: object) -> None:
    """The dashboard's deploy webhook for a customer who has a ready server."""
    payload: dict[str, object] = {
        "customer_id": owner.external_id,
        "email": owner.email,
        "telegram_bot_token": factories.bot_token(f"{owner.id:06d}"),
        "owner_telegram_user_id": factories.OWNER_ID,
        "claude_credentials": factories.claude_document(f"{owner.id:06d}"),
        **changes,
    }
    secret = webhook_secrets(stack.settings)[0]
    url = f"{stack.settings.public_url.rstrip('/')}/webhooks/deploy"
    with httpx.Client(timeout=10) as client:
        answer = send_signed(client, url, secret, payload)
    delivery_id = str(answer["webhook_id"])
    stack.drain(
        lambda: WebhookDelivery.get_by_id(delivery_id).state == "done",
        what="the intake to carry out the deploy",
    )


def test_newer_credentials_on_the_vps_are_kept(stack: Stack) -> None:
    server_id, machine = ready(stack)
    owner = Server.get_by_id(server_id).customer
    refreshed = _vps_refreshed(machine, factories.EXPIRES_AT_MS + 3_600_000)

    operator.reinject(stack.redis, server_id, "operator:test")
    stack.wait_status(server_id, Status.READY)
    assert rachel8_vps.read(machine, LAYOUT.credentials_path).text == refreshed
    assert _kept_events(server_id) == [
        "kept the Claude credentials on the VPS: they are newer than ours "
        "(the VPS refreshed them itself)"
    ]

    # A deploy with a new bot token and the customer's (older) credentials: the
    # token reaches the VPS, the credentials do not.
    new_token = "76543210:" + "K" * 35
    _redeploy(stack, owner, telegram_bot_token=new_token)
    stack.wait_status(server_id, Status.READY)
    assert rachel8_vps.env(machine)[vps.ENV_BOT_TOKEN] == new_token
    assert rachel8_vps.read(machine, LAYOUT.credentials_path).text == refreshed
    assert len(_kept_events(server_id)) == 2
    assert rachel8_vps.service(machine)["ActiveState"] == "active"


def test_kept_credentials_get_rachel8_s_owner_and_mode_back(stack: Stack) -> None:
    server_id, machine = ready(stack)
    refreshed = _vps_refreshed(machine, factories.EXPIRES_AT_MS + 3_600_000)
    # Someone on the box made them readable to all, and root's.
    rachel8_vps.write(machine, LAYOUT.credentials_path, refreshed, 0o644, (0, 0))

    operator.reinject(stack.redis, server_id, "operator:test")
    stack.wait_status(server_id, Status.READY)
    kept = rachel8_vps.read(machine, LAYOUT.credentials_path)
    assert kept.text == refreshed
    assert (kept.mode, kept.uid, kept.gid) == (0o600, *rachel8_vps.user_ids(machine))


def test_newer_credentials_from_the_customer_replace_the_vps_ones(stack: Stack) -> None:
    server_id, machine = ready(stack)
    owner = Server.get_by_id(server_id).customer
    # The VPS refreshed once; the customer then signed in again, which expires later still.
    _vps_refreshed(machine, factories.EXPIRES_AT_MS + 3_600_000)
    newer = factories.claude_document("signed-in-again", factories.EXPIRES_AT_MS + 7_200_000)

    _redeploy(stack, owner, claude_credentials=newer)
    row = stack.wait_status(server_id, Status.READY)
    assert [e.actor for e in row.events if e.to_status == "injecting_secrets"][-1] == "webhook"
    written = rachel8_vps.read(machine, LAYOUT.credentials_path)
    assert parse_credentials_document(written.text, now_ms=None) == parse_credentials_document(
        newer, now_ms=None
    )
    assert (written.mode, written.uid, written.gid) == (0o600, *rachel8_vps.user_ids(machine))
    assert _kept_events(server_id) == []


# --- 5. no planted secret anywhere it must not be ------------------------------------


def test_no_planted_secret_leaks_stt_key_refreshed_tokens_failed_install_included(
    stack_of: StackOf, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    stack = stack_of()
    with_stt = factories.paying_customer(stack.ring, stt_provider="groq")
    seal(stack.ring, with_stt, "stt_api_key", f"gsk_planted-stt-key-{with_stt.id:06d}")
    with_stt.save()
    plain = factories.paying_customer(stack.ring)
    speaking, _ = ready_for(stack, with_stt)
    machine = machine_of(stack, speaking)
    env = rachel8_vps.env(machine)
    assert (env[vps.ENV_STT_PROVIDER], env[vps.ENV_GROQ_API_KEY]) == (
        "groq",
        f"gsk_planted-stt-key-{with_stt.id:06d}",
    )
    # The VPS refreshes its tokens; a re-injection keeps them (and must not say them).
    refreshed = _vps_refreshed(machine, factories.EXPIRES_AT_MS + 3_600_000)
    operator.reinject(stack.redis, speaking, "operator:test")
    stack.wait_status(speaking, Status.READY)
    other, other_machine = ready_for(stack, plain)
    # An install that fails reports its log tail, which the server's reason quotes.
    stack.sim.set_faults({"install_fail": {"step": "dependencies", "rate": 1.0}})
    broken_owner = factories.paying_customer(stack.ring)
    broken = deploy(stack, broken_owner)
    assert "install failed at step 'dependencies'" in (
        stack.wait_status(broken, Status.FAILED).last_error or ""
    )

    credentials = parse_credentials_document(refreshed, now_ms=None)
    planted = [
        *factories.planted_secrets(with_stt, stack.ring),
        *factories.planted_secrets(plain, stack.ring),
        *factories.planted_secrets(broken_owner, stack.ring),
        refreshed,
        credentials.access_token,
        credentials.refresh_token,
    ]
    assert f"gsk_planted-stt-key-{with_stt.id:06d}" in planted
    search = search_everything(
        planted,
        client=stack.redis,
        logs=caplog.text,
        vps_roots=[machine.root, other_machine.root],
        settings=stack.settings,
        tui_servers=[speaking, other, broken],
    )
    search.check({"logs": 1000, "redis": 1000, "jobs": 500, "user data": 500, "tui": 2000})


# --- 6. a unit that crash-looped into its start limit runs again after a re-inject ---


@pytest.fixture
def slow_stack(
    db: peewee.Database, tmp_path: Path, redis_client: redis.Redis, redis_server_url: str
) -> Iterator[Stack]:
    """A stack whose VPSs' systemd runs 20x faster, not 100x: the start limit's
    120 seconds (StartLimitIntervalSec) last 6 real ones, longer than a re-injection."""
    with (
        SimulatorServer(SimConfig(seed=7, time_scale=0.05)) as sim,
        served_stack(tmp_path, redis_client, redis_server_url, sim) as built,
    ):
        yield built


def test_a_re_injection_revives_a_unit_that_hit_its_start_limit(slow_stack: Stack) -> None:
    stack = slow_stack
    server_id, machine = ready(stack)
    clock = machine.systemd.clock
    # The CLI died writing its credentials; Rachel8 is restarted (a reboot, an
    # operator) and crash-loops until systemd gives up.
    uid_gid = rachel8_vps.user_ids(machine)
    rachel8_vps.write(machine, LAYOUT.credentials_path, '{"claudeAiOauth": {', 0o600, uid_gid)
    looping_since = clock.now()
    assert machine.systemd.systemctl(["restart", vps.SERVICE_UNIT]).exit_status == 0
    deadline = time.monotonic() + 15
    while rachel8_vps.service(machine)["Result"] != "start-limit-hit":
        assert time.monotonic() < deadline, rachel8_vps.service(machine)
        time.sleep(0.05)
    unit = rachel8_vps.service(machine)
    assert (unit["ActiveState"], unit["SubState"], unit["ExecMainStatus"]) == (
        "failed",
        "failed",
        "1",
    )
    assert any("not valid JSON" in line for line in rachel8_vps.journal(machine))
    # The limit holds: a plain start is refused, as systemd refuses it.
    refused = machine.systemd.systemctl(["start", vps.SERVICE_UNIT])
    assert refused.exit_status == 1 and "attempted too often" in refused.stderr

    operator.reinject(stack.redis, server_id, "operator:test")
    row = stack.wait_status(server_id, Status.READY)
    assert row.last_error is None
    # Still inside the start limit's window: only `reset-failed` let it start.
    assert clock.now() - looping_since < 120
    unit = rachel8_vps.service(machine)
    assert (unit["ActiveState"], unit["SubState"], unit["NRestarts"]) == ("active", "running", "0")
    written = rachel8_vps.read(machine, LAYOUT.credentials_path).text
    owner = Server.get_by_id(server_id).customer
    assert written == factories.claude_document(f"{owner.id:06d}")
