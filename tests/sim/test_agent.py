"""The health agent of a simulated VPS: its timer, its heartbeats over real HTTP, its failures."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator

import httpx
import pytest

from core.cloud import vps_contract as contract
from core.domain import heartbeats
from sim.rachel8 import CURRENT_COMMIT
from sim.server import SimulatorServer
from sim.vps import Vps
from tests.sim.agent_data import CREDENTIAL, agent_files, boot, inject, show
from tests.sim.helpers import CallbackReceiver, wait_for

AGENT = contract.AGENT_SERVICE_UNIT
TIMER = contract.AGENT_TIMER_UNIT
OUTCOME = ("ActiveState", "SubState", "Result", "ExecMainStatus")


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    server = CallbackReceiver(status=202)
    yield server
    server.close()


@pytest.fixture
def fast(make_sim: Callable[..., SimulatorServer]) -> SimulatorServer:
    """A simulator whose VPS clocks run 100 times faster (a 30 s timer: 0.3 s)."""
    return make_sim(time_scale=0.01)


def heartbeat_bodies(receiver: CallbackReceiver, count: int) -> list[heartbeats.Heartbeat]:
    wait_for(lambda: len(receiver.calls) >= count, what=f"{count} heartbeats")
    return [heartbeats.decode(json.dumps(c.body).encode()) for c in receiver.calls[:count]]


def settled(vps: Vps, unit: str = AGENT) -> dict[str, str]:
    """The agent's service between two runs."""
    props: dict[str, str] = wait_for(
        lambda: (shown := show(vps, unit, *OUTCOME))["ActiveState"] != "activating" and shown,
        what="the agent's run to end",
    )
    return props


def test_heartbeats_come_from_the_vps_with_its_credential_and_the_contract_json(
    fast: SimulatorServer, receiver: CallbackReceiver
) -> None:
    vps = boot(fast, "rc-1")
    inject(vps, receiver.url("/heartbeats/1"), f"{fast.url}/telegram")
    sent = heartbeat_bodies(receiver, 3)
    for call in receiver.calls[:3]:
        assert (call.path, call.client_ip) == ("/heartbeats/1", vps.ip)
        assert call.authorization == f"Bearer {CREDENTIAL}"
        assert call.content_type == "application/json"
    first = sent[0]
    assert first.agent == contract.AGENT_VERSION and first.commit == CURRENT_COMMIT
    assert first.service == heartbeats.ServiceReport("active", "running", 0, "success", 0)
    assert first.telegram == heartbeats.TelegramReport("ok", False, 0)
    assert 0 < first.disk_free_bytes < first.disk_total_bytes == 40 * 1024**3
    assert 0 < first.memory_available_bytes < first.memory_total_bytes == 4 * 1024**3
    seqs = [h.seq for h in sent]
    assert seqs == sorted(set(seqs)) and seqs[0] >= int(first.sent_at * 1000)
    uptimes = [h.uptime_seconds for h in sent]
    assert uptimes == sorted(uptimes) and uptimes[0] > 0
    state = json.loads(vps.fs.real(contract.AGENT_STATE_PATH, "/").read_text())
    assert state["seq"] >= seqs[-1] and state["at"] >= sent[-1].sent_at
    assert settled(vps)["Result"] == "success"
    timer = show(vps, TIMER, "ActiveState", "UnitFileState", "Unit")
    assert timer == {"ActiveState": "active", "Unit": AGENT, "UnitFileState": "enabled"}


def test_a_refused_heartbeat_fails_the_run_and_the_timer_goes_on(
    fast: SimulatorServer, receiver: CallbackReceiver
) -> None:
    receiver.status = 401
    vps = boot(fast, "rc-1")
    inject(vps, receiver.url("/heartbeats/1"), None)
    wait_for(lambda: len(receiver.calls) >= 2, what="two refused heartbeats")
    assert settled(vps) == {
        "ActiveState": "failed", "SubState": "failed", "Result": "exit-code",
        "ExecMainStatus": "1",
    }  # fmt: skip
    assert any("answered 401" in line for line in vps.systemd.journal(AGENT))
    assert heartbeat_bodies(receiver, 1)[0].telegram.get_me == "unconfigured"
    receiver.status = 202
    wait_for(lambda: settled(vps)["Result"] == "success", what="a run that succeeds again")


def test_the_env_file_must_be_roots_and_0600(
    fast: SimulatorServer, receiver: CallbackReceiver
) -> None:
    vps = boot(fast, "rc-1")
    inject(vps, receiver.url("/heartbeats/1"), None, env_mode=0o644)
    wait_for(lambda: settled(vps)["Result"] == "exit-code", what="the run to fail")
    journal = vps.systemd.journal(AGENT)
    assert any("must be root's with mode 0600 (it is 0644, uid 0" in line for line in journal)
    assert receiver.calls == []
    assert vps.systemd.systemctl(["reset-failed", AGENT]).exit_status == 0
    vps.fs.real(contract.AGENT_ENV_PATH, "/").chmod(0o600)
    heartbeat_bodies(receiver, 1)
    vps.fs.real(contract.AGENT_ENV_PATH, "/").unlink()
    runs = vps.agent_record.runs
    wait_for(lambda: vps.agent_record.runs > runs + 1, what="runs without the env file")
    assert "no heartbeat URL or credential in /etc/rachel-cloud/agent.env" in (
        vps.agent_record.last_error or ""
    )


def test_a_timer_with_only_on_unit_active_sec_waits_for_its_service_to_run_once(
    fast: SimulatorServer, receiver: CallbackReceiver
) -> None:
    vps = boot(fast, "rc-1", extra_files=agent_files(schedule="OnUnitActiveSec=30s\n"))
    inject(vps, receiver.url("/heartbeats/1"), None)
    timer = show(vps, TIMER, "ActiveState", "SubState", "NextElapseUSecMonotonic")
    assert timer == {
        "ActiveState": "active", "SubState": "elapsed", "NextElapseUSecMonotonic": "infinity",
    }  # fmt: skip
    assert vps.agent_record.runs == 0 and receiver.calls == []
    # Once the service ran (here by hand), the timer counts from it: every 30 s.
    assert vps.systemd.systemctl(["start", AGENT]).exit_status == 0
    sent = heartbeat_bodies(receiver, 4)
    assert show(vps, TIMER, "SubState")["SubState"] in ("waiting", "running")
    gaps = [b.uptime_seconds - a.uptime_seconds for a, b in itertools.pairwise(sent)]
    # systemd's default AccuracySec=1min coalesces the wake-ups on the same second of every
    # minute: the first within [30 s, 90 s], then once a minute, not every 30 s.
    assert 29 < gaps[0] < 91 and all(55 < gap < 65 for gap in gaps[1:]), gaps


def test_a_direct_start_runs_the_agent_once_and_the_timer_counts_from_it(
    make_sim: Callable[..., SimulatorServer], receiver: CallbackReceiver
) -> None:
    # 20 times faster: the timer's 30 s are 1.5 s, room to tell a direct run from a tick.
    vps = boot(make_sim(time_scale=0.05), "rc-1")
    inject(vps, receiver.url("/heartbeats/1"), None)
    first = heartbeat_bodies(receiver, 1)[0]
    settled(vps)
    with vps.systemd.lock:  # the box's timers wait: both starts meet the same run
        runs = vps.agent_record.runs
        started = vps.systemd.systemctl(["start", "--no-block", AGENT])
        assert started.exit_status == 0, started.stderr
        assert show(vps, AGENT, "ActiveState") == {"ActiveState": "activating"}
        # A oneshot started while it runs is not started twice: the job merges.
        assert vps.systemd.systemctl(["start", "--no-block", AGENT]).exit_status == 0
    direct = heartbeat_bodies(receiver, 2)[1]
    assert vps.agent_record.runs == runs + 1
    tick = heartbeat_bodies(receiver, 3)[2]
    assert direct.uptime_seconds - first.uptime_seconds < 25  # not the timer's tick
    # OnUnitActiveSec= counts from the service's last activation: the direct run.
    assert 29 <= tick.uptime_seconds - direct.uptime_seconds <= 32
    assert len({b.seq for b in heartbeat_bodies(receiver, 3)}) == 3
    typo = vps.systemd.systemctl(["start", "--no-blok", AGENT])
    assert typo.exit_status == 1 and "unrecognized option '--no-blok'" in typo.stderr


def test_a_missing_or_unrunnable_script_fails_at_exec(
    fast: SimulatorServer, receiver: CallbackReceiver
) -> None:
    vps = boot(fast, "rc-1", extra_files=agent_files(script=None))
    inject(vps, receiver.url("/heartbeats/1"), None)
    wait_for(lambda: settled(vps)["Result"] == "exit-code", what="the exec to fail")
    assert show(vps, AGENT, "ExecMainStatus") == {"ExecMainStatus": "203"}
    assert any("Failed at step EXEC" in line for line in vps.systemd.journal(AGENT))
    other = boot(fast, "rc-2", extra_files=agent_files(script="print('no shebang')\n"))
    inject(other, receiver.url("/heartbeats/2"), None)
    wait_for(lambda: settled(other)["ExecMainStatus"] == "203", what="Exec format error")
    assert any("Exec format error" in line for line in other.systemd.journal(AGENT))
    assert receiver.calls == []


def test_telegram_as_the_agent_sees_it(fast: SimulatorServer, receiver: CallbackReceiver) -> None:
    vps = boot(fast, "rc-1")
    inject(vps, receiver.url("/heartbeats/1"), f"{fast.url}/telegram")
    token = "123456789:" + "A" * 35  # rachel8_data's .env
    heartbeat_bodies(receiver, 1)
    # A webhook set while Rachel8 is stopped stays (its next start would delete it).
    assert vps.systemd.systemctl(["stop", contract.SERVICE_UNIT]).exit_status == 0
    bot = httpx.Client(base_url=f"{fast.url}/telegram/bot{token}", timeout=5)
    assert bot.post("/setWebhook", json={"url": "https://example.com/hook"}).status_code == 200
    count = len(receiver.calls)
    wait_for(lambda: len(receiver.calls) > count + 1, what="heartbeats after the webhook")
    latest = heartbeats.decode(json.dumps(receiver.calls[-1].body).encode())
    assert latest.telegram == heartbeats.TelegramReport("ok", True, 0)
    assert latest.service is not None and not latest.service.running
    admin = httpx.Client(headers={"Authorization": f"Bearer {fast.token}"}, timeout=5)
    assert admin.post(f"{fast.url}/_sim/telegram/revoke", json={"token": token}).status_code == 200
    count = len(receiver.calls)
    wait_for(lambda: len(receiver.calls) > count + 1, what="heartbeats after the revocation")
    latest = heartbeats.decode(json.dumps(receiver.calls[-1].body).encode())
    assert latest.telegram == heartbeats.TelegramReport("unauthorized", None, 0)
