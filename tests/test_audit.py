"""Audit log on a real PostgreSQL: the hash chain, append-only guards, prune, search, export."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from streams.store import Store
from web.audit import (
    _SELECT,
    AUDIT,
    AUDIT_ROUTES,
    GENESIS,
    AuditLog,
    _stored_row,
    canonical_json,
    parse_json,
    row_hash,
    verify,
    verify_command,
    verify_export,
)
from web.security import PRINCIPAL, ROLE_PERMISSIONS, Handler, Principal, Role

AUDITOR = Principal(7, "shen.ji", Role.AUDITOR, permissions=ROLE_PERMISSIONS[Role.AUDITOR])
OFFICER = Principal(3, "zhang.san", Role.DUTY_OFFICER)

# Details whose JSON text is easy to get wrong: Chinese, escapes, control characters, numbers
# whose text jsonb rewrites (1e20, 1e-7, 1.10), nesting, empty containers.
AWKWARD_DETAILS = [
    {"原因": "密码错误", "次数": 3},
    {"quote": 'say "hi"\\', "nl": "a\nb\tc\r", "ctl": "\x01\x1f", "emoji": "🚒"},
    {"big": 1e20, "small": 1e-7, "pi": 3.14159, "neg": -0.5, "int": 10**20, "zero": 0.0},
    {"nested": {"b": [1, {"z": None, "a": True}], "a": []}, "empty": {}},
    {"Z": 1, "a": 2, "é": 3, "中": 4, "_": 5},
    {},
]


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    s = await Store.open(database_url)
    yield s
    await s.close()


@pytest.fixture
def audit(store: Store) -> AuditLog:
    return AuditLog(store.pool)


@pytest.fixture
async def superuser(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()


async def _fill(audit: AuditLog, n: int, **overrides: object) -> list[int]:
    seqs = []
    for i in range(n):
        fields: dict[str, object] = {
            "principal": OFFICER,
            "source": "10.0.0.5",
            "action": "POST /api/alarms/{id}/ack",
            "target": f"/api/alarms/{i}/ack",
            "result": "ok",
            "detail": AWKWARD_DETAILS[i % len(AWKWARD_DETAILS)],
        }
        fields.update(overrides)
        seqs.append(await audit.record(**fields))  # type: ignore[arg-type]
    return seqs


async def _rehash(conn: asyncpg.Connection, at: dict[int, datetime] | None = None) -> None:
    """What a superuser could do: rewrite records (here their times) and the whole chain after."""
    async with conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")  # triggers off
        rows = await conn.fetch(f"{_SELECT} ORDER BY seq")
        prev = bytes(rows[0]["prev_hash"])
        for r in rows:
            new_at = (at or {}).get(r["seq"], r["at"])
            row = _stored_row({**r, "at": new_at})
            digest = row_hash(prev, row)
            await conn.execute(
                "UPDATE audit_log SET at = $2, prev_hash = $3, hash = $4 WHERE seq = $1",
                r["seq"],
                new_at,
                prev,
                digest,
            )
            prev = digest


async def test_chain_of_many_records_verifies(audit: AuditLog, store: Store) -> None:
    seqs = await _fill(audit, 240)
    assert seqs == list(range(1, 241))
    result = await verify(store.pool)
    assert result.ok, result.message
    assert result.records == 240
    assert result.message == "audit log OK: 240 records, chain intact"
    async with store.pool.acquire() as conn:
        first = await conn.fetchrow("SELECT * FROM audit_log WHERE seq = 1")
        last_hash = await conn.fetchval("SELECT hash FROM audit_log WHERE seq = 240")
    assert bytes(first["prev_hash"]) == GENESIS
    assert result.last_hash == bytes(last_hash)


async def test_python_and_database_agree_on_canonical_json(store: Store) -> None:
    async with store.pool.acquire() as conn:
        for detail in AWKWARD_DETAILS:
            text = json.dumps(detail, ensure_ascii=False)
            in_db, stored = await conn.fetchrow(
                "SELECT audit_canonical_json($1::jsonb), $1::jsonb::text", text
            )
            assert canonical_json(parse_json(stored)) == in_db
            if detail is not AWKWARD_DETAILS[2]:  # jsonb rewrites 1e20 and 1e-7
                assert in_db == json.dumps(
                    detail, sort_keys=True, separators=(",", ":"), ensure_ascii=False
                )


async def test_principal_supplies_identity_and_failed_login_names_the_attempt(
    audit: AuditLog,
) -> None:
    await audit.record(principal=OFFICER, source="10.0.0.5", action="auth.logout", result="ok")
    await audit.record(
        principal=None,
        username="=cmd|' /C calc'!A0\x00",
        source="203.0.113.9",
        action="auth.login",
        result="bad_password",
        detail={"attempt": 2},
    )
    rows = await audit.search(
        start=None, end=None, username=None, action=None, result=None, limit=10, before_seq=None
    )
    failed, logout = rows
    assert (logout["account_id"], logout["username"], logout["role"]) == (
        3,
        "zhang.san",
        "duty_officer",
    )
    assert failed["account_id"] is None and failed["role"] is None
    assert failed["username"] == "=cmd|' /C calc'!A0\ufffd"  # NUL cannot be stored: replaced
    assert failed["detail"] == {"attempt": 2}
    assert failed["prev_hash"] == logout["hash"]


async def test_detail_that_is_not_json_is_refused_by_name(audit: AuditLog) -> None:
    with pytest.raises(ValueError, match=r"detail\.reading is nan"):
        await audit.record(
            principal=None, source=None, action="x", result="ok", detail={"reading": float("nan")}
        )
    with pytest.raises(TypeError, match=r"detail\.who\[0\] is a object"):
        await audit.record(
            principal=None, source=None, action="x", result="ok", detail={"who": [object()]}
        )


async def test_concurrent_records_keep_one_unbroken_chain(audit: AuditLog, store: Store) -> None:
    seqs = await asyncio.gather(
        *(
            audit.record(
                principal=OFFICER, source="10.0.0.5", action="ack", result="ok", detail={"n": i}
            )
            for i in range(50)
        )
    )
    assert sorted(seqs) == list(range(1, 51))
    result = await verify(store.pool)
    assert result.ok, result.message
    assert result.records == 50


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET result = 'ok' WHERE seq = 2",
        "DELETE FROM audit_log WHERE seq = 2",
        "DELETE FROM audit_log WHERE seq = 999",  # even a delete that matches nothing
        "TRUNCATE audit_log",
    ],
)
async def test_trigger_refuses_changes_even_to_a_superuser(
    audit: AuditLog, superuser: asyncpg.Connection, statement: str
) -> None:
    await _fill(audit, 3)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="audit_log is append-only"):
        await superuser.execute(statement)
    assert await superuser.fetchval("SELECT count(*) FROM audit_log") == 3


async def test_row_altered_as_superuser_is_found_and_named(
    audit: AuditLog,
    store: Store,
    superuser: asyncpg.Connection,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await _fill(audit, 10)
    await superuser.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
    await superuser.execute("UPDATE audit_log SET username = 'li.si' WHERE seq = 4")
    await superuser.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
    result = await verify(store.pool)
    assert not result.ok
    assert (result.seq, result.what) == (4, "hash")
    assert await verify_command(database_url) == 1
    assert capsys.readouterr().out.startswith("audit log BROKEN at record 4: ")


async def test_altered_row_with_recomputed_hash_breaks_the_next_link(
    audit: AuditLog, store: Store, superuser: asyncpg.Connection
) -> None:
    await _fill(audit, 10)
    r = await superuser.fetchrow(f"{_SELECT} WHERE seq = 6")
    row = {**_stored_row(r), "result": "ok (edited)"}
    async with superuser.transaction():
        await superuser.execute("SET LOCAL session_replication_role = replica")
        await superuser.execute(
            "UPDATE audit_log SET result = $2, hash = $3 WHERE seq = $1",
            6,
            "ok (edited)",
            row_hash(bytes(r["prev_hash"]), row),
        )
    result = await verify(store.pool)
    assert (result.ok, result.seq, result.what) == (False, 7, "prev_hash")
    assert "record 6" in (result.reason or "")


@pytest.mark.parametrize(("deleted", "reported"), [([5], 5), ([1], 1), ([3, 4, 5], 3)])
async def test_deleted_rows_are_found_as_a_gap(
    audit: AuditLog,
    store: Store,
    superuser: asyncpg.Connection,
    deleted: list[int],
    reported: int,
) -> None:
    await _fill(audit, 8)
    async with superuser.transaction():
        await superuser.execute("SET LOCAL session_replication_role = replica")
        await superuser.execute("DELETE FROM audit_log WHERE seq = any($1::bigint[])", deleted)
    result = await verify(store.pool)
    assert (result.ok, result.seq, result.what) == (False, reported, "gap")
    assert "missing" in (result.reason or "")


async def test_prune_newer_than_180_days_is_refused(
    audit: AuditLog, superuser: asyncpg.Connection
) -> None:
    await _fill(audit, 3)
    await _rehash(superuser, {s: datetime.now(UTC) - timedelta(days=179) for s in (1, 2, 3)})
    with pytest.raises(asyncpg.InvalidParameterValueError, match="kept at least 180 days"):
        await superuser.execute("SELECT audit_prune(now() - interval '179 days')")
    with pytest.raises(ValueError, match="at least 180 days, got 90"):
        await audit.prune(90)
    assert await audit.prune(180) == 0  # all three are younger than 180 days
    assert await superuser.fetchval("SELECT count(*) FROM audit_log") == 4  # + the prune record


async def test_prune_of_old_records_keeps_the_chain_verifiable(
    audit: AuditLog,
    store: Store,
    superuser: asyncpg.Connection,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await _fill(audit, 10)
    old = datetime.now(UTC) - timedelta(days=200)
    await _rehash(superuser, {s: old + timedelta(seconds=s) for s in range(1, 7)})
    assert (await verify(store.pool)).ok
    anchor = bytes(await superuser.fetchval("SELECT hash FROM audit_log WHERE seq = 6"))

    assert await audit.prune(180) == 6

    seqs = [r["seq"] for r in await superuser.fetch("SELECT seq FROM audit_log ORDER BY seq")]
    assert seqs == [7, 8, 9, 10, 11]
    first_prev = await superuser.fetchval("SELECT prev_hash FROM audit_log WHERE seq = 7")
    assert bytes(first_prev) == anchor
    prune = await superuser.fetchrow("SELECT * FROM audit_log WHERE seq = 11")
    assert prune["action"] == "audit.prune" and prune["username"] == "postgres"
    assert json.loads(prune["detail"]) | {"before": None} == {
        "before": None,
        "removed": 6,
        "through_seq": 6,
        "anchor": anchor.hex(),
    }
    await _fill(audit, 2)
    result = await verify(store.pool)
    assert result.ok, result.message
    assert result.records == 7
    assert await verify_command(database_url) == 0
    assert capsys.readouterr().out == "audit log OK: 7 records, chain intact\n"


async def test_prune_of_every_record_chains_the_prune_record_to_the_anchor(
    audit: AuditLog, store: Store, superuser: asyncpg.Connection
) -> None:
    await _fill(audit, 4)
    old = datetime.now(UTC) - timedelta(days=365)
    await _rehash(superuser, {s: old for s in range(1, 5)})
    assert await audit.prune(200) == 4
    await _fill(audit, 1)
    result = await verify(store.pool)
    assert result.ok, result.message
    assert result.records == 2  # seq 5 (the prune) and 6


async def test_tampered_prune_anchor_is_found(
    audit: AuditLog, store: Store, superuser: asyncpg.Connection
) -> None:
    await _fill(audit, 6)
    old = datetime.now(UTC) - timedelta(days=365)
    await _rehash(superuser, {s: old for s in range(1, 4)})
    await audit.prune(180)
    # Hiding the removal of one more record: delete it and move the anchor forward.
    async with superuser.transaction():
        await superuser.execute("SET LOCAL session_replication_role = replica")
        hash4 = await superuser.fetchval("DELETE FROM audit_log WHERE seq = 4 RETURNING hash")
        await superuser.execute("UPDATE audit_anchor SET through_seq = 4, hash = $1", hash4)
    result = await verify(store.pool)
    assert (result.ok, result.seq, result.what) == (False, 7, "anchor")


async def test_app_role_appends_and_reads_but_cannot_alter(
    audit: AuditLog, superuser: asyncpg.Connection
) -> None:
    await _fill(audit, 2)
    role = await superuser.fetchrow(
        "SELECT rolcanlogin, rolsuper, rolcreaterole FROM pg_roles WHERE rolname = 'anjian_app'"
    )
    assert tuple(role) == (False, False, False)
    owned = await superuser.fetchval(
        "SELECT count(*) FROM pg_class WHERE relowner = 'anjian_app'::regrole"
    )
    assert owned == 0
    for statement in (
        "UPDATE audit_log SET result = 'ok'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
        "UPDATE audit_anchor SET through_seq = 0",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            async with superuser.transaction():
                await superuser.execute("SET LOCAL ROLE anjian_app")
                await superuser.execute(statement)
    async with superuser.transaction():
        await superuser.execute("SET LOCAL ROLE anjian_app")
        # Whatever chain fields a writer sends, the trigger sets them.
        seq = await superuser.fetchval(
            "INSERT INTO audit_log (seq, at, action, result, prev_hash, hash)"
            " VALUES (100, '2000-01-01', 'forged', 'ok', $1, $1) RETURNING seq",
            bytes(32),
        )
        assert seq == 3
        assert await superuser.fetchval("SELECT count(*) FROM audit_log") == 3
        assert await superuser.fetchval("SELECT audit_prune(now() - interval '181 days')") == 0
    assert (await verify(audit.pool)).ok


async def test_search_filters_and_paging(audit: AuditLog) -> None:
    await _fill(audit, 5)
    await audit.record(
        principal=None,
        username="wang.wu",
        source="203.0.113.9",
        action="auth.login",
        result="bad_password",
    )
    await audit.record(
        principal=None,
        username="wang.wu",
        source="203.0.113.9",
        action="auth.login",
        result="locked",
    )
    await _fill(audit, 3, result="refused 403")

    async def find(
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        username: str | None = None,
        action: str | None = None,
        result: str | None = None,
        limit: int = 100,
        before_seq: int | None = None,
    ) -> list[dict[str, Any]]:
        return await audit.search(
            start=start,
            end=end,
            username=username,
            action=action,
            result=result,
            limit=limit,
            before_seq=before_seq,
        )

    logins = await find(username="wang.wu")
    assert [r["result"] for r in logins] == ["locked", "bad_password"]
    assert [r["seq"] for r in await find(result="refused 403")] == [10, 9, 8]
    assert len(await find(action="auth.login", result="locked")) == 1

    everything = await find()
    assert [r["seq"] for r in everything] == list(range(10, 0, -1))
    pages, before = [], None
    while True:
        page = await find(limit=3, before_seq=before)
        if not page:
            break
        pages.append([r["seq"] for r in page])
        before = page[-1]["seq"]
    assert pages == [[10, 9, 8], [7, 6, 5], [4, 3, 2], [1]]

    at = {r["seq"]: datetime.fromisoformat(r["at"]) for r in everything}
    window = await find(start=at[4], end=at[7])
    assert [r["seq"] for r in window] == [6, 5, 4]
    with pytest.raises(ValueError, match=r"limit must be 1\.\.1000"):
        await find(limit=1001)


@pytest.fixture
async def client(audit: AuditLog) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    @web.middleware
    async def as_auditor(request: web.Request, handler: Handler) -> web.StreamResponse:
        request[PRINCIPAL] = AUDITOR  # stands in for the lead's authentication middleware
        return await handler(request)

    app = web.Application(middlewares=[as_auditor])
    app[AUDIT] = audit
    for route in AUDIT_ROUTES:
        app.router.add_route(route.method, route.path, route.handler)
    async with TestClient(TestServer(app)) as c:
        yield c


async def test_search_route_pages_and_says_what_filter_is_wrong(
    audit: AuditLog, client: TestClient[web.Request, web.Application]
) -> None:
    await _fill(audit, 4)
    resp = await client.get("/api/audit", params={"limit": "3"})
    assert resp.status == 200
    body = await resp.json()
    assert [r["seq"] for r in body["records"]] == [4, 3, 2]
    assert body["next_before_seq"] == 2
    assert body["records"][0]["detail"] == AWKWARD_DETAILS[3]
    resp = await client.get("/api/audit", params={"before_seq": "2"})
    assert [r["seq"] for r in (await resp.json())["records"]] == [1]

    for params, message in [
        ({"start": "yesterday"}, "start='yesterday' is not an RFC 3339 time"),
        ({"end": "2025-01-31T08:00:00"}, "needs a UTC offset"),
        ({"start": "2025-02-01T00:00:00Z", "end": "2025-01-01T00:00:00Z"}, "is not after start"),
        ({"limit": "1001"}, "limit=1001 is out of range 1..1000"),
        ({"limit": "ten"}, "limit='ten' is not a whole number"),
        # (An unknown parameter is the application guard's, on every route: test_bad_input.)
    ]:
        resp = await client.get("/api/audit", params=params)
        assert resp.status == 400, params
        assert message in (await resp.json())["error"]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
async def test_export_contains_the_rows_verifies_offline_and_is_audited(
    audit: AuditLog, store: Store, client: TestClient[web.Request, web.Application], fmt: str
) -> None:
    await _fill(audit, 12)
    await audit.record(
        principal=None,
        username="-2+3",
        source="203.0.113.9",
        action="auth.login",
        result="bad_password",
    )
    resp = await client.get("/api/audit/export", params={"format": fmt})
    assert resp.status == 200
    assert resp.headers["Content-Disposition"].endswith(f'.{fmt}"')
    data = await resp.read()

    result = verify_export(data, fmt)
    assert result.ok, result.message
    assert result.records == 14  # 12 + the failed login + the export's own record
    if fmt == "csv":
        assert data.startswith(b"\xef\xbb\xbf")
        rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))
        assert rows[12]["username"] == "'-2+3"  # a spreadsheet must not run it as a formula
        assert rows[0]["username"] == "zhang.san"
        assert json.loads(rows[0]["detail"]) == AWKWARD_DETAILS[0]
    else:
        rows = [json.loads(line) for line in data.decode().splitlines()]
        assert rows[12]["username"] == "-2+3"
        assert rows[1]["detail"] == AWKWARD_DETAILS[1]
    exported = rows[13]
    assert (exported["action"], exported["username"], exported["role"]) == (
        "audit.export",
        "shen.ji",
        "auditor",
    )
    assert (await verify(store.pool)).ok

    # An edited file no longer verifies, and says which record.
    tampered = data.replace("密码错误".encode(), "密码正确".encode())
    broken = verify_export(tampered, fmt)
    assert (broken.ok, broken.seq, broken.what) == (False, 1, "hash")


async def test_export_of_a_time_range_verifies_and_bad_format_is_refused(
    audit: AuditLog, client: TestClient[web.Request, web.Application]
) -> None:
    await _fill(audit, 6)
    rows = await audit.search(
        start=None, end=None, username=None, action=None, result=None, limit=10, before_seq=None
    )
    start = rows[-3]["at"]  # from seq 3 on
    resp = await client.get("/api/audit/export", params={"format": "jsonl", "start": start})
    data = await resp.read()
    result = verify_export(data, "jsonl")
    assert result.ok, result.message
    assert [json.loads(line)["seq"] for line in data.decode().splitlines()] == [3, 4, 5, 6, 7]

    resp = await client.get("/api/audit/export", params={"format": "xlsx"})
    assert resp.status == 400
    assert "choose csv or jsonl" in (await resp.json())["error"]


async def test_verify_command_on_an_empty_log_and_an_intact_one(
    store: Store, audit: AuditLog, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await verify_command(database_url) == 0
    assert capsys.readouterr().out == "audit log OK: 0 records, chain intact\n"
    await _fill(audit, 3)
    assert await verify_command(database_url) == 0
    assert capsys.readouterr().out == "audit log OK: 3 records, chain intact\n"
