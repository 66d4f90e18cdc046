"""The ISA-18.2 state machine: every state × every operation, properties over random sequences."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alarms.model import AlarmEvent, AlarmState, Condition, EventKind, Priority
from alarms.state import (
    Alarm,
    AlarmOperationError,
    ShelveKind,
    acknowledge,
    from_row,
    next_deadline_ns,
    on_condition,
    remove_from_service,
    reset,
    return_to_service,
    shelve,
    suppress,
    tick,
    to_row,
    unshelve,
    unsuppress,
    validate,
)

S = 1_000_000_000
T0 = 1_700_000_000 * S
Result = tuple[Alarm, list[AlarmEvent]]
Op = Callable[[Alarm, int], Result]


def _chain(*steps: Op, latching: bool = False, priority: Priority = Priority.LOW) -> Alarm:
    alarm = Alarm(7, Condition.HH, priority, latching=latching)
    for i, step in enumerate(steps):
        alarm, _ = step(alarm, T0 + i * S)
    return alarm


def _on(a: Alarm, t: int) -> Result:
    return on_condition(a, True, t, 42.0)


def _off(a: Alarm, t: int) -> Result:
    return on_condition(a, False, t, 3.0)


def _ack(a: Alarm, t: int) -> Result:
    return acknowledge(a, "wang", "seen", t)


def _shelve(a: Alarm, t: int) -> Result:
    return shelve(a, "wang", "sensor being recalibrated", t, duration_s=60)


def _shelve_once(a: Alarm, t: int) -> Result:
    return shelve(a, "wang", "known chattering", t, one_shot=True)


def _unshelve(a: Alarm, t: int) -> Result:
    return unshelve(a, "wang", t)


def _suppress(a: Alarm, t: int) -> Result:
    return suppress(a, "unit 2 in maintenance", t)


def _unsuppress(a: Alarm, t: int) -> Result:
    return unsuppress(a, t)


def _remove(a: Alarm, t: int) -> Result:
    return remove_from_service(a, "li", "detector replaced", t)


def _restore(a: Alarm, t: int) -> Result:
    return return_to_service(a, "li", t)


def _reset(a: Alarm, t: int) -> Result:
    return reset(a, "wang", t)


def _tick(a: Alarm, t: int) -> Result:
    return tick(a, t + 3600 * S)


OPS: dict[str, Op] = {
    "on": _on,
    "off": _off,
    "ack": _ack,
    "shelve": _shelve,
    "shelve1": _shelve_once,
    "unshelve": _unshelve,
    "suppress": _suppress,
    "unsuppress": _unsuppress,
    "remove": _remove,
    "restore": _restore,
    "reset": _reset,
    "tick": _tick,
}

STARTS: dict[str, Alarm] = {
    "normal": _chain(),
    "unack": _chain(_on),
    "acked": _chain(_on, _ack),
    "rtn_unack": _chain(_on, _off),
    "latched_unack_cleared": _chain(_on, _off, latching=True),
    "latched_acked_active": _chain(_on, _ack, latching=True),
    "latched_acked_cleared": _chain(_on, _off, _ack, latching=True),
    "shelved_active": _chain(_on, _shelve),
    "shelved_clear": _chain(_shelve),
    "shelved_once_active": _chain(_on, _shelve_once),
    "suppressed_active": _chain(_on, _suppress),
    "suppressed_clear": _chain(_suppress),
    "oos_active": _chain(_on, _remove),
    "shelved_then_suppressed": _chain(_on, _shelve, _suppress),
}

N, U, A, R = "normal", "unack", "acked", "rtn_unack"
SH, SU, OOS = "shelved", "suppressed", "out_of_service"
# Expected outcome of each operation in each state: "!" an AlarmOperationError, "=" unchanged
# without events, else "state:event,event".
COMMON_ANNUNCIATED = {
    "shelve": f"{SH}:shelved",
    "shelve1": f"{SH}:shelved",
    "unshelve": "!",
    "suppress": f"{SU}:suppressed",
    "unsuppress": "!",
    "remove": f"{OOS}:removed",
    "restore": "!",
}
TABLE: dict[str, dict[str, str]] = {
    "normal": {
        **COMMON_ANNUNCIATED,
        "on": f"{U}:raised",
        "off": "=",
        "ack": "!",
        "reset": "!",
        "tick": "=",
    },
    "unack": {
        **COMMON_ANNUNCIATED,
        "on": "=",
        "off": f"{R}:cleared",
        "ack": f"{A}:acknowledged",
        "reset": "!",
        "tick": "=",
    },
    "acked": {
        **COMMON_ANNUNCIATED,
        "on": "=",
        "off": f"{N}:cleared",
        "ack": "=",
        "reset": "!",
        "tick": "=",
    },
    "rtn_unack": {
        **COMMON_ANNUNCIATED,
        "on": f"{U}:raised",
        "off": "=",
        "ack": f"{N}:acknowledged",
        "reset": "!",
        "tick": "=",
    },
    "latched_unack_cleared": {
        **COMMON_ANNUNCIATED,
        "on": f"{U}:raised",
        "off": "=",
        "ack": f"{A}:acknowledged",
        "reset": "!",
        "tick": "=",
    },
    "latched_acked_active": {
        **COMMON_ANNUNCIATED,
        "on": "=",
        "off": f"{A}:cleared",
        "ack": "=",
        "reset": "!",
        "tick": "=",
    },
    "latched_acked_cleared": {
        **COMMON_ANNUNCIATED,
        "on": f"{U}:raised",
        "off": "=",
        "ack": "=",
        "reset": f"{N}:reset",
        "tick": "=",
    },
    "shelved_active": {
        "on": "=",
        "off": f"{SH}:",
        "ack": "!",
        "shelve": "!",
        "shelve1": "!",
        "unshelve": f"{U}:unshelved,raised",
        "suppress": f"{SU}:suppressed",
        "unsuppress": "!",
        "remove": f"{OOS}:removed",
        "restore": "!",
        "reset": "!",
        "tick": f"{U}:unshelved,raised",
    },
    "shelved_clear": {
        "on": f"{SH}:",
        "off": "=",
        "ack": "!",
        "shelve": "!",
        "shelve1": "!",
        "unshelve": f"{N}:unshelved",
        "suppress": f"{SU}:suppressed",
        "unsuppress": "!",
        "remove": f"{OOS}:removed",
        "restore": "!",
        "reset": "!",
        "tick": f"{N}:unshelved",
    },
    "shelved_once_active": {
        "on": "=",
        "off": f"{N}:unshelved",
        "ack": "!",
        "shelve": "!",
        "shelve1": "!",
        "unshelve": f"{U}:unshelved,raised",
        "suppress": f"{SU}:suppressed",
        "unsuppress": "!",
        "remove": f"{OOS}:removed",
        "restore": "!",
        "reset": "!",
        "tick": "=",
    },
    "suppressed_active": {
        "on": "=",
        "off": f"{SU}:",
        "ack": "!",
        "shelve": "!",
        "shelve1": "!",
        "unshelve": "!",
        "suppress": "!",
        "unsuppress": f"{U}:unsuppressed,raised",
        "remove": f"{OOS}:removed",
        "restore": "!",
        "reset": "!",
        "tick": "=",
    },
    "suppressed_clear": {
        "on": f"{SU}:",
        "off": "=",
        "ack": "!",
        "shelve": "!",
        "shelve1": "!",
        "unshelve": "!",
        "suppress": "!",
        "unsuppress": f"{N}:unsuppressed",
        "remove": f"{OOS}:removed",
        "restore": "!",
        "reset": "!",
        "tick": "=",
    },
    "oos_active": {
        "on": "=",
        "off": f"{OOS}:",
        "ack": "!",
        "shelve": "!",
        "shelve1": "!",
        "unshelve": "!",
        "suppress": f"{OOS}:suppressed",
        "unsuppress": "!",
        "remove": "!",
        "restore": f"{U}:restored,raised",
        "reset": "!",
        "tick": "=",
    },
    "shelved_then_suppressed": {
        "on": "=",
        "off": f"{SU}:",
        "ack": "!",
        "shelve": "!",
        "shelve1": "!",
        "unshelve": f"{SU}:unshelved",
        "suppress": "!",
        "unsuppress": f"{SH}:unsuppressed",
        "remove": f"{OOS}:removed",
        "restore": "!",
        "reset": "!",
        "tick": f"{SU}:unshelved",
    },
}

CASES = [(start, op, TABLE[start][op]) for start in STARTS for op in OPS]


def test_table_covers_every_state_and_operation() -> None:
    assert {a.state for a in STARTS.values()} == set(AlarmState)
    assert all(set(row) == set(OPS) for row in TABLE.values())
    assert set(TABLE) == set(STARTS)


def _check_events(before: Alarm, after: Alarm, events: list[AlarmEvent]) -> None:
    validate(after)
    state = before.state
    for e in events:
        assert e.from_state is state
        assert (e.point, e.condition, e.priority) == (
            before.point,
            before.condition,
            before.priority,
        )
        state = e.to_state
    assert state is after.state


@pytest.mark.parametrize(("start", "op", "expected"), CASES, ids=[f"{s}-{o}" for s, o, _ in CASES])
def test_transition_table(start: str, op: str, expected: str) -> None:
    alarm = STARTS[start]
    validate(alarm)
    t = T0 + 100 * S
    if expected == "!":
        with pytest.raises(AlarmOperationError) as info:
            OPS[op](alarm, t)
        assert f"point 7 HH ({alarm.state})" in str(info.value)
        return
    after, events = OPS[op](alarm, t)
    _check_events(alarm, after, events)
    if expected == "=":
        assert after == alarm
        assert events == []
        return
    state, kinds = expected.split(":")
    assert after.state == state
    assert [str(e.kind) for e in events] == [k for k in kinds.split(",") if k]


def test_acknowledging_a_normal_alarm_says_there_is_nothing_to_acknowledge() -> None:
    with pytest.raises(AlarmOperationError, match="alarm is not active: nothing to acknowledge"):
        acknowledge(STARTS["normal"], "wang", None, T0)


def test_acknowledgement_records_who_when_and_comment() -> None:
    alarm, events = acknowledge(STARTS["unack"], "wang", "calling the site", T0 + 5 * S)
    assert (alarm.acked_by, alarm.acked_at_ns, alarm.ack_comment) == (
        "wang",
        T0 + 5 * S,
        "calling the site",
    )
    (e,) = events
    assert (e.kind, e.who, e.why, e.ts_ns, e.value) == (
        EventKind.ACKNOWLEDGED,
        "wang",
        "calling the site",
        T0 + 5 * S,
        42.0,
    )


def test_raise_records_time_and_value() -> None:
    alarm, (e,) = on_condition(STARTS["normal"], True, T0 + 9, 61.5)
    assert (alarm.raised_at_ns, alarm.value_at_raise, alarm.last_annunciated_ns) == (
        T0 + 9,
        61.5,
        T0 + 9,
    )
    assert (e.kind, e.from_state, e.to_state, e.value, e.who) == (
        EventKind.RAISED,
        AlarmState.NORMAL,
        AlarmState.UNACK,
        61.5,
        None,
    )


def test_shelving_longer_than_the_maximum_is_refused_with_both_durations() -> None:
    with pytest.raises(AlarmOperationError, match=r"duration 7200 s is outside .* ≤ 3600 s"):
        shelve(STARTS["unack"], "wang", "noisy", T0, duration_s=7200, max_s=3600)
    alarm, _ = shelve(STARTS["unack"], "wang", "noisy", T0, duration_s=3600, max_s=3600)
    assert alarm.shelving is not None and alarm.shelving.until_ns == T0 + 3600 * S


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "either a duration or one-shot"),
        ({"duration_s": 60, "one_shot": True}, "either a duration or one-shot"),
        ({"duration_s": 0}, "outside"),
        ({"duration_s": -5}, "outside"),
    ],
)
def test_shelve_needs_exactly_one_positive_duration_or_one_shot(
    kwargs: dict[str, float], message: str
) -> None:
    with pytest.raises(AlarmOperationError, match=message):
        shelve(STARTS["unack"], "wang", "noisy", T0, **kwargs)  # type: ignore[arg-type]


def test_shelve_without_a_reason_is_refused() -> None:
    with pytest.raises(AlarmOperationError, match="reason is required"):
        shelve(STARTS["unack"], "wang", "  ", T0, duration_s=60)


def test_timed_shelving_expires_exactly_at_its_end_and_re_raises_an_active_condition() -> None:
    alarm, _ = shelve(STARTS["unack"], "wang", "noisy", T0, duration_s=600)
    assert next_deadline_ns(alarm) == T0 + 600 * S
    still, events = tick(alarm, T0 + 600 * S - 1)
    assert still.state is AlarmState.SHELVED and events == []
    after, events = tick(alarm, T0 + 600 * S)
    assert [e.kind for e in events] == [EventKind.UNSHELVED, EventKind.RAISED]
    assert events[0].who is None and events[0].why == "shelving expired"
    assert after.state is AlarmState.UNACK and after.raised_at_ns == T0 + 600 * S
    assert after.shelving is None


def test_condition_cleared_while_shelved_returns_to_normal_when_shelving_expires() -> None:
    alarm, _ = shelve(STARTS["unack"], "wang", "noisy", T0, duration_s=600)
    alarm, events = on_condition(alarm, False, T0 + S, 1.0)
    assert events == [] and alarm.state is AlarmState.SHELVED
    alarm, events = tick(alarm, T0 + 601 * S)
    assert alarm.state is AlarmState.NORMAL
    assert [e.kind for e in events] == [EventKind.UNSHELVED]


def test_activations_while_shelved_are_not_annunciated() -> None:
    alarm = STARTS["shelved_clear"]
    for i in range(5):
        alarm, up = on_condition(alarm, True, T0 + i * S, 50.0)
        alarm, down = on_condition(alarm, False, T0 + i * S + 1, 1.0)
        assert up == [] and down == []
    assert alarm.state is AlarmState.SHELVED


def test_one_shot_shelving_set_while_clear_ends_after_the_next_activation_clears() -> None:
    alarm, _ = shelve(STARTS["normal"], "wang", "one more trip expected", T0, one_shot=True)
    assert alarm.shelving is not None and alarm.shelving.kind is ShelveKind.ONE_SHOT
    assert next_deadline_ns(alarm) is None
    alarm, events = on_condition(alarm, True, T0 + S, 50.0)
    assert events == [] and alarm.state is AlarmState.SHELVED
    alarm, events = tick(alarm, T0 + 10**6 * S)
    assert events == [] and alarm.state is AlarmState.SHELVED
    alarm, events = on_condition(alarm, False, T0 + 2 * S, 1.0)
    assert alarm.state is AlarmState.NORMAL
    assert [(e.kind, e.why) for e in events] == [
        (EventKind.UNSHELVED, "one-shot shelving ended: the condition cleared")
    ]
    alarm, events = on_condition(alarm, True, T0 + 3 * S, 50.0)
    assert alarm.state is AlarmState.UNACK and [e.kind for e in events] == [EventKind.RAISED]


def test_latched_alarm_stays_until_acknowledged_and_reset() -> None:
    alarm = _chain(_on, latching=True)
    alarm, events = on_condition(alarm, False, T0 + 5 * S, 1.0)
    assert alarm.state is AlarmState.UNACK and not alarm.active
    assert [(e.kind, e.to_state) for e in events] == [(EventKind.CLEARED, AlarmState.UNACK)]
    with pytest.raises(AlarmOperationError, match="acknowledge the alarm before resetting it"):
        reset(alarm, "wang", T0 + 6 * S)
    alarm, _ = acknowledge(alarm, "wang", None, T0 + 6 * S)
    assert alarm.state is AlarmState.ACKED
    alarm, events = reset(alarm, "wang", T0 + 7 * S)
    assert alarm.state is AlarmState.NORMAL
    assert [(e.kind, e.who) for e in events] == [(EventKind.RESET, "wang")]


def test_latched_alarm_cannot_be_reset_while_its_condition_is_active() -> None:
    with pytest.raises(AlarmOperationError, match="still active"):
        reset(STARTS["latched_acked_active"], "wang", T0)


def test_reset_of_a_non_latching_alarm_explains_why() -> None:
    with pytest.raises(AlarmOperationError, match="does not latch"):
        reset(STARTS["acked"], "wang", T0)


def test_unacknowledged_emergency_reannunciates_every_period() -> None:
    alarm, _ = on_condition(Alarm(3, Condition.HH, Priority.EMERGENCY), True, T0, 60.0)
    assert next_deadline_ns(alarm, realarm_s=300) == T0 + 300 * S
    same, events = tick(alarm, T0 + 299 * S, realarm_s=300)
    assert events == [] and same == alarm
    alarm, events = tick(alarm, T0 + 300 * S, realarm_s=300)
    assert [(e.kind, e.from_state, e.to_state) for e in events] == [
        (EventKind.REANNUNCIATED, AlarmState.UNACK, AlarmState.UNACK)
    ]
    assert alarm.last_annunciated_ns == T0 + 300 * S and alarm.raised_at_ns == T0
    _, events = tick(alarm, T0 + 599 * S, realarm_s=300)
    assert events == []
    _, events = tick(alarm, T0 + 600 * S, realarm_s=300)
    assert [e.kind for e in events] == [EventKind.REANNUNCIATED]


def test_late_tick_reannunciates_once_not_in_a_burst() -> None:
    alarm, _ = on_condition(Alarm(3, Condition.HH, Priority.EMERGENCY), True, T0, 60.0)
    alarm, events = tick(alarm, T0 + 3600 * S, realarm_s=300)
    assert len(events) == 1 and alarm.last_annunciated_ns == T0 + 3600 * S


def test_only_unacknowledged_priority_one_alarms_reannunciate() -> None:
    high, _ = on_condition(Alarm(3, Condition.HH, Priority.HIGH), True, T0, 60.0)
    assert tick(high, T0 + 3600 * S, realarm_s=300)[1] == []
    assert next_deadline_ns(high, realarm_s=300) is None
    emergency, _ = on_condition(Alarm(3, Condition.HH, Priority.EMERGENCY), True, T0, 60.0)
    acked, _ = acknowledge(emergency, "wang", None, T0 + S)
    assert tick(acked, T0 + 3600 * S, realarm_s=300)[1] == []


def test_repeated_condition_report_after_restart_raises_no_duplicate() -> None:
    alarm = from_row(json.loads(json.dumps(to_row(STARTS["unack"]))))
    same, events = on_condition(alarm, True, T0 + 50 * S, 44.0)
    assert events == [] and same == alarm


@pytest.mark.parametrize("name", list(STARTS))
def test_row_round_trip_restores_the_alarm_exactly(name: str) -> None:
    alarm = STARTS[name]
    row = json.loads(json.dumps(to_row(alarm), allow_nan=False))
    restored = from_row(row)
    assert to_row(restored) == to_row(alarm)
    assert restored.state is alarm.state and restored.shelving == alarm.shelving


def test_from_row_rejects_an_impossible_state_naming_it() -> None:
    row = to_row(STARTS["normal"])
    row["state"] = "acked"
    with pytest.raises(ValueError, match="point 7 is invalid: acked without a raise time"):
        from_row(row)
    row = to_row(STARTS["normal"])
    del row["priority"]
    with pytest.raises(ValueError, match="lacks priority"):
        from_row(row)
    row = to_row(STARTS["normal"])
    row["condition"] = "HHH"
    with pytest.raises(ValueError, match="HHH"):
        from_row(row)


OP_NAMES = sorted(OPS)


@settings(max_examples=300, deadline=None)
@given(
    latching=st.booleans(),
    priority=st.sampled_from(list(Priority)),
    steps=st.lists(
        st.tuples(st.sampled_from(OP_NAMES), st.integers(0, 900 * S)), min_size=1, max_size=40
    ),
)
def test_random_operation_sequences_never_reach_an_invalid_state(
    latching: bool, priority: Priority, steps: list[tuple[str, int]]
) -> None:
    alarm = Alarm(1, Condition.LL, priority, latching=latching)
    t = T0
    for name, dt in steps:
        t += dt
        try:
            after, events = OPS[name](alarm, t)
        except AlarmOperationError:
            continue
        _check_events(alarm, after, events)
        row = to_row(after)
        assert to_row(from_row(json.loads(json.dumps(row, allow_nan=False)))) == row
        if after.state in (AlarmState.UNACK, AlarmState.ACKED):
            # Acknowledging twice is the same as once: no second event, no change.
            once, _ = acknowledge(after, "a", None, t)
            twice, again = acknowledge(once, "b", "x", t + 1)
            assert twice == once and again == []
        if name == "ack":
            assert after.state in (AlarmState.ACKED, AlarmState.NORMAL)
        alarm = after
