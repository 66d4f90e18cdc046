"""The ISA-18.2 / IEC 62682 alarm state machine for one (point, condition): pure functions.

Each operation takes an immutable `Alarm` and returns the new one with the `AlarmEvent`s it caused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from alarms.model import AlarmEvent, AlarmState, Condition, EventKind, Priority

_NS_PER_S = 1_000_000_000

# The overlays hide the annunciation state; the most restrictive one is shown.
_OVERLAY_PRECEDENCE = (AlarmState.OUT_OF_SERVICE, AlarmState.SUPPRESSED, AlarmState.SHELVED)
ANNUNCIATION_STATES = frozenset(
    {AlarmState.NORMAL, AlarmState.UNACK, AlarmState.ACKED, AlarmState.RTN_UNACK}
)


@dataclass(frozen=True, slots=True)
class StateSettings:
    """Operating settings of the state machine, as data.

    Neither ISA-18.2 nor EEMUA 191 gives numbers for these: ISA-18.2 (2016) §10.4 asks for
    shelving to be time-limited and re-alarming to be designed per site. The defaults are
    design choices [D]; sites override them in the configuration.
    """

    max_shelve_s: float = 8 * 3600.0  # [D] one shift
    realarm_s: float = 10 * 60.0  # [D] matches the 10-minute window of the alarm-rate KPIs
    realarm_priorities: frozenset[Priority] = frozenset({Priority.EMERGENCY})


DEFAULT_SETTINGS = StateSettings()


class ShelveKind(StrEnum):
    TIMED = "timed"  # ends at `until_ns`
    ONE_SHOT = "one_shot"  # ends when the condition next clears


@dataclass(frozen=True, slots=True)
class Shelving:
    kind: ShelveKind
    by: str
    reason: str
    since_ns: int
    until_ns: int | None  # None for one-shot


@dataclass(frozen=True, slots=True)
class OutOfService:
    by: str
    reason: str
    since_ns: int


@dataclass(frozen=True, slots=True)
class Alarm:
    """One alarm instance (ISA-18.2): an annunciation state plus the overlays that hide it.

    `state` is what the operator sees. While any overlay (out of service, suppressed, shelved)
    is set, `state` is the most restrictive overlay and the condition is only tracked in
    `active`/`value`; removing the last overlay re-evaluates it.
    """

    point: int
    condition: Condition
    priority: Priority
    latching: bool = False
    state: AlarmState = AlarmState.NORMAL
    active: bool = False  # the condition as last reported by the evaluator
    value: float = math.nan  # the value of the last condition change
    condition_ts_ns: int | None = None
    raised_at_ns: int | None = None
    value_at_raise: float = math.nan
    last_annunciated_ns: int | None = None
    acked_by: str | None = None
    acked_at_ns: int | None = None
    ack_comment: str | None = None
    shelving: Shelving | None = None
    suppressed_reason: str | None = None
    suppressed_at_ns: int | None = None
    out_of_service: OutOfService | None = None

    @property
    def overlaid(self) -> bool:
        return (
            self.shelving is not None
            or self.suppressed_reason is not None
            or self.out_of_service is not None
        )

    @property
    def label(self) -> str:
        return f"point {self.point} {self.condition.name}"


class AlarmOperationError(ValueError):
    """An operation that is not valid in the alarm's present state; the message is for operators."""

    def __init__(self, alarm: Alarm, operation: str, message: str) -> None:
        super().__init__(f"cannot {operation} alarm {alarm.label} ({alarm.state}): {message}")
        self.alarm = alarm
        self.operation = operation


def _event(
    alarm: Alarm,
    kind: EventKind,
    to: Alarm,
    ts_ns: int,
    who: str | None = None,
    why: str | None = None,
    detail: dict[str, Any] | None = None,
) -> AlarmEvent:
    return AlarmEvent(
        point=alarm.point,
        condition=alarm.condition,
        kind=kind,
        from_state=alarm.state,
        to_state=to.state,
        ts_ns=ts_ns,
        value=to.value,
        priority=alarm.priority,
        who=who,
        why=why,
        detail=detail or {},
    )


def _overlay_state(alarm: Alarm) -> AlarmState | None:
    present = {
        AlarmState.OUT_OF_SERVICE: alarm.out_of_service is not None,
        AlarmState.SUPPRESSED: alarm.suppressed_reason is not None,
        AlarmState.SHELVED: alarm.shelving is not None,
    }
    return next((s for s in _OVERLAY_PRECEDENCE if present[s]), None)


def _raise(alarm: Alarm, now_ns: int) -> Alarm:
    return replace(
        alarm,
        state=AlarmState.UNACK,
        raised_at_ns=now_ns,
        value_at_raise=alarm.value,
        last_annunciated_ns=now_ns,
        acked_by=None,
        acked_at_ns=None,
        ack_comment=None,
    )


def _normal(alarm: Alarm) -> Alarm:
    return replace(
        alarm,
        state=AlarmState.NORMAL,
        raised_at_ns=None,
        value_at_raise=math.nan,
        last_annunciated_ns=None,
        acked_by=None,
        acked_at_ns=None,
        ack_comment=None,
    )


def _lift_overlay(
    alarm: Alarm, lifted: Alarm, kind: EventKind, now_ns: int, who: str | None, why: str | None
) -> tuple[Alarm, list[AlarmEvent]]:
    """Show the next overlay, or re-evaluate the present condition when none is left."""
    overlay = _overlay_state(lifted)
    if overlay is not None:
        lifted = replace(lifted, state=overlay)
        return lifted, [_event(alarm, kind, lifted, now_ns, who, why)]
    # The annunciation state from before the overlay is not restored: the operator is shown
    # the condition as it is now (ISA-18.2 re-evaluation on unshelve / return to service).
    cleared = _normal(lifted)
    events = [_event(alarm, kind, cleared, now_ns, who, why)]
    if not cleared.active:
        return cleared, events
    raised = _raise(cleared, now_ns)
    events.append(_event(cleared, EventKind.RAISED, raised, now_ns, None, f"{kind} while active"))
    return raised, events


def on_condition(
    alarm: Alarm, active: bool, ts_ns: int, value: float
) -> tuple[Alarm, list[AlarmEvent]]:
    """Apply the evaluator's verdict; a repeated verdict (e.g. after a restart) changes nothing."""
    if active == alarm.active:
        return alarm, []
    tracked = replace(alarm, active=active, value=value, condition_ts_ns=ts_ns)
    if alarm.overlaid:
        if not active and alarm.shelving is not None and alarm.shelving.kind is ShelveKind.ONE_SHOT:
            return _lift_overlay(
                alarm,
                replace(tracked, shelving=None),
                EventKind.UNSHELVED,
                ts_ns,
                None,
                "one-shot shelving ended: the condition cleared",
            )
        # Tracked, not annunciated: returning from the overlay re-evaluates `active`.
        return replace(tracked, state=alarm.state), []
    if active:
        # Also a latched alarm still showing: a new activation needs a new acknowledgement.
        new = _raise(tracked, ts_ns)
        return new, [_event(alarm, EventKind.RAISED, new, ts_ns)]
    if alarm.latching:
        why = "latched: reset it to return to normal"
        return tracked, [_event(alarm, EventKind.CLEARED, tracked, ts_ns, why=why)]
    if alarm.state is AlarmState.UNACK:
        new = replace(tracked, state=AlarmState.RTN_UNACK)
    else:
        new = _normal(tracked)
    return new, [_event(alarm, EventKind.CLEARED, new, ts_ns)]


def acknowledge(
    alarm: Alarm, who: str, comment: str | None, now_ns: int
) -> tuple[Alarm, list[AlarmEvent]]:
    """确认. Acknowledging an acknowledged alarm is a no-op: bulk and repeated clicks are safe."""
    if alarm.state is AlarmState.ACKED:
        return alarm, []
    if alarm.state is AlarmState.NORMAL:
        raise AlarmOperationError(
            alarm, "acknowledge", "alarm is not active: nothing to acknowledge"
        )
    if alarm.state not in ANNUNCIATION_STATES:
        raise AlarmOperationError(
            alarm,
            "acknowledge",
            f"alarm is {alarm.state.replace('_', ' ')}: nothing to acknowledge",
        )
    acked = replace(alarm, acked_by=who, acked_at_ns=now_ns, ack_comment=comment)
    if alarm.state is AlarmState.RTN_UNACK:
        new = _normal(acked)
    else:
        new = replace(acked, state=AlarmState.ACKED)
    return new, [_event(alarm, EventKind.ACKNOWLEDGED, new, now_ns, who, comment)]


def shelve(
    alarm: Alarm,
    who: str,
    reason: str,
    now_ns: int,
    *,
    duration_s: float | None = None,
    one_shot: bool = False,
    max_s: float = DEFAULT_SETTINGS.max_shelve_s,
) -> tuple[Alarm, list[AlarmEvent]]:
    """搁置: timed (`duration_s` ≤ `max_s`) or one-shot (until the condition next clears)."""
    op = "shelve"
    if not reason.strip():
        raise AlarmOperationError(alarm, op, "a reason is required to shelve an alarm")
    if (duration_s is None) == (not one_shot):
        raise AlarmOperationError(alarm, op, "give either a duration or one-shot, not both")
    if duration_s is not None and not 0 < duration_s <= max_s:
        raise AlarmOperationError(
            alarm, op, f"duration {duration_s:g} s is outside 0 < duration ≤ {max_s:g} s"
        )
    if alarm.shelving is not None:
        raise AlarmOperationError(alarm, op, "alarm is already shelved: unshelve it first")
    if alarm.state not in ANNUNCIATION_STATES:
        raise AlarmOperationError(
            alarm, op, f"alarm is {alarm.state.replace('_', ' ')}: shelving has no effect"
        )
    if one_shot:
        shelving = Shelving(ShelveKind.ONE_SHOT, who, reason, now_ns, None)
    else:
        assert duration_s is not None
        until = now_ns + round(duration_s * _NS_PER_S)
        shelving = Shelving(ShelveKind.TIMED, who, reason, now_ns, until)
    new = replace(alarm, shelving=shelving, state=AlarmState.SHELVED)
    detail = {"kind": str(shelving.kind), "until_ns": shelving.until_ns}
    return new, [_event(alarm, EventKind.SHELVED, new, now_ns, who, reason, detail)]


def unshelve(alarm: Alarm, who: str, now_ns: int) -> tuple[Alarm, list[AlarmEvent]]:
    if alarm.shelving is None:
        raise AlarmOperationError(alarm, "unshelve", "alarm is not shelved")
    return _lift_overlay(
        alarm, replace(alarm, shelving=None), EventKind.UNSHELVED, now_ns, who, "unshelved"
    )


def suppress(
    alarm: Alarm, reason: str, now_ns: int, who: str | None = None
) -> tuple[Alarm, list[AlarmEvent]]:
    """By design: unit in maintenance or stopped (set by `who`), first-out leader active."""
    if not reason.strip():
        raise AlarmOperationError(alarm, "suppress", "a reason is required")
    if alarm.suppressed_reason is not None:
        raise AlarmOperationError(
            alarm, "suppress", f"alarm is already suppressed ({alarm.suppressed_reason})"
        )
    tmp = replace(alarm, suppressed_reason=reason, suppressed_at_ns=now_ns)
    new = replace(tmp, state=_overlay_state(tmp) or AlarmState.SUPPRESSED)
    return new, [_event(alarm, EventKind.SUPPRESSED, new, now_ns, who, reason)]


def unsuppress(
    alarm: Alarm, now_ns: int, who: str | None = None, why: str | None = None
) -> tuple[Alarm, list[AlarmEvent]]:
    """The end of a suppression by design; the present condition is re-evaluated."""
    if alarm.suppressed_reason is None:
        raise AlarmOperationError(alarm, "unsuppress", "alarm is not suppressed")
    lifted = replace(alarm, suppressed_reason=None, suppressed_at_ns=None)
    why = why or f"end of: {alarm.suppressed_reason}"
    return _lift_overlay(alarm, lifted, EventKind.UNSUPPRESSED, now_ns, who, why)


def remove_from_service(
    alarm: Alarm, who: str, reason: str, now_ns: int
) -> tuple[Alarm, list[AlarmEvent]]:
    """停用 (e.g. the instrument is being repaired)."""
    op = "remove from service"
    if not reason.strip():
        raise AlarmOperationError(alarm, op, "a reason is required")
    if alarm.out_of_service is not None:
        raise AlarmOperationError(alarm, op, "alarm is already out of service")
    new = replace(
        alarm, out_of_service=OutOfService(who, reason, now_ns), state=AlarmState.OUT_OF_SERVICE
    )
    return new, [_event(alarm, EventKind.REMOVED, new, now_ns, who, reason)]


def return_to_service(alarm: Alarm, who: str, now_ns: int) -> tuple[Alarm, list[AlarmEvent]]:
    if alarm.out_of_service is None:
        raise AlarmOperationError(alarm, "return to service", "alarm is not out of service")
    lifted = replace(alarm, out_of_service=None)
    return _lift_overlay(alarm, lifted, EventKind.RESTORED, now_ns, who, "returned to service")


def reset(alarm: Alarm, who: str, now_ns: int) -> tuple[Alarm, list[AlarmEvent]]:
    """复位 a latched alarm: acknowledged and its condition cleared."""
    op = "reset"
    if not alarm.latching:
        raise AlarmOperationError(alarm, op, "alarm does not latch: nothing to reset")
    if alarm.state is AlarmState.NORMAL:
        raise AlarmOperationError(alarm, op, "alarm is not active: nothing to reset")
    if alarm.state not in ANNUNCIATION_STATES:
        raise AlarmOperationError(
            alarm, op, f"alarm is {alarm.state.replace('_', ' ')}: nothing to reset"
        )
    if alarm.active:
        raise AlarmOperationError(alarm, op, "the condition is still active: reset once it clears")
    if alarm.state is AlarmState.UNACK:
        raise AlarmOperationError(alarm, op, "acknowledge the alarm before resetting it")
    new = _normal(alarm)
    return new, [_event(alarm, EventKind.RESET, new, now_ns, who, "reset")]


def tick(
    alarm: Alarm,
    now_ns: int,
    realarm_s: float = DEFAULT_SETTINGS.realarm_s,
    realarm_priorities: frozenset[Priority] = DEFAULT_SETTINGS.realarm_priorities,
) -> tuple[Alarm, list[AlarmEvent]]:
    """The passage of time: timed shelving expires, unacknowledged emergencies ring again."""
    events: list[AlarmEvent] = []
    shelving = alarm.shelving
    if shelving is not None and shelving.until_ns is not None and now_ns >= shelving.until_ns:
        alarm, events = _lift_overlay(
            alarm,
            replace(alarm, shelving=None),
            EventKind.UNSHELVED,
            now_ns,
            None,
            "shelving expired",
        )
    if (
        alarm.state is AlarmState.UNACK
        and alarm.priority in realarm_priorities
        and alarm.last_annunciated_ns is not None
        and now_ns - alarm.last_annunciated_ns >= realarm_s * _NS_PER_S
    ):
        # Counted from now, not from the last deadline: a late tick rings once, not in a burst.
        new = replace(alarm, last_annunciated_ns=now_ns)
        why = f"unacknowledged for {(now_ns - (alarm.raised_at_ns or now_ns)) / _NS_PER_S:.0f} s"
        events.append(_event(alarm, EventKind.REANNUNCIATED, new, now_ns, None, why))
        alarm = new
    return alarm, events


def next_deadline_ns(
    alarm: Alarm,
    realarm_s: float = DEFAULT_SETTINGS.realarm_s,
    realarm_priorities: frozenset[Priority] = DEFAULT_SETTINGS.realarm_priorities,
) -> int | None:
    """When `tick` will next change this alarm, so the engine can sleep until then."""
    deadlines: list[int] = []
    if alarm.shelving is not None and alarm.shelving.until_ns is not None:
        deadlines.append(alarm.shelving.until_ns)
    if (
        alarm.state is AlarmState.UNACK
        and alarm.priority in realarm_priorities
        and alarm.last_annunciated_ns is not None
    ):
        deadlines.append(alarm.last_annunciated_ns + math.ceil(realarm_s * _NS_PER_S))
    return min(deadlines, default=None)


def validate(alarm: Alarm) -> None:
    """Raise ValueError if the record is one the state machine can never produce."""
    overlay = _overlay_state(alarm)
    if overlay is not None:
        _require(alarm.state is overlay, f"state {alarm.state} while {overlay} is set")
        return
    _require(alarm.state in ANNUNCIATION_STATES, f"state {alarm.state} without its overlay")
    if alarm.state is AlarmState.NORMAL:
        _require(not alarm.active, "normal with an active condition")
        _require(alarm.raised_at_ns is None and alarm.acked_by is None, "normal with raise data")
        return
    _require(
        alarm.raised_at_ns is not None and alarm.last_annunciated_ns is not None,
        f"{alarm.state} without a raise time",
    )
    if alarm.state is AlarmState.RTN_UNACK:
        _require(not alarm.active and not alarm.latching, "rtn_unack while active or latching")
    elif not alarm.latching:
        _require(alarm.active, f"{alarm.state} without an active condition")
    acked = alarm.state is AlarmState.ACKED
    _require(
        acked == (alarm.acked_by is not None), f"{alarm.state} with ack data {alarm.acked_by!r}"
    )


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _nan_to_none(x: float) -> float | None:
    return None if math.isnan(x) else x


def _none_to_nan(x: Any) -> float:
    return math.nan if x is None else float(x)


def to_row(alarm: Alarm) -> dict[str, Any]:
    """A flat dict of JSON-ready scalars (NaN as None), one column each, for the `alarms` table."""
    sh, oos = alarm.shelving, alarm.out_of_service
    return {
        "point": alarm.point,
        "condition": alarm.condition.name,
        "priority": int(alarm.priority),
        "latching": alarm.latching,
        "state": str(alarm.state),
        "active": alarm.active,
        "value": _nan_to_none(alarm.value),
        "condition_ts_ns": alarm.condition_ts_ns,
        "raised_at_ns": alarm.raised_at_ns,
        "value_at_raise": _nan_to_none(alarm.value_at_raise),
        "last_annunciated_ns": alarm.last_annunciated_ns,
        "acked_by": alarm.acked_by,
        "acked_at_ns": alarm.acked_at_ns,
        "ack_comment": alarm.ack_comment,
        "shelve_kind": None if sh is None else str(sh.kind),
        "shelved_by": None if sh is None else sh.by,
        "shelve_reason": None if sh is None else sh.reason,
        "shelved_at_ns": None if sh is None else sh.since_ns,
        "shelved_until_ns": None if sh is None else sh.until_ns,
        "suppressed_reason": alarm.suppressed_reason,
        "suppressed_at_ns": alarm.suppressed_at_ns,
        "oos_by": None if oos is None else oos.by,
        "oos_reason": None if oos is None else oos.reason,
        "oos_at_ns": None if oos is None else oos.since_ns,
    }


ROW_COLUMNS = tuple(to_row(Alarm(0, Condition.HH, Priority.LOW)))


def from_row(row: dict[str, Any]) -> Alarm:
    """Restore an `Alarm` saved by `to_row`; a malformed row raises ValueError naming the field."""
    missing = [c for c in ROW_COLUMNS if c not in row]
    if missing:
        raise ValueError(f"alarm row lacks {', '.join(missing)}")
    try:
        shelving = None
        if row["shelve_kind"] is not None:
            until = row["shelved_until_ns"]
            shelving = Shelving(
                ShelveKind(row["shelve_kind"]),
                str(row["shelved_by"]),
                str(row["shelve_reason"]),
                int(row["shelved_at_ns"]),
                None if until is None else int(until),
            )
        oos = None
        if row["oos_by"] is not None:
            oos = OutOfService(str(row["oos_by"]), str(row["oos_reason"]), int(row["oos_at_ns"]))
        alarm = Alarm(
            point=int(row["point"]),
            condition=Condition[row["condition"]],
            priority=Priority(int(row["priority"])),
            latching=bool(row["latching"]),
            state=AlarmState(row["state"]),
            active=bool(row["active"]),
            value=_none_to_nan(row["value"]),
            condition_ts_ns=_opt_int(row["condition_ts_ns"]),
            raised_at_ns=_opt_int(row["raised_at_ns"]),
            value_at_raise=_none_to_nan(row["value_at_raise"]),
            last_annunciated_ns=_opt_int(row["last_annunciated_ns"]),
            acked_by=row["acked_by"],
            acked_at_ns=_opt_int(row["acked_at_ns"]),
            ack_comment=row["ack_comment"],
            shelving=shelving,
            suppressed_reason=row["suppressed_reason"],
            suppressed_at_ns=_opt_int(row["suppressed_at_ns"]),
            out_of_service=oos,
        )
        validate(alarm)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"alarm row for point {row.get('point')!r} is invalid: {exc}") from exc
    return alarm


def _opt_int(x: Any) -> int | None:
    return None if x is None else int(x)
