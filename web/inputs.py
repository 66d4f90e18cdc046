"""What a request may send, checked the same way on every route: times, path ids, text without
NUL and finite numbers, and the base of every request body model.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from aiohttp import web
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict

from web.security import PRINCIPAL, Principal, Route, json_error

__all__ = [
    "EARLIEST",
    "ENTERPRISES",
    "INT4_MAX",
    "INT8_MAX",
    "LATEST",
    "Body",
    "Instant",
    "enterprise_param",
    "parse_id",
    "parse_time",
    "refuse_nul",
    "refuse_unknown_query",
    "to_ns",
    "unfit_value",
]

# The times a request may name. Samples and alarm events count int64 nanoseconds from the
# epoch, which run out on 2262-04-11; before the epoch there is nothing to find.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2262, 1, 1, tzinfo=UTC)
_LATEST_MS = (LATEST - EARLIEST) // timedelta(milliseconds=1)
_RANGE = f"give a time from {EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d}"
# The largest id of a `serial` (int4) and of a `bigserial` (int8) column (streams/migrations).
INT4_MAX = 2**31 - 1
INT8_MAX = 2**63 - 1

_EPOCH_MS = re.compile(r"-?[0-9]+")
_DIGITS = re.compile(r"[0-9]{1,19}")
# PostgreSQL text cannot hold NUL: refused here rather than failing in the database.
_NUL = "\x00"


def _bad(message: str) -> web.HTTPException:
    return json_error(web.HTTPBadRequest, message)


def _within(at: datetime) -> bool:
    return EARLIEST <= at <= LATEST


def parse_time(raw: str, name: str) -> datetime:
    """The query parameter `name`: RFC 3339 with a UTC offset, or epoch milliseconds; 400
    naming it when it is neither or lies outside EARLIEST..LATEST."""
    text = raw.strip()
    at: datetime | None
    if _EPOCH_MS.fullmatch(text):
        # Longer than any time in range: not converted (int() of thousands of digits fails).
        ms = int(text) if len(text) <= 20 else -1
        at = EARLIEST + timedelta(milliseconds=ms) if 0 <= ms <= _LATEST_MS else None
    else:
        try:
            at = datetime.fromisoformat(text)
        except ValueError:
            raise _bad(
                f"{name}={raw!r} is not an RFC 3339 time like 2026-11-30T08:00:00Z "
                "(or epoch milliseconds)"
            ) from None
        if at.tzinfo is None:
            raise _bad(f"{name}={raw!r} needs a UTC offset (Z or +08:00)")
    if at is None or not _within(at):
        raise _bad(f"{name}={raw!r} is out of range: {_RANGE}")
    return at


def to_ns(at: datetime) -> int:
    """An aware time as int nanoseconds since the epoch, exactly."""
    return (at - EARLIEST) // timedelta(microseconds=1) * 1000


def _bounded(at: datetime) -> datetime:
    if not _within(at):
        raise ValueError(f"out of range: {_RANGE}")
    return at


# A time in a request body: RFC 3339 with a UTC offset, within EARLIEST..LATEST.
Instant = Annotated[AwareDatetime, AfterValidator(_bounded)]


def parse_id(raw: str, largest: int) -> int | None:
    """A path's id as the database column holds it (INT4_MAX or INT8_MAX): ASCII digits only,
    so "²" or "١٢" is no id. None otherwise; the caller answers 404 as for an unknown id."""
    if not _DIGITS.fullmatch(raw):
        return None
    value = int(raw)
    return value if value <= largest else None


class Body(BaseModel):
    """The base of the request bodies: unknown keys refused. Every body model (this one's and
    the alarm rules', shared with the configuration file) is validated strictly by the app, so
    [true] is no list of ids, "yes" no boolean, "60" no number and a number no time."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def unfit_value(document: Any) -> tuple[str, str] | None:
    """The first value of a parsed JSON body no route takes, as (field, problem): text with NUL,
    or a number that is not finite (NaN, Infinity, 1e309). Checked for every body model."""
    stack: list[tuple[str, Any]] = [("", document)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str) and _NUL in value:
            return where or "<body>", "must not contain NUL characters"
        if isinstance(value, float) and not math.isfinite(value):
            return where or "<body>", "must be a finite number"
        if isinstance(value, dict):
            for key, item in value.items():
                here = f"{where}.{key}" if where else key
                if _NUL in key:
                    return here, "must not contain NUL characters"
                stack.append((here, item))
        elif isinstance(value, list):
            stack.extend((f"{where}.{i}" if where else str(i), v) for i, v in enumerate(value))
    return None


def refuse_nul(request: web.Request) -> None:
    """400 naming the query or path parameter that holds a NUL character."""
    for name, value in (*request.query.items(), *request.match_info.items()):
        if _NUL in name or _NUL in value:
            raise json_error(
                web.HTTPBadRequest, f"{name}: must not contain NUL characters", field=name
            )


def refuse_unknown_query(request: web.Request, route: Route) -> None:
    """400 naming a query parameter the route does not take (`Route.query`): a misspelt filter
    would otherwise be ignored and answer as if it had not been asked. The console's page is
    not an API: a link to it may carry anything."""
    if not route.path.startswith(("/api/", "/ws")):
        return
    for name in request.query:
        if name not in route.query:
            takes = ", ".join(route.query) if route.query else "no query parameters"
            raise json_error(
                web.HTTPBadRequest,
                f"unknown query parameter {name!r}; {route.method} {route.path} takes: {takes}",
                field=name,
            )


# The configured enterprise codes (set when the application starts).
ENTERPRISES = web.AppKey("enterprise_codes", frozenset)


def enterprise_param(request: web.Request, name: str = "enterprise") -> str | None:
    """The enterprise a listing is narrowed to (`?enterprise=`, or `name`): the code asked for,
    by default an enterprise user's own. An unknown code and another enterprise's answer 404
    alike, so a filter never answers an empty list for a typo."""
    principal: Principal = request[PRINCIPAL]
    asked = request.query.get(name) or principal.enterprise
    if asked is not None and (asked not in request.app[ENTERPRISES] or not principal.sees(asked)):
        raise json_error(web.HTTPNotFound, f"no enterprise {asked!r}")
    return asked
