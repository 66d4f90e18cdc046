"""Alarms end to end with the simulated plant: a leak raises the downwind detector's 一级 then
二级 alarm on a WebSocket, and a leak past the detector's range its 二级 alarm too; the 二级
chlorine alarm with the wind toward a school issues a red warning; acknowledgement, clearing
only below the deadband, communication loss, shelving expiry and a restart that restores every
alarm without duplicates."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import ClientSession, ClientWebSocketResponse, CookieJar
from aiohttp.test_utils import TestServer
from playwright.async_api import Page, async_playwright, expect

from alarms.model import AlarmState, Condition
from anjian.runtime import Running, Settings, build_app
from collectors.sim.runner import Simulator
from streams.config import DEVICE_LINK_KIND, MqttSettings
from streams.quality import Quality
from tests.conftest import DUTY, sign_in
from tests.console_kit import CHROMIUM, CHROMIUM_ARGS
from web.accounts import ensure_demo_accounts

# Quick quality alarms and a deadband of 5 % of the instrument range, for a test that runs in
# seconds; the detector GD-102 (Cl2, 0–3 mg/m³; 一级 1, 二级 2 mg/m³) is 14 m east of TK101.
ALARMS = """
[alarms.defaults]
bad_quality_after_s = 1.0

[alarms.points."E1/GD-102"]
deadband_pct = 5.0
"""
WEST_WIND = {"direction_deg": 270.0, "speed_m_s": 2.0}
LEVEL_1_LEAK = 0.018  # g/s: GD-102 reads about 1.5 mg/m³
LEVEL_2_LEAK = 0.03  # g/s: GD-102 reads about 2.5 mg/m³ (within its 0–3 range)
# g/s: GD-102 reads about 0.925 mg/m³, mid-way between 一级 (1.0) and 1.0 − deadband (0.85);
# the sensor noise (0.2 % of the 3 mg/m³ span, σ = 0.006) keeps it well inside that band.
IN_DEADBAND_LEAK = 0.01134
SATURATING_LEAK = 0.1  # g/s: GD-102 would read about 8 mg/m³; it saturates just above 3


@dataclass
class Plant:
    sim: Simulator
    config: Path
    db: str
    tmp: Path
    url: str = ""  # the console's, while running

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[tuple[Running, ClientSession, str]]:
        """The console on this plant: its runtime, a duty officer's session and CSRF token."""
        holder: list[Running] = []
        app = build_app(
            Settings(config=self.config, data_dir=self.tmp / "data", database_url=self.db),
            ready=holder.append,
        )
        server = TestServer(app)
        await server.start_server()
        self.url = str(server.make_url("/"))
        http = ClientSession(
            f"http://{server.host}:{server.port}", cookie_jar=CookieJar(unsafe=True)
        )
        try:
            await ensure_demo_accounts(holder[0].store.pool, "E1")
            yield holder[0], http, await sign_in(http, *DUTY)
        finally:
            await http.close()
            await server.close()


@contextlib.asynccontextmanager
async def _plant(
    database_url: str, tmp_path: Path, mqtt: MqttSettings | None
) -> AsyncIterator[Plant]:
    sim = Simulator(mqtt=mqtt)
    await sim.start()
    await sim.set_scenario("wind", None, **WEST_WIND)
    config = tmp_path / "plant.toml"
    config.write_text(sim.config_toml + ALARMS, encoding="utf-8")
    try:
        yield Plant(sim, config, database_url, tmp_path)
    finally:
        await sim.stop()


@pytest.fixture
async def plant(database_url: str, tmp_path: Path) -> AsyncIterator[Plant]:
    async with _plant(database_url, tmp_path, None) as p:
        yield p


@pytest.fixture
async def mqtt_plant(database_url: str, tmp_path: Path) -> AsyncIterator[Plant]:
    """The plant with E3's gateway GW301 publishing over the machine's MQTT broker."""
    prefix = f"anjian-test/{uuid.uuid4().hex[:12]}"
    async with _plant(database_url, tmp_path, MqttSettings(topic_prefix=prefix)) as p:
        yield p


class Feed:
    """One topic of one WebSocket (`alarms`, `warnings`), read event by event (a message may
    hold several)."""

    def __init__(self, ws: ClientWebSocketResponse, topic: str) -> None:
        self.ws = ws
        self.topic = topic
        self.pending: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, http: ClientSession, topic: str = "alarms") -> Feed:
        """A WebSocket of `http`'s session, subscribed to `topic`."""
        ws = await http.ws_connect("/ws")
        await ws.send_json({"op": "subscribe", "topics": [topic]})
        assert (await ws.receive_json())["topics"] == [topic]
        return cls(ws, topic)

    async def next(self, want: Callable[[dict[str, Any]], bool], timeout: float = 20) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            while self.pending:
                e = self.pending.pop(0)
                if want(e):
                    return e
            left = max(0.1, deadline - time.monotonic())
            msg = await asyncio.wait_for(self.ws.receive_json(), left)
            if msg.get("type") == self.topic:
                self.pending += msg["events"]


async def _until(check: Callable[[], Awaitable[bool]], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.2)
    raise AssertionError("condition not met in time")


async def test_leak_raises_level_1_then_level_2_and_clears_after_the_leak(plant: Plant) -> None:
    async with plant.running() as (run, http, csrf):
        gd102 = run.points.id("E1", "GD-102")
        rules = await (await http.get("/api/alarms/rules", params={"enterprise": "E1"})).json()
        rule = next(r for r in rules["rules"] if r["code"] == "GD-102")
        # GB/T 50493 setpoints from the config, the override's deadband from [alarms.points].
        assert (rule["h"], rule["hh"], rule["deadband_pct"]) == (1.0, 2.0, 5.0)
        feed = await Feed.open(http)

        await plant.sim.set_scenario("leak", "TK101", rate_g_s=LEVEL_1_LEAK)
        h = await feed.next(lambda e: e["point"] == gd102 and e["kind"] == "raised")
        assert h["condition"] == "H" and h["priority"] == 2
        assert 1.0 < h["value"] < 2.0
        await plant.sim.set_scenario("leak", "TK101", rate_g_s=LEVEL_2_LEAK)
        hh = await feed.next(lambda e: e["point"] == gd102 and e["kind"] == "raised")
        assert hh["condition"] == "HH" and hh["priority"] == 1

        r = await http.post(
            f"/api/alarms/{hh['alarm']}/ack", json={"comment": "现场核实"},
            headers={"X-CSRF-Token": csrf},
        )  # fmt: skip
        assert r.status == 200, await r.text()
        assert (await r.json())["state"] == "acked"
        ack = await feed.next(lambda e: e["kind"] == "acknowledged")
        assert (ack["alarm"], ack["who"], ack["why"]) == (hh["alarm"], "duty", "现场核实")

        await plant.sim.set_scenario("normal", None)
        cleared = {
            (await feed.next(lambda e: e["point"] == gd102 and e["kind"] == "cleared"))["to"]
            for _ in range(2)
        }
        # The acknowledged 二级 alarm returns to normal; the unacknowledged 一级 one waits.
        assert cleared == {"normal", "rtn_unack"}
        board = await (await http.get("/api/alarms")).json()
        states = {a["condition"]: a["state"] for a in board["alarms"] if a["point"] == gd102}
        assert states == {"H": "rtn_unack"}
        detail = await (await http.get(f"/api/alarms/{hh['alarm']}")).json()
        assert [e["kind"] for e in detail["events"]][::-1] == [
            "raised", "acknowledged", "cleared",
        ]  # fmt: skip
        await feed.ws.close()


async def test_a_leak_past_the_detector_range_raises_level_2_besides_out_of_range(
    plant: Plant,
) -> None:
    async with plant.running() as (run, http, _csrf):
        gd102 = run.points.id("E1", "GD-102")
        feed = await Feed.open(http)
        await plant.sim.set_scenario("leak", "TK101", rate_g_s=SATURATING_LEAK)
        raised: dict[str, Any] = {}
        while not {"HH", "H", "OUT_OF_RANGE"} <= raised.keys():
            e = await feed.next(lambda e: e["point"] == gd102 and e["kind"] == "raised")
            raised[e["condition"]] = e
        # The detector jumps from clean air to its saturated reading, flagged out of range: the
        # 二级 alarm comes from that reading (above the 0–3 mg/m³ range), not from one inside it.
        assert raised["HH"]["priority"] == 1 and raised["HH"]["value"] > 3.0
        assert raised["OUT_OF_RANGE"]["value"] > 3.0
        assert run.hub.latest.get([gd102]).quality[0] == Quality.OUT_OF_RANGE
        await feed.ws.close()


async def test_a_level_2_chlorine_alarm_with_the_wind_toward_the_school_issues_red(
    plant: Plant,
) -> None:
    # The plant's west wind blows from E1's chlorine tanks toward 演示镇中心小学, 1.5 km east
    # (its weather station read over Modbus); the homes 2 km north are not downwind.
    async with plant.running() as (_run, http, _csrf):
        feed = await Feed.open(http, "warnings")
        await plant.sim.set_scenario("leak", "TK101", rate_g_s=LEVEL_2_LEAK)
        red = await feed.next(lambda w: w["level"] == "red", timeout=40)
        assert (red["enterprise"], red["hazard_source"]) == ("E1", "HS101")
        assert red["rule"] == "red.toxic_gas_toward_target"
        (school,) = [e for e in red["evidence"] if e["code"] == "wind_target"]
        assert school["params"]["target"] == "演示镇中心小学"
        assert 1450 <= school["params"]["distance_m"] <= 1550
        assert abs(school["params"]["wind_from_deg"] - 270) <= 10
        # Pushed at once to the source's three 包保责任人, with its 15-minute signing deadline.
        assert red["state"] == "pushed"
        assert [r["name"] for r in red["recipients"]] == ["王建国", "李明", "张伟"]
        issued = datetime.fromisoformat(red["deadline"]) - timedelta(minutes=15)
        assert abs(issued.timestamp() - red["issued_at_ns"] / 1e9) < 1
        await feed.ws.close()


async def test_alarm_stays_active_inside_the_deadband_and_clears_only_below_it(
    plant: Plant,
) -> None:
    async with plant.running() as (run, http, _csrf):
        gd102 = run.points.id("E1", "GD-102")
        feed = await Feed.open(http)
        await plant.sim.set_scenario("leak", "TK101", rate_g_s=LEVEL_1_LEAK)
        h = await feed.next(lambda e: e["point"] == gd102 and e["kind"] == "raised")
        assert h["condition"] == "H" and h["value"] > 1.0

        # The leak dwindles: GD-102 falls below its 一级 limit but not below limit − deadband.
        await plant.sim.set_scenario("leak", "TK101", rate_g_s=IN_DEADBAND_LEAK)
        seen: set[int] = set()

        async def several_readings_in_the_band() -> bool:
            latest = run.hub.latest.get([gd102])
            if 0.85 < latest.value[0] < 1.0:
                seen.add(int(latest.ts[0]))
            return len(seen) >= 4

        await _until(several_readings_in_the_band)
        await asyncio.sleep(0.5)  # the engine has evaluated those readings
        detail = await (await http.get(f"/api/alarms/{h['alarm']}")).json()
        assert detail["state"] == "unack" and detail["active"] is True
        assert [e["kind"] for e in detail["events"]] == ["raised"]

        # The leak stops: below limit − deadband the alarm returns to normal (unacknowledged).
        await plant.sim.set_scenario("normal", None)
        cleared = await feed.next(lambda e: e["point"] == gd102 and e["kind"] == "cleared")
        assert cleared["condition"] == "H" and cleared["to"] == "rtn_unack"
        assert cleared["value"] < 0.85
        await feed.ws.close()


async def test_communication_loss_raises_one_device_alarm_and_clears_on_recovery(
    plant: Plant,
) -> None:
    """A lost device is one alarm, on its link point; its points' quality alarms, raised by the
    same COMM_FAIL, are suppressed by design and leave with it when it comes back."""
    async with plant.running() as (run, http, _csrf):
        link, gd101 = run.points.id("E1", "GDS101.link"), run.points.id("E1", "GD-101")
        gds = next(c for c in run.collectors if c.status.device == "GDS101")
        feed = await Feed.open(http)
        await plant.sim.set_scenario("comm_loss", "GDS101")
        raised = await feed.next(lambda e: e["point"] == link and e["condition"] == "BAD_QUALITY")
        assert raised["kind"] == "raised" and raised["to"] == "unack"
        # The collector retries with backoff (0.5, 1, 2, 4 … s), so its COMM_FAIL samples come
        # farther apart than the 3 s stale window: the points raise no stale alarm either. Six
        # failures leave a gap of 4–8 s between the last two.

        async def retried() -> bool:
            return gds.status.failures >= 6

        await _until(retried, timeout=30)
        await asyncio.sleep(1.0)  # a tick of the engine past the last gap
        board = await (await http.get("/api/alarms?enterprise=E1")).json()
        quality = {
            (a["code"], a["condition"]): a["state"]
            for a in board["alarms"]
            if a["class"] == "quality"
        }
        points = [p.config.code for p in gds.points]
        assert quality == {
            ("GDS101.link", "BAD_QUALITY"): "unack",
            **{(code, "BAD_QUALITY"): "suppressed" for code in points},
        }
        link_view = next(a for a in board["alarms"] if a["code"] == "GDS101.link")
        assert link_view["name"] == "气体检测报警控制器(GDS) 通讯状态"
        assert link_view["hazard_source"] is None  # its detectors are at HS101 and HS102
        assert link_view["suppressing"] == len(points)  # the alarm page says so
        gd_view = next(a for a in board["alarms"] if a["point"] == gd101)
        lost = "设备 GDS101 通讯中断 (device E1/GDS101 communication lost)"
        assert gd_view["suppressed"] == lost and gd_view["suppressing"] == 0
        history = await (await http.get(f"/api/alarms/{gd_view['id']}")).json()
        assert [(e["kind"], e["to"]) for e in history["events"]] == [("suppressed", "suppressed")]

        await plant.sim.set_scenario("normal", None)
        cleared = await feed.next(lambda e: e["point"] == link and e["condition"] == "BAD_QUALITY")
        assert cleared["kind"] == "cleared"
        # Released once each point has reported again: cleared meanwhile, none annunciated.
        released = await feed.next(lambda e: e["point"] == gd101 and e["kind"] == "unsuppressed")
        assert (released["to"], released["why"]) == (
            "normal", f"end of: {lost} (communication restored)"
        )  # fmt: skip
        assert "device:E1/GDS101" not in run.alarms.suppressions
        link_id = link_view["id"]
        assert (await (await http.get(f"/api/alarms/{link_id}")).json())["suppressing"] == 0
        for code in points:
            alarm = run.alarms.alarms[(run.points.id("E1", code), Condition.BAD_QUALITY)]
            assert alarm.state is AlarmState.NORMAL and not alarm.active, code
        await feed.ws.close()


async def test_a_silent_gateway_is_one_alarm_and_its_points_raise_no_stale_alarm(
    mqtt_plant: Plant,
) -> None:
    """A gateway that stops publishing is lost once quiet for 3 periods; its points' stale
    condition (3 periods) waits for that report, so the loss is one alarm on its link and no
    stale alarm per point (14 were raised before it)."""
    async with mqtt_plant.running() as (run, http, _csrf):
        link = run.points.id("E3", "GW301.link")
        members = {p.id for p in run.points if p.device == "GW301" and p.kind != DEVICE_LINK_KIND}
        assert len(members) == 14
        feed = await Feed.open(http)
        await mqtt_plant.sim.set_scenario("comm_loss", "GW301")
        raised = await feed.next(lambda e: e["point"] == link and e["condition"] == "BAD_QUALITY")
        assert raised["kind"] == "raised"
        await asyncio.sleep(3.0)  # a stale alarm would have been raised by now
        board = await (await http.get("/api/alarms?enterprise=E3")).json()
        quality = {(a["point"], a["condition"]): a["state"] for a in board["alarms"]}
        assert quality == {
            (link, "BAD_QUALITY"): "unack",
            **{(p, "BAD_QUALITY"): "suppressed" for p in members},
        }
        seen = [*feed.pending]
        assert not [e for e in seen if e["point"] in members and e["kind"] == "raised"]

        await mqtt_plant.sim.set_scenario("normal", None)
        await feed.next(lambda e: e["point"] == link and e["kind"] == "cleared")

        async def released() -> bool:
            return not any(s.key.startswith("device:E3/") for s in run.alarms.suppressions.values())

        await _until(released)
        history = await run.store.pool.fetch(
            "SELECT point, condition, kind FROM alarm_events WHERE point = ANY($1::int[])",
            list(members),
        )
        assert history and {r["kind"] for r in history} <= {"suppressed", "unsuppressed"}
        assert {Condition(r["condition"]) for r in history} == {Condition.BAD_QUALITY}
        await feed.ws.close()


# Priorities 1 and 2 escalate to the shift leader 2 s after they were raised; the others never.
NOTIFY = """
[notify.escalation.timing]
1 = { t1_s = 2.0, t2_s = 600.0 }
2 = { t1_s = 2.0, t2_s = 600.0 }
"""
SHIFT = ("shift", "Shift@2026!")


async def test_an_unacknowledged_alarm_escalates_to_the_shift_leaders_console(plant: Plant) -> None:
    """The 一级 and 二级 alarms left unacknowledged past T1 reach, over the WebSocket, the console
    of the next level of the duty roster (值班长) and not the duty officer's; a notice stays on
    screen with the cue until the alarm is acknowledged or the notice opened, and the alarm's
    record holds the escalation."""
    if CHROMIUM is None:
        pytest.skip("no chromium on this machine (`./run test` installs it)")
    plant.config.write_text(plant.config.read_text(encoding="utf-8") + NOTIFY, encoding="utf-8")
    async with plant.running() as (run, http, csrf), async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)

        async def console(user: str, password: str) -> Page:
            page = await (await browser.new_context(locale="zh-CN")).new_page()
            await page.goto(plant.url)
            await page.fill("#login input[name=username]", user)
            await page.fill("#login input[name=password]", password)
            await page.click("#login button[type=submit]")
            await page.wait_for_selector("body.signed-in")
            return page

        shift, duty = await console(*SHIFT), await console(*DUTY)
        gd102 = run.points.id("E1", "GD-102")
        feed = await Feed.open(http)
        await plant.sim.set_scenario("leak", "TK101", rate_g_s=LEVEL_2_LEAK)
        raised: dict[str, Any] = {}  # both come with one sample, in either order
        while len(raised) < 2:
            e = await feed.next(
                lambda e: (
                    e["point"] == gd102 and e["kind"] == "raised" and e["condition"] in ("H", "HH")
                )
            )
            raised[e["condition"]] = e
        h, hh = raised["H"], raised["HH"]
        await expect(shift.locator("tr[data-alarm]").first).to_be_visible()
        beeps = await shift.evaluate("window.anjianBeeps ?? 0")

        notice = shift.locator(f".escalation[data-alarm='{hh['alarm']}']")
        await expect(notice).to_have_count(1, timeout=15_000)
        await expect(shift.locator(".escalation")).to_have_count(2)
        dismiss_all = shift.locator("button.escalations-dismiss-all")
        await expect(dismiss_all).to_have_text("全部知道了（2 条）")
        await expect(notice).to_contain_text("【报警升级·值班长】")
        await expect(notice).to_contain_text("二级报警")  # GB/T 50493's name for a gas HH
        await expect(notice).to_contain_text("未确认")
        await expect(notice.locator("a.escalation-open")).to_have_attribute(
            "href", f"#/alarm/{hh['alarm']}"
        )
        assert await shift.evaluate("window.anjianBeeps") > beeps
        await expect(duty.locator(".escalation")).to_have_count(0)
        # A shift leader's console that signs in now shows the notices sent before, as sent.
        sent = (await (await http.get("/api/alarms/escalations")).json())["notifications"]
        assert sorted(n["alarm"] for n in sent) == sorted([h["alarm"], hh["alarm"]])
        assert {n["role"] for n in sent} == {"shift_leader"}
        late = await console(*SHIFT)
        await expect(late.locator(".escalation")).to_have_count(2)
        late_notice = late.locator(f".escalation[data-alarm='{hh['alarm']}'] p")
        await expect(late_notice).to_have_text(await notice.locator("p").inner_text())
        # Folded, the notices leave the board to read under a button that counts them.
        fold = late.locator("button.escalations-fold")
        await expect(fold).to_have_text("收起")
        await fold.click()
        await expect(late.locator(".escalations-list")).to_be_hidden()
        await expect(late.locator("button.escalations-dismiss-all")).to_be_hidden()
        await expect(fold).to_have_text("升级通知 2 条（展开）")
        # Both boards say how far up the roster the alarm has gone.
        view = await (await http.get(f"/api/alarms/{hh['alarm']}")).json()
        assert (view["escalated"]["role"], view["escalated"]["attempt"]) == ("shift_leader", 1)
        for page in (shift, duty):
            handling = page.locator(f"tr[data-alarm='{hh['alarm']}'] td:last-child")
            await expect(handling).to_have_text("已升级至值班长（第 1 次）")

        r = await http.post(
            f"/api/alarms/{hh['alarm']}/ack", json={"comment": "现场核实"},
            headers={"X-CSRF-Token": csrf},
        )  # fmt: skip
        assert r.status == 200
        await expect(notice).to_have_count(0)
        assert (await (await http.get(f"/api/alarms/{hh['alarm']}")).json())["escalated"] is None
        await expect(late.locator(".escalation")).to_have_count(1)
        await expect(fold).to_have_text("升级通知 1 条（展开）")  # still folded, counting
        await fold.click()
        await expect(late.locator(".escalation")).to_be_visible()
        await expect(fold).to_have_text("收起")
        sent = (await (await http.get("/api/alarms/escalations")).json())["notifications"]
        assert [n["alarm"] for n in sent] == [h["alarm"]]
        await expect(shift.locator(".escalation")).to_have_count(1)
        await expect(dismiss_all).to_be_hidden()

        # Opened from its notice, the 一级 alarm's record holds the escalation.
        await shift.locator(f".escalation[data-alarm='{h['alarm']}'] a.escalation-open").click()
        await expect(shift.locator("#escalations")).to_be_hidden()
        row = shift.locator("table.events tr[data-kind='escalated']")
        await expect(row).to_have_count(1)
        await expect(row).to_contain_text("升级通知")
        await expect(row).to_contain_text("通知值班长（第 1 次）")
        record = await (await http.get(f"/api/alarms/{h['alarm']}")).json()
        [escalated] = [e for e in record["events"] if e["kind"] == "escalated"]
        assert (escalated["from"], escalated["to"]) == ("unack", "unack")
        assert escalated["detail"] == {
            "role": "shift_leader", "zh": "值班长", "en": "shift leader", "level": 1, "attempt": 1
        }  # fmt: skip
        await browser.close()
        await feed.ws.close()


async def test_shelving_expires_on_time_and_restart_restores_without_duplicates(
    plant: Plant,
) -> None:
    async with plant.running() as (run, http, csrf):
        gd102 = run.points.id("E1", "GD-102")
        await plant.sim.set_scenario("leak", "TK101", rate_g_s=LEVEL_2_LEAK)

        async def raised() -> bool:
            board = await (await http.get("/api/alarms")).json()
            return any(a["point"] == gd102 and a["condition"] == "HH" for a in board["alarms"])

        await _until(raised)
        board = await (await http.get("/api/alarms")).json()
        hh = next(a for a in board["alarms"] if a["point"] == gd102 and a["condition"] == "HH")
        r = await http.post(
            f"/api/alarms/{hh['id']}/shelve", json={"reason": "标定", "duration_s": 1.5},
            headers={"X-CSRF-Token": csrf},
        )  # fmt: skip
        assert r.status == 200 and (await r.json())["state"] == "shelved"
        shelved_at = time.monotonic()

        async def back() -> bool:
            a = await (await http.get(f"/api/alarms/{hh['id']}")).json()
            return bool(a["state"] == "unack")

        await _until(back, timeout=10)
        # Expiry is checked every second: back within 1.5 s + one tick (+ slack for the loop).
        assert time.monotonic() - shelved_at < 4.0

    # Restart with the leak still on: the same alarms, same ids, no second "raised".
    async with plant.running() as (run, http, _csrf):
        await asyncio.sleep(2.0)  # several polls of the still-active condition
        again = await (await http.get(f"/api/alarms/{hh['id']}")).json()
        assert again["state"] == "unack" and again["condition"] == "HH"
        conn = await asyncpg.connect(plant.db)
        try:
            kinds = [
                r["kind"]
                for r in await conn.fetch(
                    "SELECT kind FROM alarm_events WHERE alarm = $1 ORDER BY id", hh["id"]
                )
            ]
        finally:
            await conn.close()
        assert kinds == ["raised", "shelved", "unshelved", "raised"]
