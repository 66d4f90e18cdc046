"""The alarm engine: the imperative shell around the pure evaluator and state machine.

It consumes the hub losslessly, evaluates each batch at once, runs the ISA-18.2 state machine only
for alarms whose condition changed, stores every alarm and transition in PostgreSQL (restored
exactly at start-up) and tells listeners (the WebSocket topic `alarms`) about every event.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from alarms import state as sm
from alarms.escalation import (
    EscalationPolicy,
    EscalationState,
    Notification,
    RosterLevel,
    due_notifications,
    notice,
)
from alarms.evaluator import EvalState, evaluate, restart_history, tick
from alarms.model import (
    AlarmClass,
    AlarmEvent,
    AlarmState,
    Condition,
    ConditionChange,
    EventKind,
    Priority,
)
from alarms.notify import Notifier
from alarms.rules import (
    AlarmSettings,
    PointRule,
    RuleArrays,
    RuleError,
    RuleOverride,
    link_rules,
    point_rule,
    rules_from_config,
)
from streams import SampleBatch, Subscription
from streams.config import Config, Device, PointConfig
from streams.fanout import Fanout

log = logging.getLogger("anjian.alarms")
Key = tuple[int, Condition]
TICK_S = 1.0
# A listener that falls this far behind is dropped (it resynchronises from the API).
LISTENER_BACKLOG = 1000
MAX_COALESCE = 64  # hub batches evaluated in one call
# Without a say from the configuration, suppression by design hides process and gas alarms.
DESIGN_CLASSES = frozenset({AlarmClass.PROCESS, AlarmClass.GAS})
SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class DesignSuppression:
    """One active cause of suppression by design (ISA-18.2): a hazard source in maintenance, a
    first-out group's leader… It hides the alarms of `classes` on `points` while it lasts."""

    key: str  # e.g. "source:E1/HS1:maintenance", "firstout:E1/TK101-trip"
    points: frozenset[int]
    classes: frozenset[AlarmClass]
    reason: str
    by: str
    since_ns: int
    leader: int | None = None  # first-out groups: the point that alarmed first

    def covers(self, point: int, cls: AlarmClass) -> bool:
        return point in self.points and cls in self.classes


@dataclass(frozen=True, slots=True)
class FirstOutGroup:
    """Points of which only the first to alarm is annunciated until it returns to normal."""

    key: str  # "firstout:ENTERPRISE/GROUP"
    points: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class DeviceGroup:
    """A device's communication-status point (streams.config `link_point`) and its points.
    While the link's communication-loss alarm is active, the points' alarms of the configured
    classes (quality) are suppressed by design: one alarm for one cause. After the link comes
    back they are released once every point has reported again (so that the alarms the loss
    left active are cleared by real samples first, not annunciated), or after `grace_ns`."""

    key: str  # "device:ENTERPRISE/DEVICE"
    link: int
    points: tuple[int, ...]
    grace_ns: int


# After a device comes back: how long its points may take to report again, in its periods (a
# polled device reports at the next poll, an OPC-UA subscription with its initial values).
DEVICE_GRACE_PERIODS = 3.0
DEVICE_GRACE_MIN_S = 5.0


def device_groups(cfg: Config, point_ids: Mapping[tuple[str, str], int]) -> list[DeviceGroup]:
    """A group for each configured device whose link point has an id."""
    out = []
    for e, d, link in cfg.link_points():
        pid = point_ids.get((e.code, link.code))
        members = tuple(m for p in d.points if (m := point_ids.get((e.code, p.code))) is not None)
        if pid is None or not members:
            continue
        grace = max(DEVICE_GRACE_MIN_S, DEVICE_GRACE_PERIODS * d.period_s)
        out.append(DeviceGroup(f"device:{e.code}/{d.code}", pid, members, round(grace * 1e9)))
    return out


def _ts(ns: int | None) -> datetime | None:
    return None if ns is None else datetime.fromtimestamp(ns / 1e9, UTC)


def _iso(ns: int | None) -> str | None:
    t = _ts(ns)
    return None if t is None else t.isoformat(timespec="milliseconds")


def _num(x: float) -> float | None:
    return None if math.isnan(x) else x


def _escalated(alarm: sm.Alarm, note: Notification, levels: Sequence[RosterLevel]) -> AlarmEvent:
    """The record of one escalation notice: to whom (the roster level), which notice."""
    to = levels[note.level]
    return AlarmEvent(
        alarm.point, alarm.condition, EventKind.ESCALATED, alarm.state, alarm.state, note.ts_ns,
        alarm.value, alarm.priority,
        detail={"role": to.role, "zh": to.zh, "en": to.en, "level": note.level,
                "attempt": note.attempt},
    )  # fmt: skip


def event_view(alarm_id: int, e: AlarmEvent) -> dict[str, Any]:
    return {
        "alarm": alarm_id,
        "point": e.point,
        "condition": e.condition.name,
        "kind": e.kind.value,
        "from": e.from_state.value,
        "to": e.to_state.value,
        "ts": _iso(e.ts_ns),
        "value": _num(e.value),
        "priority": int(e.priority),
        "who": e.who,
        "why": e.why,
        "detail": e.detail,
    }


class AlarmEngine:
    """Owns every alarm's state; all changes go through it, one at a time."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        rules: RuleArrays,
        *,
        settings: sm.StateSettings = sm.DEFAULT_SETTINGS,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.pool = pool
        self.rules = rules
        self.settings = settings
        self.clock = clock
        self.alarms: dict[Key, sm.Alarm] = {}
        self.ids: dict[Key, int] = {}
        self.keys: dict[int, Key] = {}
        self.eval = EvalState.initial(rules, clock())
        # Escalation of unacknowledged alarms up the duty roster (set by `escalate_with`).
        self.policy: EscalationPolicy | None = None
        self.notifier: Notifier | None = None
        self.point_names: Mapping[int, str] = {}
        self._escalation: dict[int, EscalationState] = {}
        self.suppressions: dict[str, DesignSuppression] = {}
        self.first_out: list[FirstOutGroup] = []
        self.first_out_classes: frozenset[AlarmClass] = DESIGN_CLASSES
        self.devices: dict[int, DeviceGroup] = {}  # by link point
        self.device_classes: frozenset[AlarmClass] = frozenset({AlarmClass.QUALITY})
        self._lock = asyncio.Lock()
        self.events = Fanout(LISTENER_BACKLOG)  # every alarm event, for the WebSocket topic

    def escalate_with(
        self, policy: EscalationPolicy, notifier: Notifier, point_names: Mapping[int, str]
    ) -> None:
        self.policy, self.notifier, self.point_names = policy, notifier, point_names

    def first_out_groups(
        self, groups: Iterable[FirstOutGroup], classes: Collection[AlarmClass] = DESIGN_CLASSES
    ) -> None:
        self.first_out, self.first_out_classes = list(groups), frozenset(classes)

    def device_groups(
        self,
        groups: Iterable[DeviceGroup],
        classes: Collection[AlarmClass] = (AlarmClass.QUALITY,),
    ) -> None:
        self.devices = {g.link: g for g in groups}
        self.device_classes = frozenset(classes)

    # -- start-up -------------------------------------------------------------------------

    async def restore(self) -> int:
        """Load every stored alarm; active conditions are seeded into the evaluator, so a
        condition that persisted across the restart raises no duplicate (and one that ended
        while we were down clears). Also what escalation already sent, and the active causes
        of suppression by design."""
        rows = await self.pool.fetch("SELECT id, record FROM alarms")
        for row in rows:
            alarm = sm.from_row(json.loads(row["record"]))
            key = (alarm.point, alarm.condition)
            self.alarms[key] = alarm
            self.ids[key] = row["id"]
            self.keys[row["id"]] = key
            if alarm.active and alarm.point < self.rules.size:
                self.eval.seed(alarm.point, alarm.condition, True)
        for r in await self.pool.fetch("SELECT * FROM alarm_escalations"):
            self._escalation[r["alarm"]] = EscalationState(
                r["raised_at_ns"], r["attempt"], r["level"], r["sent_at_ns"]
            )
        for r in await self.pool.fetch(
            "SELECT key, points, classes, reason, set_by, since, leader FROM alarm_suppressions"
        ):
            self.suppressions[r["key"]] = DesignSuppression(
                r["key"], frozenset(r["points"]), frozenset(AlarmClass(c) for c in r["classes"]),
                r["reason"], r["set_by"], int(r["since"].timestamp() * 1e9), r["leader"],
            )  # fmt: skip
        await self._reconcile_first_out()
        await self._reconcile_devices()
        return len(rows)

    async def _reconcile_devices(self) -> None:
        """Restored device suppressions follow the configured devices and classes."""
        groups = {g.key: g for g in self.devices.values()}
        for key, s in list(self.suppressions.items()):
            if not key.startswith("device:"):
                continue
            group = groups.get(key)
            if group is None:
                await self._set_suppression(
                    key, (), False, "the device is no longer configured", SYSTEM, s.classes
                )
            elif frozenset(group.points) != s.points or s.classes != self.device_classes:
                await self._set_suppression(
                    key, group.points, True, s.reason, SYSTEM, self.device_classes, group.link
                )
        await self._device_returns(self.clock())

    async def _reconcile_first_out(self) -> None:
        """Restored first-out suppressions follow the configured groups: a group that is gone
        is released, one whose members changed covers its members but the leader."""
        groups = {g.key: g for g in self.first_out}
        for key, s in list(self.suppressions.items()):
            if not key.startswith("firstout:"):
                continue
            group = groups.get(key)
            if group is None or s.leader not in group.points:
                await self._set_suppression(
                    key, (), False, "the first-out group is no longer configured", SYSTEM, s.classes
                )
                continue
            followers = frozenset(group.points) - {s.leader}
            if followers != s.points or s.classes != self.first_out_classes:
                await self._set_suppression(
                    key, followers, True, s.reason, SYSTEM, self.first_out_classes, s.leader
                )

    # -- the flow of samples ----------------------------------------------------------------

    async def run(self, sub: Subscription) -> None:
        """Evaluate every batch of the subscription until it closes. Batches already queued are
        evaluated together: the evaluator's cost is mostly per call, not per sample."""
        closed = False
        while not closed:
            first = await sub.get()
            if first is None:
                return
            batches = [first]
            while sub.backlog and len(batches) < MAX_COALESCE:
                more = await sub.get()
                if more is None:
                    closed = True
                    break
                batches.append(more)
            try:
                async with self._lock:
                    self.eval, changes = evaluate(
                        self.rules, self.eval, SampleBatch.concat(batches)
                    )
                    if changes:
                        await self._apply_changes(changes)
            finally:
                for _ in batches:
                    sub.task_done()

    async def ticker(self, period_s: float = TICK_S) -> None:
        """Time-driven work: stale points, maturing delays, shelving expiry, re-alarm."""
        while True:
            await asyncio.sleep(period_s)
            await self.tick()

    async def tick(self) -> None:
        now = self.clock()
        async with self._lock:
            self.eval, changes = tick(self.rules, self.eval, now)
            if changes:
                await self._apply_changes(changes)
            due = [
                k
                for k, a in self.alarms.items()
                if (d := sm.next_deadline_ns(a, realarm_s=self.settings.realarm_s)) is not None
                and d <= now
            ]
            updates: list[tuple[sm.Alarm, list[AlarmEvent]]] = []
            for k in due:
                alarm, events = sm.tick(
                    self.alarms[k], now, realarm_s=self.settings.realarm_s,
                    realarm_priorities=self.settings.realarm_priorities,
                )  # fmt: skip
                updates.append((alarm, events))
            await self._commit(updates)
            if self.devices:
                await self._device_returns(now)
            if self.policy is not None and self.notifier is not None:
                pairs = [(self.ids[k], a) for k, a in self.alarms.items() if k in self.ids]
                notes, sent = due_notifications(
                    pairs, self._escalation, self.policy, now, self.point_names, self._is_gas
                )
                # Stored before sending, with an ESCALATED event on each alarm's record: after a
                # restart a step already sent is not sent again.
                by_id, levels = dict(pairs), self.policy.levels
                records = [
                    (by_id[n.alarm_id], [_escalated(by_id[n.alarm_id], n, levels)]) for n in notes
                ]
                await self._store_escalation(sent, records)
                for note in notes:
                    self.notifier.submit(note)  # channel I/O never runs under the lock

    async def _store_escalation(
        self, sent: dict[int, EscalationState], records: list[tuple[sm.Alarm, list[AlarmEvent]]]
    ) -> None:
        old = self._escalation
        changed = [(k, v) for k, v in sent.items() if old.get(k) != v]
        gone = [k for k in old if k not in sent]

        async def store(conn: asyncpg.Connection) -> None:
            await conn.execute("DELETE FROM alarm_escalations WHERE alarm = ANY($1)", gone)
            await conn.executemany(
                "INSERT INTO alarm_escalations (alarm, raised_at_ns, attempt, level,"
                " sent_at_ns) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (alarm) DO UPDATE SET"
                " raised_at_ns = excluded.raised_at_ns, attempt = excluded.attempt,"
                " level = excluded.level, sent_at_ns = excluded.sent_at_ns",
                [(k, v.raised_at_ns, v.attempt, v.level, v.sent_ns) for k, v in changed],
            )

        if changed or gone:
            await self._commit(records, also=store)
        self._escalation = sent

    async def _apply_changes(self, changes: Sequence[ConditionChange]) -> None:
        if self.devices:
            await self._device_losses(changes)
        if self.first_out:
            await self._first_out_leaders(changes)
        updates: list[tuple[sm.Alarm, list[AlarmEvent]]] = []
        for c in changes:
            key = (c.point, c.condition)
            alarm = self.alarms.get(key)
            events: list[AlarmEvent] = []
            if alarm is None:
                if not c.active:
                    continue
                alarm = sm.Alarm(
                    point=c.point,
                    condition=c.condition,
                    priority=Priority(int(self.rules.priority[c.point, c.condition])),
                )
                # Born hidden when a suppression by design already covers it.
                cover = self._covering(c.point, c.condition, self.suppressions)
                if cover:
                    alarm, events = sm.suppress(alarm, cover[0].reason, c.ts_ns, cover[0].by)
            alarm, more = sm.on_condition(alarm, c.active, c.ts_ns, c.value)
            events += more
            if c.detail and events:
                events = [replace(e, detail={**e.detail, **c.detail}) for e in events]
            updates.append((alarm, events))
        await self._commit(updates)
        if self.first_out:
            await self._first_out_returns()
        if self.devices:
            await self._device_returns(self.clock())

    # -- suppression by design ----------------------------------------------------------------

    def _is_gas(self, point: int) -> bool:
        """A gas detector: its limit alarms are of the gas class."""
        return self._class(point, Condition.HH) is AlarmClass.GAS

    def _class(self, point: int, condition: Condition) -> AlarmClass | None:
        return self.rules.class_of(point, condition) if point < self.rules.size else None

    def _covering(
        self, point: int, condition: Condition, keys: Mapping[str, DesignSuppression]
    ) -> list[DesignSuppression]:
        cls = self._class(point, condition)
        if cls is None:
            return []
        return [s for s in keys.values() if s.covers(point, cls)]

    def _coverage(
        self,
        points: Collection[int],
        keys: Mapping[str, DesignSuppression],
        now: int,
        by: str,
        ending: str = "",
    ) -> list[tuple[sm.Alarm, list[AlarmEvent]]]:
        """Suppress or release the alarms of `points` so they agree with `keys`."""
        updates = []
        for (point, condition), alarm in self.alarms.items():
            if point not in points:
                continue
            cover = self._covering(point, condition, keys)
            if cover and alarm.suppressed_reason is None:
                updates.append(sm.suppress(alarm, cover[0].reason, now, cover[0].by))
            elif not cover and alarm.suppressed_reason is not None:
                why = f"end of: {alarm.suppressed_reason}{ending}"
                updates.append(sm.unsuppress(alarm, now, by, why))
        return updates

    async def set_design_suppression(
        self,
        key: str,
        points: Collection[int],
        active: bool,
        reason: str,
        by: str,
        *,
        classes: Collection[AlarmClass] = DESIGN_CLASSES,
    ) -> None:
        """Start (or change) or end one cause `key` of suppression by design.

        A point's alarms of `classes` are SUPPRESSED while any key covers them; when the last
        key is lifted the present condition is re-evaluated (a still-active one raises again).
        Setting an active key again replaces its points, classes and reason: alarms that stay
        covered see no transition. Every transition is an alarm event naming `by` and `reason`;
        the active keys are stored, so a restart restores them.
        """
        if active and not reason.strip():
            raise ValueError(f"suppression {key!r}: a reason is required")
        async with self._lock:
            await self._set_suppression(key, points, active, reason, by, frozenset(classes))

    async def _set_suppression(
        self,
        key: str,
        points: Collection[int],
        active: bool,
        reason: str,
        by: str,
        classes: frozenset[AlarmClass],
        leader: int | None = None,
    ) -> None:
        now = self.clock()
        old = self.suppressions.get(key)
        after = dict(self.suppressions)
        if active:
            after[key] = DesignSuppression(
                key, frozenset(points), classes, reason, by,
                old.since_ns if old is not None else now, leader,
            )  # fmt: skip
        elif old is None:
            return  # lifting what is not set changes nothing
        else:
            del after[key]
        new = after.get(key)
        touched = (old.points if old else frozenset()) | (new.points if new else frozenset())
        ending = "" if active or not reason.strip() else f" ({reason})"
        updates = self._coverage(touched, after, now, by, ending)

        async def store(conn: asyncpg.Connection) -> None:
            s = new
            if s is None:
                await conn.execute("DELETE FROM alarm_suppressions WHERE key = $1", key)
                return
            await conn.execute(
                "INSERT INTO alarm_suppressions (key, points, classes, reason, set_by, since,"
                " leader) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (key) DO UPDATE SET"
                " points = excluded.points, classes = excluded.classes, reason = excluded.reason,"
                " set_by = excluded.set_by, leader = excluded.leader",
                key, sorted(s.points), sorted(c.value for c in s.classes), s.reason, s.by,
                _ts(s.since_ns), s.leader,
            )  # fmt: skip

        await self._commit(updates, store)
        self.suppressions = after

    async def _first_out_leaders(self, changes: Sequence[ConditionChange]) -> None:
        """A group episode starts when a member alarms while none is active: the earliest
        activation of the batch (that would be annunciated) leads, and the other members are
        suppressed before the batch is applied."""
        classes = self.first_out_classes
        for group in self.first_out:
            if group.key in self.suppressions:
                continue
            first = [
                c
                for c in changes
                if c.active
                and c.point in group.points
                and self._class(c.point, c.condition) in classes
                and not self._covering(c.point, c.condition, self.suppressions)
            ]
            if not first or any(self._point_active(p, classes) for p in group.points):
                continue
            leader = min(first, key=lambda c: (c.ts_ns, c.point)).point
            name = self.point_names.get(leader, f"#{leader}")
            reason = f"first-out group {group.key.removeprefix('firstout:')}: {name} alarmed first"
            followers = [p for p in group.points if p != leader]
            await self._set_suppression(group.key, followers, True, reason, SYSTEM, classes, leader)

    def _point_active(self, point: int, classes: frozenset[AlarmClass]) -> bool:
        return any(
            (a := self.alarms.get((point, c))) is not None
            and a.active
            and self._class(point, c) in classes
            for c in Condition
        )

    async def _first_out_returns(self) -> None:
        """When a leader returns to normal its group is released: followers still active are
        annunciated now, and the next episode starts once every member is normal again."""
        for group in self.first_out:
            s = self.suppressions.get(group.key)
            if (
                s is not None
                and s.leader is not None
                and not self._point_active(s.leader, s.classes)
            ):
                await self._set_suppression(
                    group.key, (), False, "the leader returned to normal", SYSTEM, s.classes
                )

    async def _device_losses(self, changes: Sequence[ConditionChange]) -> None:
        """A device's communication-loss alarm (its link's bad quality) suppresses its points'
        alarms of `device_classes` before the batch is applied: theirs, raised by the same
        COMM_FAIL, are born suppressed."""
        for c in changes:
            group = self.devices.get(c.point)
            if group is None or c.condition is not Condition.BAD_QUALITY or not c.active:
                continue
            if group.key in self.suppressions:
                continue
            device = group.key.removeprefix("device:")
            reason = (
                f"设备 {device.partition('/')[2]} 通讯中断 (device {device} communication lost)"
            )
            await self._set_suppression(
                group.key, group.points, True, reason, SYSTEM, self.device_classes, group.link
            )

    async def _device_returns(self, now: int) -> None:
        """A device whose link is good again releases its points once none of them is bad any
        more (their first samples after the loss have come), or after the group's grace: a
        point still bad then (a failed sensor on a live device) is annunciated."""
        bad = Condition.BAD_QUALITY
        # Only the devices lost now (a province has thousands of devices, this runs per batch).
        lost = [s for key, s in self.suppressions.items() if key.startswith("device:")]
        for s in lost:
            group = self.devices.get(s.leader) if s.leader is not None else None
            if group is None or group.link >= self.rules.size:
                continue
            link = self.alarms.get((group.link, bad))
            if (link is not None and link.active) or self.eval.raw_of(group.link, bad):
                continue
            back = int(self.eval.since[group.link, bad])
            members = [p for p in group.points if p < self.rules.size]
            clear = not self.eval.raw_of(members, bad).any()
            if clear or now - back >= group.grace_ns:
                why = "communication restored" + ("" if clear else "; points still bad")
                await self._set_suppression(group.key, (), False, why, SYSTEM, s.classes)

    # -- rules ----------------------------------------------------------------------------------

    async def replace_rules(self, rules: RuleArrays, points: Collection[int], why: str) -> None:
        """Put new rules for `points` in force at once, keeping every condition state: a moved
        limit decides at the point's next sample (with its deadband); a condition the new rule
        no longer has clears now; the point's alarms take the new priorities and classes."""
        async with self._lock:
            if rules.size != self.rules.size:
                raise ValueError(f"rules for {rules.size} points, the engine has {self.rules.size}")
            now = self.clock()
            old, self.rules = self.rules, rules
            changed = set(points)
            gone: list[ConditionChange] = []
            for p in changed:
                on = rules.enabled(p)
                restart_history(self.eval, p, on & ~old.enabled(p))
                off = ~on
                for c in Condition:
                    if off[c]:
                        if self.eval.active[p, c]:
                            gone.append(ConditionChange(p, c, False, now, math.nan, {"rule": why}))
                        self.eval.seed(p, c, False)
            await self._commit(
                [
                    (replace(a, priority=pri), [])
                    for (p, c), a in self.alarms.items()
                    if p in changed and a.priority != (pri := Priority(int(rules.priority[p, c])))
                ]
            )
            await self._commit(self._coverage(changed, self.suppressions, now, SYSTEM))
            if gone:
                await self._apply_changes(gone)

    # -- operator actions ---------------------------------------------------------------------

    def key_of(self, alarm_id: int) -> Key:
        try:
            return self.keys[alarm_id]
        except KeyError:
            raise KeyError(f"no alarm {alarm_id}") from None

    async def operate(
        self,
        alarm_ids: Iterable[int],
        op: Callable[[sm.Alarm, int], tuple[sm.Alarm, list[AlarmEvent]]],
    ) -> list[sm.Alarm]:
        """Apply one operation (acknowledge, shelve…) to alarms, all or none; returns them."""
        async with self._lock:
            now = self.clock()
            updates = [op(self.alarms[self.key_of(i)], now) for i in alarm_ids]
            await self._commit(updates)
            return [a for a, _ in updates]

    # -- persistence and notification ------------------------------------------------------

    async def _commit(
        self,
        updates: list[tuple[sm.Alarm, list[AlarmEvent]]],
        also: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
    ) -> None:
        """Store alarms and their events (and `also`, in the same transaction), then publish."""
        changed = [
            (a, ev) for a, ev in updates if ev or self.alarms.get((a.point, a.condition)) != a
        ]
        if not changed and also is None:
            return
        views: list[dict[str, Any]] = []
        stored: list[tuple[Key, int, sm.Alarm]] = []
        async with self.pool.acquire() as conn, conn.transaction():
            if also is not None:
                await also(conn)
            for alarm, events in changed:
                key = (alarm.point, alarm.condition)
                alarm_id = await conn.fetchval(
                    "INSERT INTO alarms (point, condition, state, active, priority, raised_at,"
                    " updated_at, record) VALUES ($1, $2, $3, $4, $5, $6, now(), $7::jsonb)"
                    " ON CONFLICT (point, condition) DO UPDATE SET state = excluded.state,"
                    " active = excluded.active, priority = excluded.priority,"
                    " raised_at = excluded.raised_at, updated_at = now(),"
                    " record = excluded.record RETURNING id",
                    alarm.point, int(alarm.condition), alarm.state.value, alarm.active,
                    int(alarm.priority), _ts(alarm.raised_at_ns), json.dumps(sm.to_row(alarm)),
                )  # fmt: skip
                if events:
                    await conn.executemany(
                        "INSERT INTO alarm_events (alarm, point, condition, kind, from_state,"
                        " to_state, ts, value, priority, who, why, detail)"
                        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb)",
                        [
                            (alarm_id, e.point, int(e.condition), e.kind.value,
                             e.from_state.value, e.to_state.value, _ts(e.ts_ns), _num(e.value),
                             int(e.priority), e.who, e.why, json.dumps(e.detail))
                            for e in events
                        ],
                    )  # fmt: skip
                stored.append((key, alarm_id, alarm))
                views += [event_view(alarm_id, e) for e in events]
        # Only once committed, and all at once (no await in between): readers of the API never
        # see an id without its alarm, nor a state the database does not hold.
        for key, alarm_id, alarm in stored:
            self.alarms[key] = alarm
            self.ids[key] = alarm_id
            self.keys[alarm_id] = key
        if views:
            self.events.publish(views)

    # -- views --------------------------------------------------------------------------------

    def view(self, alarm_id: int, info: Mapping[str, Any] | None = None) -> dict[str, Any]:
        a = self.alarms[self.keys[alarm_id]]
        return {
            "id": alarm_id,
            "point": a.point,
            **(info or {}),
            "condition": a.condition.name,
            "class": self.rules.class_of(a.point, a.condition).value
            if a.point < self.rules.size
            else None,
            "state": a.state.value,
            "active": a.active,
            "priority": int(a.priority),
            "value": _num(a.value),
            "raised_at": _iso(a.raised_at_ns),
            "value_at_raise": _num(a.value_at_raise),
            "acked_by": a.acked_by,
            "acked_at": _iso(a.acked_at_ns),
            "ack_comment": a.ack_comment,
            "shelved_until": _iso(a.shelving.until_ns) if a.shelving else None,
            "shelve_reason": a.shelving.reason if a.shelving else None,
            "out_of_service": a.out_of_service is not None,
            "suppressed": a.suppressed_reason,
            "suppressing": self._suppressing(a),
            "escalated": self._escalated_view(alarm_id, a),
        }

    def _suppressing(self, a: sm.Alarm) -> int:
        """How many alarms this one's point, as the cause (a lost device's link, a first-out
        leader), holds suppressed now."""
        causes = [s for s in self.suppressions.values() if s.leader == a.point]
        if not causes or not a.active:
            return 0
        return sum(
            1
            for b in self.alarms.values()
            if b.state is AlarmState.SUPPRESSED
            and any(b.point in s.points and b.suppressed_reason == s.reason for s in causes)
        )

    def suppressed_counts(self) -> dict[str, int]:
        """Per suppression by design (e.g. a hazard source's maintenance), how many alarms it
        covers that are suppressed now (also those another key covers too, and those suppressed
        before its reason was changed: a changed reason makes no transition). One pass over
        the alarms for all the keys."""
        held = [
            (point, self.rules.class_of(point, condition))
            for (point, condition), b in self.alarms.items()
            if b.state is AlarmState.SUPPRESSED and point < self.rules.size
        ]
        return {
            key: sum(1 for point, cls in held if cause.covers(point, cls))
            for key, cause in self.suppressions.items()
        }

    def _escalation_of(self, alarm_id: int, a: sm.Alarm) -> EscalationState | None:
        """The latest notice sent for this raise of the alarm, while it stays unacknowledged
        (the alarm's events keep every notice)."""
        sent = self._escalation.get(alarm_id)
        if sent is None or self.policy is None or a.state is not AlarmState.UNACK:
            return None
        return sent if sent.raised_at_ns == a.raised_at_ns else None

    def escalations(self) -> list[Notification]:
        """The latest notice of each alarm escalated and still unacknowledged: what a console
        that signs in after it was sent shows."""
        out = []
        for alarm_id, sent in self._escalation.items():
            key = self.keys.get(alarm_id)
            a = None if key is None else self.alarms.get(key)
            if self.policy is None or a is None or self._escalation_of(alarm_id, a) is None:
                continue
            gas = self._is_gas(a.point)
            out.append(notice(alarm_id, a, sent, self.policy, self.point_names, gas))
        return out

    def _escalated_view(self, alarm_id: int, a: sm.Alarm) -> dict[str, Any] | None:
        """Up to whom this raise of the alarm has gone while unacknowledged."""
        sent = self._escalation_of(alarm_id, a)
        if sent is None or self.policy is None:
            return None
        to = self.policy.levels[sent.level]
        at = _iso(sent.sent_ns)
        return {"role": to.role, "zh": to.zh, "en": to.en, "attempt": sent.attempt, "at": at}


@dataclass(frozen=True, slots=True)
class StoredOverride:
    override: RuleOverride
    by: str
    at: datetime


class RuleBook:
    """The alarm rules in force: the configuration file's, overridden per point over the API.

    The overrides live in `alarm_rules` and are the source of truth once loaded: the file gives
    the defaults, and an override outlives a restart. A change is validated exactly like the
    file's `[alarms.points."ENTERPRISE/POINT"]` and is put in force in the engine at once.
    """

    def __init__(
        self, pool: asyncpg.Pool, cfg: Config, point_ids: Mapping[tuple[str, str], int],
        settings: AlarmSettings, extra: Sequence[PointRule] = (),
    ) -> None:  # fmt: skip
        self.pool, self.cfg, self.point_ids, self.settings = pool, cfg, point_ids, settings
        # Rules derived elsewhere (camera health), in force but not set over the API.
        self.extra = list(extra)
        self.points: dict[int, tuple[str, Device, PointConfig]] = {
            pid: (e.code, d, p)
            for e, d, p in cfg.points()
            if (pid := point_ids.get((e.code, p.code))) is not None
        }
        self.rules: dict[int, PointRule] = {}
        self.overrides: dict[int, StoredOverride] = {}
        self.engine: AlarmEngine | None = None
        self._lock = asyncio.Lock()

    async def load(self) -> list[PointRule]:
        """The config's rules with the stored overrides; a stored override that the present
        configuration makes invalid is logged and left out (the file's rule is in force)."""
        self.rules = {
            r.point: r for r in rules_from_config(self.cfg, self.point_ids, self.settings)
        }
        self.rules |= {r.point: r for r in self.extra}
        rows = await self.pool.fetch(
            "SELECT enterprise, point, override, set_by, set_at FROM alarm_rules"
        )
        for r in rows:
            pid = self.point_ids.get((r["enterprise"], r["point"]))
            tag = f"{r['enterprise']}/{r['point']}"
            if pid is None or pid not in self.points:
                log.warning(
                    "alarm rule set for %s ignored: no such point in the configuration", tag
                )
                continue
            try:
                override = RuleOverride.model_validate(json.loads(r["override"]))
                self.rules[pid] = self._rule(pid, override)
            except (ValueError, RuleError) as exc:
                log.error("alarm rule set for %s ignored, the file's is in force: %s", tag, exc)
                continue
            self.overrides[pid] = StoredOverride(override, r["set_by"], r["set_at"])
        self.rules |= {r.point: r for r in self._relinked()}
        return [self.rules[p] for p in sorted(self.rules)]

    def _relinked(self) -> list[PointRule]:
        """The devices' link rules that the points' rules in force change: a link's T is the
        shortest of its points' bad-quality T, overrides included. A device whose points have
        no bad-quality rule left gets a link rule without conditions."""
        links = link_rules(self.cfg, self.point_ids, self.rules.values(), self.settings.defaults)
        derived = {r.point: r for r in links}
        out = []
        for e, _, link in self.cfg.link_points():
            pid = self.point_ids.get((e.code, link.code))
            if pid is None or (pid not in derived and pid not in self.rules):
                continue
            tag = f"{e.code}/{link.code}"
            rule = derived.get(pid) or PointRule(point=pid, tag=tag, alarm_class=AlarmClass.QUALITY)
            if rule != self.rules.get(pid):
                out.append(rule)
        return out

    def _rule(self, pid: int, override: RuleOverride | None) -> PointRule:
        enterprise, device, p = self.points[pid]
        tag = f"{enterprise}/{p.code}"
        if override is None:
            override = self.settings.points.get(tag)
        return point_rule(tag, pid, device, p, self.settings.defaults, override)

    async def set(self, pid: int, override: RuleOverride | None, by: str) -> PointRule:
        """Set the point's override (None: back to the configuration file's rule) and put the
        resulting rule in force. KeyError for an unknown point, RuleError for a bad rule."""
        enterprise, _, p = self.points[pid]
        rule = self._rule(pid, override)
        async with self._lock:
            if override is None:
                await self.pool.execute(
                    "DELETE FROM alarm_rules WHERE enterprise = $1 AND point = $2",
                    enterprise, p.code,
                )  # fmt: skip
                self.overrides.pop(pid, None)
                why = f"rule reverted to the configuration by {by}"
            else:
                at = await self.pool.fetchval(
                    "INSERT INTO alarm_rules (enterprise, point, override, set_by, set_at)"
                    " VALUES ($1, $2, $3::jsonb, $4, now()) ON CONFLICT (enterprise, point) DO"
                    " UPDATE SET override = excluded.override, set_by = excluded.set_by,"
                    " set_at = excluded.set_at RETURNING set_at",
                    enterprise, p.code,
                    json.dumps(override.model_dump(mode="json", exclude_unset=True)), by,
                )  # fmt: skip
                self.overrides[pid] = StoredOverride(override, by, at)
                why = f"rule changed by {by}"
            self.rules[pid] = rule
            linked = self._relinked()
            self.rules |= {r.point: r for r in linked}
            if self.engine is not None:
                changed = [rule, *linked]
                await self.engine.replace_rules(
                    self.engine.rules.with_rules(changed), [r.point for r in changed], why
                )
        return rule
