"""Suppression by design (ISA-18.2) on a real database with an injected clock: causes by key,
re-evaluation when the last one lifts, restart; first-out groups; hazard-source operating states
over the API (scoping, audit, restart); first-out groups in the configuration."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import ClientSession, CookieJar

from alarms.engine import AlarmEngine, FirstOutGroup, device_groups
from alarms.model import AlarmClass, AlarmState, Condition
from alarms.rules import RuleArrays, rules_from_config
from anjian.runtime import Running
from streams import Hub, SampleBatch, Subscription
from streams.config import ConfigError, parse_config
from streams.quality import Quality
from streams.registry import PointIndex, sync_config
from streams.store import Store
from tests.conftest import DUTY, ENTERPRISE, serving, sign_in

CONFIG = """
[alarms.defaults]
bad_quality_after_s = 0.0

[[enterprises]]
code = "E9"
name = "甲化工"
region = "320116"
  [[enterprises.hazard_sources]]
  code = "HS1"
  name = "液氨储罐区"
  [[enterprises.hazard_sources]]
  code = "HS2"
  name = "罐区二"
  [[enterprises.devices]]
  code = "D1"
  protocol = "modbus"
  host = "127.0.0.1"
  port = 1
  hazard_source = "HS1"
    [[enterprises.devices.points]]
    code = "GD-1"
    name = "氨气检测器"
    kind = "gas"
    gas = "NH3"
    unit = "mg/m3"
    table = "input"
    address = 0
    range = [0, 60]
    limits = { hh = 40, h = 20 }
    [[enterprises.devices.points]]
    code = "PT-1"
    name = "压力"
    table = "input"
    address = 2
    limits = { hh = 2.0, h = 1.5 }
    [[enterprises.devices.points]]
    code = "LT-1"
    name = "液位"
    table = "input"
    address = 4
    limits = { hh = 9.0, h = 8.0 }
    [[enterprises.devices.points]]
    code = "TT-1"
    name = "温度"
    table = "input"
    address = 6
    limits = { hh = 50.0, h = 40.0 }
  [[enterprises.devices]]
  code = "D2"
  protocol = "modbus"
  host = "127.0.0.1"
  port = 1
  hazard_source = "HS2"
    [[enterprises.devices.points]]
    code = "GD-2"
    name = "罐区二检测器"
    kind = "gas"
    gas = "NH3"
    unit = "mg/m3"
    table = "input"
    address = 0
    range = [0, 60]
    limits = { hh = 40, h = 20 }
  [[enterprises.first_out_groups]]
  code = "TK1-trip"
  points = ["PT-1", "LT-1", "TT-1"]

[[enterprises]]
code = "E8"
name = "乙化工"
region = "320116"
  [[enterprises.hazard_sources]]
  code = "HS8"
  name = "乙罐区"
"""
T0 = 1_796_000_000 * 10**9
S = 10**9


@dataclass
class Plant:
    store: Store
    hub: Hub
    engine: AlarmEngine
    points: PointIndex
    now: list[int]
    sub: Subscription
    task: asyncio.Task[None]

    def id(self, code: str) -> int:
        return self.points.id("E9", code)

    async def read(self, values: dict[str, float], at_s: float, quality: int = 0) -> None:
        ids = [self.id(c) for c in values]
        self.now[0] = T0 + round(at_s * S)
        await self.hub.publish(SampleBatch.of(self.now[0], ids, list(values.values()), quality))
        await self.sub.join()  # the engine has evaluated it

    def state(self, code: str, condition: Condition) -> AlarmState | None:
        a = self.engine.alarms.get((self.id(code), condition))
        return None if a is None else a.state

    async def events(self, code: str, condition: Condition) -> list[tuple[Any, ...]]:
        rows = await self.store.pool.fetch(
            "SELECT kind, from_state, to_state, who, why FROM alarm_events"
            " WHERE point = $1 AND condition = $2 ORDER BY id",
            self.id(code), int(condition),
        )  # fmt: skip
        return [tuple(r) for r in rows]


async def _engine(
    store: Store,
    index: PointIndex,
    now: list[int],
    group: tuple[str, ...] = ("PT-1", "LT-1", "TT-1"),
) -> AlarmEngine:
    cfg = parse_config(CONFIG)
    rules = rules_from_config(cfg, {(p.enterprise, p.code): p.id for p in index})
    engine = AlarmEngine(store.pool, RuleArrays.build(rules), clock=lambda: now[0])
    ids = tuple(index.id("E9", c) for c in group)
    engine.first_out_groups([FirstOutGroup("firstout:E9/TK1-trip", ids)] if group else [])
    engine.device_groups(device_groups(cfg, {(p.enterprise, p.code): p.id for p in index}))
    engine.point_names = {p.id: p.code for p in index}
    await engine.restore()
    return engine


@pytest.fixture
async def plant(database_url: str) -> AsyncIterator[Plant]:
    store = await Store.open(database_url)
    index = await sync_config(store.pool, parse_config(CONFIG))
    now = [T0]
    engine = await _engine(store, index, now)
    hub = Hub()
    sub = hub.subscribe("alarms")
    task = asyncio.create_task(engine.run(sub))
    p = Plant(store, hub, engine, index, now, sub, task)
    try:
        yield p
    finally:
        p.sub.close()
        await p.task
        await store.close()


async def _restart(p: Plant, group: tuple[str, ...] = ("PT-1", "LT-1", "TT-1")) -> None:
    p.sub.close()
    await p.task
    p.engine = await _engine(p.store, p.points, p.now, group)
    p.hub = Hub()
    p.sub = p.hub.subscribe("alarms")
    p.task = asyncio.create_task(p.engine.run(p.sub))


async def test_suppression_hides_alarms_and_lifting_it_reevaluates_the_condition(
    plant: Plant,
) -> None:
    p = plant
    gd = p.id("GD-1")
    await p.read({"GD-1": 25.0}, 0)  # above 一级 (H 20 mg/m³)
    assert p.state("GD-1", Condition.H) is AlarmState.UNACK
    key = "source:E9/HS1:maintenance"
    await p.engine.set_design_suppression(key, [gd], True, "检修: 更换阀门", "duty")
    assert p.state("GD-1", Condition.H) is AlarmState.SUPPRESSED
    # A new condition of a covered point is born suppressed: nothing is annunciated.
    await p.read({"GD-1": 45.0}, 10)
    assert p.state("GD-1", Condition.HH) is AlarmState.SUPPRESSED
    await p.read({"GD-1": 30.0}, 20)  # HH clears while hidden; H stays active

    await p.engine.set_design_suppression(key, [gd], False, "检修完毕", "shift")
    assert p.state("GD-1", Condition.H) is AlarmState.UNACK  # still active: raised again
    assert p.state("GD-1", Condition.HH) is AlarmState.NORMAL  # cleared meanwhile: normal
    assert await p.events("GD-1", Condition.H) == [
        ("raised", "normal", "unack", None, None),
        ("suppressed", "unack", "suppressed", "duty", "检修: 更换阀门"),
        ("unsuppressed", "suppressed", "normal", "shift", "end of: 检修: 更换阀门 (检修完毕)"),
        ("raised", "normal", "unack", None, "unsuppressed while active"),
    ]
    assert [e[0] for e in await p.events("GD-1", Condition.HH)] == ["suppressed", "unsuppressed"]
    assert await p.store.pool.fetchval("SELECT count(*) FROM alarm_suppressions") == 0


async def test_a_point_stays_suppressed_while_any_key_covers_it(plant: Plant) -> None:
    p = plant
    gd = p.id("GD-1")
    await p.read({"GD-1": 25.0}, 0)
    await p.engine.set_design_suppression("source:E9/HS1:stopped", [gd], True, "停用", "duty")
    await p.engine.set_design_suppression("manual:test", [gd], True, "第二原因", "duty")
    await p.engine.set_design_suppression("source:E9/HS1:stopped", [], False, "恢复", "duty")
    assert p.state("GD-1", Condition.H) is AlarmState.SUPPRESSED
    assert [e[0] for e in await p.events("GD-1", Condition.H)] == ["raised", "suppressed"]
    await p.engine.set_design_suppression("manual:test", [], False, "恢复", "duty")
    assert p.state("GD-1", Condition.H) is AlarmState.UNACK
    # Lifting a key that is not set is harmless.
    await p.engine.set_design_suppression("manual:test", [], False, "again", "duty")
    with pytest.raises(ValueError, match="a reason is required"):
        await p.engine.set_design_suppression("manual:x", [gd], True, "  ", "duty")


async def test_quality_alarms_are_not_suppressed_by_default(plant: Plant) -> None:
    p = plant
    gd = p.id("GD-1")
    await p.engine.set_design_suppression("source:E9/HS1:maintenance", [gd], True, "检修", "duty")
    await p.read({"GD-1": float("nan")}, 0, quality=Quality.COMM_FAIL)
    assert p.state("GD-1", Condition.BAD_QUALITY) is AlarmState.UNACK
    # …unless the key names the quality class too.
    await p.engine.set_design_suppression(
        "source:E9/HS1:maintenance", [gd], True, "检修", "duty",
        classes=[AlarmClass.GAS, AlarmClass.QUALITY],
    )  # fmt: skip
    assert p.state("GD-1", Condition.BAD_QUALITY) is AlarmState.SUPPRESSED


async def test_restart_restores_the_active_keys(plant: Plant) -> None:
    p = plant
    gd = p.id("GD-1")
    await p.engine.set_design_suppression("source:E9/HS1:maintenance", [gd], True, "检修", "duty")
    await _restart(p)
    assert set(p.engine.suppressions) == {"source:E9/HS1:maintenance"}
    s = p.engine.suppressions["source:E9/HS1:maintenance"]
    assert (s.points, s.reason, s.by, s.since_ns) == (frozenset({gd}), "检修", "duty", T0)
    await p.read({"GD-1": 45.0}, 5)
    assert p.state("GD-1", Condition.HH) is AlarmState.SUPPRESSED
    await p.engine.set_design_suppression("source:E9/HS1:maintenance", [], False, "完", "duty")
    assert p.state("GD-1", Condition.HH) is AlarmState.UNACK


async def test_first_out_group_annunciates_only_the_first_until_it_returns_to_normal(
    plant: Plant,
) -> None:
    p = plant
    await p.read({"PT-1": 1.0, "LT-1": 5.0, "TT-1": 20.0}, 0)
    await p.read({"PT-1": 1.7}, 1)  # the pressure alarms first: it leads
    await p.read({"LT-1": 8.5, "TT-1": 45.0}, 2)  # the consequences
    assert p.state("PT-1", Condition.H) is AlarmState.UNACK
    assert p.state("LT-1", Condition.H) is AlarmState.SUPPRESSED
    assert p.state("TT-1", Condition.H) is AlarmState.SUPPRESSED
    [e] = [e for e in await p.events("LT-1", Condition.H) if e[0] == "suppressed"]
    assert e[3] == "system" and e[4] == "first-out group E9/TK1-trip: PT-1 alarmed first"
    fo = p.engine.suppressions["firstout:E9/TK1-trip"]
    assert fo.leader == p.id("PT-1")
    leader = p.engine.ids[(p.id("PT-1"), Condition.H)]
    follower = p.engine.ids[(p.id("LT-1"), Condition.H)]
    assert (p.engine.view(leader)["suppressing"], p.engine.view(follower)["suppressing"]) == (2, 0)

    # The leader returns to normal: the group is released, the followers still active are
    # annunciated now (re-evaluated), and a member alarming meanwhile starts no new episode.
    await p.read({"PT-1": 1.0}, 3)
    assert p.state("PT-1", Condition.H) is AlarmState.RTN_UNACK
    assert p.state("LT-1", Condition.H) is AlarmState.UNACK
    assert p.state("TT-1", Condition.H) is AlarmState.UNACK
    assert "firstout:E9/TK1-trip" not in p.engine.suppressions
    assert [e[:3] for e in await p.events("TT-1", Condition.H)] == [
        ("suppressed", "normal", "suppressed"),
        ("unsuppressed", "suppressed", "normal"),
        ("raised", "normal", "unack"),
    ]
    await p.read({"PT-1": 1.7}, 4)
    assert p.state("PT-1", Condition.H) is AlarmState.UNACK
    assert "firstout:E9/TK1-trip" not in p.engine.suppressions

    await p.read({"PT-1": 1.0, "LT-1": 5.0, "TT-1": 20.0}, 5)  # all normal: episode over
    await p.read({"TT-1": 45.0}, 6)  # a new episode: the temperature leads now
    assert p.state("TT-1", Condition.H) is AlarmState.UNACK
    assert p.engine.suppressions["firstout:E9/TK1-trip"].leader == p.id("TT-1")
    assert p.state("PT-1", Condition.H) is AlarmState.SUPPRESSED  # was rtn_unack… now hidden


async def test_first_out_in_one_batch_the_earliest_sample_leads(plant: Plant) -> None:
    p = plant
    lt, tt = p.id("LT-1"), p.id("TT-1")
    p.now[0] = T0 + 2 * S
    await p.hub.publish(SampleBatch.of([T0 + 2 * S, T0 + S], [lt, tt], [8.5, 45.0]))
    await p.sub.join()
    assert p.state("TT-1", Condition.H) is AlarmState.UNACK
    assert p.state("LT-1", Condition.H) is AlarmState.SUPPRESSED


async def test_first_out_suppression_follows_the_configured_groups_after_a_restart(
    plant: Plant,
) -> None:
    p = plant
    await p.read({"PT-1": 1.7, "LT-1": 8.5, "TT-1": 45.0}, 1)
    assert p.state("TT-1", Condition.H) is AlarmState.SUPPRESSED
    await _restart(p, ("PT-1", "LT-1"))  # TT-1 left the group: it is annunciated now
    assert p.engine.suppressions["firstout:E9/TK1-trip"].points == {p.id("LT-1")}
    assert p.state("TT-1", Condition.H) is AlarmState.UNACK
    assert p.state("LT-1", Condition.H) is AlarmState.SUPPRESSED
    await _restart(p, ())  # no group any more: released
    assert not p.engine.suppressions
    assert p.state("LT-1", Condition.H) is AlarmState.UNACK


BAD = Condition.BAD_QUALITY
D1 = ("GD-1", "PT-1", "LT-1", "TT-1")  # the points of device D1


async def test_a_lost_device_is_one_alarm_and_its_points_wait_for_its_return(plant: Plant) -> None:
    p = plant
    lost = dict.fromkeys((*D1, "D1.link"), float("nan"))
    await p.read(lost, 0, quality=Quality.COMM_FAIL)
    assert p.state("D1.link", BAD) is AlarmState.UNACK
    assert {c: p.state(c, BAD) for c in D1} == dict.fromkeys(D1, AlarmState.SUPPRESSED)
    assert await p.events("GD-1", BAD) == [
        (
            "suppressed",
            "normal",
            "suppressed",
            "system",
            "设备 D1 通讯中断 (device E9/D1 communication lost)",
        )
    ]
    await _restart(p)  # the loss and its suppression are restored
    assert p.engine.suppressions["device:E9/D1"].points == frozenset(p.id(c) for c in D1)

    # The link is back first (a collector sets it at its first success), the values come with
    # the next read: until every point has reported, the points stay hidden, and those that
    # are good by then were never annunciated.
    await p.read({"D1.link": 1.0}, 5)
    assert p.state("D1.link", BAD) is AlarmState.RTN_UNACK
    await p.read({"GD-1": 1.0, "PT-1": 1.0, "LT-1": 5.0}, 6)
    assert "device:E9/D1" in p.engine.suppressions  # TT-1 has not reported yet
    await p.read({"TT-1": 20.0}, 6.5)
    assert "device:E9/D1" not in p.engine.suppressions
    assert {c: p.state(c, BAD) for c in D1} == dict.fromkeys(D1, AlarmState.NORMAL)
    assert [e[:3] for e in await p.events("TT-1", BAD)] == [
        ("suppressed", "normal", "suppressed"), ("unsuppressed", "suppressed", "normal"),
    ]  # fmt: skip

    # Lost again; back, but one sensor reports a failure of its own: after the grace (5 s) the
    # device's points are released, and that sensor's alarm is annunciated.
    await p.read(lost, 10, quality=Quality.COMM_FAIL)
    await p.read({"D1.link": 1.0, "GD-1": 1.0, "PT-1": 1.0, "LT-1": 5.0}, 15)
    await p.read({"TT-1": float("nan")}, 15, quality=Quality.BAD)
    p.now[0] = T0 + 19 * S
    await p.engine.tick()
    assert "device:E9/D1" in p.engine.suppressions
    p.now[0] = T0 + 20 * S
    await p.engine.tick()
    assert "device:E9/D1" not in p.engine.suppressions
    assert p.state("TT-1", BAD) is AlarmState.UNACK
    assert p.state("GD-1", BAD) is AlarmState.NORMAL
    [why] = [e[4] for e in await p.events("TT-1", BAD) if e[0] == "unsuppressed"][-1:]
    lost = "设备 D1 通讯中断 (device E9/D1 communication lost)"
    assert why == f"end of: {lost} (communication restored; points still bad)"


async def test_a_device_alarm_is_not_hidden_by_maintenance_and_leaves_other_devices_alone(
    plant: Plant,
) -> None:
    p = plant
    await p.engine.set_design_suppression(
        "source:E9/HS1:maintenance", [p.id(c) for c in D1], True, "检修", "duty",
        classes=[AlarmClass.PROCESS, AlarmClass.GAS],
    )  # fmt: skip
    await p.read(dict.fromkeys((*D1, "D1.link"), float("nan")), 0, quality=Quality.COMM_FAIL)
    await p.read({"GD-2": float("nan")}, 0, quality=Quality.BAD)  # D2's sensor, D2 is up
    assert p.state("D1.link", BAD) is AlarmState.UNACK
    assert p.state("GD-2", BAD) is AlarmState.UNACK
    assert set(p.engine.suppressions) == {"source:E9/HS1:maintenance", "device:E9/D1"}


def test_first_out_groups_in_the_config_are_checked_with_their_line() -> None:
    bad = CONFIG.replace('points = ["PT-1", "LT-1", "TT-1"]', 'points = ["PT-1", "XX-9"]')
    with pytest.raises(ConfigError) as info:
        parse_config(bad, "plant.toml")
    line = bad.splitlines().index('  points = ["PT-1", "XX-9"]') + 1
    assert str(info.value).splitlines()[1] == (
        f"  plant.toml:{line}: enterprises[0].first_out_groups[0].points[1]: first-out group "
        "'TK1-trip' names unknown point 'XX-9' (got 'XX-9')"
    )
    twice = CONFIG.replace(
        '  points = ["PT-1", "LT-1", "TT-1"]',
        '  points = ["PT-1", "LT-1"]\n  [[enterprises.first_out_groups]]\n  code = "G2"\n'
        '  points = ["TT-1", "LT-1"]',
    )
    with pytest.raises(ConfigError, match=r"points\[1\]: point 'LT-1' is already in first-out"):
        parse_config(twice)
    with pytest.raises(ConfigError, match="at least 2 items"):
        parse_config(CONFIG.replace('points = ["PT-1", "LT-1", "TT-1"]', 'points = ["PT-1"]'))


# -- hazard-source operating states over the API -------------------------------------------------


@dataclass
class App:
    run: Running
    http: dict[str, ClientSession]
    served: contextlib.AsyncExitStack

    async def call(self, who: str, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        r = await self.http[who].request(method, path, **kw)
        return r.status, await r.json()

    async def close(self) -> None:
        for h in self.http.values():
            await h.close()
        await self.served.aclose()


async def _app(db: str, tmp: Path) -> App:
    config = tmp / "plant.toml"
    config.write_text(CONFIG, encoding="utf-8")
    stack = contextlib.AsyncExitStack()
    served = await stack.enter_async_context(serving(config, db, "E9"))
    http = {}
    users = {"duty": DUTY, "enterprise": ENTERPRISE, "shift": ("shift", "Shift@2026!")}
    for who, (user, password) in users.items():
        h = ClientSession(served.url, cookie_jar=CookieJar(unsafe=True))
        h.headers["X-CSRF-Token"] = await sign_in(h, user, password)
        http[who] = h
    return App(served.run, http, stack)


async def _until(check: Callable[[], bool], timeout: float = 10) -> None:
    for _ in range(int(timeout / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_source_state_over_the_api_suppresses_its_alarms_scoped_audited_restored(
    database_url: str, tmp_path: Path
) -> None:
    app = await _app(database_url, tmp_path)
    engine = app.run.alarms
    gd1, gd2 = app.run.points.id("E9", "GD-1"), app.run.points.id("E9", "GD-2")

    def state(point: int, condition: Condition) -> AlarmState | None:
        a = engine.alarms.get((point, condition))
        return None if a is None else a.state

    try:
        status, body = await app.call("duty", "GET", "/api/sources/HS1/state")
        assert (status, body["state"], body["state_zh"]) == (200, "running", "运行")
        status, body = await app.call(
            "enterprise", "POST", "/api/sources/HS1/state",
            json={"state": "maintenance", "reason": "年度检修"},
        )  # fmt: skip
        assert status == 200, body
        assert (body["state"], body["set_by"], body["reason"]) == (
            "maintenance", "enterprise", "年度检修",
        )  # fmt: skip
        # Another enterprise's source does not exist for an enterprise user; bad bodies are 400.
        status, body = await app.call(
            "enterprise", "POST", "/api/sources/HS8/state",
            json={"state": "stopped", "reason": "x"},
        )  # fmt: skip
        assert status == 404 and "HS8" in body["error"]
        status, body = await app.call(
            "duty", "POST", "/api/sources/HS1/state", json={"state": "idle", "reason": "x"}
        )
        assert status == 400 and body["field"] == "state"
        status, body = await app.call(
            "duty", "POST", "/api/sources/HS1/state", json={"state": "stopped", "reason": " "}
        )
        assert status == 400 and body["field"] == "reason"

        now = engine.clock()
        await app.run.hub.publish(SampleBatch.of(now, [gd1, gd2], [45.0, 45.0]))
        await _until(lambda: state(gd2, Condition.HH) is AlarmState.UNACK)
        # D1 (port 1) never answers: its lost communication is one alarm, on its link point,
        # and the maintenance does not hide it (a quality alarm); that alarm suppresses its
        # points' own quality alarms.
        link, pt1 = app.run.points.id("E9", "D1.link"), app.run.points.id("E9", "PT-1")
        await _until(lambda: state(link, Condition.BAD_QUALITY) is AlarmState.UNACK)
        await _until(lambda: state(pt1, Condition.BAD_QUALITY) is AlarmState.SUPPRESSED)
        assert state(gd1, Condition.HH) is AlarmState.SUPPRESSED  # HS1 is in maintenance
        status, board = await app.call("duty", "GET", "/api/alarms")
        shown = {(a["code"], a["condition"]): a["state"] for a in board["alarms"]}
        assert shown[("GD-1", "HH")] == "suppressed"
        hidden = next(a for a in board["alarms"] if a["code"] == "GD-1" and a["condition"] == "HH")
        assert hidden["suppressed"] == "液氨储罐区 检维修 (maintenance): 年度检修"
        # The overview gives each source its state and the alarms that state holds suppressed
        # (not the device's: PT-1's quality alarm waits for D1's link, whatever the state).
        status, overview = await app.call("duty", "GET", "/api/overview?enterprise=E9")
        sources = {h["code"]: h for h in overview["enterprises"][0]["hazard_sources"]}
        operating = sources["HS1"]["operating"]
        held = [
            a for a in board["alarms"]
            if a["suppressed"] == hidden["suppressed"] and a["hazard_source"] == "HS1"
        ]  # fmt: skip
        assert ("GD-1", "HH") in {(a["code"], a["condition"]) for a in held}
        assert operating == {
            "state": "maintenance", "state_zh": "检维修", "since": operating["since"],
            "reason": "年度检修", "set_by": "enterprise", "suppressed": len(held),
            "planned_end": None, "overdue": False,
        }  # fmt: skip
        assert operating["since"] is not None
        assert sources["HS2"]["operating"]["state"] == "running"
        assert sources["HS2"]["operating"]["suppressed"] == 0
        # The same state with a new reason: it has lasted since it was first set, and it holds
        # the same alarms (suppressed under the old reason, without a transition).
        since_sql = "SELECT since FROM source_states WHERE source = 'HS1'"
        first_set = await app.run.store.pool.fetchval(since_sql)
        status, again = await app.call(
            "duty", "POST", "/api/sources/HS1/state",
            json={"state": "maintenance", "reason": "检修延至周五"},
        )  # fmt: skip
        assert status == 200, again
        assert (again["since"], again["reason"], again["set_by"]) == (
            operating["since"], "检修延至周五", "duty",
        )  # fmt: skip
        assert await app.run.store.pool.fetchval(since_sql) == first_set  # to the microsecond
        status, overview = await app.call("duty", "GET", "/api/overview?enterprise=E9")
        (hs1,) = [h for h in overview["enterprises"][0]["hazard_sources"] if h["code"] == "HS1"]
        assert hs1["operating"]["suppressed"] == len(held)
        assert state(gd1, Condition.HH) is AlarmState.SUPPRESSED

        status, listed = await app.call("enterprise", "GET", "/api/sources")
        assert [(s["source"], s["state"]) for s in listed["sources"]] == [
            ("HS1", "maintenance"), ("HS2", "running"),
        ]  # fmt: skip
        audit = await app.run.store.pool.fetch(
            "SELECT username, action, result FROM audit_log WHERE target LIKE '/api/sources/%'"
            " ORDER BY seq"
        )
        assert [tuple(r) for r in audit] == [
            ("enterprise", "POST /api/sources/{code}/state", "ok"),
            ("enterprise", "POST /api/sources/{code}/state", "refused 404"),
            ("duty", "POST /api/sources/{code}/state", "refused 400"),
            ("duty", "POST /api/sources/{code}/state", "refused 400"),
            ("duty", "POST /api/sources/{code}/state", "ok"),
        ]
    finally:
        await app.close()

    # Restart: the state and the suppression are restored; back to running re-raises.
    app = await _app(database_url, tmp_path)
    engine = app.run.alarms
    try:
        status, body = await app.call("duty", "GET", "/api/sources/HS1/state")
        assert body["state"] == "maintenance" and body["set_by"] == "duty"
        assert state(gd1, Condition.HH) is AlarmState.SUPPRESSED
        status, body = await app.call(
            "duty", "POST", "/api/sources/HS1/state", json={"state": "stopped", "reason": "停用"}
        )
        assert status == 200
        # (D1 and D2, on port 1, are lost: their own keys.)
        assert set(engine.suppressions) == {"source:E9/HS1:stopped", "device:E9/D1", "device:E9/D2"}
        status, body = await app.call(
            "duty", "POST", "/api/sources/HS1/state", json={"state": "running", "reason": "复产"}
        )
        assert status == 200 and set(engine.suppressions) == {"device:E9/D1", "device:E9/D2"}
        assert state(gd1, Condition.HH) is AlarmState.UNACK
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch(
                "SELECT kind, who FROM alarm_events WHERE point = $1 AND condition = 0"
                " ORDER BY id", gd1,
            )  # fmt: skip
            stored = await conn.fetchrow("SELECT * FROM source_states WHERE source = 'HS1'")
        finally:
            await conn.close()
        # maintenance → stopped moved the cause without a transition; running re-raised.
        assert [tuple(r) for r in rows] == [
            ("suppressed", "enterprise"), ("unsuppressed", "duty"), ("raised", None),
        ]  # fmt: skip
        assert (stored["state"], stored["reason"], stored["set_by"]) == ("running", "复产", "duty")
    finally:
        await app.close()


async def test_a_source_state_past_its_planned_end_is_overdue_also_after_a_restart(
    database_url: str, tmp_path: Path
) -> None:
    path = "/api/sources/HS2/state"

    async def hs2(app: App) -> dict[str, Any]:
        status, overview = await app.call("duty", "GET", "/api/overview?enterprise=E9")
        assert status == 200, overview
        (source,) = [h for h in overview["enterprises"][0]["hazard_sources"] if h["code"] == "HS2"]
        return dict(source["operating"])

    app = await _app(database_url, tmp_path)
    try:
        later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        status, body = await app.call(
            "duty", "POST", path, json={"state": "running", "reason": "复产", "planned_end": later}
        )
        assert (status, body["field"], body["error"]) == (
            400, "planned_end", "running has no planned end",
        )  # fmt: skip
        earlier = datetime.now(UTC) - timedelta(minutes=1)
        status, body = await app.call(
            "enterprise", "POST", path,
            json={"state": "maintenance", "reason": "检修", "planned_end": earlier.isoformat()},
        )  # fmt: skip
        assert status == 400 and body["field"] == "planned_end"
        assert body["error"] == f"planned end {earlier.isoformat()} is not in the future"

        end = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
        status, body = await app.call(
            "enterprise", "POST", path,
            json={"state": "maintenance", "reason": "检修", "planned_end": end.isoformat()},
        )  # fmt: skip
        assert status == 200, body
        assert (body["planned_end"], body["overdue"]) == (end.isoformat(), False)
        assert (await hs2(app))["overdue"] is False
        await asyncio.sleep((end - datetime.now(UTC)).total_seconds() + 0.2)
        now = await hs2(app)
        assert (now["state"], now["planned_end"], now["overdue"]) == (
            "maintenance", end.isoformat(), True,
        )  # fmt: skip
    finally:
        await app.close()

    app = await _app(database_url, tmp_path)  # the planned end is kept
    try:
        assert (await hs2(app))["overdue"] is True
        status, body = await app.call(
            "duty", "POST", path, json={"state": "maintenance", "reason": "检修延期，另行通知"}
        )
        assert status == 200 and (body["planned_end"], body["overdue"]) == (None, False)
    finally:
        await app.close()


async def test_a_state_change_goes_to_the_sources_topic_of_those_who_may_see_it(
    database_url: str, tmp_path: Path
) -> None:
    app = await _app(database_url, tmp_path)
    sockets = {}
    try:
        for who in ("duty", "enterprise"):
            ws = await app.http[who].ws_connect("/ws")
            await ws.send_json({"op": "subscribe", "topics": ["sources"]})
            answer = await ws.receive_json(timeout=10)
            assert answer == {"type": "subscribed", "topics": ["sources"]}
            sockets[who] = ws
        status, e8 = await app.call(
            "duty", "POST", "/api/sources/HS8/state", json={"state": "stopped", "reason": "停产"}
        )
        assert status == 200, e8
        status, e9 = await app.call(
            "enterprise", "POST", "/api/sources/HS1/state",
            json={"state": "maintenance", "reason": "年度检修"},
        )  # fmt: skip
        assert status == 200, e9
        # The centre hears both, in order; E9's user only its own (E8's is not for it).
        seen = [await sockets["duty"].receive_json(timeout=10) for _ in range(2)]
        assert [m["type"] for m in seen] == ["sources", "sources"]
        assert (e8["name"], e9["name"]) == ("乙罐区", "液氨储罐区")  # as GET /api/sources lists
        assert [m["events"] for m in seen] == [[e8], [e9]]
        own = await sockets["enterprise"].receive_json(timeout=10)
        assert own == {"type": "sources", "events": [e9]}
    finally:
        for ws in sockets.values():
            await ws.close()
        await app.close()
