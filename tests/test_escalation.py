"""Escalation up the duty roster: exact times with an injected clock, repeats, stop on ack, and
the sent state kept across a restart of the engine (real database)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from alarms import state as sm
from alarms.engine import AlarmEngine
from alarms.escalation import (
    DEFAULT_POLICY,
    EscalationPolicy,
    EscalationState,
    Notification,
    due_notifications,
    next_due_ns,
)
from alarms.model import AlarmState, Condition, Priority
from alarms.notify import Notifier, WebSocketChannel
from alarms.rules import RuleArrays, rules_from_config
from streams import Hub, SampleBatch
from streams.config import parse_config
from streams.registry import sync_config
from streams.store import Store
from tests.test_warning_desk import CONFIG

S = 1_000_000_000
T0 = 1_700_000_000 * S  # 2023-11-14 22:13:20 UTC

POLICY = EscalationPolicy.model_validate(
    {
        "timing": {
            "1": {"t1_s": 60, "t2_s": 300},
            "high": {"t1_s": 300, "t2_s": 600},
        }
    }
)


def raised(point: int = 7, priority: Priority = Priority.EMERGENCY, at: int = T0) -> sm.Alarm:
    alarm, _ = sm.on_condition(sm.Alarm(point, Condition.HH, priority), True, at, 42.0)
    assert alarm.state is AlarmState.UNACK
    return alarm


def run(
    alarms: Sequence[tuple[int, sm.Alarm]],
    times_s: Sequence[float],
    policy: EscalationPolicy = POLICY,
) -> tuple[list[Notification], dict[int, EscalationState]]:
    """Call the scheduler at each time (seconds after T0), threading the sent state through."""
    sent: dict[int, EscalationState] = {}
    out: list[Notification] = []
    for t in times_s:
        notes, sent = due_notifications(alarms, sent, policy, T0 + round(t * S))
        out += notes
    return out, sent


def test_nothing_is_sent_before_t1() -> None:
    notes, sent = run([(1, raised())], [0, 30, 59.999])
    assert notes == [] and sent == {}


def test_first_notice_goes_to_the_level_after_the_duty_officer_exactly_at_t1() -> None:
    notes, sent = run([(1, raised())], [59.999999999, 60])
    [n] = notes
    assert (n.alarm_id, n.point, n.condition, n.priority) == (
        1,
        7,
        Condition.HH,
        Priority.EMERGENCY,
    )
    assert (n.level, n.role, n.attempt) == (1, "shift_leader", 1)
    assert n.ts_ns == T0 + 60 * S and n.raised_at_ns == T0
    assert sent == {1: EscalationState(T0, 1, 1, T0 + 60 * S)}


def test_repeats_every_t2_going_up_one_level_and_staying_at_the_top() -> None:
    times = [60, 100, 359, 360, 500, 660, 960]
    notes, _ = run([(1, raised())], times)
    assert [(n.ts_ns - T0) // S for n in notes] == [60, 360, 660, 960]
    assert [n.role for n in notes] == ["shift_leader", "leader", "leader", "leader"]
    assert [n.attempt for n in notes] == [1, 2, 3, 4]


def test_schedule_is_anchored_at_the_raise_so_late_calls_do_not_drift() -> None:
    notes, _ = run([(1, raised())], [75, 365, 661])
    assert [n.attempt for n in notes] == [1, 2, 3]
    assert [(n.ts_ns - T0) // S for n in notes] == [75, 365, 661]


def test_a_very_late_call_sends_one_notice_for_the_latest_step_not_a_burst() -> None:
    notes, sent = run([(1, raised())], [60 + 10 * 300 + 1])
    [n] = notes
    assert (n.attempt, n.role) == (11, "leader")
    assert next_due_ns([(1, raised())], sent, POLICY) == T0 + (60 + 11 * 300) * S


def test_acknowledgement_stops_escalation_and_drops_the_state() -> None:
    alarm = raised()
    notes, sent = due_notifications([(1, alarm)], {}, POLICY, T0 + 60 * S)
    assert len(notes) == 1 and 1 in sent
    acked, _ = sm.acknowledge(alarm, "op", None, T0 + 100 * S)
    notes, sent = due_notifications([(1, acked)], sent, POLICY, T0 + 3600 * S)
    assert notes == [] and sent == {}
    assert next_due_ns([(1, acked)], sent, POLICY) is None


@pytest.mark.parametrize(
    "change",
    [
        lambda a: sm.on_condition(a, False, T0 + 90 * S, 0.0)[0],  # returned to normal, unacked
        lambda a: sm.shelve(a, "op", "maintenance", T0 + 90 * S, duration_s=3600)[0],
        lambda a: sm.remove_from_service(a, "op", "sensor replaced", T0 + 90 * S)[0],
    ],
    ids=["rtn_unack", "shelved", "out_of_service"],
)
def test_alarm_that_leaves_unack_stops_escalating(change: Callable[[sm.Alarm], sm.Alarm]) -> None:
    alarm = raised()
    _, sent = due_notifications([(1, alarm)], {}, POLICY, T0 + 60 * S)
    after = change(alarm)
    assert after.state is not AlarmState.UNACK
    notes, sent = due_notifications([(1, after)], sent, POLICY, T0 + 3600 * S)
    assert notes == [] and sent == {}


def test_priority_specific_t1_and_unlisted_priority_never_escalates() -> None:
    alarms = [
        (1, raised(1, Priority.EMERGENCY)),
        (2, raised(2, Priority.HIGH)),
        (3, raised(3, Priority.MEDIUM)),
    ]
    assert next_due_ns(alarms, {}, POLICY) == T0 + 60 * S
    notes, sent = run(alarms, [60, 299, 300, 360, 900, 36_000])
    by_alarm = {a: [(n.ts_ns - T0) // S for n in notes if n.alarm_id == a] for a in (1, 2, 3)}
    assert by_alarm[1] == [60, 360, 900, 36_000]
    assert by_alarm[2] == [300, 900, 36_000]
    assert by_alarm[3] == []
    assert set(sent) == {1, 2}


def test_a_new_raise_starts_again_at_t1() -> None:
    first = raised()
    _, sent = run([(1, first)], [60, 360])
    assert sent[1].attempt == 2
    acked, _ = sm.acknowledge(first, "op", None, T0 + 400 * S)
    normal, _ = sm.on_condition(acked, False, T0 + 500 * S, 0.0)
    again, _ = sm.on_condition(normal, True, T0 + 1000 * S, 50.0)
    assert next_due_ns([(1, again)], sent, POLICY) == T0 + 1060 * S
    notes, sent = due_notifications([(1, again)], sent, POLICY, T0 + 1060 * S)
    [n] = notes
    assert (n.attempt, n.role, n.raised_at_ns) == (1, "shift_leader", T0 + 1000 * S)


def test_next_due_follows_the_sent_state() -> None:
    alarm = raised()
    assert next_due_ns([(1, alarm)], {}, POLICY) == T0 + 60 * S
    _, sent = due_notifications([(1, alarm)], {}, POLICY, T0 + 61 * S)
    assert next_due_ns([(1, alarm)], sent, POLICY) == T0 + 360 * S
    assert next_due_ns([], sent, POLICY) is None


def test_notification_text_names_point_condition_role_and_delay_in_both_languages() -> None:
    notes, _ = due_notifications(
        [(9, raised())], {}, POLICY, T0 + 125 * S, point_names={7: "GT-101 储罐区可燃气体"}
    )
    [n] = notes
    assert n.text_zh == (
        "【报警升级·值班长】点位 GT-101 储罐区可燃气体 高高报警（紧急优先级），"
        "06:13:20 报警，已 2 分钟未确认（第 1 次通知），请立即处置。"
    )
    assert n.text_en == (
        "[Escalation to shift leader] point GT-101 储罐区可燃气体: high-high alarm "
        "(emergency priority) raised at 06:13:20 Beijing time (UTC+8), unacknowledged for 2 min "
        "(notice 1); act now."
    )
    assert n.text == f"{n.text_zh}\n{n.text_en}"
    body = n.as_dict()
    assert body["id"] == f"9-{T0}-1" and body["role"] == "shift_leader"
    assert body["raised_at"] == "2023-11-14T22:13:20.000+00:00"


def test_a_gas_detectors_limits_are_named_as_gb_50493_alarms() -> None:
    """A gas detector's HH and H are its 二级 and 一级 alarms, as on the console; another
    point's HH stays a high-high alarm."""
    h, _ = sm.on_condition(sm.Alarm(7, Condition.H, Priority.EMERGENCY), True, T0, 42.0)
    alarms = [(1, raised(point=7)), (2, h), (3, raised(point=8))]
    notes, _ = due_notifications(alarms, {}, POLICY, T0 + 61 * S, is_gas=lambda p: p == 7)
    assert [n.alarm_id for n in notes] == [1, 2, 3]
    assert "点位 #7 二级报警（紧急优先级）" in notes[0].text_zh
    assert "point #7: level 2 gas alarm (emergency" in notes[0].text_en
    assert "点位 #7 一级报警（紧急优先级）" in notes[1].text_zh
    assert "point #7: level 1 gas alarm (emergency" in notes[1].text_en
    assert "点位 #8 高高报警（紧急优先级）" in notes[2].text_zh
    assert "point #8: high-high alarm (emergency" in notes[2].text_en


def test_default_policy_leaves_low_priority_with_the_duty_officer() -> None:
    assert [lv.role for lv in DEFAULT_POLICY.levels] == ["duty_officer", "shift_leader", "leader"]
    alarm = raised(priority=Priority.LOW)
    notes, _ = due_notifications([(1, alarm)], {}, DEFAULT_POLICY, T0 + 7 * 24 * 3600 * S)
    assert notes == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"timing": {"urgent": {"t1_s": 1, "t2_s": 1}}}, "unknown priority 'urgent'"),
        ({"timing": {"1": {"t1_s": 0, "t2_s": 1}}}, "greater than 0"),
        (
            {"levels": [{"role": "duty_officer", "zh": "值班员", "en": "duty officer"}]},
            "at least 2",
        ),
        (
            {
                "levels": [
                    {"role": "a", "zh": "甲", "en": "a"},
                    {"role": "a", "zh": "乙", "en": "b"},
                ]
            },
            "roster role a appears more than once",
        ),
        ({"timing": {}, "t3_s": 5}, "Extra inputs are not permitted"),
    ],
)
def test_bad_policy_is_rejected_naming_the_value(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        EscalationPolicy.model_validate(data)


@given(
    gaps=st.lists(st.integers(min_value=1, max_value=2000 * S), min_size=1, max_size=40),
)
def test_notices_follow_the_schedule_whenever_the_scheduler_wakes(gaps: list[int]) -> None:
    alarm = raised()
    sent: dict[int, EscalationState] = {}
    now = T0
    notes: list[Notification] = []
    for gap in gaps:
        now += gap
        due = next_due_ns([(1, alarm)], sent, POLICY)
        new, sent = due_notifications([(1, alarm)], sent, POLICY, now)
        assert due is not None
        assert bool(new) == (now >= due)  # next_due_ns is exact: never early, never missed
        notes += new
    for n in notes:
        assert n.attempt == (n.ts_ns - T0 - 60 * S) // (300 * S) + 1
        assert n.level == min(n.attempt, 2)
    attempts = [n.attempt for n in notes]
    assert attempts == sorted(set(attempts))  # strictly increasing: no step sent twice


async def test_a_restart_does_not_send_an_escalation_step_again(database_url: str) -> None:
    """The engine on a real database with an injected clock: step 1 is sent, the engine
    restarts, step 1 is not sent again; step 2 comes on schedule; acknowledgement clears it."""
    cfg = parse_config(CONFIG)
    store = await Store.open(database_url)
    now = [T0]
    try:
        index = await sync_config(store.pool, cfg)
        gd = index.id("E9", "GD-1")
        rules = RuleArrays.build(
            rules_from_config(cfg, {(p.enterprise, p.code): p.id for p in index})
        )
        policy = EscalationPolicy.model_validate({"timing": {"1": {"t1_s": 60, "t2_s": 300}}})

        async def start() -> tuple[AlarmEngine, Notifier, asyncio.Queue[Any]]:
            engine = AlarmEngine(store.pool, rules, clock=lambda: now[0])
            await engine.restore()
            channel = WebSocketChannel()
            notifier = Notifier([channel])
            engine.escalate_with(policy, notifier, {gd: "GD-1"})
            return engine, notifier, channel.events.listen()

        async def tick_at(engine: AlarmEngine, notifier: Notifier, t_s: float) -> None:
            now[0] = T0 + round(t_s * S)
            await engine.tick()
            await notifier.drain()

        engine, notifier, feed = await start()
        hub = Hub()
        sub = hub.subscribe("alarms")
        task = asyncio.create_task(engine.run(sub))
        await hub.publish(SampleBatch.of(T0, [gd], [45.0]))  # above HH (40 mg/m³)
        await sub.join()
        sub.close()
        await task
        await tick_at(engine, notifier, 61)
        (note,) = await feed.get()
        assert (note["condition"], note["attempt"]) == ("HH", 1)
        stored = await store.pool.fetch("SELECT attempt, raised_at_ns FROM alarm_escalations")
        assert [tuple(r) for r in stored] == [(1, T0)]

        engine, notifier, feed = await start()  # the restart
        for t in (62, 120, 359):
            await tick_at(engine, notifier, t)
        assert feed.empty()
        await tick_at(engine, notifier, 361)
        (note,) = await feed.get()
        assert (note["attempt"], note["role"]) == (2, "leader")

        hh = next(i for i, k in engine.keys.items() if k[1] is Condition.HH)
        await engine.operate([hh], lambda a, t: sm.acknowledge(a, "duty", None, t))
        await tick_at(engine, notifier, 400)
        assert await store.pool.fetchval("SELECT count(*) FROM alarm_escalations") == 0
    finally:
        await store.close()
