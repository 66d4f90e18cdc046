"""The alarm vocabulary shared by the evaluator, the state machine, the engine and the KPIs.

A *condition* is what the evaluator decides from samples (a limit exceeded, bad quality, a
stale point…); an *alarm* is the ISA-18.2 / IEC 62682 lifecycle an operator sees for one
(point, condition) pair.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any


class Condition(IntEnum):
    """What can be wrong with one point (the int is the column index in evaluator arrays)."""

    HH = 0  # high-high limit; for gas detectors the GB/T 50493 二级 alarm
    H = 1  # high limit; for gas detectors the 一级 alarm
    L = 2
    LL = 3
    ROC = 4  # rate of change over a window
    BAD_QUALITY = 5  # COMM_FAIL or BAD for longer than T
    STALE = 6  # no sample for k × period
    STUCK = 7  # max − min < ε over a window (flat-line)
    OUT_OF_RANGE = 8  # outside the instrument range
    FORECAST = 9  # a linear fit predicts crossing H or HH within T (early warning)


N_CONDITIONS = len(Condition)


class AlarmClass(StrEnum):
    PROCESS = "process"
    GAS = "gas"
    QUALITY = "quality"
    VIDEO = "video"
    SYSTEM = "system"


class Priority(IntEnum):
    EMERGENCY = 1
    HIGH = 2
    MEDIUM = 3
    LOW = 4


class AlarmState(StrEnum):
    """ISA-18.2 alarm states."""

    NORMAL = "normal"
    UNACK = "unack"  # active, not acknowledged
    ACKED = "acked"  # active, acknowledged
    RTN_UNACK = "rtn_unack"  # returned to normal, not acknowledged
    SHELVED = "shelved"
    SUPPRESSED = "suppressed"  # suppressed by design (maintenance, unit stopped, first-out)
    OUT_OF_SERVICE = "out_of_service"


@dataclass(frozen=True, slots=True)
class ConditionChange:
    """The evaluator's output: a condition of a point became active or cleared at `ts_ns`."""

    point: int
    condition: Condition
    active: bool
    ts_ns: int
    value: float  # the value that decided it (NaN for quality conditions without one)
    # For FORECAST: the predicted crossing time (ns) and which limit ("H" or "HH").
    detail: dict[str, Any] = field(default_factory=dict)


class EventKind(StrEnum):
    RAISED = "raised"  # condition became active (annunciated)
    CLEARED = "cleared"  # condition returned to normal
    ACKNOWLEDGED = "acknowledged"
    SHELVED = "shelved"
    UNSHELVED = "unshelved"  # by an operator, or when the shelving expired
    SUPPRESSED = "suppressed"
    UNSUPPRESSED = "unsuppressed"
    REMOVED = "removed"  # from service
    RESTORED = "restored"  # to service
    REANNUNCIATED = "reannunciated"  # an unacknowledged priority-1 alarm rings again
    RESET = "reset"  # a latched alarm reset by an operator
    # Unacknowledged past its time: notified up the duty roster (alarms.escalation); the state
    # stays what it was, the notice is part of the alarm's record for the post-event review.
    ESCALATED = "escalated"


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """One transition of one alarm: who, when, why and the value."""

    point: int
    condition: Condition
    kind: EventKind
    from_state: AlarmState
    to_state: AlarmState
    ts_ns: int
    value: float
    priority: Priority
    who: str | None = None  # None for the system
    why: str | None = None  # comment, reason
    detail: dict[str, Any] = field(default_factory=dict)
