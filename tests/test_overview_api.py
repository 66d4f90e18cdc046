"""GET /api/overview on the real app, database and simulated plant: positions and grades from the
configuration, online rates that fall when a device stops answering, active alarms and the blue
warning of an out-of-range value; an enterprise user sees only its own enterprise."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, CookieJar

from alarms.reports import Reports
from alarms.warning_rules import load_warning_rules
from anjian.runtime import Running, submit_demo_commitments
from collectors.sim.runner import Simulator
from streams.config import Config, parse_config
from streams.store import Store
from tests.conftest import DUTY, ENTERPRISE, serving, sign_in

# Quality alarms (and so the blue warning of an out-of-range value) within a second.
QUICK_QUALITY_ALARMS = """
[alarms.defaults]
bad_quality_after_s = 1.0
"""


@dataclass
class Site:
    sim: Simulator
    cfg: Config
    run: Running
    url: str

    def client(self) -> ClientSession:
        return ClientSession(self.url, cookie_jar=CookieJar(unsafe=True))


@pytest.fixture
async def site(database_url: str, tmp_path: Path) -> AsyncIterator[Site]:
    sim = Simulator(mqtt=None)
    await sim.start()
    config = tmp_path / "plant.toml"
    config.write_text(sim.config_toml + QUICK_QUALITY_ALARMS, encoding="utf-8")
    cfg = parse_config(sim.config_toml)
    # The enterprises have committed today (else each has a blue "commitment missing" warning).
    store = await Store.open(database_url)
    try:
        await submit_demo_commitments(cfg, Reports(store.pool, load_warning_rules(), {
            e.code: [h.code for h in e.hazard_sources] for e in cfg.enterprises
        }))  # fmt: skip
    finally:
        await store.close()
    try:
        async with serving(config, database_url, "E1") as served:
            yield Site(sim, cfg, served.run, served.url)
    finally:
        await sim.stop()


async def _overview(http: ClientSession, **params: str) -> Any:
    r = await http.get("/api/overview", params=params)
    assert r.status == 200, await r.text()
    return await r.json()


async def _until(
    http: ClientSession, check: Callable[[dict[str, Any]], bool], timeout: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = await _overview(http)
        by_code = {e["code"]: e for e in body["enterprises"]}
        if check(by_code):
            return by_code
        if time.monotonic() > deadline:
            raise AssertionError(f"overview never got there: {body}")
        await asyncio.sleep(0.5)


def _source(e: dict[str, Any], code: str) -> dict[str, Any]:
    return next(h for h in e["hazard_sources"] if h["code"] == code)


async def test_positions_online_rate_alarms_and_warning_level(site: Site) -> None:
    async with site.client() as http:
        await sign_in(http, *DUTY)
        everything_online = await _until(
            http,
            lambda es: len(es) == 3 and all(e["online"] == e["points"] > 0 for e in es.values()),
        )
        for e in site.cfg.enterprises:
            got = everything_online[e.code]
            assert (got["lon"], got["lat"]) == (e.lon, e.lat)
            assert (got["province"], got["city"], got["region"]) == ("江苏省", "南京市", e.region)
            assert got["online_rate"] == 1.0 and got["warning"] is None
            assert {h["code"]: (h["grade"], h["lon"], h["lat"]) for h in got["hazard_sources"]} == {
                h.code: (h.grade, h.lon, h.lat) for h in e.hazard_sources
            }
            assert sum(h["points"] for h in got["hazard_sources"]) <= got["points"]

        # E1's PLC101 stops answering: E1's online rate falls (its points and its link point
        # are offline), the others' stays.
        plc = next(d for d in site.cfg.enterprises[0].devices if d.code == "PLC101")
        lost = len(plc.points) + 1
        await site.sim.set_scenario("comm_loss", "PLC101")
        es = await _until(http, lambda es: es["E1"]["online"] == es["E1"]["points"] - lost)
        assert es["E1"]["online_rate"] == pytest.approx(
            (es["E1"]["points"] - lost) / es["E1"]["points"], abs=1e-4
        )
        assert es["E2"]["online_rate"] == es["E3"]["online_rate"] == 1.0
        # Its loss is one alarm, its link point's, and the overview counts it alone: its points'
        # quality alarms are suppressed by it (listed by the API, not annunciated).
        await _until(http, lambda es: es["E1"]["alarms"]["total"] >= 1)
        board = await (await http.get("/api/alarms", params={"enterprise": "E1"})).json()
        annunciated = [a for a in board["alarms"] if a["state"] != "suppressed"]
        assert len(annunciated) < len(board["alarms"])
        es = {e["code"]: e for e in (await _overview(http))["enterprises"]}
        assert es["E1"]["alarms"]["total"] == len(annunciated)
        # A window that is not a number of seconds is refused.
        r = await http.get("/api/overview", params={"window_s": "abc"})
        assert r.status == 400 and "window_s" in (await r.json())["error"]

        # An out-of-range level at E3 raises an alarm there and a blue warning for its source.
        await site.sim.set_scenario("normal", None)
        await site.sim.set_scenario("out_of_range", "TK301.LT", current_ma=22.0)
        es = await _until(
            http, lambda es: _source(es["E3"], "HS301")["warning"] == "blue", timeout=40
        )
        e3, hs301 = es["E3"], _source(es["E3"], "HS301")
        assert e3["warning"] == "blue" and e3["warnings"].get("blue", 0) >= 1
        assert hs301["alarms"]["total"] >= 1
        assert e3["alarms"]["total"] >= hs301["alarms"]["total"]
        assert sum(e3["alarms"]["by_priority"].values()) == e3["alarms"]["total"]
        assert _source(e3, "HS302")["warning"] is None
        assert es["E2"]["warning"] is None

        body = await _overview(http)
        totals = body["totals"]
        assert totals["enterprises"] == 3
        assert totals["points"] == sum(e["points"] for e in body["enterprises"])
        assert totals["alarms"]["total"] == sum(e["alarms"]["total"] for e in body["enterprises"])
        # The same alarms the board lists (every alarm that is not normal, but those suppressed
        # by design).
        board = await (await http.get("/api/alarms")).json()
        listed = [a for a in board["alarms"] if a["state"] != "suppressed"]
        assert totals["alarms"]["total"] == len(listed)


async def test_a_steady_opc_ua_value_is_online_while_its_session_is_up(site: Site) -> None:
    """An OPC-UA subscription sends a value only when it changes (and on each heartbeat): E2's
    closed valves go quiet, yet count as online until the session is lost."""
    dcs = next(d for d in site.cfg.enterprises[1].devices if d.protocol == "opcua")
    async with site.client() as http:
        await sign_in(http, *DUTY)
        await _until(http, lambda es: es["E2"]["online"] == es["E2"]["points"] > 0)
        # Wait until some of E2's points have sent nothing for over 2 s, then ask with a
        # 1 s window: they are steady values of a live session, so still online.
        deadline = time.monotonic() + 30
        while True:
            latest = await (await http.get("/api/latest", params={"enterprise": "E2"})).json()
            newest = max(datetime.fromisoformat(v["ts"]) for v in latest["values"])
            quiet = [
                v["code"] for v in latest["values"]
                if newest - datetime.fromisoformat(v["ts"]) > timedelta(seconds=2)
            ]  # fmt: skip
            if quiet or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        assert quiet, "no E2 point held a steady value for 2 s"
        body = await _overview(http, window_s="1")
        e2 = next(e for e in body["enterprises"] if e["code"] == "E2")
        assert e2["online"] == e2["points"], (quiet, e2)

        # Its trend holds a value until the next sample, for at most two heartbeats; a polled
        # (Modbus) point's trend does not.
        steady = next(v for v in latest["values"] if v["code"] == quiet[0])
        r = await http.get(f"/api/points/{steady['id']}/series")
        assert (await r.json())["hold_ms"] == 2 * dcs.republish_s * 1000
        polled = site.run.points.id("E1", "TK101.LT")
        r = await http.get(f"/api/points/{polled}/series")
        assert (await r.json())["hold_ms"] is None

        # The session is lost: its points are offline whatever their age, and so is its link
        # point (E2's only other point), which held 1 while the session was up.
        await site.sim.set_scenario("comm_loss", dcs.code)
        try:
            await _until(
                http,
                lambda es: (es["E2"]["online"], es["E2"]["points"]) == (0, len(dcs.points) + 1),
            )
        finally:
            await site.sim.set_scenario("normal", None)


async def test_an_enterprise_user_sees_only_its_own_enterprise(site: Site) -> None:
    async with site.client() as anonymous:
        assert (await anonymous.get("/api/overview")).status == 401
    async with site.client() as http:
        await sign_in(http, *ENTERPRISE)
        body = await _overview(http)
        assert [e["code"] for e in body["enterprises"]] == ["E1"]
        assert body["totals"]["enterprises"] == 1
        assert body["totals"]["points"] == body["enterprises"][0]["points"]
        mine = await _overview(http, enterprise="E1")
        assert [e["code"] for e in mine["enterprises"]] == ["E1"]
        for other in ("E2", "E404"):
            r = await http.get("/api/overview", params={"enterprise": other})
            assert r.status == 404, other
            assert (await r.json())["error"] == f"no enterprise {other!r}"
    async with site.client() as duty:
        await sign_in(duty, *DUTY)
        one = await _overview(duty, enterprise="E2")
        assert [e["code"] for e in one["enterprises"]] == ["E2"]
        assert (await duty.get("/api/overview", params={"enterprise": "E404"})).status == 404


async def test_each_enterprise_with_its_sensitive_targets_and_its_wind_now(site: Site) -> None:
    await site.sim.set_scenario("wind", None, direction_deg=270.0, speed_m_s=3.0)
    try:
        async with site.client() as http:
            await sign_in(http, *DUTY)
            # The station's readings carry its noise (a few degrees, a tenth of a m/s).
            shown = await _until(
                http,
                lambda e: (
                    e["E1"]["wind"] is not None
                    and abs(e["E1"]["wind"]["from_deg"] - 270) < 10
                    and abs(e["E1"]["wind"]["speed_m_s"] - 3) < 0.5
                ),
            )
    finally:
        await site.sim.set_scenario("normal", None)
    e1 = site.cfg.enterprises[0]
    assert shown["E1"]["sensitive_targets"] == [
        {"name": t.name, "kind": t.kind, "lon": t.lon, "lat": t.lat} for t in e1.sensitive_targets
    ]
    assert [t["name"] for t in shown["E1"]["sensitive_targets"]] == [
        "演示镇中心小学",
        "演示村居民区",
    ]
    # E2 has neither a weather station nor targets of its own.
    assert (shown["E2"]["wind"], shown["E2"]["sensitive_targets"]) == (None, [])
    # Each hazard source names its targets, nearest first, as seen from it (the demo puts the
    # school 1.5 km east of the chlorine tanks and the village 2 km north), and whether the
    # wind blows toward them now as the red warning's rule sees it: a west wind, the school.
    [chlorine] = [h for h in shown["E1"]["hazard_sources"] if h["code"] == "HS101"]
    school, village = chlorine["targets"]
    assert (school["name"], school["kind"], village["name"]) == (
        "演示镇中心小学",
        "school",
        "演示村居民区",
    )
    assert abs(school["distance_m"] - 1500) < 20 and abs(school["bearing_deg"] - 90) < 1
    assert abs(village["distance_m"] - 2000) < 20
    assert min(village["bearing_deg"], 360 - village["bearing_deg"]) < 1
    assert (school["downwind"], village["downwind"]) == (True, False)
    # E2's source has none.
    assert [h["targets"] for h in shown["E2"]["hazard_sources"]] == [[]]


async def test_each_point_gives_the_readings_beyond_its_range_that_are_measurements(
    site: Site,
) -> None:
    # The board shows a reading beyond the range as a bound (≥ 3.1 超量程) or, farther out, as a
    # failure signal (NAMUR NE 43: 2.5 % below, 6.25 % above the span) from the first event on.
    async with site.client() as http:
        await sign_in(http, *DUTY)
        r = await http.get("/api/points", params={"enterprise": "E1"})
        assert r.status == 200, await r.text()
        by_code = {p["code"]: p for p in await r.json()}
    gd = by_code["GD-102"]  # Cl2, 0–3 mg/m³
    assert gd["range"] == [0, 3]
    assert gd["readings"] == pytest.approx([-0.075, 3.1875])
