"""The capacity fallback end to end: the creating job against the simulator's capacity faults.

Three locations of eu-central (the default RACHEL_LOCATION) and two server
types: a refusal moves the server to the next location, then to the next
type; what the API advertises unavailable is skipped without a create; when
every pair refuses the server fails with the reason and Hetzner holds nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import peewee
import pytest
import redis

from core.domain.lifecycle import Status
from core.domain.placement import EVENT_KIND
from core.store.models import Event, Server
from jobs import operator
from jobs.context import use_context
from jobs.creating import create_server
from sim.server import SimulatorServer
from tests import factories
from tests.pipeline.harness import Stack, build_stack


@pytest.fixture
def stack(
    db: peewee.Database, tmp_path: Path, redis_client: redis.Redis, sim: SimulatorServer
) -> Iterator[Stack]:
    yield build_stack(
        tmp_path, redis_client, sim, RACHEL_BOOT_TIMEOUT="30s", RACHEL_SERVER_TYPE="cx23,cx33"
    )
    use_context(None)


def deploy(stack: Stack) -> int:
    owner = factories.paying_customer(stack.ring)
    result = operator.deploy(stack.redis, stack.settings, owner.external_id, "operator:test")
    return result.server_id


def creates(stack: Stack) -> int:
    """Create calls the simulator has answered so far (refused ones included)."""
    count: int = stack.sim.stats()["requests"].get("create_server", 0)
    return count


def capacity_events(server_id: int) -> list[str]:
    rows = Event.select().where((Event.server == server_id) & (Event.kind == EVENT_KIND))
    return [e.message for e in rows.order_by(Event.id)]


def on_hetzner(stack: Stack) -> list[tuple[str, str]]:
    """Where the simulator holds servers: (location, server type) of each."""
    found = stack.ctx.hetzner.client.servers.get_all()
    return [(s.location.name, s.server_type.name) for s in found]


def test_a_full_location_falls_back_to_the_next_and_others_skip_it(stack: Stack) -> None:
    stack.sim.set_faults({"capacity": [{"location": "fsn1", "server_type": "cx23"}]})
    first = deploy(stack)
    row = stack.wait_status(first, Status.CLOUD_INIT)
    assert (row.location, row.server_type) == ("nbg1", "cx23")
    assert creates(stack) == 2
    [event] = capacity_events(first)
    assert event.startswith("fsn1/cx23: resource_unavailable: ") and "fsn1" in event
    assert event.endswith("; trying nbg1/cx23")
    # The next deploy knows fsn1 is full (the API said so a moment ago): no create spent there.
    second = deploy(stack)
    row = stack.wait_status(second, Status.CLOUD_INIT)
    assert (row.location, creates(stack)) == ("nbg1", 3)
    assert capacity_events(second) == ["fsn1/cx23 advertised unavailable; trying nbg1/cx23"]
    assert sorted(on_hetzner(stack)) == [("nbg1", "cx23"), ("nbg1", "cx23")]
    # A crash after the create: the retried job adopts the VPS in nbg1 by its label.
    provider_id = row.provider_id
    Server.update(status="creating", provider_id=None).where(Server.id == second).execute()
    assert create_server(second).startswith("adopted")
    row = Server.get_by_id(second)
    assert (row.provider_id, row.location, creates(stack)) == (provider_id, "nbg1", 3)


def test_no_room_for_a_type_anywhere_falls_back_to_the_next_type(stack: Stack) -> None:
    stack.sim.set_faults({"capacity": [{"server_type": "cx23"}]})
    server = deploy(stack)
    row = stack.wait_status(server, Status.CLOUD_INIT)
    assert (row.location, row.server_type) == ("fsn1", "cx33")
    # One refused create; nbg1 and hel1 were advertised unavailable, so never tried.
    assert creates(stack) == 2
    [event] = capacity_events(server)
    assert event.startswith("fsn1/cx23: resource_unavailable: ")
    assert event.endswith(
        "; nbg1/cx23 advertised unavailable; hel1/cx23 advertised unavailable; trying fsn1/cx33"
    )
    assert on_hetzner(stack) == [("fsn1", "cx33")]


def test_a_refusal_the_catalogue_did_not_announce_is_handled_too(stack: Stack) -> None:
    stack.sim.set_faults(
        {"capacity": [{"location": "fsn1", "code": "placement_error", "advertised": False}]}
    )
    server = deploy(stack)
    row = stack.wait_status(server, Status.CLOUD_INIT)
    assert (row.location, row.server_type, creates(stack)) == ("nbg1", "cx23", 2)
    [event] = capacity_events(server)
    assert event.startswith("fsn1/cx23: placement_error: ") and event.endswith("trying nbg1/cx23")


def test_an_api_that_cannot_say_availability_does_not_stop_the_fallback(stack: Stack) -> None:
    stack.sim.set_faults(
        {
            "capacity": [{"location": "fsn1"}],
            "errors": {"list_server_types": {"code": "server_error"}},
        }
    )
    server = deploy(stack)
    row = stack.wait_status(server, Status.CLOUD_INIT)
    assert (row.location, creates(stack)) == ("nbg1", 2)
    assert stack.sim.stats()["errors"]["list_server_types:server_error"] == 1


def test_every_pair_refusing_fails_the_server_and_leaves_nothing(stack: Stack) -> None:
    # Not advertised: every create is tried, and refused.
    stack.sim.set_faults({"capacity": [{"advertised": False}]})
    server = deploy(stack)
    row = stack.wait_status(server, Status.FAILED)
    assert creates(stack) == 6
    assert row.failed_phase == "creating"
    assert (row.location, row.server_type) == ("fsn1", "cx23")  # where it started
    reason = row.last_error or ""
    assert reason.startswith("resource_unavailable: no room for the server anywhere it may go: ")
    for pair in ("fsn1/cx23", "nbg1/cx23", "hel1/cx23", "fsn1/cx33", "nbg1/cx33", "hel1/cx33"):
        assert f"{pair} resource_unavailable" in reason
    events = capacity_events(server)
    assert len(events) == 6 and events[-1].endswith("no other location or server type left")
    assert [e.message for e in row.events if e.kind == "retry"] == []  # not transient
    assert on_hetzner(stack) == []


def test_a_job_run_again_resumes_after_the_pairs_already_refused(stack: Stack) -> None:
    full = {"location": "fsn1", "advertised": False}  # the API shows room: only creates tell
    stack.sim.set_faults({"capacity": [full]})
    server = deploy(stack)
    row = stack.wait_status(server, Status.CLOUD_INIT)
    # As a worker killed before nbg1's create answered leaves it: fsn1's refusal
    # recorded, the row on nbg1, the create request marked, no VPS yet.
    stack.ctx.hetzner.delete_server(row.provider_id or 0)
    stack.drain(lambda: on_hetzner(stack) == [], what="the VPS to be gone")
    Server.update(status="creating", provider_id=None).where(Server.id == server).execute()
    # Meanwhile nbg1 filled up too.
    stack.sim.set_faults({"capacity": [full, {"location": "nbg1", "advertised": False}]})
    before = creates(stack)
    assert create_server(server).startswith("created")
    # nbg1 refused, then hel1: fsn1, refused in this attempt already, was not asked again.
    assert creates(stack) == before + 2
    assert on_hetzner(stack) == [("hel1", "cx23")]
    assert capacity_events(server)[1].startswith("nbg1/cx23: resource_unavailable: ")
    assert capacity_events(server)[1].endswith("; trying hel1/cx23")
