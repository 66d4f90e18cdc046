"""Escalation of unacknowledged alarms up the duty roster (值班员 → 值班长 → 指挥长): pure.

Alarms, what was already sent and `now_ns` in; the notifications due and the new sent state out.
The policy (timings per priority, the roster levels) is data; alarms.notify delivers the result.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from alarms.model import AlarmState, Condition, Priority
from alarms.state import Alarm

_NS = 1_000_000_000
# Duty rosters and their recipients read Beijing time, in both languages of a notice (the board
# beside it shows the same clock in China); the JSON form carries UTC.
_CST = timezone(timedelta(hours=8), "CST")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RosterLevel(_Model):
    """One level of the duty roster (值班表): a role, not a person (the channels map roles to
    addresses and phone numbers)."""

    role: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    zh: Annotated[str, Field(min_length=1)]
    en: Annotated[str, Field(min_length=1)]


class Timing(_Model):
    """T1: unacknowledged this long after it was raised, the alarm goes one level up;
    T2: while still unacknowledged, it goes one more level up (or repeats at the top) this often."""

    t1_s: Annotated[float, Field(gt=0)]
    t2_s: Annotated[float, Field(gt=0)]


class EscalationPolicy(_Model):
    """Escalation as data: `levels[0]` is who watches the console (the alarm is already in front
    of them); escalation notifies `levels[1]`, then `levels[2]`… and stays at the last level.

    A priority missing from `timing` is never escalated. No standard gives these numbers: the
    defaults are design choices [D] — minutes for emergencies, tens of minutes for medium
    priority, and low-priority alarms stay with the duty officer. Sites override them.
    """

    levels: Annotated[list[RosterLevel], Field(min_length=2)] = [
        RosterLevel(role="duty_officer", zh="值班员", en="duty officer"),  # [D]
        RosterLevel(role="shift_leader", zh="值班长", en="shift leader"),  # [D]
        # The role that directs a response (the console's 指挥长), so that the notice reaches a
        # console at the top level too.
        RosterLevel(role="leader", zh="指挥长", en="leader"),  # [D]
    ]
    timing: dict[Priority, Timing] = {
        Priority.EMERGENCY: Timing(t1_s=2 * 60, t2_s=5 * 60),  # [D]
        Priority.HIGH: Timing(t1_s=5 * 60, t2_s=10 * 60),  # [D]
        Priority.MEDIUM: Timing(t1_s=15 * 60, t2_s=30 * 60),  # [D]
    }

    @field_validator("timing", mode="before")
    @classmethod
    def _priority_keys(cls, value: Any) -> Any:
        # TOML tables have string keys: accept "1" and "emergency" as well as 1.
        if not isinstance(value, Mapping):
            return value
        out: dict[Any, Any] = {}
        for key, timing in value.items():
            if isinstance(key, str) and not key.isdigit():
                try:
                    key = Priority[key.upper()]
                except KeyError:
                    names = ", ".join(p.name.lower() for p in Priority)
                    raise ValueError(f"unknown priority {key!r} (use 1..4 or {names})") from None
            elif isinstance(key, str):
                key = int(key)
            out[key] = timing
        return out

    @model_validator(mode="after")
    def _unique_roles(self) -> EscalationPolicy:
        roles = [level.role for level in self.levels]
        twice = sorted({r for r in roles if roles.count(r) > 1})
        if twice:
            raise ValueError(f"roster role {', '.join(twice)} appears more than once")
        return self


DEFAULT_POLICY = EscalationPolicy()


@dataclass(frozen=True, slots=True)
class EscalationState:
    """What was sent for one raise of one alarm: the schedule step and roster level reached."""

    raised_at_ns: int  # a new raise (new value) starts the escalation afresh
    attempt: int  # the schedule step last sent: 1 at T1, 2 at T1 + T2, …
    level: int  # index into the policy's levels
    sent_ns: int


@dataclass(frozen=True, slots=True)
class Notification:
    """One message to one roster role about one unacknowledged alarm."""

    alarm_id: int
    point: int
    point_name: str
    condition: Condition
    priority: Priority
    level: int
    role: str
    attempt: int  # the schedule step; a step skipped by a late scheduler is not sent again
    raised_at_ns: int
    ts_ns: int  # when it was decided
    text_zh: str
    text_en: str

    @property
    def key(self) -> str:
        """The same for every delivery try of this notification, so receivers can de-duplicate."""
        return f"{self.alarm_id}-{self.raised_at_ns}-{self.attempt}"

    @property
    def text(self) -> str:
        return f"{self.text_zh}\n{self.text_en}"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the body of webhooks and WebSocket messages."""
        return {
            "id": self.key,
            "alarm": self.alarm_id,
            "point": self.point,
            "point_name": self.point_name,
            "condition": self.condition.name,
            "priority": int(self.priority),
            "level": self.level,
            "role": self.role,
            "attempt": self.attempt,
            "raised_at": _iso(self.raised_at_ns),
            "ts": _iso(self.ts_ns),
            "text_zh": self.text_zh,
            "text_en": self.text_en,
        }


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / _NS, UTC).isoformat(timespec="milliseconds")


_CONDITION_WORDS: dict[Condition, tuple[str, str]] = {
    Condition.HH: ("高高报警", "high-high alarm"),
    Condition.H: ("高报警", "high alarm"),
    Condition.L: ("低报警", "low alarm"),
    Condition.LL: ("低低报警", "low-low alarm"),
    Condition.ROC: ("变化率报警", "rate-of-change alarm"),
    Condition.BAD_QUALITY: ("数据质量异常", "bad data quality"),
    Condition.STALE: ("数据中断", "no data"),
    Condition.STUCK: ("数值恒定", "value stuck"),
    Condition.OUT_OF_RANGE: ("超出量程", "outside the instrument range"),
    Condition.FORECAST: ("趋势预警", "forecast to cross a limit"),
}
# A gas detector's H and HH are GB/T 50493-2019's 一级 and 二级 alarms (as the console names them).
_GAS_WORDS: dict[Condition, tuple[str, str]] = {
    Condition.H: ("一级报警", "level 1 gas alarm"),
    Condition.HH: ("二级报警", "level 2 gas alarm"),
}
_PRIORITY_WORDS: dict[Priority, tuple[str, str]] = {
    Priority.EMERGENCY: ("紧急", "emergency"),
    Priority.HIGH: ("高", "high"),
    Priority.MEDIUM: ("中", "medium"),
    Priority.LOW: ("低", "low"),
}


def _seconds_ns(seconds: float) -> int:
    return math.ceil(seconds * _NS)


def _step_due_ns(raised_at_ns: int, timing: Timing, step: int) -> int:
    """When schedule step `step` (1-based) falls due; anchored at the raise, so no drift."""
    return raised_at_ns + _seconds_ns(timing.t1_s) + (step - 1) * _seconds_ns(timing.t2_s)


def _escalating(alarm: Alarm, policy: EscalationPolicy) -> tuple[Timing, int] | None:
    """The alarm's timing and raise time while it escalates, else None."""
    timing = policy.timing.get(alarm.priority)
    if alarm.state is not AlarmState.UNACK or alarm.raised_at_ns is None or timing is None:
        return None
    return timing, alarm.raised_at_ns


def _current(state: EscalationState | None, raised_at_ns: int) -> EscalationState | None:
    """The sent state if it belongs to this raise of the alarm (a new raise starts afresh)."""
    return state if state is not None and state.raised_at_ns == raised_at_ns else None


def _alarm_due_ns(state: EscalationState | None, timing: Timing, raised_at_ns: int) -> int:
    return _step_due_ns(raised_at_ns, timing, (state.attempt if state else 0) + 1)


def due_notifications(
    alarms: Iterable[tuple[int, Alarm]],
    sent: Mapping[int, EscalationState],
    policy: EscalationPolicy,
    now_ns: int,
    point_names: Mapping[int, str] | None = None,
    is_gas: Callable[[int], bool] | None = None,
) -> tuple[list[Notification], dict[int, EscalationState]]:
    """The notifications due at `now_ns` and the sent state to pass next time. The H and HH of
    a point that `is_gas` (a gas detector) are named as GB/T 50493's 一级 and 二级 alarms; it is
    asked only about the alarms with a notice due.

    `alarms` are (alarm id, alarm) pairs; only unacknowledged active alarms (UNACK) escalate: an
    acknowledged, cleared, shelved, suppressed or out-of-service alarm drops out of the returned
    state, and a new raise starts again at T1. Step k falls due at raised + T1 + (k − 1)·T2 and
    goes to `levels[min(k, last)]`. A call later than several steps sends one notification, for
    the latest step due, to its level — never a burst of the missed repeats.
    """
    names = point_names or {}
    notes: list[Notification] = []
    new_sent: dict[int, EscalationState] = {}
    top = len(policy.levels) - 1
    for alarm_id, alarm in alarms:
        escalating = _escalating(alarm, policy)
        if escalating is None:
            continue
        timing, raised = escalating
        state = _current(sent.get(alarm_id), raised)
        if now_ns < _alarm_due_ns(state, timing, raised):
            if state is not None:
                new_sent[alarm_id] = state
            continue
        step = (now_ns - raised - _seconds_ns(timing.t1_s)) // _seconds_ns(timing.t2_s) + 1
        level = min(step, top)
        gas = is_gas is not None and is_gas(alarm.point)
        new_sent[alarm_id] = EscalationState(raised, step, level, now_ns)
        notes.append(notice(alarm_id, alarm, new_sent[alarm_id], policy, names, gas))
    return notes, new_sent


def next_due_ns(
    alarms: Iterable[tuple[int, Alarm]],
    sent: Mapping[int, EscalationState],
    policy: EscalationPolicy,
) -> int | None:
    """When `due_notifications` will next have something to send, so a scheduler can sleep
    (None: nothing is escalating). Call again whenever an alarm changes."""
    deadlines: list[int] = []
    for alarm_id, alarm in alarms:
        escalating = _escalating(alarm, policy)
        if escalating is not None:
            timing, raised = escalating
            deadlines.append(_alarm_due_ns(_current(sent.get(alarm_id), raised), timing, raised))
    return min(deadlines, default=None)


def notice(
    alarm_id: int,
    alarm: Alarm,
    sent: EscalationState,
    policy: EscalationPolicy,
    names: Mapping[int, str],
    gas: bool = False,
) -> Notification:
    """The notice for step `sent` of `alarm`'s escalation: sent now, or shown again with the
    same words and times to a console that signs in after it was sent."""
    raised_at_ns, step, level, now_ns = sent.raised_at_ns, sent.attempt, sent.level, sent.sent_ns
    name = names.get(alarm.point, f"#{alarm.point}")
    words = _GAS_WORDS if gas and alarm.condition in _GAS_WORDS else _CONDITION_WORDS
    cond_zh, cond_en = words[alarm.condition]
    pri_zh, pri_en = _PRIORITY_WORDS[alarm.priority]
    to = policy.levels[level]
    minutes = (now_ns - raised_at_ns) // (60 * _NS)
    at = datetime.fromtimestamp(raised_at_ns / _NS, _CST).strftime("%H:%M:%S")
    zh = (
        f"【报警升级·{to.zh}】点位 {name} {cond_zh}（{pri_zh}优先级），"
        f"{at} 报警，已 {minutes} 分钟未确认（第 {step} 次通知），请立即处置。"
    )
    en = (
        f"[Escalation to {to.en}] point {name}: {cond_en} ({pri_en} priority) raised at "
        f"{at} Beijing time (UTC+8), unacknowledged for {minutes} min (notice {step}); act now."
    )
    return Notification(
        alarm_id=alarm_id,
        point=alarm.point,
        point_name=name,
        condition=alarm.condition,
        priority=alarm.priority,
        level=level,
        role=to.role,
        attempt=step,
        raised_at_ns=raised_at_ns,
        ts_ns=now_ns,
        text_zh=zh,
        text_en=en,
    )
