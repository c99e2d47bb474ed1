"""Owner messages and operator alerts: what is said, to whom, and failures that never raise."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from datetime import datetime

import pytest

from core.domain.health import OWNER_DOWN, Problem
from core.domain.notify import (
    OperatorAlert,
    OperatorAlerts,
    owner_chat,
    owner_down_text,
)
from core.store.models import Customer
from tests.stand_ins import Receiver

T0 = datetime(2026, 3, 1, 12, 0, 0)
ALERT = OperatorAlert(
    "circuit breaker open",
    "Rachel8 is not running",
    "no repair until the cooldown ends",
    T0,
    server_id=7,
    server_name="rachel-7",
)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


def test_each_cause_has_its_own_words_for_the_owner() -> None:
    texts = {problem: owner_down_text(problem) for problem in OWNER_DOWN}
    assert len(set(texts.values())) == len(OWNER_DOWN)
    assert "@BotFather" in texts[Problem.TOKEN_REVOKED]
    assert "deleteWebhook" in texts[Problem.WEBHOOK_SET]
    assert "another program" in texts[Problem.CONFLICT]
    assert "restarting it" in texts[Problem.SERVICE_DOWN]
    assert owner_down_text(Problem.SILENT).startswith("Your assistant is down.")


def test_the_owner_is_told_in_their_own_chat_first() -> None:
    assert owner_chat(Customer(owner_telegram_user_id=424242, telegram_chat_id="99")) == "424242"
    assert owner_chat(Customer(owner_telegram_user_id=None, telegram_chat_id="99")) == "99"
    assert owner_chat(Customer(owner_telegram_user_id=None, telegram_chat_id=None)) is None


def test_an_alert_says_what_which_server_why_and_what_next(receiver: Receiver) -> None:
    delivery = OperatorAlerts(receiver.url).send(ALERT)
    assert delivery.sent and delivery.detail == "sent to the operator webhook"
    assert receiver.bodies == [
        {
            "what": "circuit breaker open",
            "server_id": 7,
            "server_name": "rachel-7",
            "why": "Rachel8 is not running",
            "next": "no repair until the cooldown ends",
            "at": "2026-03-01T12:00:00Z",
            "text": "rachel-cloud server 7 (rachel-7): circuit breaker open: "
            "Rachel8 is not running; next: no repair until the cooldown ends",
        }
    ]
    fleet = OperatorAlert("herd guard tripped", "3 of 9", "paused", T0)
    assert fleet.line().startswith("rachel-cloud fleet: herd guard tripped")


def test_alert_failures_are_reported_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    assert OperatorAlerts(None).send(ALERT).detail == "no RACHEL_OPERATOR_WEBHOOK_URL: logged only"
    assert "operator alert: rachel-cloud server 7" in caplog.text
    refusing = Receiver(status=500)
    try:
        failed = OperatorAlerts(refusing.url).send(ALERT)
    finally:
        refusing.close()
    assert (failed.sent, failed.detail) == (False, "operator webhook answered 500")
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    secret_url = f"http://127.0.0.1:{port}/hooks/s3cr3t-path"
    gone = OperatorAlerts(secret_url, timeout=2).send(ALERT)
    assert (gone.sent, gone.detail) == (False, "operator webhook unreachable (ConnectError)")
    assert "s3cr3t-path" not in caplog.text, "a chat webhook's URL carries its secret"


def test_a_down_message_promises_a_restart_only_when_one_will_run() -> None:
    for problem in (Problem.SERVICE_DOWN, Problem.UNREACHABLE):
        assert "We are restarting" in owner_down_text(problem)
        held = owner_down_text(problem, repairing=False)
        assert "restarting" not in held and "looking into it" in held
    # What the owner must fix reads the same either way.
    assert owner_down_text(Problem.CONFLICT, repairing=False) == owner_down_text(Problem.CONFLICT)
