"""Accounts, passwords, TOTP, sessions and API tokens in PostgreSQL: the service behind login.

Every policy number comes from `SecuritySettings`; argon2id hashing runs in worker threads.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import string
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import asyncpg  # type: ignore[import-untyped]
import pyotp
from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from streams.config import SecuritySettings
from web.security import (
    ADMIN_ROLES,
    BUSINESS_ROLES,
    ROLE_PERMISSIONS,
    Permission,
    Principal,
    Role,
    json_error,
)

TOTP_ISSUER = "anjian"
# last_seen_at is written at most this often per session: reads stay reads.
TOUCH_INTERVAL_S = 5.0
# Machines get business permissions only, never an administrator's, and no "self".
TOKEN_PERMISSIONS: frozenset[Permission] = frozenset().union(
    *(ROLE_PERMISSIONS[r] for r in BUSINESS_ROLES)
) - {  # a person answers for alarm and warning handling
    Permission.SELF,
    Permission.ALARM_OPERATE,
    Permission.WARNING_ANSWER,
    Permission.WARNING_REVIEW,
}
SELF_ONLY = frozenset({Permission.SELF})
ADMIN_USERNAMES: Mapping[Role, str] = {
    Role.SYSADMIN: "sysadmin",
    Role.SECADMIN: "secadmin",
    Role.AUDITOR: "auditor",
}
# Demo only (anjian serve --demo), listed in the README: one account per role.
DEMO_ACCOUNTS: Sequence[tuple[str, Role, str]] = (
    ("duty", Role.DUTY_OFFICER, "Duty@2026!"),
    ("shift", Role.SHIFT_LEADER, "Shift@2026!"),
    ("expert", Role.EXPERT, "Expert@2026!"),
    ("leader", Role.LEADER, "Leader@2026!"),
    ("enterprise", Role.ENTERPRISE, "Enterprise@2026!"),
    ("sysadmin", Role.SYSADMIN, "Sysadmin@2026!"),
    ("secadmin", Role.SECADMIN, "Secadmin@2026!"),
    ("auditor", Role.AUDITOR, "Auditor@2026!"),
)


class HTTPLocked(web.HTTPClientError):
    """423 Locked (RFC 4918), which aiohttp does not define: the account is locked."""

    status_code = 423


class AccountError(Exception):
    """A refused request: HTTP status class, a reason code for clients, a message for people.

    `reason` is finer than `code` and goes only to the audit log (e.g. an unknown user and a
    wrong password both answer `bad_credentials`).
    """

    def __init__(
        self,
        kind: type[web.HTTPException],
        code: str,
        message: str,
        *,
        reason: str | None = None,
        locked_now: bool = False,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.code = code
        self.message = message
        self.reason = reason or code
        self.locked_now = locked_now
        self.extra = extra

    def http(self) -> web.HTTPException:
        return json_error(self.kind, self.message, code=self.code, **self.extra)


class LoginRateLimit:
    """At most N login attempts per source address in any 60 s (sliding window)."""

    WINDOW_S = 60.0

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._hits: dict[str, deque[float]] = {}
        self._swept = 0.0
        self._refused: set[str] = set()

    def check(self, source: str, now: float) -> tuple[float, bool] | None:
        """Count an attempt: None when allowed, else (seconds until the next one is allowed,
        whether this is the first refusal since the address was last allowed)."""
        if now - self._swept > self.WINDOW_S:
            # Forget quiet addresses so a scan of many addresses cannot grow memory forever.
            self._hits = {k: v for k, v in self._hits.items() if v and now - v[-1] < self.WINDOW_S}
            self._refused &= self._hits.keys()
            self._swept = now
        hits = self._hits.setdefault(source, deque())
        while hits and now - hits[0] >= self.WINDOW_S:
            hits.popleft()
        if len(hits) >= self.per_minute:
            first = source not in self._refused
            self._refused.add(source)
            return self.WINDOW_S - (now - hits[0]), first
        hits.append(now)
        self._refused.discard(source)
        return None


class AlreadyInitialised(Exception):
    """`admin init` found administrator accounts already there."""


def password_problems(password: str, username: str, settings: SecuritySettings) -> list[str]:
    """What is wrong with a new password under the policy (empty: acceptable)."""
    problems = []
    if len(password) < settings.password_min_length:
        problems.append(
            f"must have at least {settings.password_min_length} characters (has {len(password)})"
        )
    lower = any(c.islower() for c in password)
    upper = any(c.isupper() for c in password)
    digit = any(c.isdigit() for c in password)
    other = any(not (c.islower() or c.isupper() or c.isdigit()) for c in password)
    classes = lower + upper + digit + other
    if classes < settings.password_min_classes:
        problems.append(
            f"must mix at least {settings.password_min_classes} of: lower case, upper case, "
            f"digits, other characters (has {classes})"
        )
    if password.casefold() == username.casefold():
        problems.append("must not be the user name")
    return problems


def one_time_password(settings: SecuritySettings) -> str:
    """A random password from all four classes, long enough for any policy."""
    length = max(16, settings.password_min_length)
    pools = (string.ascii_lowercase, string.ascii_uppercase, string.digits, "!#%+-=@^_")
    chars = [secrets.choice(p) for p in pools]
    everything = "".join(pools)
    chars += [secrets.choice(everything) for _ in range(length - len(chars))]
    secrets.SystemRandom().shuffle(chars)
    return "".join(chars)


def digest(value: str) -> bytes:
    """What the database keeps of a session id or token value: its SHA-256."""
    return hashlib.sha256(value.encode()).digest()


def totp_uri(secret: str, username: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=TOTP_ISSUER)


def _totp_step(secret: str, code: str, now: float) -> int | None:
    """The time step a code belongs to, within ±1 step of now (valid_window=1), or None."""
    totp = pyotp.TOTP(secret)
    step = totp.timecode(now)
    code = code.strip()
    for offset in (0, -1, 1):
        if hmac.compare_digest(totp.at(now, counter_offset=offset), code):
            return step + offset
    return None


@dataclass(frozen=True, slots=True)
class NewSession:
    """A fresh login: the cookie value (only ever sent to the client) and its CSRF token."""

    cookie: str
    csrf_token: str
    account: dict[str, Any]
    rehashed: bool = False


@dataclass(frozen=True, slots=True)
class InitialCredential:
    """An administrator created by `admin init`: printed once, never stored in the clear."""

    username: str
    role: Role
    password: str  # one-time: must be changed at first login
    totp_secret: str
    totp_uri: str


@dataclass(frozen=True, slots=True)
class DemoAccount:
    username: str
    role: Role
    password: str
    enterprise: str | None = None
    totp_secret: str | None = None
    totp_uri: str | None = None


@dataclass(frozen=True, slots=True)
class NewToken:
    id: int
    value: str  # shown once
    info: dict[str, Any] = field(default_factory=dict)


_ACCOUNT_VIEW = """
    a.id, a.username, a.display_name, a.role, a.enterprise, a.disabled, a.authorised,
    a.failed_count,
    a.locked_until, a.created_at, a.last_login_at, a.password_changed_at,
    a.totp_secret IS NOT NULL AS totp_enrolled,
    a.locked_until IS NOT NULL AND a.locked_until > now() AS locked,
    a.must_change_password
        OR a.password_changed_at < now() - make_interval(days => $1::int) AS must_change_password,
    a.totp_secret IS NULL AND a.role = ANY($2::text[]) AS must_enrol_totp
"""


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat()


def _view(row: asyncpg.Record) -> dict[str, Any]:
    """An account as administrators and the account itself see it: no hash, no secret."""
    return {
        "username": row["username"],
        "display_name": row["display_name"],
        "role": row["role"],
        "enterprise": row["enterprise"],
        "disabled": row["disabled"],
        "authorised": row["authorised"],
        "locked": row["locked"],
        "locked_until": _iso(row["locked_until"]) if row["locked"] else None,
        "failed_count": row["failed_count"],
        "must_change_password": row["must_change_password"],
        "must_enrol_totp": row["must_enrol_totp"],
        "totp_enrolled": row["totp_enrolled"],
        "password_changed_at": _iso(row["password_changed_at"]),
        "created_at": _iso(row["created_at"]),
        "last_login_at": _iso(row["last_login_at"]),
    }


def _token_view(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "permissions": sorted(row["permissions"]),
        "enterprise": row["enterprise"],
        "expires_at": _iso(row["expires_at"]),
        "revoked_at": _iso(row["revoked_at"]),
        "activated_at": _iso(row["activated_at"]),
        "created_by": row["created_by"],
        "created_at": _iso(row["created_at"]),
        "last_used_at": _iso(row["last_used_at"]),
    }


def _permissions(role: Role, limited: bool) -> frozenset[Permission]:
    return SELF_ONLY if limited else ROLE_PERMISSIONS[role]


async def _hash(hasher: PasswordHasher, password: str) -> str:
    return await asyncio.to_thread(hasher.hash, password)


def _matches(hasher: PasswordHasher, hashed: str, password: str) -> bool:
    try:
        return hasher.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False


class Accounts:
    """Accounts and their credentials; shared by the login routes, the admin routes and the CLI."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: SecuritySettings,
        hasher: PasswordHasher | None = None,
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.hasher = hasher or PasswordHasher()
        self._decoy: str | None = None
        # Names without an account: failures counted and locked like an account's, so a
        # lockout does not tell which names exist. (count, locked until), oldest first.
        self._ghosts: dict[str, tuple[int, datetime | None]] = {}
        self.rate = LoginRateLimit(settings.login_attempts_per_minute)
        self._totp_roles = [str(r) for r in settings.totp_roles]

    # -- login and sessions -------------------------------------------------------------------

    async def login(
        self, username: str, password: str, totp: str | None, source: str
    ) -> NewSession:
        """Check the credentials and open a new session, or raise `AccountError`."""
        refused = self.rate.check(source, time.monotonic())
        if refused is not None:
            wait, first = refused
            raise AccountError(
                web.HTTPTooManyRequests,
                "rate_limited",
                f"too many sign-in attempts from {source}: try again in {wait:.0f} s",
                # Audit the start of a flood, not each of its requests.
                reason="rate_limited" if first else "rate_limited_again",
                retry_after=max(1, round(wait)),
            )
        row = await self.pool.fetchrow(
            "SELECT id, role, password_hash, totp_secret, totp_last_step, disabled, authorised,"
            " locked_until, locked_until IS NOT NULL AND locked_until > now() AS locked"
            " FROM accounts WHERE username = $1",
            username,
        )
        if row is None:
            # As slow as a real check, so response time does not tell which names exist.
            await asyncio.to_thread(_matches, self.hasher, await self._decoy_hash(), password)
            self._ghost_failed(username)
        if row["locked"]:
            raise _locked(row["locked_until"], "locked")
        if not await asyncio.to_thread(_matches, self.hasher, row["password_hash"], password):
            await self._failed(row["id"], _bad_credentials("bad_password"))
        if row["disabled"]:
            raise _bad_credentials("disabled")
        if not row["authorised"]:
            raise AccountError(
                web.HTTPForbidden,
                "not_authorised",
                "the security administrator has not yet authorised this account",
                reason="not_authorised",
            )
        step: int | None = None
        if row["totp_secret"] is not None:
            if not totp:
                raise AccountError(
                    web.HTTPUnauthorized,
                    "totp_required",
                    "this account needs its authenticator code (totp)",
                )
            step = _totp_step(row["totp_secret"], totp, time.time())
            if step is None or step <= row["totp_last_step"]:
                await self._failed(
                    row["id"],
                    AccountError(
                        web.HTTPUnauthorized,
                        "bad_totp",
                        "the authenticator code is wrong or was already used",
                    ),
                )
        rehash: str | None = None
        if self.hasher.check_needs_rehash(row["password_hash"]):
            rehash = await _hash(self.hasher, password)
        cookie = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        async with self.pool.acquire() as conn, conn.transaction():
            accepted = await conn.fetchval(
                "UPDATE accounts SET failed_count = 0, locked_until = NULL,"
                " last_login_at = now(), totp_last_step = COALESCE($2, totp_last_step),"
                " password_hash = COALESCE($3, password_hash)"
                " WHERE id = $1 AND ($2::bigint IS NULL OR totp_last_step < $2) RETURNING id",
                row["id"],
                step,
                rehash,
            )
            if accepted is None:  # the same code raced in on another login
                raise AccountError(
                    web.HTTPUnauthorized,
                    "bad_totp",
                    "the authenticator code is wrong or was already used",
                )
            await conn.execute(
                "INSERT INTO sessions (id_hash, account, csrf_token, source)"
                " VALUES ($1, $2, $3, $4)",
                digest(cookie),
                row["id"],
                csrf,
                source,
            )
        account = await self.account(row["id"])
        return NewSession(cookie, csrf, account, rehashed=rehash is not None)

    async def _failed(self, account_id: int, error: AccountError) -> NoReturn:
        """Count a failed attempt; lock the account when the count reaches the limit. Raises."""
        row = await self.pool.fetchrow(
            "UPDATE accounts SET"
            " failed_count = CASE WHEN failed_count + 1 >= $2::int"
            "   THEN 0 ELSE failed_count + 1 END,"
            " locked_until = CASE WHEN failed_count + 1 >= $2::int"
            "   THEN now() + make_interval(mins => $3::int) ELSE locked_until END"
            " WHERE id = $1 RETURNING locked_until, locked_until > now() AS locked",
            account_id,
            self.settings.lockout_failures,
            self.settings.lockout_minutes,
        )
        if row is not None and row["locked"]:
            await self.pool.execute("DELETE FROM sessions WHERE account = $1", account_id)
            raise _locked(row["locked_until"], error.reason, locked_now=True)
        raise error

    def _ghost_failed(self, username: str) -> NoReturn:
        """A failed sign-in as a name without an account: refused like a wrong password, and
        locked after as many failures as an account. Raises."""
        now = datetime.now(UTC)
        count, until = self._ghosts.pop(username, (0, None))
        if until is not None and until > now:
            self._ghosts[username] = (count, until)
            raise _locked(until, "locked")
        count += 1
        if count >= self.settings.lockout_failures:
            until = now + timedelta(minutes=self.settings.lockout_minutes)
            self._ghosts[username] = (0, until)
            error = _locked(until, "unknown_user", locked_now=True)
        else:
            self._ghosts[username] = (count, None)
            error = _bad_credentials("unknown_user")
        while len(self._ghosts) > GHOSTS_KEPT:
            del self._ghosts[next(iter(self._ghosts))]
        raise error

    async def _decoy_hash(self) -> str:
        if self._decoy is None:
            self._decoy = await _hash(self.hasher, secrets.token_urlsafe(16))
        return self._decoy

    async def session(self, cookie: str, *, activity: bool = True) -> Principal | None:
        """The principal of a session cookie; None when there is no such session.

        Raises `AccountError("session_expired")` (and deletes the session) after the role's
        idle time. Only `activity` (a person acting, not a page polling or a live feed) counts
        as use that keeps the session from idling out.
        """
        key = digest(cookie)
        s = self.settings
        row = await self.pool.fetchrow(
            "SELECT s.csrf_token, a.id, a.username, a.role, a.enterprise, a.disabled,"
            " now() - s.last_seen_at > make_interval(mins => CASE WHEN a.role = ANY($2::text[])"
            "   THEN $3::int ELSE $4::int END) AS expired,"
            " now() - s.last_seen_at > make_interval(secs => $5::float8) AS stale,"
            " a.must_change_password"
            "   OR a.password_changed_at < now() - make_interval(days => $6::int) AS must_change,"
            " a.totp_secret IS NULL AND a.role = ANY($7::text[]) AS must_enrol"
            " FROM sessions s JOIN accounts a ON a.id = s.account WHERE s.id_hash = $1",
            key,
            [str(r) for r in ADMIN_ROLES],
            s.idle_minutes_admin,
            s.idle_minutes,
            TOUCH_INTERVAL_S,
            s.password_max_age_days,
            self._totp_roles,
        )
        if row is None:
            return None
        if row["expired"] or row["disabled"]:
            await self.pool.execute("DELETE FROM sessions WHERE id_hash = $1", key)
            if row["disabled"]:
                return None
            raise AccountError(
                web.HTTPUnauthorized,
                "session_expired",
                "the session ended after inactivity: please sign in again",
            )
        if row["stale"] and activity:
            await self.pool.execute(
                "UPDATE sessions SET last_seen_at = now() WHERE id_hash = $1", key
            )
        role = Role(row["role"])
        return Principal(
            row["id"],
            row["username"],
            role,
            enterprise=row["enterprise"],
            permissions=_permissions(role, row["must_change"] or row["must_enrol"]),
            session_id=key.hex(),
            csrf_token=row["csrf_token"],
        )

    async def end_session(self, cookie: str) -> None:
        await self.pool.execute("DELETE FROM sessions WHERE id_hash = $1", digest(cookie))

    async def account(self, account_id: int) -> dict[str, Any]:
        row = await self.pool.fetchrow(
            f"SELECT {_ACCOUNT_VIEW} FROM accounts a WHERE a.id = $3",
            self.settings.password_max_age_days,
            self._totp_roles,
            account_id,
        )
        if row is None:
            raise AccountError(web.HTTPNotFound, "no_account", f"no account with id {account_id}")
        view = _view(row)
        role = Role(row["role"])
        limited = row["must_change_password"] or row["must_enrol_totp"]
        view["permissions"] = sorted(_permissions(role, limited))
        return view

    # -- own password and second factor ----------------------------------------------------

    async def change_password(
        self, account_id: int, old: str, new: str, keep_session: str | None
    ) -> None:
        """Change one's own password; other sessions of the account end."""
        row = await self.pool.fetchrow(
            "SELECT username, password_hash FROM accounts WHERE id = $1", account_id
        )
        if row is None:
            raise AccountError(web.HTTPNotFound, "no_account", f"no account with id {account_id}")
        if not await asyncio.to_thread(_matches, self.hasher, row["password_hash"], old):
            await self._failed(
                account_id,
                AccountError(web.HTTPForbidden, "bad_credentials", "the current password is wrong"),
            )
        await self._set_password(
            account_id, row["username"], new, must_change=False, keep_session=keep_session
        )

    async def _set_password(
        self,
        account_id: int,
        username: str,
        password: str,
        *,
        must_change: bool,
        keep_session: str | None = None,
    ) -> None:
        problems = password_problems(password, username, self.settings)
        if problems:
            raise AccountError(
                web.HTTPBadRequest,
                "weak_password",
                "the new password " + "; ".join(problems),
                problems=problems,
            )
        keep = self.settings.password_history
        # The current hash counts even where history was never written (older rows).
        recent = await self.pool.fetch(
            "(SELECT hash FROM password_history WHERE account = $1 ORDER BY at DESC LIMIT $2)"
            " UNION SELECT password_hash FROM accounts WHERE id = $1 AND $2 > 0",
            account_id,
            keep,
        )
        if await asyncio.to_thread(
            lambda: any(_matches(self.hasher, r["hash"], password) for r in recent)
        ):
            raise AccountError(
                web.HTTPBadRequest,
                "password_reused",
                f"the new password must differ from the last {keep} passwords",
            )
        hashed = await _hash(self.hasher, password)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE accounts SET password_hash = $2, password_changed_at = now(),"
                " must_change_password = $3 WHERE id = $1",
                account_id,
                hashed,
                must_change,
            )
            await conn.execute(
                "INSERT INTO password_history (account, hash) VALUES ($1, $2)", account_id, hashed
            )
            await conn.execute(
                "DELETE FROM password_history WHERE account = $1 AND ctid NOT IN"
                " (SELECT ctid FROM password_history WHERE account = $1"
                "  ORDER BY at DESC LIMIT $2)",
                account_id,
                max(keep, 1),
            )
            await conn.execute(
                "DELETE FROM sessions WHERE account = $1 AND id_hash IS DISTINCT FROM $2",
                account_id,
                None if keep_session is None else bytes.fromhex(keep_session),
            )

    async def start_totp(self, account_id: int) -> tuple[str, str]:
        """Offer a new TOTP secret to an account without one: (secret, provisioning URI)."""
        secret = pyotp.random_base32()
        username = await self.pool.fetchval(
            "UPDATE accounts SET totp_pending = $2 WHERE id = $1 AND totp_secret IS NULL"
            " RETURNING username",
            account_id,
            secret,
        )
        if username is None:
            raise AccountError(
                web.HTTPConflict,
                "totp_enrolled",
                "an authenticator is already enrolled: the security administrator can reset it",
            )
        return secret, totp_uri(secret, username)

    async def confirm_totp(self, account_id: int, code: str) -> None:
        row = await self.pool.fetchrow(
            "SELECT totp_pending FROM accounts WHERE id = $1 AND totp_secret IS NULL", account_id
        )
        if row is None or row["totp_pending"] is None:
            raise AccountError(
                web.HTTPConflict, "no_enrolment", "start the enrolment first (POST /api/auth/totp)"
            )
        step = _totp_step(row["totp_pending"], code, time.time())
        if step is None:
            raise AccountError(
                web.HTTPBadRequest, "bad_totp", "the authenticator code does not match"
            )
        await self.pool.execute(
            "UPDATE accounts SET totp_secret = totp_pending, totp_pending = NULL,"
            " totp_last_step = $2 WHERE id = $1",
            account_id,
            step,
        )

    # -- administration (system administrator) -----------------------------------------------

    async def list_accounts(self) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            f"SELECT {_ACCOUNT_VIEW} FROM accounts a ORDER BY a.username",
            self.settings.password_max_age_days,
            self._totp_roles,
        )
        return [_view(r) for r in rows]

    async def create_account(
        self, username: str, display_name: str, role: Role, enterprise: str | None
    ) -> tuple[int, str]:
        """A business account with a one-time password: (id, password shown once). It signs in
        once the security administrator has authorised it (`authorise`)."""
        _business_role(role, enterprise)
        password = one_time_password(self.settings)
        hashed = await _hash(self.hasher, password)
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                account_id = await conn.fetchval(
                    "INSERT INTO accounts (username, display_name, role, enterprise,"
                    " password_hash, must_change_password, authorised)"
                    " VALUES ($1, $2, $3, $4, $5, true, false) RETURNING id",
                    username,
                    display_name,
                    str(role),
                    enterprise,
                    hashed,
                )
                await conn.execute(
                    "INSERT INTO password_history (account, hash) VALUES ($1, $2)",
                    account_id,
                    hashed,
                )
        except asyncpg.UniqueViolationError:
            raise AccountError(
                web.HTTPConflict, "exists", f"an account named {username!r} exists"
            ) from None
        except asyncpg.ForeignKeyViolationError:
            raise _unknown_enterprise(enterprise) from None
        return account_id, password

    async def set_disabled(self, actor: Principal, username: str, disabled: bool) -> None:
        target = await self._target(actor, username, admins=False)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE accounts SET disabled = $2 WHERE id = $1", target["id"], disabled
            )
            await conn.execute("DELETE FROM sessions WHERE account = $1", target["id"])

    async def delete_account(self, actor: Principal, username: str) -> None:
        target = await self._target(actor, username, admins=False)
        await self.pool.execute("DELETE FROM accounts WHERE id = $1", target["id"])

    async def reset_password(self, actor: Principal, username: str) -> str:
        """A new one-time password for someone else (returned once); their sessions end. A
        business account then waits for the security administrator's authorisation again (an
        administrator's account also needs its authenticator, which this does not reset)."""
        target = await self._target(actor, username, admins=True)
        password = one_time_password(self.settings)
        await self._set_password(target["id"], username, password, must_change=True)
        if Role(target["role"]) not in ADMIN_ROLES:
            await self.pool.execute(
                "UPDATE accounts SET authorised = false WHERE id = $1", target["id"]
            )
        return password

    # -- administration (security administrator) ---------------------------------------------

    async def set_role(
        self, actor: Principal, username: str, role: Role, enterprise: str | None
    ) -> None:
        _business_role(role, enterprise)
        target = await self._target(actor, username, admins=False)
        try:
            await self.pool.execute(
                "UPDATE accounts SET role = $2, enterprise = $3 WHERE id = $1",
                target["id"],
                str(role),
                enterprise,
            )
        except asyncpg.ForeignKeyViolationError:
            raise _unknown_enterprise(enterprise) from None

    async def authorise(self, actor: Principal, username: str) -> None:
        """Let a business account the system administrator created or reset sign in."""
        target = await self._target(actor, username, admins=False)
        await self.pool.execute("UPDATE accounts SET authorised = true WHERE id = $1", target["id"])

    async def unlock(self, actor: Principal, username: str) -> None:
        target = await self._target(actor, username, admins=True)
        await self.pool.execute(
            "UPDATE accounts SET locked_until = NULL, failed_count = 0 WHERE id = $1",
            target["id"],
        )

    async def reset_totp(self, actor: Principal, username: str) -> None:
        """Forget the authenticator: the account enrols a new one at its next login."""
        target = await self._target(actor, username, admins=True)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE accounts SET totp_secret = NULL, totp_pending = NULL WHERE id = $1",
                target["id"],
            )
            await conn.execute("DELETE FROM sessions WHERE account = $1", target["id"])

    async def _target(self, actor: Principal, username: str, *, admins: bool) -> asyncpg.Record:
        """The account an administrator acts on: never their own (separation of duties)."""
        row = await self.pool.fetchrow(
            "SELECT id, role FROM accounts WHERE username = $1", username
        )
        if row is None:
            raise AccountError(web.HTTPNotFound, "no_account", f"no account named {username!r}")
        if row["id"] == actor.account_id:
            raise AccountError(
                web.HTTPForbidden,
                "own_account",
                "administrators cannot act on their own account; another administrator must",
            )
        if not admins and Role(row["role"]) in ADMIN_ROLES:
            raise AccountError(
                web.HTTPForbidden,
                "admin_account",
                f"{username!r} is an administrator account: it cannot be disabled, deleted "
                "or given another role",
            )
        return row

    async def create_token(
        self,
        actor: Principal,
        name: str,
        permissions: Iterable[Permission],
        enterprise: str | None,
        expires_at: datetime,
    ) -> NewToken:
        perms = frozenset(permissions)
        outside = sorted(perms - TOKEN_PERMISSIONS)
        if outside or not perms:
            raise AccountError(
                web.HTTPBadRequest,
                "bad_permissions",
                f"a token needs one or more of {sorted(TOKEN_PERMISSIONS)}, got {sorted(perms)}",
            )
        value = "anjian_" + secrets.token_urlsafe(32)
        try:
            row = await self.pool.fetchrow(
                "INSERT INTO api_tokens (name, token_hash, permissions, enterprise, expires_at,"
                " created_by) SELECT $1, $2, $3, $4, $5, $6 WHERE $5 > now() RETURNING *",
                name,
                digest(value),
                sorted(str(p) for p in perms),
                enterprise,
                expires_at,
                actor.account_id,
            )
        except asyncpg.ForeignKeyViolationError:
            raise _unknown_enterprise(enterprise) from None
        if row is None:
            raise AccountError(
                web.HTTPBadRequest,
                "bad_expiry",
                f"expires_at={expires_at.isoformat()} is not in the future",
            )
        return NewToken(row["id"], value, _token_view(row))

    async def list_tokens(self) -> list[dict[str, Any]]:
        return [
            _token_view(r) for r in await self.pool.fetch("SELECT * FROM api_tokens ORDER BY id")
        ]

    async def revoke_token(self, token_id: int) -> None:
        done = await self.pool.fetchval(
            "UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL"
            " RETURNING id",
            token_id,
        )
        if done is None:
            raise AccountError(
                web.HTTPNotFound, "no_token", f"no unrevoked token with id {token_id}"
            )

    async def activate_token(self, actor: Principal, token_id: int) -> None:
        """The system administrator lets a token the security administrator created work."""
        done = await self.pool.fetchval(
            "UPDATE api_tokens SET activated_at = now(), activated_by = $2"
            " WHERE id = $1 AND activated_at IS NULL AND revoked_at IS NULL RETURNING id",
            token_id,
            actor.account_id,
        )
        if done is None:
            raise AccountError(
                web.HTTPNotFound, "no_token", f"no token with id {token_id} awaiting activation"
            )

    async def token(self, value: str) -> Principal:
        """The principal of a bearer token; raises when unknown, revoked, expired or not yet
        activated."""
        row = await self.pool.fetchrow(
            "SELECT id, name, permissions, enterprise, revoked_at IS NOT NULL AS revoked,"
            " expires_at <= now() AS expired, activated_at IS NULL AS inactive,"
            " last_used_at IS NULL"
            "   OR now() - last_used_at > make_interval(secs => $2::float8) AS stale"
            " FROM api_tokens WHERE token_hash = $1",
            digest(value),
            TOUCH_INTERVAL_S,
        )
        if row is None:
            raise _bad_token("unknown")
        for state in ("revoked", "expired", "inactive"):
            if row[state]:
                raise _bad_token(state)
        if row["stale"]:
            await self.pool.execute(
                "UPDATE api_tokens SET last_used_at = now() WHERE id = $1", row["id"]
            )
        known = {str(p) for p in TOKEN_PERMISSIONS}
        return Principal(
            None,
            f"token:{row['name']}",
            Role.PUBLIC,
            enterprise=row["enterprise"],
            permissions=frozenset(Permission(p) for p in row["permissions"] if p in known),
            token_id=row["id"],
        )


def _bad_token(state: str) -> AccountError:
    said = "not yet activated by the system administrator" if state == "inactive" else state
    return AccountError(web.HTTPUnauthorized, "bad_token", f"the API token is {said}", reason=state)


def _bad_credentials(reason: str) -> AccountError:
    return AccountError(
        web.HTTPUnauthorized,
        "bad_credentials",
        "wrong user name or password",
        reason=reason,
    )


GHOSTS_KEPT = 10_000  # names without an account whose failures are remembered


def _locked(until: datetime, reason: str, *, locked_now: bool = False) -> AccountError:
    return AccountError(
        HTTPLocked,
        "locked",
        f"the account is locked after repeated failures until {until.isoformat()}",
        reason=reason,
        locked_now=locked_now,
        until=until.isoformat(),
    )


def _unknown_enterprise(code: str | None) -> AccountError:
    return AccountError(
        web.HTTPBadRequest, "unknown_enterprise", f"there is no enterprise with code {code!r}"
    )


def _business_role(role: Role, enterprise: str | None) -> None:
    if role not in BUSINESS_ROLES:
        raise AccountError(
            web.HTTPBadRequest,
            "bad_role",
            f"role {str(role)!r} cannot be given here: choose one of "
            f"{sorted(str(r) for r in BUSINESS_ROLES)}",
        )
    if (role == Role.ENTERPRISE) != (enterprise is not None):
        raise AccountError(
            web.HTTPBadRequest,
            "enterprise_binding",
            "an enterprise account needs an enterprise code, and only an enterprise account "
            f"may have one (role {str(role)!r}, enterprise {enterprise!r})",
        )


# -- bootstrap --------------------------------------------------------------------------------


async def admin_init(pool: asyncpg.Pool, settings: SecuritySettings) -> list[InitialCredential]:
    """Create the three administrators (三员) with one-time passwords and TOTP secrets."""
    hasher = PasswordHasher()
    plan = [(role, name, one_time_password(settings)) for role, name in ADMIN_USERNAMES.items()]
    hashes = await asyncio.to_thread(lambda: [hasher.hash(p) for _, _, p in plan])
    created = []
    async with pool.acquire() as conn, conn.transaction():
        # Two concurrent inits must not both find "none yet".
        await conn.execute("LOCK TABLE accounts IN SHARE ROW EXCLUSIVE MODE")
        existing = await conn.fetch(
            "SELECT username, role FROM accounts"
            " WHERE role = ANY($1::text[]) OR username = ANY($2)",
            [str(r) for r in ADMIN_ROLES],
            list(ADMIN_USERNAMES.values()),
        )
        if existing:
            names = ", ".join(f"{r['username']} ({r['role']})" for r in existing)
            raise AlreadyInitialised(f"administrator accounts exist already: {names}")
        for (role, name, password), hashed in zip(plan, hashes, strict=True):
            secret = pyotp.random_base32()
            account_id = await conn.fetchval(
                "INSERT INTO accounts (username, role, password_hash, must_change_password,"
                " totp_secret) VALUES ($1, $2, $3, true, $4) RETURNING id",
                name,
                str(role),
                hashed,
                secret,
            )
            await conn.execute(
                "INSERT INTO password_history (account, hash) VALUES ($1, $2)", account_id, hashed
            )
            created.append(InitialCredential(name, role, password, secret, totp_uri(secret, name)))
    return created


async def ensure_demo_accounts(pool: asyncpg.Pool, enterprise_code: str) -> list[DemoAccount]:
    """One demo account per role (DEMO_ACCOUNTS); existing ones are kept as they are.

    Business roles get no second factor, so a newcomer signs in at once (a role that policy
    obliges to use TOTP, e.g. the leader, is asked to enrol one); the administrators get
    random TOTP secrets, returned with the rest for the demo to print.
    """
    existing = {
        r["username"]
        for r in await pool.fetch(
            "SELECT username FROM accounts WHERE username = ANY($1)",
            [name for name, _, _ in DEMO_ACCOUNTS],
        )
    }
    missing = [a for a in DEMO_ACCOUNTS if a[0] not in existing]
    if missing:
        hasher = PasswordHasher()
        hashes = await asyncio.to_thread(lambda: [hasher.hash(p) for _, _, p in missing])
        async with pool.acquire() as conn, conn.transaction():
            for (name, role, _), hashed in zip(missing, hashes, strict=True):
                account_id = await conn.fetchval(
                    "INSERT INTO accounts (username, display_name, role, enterprise,"
                    " password_hash, totp_secret) VALUES ($1, $2, $3, $4, $5, $6)"
                    " ON CONFLICT (username) DO NOTHING RETURNING id",
                    name,
                    f"demo {role}",
                    str(role),
                    enterprise_code if role == Role.ENTERPRISE else None,
                    hashed,
                    pyotp.random_base32() if role in ADMIN_ROLES else None,
                )
                if account_id is not None:
                    await conn.execute(
                        "INSERT INTO password_history (account, hash) VALUES ($1, $2)",
                        account_id,
                        hashed,
                    )
    rows = {
        r["username"]: r
        for r in await pool.fetch(
            "SELECT username, enterprise, totp_secret FROM accounts WHERE username = ANY($1)",
            [name for name, _, _ in DEMO_ACCOUNTS],
        )
    }
    out = []
    for name, role, password in DEMO_ACCOUNTS:
        row = rows[name]
        secret = row["totp_secret"]
        out.append(
            DemoAccount(
                name,
                role,
                password,
                row["enterprise"],
                secret,
                None if secret is None else totp_uri(secret, name),
            )
        )
    return out


ACCOUNTS = web.AppKey("accounts", Accounts)
