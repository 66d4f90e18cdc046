"""The whole application behind authentication: the role × route matrix generated from the route
table, CSRF, enterprise isolation on every resource, audit of changes, hardening, OpenAPI."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pyotp
import pytest
from aiohttp import ClientSession, CookieJar, WSServerHandshakeError, web
from aiohttp.test_utils import TestServer

from anjian.runtime import Running, Settings, build_app
from tests.conftest import (
    DUTY,
    ENTERPRISE,
    close_code_sent,
    free_port,
    pushed_data_interruption,
    serving,
    sign_in,
)
from web.accounts import DemoAccount
from web.app import FEEDS, OPENAPI_REF, ROUTES, STATIC_PREFIX
from web.security import ROLE_PERMISSIONS, TOPICS, Permission, Role, Route

# Two enterprises whose devices are never reached: the registry is what scoping is about.
CONFIG = """
[[enterprises]]
code = "E8"
name = "乙化工"
region = "320116"
  [[enterprises.devices]]
  code = "PLC8"
  protocol = "modbus"
  host = "127.0.0.1"
  port = {port}
  period_s = 60
    [[enterprises.devices.points]]
    code = "LT8"
    name = "液位"
    table = "holding"
    address = 0

[[enterprises]]
code = "E9"
name = "甲化工"
region = "320116"
  [[enterprises.devices]]
  code = "PLC9"
  protocol = "modbus"
  host = "127.0.0.1"
  port = {port}
  period_s = 60
    [[enterprises.devices.points]]
    code = "LT9"
    name = "液位"
    table = "holding"
    address = 0
"""


@dataclass
class App:
    server: TestServer
    run: Running
    accounts: dict[str, DemoAccount]
    db: str

    def client(self, **kwargs: Any) -> ClientSession:
        base = f"http://{self.server.host}:{self.server.port}"
        return ClientSession(base, cookie_jar=CookieJar(unsafe=True), **kwargs)

    def run_routes(self) -> list[Route]:
        application: web.Application = self.server.app
        return list(application[ROUTES])


@pytest.fixture
async def app(database_url: str, tmp_path: Path) -> AsyncIterator[App]:
    config = tmp_path / "plant.toml"
    config.write_text(CONFIG.format(port=free_port()), encoding="utf-8")
    async with serving(config, database_url, "E9") as served:
        accounts = {str(a.role): a for a in served.accounts}
        yield App(served.server, served.run, accounts, database_url)


async def _client_for(app: App, role: Role) -> tuple[ClientSession, dict[str, str]]:
    """A client signed in with the role's demo account (anonymous for the public)."""
    client = app.client()
    if role is Role.PUBLIC:
        return client, {}
    account = app.accounts[str(role)]
    totp = pyotp.TOTP(account.totp_secret).now() if account.totp_secret else None
    csrf = await sign_in(client, account.username, account.password, totp)
    headers = {"X-CSRF-Token": csrf}
    me = await (await client.get("/api/auth/me")).json()
    if me["account"].get("must_enrol_totp"):
        # A role that must use a second factor (the leader) enrols one before anything else.
        secret = (await (await client.post("/api/auth/totp", headers=headers)).json())["secret"]
        r = await client.post(
            "/api/auth/totp/confirm", json={"code": pyotp.TOTP(secret).now()}, headers=headers
        )
        assert r.status == 200, await r.text()
    return client, headers


def _path(route: Route, point: int) -> str:
    path = route.path.replace("{id}", str(point)).replace("{target}", "no-such-target")
    return path.replace("{code}", "no-such-code").replace("{point}", str(point))


def test_every_route_of_the_application_declares_a_permission() -> None:
    application = build_app(Settings())
    declared = {(r.method, r.path) for r in application[ROUTES]}
    for resource in application.router.resources():
        info = resource.get_info()
        path = info.get("path") or info.get("formatter") or info.get("prefix", "")
        if path.rstrip("/") + "/" == STATIC_PREFIX:
            continue  # the console's static files: public, no data
        for route in resource:
            if route.method == "HEAD":
                continue  # aiohttp adds HEAD beside each GET
            assert (route.method, path) in declared, f"{route.method} {path} has no declaration"
    for route in application[ROUTES]:
        assert route.summary, f"{route.method} {route.path} has no summary"
    assert set(TOPICS) == {"points", *FEEDS}  # every topic /ws serves is declared


async def test_role_by_route_matrix(app: App) -> None:
    point = app.run.points.id("E9", "LT9")
    routes = sorted(app.run_routes(), key=lambda r: r.path == "/api/auth/logout")
    failures = []
    for role in Role:
        client, headers = await _client_for(app, role)
        try:
            for route in routes:
                allowed = route.permission is None or route.permission in ROLE_PERMISSIONS[role]
                r = await client.request(
                    route.method, _path(route, point), headers=headers,
                    json={} if route.method != "GET" else None,
                )  # fmt: skip
                body = await r.text()
                if allowed and r.status in (401, 403):
                    failures.append(f"{role} {route.method} {route.path}: {r.status} {body}")
                if not allowed:
                    want = (401, "unauthenticated") if role is Role.PUBLIC else (403, "forbidden")
                    if r.status != want[0] or want[1] not in body:
                        failures.append(
                            f"{role} {route.method} {route.path}: want {want}, got {r.status}"
                        )
        finally:
            await client.close()
    assert failures == []


async def test_state_change_without_csrf_header_is_refused(app: App) -> None:
    client, headers = await _client_for(app, Role.SYSADMIN)
    try:
        r = await client.post("/api/demo/scenario", json={"name": "normal"})
        assert r.status == 403 and (await r.json())["code"] == "csrf"
        r = await client.post(
            "/api/demo/scenario", json={"name": "normal"}, headers={"X-CSRF-Token": "forged"}
        )
        assert r.status == 403 and (await r.json())["code"] == "csrf"
        r = await client.post("/api/demo/scenario", json={"name": "normal"}, headers=headers)
        assert r.status == 404  # past the guard: this is not the demo plant
    finally:
        await client.close()


async def test_enterprise_user_sees_other_enterprises_as_nonexistent(app: App) -> None:
    other = app.run.points.id("E8", "LT8")
    own = app.run.points.id("E9", "LT9")
    async with app.client() as client:
        await sign_in(client, *ENTERPRISE)
        listed = await (await client.get("/api/enterprises")).json()
        assert [e["code"] for e in listed] == ["E9"]
        points = await (await client.get("/api/points")).json()
        assert [p["id"] for p in points] == [own, app.run.points.id("E9", "PLC9.link")]

        async def same_as_missing(path: str, missing: str, params: dict[str, str]) -> None:
            a = await client.get(path, params=params)
            b = await client.get(missing, params={k: "NOPE" for k in params})
            assert (a.status, b.status) == (404, 404)
            assert (await a.json())["error"].replace("E8", "NOPE").replace(str(other), "NOPE") == (
                (await b.json())["error"]
            )

        await same_as_missing("/api/points", "/api/points", {"enterprise": "E8"})
        await same_as_missing("/api/latest", "/api/latest", {"enterprise": "E8"})
        await same_as_missing(f"/api/points/{other}/series", "/api/points/NOPE/series", {})
        assert (await client.get(f"/api/points/{own}/series")).status == 200

        ws = await client.ws_connect("/ws")
        await ws.send_json({"op": "subscribe", "topics": ["points:E8", "points:NOPE"]})
        error = await ws.receive_json()  # another enterprise's topic: unknown like a missing one
        assert error["type"] == "error"
        assert error["message"].startswith("unknown topic(s) 'points:E8', 'points:NOPE':")
        await ws.close()
        # The centre's duty officer sees both.
    async with app.client() as client:
        await sign_in(client, *DUTY)
        listed = await (await client.get("/api/enterprises")).json()
        assert [e["code"] for e in listed] == ["E8", "E9"]


async def test_every_state_change_is_audited_with_who_and_result(app: App) -> None:
    client, headers = await _client_for(app, Role.DUTY_OFFICER)
    try:
        r = await client.post("/api/demo/scenario", json={"name": "normal"}, headers=headers)
        assert r.status == 403
    finally:
        await client.close()
    client, headers = await _client_for(app, Role.SYSADMIN)
    try:
        r = await client.post("/api/demo/scenario", json={"name": "normal"}, headers=headers)
        assert r.status == 404
    finally:
        await client.close()
    conn = await asyncpg.connect(app.db)
    try:
        rows = await conn.fetch(
            "SELECT username, role, action, result, source, detail FROM audit_log "
            "WHERE action = 'POST /api/demo/scenario' ORDER BY seq"
        )
    finally:
        await conn.close()
    assert [(r["username"], r["role"], r["result"]) for r in rows] == [
        ("duty", "duty_officer", "refused 403"),
        ("sysadmin", "sysadmin", "refused 404"),
    ]
    # What was asked for is recorded once the body has been read (not for a refused role).
    assert rows[0]["detail"] is None
    assert json.loads(rows[1]["detail"]) == {"name": "normal", "target": None, "params": {}}
    assert all(r["source"] == "127.0.0.1" for r in rows)


async def test_bad_body_names_the_field_and_oversized_body_is_refused(app: App) -> None:
    client, headers = await _client_for(app, Role.SYSADMIN)
    try:
        r = await client.post("/api/demo/scenario", json={"name": 5}, headers=headers)
        body = await r.json()
        assert r.status == 400 and body["field"] == "name"
        r = await client.post("/api/demo/scenario", data=b"{not json", headers=headers)
        assert r.status == 400 and "not JSON" in (await r.json())["error"]
        big = {"name": "normal", "target": "x" * 2_000_000}
        r = await client.post("/api/demo/scenario", json=big, headers=headers)
        assert r.status == 413 and "Maximum request body size" in (await r.json())["error"]
        # aiohttp's own answers are JSON too on the API.
        r = await client.delete("/api/demo/scenario", headers=headers)
        assert r.status == 405 and "Method Not Allowed" in (await r.json())["error"]
        r = await client.get("/api/no/such/route")
        assert r.status == 404 and "error" in await r.json()
    finally:
        await client.close()


async def test_security_headers_on_pages_and_errors(app: App) -> None:
    async with app.client() as client:
        for path in ("/", "/api/health", "/static/js/main.js", "/no/such/page"):
            r = await client.get(path)
            assert r.headers["X-Frame-Options"] == "DENY", path
            assert "script-src 'self'" in r.headers["Content-Security-Policy"], path
            assert "unsafe-inline" not in r.headers["Content-Security-Policy"], path
            assert r.headers["Referrer-Policy"] == "no-referrer", path
            assert r.headers["X-Content-Type-Options"] == "nosniff", path


async def test_unauthenticated_requests_get_401_everywhere_but_login_and_page(app: App) -> None:
    async with app.client() as client:
        assert (await client.get("/")).status == 200
        assert (await client.get("/api/latest", params={"enterprise": "E9"})).status == 401
        r = await client.get("/ws")
        assert r.status == 401


async def test_openapi_documents_every_route_with_its_permission_and_schema(app: App) -> None:
    async with app.client() as client:
        await sign_in(client, *DUTY)
        doc = await (await client.get("/api/openapi.json")).json()
    for route in app.run_routes():
        op = doc["paths"][route.path][route.method.lower()]
        assert op["x-permission"] == (route.permission.value if route.permission else None)
        if route.body is not None:
            schema = op["requestBody"]["content"]["application/json"]["schema"]
            expected = route.body.model_json_schema(ref_template=OPENAPI_REF)
            defs = expected.pop("$defs", {})
            assert schema == expected
            assert {n: doc["components"]["schemas"][n] for n in defs} == defs
    login = doc["paths"]["/api/auth/login"]["post"]
    assert "password" in login["requestBody"]["content"]["application/json"]["schema"]["properties"]
    # Every reference resolves in the document (a client generator or fuzzer follows them).
    refs = _refs(doc)
    assert "#/components/schemas/Permission" in refs
    for ref in refs:
        node: Any = doc
        for part in ref.removeprefix("#/").split("/"):
            assert isinstance(node, dict) and part in node, f"{ref} does not resolve"
            node = node[part]


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


async def test_api_token_reads_only_its_enterprise(app: App) -> None:
    client, headers = await _client_for(app, Role.SECADMIN)
    try:
        r = await client.post(
            "/api/admin/security/tokens",
            json={"name": "gw-e9", "permissions": [Permission.MONITOR_READ.value],
                  "enterprise": "E9",
                  "expires_at": (datetime.now(UTC) + timedelta(days=30)).isoformat()},
            headers=headers,
        )  # fmt: skip
        assert r.status in (200, 201), await r.text()
        made = await r.json()
    finally:
        await client.close()
    client, headers = await _client_for(app, Role.SYSADMIN)
    async with client:
        r = await client.post(f"/api/admin/tokens/{made['id']}/activate", headers=headers)
        assert r.status == 200, await r.text()
    token = made["token"]
    async with app.client(headers={"Authorization": f"Bearer {token}"}) as machine:  # fmt: skip
        assert (await machine.get("/api/latest", params={"enterprise": "E9"})).status == 200
        assert (await machine.get("/api/latest", params={"enterprise": "E8"})).status == 404
        assert (await machine.get("/api/health")).status == 403


def test_permission_table_keeps_the_three_administrators_apart_and_out_of_business() -> None:
    business = {Permission.MONITOR_READ}
    admin_jobs = {
        Role.SYSADMIN: {Permission.ACCOUNTS_MANAGE},
        Role.SECADMIN: {Permission.SECURITY_MANAGE},
        Role.AUDITOR: {Permission.AUDIT_READ},
    }
    for role, jobs in admin_jobs.items():
        held = ROLE_PERMISSIONS[role]
        assert jobs <= held and not business & held, role
        for other, other_jobs in admin_jobs.items():
            if other is not role:
                assert not other_jobs & held, f"{role} holds {other}'s job"
    assert ROLE_PERMISSIONS[Role.AUDITOR] == {Permission.SELF, Permission.AUDIT_READ}
    assert Permission.SYSTEM_READ not in ROLE_PERMISSIONS[Role.ENTERPRISE]
    assert ROLE_PERMISSIONS[Role.PUBLIC] == frozenset()


async def test_admin_init_and_audit_verify_commands(database_url: str, tmp_path: Path) -> None:
    import asyncio
    import os
    import sys

    env = {**os.environ, "ANJIAN_DATABASE_URL": database_url}

    async def anjian(*args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "anjian.cli", *args, cwd=tmp_path, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    code, out, _ = await anjian("admin", "init")
    assert code == 0
    for name in ("sysadmin", "secadmin", "auditor"):
        assert f"user {name}" in out
    assert out.count("TOTP secret") == 3
    code, _, err = await anjian("admin", "init")
    assert code == 1 and "admin init:" in err

    code, out, _ = await anjian("audit", "verify")
    assert (code, out.strip().split(":")[0]) == (0, "audit log OK")
    conn = await asyncpg.connect(database_url)
    try:
        first = await conn.fetchval("SELECT min(seq) FROM audit_log")
        assert first is not None  # admin init itself was audited
        await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
        await conn.execute("UPDATE audit_log SET result = 'forged' WHERE seq = $1", first)
        await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")
    finally:
        await conn.close()
    code, out, _ = await anjian("audit", "verify")
    assert code == 1 and f"BROKEN at record {first}" in out


async def test_background_polling_does_not_keep_an_idle_session_alive(app: App) -> None:
    async with app.client() as client:
        await sign_in(client, *DUTY)
        conn = await asyncpg.connect(app.db)
        try:
            # The duty officer walked away 29 minutes ago (idle limit 30); the page still polls.
            await conn.execute("UPDATE sessions SET last_seen_at = now() - interval '29 minutes'")
            r = await client.get("/api/health", headers={"X-Anjian-Background": "1"})
            assert r.status == 200
            await conn.execute(
                "UPDATE sessions SET last_seen_at = last_seen_at - interval '2 minutes'"
            )
        finally:
            await conn.close()
        r = await client.get("/api/health", headers={"X-Anjian-Background": "1"})
        assert r.status == 401 and (await r.json())["code"] == "session_expired"


async def test_live_feed_closes_when_its_session_ends(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    import web.app

    monkeypatch.setattr(web.app, "SESSION_CHECK_S", 0.1)
    async with app.client() as client:
        csrf = await sign_in(client, *DUTY)
        ws = await client.ws_connect("/ws")
        await ws.send_json({"op": "subscribe", "topics": ["points:E9"]})
        assert (await ws.receive_json())["type"] == "subscribed"
        r = await client.post("/api/auth/logout", headers={"X-CSRF-Token": csrf})
        assert r.status == 200
        assert await close_code_sent(ws, 5) == 4401


async def test_live_feed_closes_when_its_account_changes_role(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A feed keeps no rights its account has lost: a duty officer made an enterprise user of E8
    # stops receiving E9 at once (the console then reconnects with the new scope).
    import web.app

    monkeypatch.setattr(web.app, "SESSION_CHECK_S", 0.1)
    sec, headers = await _client_for(app, Role.SECADMIN)
    async with sec, app.client() as duty:
        await sign_in(duty, *DUTY)
        ws = await duty.ws_connect("/ws")
        await ws.send_json({"op": "subscribe", "topics": ["points:E9"]})
        assert (await ws.receive_json())["type"] == "subscribed"
        r = await sec.put(
            f"/api/admin/security/accounts/{DUTY[0]}/role",
            json={"role": "enterprise", "enterprise": "E8"},
            headers=headers,
        )
        assert r.status == 200, await r.text()
        assert await close_code_sent(ws, 5) == 4403
        ws = await duty.ws_connect("/ws")
        await ws.send_json({"op": "subscribe", "topics": ["points:E9"]})
        assert (await ws.receive_json())["type"] == "error"  # E9 is no longer its to see
        await ws.close()


async def test_a_closed_live_feed_leaves_no_task_behind(app: App) -> None:
    # The feed's pump waits for new values or a new subscription; closed meanwhile, it must not
    # leave those waits pending for the garbage collector ("Task was destroyed but it is
    # pending!", as the demo's log once said).
    import asyncio

    def waiting() -> int:
        return sum(1 for t in asyncio.all_tasks() if "Event.wait" in repr(t.get_coro()))

    async with app.client() as client:
        await sign_in(client, *DUTY)
        before = waiting()
        ws = await client.ws_connect("/ws")
        await ws.send_json({"op": "subscribe", "topics": ["points:E9"]})
        assert (await ws.receive_json())["type"] == "subscribed"
        for _ in range(100):  # until the pump waits (the unreachable PLC sends little)
            if waiting() > before:
                break
            await asyncio.sleep(0.05)
        assert waiting() > before
        await ws.close()
        await asyncio.sleep(0.3)
        assert waiting() == before


async def test_live_feed_opens_only_from_the_consoles_own_origin(app: App) -> None:
    # The session cookie goes along with a handshake from any page of the same site (another
    # port or sub-domain): the page's origin must be the server's own.
    async with app.client() as client:
        await sign_in(client, *DUTY)
        host = f"{app.server.host}:{app.server.port}"
        ws = await client.ws_connect("/ws", headers={"Origin": f"http://{host}"})
        await ws.close()
        ws = await client.ws_connect("/ws")  # not a browser: no Origin
        await ws.close()
        for origin in (f"http://{app.server.host}:1", "http://evil.example", "null"):
            with pytest.raises(WSServerHandshakeError) as refused:
                await client.ws_connect("/ws", headers={"Origin": origin})
            assert refused.value.status == 403


async def test_a_subscription_naming_many_unknown_topics_gets_one_answer(app: App) -> None:
    async with app.client() as client:
        await sign_in(client, *DUTY)
        ws = await client.ws_connect("/ws")
        topics = [f"points:X{i}" for i in range(10_000)] + ["points:E9"]
        await ws.send_json({"op": "subscribe", "topics": topics})
        error = await ws.receive_json()
        assert error["type"] == "error"
        assert "'points:X0'" in error["message"] and "and 9990 more" in error["message"]
        assert await ws.receive_json() == {"type": "subscribed", "topics": ["points:E9"]}
        await ws.close()


async def test_warnings_are_scoped_and_each_party_takes_only_its_own_steps(app: App) -> None:
    desk = app.run.warnings
    ids = {e: await pushed_data_interruption(desk, e, "王总") for e in ("E8", "E9")}

    async with app.client() as client:
        csrf = {"X-CSRF-Token": await sign_in(client, *ENTERPRISE)}
        listed = await (await client.get("/api/warnings")).json()
        assert [w["enterprise"] for w in listed["warnings"]] == ["E9"]
        r = await client.get(f"/api/warnings/{ids['E9']}")
        assert r.status == 200 and (await r.json())["id"] == ids["E9"]
        r = await client.get(f"/api/warnings/{ids['E8']}")
        assert r.status == 404  # another enterprise's warning does not exist for it
        r = await client.post(f"/api/warnings/{ids['E8']}/sign", json={}, headers=csrf)
        assert r.status == 404
        r = await client.post(f"/api/warnings/{ids['E9']}/sign", json={}, headers=csrf)
        assert r.status == 200 and (await r.json())["state"] == "signed"
        r = await client.post(f"/api/warnings/{ids['E9']}/sign", json={}, headers=csrf)
        assert r.status == 409 and (await r.json())["code"] == "already_signed"
        r = await client.post(
            f"/api/warnings/{ids['E9']}/feedback",
            json={"reason": "no_such_reason", "measures": "x"}, headers=csrf,
        )  # fmt: skip
        assert r.status == 400 and "false_alarm" in (await r.json())["error"]
        r = await client.post(f"/api/warnings/{ids['E9']}/review", json={}, headers=csrf)
        assert r.status == 403  # reviewing is the regulator's
    async with app.client() as client:
        csrf = {"X-CSRF-Token": await sign_in(client, *DUTY)}
        listed = await (await client.get("/api/warnings")).json()
        assert sorted(w["enterprise"] for w in listed["warnings"]) == ["E8", "E9"]
        r = await client.post(f"/api/warnings/{ids['E9']}/sign", json={}, headers=csrf)
        assert r.status == 403  # signing is the enterprise's
        r = await client.post(
            f"/api/warnings/{ids['E8']}/regulator-clear", json={"reason": "现场核查无异常"},
            headers=csrf,
        )  # fmt: skip
        assert r.status == 200 and (await r.json())["state"] == "cleared"
