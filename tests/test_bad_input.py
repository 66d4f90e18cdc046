"""Bad input on the whole application and a real database answers 400 (or 404 for an id that
cannot exist) naming the parameter or field, never a 500 and never a nonsense value taken:
times out of range, ids with Unicode digits or beyond their column, NUL characters, non-finite
numbers, converted types; refusals of the routes that audit themselves are audited too."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyotp
import pytest
from aiohttp import ClientSession, CookieJar
from aiohttp.test_utils import TestServer

from anjian.runtime import Running
from streams import SampleBatch
from tests.conftest import free_port, pushed_data_interruption, serving, sign_in
from web.accounts import DemoAccount
from web.app import ROUTES

# E9: a hazard source with a reactor temperature point (H 100 °C); E8: another enterprise.
# The Modbus device is never reached: a reading injected into the hub stands.
CONFIG = """
[[enterprises]]
code = "E9"
name = "甲化工"
region = "320116"
  [[enterprises.hazard_sources]]
  code = "HS1"
  name = "反应釜区"
  grade = 1
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
JSON = {"Content-Type": "application/json"}


@dataclass
class App:
    server: TestServer
    run: Running
    accounts: dict[str, DemoAccount]

    def client(self) -> ClientSession:
        base = f"http://{self.server.host}:{self.server.port}"
        return ClientSession(base, cookie_jar=CookieJar(unsafe=True))

    async def signed_in(self, username: str) -> ClientSession:
        """A client of the demo account `username`, its CSRF token a default header."""
        account = self.accounts[username]
        totp = pyotp.TOTP(account.totp_secret).now() if account.totp_secret else None
        client = self.client()
        client.headers["X-CSRF-Token"] = await sign_in(
            client, account.username, account.password, totp
        )
        return client

    @property
    def point(self) -> int:
        return self.run.points.id("E9", "TT-1")

    async def alarm(self) -> int:
        """The id of TT-1's high alarm, raised by a reading of 105 °C."""
        await self.run.hub.publish(SampleBatch.of(time.time_ns(), [self.point], [105.0]))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            engine = self.run.alarms
            for alarm_id, key in engine.keys.items():
                if key[0] == self.point and engine.alarms[key].state != "normal":
                    return alarm_id
            await asyncio.sleep(0.1)
        raise AssertionError("TT-1 raised no alarm")

    async def audit(self, action: str) -> list[tuple[str | None, str]]:
        rows = await self.run.store.pool.fetch(
            "SELECT username, result FROM audit_log WHERE action = $1 ORDER BY seq", action
        )
        return [(r["username"], r["result"]) for r in rows]


@pytest.fixture
async def app(database_url: str, tmp_path: Path) -> AsyncIterator[App]:
    config = tmp_path / "plant.toml"
    config.write_text(CONFIG.replace("{port}", str(free_port())), encoding="utf-8")
    async with serving(config, database_url, "E9") as served:
        yield App(served.server, served.run, {a.username: a for a in served.accounts})


async def _refused(r: Any, status: int, *needles: str) -> dict[str, Any]:
    body: dict[str, Any] = await r.json()
    assert r.status == status, (r.url, body)
    for needle in needles:
        assert needle in body["error"], (r.url, body)
    return body


def _work(**change: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "source": "HS1", "type": "hot_work", "permit_no": "DH-1", "location": "R-101",
        "started_at": (now - timedelta(minutes=10)).isoformat(),
        "planned_end": (now + timedelta(hours=2)).isoformat(), "supervisor": "赵六",
    } | change  # fmt: skip


async def test_kpi_period_is_capped_and_the_epoch_is_a_time_not_a_missing_one(app: App) -> None:
    duty = await app.signed_in("duty")
    try:
        kpi = "/api/alarms/kpi"
        r = await duty.get(
            kpi, params={"from": "1970-01-02T00:00:00Z", "to": "2262-01-01T00:00:00Z"}
        )
        await _refused(r, 400, "from/to: a period of at most 366 days")
        r = await duty.get(
            kpi, params={"from": "2025-01-01T00:00:00Z", "to": "2026-01-02T00:00:01Z"}
        )
        await _refused(r, 400, "at most 366 days")
        r = await duty.get(
            kpi, params={"from": "2025-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"}
        )
        assert r.status == 200
        for params, name in [
            ({"from": "0001-01-01T00:00:00Z"}, "from="),
            ({"from": "1677-01-01T00:00:00Z"}, "from="),
            ({"to": "9999-12-31T23:59:59-08:00"}, "to="),
        ]:
            await _refused(await duty.get(kpi, params=params), 400, name, "out of range")

        r = await duty.get(
            kpi, params={"from": "1970-01-01T00:00:00Z", "to": "1970-01-01T00:00:01Z"}
        )
        assert (await r.json())["period"] == {"start_ns": 0, "end_ns": 10**9, "hours": 1 / 3600}
        r = await duty.get(kpi, params={"to": "1970-01-01T00:00:00Z"})
        assert (await r.json())["period"]["end_ns"] == 0
    finally:
        await duty.close()


async def test_times_out_of_range_answer_400_naming_the_parameter_on_every_route(app: App) -> None:
    duty, auditor = await app.signed_in("duty"), await app.signed_in("auditor")
    firm, secadmin = await app.signed_in("enterprise"), await app.signed_in("secadmin")
    try:
        series = f"/api/points/{app.point}/series"
        for params, name in [
            ({"start": "99999999999999999", "end": "1"}, "start="),
            ({"end": "99999999999999999"}, "end="),
            ({"start": "-99999999999999999"}, "start="),
            ({"start": "9" * 5000}, "start="),
            ({"start": "0001-01-01T00:00:00Z"}, "start="),
            ({"start": "0001-01-01T00:00:00+08:00"}, "start="),
            ({"end": "9999-12-31T23:59:59-08:00"}, "end="),
        ]:
            await _refused(await duty.get(series, params=params), 400, name, "out of range")
        r = await duty.get(series, params={"start": "0", "end": "1000"})
        assert r.status == 200  # the epoch itself is a time
        assert (await r.json())["end"] == "1970-01-01T00:00:01.000+00:00"
        for params, name in [
            ({"from": "0001-01-01T00:00:00Z"}, "from="),
            ({"to": "9999-12-31T23:59:59-08:00"}, "to="),
        ]:
            await _refused(await duty.get("/api/alarms", params=params), 400, name)
        for path in ("/api/audit", "/api/audit/export?format=csv"):
            for params, name in [
                ({"start": "0001-01-01T00:00:00+08:00"}, "start="),
                ({"end": "9999-12-31T23:59:59-08:00"}, "end="),
            ]:
                await _refused(await auditor.get(path, params=params), 400, name, "out of range")

        for started in ("0001-01-01T00:00:00+08:00", "9999-12-31T20:00:00-08:00"):
            r = await firm.post("/api/special-work", json=_work(started_at=started))
            assert (await _refused(r, 400, "out of range"))["field"] == "started_at"
        token = {"name": "t", "permissions": ["monitor:read"], "enterprise": "E9"}
        for expires in ("9999-12-31T23:59:59-08:00", "0001-01-01T00:00:00+08:00"):
            r = await secadmin.post(
                "/api/admin/security/tokens", json=token | {"expires_at": expires}
            )
            assert (await _refused(r, 400, "out of range"))["field"] == "expires_at"
    finally:
        for client in (duty, auditor, firm, secadmin):
            await client.close()


async def test_ids_are_ascii_digits_within_their_column_else_unknown(app: App) -> None:
    alarm = await app.alarm()
    duty, shift = await app.signed_in("duty"), await app.signed_in("shift")
    firm, secadmin = await app.signed_in("enterprise"), await app.signed_in("secadmin")
    sysadmin = await app.signed_in("sysadmin")
    # Arabic-Indic digits of real ids were taken as those ids; "²" failed in int().
    arabic = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
    try:
        for client, method, path, says in [
            (duty, "GET", f"/api/points/{str(app.point).translate(arabic)}/series", "no point"),
            (duty, "GET", "/api/points/²/series", "no point"),
            (duty, "GET", "/api/points/2147483648/series", "no point"),
            (duty, "GET", f"/api/alarms/{str(alarm).translate(arabic)}", "no alarm"),
            (duty, "GET", "/api/alarms/²", "no alarm"),
            (duty, "POST", "/api/alarms/²/ack", "no alarm"),
            (duty, "POST", "/api/alarms/99999999999999999999/ack", "no alarm"),
            (shift, "DELETE", "/api/alarms/rules/²", "no point"),
            (shift, "DELETE", f"/api/alarms/rules/{str(app.point).translate(arabic)}", "no point"),
            (duty, "POST", "/api/warnings/²/close", "no warning"),
            (firm, "POST", "/api/special-work/²/end", "no special work"),
            (firm, "POST", "/api/special-work/99999999999999999999/end", "no special work"),
            (firm, "POST", "/api/special-work/9223372036854775808/end", "no special work"),
            (duty, "GET", "/api/alarms/²/clip.mp4", "no clip"),
            (duty, "GET", "/api/alarms/9223372036854775808/snapshot.jpg", "no snapshot"),
            (secadmin, "DELETE", "/api/admin/security/tokens/²", "no token"),
            (secadmin, "DELETE", "/api/admin/security/tokens/2147483648", "no token"),
            (sysadmin, "POST", "/api/admin/tokens/99999999999999999999/activate", "no token"),
        ]:
            r = await client.request(method, path, json={})
            await _refused(r, 404, says)
    finally:
        for client in (duty, shift, firm, secadmin, sysadmin):
            await client.close()


async def test_nul_characters_answer_400_naming_the_field(app: App) -> None:
    alarm = await app.alarm()
    duty, firm = await app.signed_in("duty"), await app.signed_in("enterprise")
    auditor = await app.signed_in("auditor")
    try:
        r = await duty.post("/api/sources/HS1/state?enterprise=E9",
                            json={"state": "running", "reason": "a\x00b"})  # fmt: skip
        assert (await _refused(r, 400, "reason: must not contain NUL"))["field"] == "reason"
        r = await duty.post(f"/api/alarms/{alarm}/ack", json={"comment": "nul\x00byte"})
        assert (await _refused(r, 400, "NUL"))["field"] == "comment"
        r = await firm.post("/api/special-work", json=_work(location="\x00"))
        assert (await _refused(r, 400, "NUL"))["field"] == "location"
        r = await firm.post("/api/special-work/1/end", json={"note": "\x00"})
        assert (await _refused(r, 400, "NUL"))["field"] == "note"
        r = await duty.post("/api/alarms/ack", json={"ids": [alarm], "comment": "x\x00"})
        await _refused(r, 400, "comment: must not contain NUL")
        for client, path, name in [
            (duty, "/api/special-work?source=%00", "source"),
            (duty, "/api/special-work?enterprise=%00", "enterprise"),
            (duty, "/api/commitments?enterprise=%00", "enterprise"),
            (auditor, "/api/audit?username=a%00b", "username"),
        ]:
            r = await client.get(path)
            assert (await _refused(r, 400, f"{name}: must not contain NUL"))["field"] == name
        # Nothing half done: the alarm was not acknowledged.
        state = (await (await duty.get(f"/api/alarms/{alarm}")).json())["state"]
        assert state == "unack"
    finally:
        for client in (duty, firm, auditor):
            await client.close()


async def test_a_non_ascii_csrf_token_is_refused_like_a_wrong_one(app: App) -> None:
    duty = await app.signed_in("duty")
    try:
        r = await duty.post("/api/alarms/999999/ack", json={}, headers={"X-CSRF-Token": "é"})
        assert r.status == 403 and (await r.json())["code"] == "csrf"
    finally:
        await duty.close()


async def test_non_finite_numbers_are_refused_naming_the_field(app: App) -> None:
    alarm = await app.alarm()
    sysadmin, shift = await app.signed_in("sysadmin"), await app.signed_in("shift")
    try:
        for number in ("1e309", "-1e309", "NaN", "Infinity"):
            data = '{"name": "leak", "target": "TK101", "params": {"rate_g_s": ' + number + "}}"
            r = await sysadmin.post("/api/demo/scenario", data=data, headers=JSON)
            body = await _refused(r, 400, "must be a finite number")
            assert body["field"] == "params.rate_g_s"
        r = await shift.put(f"/api/alarms/rules/{app.point}", data='{"idlh_mg_m3": 1e309}',
                            headers=JSON)  # fmt: skip
        assert (await _refused(r, 400, "finite"))["field"] == "idlh_mg_m3"
        r = await shift.post(f"/api/alarms/{alarm}/shelve",
                             data='{"reason": "x", "duration_s": 1e309}', headers=JSON)  # fmt: skip
        assert (await _refused(r, 400, "finite"))["field"] == "duration_s"
        rules = (await (await shift.get("/api/alarms/rules")).json())["rules"]
        assert [(r["point"], r["source"]) for r in rules if r["point"] == app.point] == [
            (app.point, "config")
        ]  # (the other rule is its device's link point's)
    finally:
        await sysadmin.close()
        await shift.close()


async def test_bodies_take_values_of_their_own_type_only(app: App) -> None:
    alarm = await app.alarm()
    duty, firm = await app.signed_in("duty"), await app.signed_in("enterprise")
    try:
        assert alarm == 1  # which a true taken as 1 acknowledged
        r = await duty.post("/api/alarms/ack", json={"ids": [True]})
        assert (await _refused(r, 400))["field"] == "ids.0"
        r = await duty.post(f"/api/alarms/{alarm}/shelve", json={"reason": "x", "duration_s": "60"})
        assert (await _refused(r, 400))["field"] == "duration_s"
        r = await duty.post(f"/api/alarms/{alarm}/shelve", json={"reason": "x", "one_shot": "yes"})
        assert (await _refused(r, 400))["field"] == "one_shot"
        state = (await (await duty.get(f"/api/alarms/{alarm}")).json())["state"]
        assert state == "unack"

        r = await firm.post("/api/special-work", json=_work(started_at=1234567890))
        assert (await _refused(r, 400))["field"] == "started_at"
        commitment = {
            "date": app.run.reports.today().isoformat(), "risk_level": "blue",
            "production_state": "normal", "units_running": 1, "units_stopped": 0,
            "units_maintenance": 0, "sources_safe": {"HS1": True}, "signed_by": "王总",
        }  # fmt: skip
        for change, field in [
            ({"sources_safe": {"HS1": "yes"}}, "sources_safe.HS1"),
            ({"sources_safe": {"HS1": 1}}, "sources_safe.HS1"),
            ({"units_running": "1"}, "units_running"),
            ({"units_running": 1.0}, "units_running"),
        ]:
            r = await firm.post("/api/commitments", json=commitment | change)
            assert (await _refused(r, 400))["field"] == field
        assert await app.run.store.pool.fetchval("SELECT count(*) FROM special_work") == 0
        r = await firm.post("/api/commitments", json=commitment)
        assert r.status == 201, await r.text()  # the same, well typed, is taken
    finally:
        await duty.close()
        await firm.close()


async def test_bad_operator_input_answers_400_not_409(app: App) -> None:
    alarm = await app.alarm()
    warning = await pushed_data_interruption(app.run.warnings, "E9", "王总")
    duty, firm = await app.signed_in("duty"), await app.signed_in("enterprise")
    try:
        shelve = f"/api/alarms/{alarm}/shelve"
        r = await duty.post(shelve, json={"reason": "   ", "duration_s": 60})
        assert (await _refused(r, 400))["field"] == "reason"
        r = await duty.post(shelve, json={"reason": "x", "duration_s": 10**9})
        await _refused(r, 400, "duration_s: at most 28800 s")
        r = await duty.post(f"/api/alarms/{alarm}/remove", json={"reason": "   "})
        assert (await _refused(r, 400))["field"] == "reason"

        assert (await firm.post(f"/api/warnings/{warning}/sign", json={})).status == 200
        r = await firm.post(f"/api/warnings/{warning}/feedback",
                            json={"reason": "bad_luck", "measures": "x"})  # fmt: skip
        assert (await _refused(r, 400, "unknown reason code"))["code"] == "unknown_reason"
        r = await firm.post(f"/api/warnings/{warning}/feedback",
                            json={"reason": "false_alarm", "measures": "  "})  # fmt: skip
        assert (await _refused(r, 400))["code"] == "no_measures"
        r = await duty.post(f"/api/warnings/{warning}/regulator-clear", json={})
        assert (await _refused(r, 400))["code"] == "reason_required"
        state = (await (await duty.get(f"/api/alarms/{alarm}")).json())["state"]
        assert state == "unack"
    finally:
        await duty.close()
        await firm.close()


async def test_refusals_before_a_self_auditing_handler_runs_are_audited(app: App) -> None:
    duty, sysadmin = await app.signed_in("duty"), await app.signed_in("sysadmin")
    secadmin = await app.signed_in("secadmin")
    anonymous = app.client()
    try:
        new = {"username": "evil1", "role": "duty_officer"}
        assert (await duty.post("/api/admin/accounts", json=new)).status == 403
        assert (await anonymous.post("/api/admin/accounts", json=new)).status == 401
        assert (await sysadmin.post("/api/admin/accounts", json={"username": 5})).status == 400
        r = await sysadmin.post("/api/admin/accounts/expert/disable", headers={"X-CSRF-Token": ""})
        assert r.status == 403
        r = await secadmin.post("/api/admin/security/tokens", json={"name": "t"})
        assert r.status == 400
        assert (await anonymous.post("/api/auth/logout")).status == 401
        r = await anonymous.post("/api/auth/login", json={"username": "a\x00b", "password": "x"})
        assert r.status == 400
        # Allowed: recorded once, by the handler.
        r = await sysadmin.post("/api/admin/accounts/expert/disable")
        assert r.status == 200
    finally:
        for client in (duty, sysadmin, secadmin, anonymous):
            await client.close()
    assert await app.audit("POST /api/admin/accounts") == [
        ("duty", "refused 403"), (None, "refused 401"), ("sysadmin", "refused 400"),
    ]  # fmt: skip
    assert await app.audit("POST /api/admin/accounts/{target}/disable") == [
        ("sysadmin", "refused 403")
    ]
    assert await app.audit("admin.account.disable") == [("sysadmin", "ok")]
    assert await app.audit("POST /api/admin/security/tokens") == [("secadmin", "refused 400")]
    assert await app.audit("POST /api/auth/logout") == [(None, "refused 401")]
    assert await app.audit("POST /api/auth/login") == [(None, "refused 400")]


async def test_an_unknown_enterprise_filter_is_a_404_on_every_listing(app: App) -> None:
    # A typo in ?enterprise= must not read as "nothing there" (no alarms, nobody missing a
    # commitment): it answers 404 like another enterprise's code does for an enterprise user.
    listings = [
        ("/api/alarms", "enterprise"),
        ("/api/alarms/rules", "enterprise"),
        ("/api/alarms/kpi", "area"),
        ("/api/sources", "enterprise"),
        ("/api/warnings", "enterprise"),
        ("/api/cameras", "enterprise"),
        ("/api/special-work", "enterprise"),
        ("/api/commitments", "enterprise"),
        ("/api/points", "enterprise"),
        ("/api/latest", "enterprise"),
    ]
    duty, firm = await app.signed_in("duty"), await app.signed_in("enterprise")
    async with duty, firm:
        for path, name in listings:
            await _refused(await duty.get(path, params={name: "E404"}), 404, "'E404'")
            # E8 has no devices: known all the same.
            assert (await duty.get(path, params={name: "E8"})).status == 200, path
            await _refused(await firm.get(path, params={name: "E8"}), 404, "'E8'")
            assert (await firm.get(path, params={name: "E9"})).status == 200, path


async def test_a_query_parameter_the_route_does_not_take_answers_400_on_every_route(
    app: App,
) -> None:
    # A misspelt filter (?level= for the warnings' own, ?from= for the series' start) was
    # ignored: the answer read as if nothing had been asked. Every route now names it and what
    # it takes instead; as the first one its role may read.
    routes = [
        r
        for r in app.server.app[ROUTES]
        if r.method == "GET" and "{" not in r.path and r.path.startswith(("/api/", "/ws"))
    ]
    assert len(routes) > 20
    users = [await app.signed_in(u) for u in ("duty", "sysadmin", "auditor", "secadmin")]
    try:
        for route in routes:
            for user in users:
                r = await user.get(route.path, params={"zz": "1"})
                if r.status != 403:
                    takes = ", ".join(route.query) or "no query parameters"
                    await _refused(r, 400, "unknown query parameter 'zz'", f"takes: {takes}")
                    break
            else:
                raise AssertionError(f"no demo role may read {route.path}")
        duty = users[0]
        await _refused(await duty.get("/api/warnings", params={"level": "red"}), 400, "'level'")
        series = f"/api/points/{app.point}/series"
        body = await _refused(await duty.get(series, params={"from": "x"}), 400, "start, end")
        assert body["field"] == "from"
        # A period that ends before it starts is refused, not answered with nothing.
        backwards = {"from": "2026-12-02T00:00:00Z", "to": "2026-12-01T00:00:00Z"}
        for path in ("/api/alarms", "/api/alarms/kpi"):
            await _refused(await duty.get(path, params=backwards), 400, "from must be before to")
        # Those it takes still work, the console's cache-buster of a snapshot too, and the
        # console's page takes anything a link brings.
        page = await duty.get("/", params={"from": "sms"})
        assert page.status == 200 and page.content_type == "text/html"
        assert (await duty.get(series, params={"start": "0", "buckets": "10"})).status == 200
        snapshot = await duty.get("/api/cameras/C404/snapshot.jpg", params={"t": "1"})
        await _refused(snapshot, 404, "C404")
        # A state change refused for it is audited as refused.
        alarm = await app.alarm()
        ack = await duty.post(f"/api/alarms/{alarm}/ack", params={"comment": "x"}, json={})
        await _refused(ack, 400, "'comment'", "takes: no query parameters")
        assert ("duty", "refused 400") in await app.audit("POST /api/alarms/{id}/ack")
    finally:
        for user in users:
            await user.close()
