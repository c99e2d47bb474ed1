"""Rollout decisions: states, the in-flight limit, soaks, waves, the halt rule, rollback."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.domain.rollout_states import (
    IN_FLIGHT_TARGETS,
    LIVE_STATES,
    ROLLOUT_TRANSITIONS,
    TARGET_TRANSITIONS,
    RolloutError,
    RolloutState,
    TargetState,
    check_rollout_transition,
    rollout_transition_allowed,
    target_transition_allowed,
)
from core.domain.rollouts import (
    Action,
    BeginSoak,
    ChangeState,
    EnterWave,
    RequeueRollback,
    RequeueUpdate,
    RolloutView,
    Skip,
    StartRollback,
    StartUpdate,
    TargetView,
    decide,
    halt_reason,
)

T0 = datetime(2026, 5, 1, 12, 0, 0)
S = TargetState
R = RolloutState


def targets(*waves: list[S], switched: tuple[int, ...] = ()) -> tuple[TargetView, ...]:
    """Targets numbered from 1 in wave order, in the given states."""
    found: list[TargetView] = []
    for wave, states in enumerate(waves):
        for state in states:
            n = len(found) + 1
            found.append(TargetView(n, wave, n, state, n in switched, T0))
    return tuple(found)


def view(state: R, ts: tuple[TargetView, ...], **fields: object) -> RolloutView:
    values: dict[str, object] = {
        "state": state,
        "wave": 0,
        "wave_count": 1 + max((t.wave for t in ts), default=0),
        "soak_until": None,
        "soak_seconds": 60.0,
        "max_in_flight": 2,
        "halt_share": 0.3,
        "targets": ts,
    }
    values.update(fields)
    return RolloutView(**values)  # type: ignore[arg-type]


def test_the_transition_tables_know_every_state() -> None:
    assert set(ROLLOUT_TRANSITIONS) == set(RolloutState)
    assert set(TARGET_TRANSITIONS) == set(TargetState)
    assert rollout_transition_allowed("running", "paused")
    assert not rollout_transition_allowed("completed", "rolling_back")
    assert not rollout_transition_allowed("rolled_back", "running")
    assert not rollout_transition_allowed("running", "bogus")
    with pytest.raises(RolloutError, match="from completed to running") as caught:
        check_rollout_transition("completed", "running")
    assert caught.value.code == "invalid_rollout_transition"
    assert target_transition_allowed("gating", "updated")
    assert not target_transition_allowed("updated", "gating")
    # Final rollout states are not live; the ones with work left are.
    assert {R.COMPLETED, R.ABORTED, R.ROLLED_BACK}.isdisjoint(LIVE_STATES)
    assert all(ROLLOUT_TRANSITIONS[s] for s in LIVE_STATES)


def test_planned_starts_running() -> None:
    assert decide(view(R.PLANNED, targets([S.PENDING])), T0) == [ChangeState(R.RUNNING)]


def test_starts_pending_targets_of_the_wave_in_position_order_up_to_the_limit() -> None:
    ts = targets([S.PENDING, S.PENDING, S.PENDING], [S.PENDING])
    assert decide(view(R.RUNNING, ts), T0) == [StartUpdate(1), StartUpdate(2)]
    busy = targets([S.UPDATING, S.PENDING, S.PENDING], [S.PENDING])
    assert decide(view(R.RUNNING, busy), T0) == [StartUpdate(2)]
    full = targets([S.UPDATING, S.GATING, S.PENDING])
    assert decide(view(R.RUNNING, full), T0) == []


def test_a_paused_rollout_starts_nothing_but_still_halts() -> None:
    ts = targets([S.UPDATED, S.PENDING, S.PENDING])
    assert decide(view(R.PAUSED, ts, wave=0), T0) == []
    failing = targets([S.FAILED, S.UPDATING])
    assert decide(view(R.PAUSED, failing), T0) == [
        ChangeState(R.HALTED, "the canary failed: 1 of 2 server(s) failed their update")
    ]


def test_a_done_wave_soaks_then_the_next_wave_begins_then_the_rollout_completes() -> None:
    ts = targets([S.UPDATED], [S.UPDATED, S.SKIPPED])
    assert decide(view(R.RUNNING, ts), T0) == [BeginSoak(T0 + timedelta(seconds=60))]
    soaking = view(R.RUNNING, ts, soak_until=T0 + timedelta(seconds=60))
    assert decide(soaking, T0 + timedelta(seconds=59)) == []
    assert decide(soaking, T0 + timedelta(seconds=60)) == [EnterWave(1)]
    last = view(R.RUNNING, ts, wave=1)
    assert decide(last, T0) == [BeginSoak(T0 + timedelta(seconds=60))]
    assert decide(replace(last, soak_until=T0), T0) == [ChangeState(R.COMPLETED)]
    assert decide(replace(last, soak_seconds=0), T0) == [ChangeState(R.COMPLETED)]


def test_a_wave_of_skipped_servers_has_nothing_to_soak_and_an_empty_rollout_completes() -> None:
    ts = targets([S.SKIPPED], [S.PENDING])
    assert decide(view(R.RUNNING, ts), T0) == [EnterWave(1)]
    assert decide(view(R.RUNNING, (), wave_count=0), T0) == [ChangeState(R.COMPLETED)]


def test_any_canary_failure_halts() -> None:
    ts = targets([S.UPDATED, S.FAILED, S.GATING], [S.PENDING] * 10)
    reason = halt_reason(view(R.RUNNING, ts))
    assert reason == "the canary failed: 1 of 3 server(s) failed their update"
    assert decide(view(R.RUNNING, ts), T0) == [ChangeState(R.HALTED, reason)]


@pytest.mark.parametrize(
    ("wave", "halts"),
    [
        # 3 failed of 10 = 30%: not above 30%.
        ([S.FAILED] * 3 + [S.UPDATED] * 7, False),
        # 4 of 10 halts, even before the wave is done (it can only stay above).
        ([S.FAILED] * 4 + [S.PENDING] * 6, True),
        # Skipped servers are neither failures nor in the denominator: 3 of 9.
        ([S.FAILED] * 3 + [S.UPDATED] * 6 + [S.SKIPPED], True),
        # A failed server being rolled back, or rolled back, is a failure.
        ([S.ROLLING_BACK, S.ROLLED_BACK, S.ROLLBACK_FAILED] + [S.UPDATED] * 7, False),
        ([S.ROLLING_BACK, S.ROLLED_BACK, S.ROLLBACK_FAILED, S.FAILED] + [S.UPDATED] * 6, True),
    ],
)
def test_a_later_wave_halts_when_its_failed_share_is_above_the_halt_share(
    wave: list[S], halts: bool
) -> None:
    ts = targets([S.UPDATED], wave)
    found = halt_reason(view(R.RUNNING, ts, wave=1))
    assert (found is not None) is halts
    if halts:
        assert found is not None and "above the halt share 30%" in found
        assert decide(view(R.RUNNING, ts, wave=1), T0) == [ChangeState(R.HALTED, found)]


def test_the_canary_failing_in_its_soak_halts_before_wave_1_starts() -> None:
    # The canary passed its gate, then failed while its wave soaked (judge_soak).
    ts = targets([S.FAILED], [S.PENDING, S.PENDING], switched=(1,))
    for soak_until in (T0 + timedelta(seconds=30), T0 - timedelta(seconds=1)):
        soaking = view(R.RUNNING, ts, soak_until=soak_until)
        assert decide(soaking, T0) == [
            ChangeState(R.HALTED, "the canary failed: 1 of 1 server(s) failed their update")
        ]
    # Halted: wave 1 never starts; the canary goes back.
    halted = decide(view(R.HALTED, ts, soak_until=T0), T0)
    assert halted == [
        Skip(2, "the rollout halted"),
        Skip(3, "the rollout halted"),
        StartRollback(1),
    ]
    assert not any(isinstance(a, (EnterWave, StartUpdate)) for a in halted)


def test_a_healthy_soak_moves_on_to_the_next_wave() -> None:
    ts = targets([S.UPDATED], [S.PENDING], switched=(1,))
    assert decide(view(R.RUNNING, ts, soak_until=T0), T0) == [EnterWave(1)]


def test_a_server_of_an_earlier_wave_failing_later_counts_against_its_wave() -> None:
    # Wave 2 under way; a server of wave 1 failed after its gate: 1 of 3 (33%).
    ts = targets(
        [S.UPDATED],
        [S.UPDATED, S.UPDATED, S.FAILED],
        [S.UPDATING, S.PENDING],
        switched=(1, 2, 3, 4, 5),
    )
    assert halt_reason(view(R.RUNNING, ts, wave=2)) == (
        "wave 1 failed: 1 of 3 servers (33%) failed, above the halt share 30%"
    )
    assert decide(view(R.PAUSED, ts, wave=2), T0) == [
        ChangeState(
            R.HALTED, "wave 1 failed: 1 of 3 servers (33%) failed, above the halt share 30%"
        )
    ]
    # Within the halt share: the rollout goes on, and that server goes back at once.
    lenient = view(R.RUNNING, ts, wave=2, halt_share=0.5, max_in_flight=3)
    assert halt_reason(lenient) is None
    assert decide(lenient, T0) == [StartRollback(4), StartUpdate(6)]
    # The canary failing at any later time halts the rollout.
    late_canary = targets([S.FAILED], [S.UPDATED], [S.PENDING], switched=(1, 2))
    assert halt_reason(view(R.RUNNING, late_canary, wave=2)) == (
        "the canary failed: 1 of 1 server(s) failed their update"
    )


def test_an_updated_server_may_fail_later() -> None:
    assert target_transition_allowed("updated", "failed")
    assert not target_transition_allowed("rolled_back", "failed")


def test_a_switched_server_whose_update_failed_goes_back_at_once() -> None:
    ts = targets([S.UPDATED], [S.FAILED] + [S.UPDATED] * 9 + [S.PENDING], switched=(2,))
    # 1 of 11 failed: below the halt share; its rollback comes first and uses the room.
    assert decide(view(R.RUNNING, ts, wave=1), T0) == [StartRollback(2), StartUpdate(12)]
    unswitched = targets([S.UPDATED], [S.FAILED] + [S.UPDATED] * 9)
    assert decide(view(R.RUNNING, unswitched, wave=1), T0) == [
        BeginSoak(T0 + timedelta(seconds=60))
    ]
    # Paused or aborted: the failed server still goes back, nothing else starts.
    for state in (R.PAUSED, R.ABORTED):
        assert decide(view(state, ts, wave=1), T0) == [StartRollback(2)]


def test_halted_skips_what_did_not_start_and_rolls_back_what_switched() -> None:
    ts = targets(
        [S.UPDATED, S.FAILED, S.GATING, S.UPDATING],
        [S.PENDING, S.PENDING],
        switched=(1, 2, 3),
    )
    actions = decide(view(R.HALTED, ts, max_in_flight=10), T0)
    assert actions == [
        Skip(5, "the rollout halted"),
        Skip(6, "the rollout halted"),
        StartRollback(1),
        StartRollback(2),
        StartRollback(3),
    ]
    # The limit holds for rollbacks too (3 and 4 are in flight already); 3 is in
    # flight already, so rolling it back takes no room.
    assert decide(view(R.HALTED, ts, max_in_flight=3), T0)[2:] == [
        StartRollback(1),
        StartRollback(3),
    ]
    assert decide(view(R.HALTED, ts, max_in_flight=2), T0)[2:] == [StartRollback(3)]


def test_halted_or_rolling_back_ends_rolled_back_once_everything_settled() -> None:
    waiting = targets([S.ROLLED_BACK, S.ROLLING_BACK, S.SKIPPED])
    assert decide(view(R.HALTED, waiting), T0) == []
    done = targets([S.ROLLED_BACK, S.ROLLBACK_FAILED, S.SKIPPED, S.FAILED])  # 4 never switched
    assert decide(view(R.HALTED, done), T0) == [ChangeState(R.ROLLED_BACK)]
    assert decide(view(R.ROLLING_BACK, done), T0) == [ChangeState(R.ROLLED_BACK)]
    nothing_switched = targets([S.FAILED], [S.SKIPPED])
    assert decide(view(R.HALTED, nothing_switched), T0) == [ChangeState(R.ROLLED_BACK)]


def test_stuck_jobs_are_queued_again_after_the_timeout() -> None:
    ts = (
        TargetView(1, 0, 1, S.UPDATING, False, T0),
        TargetView(2, 0, 2, S.ROLLING_BACK, True, T0 + timedelta(seconds=300)),
        TargetView(3, 0, 3, S.UPDATING, False, None),
    )
    v = view(R.HALTED, ts, stuck_after_seconds=600)
    assert decide(v, T0 + timedelta(seconds=599)) == []
    assert decide(v, T0 + timedelta(seconds=600)) == [RequeueUpdate(1)]
    assert decide(v, T0 + timedelta(seconds=900)) == [RequeueUpdate(1), RequeueRollback(2)]
    # A final rollout still looks after its stuck jobs.
    assert decide(replace(v, state=R.COMPLETED), T0 + timedelta(seconds=900)) == [
        RequeueUpdate(1),
        RequeueRollback(2),
    ]


# --- the whole life of a rollout, with random outcomes -----------------------------


class Model:
    """A rollout's targets as the jobs would move them, driven by `decide`."""

    def __init__(self, v: RolloutView, rng: random.Random, fail_rate: float) -> None:
        self.v = v
        self.rng = rng
        self.fail_rate = fail_rate
        self.now = T0
        self.history: list[Action] = []

    def set(self, target_id: int, state: S, **changes: object) -> None:
        ts = tuple(
            replace(t, state=state, **changes) if t.id == target_id else t  # type: ignore[arg-type]
            for t in self.v.targets
        )
        self.v = replace(self.v, targets=ts)

    def tick(self) -> None:
        actions = decide(self.v, self.now)
        self.history.extend(actions)
        for a in actions:
            self.apply(a)
        in_flight = sum(1 for t in self.v.targets if t.state in IN_FLIGHT_TARGETS)
        assert in_flight <= self.v.max_in_flight, actions
        self.jobs()
        self.now += timedelta(seconds=10)

    def apply(self, a: Action) -> None:
        if isinstance(a, StartUpdate):
            assert self.v.state == R.RUNNING
            self.set(a.target_id, S.UPDATING)
        elif isinstance(a, StartRollback):
            self.set(a.target_id, S.ROLLING_BACK)
        elif isinstance(a, Skip):
            self.set(a.target_id, S.SKIPPED)
        elif isinstance(a, BeginSoak):
            self.v = replace(self.v, soak_until=a.until)
        elif isinstance(a, EnterWave):
            self.v = replace(self.v, wave=a.wave, soak_until=None)
        elif isinstance(a, ChangeState):
            check_rollout_transition(self.v.state, a.to)
            self.v = replace(self.v, state=a.to)

    def jobs(self) -> None:
        """Each job in flight may finish this tick, one way or another."""
        for t in self.v.targets:
            if self.rng.random() < 0.5:
                continue
            bad = self.rng.random() < self.fail_rate
            if t.state == S.UPDATING:
                outcome = self.rng.choice([S.FAILED, S.SKIPPED]) if bad else S.GATING
                self.set(t.id, outcome, switched=outcome == S.GATING)
            elif t.state == S.GATING:
                self.set(t.id, S.FAILED if bad else S.UPDATED)
            elif t.state == S.ROLLING_BACK:
                self.set(t.id, S.ROLLBACK_FAILED if bad else S.ROLLED_BACK)


@settings(max_examples=150, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 12), min_size=1, max_size=4),
    max_in_flight=st.integers(1, 6),
    fail_rate=st.sampled_from([0.0, 0.05, 0.3, 0.8]),
    halt_share=st.sampled_from([0.0, 0.3, 0.5]),
    pause_at=st.none() | st.integers(0, 30),
    seed=st.integers(0, 2**16),
)
def test_a_rollout_ends_completed_or_rolled_back_within_its_limits(
    sizes: list[int],
    max_in_flight: int,
    fail_rate: float,
    halt_share: float,
    pause_at: int | None,
    seed: int,
) -> None:
    ts = targets(*([S.PENDING] * n for n in sizes))
    model = Model(
        view(R.PLANNED, ts, max_in_flight=max_in_flight, halt_share=halt_share, soak_seconds=20),
        random.Random(seed),
        fail_rate,
    )
    for step in range(2000):
        if model.v.state in (R.COMPLETED, R.ROLLED_BACK):
            break
        if step == pause_at and model.v.state == R.RUNNING:
            model.v = replace(model.v, state=R.PAUSED)
            started = len([a for a in model.history if isinstance(a, StartUpdate)])
            for _ in range(5):
                model.tick()  # paused: nothing starts (apply asserts it), in-flight ones land
            assert len([a for a in model.history if isinstance(a, StartUpdate)]) == started
            if model.v.state == R.PAUSED:
                model.v = replace(model.v, state=R.RUNNING)
        model.tick()
    final = model.v
    assert final.state in (R.COMPLETED, R.ROLLED_BACK), final.state
    assert all(t.state not in IN_FLIGHT_TARGETS for t in final.targets)
    if final.state == R.COMPLETED:
        # Every wave passed the halt rule: no canary failure, no share above the limit.
        for wave in range(final.wave_count):
            assert halt_reason(replace(final, state=R.RUNNING, wave=wave)) is None
        assert all(t.state != S.PENDING for t in final.targets)
        assert all(t.state != S.FAILED or not t.switched for t in final.targets)
    else:
        # Halted: nothing is left on the release (a server that failed to roll back is
        # the operators'), and nothing was started after the halt.
        assert all(t.state not in (S.UPDATED, S.GATING, S.PENDING) for t in final.targets)
        assert all(t.state != S.FAILED or not t.switched for t in final.targets)
        halted_at = next(
            i
            for i, a in enumerate(model.history)
            if isinstance(a, ChangeState) and a.to == R.HALTED
        )
        assert not [a for a in model.history[halted_at:] if isinstance(a, StartUpdate)]
