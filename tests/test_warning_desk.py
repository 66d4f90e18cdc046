"""The warning desk on a real database with an injected clock: a persisting 二级 gas alarm
issues an orange warning, the enterprise signs, the feedback deadline passes and the warning is
escalated; a restart restores it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pytest

from alarms import warnings as wm
from alarms.engine import AlarmEngine
from alarms.reports import Reports
from alarms.rules import RuleArrays, SourceState, SuppressionSettings, rules_from_config
from alarms.warning_desk import Geography, WarningDesk
from streams import Hub, SampleBatch, Subscription
from streams.config import parse_config
from streams.quality import Quality
from streams.registry import PointIndex, sync_config
from streams.store import Store
from web.sources import SourceStates

CONFIG = """
[[enterprises]]
code = "E9"
name = "甲化工"
region = "320116"
  [[enterprises.hazard_sources]]
  code = "HS1"
  name = "液氨储罐区"
  grade = 2
  responsible = [
    { duty = "principal", name = "王总", username = "enterprise" },
    { duty = "technical", name = "李工" },
    { duty = "operational", name = "张班长", phone = "13800000000" },
  ]
  [[enterprises.devices]]
  code = "GDS1"
  protocol = "modbus"
  host = "127.0.0.1"
  hazard_source = "HS1"
    [[enterprises.devices.points]]
    code = "GD-1"
    name = "液氨储罐区有毒气体检测器"
    kind = "gas"
    gas = "NH3"
    unit = "mg/m3"
    table = "input"
    address = 0
    range = [0, 60]
    limits = { hh = 40, h = 20 }
"""
T0 = 1_796_000_000 * 10**9
SECOND = 10**9
MIN = 60 * SECOND


@dataclass
class Desk:
    store: Store
    hub: Hub
    engine: AlarmEngine
    desk: WarningDesk
    points: PointIndex
    now: list[int]
    sub: Subscription


@contextlib.asynccontextmanager
async def _open(database_url: str, config: str) -> AsyncIterator[Desk]:
    """The desk of `config` on a real database, its engine fed by a real hub, on a clock the
    test moves (`now[0]`)."""
    cfg = parse_config(config)
    store = await Store.open(database_url)
    index = await sync_config(store.pool, cfg)
    now = [T0]
    rules = rules_from_config(cfg, {(p.enterprise, p.code): p.id for p in index})
    engine = AlarmEngine(store.pool, RuleArrays.build(rules), clock=lambda: now[0])
    hs = cfg.enterprises[0].hazard_sources[0]
    people = [wm.Recipient(wm.Duty(r.duty), r.name, r.username, r.phone) for r in hs.responsible]
    hub = Hub()
    desk = WarningDesk(
        store.pool, engine, index, {("E9", "HS1"): 2}, {("E9", "HS1"): people},
        clock=lambda: now[0], geography=Geography(cfg, index, hub.latest),
    )  # fmt: skip
    sub = hub.subscribe("alarms")
    task = asyncio.create_task(engine.run(sub))
    try:
        yield Desk(store, hub, engine, desk, index, now, sub)
    finally:
        sub.close()
        await task
        await store.close()


@pytest.fixture
async def d(database_url: str) -> AsyncIterator[Desk]:
    async with _open(database_url, CONFIG) as desk:
        yield desk


async def _reading(d: Desk, value: float, at: int) -> None:
    await d.hub.publish(SampleBatch.of(at, [d.points.id("E9", "GD-1")], [value]))
    await d.sub.join()  # the engine has evaluated it


async def test_persisting_level_2_gas_alarm_issues_orange_then_escalates(d: Desk) -> None:
    await _reading(d, 45.0, T0)  # above 二级 (HH 40 mg/m³)
    d.now[0] = T0 + 10 * MIN
    await d.desk.evaluate()
    assert not d.desk.warnings  # 10 minutes: not yet

    d.now[0] = T0 + 16 * MIN  # past T₁ = 15 min without disposal feedback
    await d.desk.evaluate()
    (w,) = d.desk.warnings.values()
    assert (w.enterprise, w.hazard_source, w.level) == ("E9", "HS1", wm.WarningLevel.ORANGE)
    assert w.rule == "orange.critical_unhandled"
    assert w.state is wm.WarningState.PUSHED
    await d.desk.evaluate()
    assert len(d.desk.warnings) == 1  # the persisting finding issues nothing new

    d.now[0] = T0 + 17 * MIN
    assert w.id is not None
    signed = await d.desk.act(
        w.id, lambda x, now: wm.sign(x, wm.Actor("enterprise", "enterprise", "E9"), now,
                                     d.desk.rules)
    )  # fmt: skip
    assert signed.state is wm.WarningState.SIGNED

    d.now[0] = T0 + (17 + 31) * MIN  # the orange feedback deadline (30 min) has passed
    await d.desk.evaluate()
    late = d.desk.warnings[w.id]
    assert "feedback" in late.overdue
    assert [s.action for s in late.steps][-1] is wm.StepAction.ESCALATED

    # A restart restores the warning exactly, and its record is in the database.
    again = WarningDesk(
        d.store.pool, d.engine, d.points, {("E9", "HS1"): 2}, clock=lambda: d.now[0]
    )
    assert await again.restore() == 1
    assert again.warnings[w.id] == late
    stored = await d.store.pool.fetchval("SELECT state FROM warnings WHERE id = $1", w.id)
    assert stored == "signed"


async def test_maintenance_left_past_its_planned_end_issues_blue_until_it_is_set_back(
    d: Desk,
) -> None:
    """The source's operating state as the server keeps it (web.sources): maintenance planned
    to end at T0 + 1 h is a blue warning once the 30 min of grace past that end are over, and
    the finding ends when the enterprise sets the source back to running."""
    states = SourceStates(d.store.pool, d.engine, parse_config(CONFIG), d.points,
                          SuppressionSettings())  # fmt: skip
    d.desk.reports = Reports(
        d.store.pool, d.desk.rules, {"E9": ["HS1"]}, operating_states=states.states,
        clock=lambda: d.now[0],
    )  # fmt: skip
    end = datetime.fromtimestamp((T0 + 60 * MIN) / SECOND, UTC)
    await states.set("E9", "HS1", SourceState.MAINTENANCE, "年度检修", "enterprise", end)

    def at_hs1() -> list[wm.Warning]:
        return [w for w in d.desk.warnings.values() if w.hazard_source == "HS1"]

    d.now[0] = T0 + 89 * MIN
    await d.desk.evaluate()
    assert at_hs1() == []  # (the enterprise's missing daily commitment is a warning of its own)

    d.now[0] = T0 + 91 * MIN
    await d.desk.evaluate()
    (w,) = at_hs1()
    assert (w.hazard_source, w.level, w.rule) == ("HS1", wm.WarningLevel.BLUE, "blue.state_overdue")
    assert [e.zh for e in w.evidence] == ["检维修已超过计划结束时间31分钟"]
    assert [r.name for r in w.recipients] == ["王总", "李工", "张班长"]

    await states.set("E9", "HS1", SourceState.RUNNING, "检修完毕", "enterprise")
    await d.desk.evaluate()
    assert ("E9", "HS1") not in d.desk.findings
    assert d.desk.warnings[w.id].condition_active is False


async def test_a_warning_shows_what_holds_at_its_source_now_beside_its_evidence(d: Desk) -> None:
    await _reading(d, 45.0, T0)
    d.now[0] = T0 + 16 * MIN
    await d.desk.evaluate()
    (w,) = d.desk.warnings.values()
    now = d.desk.now(w)
    assert now["evaluated_at"] == "2026-11-30T01:09:20+00:00"  # T0 + 16 min
    finding = now["finding"]
    assert (finding["level"], finding["rule"]) == ("orange", "orange.critical_unhandled")
    assert [e["zh"] for e in finding["evidence"]] == [e.zh for e in w.evidence]

    # The gas is gone: the warning keeps its evidence, and nothing holds now.
    await _reading(d, 2.0, T0 + 17 * MIN)
    d.now[0] = T0 + 18 * MIN
    await d.desk.evaluate()
    (w,) = d.desk.warnings.values()
    assert w.evidence and not w.condition_active
    assert d.desk.now(w) == {"evaluated_at": "2026-11-30T01:11:20+00:00", "finding": None}


async def test_closing_answers_the_closed_warning_and_it_leaves_the_desk(d: Desk) -> None:
    await _reading(d, 45.0, T0)
    d.now[0] = T0 + 16 * MIN
    await d.desk.evaluate()
    (w,) = d.desk.warnings.values()
    assert w.id is not None
    officer = wm.Actor("duty", "duty_officer")
    rules = d.desk.rules
    await d.desk.act(w.id, lambda x, now: wm.clear(x, officer, now, rules, "on site: a leak test"))
    await d.desk.act(w.id, lambda x, now: wm.review(x, officer, now, rules))
    closed = await d.desk.act(w.id, lambda x, now: wm.close(x, officer, now, rules))
    assert closed.state is wm.WarningState.CLOSED and closed.id == w.id
    assert w.id not in d.desk.warnings
    stored = await d.store.pool.fetchval("SELECT state FROM warnings WHERE id = $1", w.id)
    assert stored == "closed"
    # The record of a closed warning is still there to read, from the database.
    assert await d.desk.record(w.id) == closed
    assert await d.desk.record(w.id + 1) is None


async def test_unacknowledged_alarm_escalates_up_the_roster_until_acknowledged(d: Desk) -> None:
    from alarms import state as sm
    from alarms.escalation import EscalationPolicy
    from alarms.notify import Notifier, WebSocketChannel

    policy = EscalationPolicy.model_validate(
        {"timing": {"1": {"t1_s": 120, "t2_s": 300}, "2": {"t1_s": 300, "t2_s": 600}}}
    )
    channel = WebSocketChannel()
    feed = channel.events.listen()
    notifier = Notifier([channel])
    d.engine.escalate_with(policy, notifier, {d.points.id("E9", "GD-1"): "GD-1"})
    await _reading(d, 45.0, T0)  # HH (priority 1) and H (priority 2)

    d.now[0] = T0 + 119 * 10**9
    await d.engine.tick()
    await notifier.drain()
    assert feed.empty()
    d.now[0] = T0 + 121 * 10**9  # past T1 of the priority-1 alarm
    await d.engine.tick()
    await notifier.drain()
    (note,) = await feed.get()
    assert (note["condition"], note["role"], note["attempt"]) == ("HH", "shift_leader", 1)

    hh = next(i for i, k in d.engine.keys.items() if k[1].name == "HH")
    await d.engine.operate([hh], lambda a, now: sm.acknowledge(a, "duty", None, now))
    d.now[0] = T0 + 500 * 10**9  # HH acknowledged: only the H alarm is still due (T1 300 s)
    await d.engine.tick()
    await notifier.drain()
    (note,) = await feed.get()
    assert note["condition"] == "H"
    assert feed.empty()


# The same enterprise placed on the map, with its weather station and a school 1.5 km east.
WIND_CONFIG = (
    CONFIG.replace('region = "320116"\n', 'region = "320116"\nlon = 118.79\nlat = 32.26\n')
    + """
  [[enterprises.devices]]
  code = "WS1"
  protocol = "modbus"
  host = "127.0.0.1"
    [[enterprises.devices.points]]
    code = "WS1.WD"
    name = "风向"
    kind = "wind_direction"
    unit = "°"
    table = "input"
    address = 0
    [[enterprises.devices.points]]
    code = "WS1.WS"
    name = "风速"
    kind = "wind_speed"
    unit = "m/s"
    table = "input"
    address = 2
  [[enterprises.sensitive_targets]]
  name = "中心小学"
  kind = "school"
  lon = 118.806
  lat = 32.26
"""
)


async def test_a_toxic_level_2_alarm_with_the_wind_toward_a_school_issues_red(
    database_url: str,
) -> None:
    async with _open(database_url, WIND_CONFIG) as d:
        wind = [d.points.id("E9", "WS1.WD"), d.points.id("E9", "WS1.WS")]

        async def blow(from_deg: float, seconds: int) -> list[wm.Warning]:
            """The station reads `from_deg` at 3 m/s for `seconds`, the desk evaluating every
            5 s; the red warnings then."""
            for _ in range(seconds // 5):
                d.now[0] += 5 * SECOND
                await d.hub.publish(SampleBatch.of(d.now[0], wind, [from_deg, 3.0]))
                await d.sub.join()
                await d.desk.evaluate()
            return [w for w in d.desk.warnings.values() if w.level is wm.WarningLevel.RED]

        gas = d.points.id("E9", "GD-1")
        await d.hub.publish(SampleBatch.of(T0, [gas], [45.0]))  # 二级 (HH 40 mg/m³)
        await d.sub.join()
        # A south wind (from 180°) blows north, away from the school 1.5 km east of the tanks.
        assert await blow(180.0, 120) == []
        # The wind turns west (from 270°): toward the school, red at the desk's next look.
        (red,) = await blow(270.0, 5)
        assert red.rule == "red.toxic_gas_toward_target"
        (school,) = [e for e in red.evidence if e.code == "wind_target"]
        assert school.params["target"] == "中心小学"
        assert 1450 <= school.params["distance_m"] <= 1550
        assert school.params["wind_from_deg"] == 270
        # Back to the south: the condition holds while the west wind is within the 2-minute
        # window, then ends once, not at every turn of the wind.
        (red,) = await blow(180.0, 110)
        assert red.condition_active
        (red,) = await blow(180.0, 15)
        assert not red.condition_active
        ended = [s for s in red.steps if s.action is wm.StepAction.CONDITION_ENDED]
        assert len(ended) == 1


async def test_the_wind_of_the_window_before_a_restart_still_counts(database_url: str) -> None:
    """The desk sees the wind at each of its looks and keeps the rule's 2-minute window. At a
    start-up it takes up the window from the store: a west wind toward the school a minute
    before the restart still counts (without it, the south wind now would issue nothing)."""
    async with _open(database_url, WIND_CONFIG) as d:
        wind = [d.points.id("E9", "WS1.WD"), d.points.id("E9", "WS1.WS")]
        at = np.arange(T0 - 90 * SECOND, T0, 5 * SECOND, dtype=np.int64)
        direction = np.where(at < T0 - 55 * SECOND, 270.0, 180.0)  # west, then south
        ts = np.repeat(at, 2)
        values = np.column_stack([direction, np.full(len(at), 3.0)]).ravel()
        quality = np.zeros(len(ts), np.int16)
        quality[-1] = int(Quality.COMM_FAIL)  # a failed reading is no wind
        await d.store.ensure_partitions(int(ts.min()), int(ts.max()))
        await d.store.pool.execute(
            "INSERT INTO samples (ts, point, value, quality)"
            " SELECT 'epoch'::timestamptz + us * interval '1 microsecond', p, v, q"
            " FROM unnest($1::bigint[], $2::int4[], $3::float8[], $4::int2[]) AS u(us, p, v, q)",
            (ts // 1000).tolist(), wind * len(at), values.tolist(), quality.tolist(),
        )  # fmt: skip
        await d.store.pool.execute(  # another point: not wind
            "INSERT INTO samples (ts, point, value, quality) VALUES ($1, $2, 90, 0)",
            datetime.fromtimestamp((T0 - 30 * SECOND) / 1e9, UTC), d.points.id("E9", "GD-1"),
        )  # fmt: skip

        geo = d.desk.geography
        assert geo is not None and d.desk.wind_window_s == 120.0
        readings = await d.store.readings(wind, T0 - 120 * SECOND, T0)
        assert len(readings) == len(ts) - 1
        assert geo.seed(readings) == len(at)  # the last speed failed: its time is still paired
        assert {w.from_deg for w in geo.winds(T0, 120.0)["E9"]} == {270.0, 180.0}

        gas = d.points.id("E9", "GD-1")
        await d.hub.publish(SampleBatch.of(T0, [gas], [45.0]))  # 二级 (HH 40 mg/m³)
        await d.hub.publish(SampleBatch.of(T0, wind, [180.0, 3.0]))  # south: away, now
        await d.sub.join()
        d.now[0] = T0
        await d.desk.evaluate()
        (red,) = [w for w in d.desk.warnings.values() if w.level is wm.WarningLevel.RED]
        (school,) = [e for e in red.evidence if e.code == "wind_target"]
        assert school.params["wind_from_deg"] == 270
