"""Releases and the rollout store on the real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading

import peewee
import pytest

from core.domain import releases, rollout_store
from core.domain.releases import ReleaseError, add_release, current, resolve
from core.domain.rollout_states import RolloutError, RolloutState
from core.domain.rollout_store import RolloutOptions
from core.domain.rollout_waves import parse_waves
from core.store.db import connection
from core.store.models import Event, FleetRelease, Release, Rollout, RolloutTarget
from tests import factories

SEED = "63f162e9302a66344772ab23653789f701c7bcf9"
NEW = "1" * 40
OPS = "operator:alice"


def options(**changes: object) -> RolloutOptions:
    values: dict[str, object] = {
        "waves": parse_waves("canary,50%,100%"),
        "max_in_flight": 2,
        "soak_seconds": 0.0,
        "gate_seconds": 1.0,
        "halt_share": 0.3,
    }
    values.update(changes)
    return RolloutOptions(**values)  # type: ignore[arg-type]


def test_the_current_release_is_seeded_from_the_setting_once(db: peewee.Database) -> None:
    first = current(SEED)
    assert (first.commit, first.notes, first.added_by) == (SEED, releases.SEED_NOTES, "system")
    assert current("2" * 40).id == first.id  # only seeds while none is current
    assert Release.select().count() == 1 and FleetRelease.select().count() == 1
    seeded = Event.select().where(Event.server.is_null() & (Event.kind == "release"))
    assert [e.message for e in seeded] == [
        f"the fleet's current release is {SEED[:12]} (seeded from RACHEL8_COMMIT)"
    ]


def test_add_list_and_resolve(db: peewee.Database) -> None:
    current(SEED)
    added = add_release(NEW.upper(), " the fix ", OPS)
    assert (added.commit, added.notes, added.added_by) == (NEW, "the fix", OPS)
    add_release("1111111222" + "0" * 30, "", OPS)
    assert resolve(NEW).id == added.id
    assert resolve(NEW[:12] + "1").id == added.id
    with pytest.raises(ReleaseError, match="ambiguous") as ambiguous:
        resolve("1111111")
    assert ambiguous.value.code == "ambiguous_release"
    factories.server(status="ready", rachel8_commit=NEW)
    factories.server(status="deleted", rachel8_commit=NEW)
    rows = releases.list_releases(SEED)
    assert [(r.commit, r.current, r.servers) for r in rows] == [
        ("1111111222" + "0" * 30, False, 0),
        (NEW, False, 1),
        (SEED, True, 0),
    ]


@pytest.mark.parametrize(
    ("commit", "code", "message"),
    [
        ("main", "invalid_commit", "expected a full 40-hex-digit commit id"),
        ("abc123", "invalid_commit", "a branch or tag moves"),
        ("g" * 40, "invalid_commit", "40-hex-digit"),
    ],
)
def test_a_bad_commit_is_refused_and_nothing_stored(
    db: peewee.Database, commit: str, code: str, message: str
) -> None:
    with pytest.raises(ReleaseError, match=message) as caught:
        add_release(commit, "", OPS)
    assert caught.value.code == code
    assert Release.select().count() == 0


def test_a_duplicate_or_unknown_release_is_a_clear_error(db: peewee.Database) -> None:
    add_release(NEW, "first", OPS)
    with pytest.raises(ReleaseError, match="already exists") as dup:
        add_release(NEW, "again", "operator:bob")
    assert dup.value.code == "duplicate_release"
    assert Release.get(Release.commit == NEW).notes == "first"
    for ref in ("2" * 40, "2222222", "123", "not-hex"):
        with pytest.raises(ReleaseError, match="unknown release") as unknown:
            resolve(ref)
        assert unknown.value.code == "unknown_release"


def test_a_rollout_plans_ready_servers_in_waves_and_skips_the_rest(db: peewee.Database) -> None:
    current(SEED)
    ready = [factories.server(status="ready", rachel8_commit=SEED) for _ in range(4)]
    on_target = factories.server(status="ready", rachel8_commit=NEW)
    creating = factories.server(status="creating")
    factories.server(status="deleted")
    release = add_release(NEW, "", OPS)
    rollout = rollout_store.start(release, options(), OPS, SEED)
    assert rollout.state == RolloutState.PLANNED
    targets = list(RolloutTarget.select().order_by(RolloutTarget.position))
    assert [t.wave for t in targets] == [0, 1, 2, 2, -1, -1]
    assert {t.server_id for t in targets[:4]} == {s.id for s in ready}
    assert all((t.from_commit, t.to_commit) == (SEED, NEW) for t in targets[:4])
    skipped = {t.server_id: t.reason for t in targets if t.state == "skipped"}
    assert skipped == {
        on_target.id: f"already runs {NEW[:12]}",
        creating.id: "not ready (creating) when the rollout was planned",
    }
    assert Event.select().where(Event.kind == "rollout").count() == 1


def test_one_rollout_at_a_time_and_nothing_changed_by_a_refusal(db: peewee.Database) -> None:
    current(SEED)
    factories.server(status="ready", rachel8_commit=SEED)
    release = add_release(NEW, "", OPS)
    first = rollout_store.start(release, options(), OPS, SEED)
    with pytest.raises(RolloutError, match=f"rollout {first.id} is planned") as caught:
        rollout_store.start(release, options(), OPS, SEED)
    assert caught.value.code == "rollout_live"
    assert Rollout.select().count() == 1 and RolloutTarget.select().count() == 1


def test_starts_racing_on_two_connections_make_one_rollout(db: peewee.Database) -> None:
    """The lock on the fleet's release row, not a check-then-insert, keeps it to one."""
    current(SEED)
    for _ in range(3):
        factories.server(status="ready", rachel8_commit=SEED)
    release = add_release(NEW, "", OPS)
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def attempt() -> None:
        barrier.wait()
        try:
            with connection():
                rollout_store.start(release, options(), OPS, SEED)
            outcomes.append("started")
        except RolloutError as exc:
            outcomes.append(exc.code)
        finally:
            db.close()  # this thread's connection

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["rollout_live"] * 3 + ["started"]
    assert Rollout.select().count() == 1 and RolloutTarget.select().count() == 3


def test_nothing_to_roll_out_and_bad_options_change_nothing(db: peewee.Database) -> None:
    seed = current(SEED)
    factories.server(status="ready", rachel8_commit=SEED)
    with pytest.raises(RolloutError, match="nothing to roll out") as caught:
        rollout_store.start(seed, options(), OPS, SEED)
    assert caught.value.code == "nothing_to_roll_out"
    release = add_release(NEW, "", OPS)
    with pytest.raises(RolloutError, match="--max-in-flight must be at least 1; --gate"):
        rollout_store.start(release, options(max_in_flight=0, gate_seconds=0), OPS, SEED)
    assert Rollout.select().count() == 0 and RolloutTarget.select().count() == 0


def test_pause_resume_abort_and_rollback_refusals(db: peewee.Database) -> None:
    current(SEED)
    factories.server(status="ready", rachel8_commit=SEED)
    with pytest.raises(RolloutError, match="nothing to roll back: no rollout yet"):
        rollout_store.roll_back(OPS)
    with pytest.raises(RolloutError, match="no rollout to pause"):
        rollout_store.pause(OPS)
    release = add_release(NEW, "", OPS)
    rollout = rollout_store.start(release, options(), OPS, SEED)
    Rollout.update(state="running").where(Rollout.id == rollout.id).execute()
    with pytest.raises(RolloutError, match="pause or abort it first"):
        rollout_store.roll_back(OPS)
    with pytest.raises(RolloutError, match="it can be"):
        rollout_store.resume(OPS)
    assert rollout_store.pause(OPS).id == rollout.id
    assert Rollout.get_by_id(rollout.id).state == "paused"
    # Paused with nothing switched: nothing to roll back, and nothing changed.
    with pytest.raises(RolloutError, match="nothing to roll back") as nothing:
        rollout_store.roll_back(OPS)
    assert nothing.value.code == "nothing_to_roll_back"
    assert Rollout.get_by_id(rollout.id).state == "paused"
    rollout_store.resume(OPS)
    rollout_store.abort(OPS, "wrong release")
    aborted = Rollout.get_by_id(rollout.id)
    assert (aborted.state, aborted.reason) == ("aborted", f"aborted by {OPS}: wrong release")
    assert aborted.finished_at is not None
    assert RolloutTarget.get(RolloutTarget.rollout == rollout.id).state == "skipped"
    with pytest.raises(RolloutError, match="no rollout is in progress"):
        rollout_store.pause(OPS)
    messages = [
        e.message for e in Event.select().where(Event.kind == "rollout").order_by(Event.id)
    ][1:]
    assert messages == [
        f"rollout {rollout.id}: paused by {OPS}",
        f"rollout {rollout.id}: resumed by {OPS}",
        f"rollout {rollout.id}: aborted by {OPS}: wrong release",
    ]


def test_rollback_of_an_aborted_rollout_with_updated_servers(db: peewee.Database) -> None:
    current(SEED)
    for _ in range(2):
        factories.server(status="ready", rachel8_commit=SEED)
    release = add_release(NEW, "", OPS)
    rollout = rollout_store.start(release, options(), OPS, SEED)
    first = RolloutTarget.select().order_by(RolloutTarget.position).first()
    RolloutTarget.update(state="updated").where(RolloutTarget.id == first.id).execute()
    rollout_store.abort(OPS)
    back = rollout_store.roll_back("operator:bob")
    assert back.id == rollout.id
    assert Rollout.get_by_id(rollout.id).state == RolloutState.ROLLING_BACK
    with pytest.raises(RolloutError, match="wait for it to finish"):
        rollout_store.roll_back(OPS)
    # A rolling-back rollout is live: no other starts beside it.
    with pytest.raises(RolloutError, match="is rolling_back"):
        rollout_store.start(release, options(), OPS, SEED)
    Rollout.update(state="completed").where(Rollout.id == rollout.id).execute()
    with pytest.raises(RolloutError, match="completed and its release is the fleet's"):
        rollout_store.roll_back(OPS)
