"""The tamper-evident audit log (安全审计): record, search, export and verify its hash chain.

"来源可查、去向可追、责任可究": who did what, from where, with what result — in a table nobody
can alter unnoticed (the chain itself is computed by the database, migration 0005).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import AsyncGenerator, Iterable, Iterator, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Literal

import asyncpg  # type: ignore[import-untyped]
from aiohttp import web

from web.inputs import parse_time
from web.security import PRINCIPAL, Permission, Principal, Route, json_error

GENESIS = bytes(32)  # prev_hash of the very first record
MIN_RETENTION_DAYS = 180  # 网络安全法 Art. 21: network logs kept at least 6 months
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
# Longer free text (an attacker's "username") is cut, so the log cannot be used to fill a disk.
MAX_TEXT = 1024

FIELDS = ("seq", "at", "account_id", "username", "role", "source", "action", "target", "result")
EXPORT_COLUMNS = (*FIELDS, "detail", "prev_hash", "hash")
_TEXT_COLUMNS = frozenset({"username", "role", "source", "action", "target", "result"})
_SELECT = (
    "SELECT seq, at, account_id, username, role, source, action, target, result,"
    " detail::text AS detail, prev_hash, hash FROM audit_log"
)
# A spreadsheet runs a cell starting with these as a formula (CSV injection); such a cell, and
# one starting with the escape itself, is exported behind a "'" that offline verification drops.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'", "＝", "＋", "－", "＠")


class _Number(str):
    """A JSON number kept as the text the database wrote, so it re-serialises identically."""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(text: str) -> Any:
    """Parse JSON keeping every number's text: the input of `canonical_json` for stored rows."""
    return json.loads(text, parse_float=_Number, parse_int=_Number, parse_constant=_no_constant)


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, non-ASCII as is: the twin of SQL audit_canonical_json().

    Numbers parsed by `parse_json` are written back exactly as read; the database's own
    numeric text is what it hashed.
    """
    if isinstance(value, _Number):
        return str.__str__(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if value is None or isinstance(value, bool | int):
        return json.dumps(value)
    if isinstance(value, Mapping):
        items = sorted(value.items())
        return "{" + ",".join(f"{canonical_json(k)}:{canonical_json(v)}" for k, v in items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(canonical_json(v) for v in value) + "]"
    raise TypeError(f"{type(value).__name__} {value!r} has no canonical JSON form")


def format_at(at: datetime) -> str:
    """RFC 3339 in UTC with microseconds, as the chain hashes it: 2025-01-31T08:00:00.000000Z."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def row_hash(prev_hash: bytes, row: Mapping[str, Any]) -> bytes:
    """SHA-256(prev_hash || canonical JSON of the row's fields)."""
    fields = {name: row[name] for name in (*FIELDS, "detail")}
    return hashlib.sha256(prev_hash + canonical_json(fields).encode("utf-8")).digest()


def _text(value: str | None) -> str | None:
    """What PostgreSQL text can hold: no NUL, no lone surrogate, at most MAX_TEXT characters."""
    if value is None:
        return None
    clean = value.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")
    if len(clean) > MAX_TEXT:
        return f"{clean[:MAX_TEXT]}…[+{len(clean) - MAX_TEXT} chars]"
    return clean


def _plain(value: Any, where: str) -> Any:
    """`detail` as plain JSON values; anything else is a programming error, named by its path."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, Enum):
        return _plain(value.value, where)
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"audit detail {where} is {value}, which JSON cannot hold")
        return value
    if isinstance(value, datetime):
        return format_at(value)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"audit detail {where} has a non-string key {key!r}")
            out[_text(key)] = _plain(item, f"{where}.{key}")
        return out
    if isinstance(value, list | tuple):
        return [_plain(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise TypeError(f"audit detail {where} is a {type(value).__name__} ({value!r}), not JSON")


def _stored_row(r: Mapping[str, Any]) -> dict[str, Any]:
    """A database row as the chain hashes it (detail with its numbers' stored text)."""
    row = {name: r[name] for name in FIELDS}
    row["at"] = format_at(r["at"])
    row["detail"] = None if r["detail"] is None else parse_json(r["detail"])
    return row


Break = Literal["hash", "prev_hash", "gap", "order", "anchor"]


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The outcome of walking the chain: intact with `records` checked, or the first break."""

    ok: bool
    records: int
    seq: int | None = None  # the first broken record
    what: Break | None = None
    reason: str | None = None
    last_hash: bytes | None = None  # the head, for keeping outside the database

    @property
    def message(self) -> str:
        if self.ok:
            return f"audit log OK: {self.records} records, chain intact"
        return f"audit log BROKEN at record {self.seq}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Anchor:
    """Where the chain starts after a prune: the last removed record, its hash, the prune."""

    through_seq: int
    hash: bytes
    prune_seq: int | None


class ChainVerifier:
    """Checks records fed in seq order; the first break is final."""

    def __init__(self, anchor: Anchor | None, *, trust_first_link: bool = False) -> None:
        # trust_first_link: a partial export starts wherever it was cut; only its inside is
        # checked, and the first record's prev_hash is taken as given.
        self._anchor = anchor
        self._expect_seq = None if trust_first_link else (anchor.through_seq + 1 if anchor else 1)
        self._expect_prev = None if trust_first_link else (anchor.hash if anchor else GENESIS)
        self._prune_seen = False
        self.records = 0
        self.broken: VerifyResult | None = None

    def _break(self, seq: int, what: Break, reason: str) -> VerifyResult:
        self.broken = VerifyResult(False, self.records, seq, what, reason)
        return self.broken

    def feed(self, row: Mapping[str, Any], prev_hash: bytes, hash: bytes) -> VerifyResult | None:
        """Check one record; the break it reveals, if any."""
        if self.broken is not None:
            return self.broken
        seq = int(row["seq"])
        expected = self._expect_seq
        if expected is not None and seq > expected:
            missing = (
                f"record {expected} is"
                if seq == expected + 1
                else (f"records {expected}..{seq - 1} are")
            )
            return self._break(expected, "gap", f"{missing} missing (deleted)")
        if expected is not None and seq < expected:
            return self._break(seq, "order", f"record {seq} is out of sequence: {expected} was due")
        if self._expect_prev is not None and prev_hash != self._expect_prev:
            if self.records:
                before = f"record {seq - 1}"
            elif self._anchor is not None:
                before = f"the prune anchor (removed record {self._anchor.through_seq})"
            else:
                before = "the genesis (32 zero bytes)"
            return self._break(
                seq,
                "prev_hash",
                f"its prev_hash does not match the hash of {before}: a record before it was "
                "altered or replaced",
            )
        if row_hash(prev_hash, row) != hash:
            return self._break(
                seq, "hash", "its contents do not match its hash: it was altered after writing"
            )
        if self._anchor is not None and seq == self._anchor.prune_seq:
            self._prune_seen = True
            detail = row["detail"] or {}
            if (
                row["action"] != "audit.prune"
                or str(detail.get("through_seq")) != str(self._anchor.through_seq)
                or detail.get("anchor") != self._anchor.hash.hex()
            ):
                return self._break(
                    seq,
                    "anchor",
                    f"the prune anchor (through record {self._anchor.through_seq}) is not the "
                    "one this audit.prune record wrote",
                )
        self.records += 1
        self._expect_seq = seq + 1
        self._expect_prev = hash
        return None

    def result(self) -> VerifyResult:
        if self.broken is not None:
            return self.broken
        anchor = self._anchor
        if anchor is not None and anchor.prune_seq and not self._prune_seen:
            return self._break(
                anchor.prune_seq, "gap", "the audit.prune record that set the anchor is missing"
            )
        return VerifyResult(True, self.records, last_hash=self._expect_prev)


async def verify(pool: asyncpg.Pool) -> VerifyResult:
    """Walk the whole chain in seq order (a cursor, not all rows at once), recomputing hashes.

    The hashes are recomputed here, not by the database's function, so a replaced function
    cannot vouch for altered rows.
    """
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        a = await conn.fetchrow("SELECT through_seq, hash, prune_seq FROM audit_anchor")
        anchor = None if a is None else Anchor(a["through_seq"], bytes(a["hash"]), a["prune_seq"])
        checker = ChainVerifier(anchor)
        async for r in conn.cursor(f"{_SELECT} ORDER BY seq", prefetch=2000):
            if checker.feed(_stored_row(r), bytes(r["prev_hash"]), bytes(r["hash"])):
                break
        return checker.result()


async def verify_command(url: str) -> int:
    """`anjian audit verify`: print the verdict; 0 when the chain is intact, else 1."""
    try:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"audit log not verified: cannot connect to the database: {exc}")
        return 1
    try:
        result = await verify(pool)
    except asyncpg.PostgresError as exc:
        print(f"audit log not verified: {exc}")
        return 1
    finally:
        await pool.close()
    print(result.message)
    return 0 if result.ok else 1


def _export_row(r: Mapping[str, Any]) -> dict[str, Any]:
    row = _stored_row(r)
    row["prev_hash"] = bytes(r["prev_hash"]).hex()
    row["hash"] = bytes(r["hash"]).hex()
    return row


def _csv_cell(name: str, value: Any) -> str:
    if value is None:
        return ""
    if name == "detail":
        return canonical_json(value)
    text = str(value)
    if name in _TEXT_COLUMNS and text.startswith(_FORMULA_STARTS):
        return "'" + text
    return text


def _csv_value(name: str, cell: str) -> Any:
    if cell == "":
        return None
    if name in ("seq", "account_id"):
        return int(cell)
    if name == "detail":
        return parse_json(cell)
    if name in _TEXT_COLUMNS and cell.startswith("'"):
        return cell[1:]
    return cell


def _exported_rows(data: bytes, format: str) -> Iterator[dict[str, Any]]:
    text = data.decode("utf-8-sig")
    if format == "jsonl":
        for line in text.splitlines():
            if line.strip():
                yield parse_json(line)
    elif format == "csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if tuple(reader.fieldnames or ()) != EXPORT_COLUMNS:
            raise ValueError(f"CSV columns {reader.fieldnames} are not {list(EXPORT_COLUMNS)}")
        for cells in reader:
            yield {name: _csv_value(name, cells[name]) for name in EXPORT_COLUMNS}
    else:
        raise ValueError(f"export format {format!r} is not csv or jsonl")


def verify_export(data: bytes, format: str) -> VerifyResult:
    """Verify an exported file offline: every record's hash and every link inside the file.

    A file starting at record 1 must start from the genesis; one cut later (a time range, or
    after a prune) is trusted for its first link only.
    """
    rows = iter(_exported_rows(data, format))
    first = next(rows, None)
    if first is None:
        return VerifyResult(True, 0)
    checker = ChainVerifier(None, trust_first_link=int(first["seq"]) != 1)
    for row in (first, *rows):
        if checker.feed(row, bytes.fromhex(row["prev_hash"]), bytes.fromhex(row["hash"])):
            break
    return checker.result()


class AuditLog:
    """Appends to and reads the audit log; shared by every request through `AUDIT`."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def record(
        self,
        *,
        principal: Principal | None,
        username: str | None = None,
        role: str | None = None,
        source: str | None,
        action: str,
        target: str | None = None,
        result: str,
        detail: Mapping[str, Any] | None = None,
        conn: asyncpg.Connection | None = None,
    ) -> int:
        """Append one record; its seq. With `conn`, it commits or rolls back with the caller.

        Inside a caller's transaction the chain lock is held until that transaction ends, so
        keep such transactions short.
        """
        if not action or not result:
            raise ValueError(
                f"an audit record needs an action and a result, got {action!r}, {result!r}"
            )
        account_id = None
        if principal is not None:
            account_id, username, role = principal.account_id, principal.username, principal.role
        args = (
            account_id,
            _text(username),
            _text(role),
            _text(source),
            _text(action),
            _text(target),
            _text(result),
            None
            if detail is None
            else json.dumps(_plain(detail, "detail"), ensure_ascii=False, allow_nan=False),
        )
        sql = (
            "INSERT INTO audit_log (account_id, username, role, source, action, target, result,"
            " detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb) RETURNING seq"
        )
        if conn is not None:
            return int(await conn.fetchval(sql, *args))
        async with self.pool.acquire() as c:
            return int(await c.fetchval(sql, *args))

    async def search(
        self,
        *,
        start: datetime | None,
        end: datetime | None,
        username: str | None,
        action: str | None,
        result: str | None,
        limit: int,
        before_seq: int | None,
    ) -> list[dict[str, Any]]:
        """Records matching every filter given, newest first; page on with `before_seq`.

        `start` is inclusive and `end` exclusive; hashes are hex.
        """
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be 1..{MAX_LIMIT}, got {limit}")
        where, args = _filters(start, end)
        for column, value in (("username", username), ("action", action), ("result", result)):
            if value is not None:
                args.append(value)
                where.append(f"{column} = ${len(args)}")
        if before_seq is not None:
            args.append(before_seq)
            where.append(f"seq < ${len(args)}")
        args.append(limit)
        sql = f"{_SELECT}{_where(where)} ORDER BY seq DESC LIMIT ${len(args)}"
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(sql, *args)
        return [
            {
                **{name: r[name] for name in FIELDS},
                "at": format_at(r["at"]),
                "detail": None if r["detail"] is None else json.loads(r["detail"]),
                "prev_hash": bytes(r["prev_hash"]).hex(),
                "hash": bytes(r["hash"]).hex(),
            }
            for r in rows
        ]

    async def export(
        self, *, start: datetime | None, end: datetime | None
    ) -> AsyncGenerator[dict[str, Any], None]:
        """A contiguous stretch of the chain in seq order (verifiable offline), streamed."""
        where, args = _filters(start, end)
        async with self.pool.acquire() as conn, conn.transaction(readonly=True):
            sql = f"{_SELECT}{_where(where)} ORDER BY seq"
            async for r in conn.cursor(sql, *args, prefetch=1000):
                yield _export_row(r)

    async def prune(self, retention_days: int) -> int:
        """Remove records older than `retention_days` (≥ 180) through audit_prune(); how many."""
        if retention_days < MIN_RETENTION_DAYS:
            raise ValueError(
                f"audit retention must be at least {MIN_RETENTION_DAYS} days, got {retention_days}"
            )
        async with self.pool.acquire() as conn:
            return int(
                await conn.fetchval(
                    "SELECT audit_prune(now() - make_interval(days => $1))", retention_days
                )
            )


def _filters(start: datetime | None, end: datetime | None) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    args: list[Any] = []
    if start is not None:
        args.append(start)
        where.append(f"at >= ${len(args)}")
    if end is not None:
        args.append(end)
        where.append(f"at < ${len(args)}")
    return where, args


def _where(conditions: Iterable[str]) -> str:
    joined = " AND ".join(conditions)
    return f" WHERE {joined}" if joined else ""


AUDIT = web.AppKey("audit", AuditLog)


def _bad(message: str) -> web.HTTPException:
    return json_error(web.HTTPBadRequest, message)


def _time(query: Mapping[str, str], name: str) -> datetime | None:
    raw = query.get(name)
    return None if raw is None or raw == "" else parse_time(raw, name)


def _int(query: Mapping[str, str], name: str, lo: int, hi: int) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise _bad(f"{name}={raw!r} is not a whole number") from None
    if not lo <= value <= hi:
        raise _bad(f"{name}={value} is out of range {lo}..{hi}")
    return value


def _range(query: Mapping[str, str]) -> tuple[datetime | None, datetime | None]:
    start, end = _time(query, "start"), _time(query, "end")
    if start is not None and end is not None and end <= start:
        raise _bad(f"end {query['end']!r} is not after start {query['start']!r}")
    return start, end


_SEARCH_QUERY = {
    "start": "earliest time, RFC 3339 or epoch ms, inclusive",
    "end": "latest time, RFC 3339 or epoch ms, exclusive",
    "username": "account name (or the name a failed login tried)",
    "action": "action, e.g. auth.login or POST /api/admin/accounts",
    "result": "result, e.g. ok",
    "limit": f"records per page, 1..{MAX_LIMIT} (default {DEFAULT_LIMIT})",
    "before_seq": "the next page: records before this seq (the last page's next_before_seq)",
}
_EXPORT_QUERY = {
    "format": "csv (UTF-8 with BOM, for Excel) or jsonl",
    "start": "earliest time, RFC 3339 or epoch ms, inclusive",
    "end": "latest time, RFC 3339 or epoch ms, exclusive",
}


async def search_audit(request: web.Request) -> web.StreamResponse:
    query = request.query  # only _SEARCH_QUERY's (web.inputs.refuse_unknown_query)
    start, end = _range(query)
    limit = _int(query, "limit", 1, MAX_LIMIT) or DEFAULT_LIMIT
    before_seq = _int(query, "before_seq", 1, 2**63 - 1)
    records = await request.app[AUDIT].search(
        start=start,
        end=end,
        username=query.get("username") or None,
        action=query.get("action") or None,
        result=query.get("result") or None,
        limit=limit,
        before_seq=before_seq,
    )
    more = len(records) == limit
    return web.json_response(
        {"records": records, "next_before_seq": records[-1]["seq"] if more else None},
        dumps=lambda d: json.dumps(d, ensure_ascii=False),
    )


async def export_audit(request: web.Request) -> web.StreamResponse:
    query = request.query  # only _EXPORT_QUERY's
    format = query.get("format", "")
    if format not in ("csv", "jsonl"):
        raise _bad(f"format={format!r}: choose csv or jsonl")
    start, end = _range(query)
    audit = request.app[AUDIT]
    # Recorded first, so the file carries the record of its own export.
    await audit.record(
        principal=request[PRINCIPAL],
        source=request.remote,
        action="audit.export",
        target="audit_log",
        result="ok",
        detail={"format": format, "start": start, "end": end},
    )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    response = web.StreamResponse(
        headers={
            "Content-Type": (
                "text/csv; charset=utf-8" if format == "csv" else "application/x-ndjson"
            ),
            "Content-Disposition": f'attachment; filename="audit-{stamp}.{format}"',
            "Cache-Control": "no-store",
        }
    )
    await response.prepare(request)
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    if format == "csv":
        buffer.write("\ufeff")
        writer.writerow(EXPORT_COLUMNS)
    # aclosing: a client that hangs up mid-file gives the connection back at once.
    async with aclosing(audit.export(start=start, end=end)) as rows:
        async for row in rows:
            if format == "csv":
                writer.writerow([_csv_cell(name, row[name]) for name in EXPORT_COLUMNS])
            else:
                buffer.write(canonical_json(row) + "\n")
            if buffer.tell() >= 64 * 1024:
                await response.write(buffer.getvalue().encode("utf-8"))
                buffer.seek(0)
                buffer.truncate()
    await response.write(buffer.getvalue().encode("utf-8"))
    await response.write_eof()
    return response


AUDIT_ROUTES = [
    Route(
        "GET",
        "/api/audit",
        search_audit,
        Permission.AUDIT_READ,
        "Search the audit log, newest first",
        query=_SEARCH_QUERY,
    ),
    Route(
        "GET",
        "/api/audit/export",
        export_audit,
        Permission.AUDIT_READ,
        "Export the audit log with its hashes (CSV or JSON Lines), verifiable offline",
        query=_EXPORT_QUERY,
    ),
]
