"""Account and role administration by the three administrators (三员), and the bootstrap."""

from __future__ import annotations

import json

import asyncpg
import pyotp
import pytest

from streams.config import SecuritySettings
from tests.test_auth import GOOD, Env, User, audit_rows, env
from web.accounts import (
    ADMIN_USERNAMES,
    DEMO_ACCOUNTS,
    AlreadyInitialised,
    admin_init,
    ensure_demo_accounts,
    password_problems,
)
from web.security import ADMIN_ROLES, Role

__all__ = ["env"]  # the fixture, shared with test_auth


async def _admins(env: Env) -> tuple[User, User, User]:
    return (
        await env.signed_in("sa", Role.SYSADMIN),
        await env.signed_in("sec", Role.SECADMIN),
        await env.signed_in("aud", Role.AUDITOR),
    )


async def test_sysadmin_creates_an_account_that_must_change_its_one_time_password(
    env: Env,
) -> None:
    sa = await env.signed_in("sa", Role.SYSADMIN)
    status, made = await sa.call(
        "POST",
        "/api/admin/accounts",
        {"username": "li", "display_name": "李值班", "role": "duty_officer"},
    )
    assert status == 201, made
    password = made["one_time_password"]
    assert password_problems(password, "li", env.settings) == []
    assert made["account"]["must_change_password"] is True
    assert made["account"]["display_name"] == "李值班"
    status, listing = await sa.call("GET", "/api/admin/accounts")
    assert status == 200
    assert {a["username"] for a in listing["accounts"]} == {"sa", "li"}
    text = json.dumps(listing)
    assert "argon2" not in text and password not in text and "totp_secret" not in text

    # Separation of duties: it signs in only once the security administrator authorises it;
    # the system administrator can neither do that nor use the password meanwhile.
    assert {a["username"]: a["authorised"] for a in listing["accounts"]} == {
        "li": False,
        "sa": True,
    }
    user = await env.user()
    status, data = await user.login("li", password)
    assert (status, data["code"]) == (403, "not_authorised")
    assert (await sa.call("POST", "/api/admin/security/accounts/li/authorise"))[0] == 403
    sec = await env.signed_in("sec", Role.SECADMIN)
    assert (await sec.call("POST", "/api/admin/security/accounts/li/authorise"))[0] == 200
    status, data = await user.login("li", password)
    assert status == 200 and data["account"]["permissions"] == ["self"]
    assert (await user.call("GET", "/probe/E1"))[0] == 403
    status, _ = await user.call("POST", "/api/auth/password", {"old": password, "new": GOOD})
    assert status == 200
    assert (await user.call("GET", "/probe/E1"))[0] == 200

    created = await audit_rows(env.pool, "admin.account.create")
    assert [(r["username"], r["role"], r["target"], r["result"]) for r in created] == [
        ("sa", "sysadmin", "li", "ok")
    ]
    assert password not in (created[0]["detail"] or "")
    authorised = await audit_rows(env.pool, "admin.account.authorise")
    assert [(r["username"], r["target"], r["result"]) for r in authorised] == [("sec", "li", "ok")]
    # (The system administrator's refused attempt is the application guard's to record:
    # tests/test_bad_input.py; these tests run a miniature guard.)
    refused = [r for r in await audit_rows(env.pool, "auth.login") if r["target"] == "li"]
    assert [r["result"] for r in refused] == ["refused 403", "ok"]


async def test_account_creation_refuses_admin_roles_and_bad_enterprise_bindings(
    env: Env,
) -> None:
    sa = await env.signed_in("sa", Role.SYSADMIN)

    async def create(body: dict[str, object]) -> tuple[int, str]:
        status, data = await sa.call("POST", "/api/admin/accounts", body)
        return status, data.get("code", "")

    for admin in ADMIN_ROLES:
        assert await create({"username": "x1", "role": str(admin)}) == (400, "bad_role")
    assert await create({"username": "x1", "role": "public"}) == (400, "bad_role")
    assert await create({"username": "x1", "role": "enterprise"}) == (400, "enterprise_binding")
    assert await create({"username": "x1", "role": "expert", "enterprise": "E1"}) == (
        400,
        "enterprise_binding",
    )
    assert await create({"username": "x1", "role": "enterprise", "enterprise": "E404"}) == (
        400,
        "unknown_enterprise",
    )
    assert (await create({"username": "x1", "role": "enterprise", "enterprise": "E1"}))[0] == 201
    assert await create({"username": "x1", "role": "expert"}) == (409, "exists")
    # The schema refuses unknown fields and names that are not plain identifiers.
    assert (await create({"username": "x2", "role": "expert", "admin": True}))[0] == 400
    assert (await create({"username": "X 2", "role": "expert"}))[0] == 400
    assert await env.pool.fetchval("SELECT enterprise FROM accounts WHERE username = 'x1'") == "E1"


async def test_disable_enable_delete_and_reset_password(env: Env) -> None:
    sa = await env.signed_in("sa", Role.SYSADMIN)
    li = await env.signed_in("li", Role.DUTY_OFFICER)
    assert (await sa.call("POST", "/api/admin/accounts/li/disable"))[0] == 200
    assert (await li.call("GET", "/probe/E1"))[0] == 401  # sessions ended
    assert (await (await env.user()).login("li", GOOD))[0] == 401
    assert (await sa.call("POST", "/api/admin/accounts/li/enable"))[0] == 200
    assert (await li.login("li", GOOD))[0] == 200

    status, reset = await sa.call("POST", "/api/admin/accounts/li/password")
    assert status == 200
    assert (await li.call("GET", "/probe/E1"))[0] == 401
    assert (await (await env.user()).login("li", GOOD))[0] == 401
    # The new password works once the security administrator has authorised the account again.
    status, data = await (await env.user()).login("li", reset["one_time_password"])
    assert (status, data["code"]) == (403, "not_authorised")
    sec = await env.signed_in("sec", Role.SECADMIN)
    assert (await sec.call("POST", "/api/admin/security/accounts/li/authorise"))[0] == 200
    status, data = await (await env.user()).login("li", reset["one_time_password"])
    assert status == 200 and data["account"]["must_change_password"] is True

    assert (await sa.call("DELETE", "/api/admin/accounts/li"))[0] == 200
    assert await env.pool.fetchval("SELECT count(*) FROM accounts WHERE username = 'li'") == 0
    status, data = await sa.call("DELETE", "/api/admin/accounts/li")
    assert (status, data["code"]) == (404, "no_account")
    actions = [
        r["result"]
        for action in (
            "admin.account.disable",
            "admin.account.enable",
            "admin.account.password_reset",
            "admin.account.delete",
        )
        for r in await audit_rows(env.pool, action)
    ]
    assert actions == ["ok", "ok", "ok", "ok", "refused 404"]


async def test_administrators_cannot_act_on_themselves_nor_remove_each_other(env: Env) -> None:
    sa, sec, _ = await _admins(env)
    for method, path in [
        ("POST", "/api/admin/accounts/sa/disable"),
        ("DELETE", "/api/admin/accounts/sa"),
        ("POST", "/api/admin/accounts/sa/password"),
    ]:
        status, data = await sa.call(method, path)
        assert (status, data["code"]) == (403, "own_account"), path
    for method, path in [
        ("POST", "/api/admin/accounts/aud/disable"),
        ("DELETE", "/api/admin/accounts/aud"),
        ("DELETE", "/api/admin/accounts/sec"),
    ]:
        status, data = await sa.call(method, path)
        assert (status, data["code"]) == (403, "admin_account"), path
    for method, path in [
        ("POST", "/api/admin/security/accounts/sec/unlock"),
        ("DELETE", "/api/admin/security/accounts/sec/totp"),
    ]:
        status, data = await sec.call(method, path)
        assert (status, data["code"]) == (403, "own_account"), path
    status, data = await sec.call(
        "PUT", "/api/admin/security/accounts/aud/role", {"role": "expert"}
    )
    assert (status, data["code"]) == (403, "admin_account")
    assert await env.pool.fetchval("SELECT count(*) FROM accounts") == 3


async def test_the_three_administrators_cannot_do_each_others_jobs(env: Env) -> None:
    sa, sec, aud = await _admins(env)
    await env.account("li", Role.DUTY_OFFICER)
    accounts_jobs = [
        ("GET", "/api/admin/accounts", None),
        ("POST", "/api/admin/accounts", {"username": "x1", "role": "expert"}),
        ("POST", "/api/admin/accounts/li/disable", None),
        ("POST", "/api/admin/accounts/li/password", None),
        ("DELETE", "/api/admin/accounts/li", None),
        ("GET", "/api/admin/tokens", None),
        ("POST", "/api/admin/tokens/1/activate", None),
    ]
    security_jobs = [
        ("POST", "/api/admin/security/accounts/li/authorise", None),
        ("GET", "/api/admin/security/accounts", None),
        ("PUT", "/api/admin/security/accounts/li/role", {"role": "expert"}),
        ("POST", "/api/admin/security/accounts/li/unlock", None),
        ("DELETE", "/api/admin/security/accounts/li/totp", None),
        ("GET", "/api/admin/security/tokens", None),
        (
            "POST",
            "/api/admin/security/tokens",
            {"name": "g", "permissions": ["monitor:read"], "expires_at": "2099-01-01T00:00Z"},
        ),
    ]
    for who, jobs in [(sec, accounts_jobs), (aud, accounts_jobs), (sa, security_jobs)]:
        for method, path, body in jobs:
            status, data = await who.call(method, path, body)
            assert (status, data["code"]) == (403, "forbidden"), (method, path)
    for who in (sa, sec, aud):
        assert (await who.call("GET", "/probe/E1"))[0] == 403  # no business data either
    assert await env.pool.fetchval("SELECT role FROM accounts WHERE username = 'li'") == (
        "duty_officer"
    )
    assert await env.pool.fetchval("SELECT count(*) FROM api_tokens") == 0
    # Each can do its own.
    assert (await sa.call(*accounts_jobs[0][:2]))[0] == 200
    assert (await sec.call(*security_jobs[0][:2]))[0] == 200


async def test_secadmin_changes_roles_unlocks_and_resets_second_factors(env: Env) -> None:
    sec = await env.signed_in("sec", Role.SECADMIN)
    li = await env.signed_in("li", Role.DUTY_OFFICER)
    status, data = await sec.call(
        "PUT", "/api/admin/security/accounts/li/role", {"role": "enterprise"}
    )
    assert (status, data["code"]) == (400, "enterprise_binding")
    status, data = await sec.call(
        "PUT", "/api/admin/security/accounts/li/role", {"role": "auditor"}
    )
    assert (status, data["code"]) == (400, "bad_role")
    status, _ = await sec.call(
        "PUT", "/api/admin/security/accounts/li/role", {"role": "enterprise", "enterprise": "E2"}
    )
    assert status == 200
    # The running session carries the new role and binding at once.
    assert (await li.call("GET", "/probe/E2"))[0] == 200
    assert (await li.call("GET", "/probe/E1"))[0] == 404
    status, data = await li.call("GET", "/api/auth/me")
    assert data["account"]["role"] == "enterprise" and data["account"]["enterprise"] == "E2"

    for _ in range(env.settings.lockout_failures):
        await (await env.user()).login("li", "Wrong#pass1")
    status, listing = await sec.call("GET", "/api/admin/security/accounts")
    assert [a["locked"] for a in listing["accounts"] if a["username"] == "li"] == [True]
    assert (await (await env.user()).login("li", GOOD))[0] == 423
    assert (await sec.call("POST", "/api/admin/security/accounts/li/unlock"))[0] == 200
    assert (await (await env.user()).login("li", GOOD))[0] == 200

    secret = await env.account("wang", Role.LEADER, totp=True)
    assert secret is not None
    wang = await env.user(secret)
    assert (await wang.login("wang", GOOD))[0] == 200
    assert (await sec.call("DELETE", "/api/admin/security/accounts/wang/totp"))[0] == 200
    assert (await wang.call("GET", "/probe/E1"))[0] == 401  # its sessions ended
    status, data = await (await env.user()).login("wang", GOOD)
    assert status == 200 and data["account"]["must_enrol_totp"] is True

    results = {
        action: [r["result"] for r in await audit_rows(env.pool, action)]
        for action in ("admin.account.role", "admin.account.unlock", "admin.account.totp_reset")
    }
    assert results == {
        "admin.account.role": ["refused 400", "refused 400", "ok"],
        "admin.account.unlock": ["ok"],
        "admin.account.totp_reset": ["ok"],
    }


async def test_the_schema_allows_one_role_per_account_and_binds_enterprise_users(
    env: Env,
) -> None:
    await env.account("li", Role.DUTY_OFFICER)
    for bad in ("sysadmin,secadmin", "public", "root"):
        with pytest.raises(asyncpg.CheckViolationError):
            await env.pool.execute("UPDATE accounts SET role = $1", bad)
    with pytest.raises(asyncpg.CheckViolationError):
        await env.pool.execute("UPDATE accounts SET role = 'enterprise'")
    with pytest.raises(asyncpg.CheckViolationError):
        await env.pool.execute("UPDATE accounts SET enterprise = 'E1'")
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await env.pool.execute("UPDATE accounts SET role = 'enterprise', enterprise = 'E404'")


# -- bootstrap ---------------------------------------------------------------------------------


async def test_admin_init_creates_the_three_administrators_once(env: Env) -> None:
    creds = await admin_init(env.pool, SecuritySettings())
    assert {(c.username, c.role) for c in creds} == {
        (name, role) for role, name in ADMIN_USERNAMES.items()
    }
    assert len({c.password for c in creds}) == 3
    rows = await env.pool.fetch(
        "SELECT username, role, must_change_password, password_hash, totp_secret FROM accounts"
    )
    assert {r["role"] for r in rows} == {str(r) for r in ADMIN_ROLES}
    for r in rows:
        assert r["must_change_password"] and r["password_hash"].startswith("$argon2id$")
        assert r["totp_secret"] is not None
    with pytest.raises(AlreadyInitialised, match="exist already"):
        await admin_init(env.pool, SecuritySettings())
    assert await env.pool.fetchval("SELECT count(*) FROM accounts") == 3

    aud = next(c for c in creds if c.role == Role.AUDITOR)
    assert aud.totp_uri.startswith("otpauth://totp/anjian:auditor?secret=")
    user = await env.user(aud.totp_secret)
    status, data = await user.login(aud.username, aud.password)
    assert status == 200 and data["account"]["permissions"] == ["self"]
    status, _ = await user.call(
        "POST", "/api/auth/password", {"old": aud.password, "new": "Audit#2026x"}
    )
    assert status == 200
    status, data = await user.call("GET", "/api/auth/me")
    assert data["account"]["permissions"] == ["audit:read", "self"]


async def test_demo_accounts_one_per_role_sign_in_and_survive_restarts(env: Env) -> None:
    first = await ensure_demo_accounts(env.pool, "E1")
    assert {a.role for a in first} == {r for r in Role if r != Role.PUBLIC}
    again = await ensure_demo_accounts(env.pool, "E1")
    assert again == first
    assert await env.pool.fetchval("SELECT count(*) FROM accounts") == len(DEMO_ACCOUNTS)
    by_role = {a.role: a for a in first}
    assert by_role[Role.ENTERPRISE].enterprise == "E1"
    for role in (Role.DUTY_OFFICER, Role.SHIFT_LEADER, Role.EXPERT, Role.ENTERPRISE):
        demo = by_role[role]
        assert demo.totp_secret is None
        status, data = await (await env.user()).login(demo.username, demo.password)
        assert status == 200 and "monitor:read" in data["account"]["permissions"], role
    leader = by_role[Role.LEADER]
    status, data = await (await env.user()).login(leader.username, leader.password)
    assert status == 200 and data["account"]["must_enrol_totp"] is True
    for role in ADMIN_ROLES:
        demo = by_role[role]
        assert demo.totp_secret is not None
        user = await env.user(demo.totp_secret)
        status, data = await user.login(demo.username, demo.password)
        assert status == 200 and data["account"]["must_change_password"] is False, role
        assert demo.totp_uri == pyotp.TOTP(demo.totp_secret).provisioning_uri(
            name=demo.username, issuer_name="anjian"
        )
