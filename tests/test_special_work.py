"""Special work (特殊作业) reported by an enterprise, end to end on the real application and
database: hot work on a hazard source plus an alarm there issues a red warning naming the permit;
ending the work releases that input; bad reports are refused; enterprises see only their own."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, CookieJar
from aiohttp.test_utils import TestServer

from alarms.reports import Reports
from anjian.runtime import Running
from streams import SampleBatch
from tests.conftest import DUTY, ENTERPRISE, free_port, serving, sign_in

# E9 has a grade-1 reactor unit with a temperature point and a grade-2 tank farm without
# points; E8 is another enterprise. The Modbus devices are never reached (bad quality keeps
# a limit alarm as it was, so an injected reading stands).
CONFIG = """
[[enterprises]]
code = "E9"
name = "甲化工"
region = "320116"
  [[enterprises.hazard_sources]]
  code = "HS1"
  name = "反应釜区"
  unit_type = "production"
  grade = 1
  responsible = [
    { duty = "principal", name = "王总", username = "enterprise" },
    { duty = "technical", name = "李工" },
    { duty = "operational", name = "张班长" },
  ]
  [[enterprises.hazard_sources]]
  code = "HS2"
  name = "罐区"
  grade = 2
  [[enterprises.devices]]
  code = "PLC9"
  protocol = "modbus"
  host = "127.0.0.1"
  port = {port}
  period_s = 60
  hazard_source = "HS1"
    [[enterprises.devices.points]]
    code = "TT-1"
    name = "反应釜温度"
    kind = "temperature"
    unit = "°C"
    table = "holding"
    address = 0
    range = [0, 200]
    limits = { hh = 120, h = 100 }

[[enterprises]]
code = "E8"
name = "乙化工"
region = "320116"
  [[enterprises.hazard_sources]]
  code = "HS1"
  name = "乙罐区"
  grade = 3
"""


@dataclass
class App:
    server: TestServer
    run: Running
    db: str

    def client(self) -> ClientSession:
        base = f"http://{self.server.host}:{self.server.port}"
        return ClientSession(base, cookie_jar=CookieJar(unsafe=True))

    async def signed_in(self, who: tuple[str, str]) -> ClientSession:
        client = self.client()
        client.headers["X-CSRF-Token"] = await sign_in(client, *who)
        return client


@contextlib.asynccontextmanager
async def running_app(database_url: str, tmp_path: Path) -> AsyncIterator[App]:
    """The whole application on its own database, with the demo accounts (E9's user)."""
    config = tmp_path / "plant.toml"
    config.write_text(CONFIG.replace("{port}", str(free_port())), encoding="utf-8")
    async with serving(config, database_url, "E9") as served:
        yield App(served.server, served.run, database_url)


@pytest.fixture
async def app(database_url: str, tmp_path: Path) -> AsyncIterator[App]:
    async with running_app(database_url, tmp_path) as running:
        yield running


async def until(check: Callable[[], Awaitable[Any]], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := await check():
            return found
        await asyncio.sleep(0.2)
    raise AssertionError("condition not met in time")


def permit(**change: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    body = {
        "source": "HS1",
        "type": "hot_work",
        "permit_no": "DH-2026-0012",
        "started_at": (now - timedelta(minutes=10)).isoformat(),
        "planned_end": (now + timedelta(hours=2)).isoformat(),
        "location": "R-101 东侧管廊",
        "supervisor": "赵六",
    }
    return body | change


async def test_hot_work_and_an_alarm_on_its_source_issue_red_until_the_work_ends(app: App) -> None:
    firm, centre = await app.signed_in(ENTERPRISE), await app.signed_in(DUTY)
    try:
        r = await firm.post("/api/special-work", json=permit())
        assert r.status == 201, await r.text()
        work = await r.json()
        assert (work["enterprise"], work["hazard_source"], work["work_type"]) == (
            "E9", "HS1", "hot_work",
        )  # fmt: skip
        assert work["ongoing"] and work["reported_by"] == "enterprise"
        listed = await (await centre.get("/api/special-work", params={"active": "true"})).json()
        assert [w["permit_no"] for w in listed["special_work"]] == ["DH-2026-0012"]

        # 105 °C on the reactor: the high alarm (H 100 °C) becomes active at the same source.
        tt1 = app.run.points.id("E9", "TT-1")
        await app.run.hub.publish(SampleBatch.of(time.time_ns(), [tt1], [105.0]))

        async def red() -> dict[str, Any] | None:
            ws = (await (await centre.get("/api/warnings")).json())["warnings"]
            return next((w for w in ws if w["level"] == "red"), None)

        warning = await until(red)
        assert (warning["enterprise"], warning["hazard_source"]) == ("E9", "HS1")
        assert warning["rule"] == "red.alarm_during_special_work"
        evidence = [e["zh"] for e in warning["evidence"]]
        assert any(e.startswith("反应釜温度(TT-1) 温度高报警") for e in evidence), evidence
        assert "正在进行：动火作业（作业证 DH-2026-0012）" in evidence
        work_evidence = next(e for e in warning["evidence"] if e["code"] == "special_work")
        assert work_evidence["params"] == {
            "works": ["hot_work"], "permits": {"hot_work": ["DH-2026-0012"]},
        }  # fmt: skip
        assert warning["condition_active"]

        r = await firm.post(f"/api/special-work/{work['id']}/end", json={"note": "作业完毕"})
        assert r.status == 200, await r.text()
        ended = await r.json()
        assert not ended["ongoing"] and ended["ended_by"] == "enterprise"
        assert ended["end_note"] == "作业完毕"
        now = time.time_ns()
        (hs1,) = [s for e in app.run.warnings.inputs(now).enterprises if e.code == "E9"
                  for s in e.sources if s.code == "HS1"]  # fmt: skip
        assert hs1.special_work == frozenset()
        assert [a.code for a in hs1.alarms] == ["TT-1"]  # the alarm itself persists

        async def released() -> bool:
            ws = (await (await centre.get("/api/warnings")).json())["warnings"]
            w = next(w for w in ws if w["id"] == warning["id"])
            return not w["condition_active"]

        await until(released)  # the end of the work woke the desk: no need to wait a period
        r = await firm.post(f"/api/special-work/{work['id']}/end", json={})
        assert r.status == 409 and "already ended" in (await r.json())["error"]
        listed = await (await centre.get("/api/special-work", params={"active": "false"})).json()
        assert [w["id"] for w in listed["special_work"]] == [work["id"]]
    finally:
        await firm.close()
        await centre.close()


BAD_PERMITS = [
    ({"source": "HS9"}, "'HS9' is not a hazard source of enterprise 'E9'"),
    ({"type": "juggling"}, "unknown special work type 'juggling'"),
    ({"planned_end": "2026-01-01T08:00:00+08:00", "started_at": "2026-01-01T09:00:00+08:00"},
     "is not after started_at"),
    ({"started_at": "2026-01-01T09:00:00"}, "started_at: Input should have timezone"),
    ({"location": ""}, "location:"),
    ({"colour": "red"}, "colour: Extra inputs are not permitted"),
]  # fmt: skip


async def test_a_bad_report_is_refused_naming_the_value_and_nothing_is_stored(app: App) -> None:
    firm = await app.signed_in(ENTERPRISE)
    try:
        for change, says in BAD_PERMITS:
            r = await firm.post("/api/special-work", json=permit(**change))
            assert r.status == 400, change
            assert says in (await r.json())["error"], change
    finally:
        await firm.close()
    assert await app.run.store.pool.fetchval("SELECT count(*) FROM special_work") == 0


async def test_a_permit_number_is_reported_once(app: App) -> None:
    firm = await app.signed_in(ENTERPRISE)
    try:
        assert (await firm.post("/api/special-work", json=permit())).status == 201
        r = await firm.post("/api/special-work", json=permit(type="lifting"))
        assert r.status == 409
        assert "already reported permit 'DH-2026-0012'" in (await r.json())["error"]
    finally:
        await firm.close()


async def test_enterprises_see_and_end_only_their_own_work_and_the_centre_reads_all(
    app: App,
) -> None:
    now = datetime.now(UTC)
    theirs = await app.run.reports.report_work(
        "E8", "e8.user", hazard_source="HS1", work_type="confined_space", permit_no="SX-1",
        started_at=now, planned_end=now + timedelta(hours=1), location="乙罐区", supervisor="钱七",
    )  # fmt: skip
    firm, centre = await app.signed_in(ENTERPRISE), await app.signed_in(DUTY)
    try:
        r = await firm.post("/api/special-work", json=permit(source="HS2", type="lifting"))
        ours = await r.json()
        mine = await (await firm.get("/api/special-work")).json()
        assert [w["id"] for w in mine["special_work"]] == [ours["id"]]
        r = await firm.get("/api/special-work", params={"enterprise": "E8"})
        assert r.status == 404 and (await r.json())["error"] == "no enterprise 'E8'"
        r = await firm.post(f"/api/special-work/{theirs.id}/end", json={})
        assert r.status == 404 and (await r.json())["error"] == f"no special work {theirs.id}"

        everything = await (await centre.get("/api/special-work")).json()
        assert {w["enterprise"] for w in everything["special_work"]} == {"E8", "E9"}
        only = await (await centre.get("/api/special-work", params={"source": "HS2"})).json()
        assert [w["id"] for w in only["special_work"]] == [ours["id"]]
        r = await centre.get("/api/special-work", params={"active": "maybe"})
        assert r.status == 400
        r = await centre.post("/api/special-work", json=permit())  # the centre does not report
        assert r.status == 403
    finally:
        await firm.close()
        await centre.close()

    # Every report is audited with who and the result; a restart reloads what is on-going.
    rows = await app.run.store.pool.fetch(
        "SELECT username, action, result FROM audit_log WHERE action LIKE '%special-work%'"
        " ORDER BY seq"
    )
    assert [tuple(r) for r in rows] == [
        ("enterprise", "POST /api/special-work", "ok"),
        ("enterprise", "POST /api/special-work/{id}/end", "refused 404"),
        ("duty", "POST /api/special-work", "refused 403"),
    ]
    again = Reports(app.run.store.pool, app.run.warnings.rules, app.run.reports.sources)
    assert await again.load() == (2, 0)
    assert again.special_work_at(time.time_ns()) == {
        ("E8", "HS1"): {"confined_space": ("SX-1",)},
        ("E9", "HS2"): {"lifting": ("DH-2026-0012",)},
    }
