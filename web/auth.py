"""Who is asking (`authenticate`), the sign-in routes and the account administration routes.

Handlers never check permissions: each `Route` names its own and the guard middleware enforces it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, TypeVar, cast

from aiohttp import web
from pydantic import BaseModel, Field

from web.accounts import ACCOUNTS, AccountError, Accounts
from web.audit import AUDIT
from web.inputs import INT4_MAX, Body, Instant, parse_id
from web.security import (
    ANONYMOUS,
    BODY,
    PRINCIPAL,
    ROUTE,
    Handler,
    Permission,
    Principal,
    Role,
    Route,
    json_error,
)

__all__ = [
    "ACCOUNTS",
    "ADMIN_ROUTES",
    "AUTH_ROUTES",
    "BACKGROUND_HEADER",
    "COOKIE",
    "authenticate",
    "current_principal",
    "refuse_foreign_origin",
]

COOKIE = "anjian_session"
# Sent by the console on requests no person asked for (status polling): not activity.
BACKGROUND_HEADER = "X-Anjian-Background"
log = logging.getLogger("anjian.auth")

Username = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.-]{1,31}$")]
# Long enough for any passphrase, short enough that hashing it is no denial of service.
Secret = Annotated[str, Field(min_length=1, max_length=256)]


class LoginBody(Body):
    username: Annotated[str, Field(min_length=1, max_length=64)]
    password: Secret
    totp: Annotated[str, Field(pattern=r"^\s*\d{6}\s*$")] | None = None


class PasswordBody(Body):
    old: Secret
    new: Secret


class TotpCodeBody(Body):
    code: Annotated[str, Field(pattern=r"^\s*\d{6}\s*$")]


class CreateAccountBody(Body):
    username: Username
    display_name: Annotated[str, Field(max_length=100)] = ""
    role: Role
    enterprise: str | None = None


class RoleBody(Body):
    role: Role
    enterprise: str | None = None


class TokenBody(Body):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    permissions: Annotated[list[Permission], Field(min_length=1)]
    enterprise: str | None = None
    expires_at: Instant


B = TypeVar("B", bound=BaseModel)


def _body(request: web.Request, model: type[B]) -> B:
    return cast(B, request[BODY])


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, ensure_ascii=False))


# -- who is asking ---------------------------------------------------------------------------


async def current_principal(request: web.Request) -> Principal | None:
    """The principal of a long-lived request (a WebSocket) as the accounts say now, without
    counting as activity: None when its session ended or its token was revoked or expired."""
    accounts = request.app[ACCOUNTS]
    header = request.headers.get("Authorization")
    try:
        if header is not None:
            return await accounts.token(header.partition(" ")[2].strip())
        cookie = request.cookies.get(COOKIE)
        if not cookie:
            return ANONYMOUS
        return await accounts.session(cookie, activity=False)
    except AccountError:
        return None


def refuse_foreign_origin(request: web.Request) -> None:
    """Answer 403 to a WebSocket handshake from a page of another origin."""
    if not same_origin(request):
        raise json_error(
            web.HTTPForbidden,
            "a live feed opens only from this server's console, not from "
            + request.headers["Origin"],
            code="bad_origin",
        )


def same_origin(request: web.Request) -> bool:
    """Whether a WebSocket handshake comes from a page of this server. Browsers send the page's
    Origin with every handshake, and cookies go along whatever page opened it (a site on
    another port or sub-domain of the same host counts as the same site), so a handshake
    naming another origin is refused; clients other than browsers send none."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    # Behind a reverse proxy the browser's host is the proxy's, passed on as X-Forwarded-Host.
    host = request.headers.get("X-Forwarded-Host", request.host)
    scheme, _, rest = origin.partition("://")
    return scheme in ("http", "https") and rest.rstrip("/").lower() == host.lower()


# The close codes of a WebSocket whose session ended (the console signs out), and of one whose
# account's access changed (a new role or enterprise: the console reconnects with the new one).
WS_SESSION_ENDED = 4401
WS_ACCESS_CHANGED = 4403


def _access(p: Principal) -> tuple[object, ...]:
    return p.role, p.enterprise, p.permissions


@contextlib.asynccontextmanager
async def closed_with_session(
    request: web.Request, ws: web.WebSocketResponse, every_s: float
) -> AsyncIterator[None]:
    """While inside, close `ws` when its session ends (sign-out, idle timeout, account disabled,
    token revoked: WS_SESSION_ENDED) or its access changes (WS_ACCESS_CHANGED), checking every
    `every_s` seconds: a feed never outlives the rights it was opened with.

    The handler's receive loop ends as this close begins; on leaving, a close under way is let
    finish its closing handshake. Cancelled, it would drop the connection before the client's
    answer, and the client would see 1006 (abnormal closure) instead of the code sent.
    """
    closing = False
    opened_with = _access(request[PRINCIPAL])

    async def watch() -> None:
        nonlocal closing
        while not ws.closed:
            await asyncio.sleep(every_s)
            now = await current_principal(request)
            if now is None or _access(now) != opened_with:
                closing = True
                if now is None:
                    await ws.close(code=WS_SESSION_ENDED, message=b"session ended")
                else:
                    await ws.close(code=WS_ACCESS_CHANGED, message=b"access changed")
                return

    task = asyncio.create_task(watch())
    try:
        yield
    finally:
        if not closing:
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def authenticate(request: web.Request) -> Principal:
    """The principal of a request: a bearer token, else a session cookie, else ANONYMOUS.

    A bad token answers 401 `bad_token`; a session past its idle time is deleted and answers
    401 `session_expired` (with the cookie cleared), except on open routes such as the login
    itself, which then see an anonymous visitor.
    """
    accounts = request.app[ACCOUNTS]
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        try:
            if scheme.lower() != "bearer" or not value.strip():
                raise AccountError(
                    web.HTTPUnauthorized,
                    "bad_token",
                    "the Authorization header must be 'Bearer <token>'",
                    reason="malformed",
                )
            return await accounts.token(value.strip())
        except AccountError as exc:
            await request.app[AUDIT].record(
                principal=None,
                source=request.remote,
                action="auth.token",
                result="refused 401",
                detail={"reason": exc.reason},
            )
            raise exc.http() from None
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        return ANONYMOUS
    try:
        # A console's own polling says so; it must not keep an unattended session alive.
        background = request.headers.get(BACKGROUND_HEADER) == "1"
        principal = await accounts.session(cookie, activity=not background)
    except AccountError as exc:
        route = request.get(ROUTE)
        if route is not None and route.permission is None:
            return ANONYMOUS
        error = exc.http()
        error.del_cookie(COOKIE, path="/")
        raise error from None
    return principal or ANONYMOUS


def _set_cookie(request: web.Request, response: web.StreamResponse, value: str) -> None:
    response.set_cookie(
        COOKIE, value, path="/", httponly=True, samesite="Strict", secure=request.secure
    )


# -- audit of the routes that describe themselves ----------------------------------------------


AuditedHandler = Callable[[web.Request, dict[str, Any]], Awaitable[web.StreamResponse]]


def audited(action: str) -> Callable[[AuditedHandler], Handler]:
    """Write one audit record per call, whatever the outcome: the action, its target (the path's
    account or token, or what the handler puts in note["target"]) and a detail without secrets.
    """

    def wrap(fn: AuditedHandler) -> Handler:
        @functools.wraps(fn)
        async def handler(request: web.Request) -> web.StreamResponse:
            note: dict[str, Any] = {}
            result = "error"
            try:
                response = await fn(request, note)
                result = "ok"
                return response
            except AccountError as exc:
                note["reason"] = exc.reason
                result = f"refused {exc.kind.status_code}"
                raise exc.http() from None
            except web.HTTPException as exc:
                result = f"refused {exc.status}"
                raise
            finally:
                target = note.pop("target", None) or request.match_info.get("target")
                await request.app[AUDIT].record(
                    principal=_principal(request),
                    source=request.remote,
                    action=action,
                    target=target,
                    result=result,
                    detail=note or None,
                )

        return handler

    return wrap


def _principal(request: web.Request) -> Principal | None:
    p = request.get(PRINCIPAL)
    return None if p is None or p is ANONYMOUS else p


def _account_id(request: web.Request) -> int:
    p = request[PRINCIPAL]
    if p.account_id is None:
        raise json_error(
            web.HTTPForbidden, "only a signed-in account can do this", code="forbidden"
        )
    return p.account_id


def _accounts(request: web.Request) -> Accounts:
    return request.app[ACCOUNTS]


# -- sign-in routes --------------------------------------------------------------------------


async def login(request: web.Request) -> web.StreamResponse:
    body = _body(request, LoginBody)
    accounts = _accounts(request)
    audit = request.app[AUDIT]
    source = request.remote or ""
    old = request.cookies.get(COOKIE)
    if old:
        # Whatever the outcome, a cookie presented at login never stays valid (fixation).
        await accounts.end_session(old)
    try:
        new = await accounts.login(body.username, body.password, body.totp, source)
    except AccountError as exc:
        if exc.reason != "rate_limited_again":
            await audit.record(
                principal=None,
                username=body.username,
                source=source,
                action="auth.login",
                target=body.username,
                result=f"refused {exc.kind.status_code}",
                detail={"reason": exc.reason},
            )
        if exc.locked_now:
            await audit.record(
                principal=None,
                username=body.username,
                source=source,
                action="auth.lockout",
                target=body.username,
                result="ok",
                detail={"until": exc.extra["until"]},
            )
        error = exc.http()
        if "retry_after" in exc.extra:
            error.headers["Retry-After"] = str(exc.extra["retry_after"])
        if old:
            error.del_cookie(COOKIE, path="/")
        raise error from None
    await audit.record(
        principal=None,
        username=new.account["username"],
        role=new.account["role"],
        source=source,
        action="auth.login",
        target=new.account["username"],
        result="ok",
        detail={
            "must_change_password": new.account["must_change_password"],
            "must_enrol_totp": new.account["must_enrol_totp"],
        },
    )
    response = _json({"account": new.account, "csrf_token": new.csrf_token})
    _set_cookie(request, response, new.cookie)
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    cookie = request.cookies.get(COOKIE)
    if cookie:
        await _accounts(request).end_session(cookie)
    p = request[PRINCIPAL]
    await request.app[AUDIT].record(
        principal=_principal(request),
        source=request.remote,
        action="auth.logout",
        target=p.username,
        result="ok",
    )
    response = _json({"signed_out": True})
    response.del_cookie(COOKIE, path="/")
    return response


async def me(request: web.Request) -> web.StreamResponse:
    p = request[PRINCIPAL]
    account = await _accounts(request).account(_account_id(request))
    return _json({"account": account, "csrf_token": p.csrf_token})


@audited("auth.password")
async def change_password(request: web.Request, note: dict[str, Any]) -> web.StreamResponse:
    body = _body(request, PasswordBody)
    p = request[PRINCIPAL]
    note["target"] = p.username
    accounts = _accounts(request)
    await accounts.change_password(_account_id(request), body.old, body.new, p.session_id)
    return _json({"account": await accounts.account(_account_id(request))})


@audited("auth.totp.start")
async def totp_start(request: web.Request, note: dict[str, Any]) -> web.StreamResponse:
    note["target"] = request[PRINCIPAL].username
    secret, uri = await _accounts(request).start_totp(_account_id(request))
    return _json({"secret": secret, "uri": uri})


@audited("auth.totp.confirm")
async def totp_confirm(request: web.Request, note: dict[str, Any]) -> web.StreamResponse:
    note["target"] = request[PRINCIPAL].username
    accounts = _accounts(request)
    await accounts.confirm_totp(_account_id(request), _body(request, TotpCodeBody).code)
    return _json({"account": await accounts.account(_account_id(request))})


AUTH_ROUTES = [
    Route(
        "POST",
        "/api/auth/login",
        login,
        None,
        "Sign in: user name, password and (when enrolled) the TOTP code; sets the session "
        "cookie and returns the CSRF token",
        body=LoginBody,
        self_audited=True,
    ),
    Route(
        "POST",
        "/api/auth/logout",
        logout,
        Permission.SELF,
        "Sign out: end the session",
        self_audited=True,
    ),
    Route("GET", "/api/auth/me", me, Permission.SELF, "The signed-in account and its CSRF token"),
    Route(
        "POST",
        "/api/auth/password",
        change_password,
        Permission.SELF,
        "Change one's own password (old, new); other sessions of the account end",
        body=PasswordBody,
        self_audited=True,
    ),
    Route(
        "POST",
        "/api/auth/totp",
        totp_start,
        Permission.SELF,
        "Start enrolling an authenticator: returns the TOTP secret and provisioning URI",
        self_audited=True,
    ),
    Route(
        "POST",
        "/api/auth/totp/confirm",
        totp_confirm,
        Permission.SELF,
        "Finish enrolling the authenticator with a code from it",
        body=TotpCodeBody,
        self_audited=True,
    ),
]


# -- system administrator: accounts exist or not -----------------------------------------------


async def list_accounts(request: web.Request) -> web.StreamResponse:
    return _json({"accounts": await _accounts(request).list_accounts()})


@audited("admin.account.create")
async def create_account(request: web.Request, note: dict[str, Any]) -> web.StreamResponse:
    body = _body(request, CreateAccountBody)
    note.update(target=body.username, role=str(body.role), enterprise=body.enterprise)
    accounts = _accounts(request)
    account_id, password = await accounts.create_account(
        body.username, body.display_name, body.role, body.enterprise
    )
    return _json(
        {"account": await accounts.account(account_id), "one_time_password": password}, 201
    )


@audited("admin.account.disable")
async def disable_account(request: web.Request, note: dict[str, Any]) -> web.StreamResponse:
    await _accounts(request).set_disabled(request[PRINCIPAL], request.match_info["target"], True)
    return _json({"disabled": True})


@audited("admin.account.enable")
async def enable_account(request: web.Request, note: dict[str, Any]) -> web.StreamResponse:
    await _accounts(request).set_disabled(request[PRINCIPAL], request.match_info["target"], False)
    return _json({"disabled": False})


@audited("admin.account.delete")
async def delete_account(request: web.Request, note: dict[str, Any]) -> web.StreamResponse:
    await _accounts(request).delete_account(request[PRINCIPAL], request.match_info["target"])
    return _json({"deleted": True})


@audited("admin.account.password_reset")
async def reset_password(request: web.Request, note: dict[str, Any]) -> web.StreamResponse:
    password = await _accounts(request).reset_password(
        request[PRINCIPAL], request.match_info["target"]
    )
    return _json({"one_time_password": password})


# -- security administrator: roles, unlocking, second factors, machine tokens -----------------


@audited("admin.account.role")
async def set_role(request: web.Request, note: dict[str, Any]) -> web.StreamResponse:
    body = _body(request, RoleBody)
    note.update(role=str(body.role), enterprise=body.enterprise)
    await _accounts(request).set_role(
        request[PRINCIPAL], request.match_info["target"], body.role, body.enterprise
    )
    return _json({"role": str(body.role), "enterprise": body.enterprise})


@audited("admin.account.authorise")
async def authorise(request: web.Request, note: dict[str, Any]) -> web.StreamResponse:
    await _accounts(request).authorise(request[PRINCIPAL], request.match_info["target"])
    return _json({"authorised": True})


@audited("admin.account.unlock")
async def unlock(request: web.Request, note: dict[str, Any]) -> web.StreamResponse:
    await _accounts(request).unlock(request[PRINCIPAL], request.match_info["target"])
    return _json({"locked": False})


@audited("admin.account.totp_reset")
async def reset_totp(request: web.Request, note: dict[str, Any]) -> web.StreamResponse:
    await _accounts(request).reset_totp(request[PRINCIPAL], request.match_info["target"])
    return _json({"totp_enrolled": False})


async def list_tokens(request: web.Request) -> web.StreamResponse:
    return _json({"tokens": await _accounts(request).list_tokens()})


@audited("admin.token.create")
async def create_token(request: web.Request, note: dict[str, Any]) -> web.StreamResponse:
    body = _body(request, TokenBody)
    note.update(
        target=body.name,
        permissions=sorted(str(p) for p in body.permissions),
        enterprise=body.enterprise,
        expires_at=body.expires_at.isoformat(),
    )
    new = await _accounts(request).create_token(
        request[PRINCIPAL], body.name, body.permissions, body.enterprise, body.expires_at
    )
    note["token_id"] = new.id
    return _json({"token": new.value, **new.info}, 201)


def _token_id(request: web.Request) -> int:
    raw = request.match_info["target"]
    token_id = parse_id(raw, INT4_MAX)  # api_tokens.id is a serial
    if token_id is None:
        raise json_error(web.HTTPNotFound, f"no token with id {raw!r}", code="no_token")
    return token_id


@audited("admin.token.activate")
async def activate_token(request: web.Request, note: dict[str, Any]) -> web.StreamResponse:
    await _accounts(request).activate_token(request[PRINCIPAL], _token_id(request))
    return _json({"activated": True})


@audited("admin.token.revoke")
async def revoke_token(request: web.Request, note: dict[str, Any]) -> web.StreamResponse:
    await _accounts(request).revoke_token(_token_id(request))
    return _json({"revoked": True})


_ACCOUNT = "/api/admin/accounts/{target}"
_SECURITY = "/api/admin/security/accounts/{target}"

ADMIN_ROUTES = [
    Route(
        "GET",
        "/api/admin/accounts",
        list_accounts,
        Permission.ACCOUNTS_MANAGE,
        "All accounts (no password hashes, no secrets)",
    ),
    Route(
        "POST",
        "/api/admin/accounts",
        create_account,
        Permission.ACCOUNTS_MANAGE,
        "Create a business account; its one-time password is returned once",
        body=CreateAccountBody,
        self_audited=True,
    ),
    Route(
        "POST",
        f"{_ACCOUNT}/disable",
        disable_account,
        Permission.ACCOUNTS_MANAGE,
        "Disable an account and end its sessions",
        self_audited=True,
    ),
    Route(
        "POST",
        f"{_ACCOUNT}/enable",
        enable_account,
        Permission.ACCOUNTS_MANAGE,
        "Enable a disabled account",
        self_audited=True,
    ),
    Route(
        "DELETE",
        _ACCOUNT,
        delete_account,
        Permission.ACCOUNTS_MANAGE,
        "Delete a business account",
        self_audited=True,
    ),
    Route(
        "POST",
        f"{_ACCOUNT}/password",
        reset_password,
        Permission.ACCOUNTS_MANAGE,
        "Reset someone's password to a one-time password (returned once; to be changed at "
        "the next sign-in)",
        self_audited=True,
    ),
    Route(
        "GET",
        "/api/admin/security/accounts",
        list_accounts,
        Permission.SECURITY_MANAGE,
        "All accounts with role, lock and second-factor state",
    ),
    Route(
        "PUT",
        f"{_SECURITY}/role",
        set_role,
        Permission.SECURITY_MANAGE,
        "Give a business account another business role (and enterprise binding)",
        body=RoleBody,
        self_audited=True,
    ),
    Route(
        "POST",
        f"{_SECURITY}/authorise",
        authorise,
        Permission.SECURITY_MANAGE,
        "Authorise a business account the system administrator created or gave a new password:"
        " only then does it sign in",
        self_audited=True,
    ),
    Route(
        "POST",
        f"{_SECURITY}/unlock",
        unlock,
        Permission.SECURITY_MANAGE,
        "Unlock an account locked after failed sign-ins",
        self_audited=True,
    ),
    Route(
        "DELETE",
        f"{_SECURITY}/totp",
        reset_totp,
        Permission.SECURITY_MANAGE,
        "Forget an account's authenticator; it enrols a new one at the next sign-in",
        self_audited=True,
    ),
    Route(
        "GET",
        "/api/admin/tokens",
        list_tokens,
        Permission.ACCOUNTS_MANAGE,
        "API tokens of machines (never their values), to activate the new ones",
    ),
    Route(
        "POST",
        "/api/admin/tokens/{target}/activate",
        activate_token,
        Permission.ACCOUNTS_MANAGE,
        "Activate an API token the security administrator created: only then does it work",
        self_audited=True,
    ),
    Route(
        "GET",
        "/api/admin/security/tokens",
        list_tokens,
        Permission.SECURITY_MANAGE,
        "API tokens of machines (never their values)",
    ),
    Route(
        "POST",
        "/api/admin/security/tokens",
        create_token,
        Permission.SECURITY_MANAGE,
        "Create an API token: name, business permissions, optional enterprise, expiry; the "
        "value is returned once, and the token works once the system administrator activates it",
        body=TokenBody,
        self_audited=True,
    ),
    Route(
        "DELETE",
        "/api/admin/security/tokens/{target}",
        revoke_token,
        Permission.SECURITY_MANAGE,
        "Revoke an API token",
        self_audited=True,
    ),
]
