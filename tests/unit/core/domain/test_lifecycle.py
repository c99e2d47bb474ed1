"""The state machine as pure data: every allowed and every forbidden transition."""

import itertools

import pytest

from core.domain.lifecycle import (
    IN_FLIGHT,
    TRANSITIONS,
    Status,
    allowed,
    check,
    retry_target,
    validate_actor,
)
from core.errors import InvalidTransition

S = Status
ALLOWED = {
    (S.PENDING, S.CREATING),
    (S.PENDING, S.FAILED),
    (S.CREATING, S.CLOUD_INIT),
    (S.CREATING, S.FAILED),
    (S.CLOUD_INIT, S.INJECTING_SECRETS),
    (S.CLOUD_INIT, S.FAILED),
    (S.INJECTING_SECRETS, S.READY),
    (S.INJECTING_SECRETS, S.FAILED),
    (S.READY, S.DEPROVISIONING),
    (S.READY, S.INJECTING_SECRETS),
    (S.READY, S.FAILED),
    (S.FAILED, S.DEPROVISIONING),
    (S.FAILED, S.PENDING),
    (S.FAILED, S.CREATING),
    (S.FAILED, S.INJECTING_SECRETS),
    (S.DEPROVISIONING, S.DELETED),
}


@pytest.mark.parametrize(("source", "target"), sorted(ALLOWED))
def test_allowed(source: Status, target: Status) -> None:
    assert allowed(source, target)
    check(source, target)


FORBIDDEN = sorted(set(itertools.product(Status, Status)) - ALLOWED)


@pytest.mark.parametrize(("source", "target"), FORBIDDEN)
def test_forbidden(source: Status, target: Status) -> None:
    assert not allowed(source, target)
    with pytest.raises(InvalidTransition, match=f"from {source} to {target}"):
        check(source, target)


def test_table_matches_the_design() -> None:
    assert {(a, b) for a, targets in TRANSITIONS.items() for b in targets} == ALLOWED
    for state in IN_FLIGHT:
        assert allowed(state, S.FAILED)
    assert not TRANSITIONS[S.DELETED]


def test_unknown_statuses_are_never_allowed() -> None:
    assert not allowed("pending", "flying")
    assert not allowed("limbo", "ready")


@pytest.mark.parametrize(
    ("phase", "target"),
    [
        (None, S.PENDING),
        ("pending", S.PENDING),
        ("creating", S.CREATING),
        ("cloud_init", S.CREATING),
        ("injecting_secrets", S.INJECTING_SECRETS),
    ],
)
def test_retry_restarts_the_failed_phase(phase: str | None, target: Status) -> None:
    assert retry_target(phase) == target
    assert allowed(S.FAILED, retry_target(phase))


@pytest.mark.parametrize("actor", ["system", "webhook", "cron", "operator:alice", "operator:a.b@c"])
def test_valid_actors(actor: str) -> None:
    assert validate_actor(actor) == actor


@pytest.mark.parametrize("actor", ["", "operator:", "root", "operator:has space", "cron "])
def test_invalid_actors(actor: str) -> None:
    with pytest.raises(ValueError):
        validate_actor(actor)
