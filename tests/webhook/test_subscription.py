"""POST /webhooks/subscription: status changes and the times the grace enforcer needs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.platform.clock import utcnow
from core.store.models import Customer, Subscription
from tests.webhook.conftest import Http, subscription_payload

GRACE = timedelta(days=3)


def _at(minutes_ago: float) -> datetime:
    return datetime.now(UTC) - timedelta(minutes=minutes_ago)


def _sub() -> Subscription:
    return Subscription.get(Subscription.customer == Customer.get(external_id="cus_web_1"))


def test_first_event_creates_customer_and_subscription(tc: Http) -> None:
    response = tc.subscribe(subscription_payload(email="ada@example.com"))
    assert response.status_code == 200, response.text
    assert response.json()["applied"] is True
    assert Customer.get(external_id="cus_web_1").email == "ada@example.com"
    sub = _sub()
    assert (sub.status, sub.lapsed_at, sub.grace_until) == ("active", None, None)


def test_lapse_sets_lapsed_at_and_grace_until_and_reactivation_clears_them(tc: Http) -> None:
    tc.subscribe(subscription_payload(at=_at(30)))
    lapsed = _at(20)
    body = tc.subscribe(subscription_payload(status="past_due", at=lapsed)).json()
    sub = _sub()
    expected = lapsed.replace(tzinfo=None)
    assert sub.status == "past_due"
    assert abs(sub.lapsed_at - expected) < timedelta(milliseconds=1)
    assert abs(sub.grace_until - (expected + GRACE)) < timedelta(milliseconds=1)
    assert body["grace_until"].startswith(sub.grace_until.isoformat()[:19])
    # Moving between lapsed statuses keeps the original lapse: grace does not restart.
    tc.subscribe(subscription_payload(status="canceled", at=_at(10)))
    assert _sub().status == "canceled"
    assert abs(_sub().lapsed_at - expected) < timedelta(milliseconds=1)
    Subscription.update(warned_at=utcnow()).execute()
    tc.subscribe(subscription_payload(status="active", at=_at(5)))
    sub = _sub()
    assert (sub.status, sub.lapsed_at, sub.grace_until, sub.warned_at) == (
        "active",
        None,
        None,
        None,
    )


def test_out_of_order_event_is_ignored(tc: Http) -> None:
    tc.subscribe(subscription_payload(status="unpaid", at=_at(1)))
    late = tc.subscribe(subscription_payload(status="active", at=_at(10)))
    assert late.status_code == 200
    assert late.json()["applied"] is False
    assert late.json()["status"] == "unpaid"
    assert _sub().status == "unpaid"


def test_current_period_end_is_recorded(tc: Http) -> None:
    end = datetime(2030, 1, 31, tzinfo=UTC)
    tc.subscribe(subscription_payload(current_period_end=end.isoformat()))
    assert _sub().current_period_end == datetime(2030, 1, 31)


def test_event_from_the_future_is_422_and_changes_nothing(tc: Http) -> None:
    response = tc.subscribe(subscription_payload(at=datetime.now(UTC) + timedelta(hours=1)))
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "future_event"
    assert Subscription.select().count() == 0
    assert Customer.select().count() == 0


def test_unknown_status_is_400(tc: Http) -> None:
    response = tc.subscribe(subscription_payload(status="trialing"))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


def test_same_delivery_twice_is_answered_from_the_store(tc: Http) -> None:
    payload = subscription_payload(status="past_due")
    first = tc.subscribe(payload, webhook_id="msg_sub")
    second = tc.subscribe(payload, webhook_id="msg_sub")
    assert second.json() == first.json()
    assert second.headers["idempotent-replayed"] == "true"


def test_webhook_id_of_a_deploy_cannot_be_reused_for_a_subscription(tc: Http) -> None:
    tc.subscribe(webhook_id="msg_x")
    response = tc.deploy(webhook_id="msg_x")
    assert response.status_code == 409
