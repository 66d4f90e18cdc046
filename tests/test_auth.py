"""Sign-in over real HTTP against real PostgreSQL: passwords, lockout, TOTP, sessions, tokens."""

from __future__ import annotations

import json
import ssl
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pyotp
import pytest
from aiohttp import ClientResponse, ClientSession, CookieJar, TCPConnector, web
from aiohttp.test_utils import TestServer
from argon2 import PasswordHasher
from pydantic import ValidationError

from streams.config import SecuritySettings
from streams.store import Store
from web.accounts import (
    ACCOUNTS,
    DEMO_ACCOUNTS,
    TOKEN_PERMISSIONS,
    Accounts,
    password_problems,
)
from web.audit import AUDIT, AuditLog
from web.auth import ADMIN_ROUTES, AUTH_ROUTES, COOKIE, authenticate
from web.security import (
    BODY,
    PRINCIPAL,
    ROLE_PERMISSIONS,
    ROUTE,
    Handler,
    Permission,
    Role,
    Route,
    json_error,
)

# Still argon2id, at a cost that keeps the tests quick; production uses argon2-cffi's defaults.
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
GOOD = "Good#pass1"


async def _probe(request: web.Request) -> web.StreamResponse:
    """A monitoring read scoped like the real ones: another enterprise's data does not exist."""
    p = request[PRINCIPAL]
    if not p.sees(request.match_info["enterprise"]):
        raise json_error(web.HTTPNotFound, "no such enterprise")
    return web.json_response({"username": p.username, "enterprise": p.enterprise})


PROBE = Route("GET", "/probe/{enterprise}", _probe, Permission.MONITOR_READ, "test probe")


def _guard(routes: dict[object, Route]) -> Any:
    """The contract of the application's guard middleware, in miniature, for these tests."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = routes[request.match_info.route]
        request[ROUTE] = route
        principal = await authenticate(request)
        request[PRINCIPAL] = principal
        if route.permission is not None and not principal.can(route.permission):
            if principal.account_id is None and principal.token_id is None:
                raise json_error(web.HTTPUnauthorized, "sign in first", code="unauthenticated")
            raise json_error(web.HTTPForbidden, "forbidden", code="forbidden")
        if (
            request.method != "GET"
            and principal.csrf_token is not None
            and request.headers.get("X-CSRF-Token") != principal.csrf_token
        ):
            raise json_error(web.HTTPForbidden, "csrf", code="csrf")
        if route.body is not None:
            try:
                request[BODY] = route.body.model_validate_json(await request.text())
            except ValidationError as exc:
                raise json_error(web.HTTPBadRequest, str(exc), code="invalid") from None
        return await handler(request)

    return guard


@dataclass
class User:
    """One browser: its own cookie jar, and the CSRF token its last sign-in returned."""

    http: ClientSession
    csrf: str | None = None
    totp: pyotp.TOTP | None = None

    async def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        h = dict(headers or {})
        if self.csrf:
            h["X-CSRF-Token"] = self.csrf
        async with self.http.request(method, path, json=body, headers=h) as r:
            return r.status, await _payload(r)

    async def login(self, username: str, password: str, **extra: Any) -> tuple[int, Any]:
        if self.totp is not None and "totp" not in extra:
            extra["totp"] = self.totp.now()
        status, data = await self.call(
            "POST", "/api/auth/login", {"username": username, "password": password, **extra}
        )
        if status == 200:
            self.csrf = data["csrf_token"]
        return status, data

    def cookie(self) -> str | None:
        for c in self.http.cookie_jar:
            if c.key == COOKIE:
                return c.value
        return None


async def _payload(r: ClientResponse) -> Any:
    text = await r.text()
    return json.loads(text) if text else None


@dataclass
class Env:
    pool: asyncpg.Pool
    accounts: Accounts
    server: TestServer
    settings: SecuritySettings
    sessions: list[ClientSession] = field(default_factory=list)

    async def user(self, totp_secret: str | None = None) -> User:
        http = ClientSession(
            base_url=str(self.server.make_url("/")),
            cookie_jar=CookieJar(unsafe=True),
            connector=TCPConnector(ssl=False),  # the TLS test's certificate is self-signed
        )
        self.sessions.append(http)
        return User(http, totp=None if totp_secret is None else pyotp.TOTP(totp_secret))

    async def account(
        self,
        username: str,
        role: Role,
        password: str = GOOD,
        *,
        enterprise: str | None = None,
        totp: bool = False,
        must_change: bool = False,
    ) -> str | None:
        """An account straight into the database; returns its TOTP secret if it has one."""
        secret = pyotp.random_base32() if totp else None
        await self.pool.execute(
            "INSERT INTO accounts (username, role, enterprise, password_hash, totp_secret,"
            " must_change_password) VALUES ($1, $2, $3, $4, $5, $6)",
            username,
            str(role),
            enterprise,
            FAST.hash(password),
            secret,
            must_change,
        )
        return secret

    async def signed_in(self, username: str, role: Role, *, enterprise: str | None = None) -> User:
        secret = await self.account(username, role, enterprise=enterprise, totp=role.is_admin)
        user = await self.user(secret)
        status, data = await user.login(username, GOOD)
        assert status == 200, data
        return user


def settings(**changes: Any) -> SecuritySettings:
    return SecuritySettings(**changes)


async def start_env(
    database_url: str, security: SecuritySettings, tls: ssl.SSLContext | None = None
) -> tuple[Env, Store]:
    store = await Store.open(database_url)
    await store.pool.execute(
        "INSERT INTO enterprises (code, name, region) VALUES"
        " ('E1', '甲化工', '320500'), ('E2', '乙化工', '320500')"
    )
    accounts = Accounts(store.pool, security, hasher=FAST)
    app = web.Application()
    app[ACCOUNTS] = accounts
    app[AUDIT] = AuditLog(store.pool)
    routes: dict[object, Route] = {}
    for r in [*AUTH_ROUTES, *ADMIN_ROUTES, PROBE]:
        routes[app.router.add_route(r.method, r.path, r.handler)] = r
    app.middlewares.append(_guard(routes))
    server = TestServer(app)
    await server.start_server(ssl=tls)
    return Env(store.pool, accounts, server, security), store


@pytest.fixture
async def env(database_url: str) -> AsyncIterator[Env]:
    e, store = await start_env(database_url, settings())
    yield e
    for s in e.sessions:
        await s.close()
    await e.server.close()
    await store.close()


async def audit_rows(pool: asyncpg.Pool, action: str) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            "SELECT username, role, result, target, detail FROM audit_log"
            " WHERE action = $1 ORDER BY seq",
            action,
        )
    )


# -- password policy ---------------------------------------------------------------------------


def test_password_policy_names_each_broken_rule() -> None:
    s = SecuritySettings()
    assert password_problems("Abcdef1!", "li", s) == []
    assert password_problems("Abcde1!", "li", s) == ["must have at least 8 characters (has 7)"]
    (classes,) = password_problems("abcdefgh1", "li", s)
    assert "at least 3 of" in classes and "(has 2)" in classes
    assert password_problems("Zhang.San1", "zhang.san1", s) == ["must not be the user name"]
    strict = SecuritySettings(password_min_length=12, password_min_classes=4)
    assert len(password_problems("Abcdefgh123", "li", strict)) == 2
    # Characters that are neither cased letters nor digits (汉字, punctuation) are the 4th class.
    assert password_problems("安全生产Abc1", "li", s) == []


def test_demo_passwords_pass_the_default_policy() -> None:
    for username, _, password in DEMO_ACCOUNTS:
        assert password_problems(password, username, SecuritySettings()) == [], username


async def test_passwords_are_stored_as_argon2id_and_rehashed_when_parameters_change(
    env: Env,
) -> None:
    await env.account("li", Role.DUTY_OFFICER)
    stored = await env.pool.fetchval("SELECT password_hash FROM accounts WHERE username = 'li'")
    assert stored.startswith("$argon2id$") and "m=1024" in stored
    stronger = Accounts(env.pool, env.settings)  # argon2-cffi's default parameters
    new = await stronger.login("li", GOOD, None, "10.0.0.9")
    assert new.rehashed
    rehashed = await env.pool.fetchval("SELECT password_hash FROM accounts WHERE username = 'li'")
    assert rehashed.startswith("$argon2id$") and "m=65536" in rehashed
    again = await stronger.login("li", GOOD, None, "10.0.0.9")
    assert not again.rehashed


async def test_new_password_must_differ_from_the_last_n(env: Env) -> None:
    user = await env.signed_in("li", Role.DUTY_OFFICER)
    # The seeded account has no history row; the first change adds one per password set.
    passwords = [f"Pass#word{i}" for i in range(6)]
    old = GOOD
    for p in passwords:
        status, data = await user.call("POST", "/api/auth/password", {"old": old, "new": p})
        assert status == 200, data
        old = p
    status, data = await user.call("POST", "/api/auth/password", {"old": old, "new": passwords[-5]})
    assert status == 400 and data["code"] == "password_reused"
    assert "last 5" in data["error"]
    # The 6th most recent has left the history window.
    status, data = await user.call("POST", "/api/auth/password", {"old": old, "new": passwords[0]})
    assert status == 200, data
    status, data = await user.call("POST", "/api/auth/password", {"old": passwords[0], "new": "x"})
    assert status == 400 and data["code"] == "weak_password"
    assert any("at least 8 characters" in p for p in data["problems"])
    status, data = await user.call(
        "POST", "/api/auth/password", {"old": "Wrong#pass1", "new": "Other#pass1"}
    )
    assert status == 403 and data["code"] == "bad_credentials"
    assert [r["result"] for r in await audit_rows(env.pool, "auth.password")] == [
        *["ok"] * 6,
        "refused 400",
        "ok",
        "refused 400",
        "refused 403",
    ]


# -- login -----------------------------------------------------------------------------------


async def test_login_sets_a_fresh_httponly_strict_cookie_every_time(env: Env) -> None:
    await env.account("li", Role.DUTY_OFFICER)
    user = await env.user()
    planted = "attacker-chosen-session-id"
    user.http.cookie_jar.update_cookies({COOKIE: planted}, env.server.make_url("/"))
    async with user.http.post("/api/auth/login", json={"username": "li", "password": GOOD}) as r:
        assert r.status == 200
        header = r.headers["Set-Cookie"]
        body = await r.json()
    assert header.startswith(f"{COOKIE}=")
    assert "HttpOnly" in header and "SameSite=Strict" in header and "Path=/" in header
    assert "Secure" not in header  # plain HTTP here; request.secure decides
    assert body["account"]["username"] == "li" and body["account"]["role"] == "duty_officer"
    assert body["account"]["must_change_password"] is False and body["csrf_token"]
    first = user.cookie()
    assert first and first != planted
    user.csrf = body["csrf_token"]
    assert (await user.call("GET", "/probe/E1"))[0] == 200
    await user.login("li", GOOD)
    second = user.cookie()
    assert second and second not in (first, planted)
    # The cookie presented at login no longer opens anything.
    stale = await env.user()
    stale.http.cookie_jar.update_cookies({COOKIE: first}, env.server.make_url("/"))
    assert (await stale.call("GET", "/probe/E1"))[0] == 401
    # Only hashes are stored.
    stored = [bytes(r["id_hash"]) for r in await env.pool.fetch("SELECT id_hash FROM sessions")]
    assert len(stored) == 1 and second.encode() not in stored
    assert (await user.call("GET", "/probe/E1"))[0] == 200


@pytest.fixture
def tls(tmp_path: Path) -> ssl.SSLContext:
    """A server TLS context with a throw-away self-signed certificate."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def test_cookie_is_secure_when_the_request_came_over_tls(
    database_url: str, tls: ssl.SSLContext
) -> None:
    e, store = await start_env(database_url, settings(), tls)
    try:
        await e.account("li", Role.DUTY_OFFICER)
        user = await e.user()
        async with user.http.post(
            "/api/auth/login", json={"username": "li", "password": GOOD}
        ) as r:
            assert r.status == 200
            header = r.headers["Set-Cookie"]
        assert "Secure" in header and "HttpOnly" in header and "SameSite=Strict" in header
        assert (await user.call("GET", "/probe/E1"))[0] == 200
    finally:
        for s in e.sessions:
            await s.close()
        await e.server.close()
        await store.close()


async def test_unknown_user_and_wrong_password_get_the_same_answer(env: Env) -> None:
    await env.account("li", Role.DUTY_OFFICER)
    user = await env.user()
    wrong = await user.login("li", "Wrong#pass1")
    unknown = await user.login("nobody", "Wrong#pass1")
    assert (
        wrong
        == unknown
        == (401, {"error": "wrong user name or password", "code": "bad_credentials"})
    )
    reasons = [r["detail"] for r in await audit_rows(env.pool, "auth.login")]
    assert [json.loads(d)["reason"] for d in reasons] == ["bad_password", "unknown_user"]


async def test_lockout_after_failures_refuses_even_the_right_password_until_it_expires(
    env: Env,
) -> None:
    await env.account("li", Role.DUTY_OFFICER)
    user = await env.user()
    for _ in range(4):
        assert (await user.login("li", "Wrong#pass1"))[1]["code"] == "bad_credentials"
    status, data = await user.login("li", "Wrong#pass1")
    assert status == 423 and data["code"] == "locked"
    until = datetime.fromisoformat(data["until"])
    assert timedelta(minutes=29) < until - datetime.now(UTC) <= timedelta(minutes=30)
    status, data = await user.login("li", GOOD)
    assert status == 423 and data["code"] == "locked"
    lockouts = await audit_rows(env.pool, "auth.lockout")
    assert [(r["username"], r["result"]) for r in lockouts] == [("li", "ok")]
    await env.pool.execute(
        "UPDATE accounts SET locked_until = now() - interval '1 second' WHERE username = 'li'"
    )
    status, data = await user.login("li", GOOD)
    assert status == 200, data
    assert await env.pool.fetchval("SELECT failed_count FROM accounts") == 0


async def test_a_name_without_an_account_locks_like_one(env: Env) -> None:
    # Lockouts must not tell which names exist: five failures lock a made-up name too.
    await env.account("li", Role.DUTY_OFFICER)
    user = await env.user()
    answers = {}
    for name in ("li", "nobody"):
        answers[name] = [(await user.login(name, "Wrong#pass1"))[0] for _ in range(6)]
        status, data = await user.login(name, GOOD)
        answers[name].append(status)
        assert data["code"] == "locked" and "until" in data
    assert answers["li"] == answers["nobody"] == [401, 401, 401, 401, 423, 423, 423]
    lockouts = await audit_rows(env.pool, "auth.lockout")
    assert [r["target"] for r in lockouts] == ["li", "nobody"]


async def test_lockout_duration_and_threshold_come_from_settings(database_url: str) -> None:
    e, store = await start_env(database_url, settings(lockout_failures=2, lockout_minutes=1))
    try:
        await e.account("li", Role.DUTY_OFFICER)
        user = await e.user()
        assert (await user.login("li", "Wrong#pass1"))[0] == 401
        status, data = await user.login("li", "Wrong#pass1")
        assert status == 423
        left = datetime.fromisoformat(data["until"]) - datetime.now(UTC)
        assert timedelta(seconds=50) < left <= timedelta(minutes=1)
    finally:
        for s in e.sessions:
            await s.close()
        await e.server.close()
        await store.close()


async def test_success_resets_the_failure_count(env: Env) -> None:
    await env.account("li", Role.DUTY_OFFICER)
    user = await env.user()
    for _ in range(4):
        await user.login("li", "Wrong#pass1")
    assert (await user.login("li", GOOD))[0] == 200
    for _ in range(4):
        assert (await user.login("li", "Wrong#pass1"))[0] == 401


async def test_totp_required_wrong_and_right(env: Env) -> None:
    secret = await env.account("wang", Role.LEADER, totp=True)
    assert secret is not None
    totp = pyotp.TOTP(secret)
    user = await env.user()
    status, data = await user.login("wang", GOOD)
    assert status == 401 and data["code"] == "totp_required"
    wrong = f"{(int(totp.now()) + 1) % 1_000_000:06d}"
    status, data = await user.login("wang", GOOD, totp=wrong)
    assert status == 401 and data["code"] == "bad_totp"
    # A wrong code counts as a failure; a missing one does not.
    assert await env.pool.fetchval("SELECT failed_count FROM accounts") == 1
    # The password is checked first: a good code never rescues a wrong password.
    status, data = await user.login("wang", "Wrong#pass1", totp=totp.now())
    assert status == 401 and data["code"] == "bad_credentials"
    code = totp.now()
    status, data = await user.login("wang", GOOD, totp=code)
    assert status == 200, data
    assert data["account"]["permissions"] == sorted(ROLE_PERMISSIONS[Role.LEADER])
    # One code, one sign-in: a replayed code is refused.
    status, data = await (await env.user()).login("wang", GOOD, totp=code)
    assert status == 401 and data["code"] == "bad_totp"
    # The next step's code is within the window and is newer.
    status, _ = await (await env.user()).login(
        "wang", GOOD, totp=totp.at(time.time(), counter_offset=1)
    )
    assert status == 200


async def test_any_account_with_a_secret_needs_its_code(env: Env) -> None:
    await env.account("zhao", Role.DUTY_OFFICER, totp=True)
    status, data = await (await env.user()).login("zhao", GOOD)
    assert status == 401 and data["code"] == "totp_required"


async def test_role_obliged_to_totp_without_a_secret_can_only_enrol(env: Env) -> None:
    await env.account("wang", Role.LEADER)
    user = await env.user()
    status, data = await user.login("wang", GOOD)
    assert status == 200 and data["account"]["must_enrol_totp"] is True
    assert data["account"]["permissions"] == ["self"]
    assert (await user.call("GET", "/probe/E1"))[0] == 403
    status, enrol = await user.call("POST", "/api/auth/totp")
    assert status == 200 and enrol["uri"].startswith("otpauth://totp/anjian:wang?")
    totp = pyotp.TOTP(enrol["secret"])
    status, data = await user.call("POST", "/api/auth/totp/confirm", {"code": "000000"})
    assert (status, data["code"]) == (400, "bad_totp") or totp.now() == "000000"
    status, data = await user.call("POST", "/api/auth/totp/confirm", {"code": totp.now()})
    assert status == 200 and data["account"]["must_enrol_totp"] is False
    assert (await user.call("GET", "/probe/E1"))[0] == 200
    # Once enrolled, a session cannot swap the authenticator for another.
    status, data = await user.call("POST", "/api/auth/totp")
    assert status == 409 and data["code"] == "totp_enrolled"
    status, data = await (await env.user()).login("wang", GOOD)
    assert data["code"] == "totp_required"


async def test_login_rate_limit_per_source_address(database_url: str) -> None:
    e, store = await start_env(database_url, settings(login_attempts_per_minute=3))
    try:
        await e.account("li", Role.DUTY_OFFICER)
        user = await e.user()
        for _ in range(3):
            assert (await user.login("li", "Wrong#pass1"))[0] == 401
        async with user.http.post(
            "/api/auth/login", json={"username": "li", "password": GOOD}
        ) as r:
            assert r.status == 429
            assert (await r.json())["code"] == "rate_limited"
            assert 0 < int(r.headers["Retry-After"]) <= 60
        assert (await user.login("li", GOOD))[0] == 429
        # The flood's start is audited, not each request of it.
        refused = [
            json.loads(r["detail"])["reason"] for r in await audit_rows(e.pool, "auth.login")
        ]
        assert refused.count("rate_limited") == 1
        # Another source address is not affected.
        other = await e.accounts.login("li", GOOD, None, "10.1.2.3")
        assert other.account["username"] == "li"
    finally:
        for s in e.sessions:
            await s.close()
        await e.server.close()
        await store.close()


# -- sessions ----------------------------------------------------------------------------------


async def test_idle_session_expires_sooner_for_administrators(env: Env) -> None:
    duty = await env.signed_in("li", Role.DUTY_OFFICER)
    admin = await env.signed_in("sa", Role.SYSADMIN)
    await env.pool.execute("UPDATE sessions SET last_seen_at = now() - interval '16 minutes'")
    assert (await duty.call("GET", "/api/auth/me"))[0] == 200
    status, data = await admin.call("GET", "/api/auth/me")
    assert status == 401 and data["code"] == "session_expired"
    assert admin.cookie() in (None, "")  # the answer cleared the cookie
    assert await env.pool.fetchval("SELECT count(*) FROM sessions") == 1
    await env.pool.execute("UPDATE sessions SET last_seen_at = now() - interval '31 minutes'")
    status, data = await duty.call("GET", "/probe/E1")
    assert status == 401 and data["code"] == "session_expired"
    assert await env.pool.fetchval("SELECT count(*) FROM sessions") == 0


async def test_activity_keeps_a_session_alive_without_a_write_per_request(env: Env) -> None:
    duty = await env.signed_in("li", Role.DUTY_OFFICER)
    await env.pool.execute("UPDATE sessions SET last_seen_at = now() - interval '29 minutes'")
    assert (await duty.call("GET", "/probe/E1"))[0] == 200
    seen = await env.pool.fetchval("SELECT last_seen_at FROM sessions")
    assert datetime.now(UTC) - seen < timedelta(seconds=5)
    assert (await duty.call("GET", "/probe/E1"))[0] == 200
    assert await env.pool.fetchval("SELECT last_seen_at FROM sessions") == seen


async def test_an_expired_cookie_does_not_stop_signing_in_again(env: Env) -> None:
    duty = await env.signed_in("li", Role.DUTY_OFFICER)
    await env.pool.execute("UPDATE sessions SET last_seen_at = now() - interval '1 hour'")
    assert (await duty.login("li", GOOD))[0] == 200
    assert (await duty.call("GET", "/probe/E1"))[0] == 200


async def test_must_change_password_limits_the_session_to_self(env: Env) -> None:
    await env.account("li", Role.DUTY_OFFICER, must_change=True)
    user = await env.user()
    status, data = await user.login("li", GOOD)
    assert status == 200 and data["account"]["must_change_password"] is True
    assert data["account"]["permissions"] == ["self"]
    assert (await user.call("GET", "/probe/E1"))[0] == 403
    assert (await user.call("GET", "/api/auth/me"))[0] == 200
    status, data = await user.call("POST", "/api/auth/password", {"old": GOOD, "new": GOOD})
    assert status == 400 and data["code"] == "password_reused"
    status, data = await user.call("POST", "/api/auth/password", {"old": GOOD, "new": "Brand#new1"})
    assert status == 200 and data["account"]["must_change_password"] is False
    assert (await user.call("GET", "/probe/E1"))[0] == 200


async def test_an_expired_password_limits_the_session_to_self(env: Env) -> None:
    await env.account("li", Role.DUTY_OFFICER)
    await env.pool.execute("UPDATE accounts SET password_changed_at = now() - interval '91 days'")
    user = await env.user()
    status, data = await user.login("li", GOOD)
    assert status == 200 and data["account"]["must_change_password"] is True
    assert (await user.call("GET", "/probe/E1"))[0] == 403


async def test_changing_the_password_ends_the_other_sessions(env: Env) -> None:
    here = await env.signed_in("li", Role.DUTY_OFFICER)
    there = await env.user()
    await there.login("li", GOOD)
    status, _ = await here.call("POST", "/api/auth/password", {"old": GOOD, "new": "Brand#new1"})
    assert status == 200
    assert (await here.call("GET", "/probe/E1"))[0] == 200
    assert (await there.call("GET", "/probe/E1"))[0] == 401


async def test_logout_ends_the_session_and_clears_the_cookie(env: Env) -> None:
    user = await env.signed_in("li", Role.DUTY_OFFICER)
    cookie = user.cookie()
    status, _ = await user.call("POST", "/api/auth/logout")
    assert status == 200 and not user.cookie()
    assert await env.pool.fetchval("SELECT count(*) FROM sessions") == 0
    replay = await env.user()
    replay.http.cookie_jar.update_cookies({COOKIE: cookie or ""}, env.server.make_url("/"))
    assert (await replay.call("GET", "/api/auth/me"))[0] == 401
    rows = await audit_rows(env.pool, "auth.logout")
    assert [(r["username"], r["role"], r["result"]) for r in rows] == [("li", "duty_officer", "ok")]
    logins = await audit_rows(env.pool, "auth.login")
    assert [(r["username"], r["role"], r["result"]) for r in logins] == [
        ("li", "duty_officer", "ok")
    ]


async def test_disabled_account_cannot_sign_in(env: Env) -> None:
    await env.account("li", Role.DUTY_OFFICER)
    await env.pool.execute("UPDATE accounts SET disabled = true")
    status, data = await (await env.user()).login("li", GOOD)
    assert (status, data["code"]) == (401, "bad_credentials")


# -- API tokens --------------------------------------------------------------------------------


async def _token(
    secadmin: User,
    permissions: list[str],
    enterprise: str | None = None,
    expires: timedelta = timedelta(days=30),
) -> tuple[int, Any]:
    return await secadmin.call(
        "POST",
        "/api/admin/security/tokens",
        {
            "name": "gateway",
            "permissions": permissions,
            "enterprise": enterprise,
            "expires_at": (datetime.now(UTC) + expires).isoformat(),
        },
    )


async def _bearer(env: Env, token: str, path: str) -> tuple[int, Any]:
    machine = await env.user()
    return await machine.call("GET", path, headers={"Authorization": f"Bearer {token}"})


async def test_token_scope_permission_enterprise_expiry_and_revocation(env: Env) -> None:
    sec = await env.signed_in("sec", Role.SECADMIN)
    sa = await env.signed_in("sa", Role.SYSADMIN)
    status, made = await _token(sec, ["monitor:read"], "E1")
    assert status == 201 and made["token"].startswith("anjian_")
    assert made["permissions"] == ["monitor:read"] and made["enterprise"] == "E1"
    token = made["token"]
    # 三员: the security administrator holds the value, but it works only once the system
    # administrator has activated it; neither can do the other's step.
    status, data = await _bearer(env, token, "/probe/E1")
    assert status == 401
    assert data["error"] == "the API token is not yet activated by the system administrator"
    assert (await sec.call("POST", f"/api/admin/tokens/{made['id']}/activate"))[0] == 403
    status, listing = await sa.call("GET", "/api/admin/tokens")
    assert [(t["id"], t["activated_at"]) for t in listing["tokens"]] == [(made["id"], None)]
    assert (await sa.call("POST", f"/api/admin/tokens/{made['id']}/activate"))[0] == 200
    status, data = await sa.call("POST", f"/api/admin/tokens/{made['id']}/activate")
    assert (status, data["code"]) == (404, "no_token")  # active already
    status, data = await _bearer(env, token, "/probe/E1")
    assert status == 200 and data == {"username": "token:gateway", "enterprise": "E1"}
    assert (await _bearer(env, token, "/probe/E2"))[0] == 404  # another enterprise's data
    assert (await _bearer(env, token, "/api/admin/accounts"))[0] == 403
    assert (await _bearer(env, token, "/api/auth/me"))[0] == 403  # a machine has no "self"

    status, other = await _token(sec, ["system:read"])
    assert status == 201
    assert (await sa.call("POST", f"/api/admin/tokens/{other['id']}/activate"))[0] == 200
    assert (await _bearer(env, other["token"], "/probe/E1"))[0] == 403

    status, data = await _token(sec, ["monitor:read", "accounts:manage"])
    assert status == 400 and data["code"] == "bad_permissions"
    assert "accounts:manage" in data["error"]
    status, data = await _token(sec, ["self"])
    assert status == 400 and data["code"] == "bad_permissions"
    status, data = await _token(sec, ["monitor:read"], "E404")
    assert status == 400 and data["code"] == "unknown_enterprise"
    status, data = await _token(sec, ["monitor:read"], expires=timedelta(minutes=-1))
    assert status == 400 and data["code"] == "bad_expiry"

    await env.pool.execute(
        "UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = $1",
        other["id"],
    )
    status, data = await _bearer(env, other["token"], "/probe/E1")
    assert status == 401 and data == {"error": "the API token is expired", "code": "bad_token"}

    status, _ = await sec.call("DELETE", f"/api/admin/security/tokens/{made['id']}")
    assert status == 200
    status, data = await _bearer(env, token, "/probe/E1")
    assert status == 401 and data["error"] == "the API token is revoked"
    assert (await sec.call("DELETE", f"/api/admin/security/tokens/{made['id']}"))[0] == 404
    assert (await _bearer(env, "anjian_made-up", "/probe/E1"))[0] == 401
    assert (await _bearer(env, "", "/probe/E1"))[0] == 401

    status, listing = await sec.call("GET", "/api/admin/security/tokens")
    assert status == 200 and len(listing["tokens"]) == 2
    assert all("token" not in t and "token_hash" not in t for t in listing["tokens"])
    stored = await env.pool.fetch("SELECT token_hash FROM api_tokens")
    assert all(token.encode() not in bytes(r["token_hash"]) for r in stored)


def test_tokens_can_never_carry_administrative_permissions() -> None:
    assert Permission.MONITOR_READ in TOKEN_PERMISSIONS
    assert not TOKEN_PERMISSIONS & {
        Permission.SELF,
        Permission.ACCOUNTS_MANAGE,
        Permission.SECURITY_MANAGE,
        Permission.AUDIT_READ,
        Permission.SYSTEM_CONTROL,
    }
