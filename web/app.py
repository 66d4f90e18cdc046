"""The aiohttp application: REST API, the live WebSocket and the console's static files.

The application object only serves; the composition root (`anjian`) opens the store, the hub and
the collectors in cleanup contexts and hands them over through the typed keys below.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web
from pydantic import BaseModel, Field, ValidationError

from streams import Hub, Quality
from streams.config import SecuritySettings
from streams.fanout import Fanout
from streams.registry import PointIndex, list_enterprises, list_points
from streams.store import Store
from web.alarms import ALARM_ROUTES, ENGINE, NOTIFICATIONS, limits_in_force, readings
from web.audit import AUDIT, AUDIT_ROUTES
from web.auth import (
    ADMIN_ROUTES,
    AUTH_ROUTES,
    authenticate,
    closed_with_session,
    refuse_foreign_origin,
)
from web.inputs import (
    INT4_MAX,
    Body,
    enterprise_param,
    parse_id,
    parse_time,
    refuse_nul,
    refuse_unknown_query,
    to_ns,
    unfit_value,
)
from web.overview import OVERVIEW_ROUTES
from web.reports import REPORT_ROUTES
from web.security import (
    ANONYMOUS,
    BODY,
    PRINCIPAL,
    ROUTE,
    TOPICS,
    Handler,
    Permission,
    Principal,
    Route,
    json_error,
)
from web.sources import SOURCES
from web.video import VIDEO_ROUTES
from web.video_live import VIDEO_LIVE_ROUTES
from web.warnings import DESK, WARNING_ROUTES

log = logging.getLogger("anjian.web")
STATIC = Path(__file__).parent / "static"

# How often a WebSocket client may be sent point values at most: coalescing window.
LIVE_MIN_INTERVAL_S = 0.2
MAX_BUCKETS = 10_000
# How often a live feed checks that its session still exists.
SESSION_CHECK_S = 15.0
DEFAULT_BUCKETS = 500


@dataclass
class Services:
    """What the web layer serves from; built by the composition root."""

    store: Store
    hub: Hub
    points: PointIndex
    # Health of everything the web layer does not own (collectors, writer), JSON-ready.
    collectors: Callable[[], list[dict[str, Any]]] = list
    writer: Callable[[], dict[str, Any]] = dict
    # Cameras and whether each is online (the status bar's cameras up/down).
    cameras: Callable[[], list[dict[str, Any]]] = list
    # Demo only: switch a scenario of the simulated plant (name, target, parameters).
    scenario: Callable[[str, str | None, dict[str, float]], Awaitable[None]] | None = None
    started_ns: int = field(default_factory=time.time_ns)
    # Point id → how long its value holds without a new sample, for points of devices that
    # report on change only (streams.config.held_points); their trends are drawn as steps.
    hold_s: Mapping[int, float] = field(default_factory=dict)


SERVICES = web.AppKey("services", Services)
_RATE = web.AppKey("ingest_rate", deque[tuple[float, int]])


def BadRequest(message: str) -> web.HTTPException:
    return json_error(web.HTTPBadRequest, message)


def NotFound(message: str) -> web.HTTPException:
    return json_error(web.HTTPNotFound, message)


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, ensure_ascii=False))


def _iso(ts_ns: int) -> str | None:
    if ts_ns <= 0:
        return None
    return datetime.fromtimestamp(ts_ns / 1e9, UTC).isoformat(timespec="milliseconds")


def _float(v: float) -> float | None:
    return None if math.isnan(v) else float(v)


def _services(request: web.Request) -> Services:
    return request.app[SERVICES]


async def health(request: web.Request) -> web.Response:
    s = _services(request)
    collectors = s.collectors()
    cameras = s.cameras()
    rate = request.app[_RATE]
    per_s = 0.0
    if len(rate) >= 2:
        (t0, n0), (t1, n1) = rate[0], rate[-1]
        per_s = (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0
    now = time.time_ns()
    newest = s.hub.last_sample_ts_ns
    return _json(
        {
            "status": "ok",
            "database": {"mode": s.store.mode},
            "collectors": {
                "up": sum(1 for c in collectors if c.get("up")),
                "down": sum(1 for c in collectors if c.get("up") is False),
                "devices": collectors,
            },
            "ingest": {
                "samples_per_s": round(per_s, 1),
                "samples_total": s.hub.samples_published,
                "lag_ms": round((now - newest) / 1e6, 1) if newest else None,
                "subscribers": s.hub.subscribers,
            },
            "writer": s.writer(),
            "cameras": {
                "up": sum(1 for c in cameras if c.get("online")),
                "down": sum(1 for c in cameras if not c.get("online")),
            },
            "points": len(s.points),
            "uptime_s": round((now - s.started_ns) / 1e9, 1),
        }
    )


def _principal(request: web.Request) -> Principal:
    principal: Principal = request.get(PRINCIPAL, ANONYMOUS)
    return principal


async def enterprises(request: web.Request) -> web.Response:
    scope = _principal(request).enterprise
    return _json(await list_enterprises(_services(request).store.pool, scope))


def _enterprise_param(request: web.Request, required: bool) -> str | None:
    """The ?enterprise= parameter; another enterprise's code answers 404 like an unknown one."""
    enterprise = enterprise_param(request)
    if enterprise is None and required:
        raise BadRequest("enterprise is required, e.g. ?enterprise=E001")
    return enterprise


def _enterprise_codes(s: Services) -> set[str]:
    return {p.enterprise for p in s.points}


async def points(request: web.Request) -> web.Response:
    enterprise = _enterprise_param(request, required=False)
    rows = await list_points(_services(request).store.pool, enterprise)
    engine = request.app.get(ENGINE)
    for row in rows:  # for a reading beyond the range: a bound, or a failure signal
        row["readings"] = readings(engine.rules, row["id"]) if engine else None
        # The limits in force (the alarm rule's), those the point has.
        limits = limits_in_force(request, row["id"])
        if limits is not None:
            row["limits"] = {k: v for k, v in limits.items() if v is not None}
    return _json(rows)


async def series(request: web.Request) -> web.Response:
    s = _services(request)
    raw_id = request.match_info["id"]
    point = parse_id(raw_id, INT4_MAX)
    if (
        point is None
        or point not in s.points
        or not _principal(request).sees(s.points.info(point).enterprise)
    ):
        raise NotFound(f"no point {raw_id!r}")
    now = time.time_ns()
    q = request.query
    end = to_ns(parse_time(q["end"], "end")) if "end" in q else now
    start = to_ns(parse_time(q["start"], "start")) if "start" in q else end - 3600 * 10**9
    try:
        buckets = int(q.get("buckets", DEFAULT_BUCKETS))
    except ValueError:
        raise BadRequest(f"buckets={q['buckets']!r} is not a whole number") from None
    if not 1 <= buckets <= MAX_BUCKETS:
        raise BadRequest(f"buckets={buckets} must be between 1 and {MAX_BUCKETS}")
    if start >= end:
        raise BadRequest(f"start ({_iso(start)}) must be before end ({_iso(end)})")
    hold_s = s.hold_s.get(point)
    result = await s.store.series(point, start, end, buckets, failures=hold_s is not None)
    info = s.points.info(point)
    return _json(
        {
            "point": point,
            "code": info.code,
            "unit": info.unit,
            "start": _iso(start),
            "end": _iso(end),
            "bucket_ms": result.width_ns // 1_000_000,
            "ts": (result.ts // 1_000_000).tolist(),
            "min": [_float(v) for v in result.min],
            "max": [_float(v) for v in result.max],
            "avg": [_float(v) for v in result.avg],
            "last": [_float(v) for v in result.last],
            "count": result.count.tolist(),
            # Of `count`, the doubtful readings (uncertain, or beyond the instrument range).
            "doubtful": result.doubtful.tolist(),
            # A value of this point holds until the next sample, for at most this long.
            "hold_ms": None if hold_s is None else round(hold_s * 1000),
            # For such a point: where a failure (COMM_FAIL…) ends the value held, ms, and where
            # it is read again, [ms, value] (a loss within one bucket is bounded by both).
            "failed": None if hold_s is None else (result.failed // 1_000_000).tolist(),
            "back": None
            if hold_s is None
            else [
                [t // 1_000_000, _float(v)]
                for t, v in zip(result.back_at.tolist(), result.back_value.tolist(), strict=True)
            ],
        }
    )


def _rows(s: Services, ids: np.ndarray[Any, np.dtype[np.int32]]) -> list[dict[str, Any]]:
    live = s.hub.latest.get(ids)
    return [
        {
            "id": int(pid),
            "code": s.points.info(int(pid)).code,
            "ts": _iso(int(ts)),
            "value": _float(v),
            "quality": Quality(int(q)).name,
        }
        for pid, ts, v, q in zip(live.point, live.ts, live.value, live.quality, strict=True)
    ]


async def latest(request: web.Request) -> web.Response:
    s = _services(request)
    enterprise = _enterprise_param(request, required=True)
    assert enterprise is not None
    ids = np.array(sorted(s.points.for_enterprise(enterprise).values()), np.int32)
    return _json({"enterprise": enterprise, "values": _rows(s, ids)})


class ScenarioBody(Body):
    """A scenario of the simulated plant: e.g. leak at TK101 with rate_g_s=500."""

    name: str = Field(description="normal, leak, stuck, out_of_range, comm_loss or wind")
    target: str | None = Field(None, description="the tank, point or device it acts on")
    params: dict[str, float] = Field(default_factory=dict)


async def demo_scenario(request: web.Request) -> web.Response:
    s = _services(request)
    if s.scenario is None:
        raise NotFound("not running the demo plant")
    body = request[BODY]
    assert isinstance(body, ScenarioBody)
    try:
        await s.scenario(body.name, body.target, body.params)
    except (KeyError, ValueError, RuntimeError) as exc:
        raise BadRequest(str(exc).strip("'\"")) from None
    return _json({"scenario": body.name, "target": body.target, "params": body.params})


# Event topics of /ws (each declared in web.security.TOPICS) and where their events come from.
FEEDS: dict[str, Callable[[web.Application], Fanout]] = {
    "alarms": lambda app: app[ENGINE].events,
    "warnings": lambda app: app[DESK].events,
    "notifications": lambda app: app[NOTIFICATIONS].events,  # escalations up the duty roster
    "sources": lambda app: app[SOURCES].events,  # hazard sources' operating states as set
}


class _LiveClient:
    """One WebSocket client: its subscriptions and what it was last sent."""

    def __init__(
        self, ws: web.WebSocketResponse, app: web.Application, principal: Principal
    ) -> None:
        self.ws = ws
        self.app = app
        self.s = app[SERVICES]
        self.principal = principal
        self.feeds: dict[str, asyncio.Task[None]] = {}
        self.topics: dict[str, np.ndarray[Any, np.dtype[np.int32]]] = {}
        self.sent_ts: dict[str, np.ndarray[Any, np.dtype[np.int64]]] = {}
        self.wake = asyncio.Event()

    async def handle(self, msg: Any) -> None:
        if not isinstance(msg, dict) or msg.get("op") not in ("subscribe", "unsubscribe", "ping"):
            await self.error('messages are {"op": "subscribe" | "unsubscribe" | "ping", ...}')
            return
        if msg["op"] == "ping":
            await self.ws.send_json({"type": "pong"})
            return
        topics = msg.get("topics")
        if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
            await self.error('"topics" must be a list of strings, e.g. ["points:E001"]')
            return
        enterprises = _enterprise_codes(self.s)
        unknown: list[str] = []
        for topic in topics:
            kind, _, arg = topic.partition(":")
            permission = TOPICS.get(kind)
            if topic in FEEDS and permission and self.principal.can(permission):
                if msg["op"] == "subscribe":
                    self.follow(topic)
                else:
                    self.unfollow(topic)
                continue
            # Another enterprise's topic, or one its role may not read, is as unknown as one
            # that does not exist.
            if (
                kind != "points"
                or arg not in enterprises
                or not self.principal.sees(arg)
                or permission is None
                or not self.principal.can(permission)
            ):
                unknown.append(topic)
                continue
            if msg["op"] == "subscribe":
                ids = np.array(sorted(self.s.points.for_enterprise(arg).values()), np.int32)
                self.topics[topic] = ids
                self.sent_ts[topic] = np.full(len(ids), -1, np.int64)
            else:
                self.topics.pop(topic, None)
                self.sent_ts.pop(topic, None)
        if unknown:  # one answer, however many (a message may name thousands)
            shown = ", ".join(repr(t) for t in unknown[:10])
            more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
            await self.error(
                f"unknown topic(s) {shown}{more}: use points:<enterprise code>, "
                f"{', '.join(sorted(FEEDS))}"
            )
        subscribed = sorted([*self.topics, *self.feeds])
        await self.ws.send_json({"type": "subscribed", "topics": subscribed})
        self.wake.set()

    def follow(self, topic: str) -> None:
        if topic not in self.feeds:
            self.feeds[topic] = asyncio.create_task(self._forward(topic))

    def unfollow(self, topic: str | None = None) -> None:
        for name in [topic] if topic else list(self.feeds):
            if (task := self.feeds.pop(name, None)) is not None:
                task.cancel()

    def _allowed(self, view: dict[str, Any]) -> bool:
        if "enterprise" in view:
            return self.principal.sees(view["enterprise"])
        point = view["point"]
        return point in self.s.points and self.principal.sees(self.s.points.info(point).enterprise)

    async def _forward(self, topic: str) -> None:
        """Every alarm or warning event this principal may see, in order (never coalesced)."""
        source = FEEDS[topic](self.app)
        queue = source.listen()
        try:
            while (views := await queue.get()) is not None:
                mine = [v for v in views if self._allowed(v)]
                if mine:
                    await self.ws.send_json({"type": topic, "events": mine})
            # Fell behind: the console reloads from GET /api/alarms or /api/warnings.
            await self.ws.send_json({"type": f"{topic}_resync"})
        finally:
            source.unlisten(queue)

    async def error(self, message: str) -> None:
        await self.ws.send_json({"type": "error", "message": message})

    async def pump(self) -> None:
        """Send what changed, at most every LIVE_MIN_INTERVAL_S: a slow client slows only itself."""
        latest = self.s.hub.latest
        version = -1
        while not self.ws.closed:
            self.wake.clear()
            version = latest.version
            for topic, ids in list(self.topics.items()):
                live = latest.get(ids)
                changed = live.ts != self.sent_ts[topic]
                if not changed.any():
                    continue
                self.sent_ts[topic] = live.ts
                values = [
                    [int(p), int(t) // 1_000_000, _float(v), int(q)]
                    for p, t, v, q in zip(
                        live.point[changed],
                        live.ts[changed],
                        live.value[changed],
                        live.quality[changed],
                        strict=True,
                    )
                ]
                await self.ws.send_json(
                    {
                        "type": "points",
                        "topic": topic,
                        "values": values,
                        "sent_ms": time.time_ns() // 1_000_000,
                    }
                )
            await asyncio.sleep(LIVE_MIN_INTERVAL_S)
            if latest.version == version:
                waiter = asyncio.ensure_future(latest.wait_changed(version, timeout=15))
                woken = asyncio.ensure_future(self.wake.wait())
                try:
                    await asyncio.wait({waiter, woken}, return_when=asyncio.FIRST_COMPLETED)
                finally:  # also when the feed closes meanwhile (the pump is cancelled)
                    waiter.cancel()
                    woken.cancel()


async def live(request: web.Request) -> web.WebSocketResponse:
    refuse_foreign_origin(request)
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    client = _LiveClient(ws, request.app, _principal(request))
    pump = asyncio.create_task(client.pump())
    try:
        async with closed_with_session(request, ws, SESSION_CHECK_S):
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    try:
                        data = json.loads(msg.data)
                    except json.JSONDecodeError:
                        await client.error("not JSON")
                        continue
                    await client.handle(data)
                elif msg.type == WSMsgType.ERROR:
                    break
    finally:
        pump.cancel()
        client.unfollow()
    return ws


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


async def openapi(request: web.Request) -> web.Response:
    return _json(openapi_document(request.app[ROUTES]))


# Every HTTP route, with the permission it needs, declared here and nowhere else.
SPINE_ROUTES: list[Route] = [
    Route("GET", "/", index, None, "The console page (it signs in before loading any data)"),
    Route("GET", "/api/health", health, Permission.SYSTEM_READ, "Pipeline health"),
    Route("GET", "/api/enterprises", enterprises, Permission.MONITOR_READ, "Enterprises"),
    Route(
        "GET",
        "/api/points",
        points,
        Permission.MONITOR_READ,
        "Monitoring points, each with its instrument range and, beyond it, the readings that are "
        "measurements (`readings`; farther out a reading is a failure signal)",
        query={"enterprise": "enterprise code (default: all you may see)"},
    ),
    Route(
        "GET",
        "/api/points/{id}/series",
        series,
        Permission.MONITOR_READ,
        "A point's series downsampled to at most `buckets` buckets; `hold_ms` for a point that"
        " reports on change only (OPC-UA, a device's link): its value holds until the next"
        " sample, at most that, or until a failure in `failed` (ms)",
        query={
            "start": "RFC 3339 or epoch ms (default: end - 1 h)",
            "end": "RFC 3339 or epoch ms (default: now)",
            "buckets": f"1..{MAX_BUCKETS} (default {DEFAULT_BUCKETS})",
        },
    ),
    Route(
        "GET",
        "/api/latest",
        latest,
        Permission.MONITOR_READ,
        "Latest values of an enterprise",
        query={"enterprise": "enterprise code"},
    ),
    Route(
        "POST",
        "/api/demo/scenario",
        demo_scenario,
        Permission.SYSTEM_CONTROL,
        "Switch the demo plant's scenario",
        body=ScenarioBody,
    ),
    Route(
        "GET", "/ws", live, Permission.SELF, "Live values over WebSocket (topics: points:<code>)"
    ),
    Route("GET", "/api/openapi.json", openapi, Permission.SELF, "This API as OpenAPI 3.1"),
]
# Static files of the console are public: they hold no data.
STATIC_PREFIX = "/static/"

ROUTES = web.AppKey("routes", list[Route])
_BY_MATCH = web.AppKey("routes_by_match", dict[object, Route])


OPENAPI_REF = "#/components/schemas/{model}"  # where a body schema's types are


def openapi_document(routes: list[Route]) -> dict[str, Any]:
    """OpenAPI 3.1 from the same route table and body schemas the server enforces. The types a
    body schema refers to (enums, nested models) are components of the document, where its
    references point."""
    paths: dict[str, dict[str, Any]] = {}
    components: dict[str, Any] = {}
    for r in routes:
        op: dict[str, Any] = {
            "summary": r.summary,
            "x-permission": r.permission.value if r.permission else None,
            "responses": {"200": {"description": "OK"}},
        }
        if r.permission is not None:
            op["security"] = [{"session": []}, {"token": []}]
            op["responses"] |= {
                "401": {"description": "not signed in"},
                "403": {"description": "permission missing"},
            }
        params = [
            {
                "name": n,
                "in": "query",
                "required": False,
                "description": d,
                "schema": {"type": "string"},
            }
            for n, d in r.query.items()
        ]
        params += [
            {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
            for n in _path_params(r.path)
        ]
        if params:
            op["parameters"] = params
        if r.body is not None:
            schema = r.body.model_json_schema(ref_template=OPENAPI_REF)
            for name, definition in schema.pop("$defs", {}).items():
                if components.setdefault(name, definition) != definition:
                    raise ValueError(f"two request body types are both called {name}")
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": schema}},
            }
            op["responses"]["400"] = {"description": "the body names the bad field"}
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "anjian 安监", "version": "0.1.0"},
        "components": {
            "schemas": components,
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "anjian_session"},
                "token": {"type": "http", "scheme": "bearer"},
            },
        },
        "paths": paths,
    }


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


def _source(request: web.Request) -> str | None:
    return request.remote


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate, check the route's permission and CSRF, validate the body, audit changes."""
    route = request.app[_BY_MATCH].get(request.match_info.route)
    if route is None:
        if request.path.startswith(STATIC_PREFIX) or request.match_info.http_exception:
            return await handler(request)  # static files, and aiohttp's own 404/405
        raise json_error(web.HTTPNotFound, f"no route {request.path!r}")
    request[ROUTE] = route
    changes = request.method not in SAFE_METHODS
    principal = ANONYMOUS
    status = 500
    handled = False
    try:
        principal = await authenticate(request)
        request[PRINCIPAL] = principal
        if route.permission is not None and not principal.can(route.permission):
            if principal.account_id is None and principal.token_id is None:
                raise json_error(web.HTTPUnauthorized, "sign in first", code="unauthenticated")
            raise json_error(
                web.HTTPForbidden,
                f"your role may not do this (needs {route.permission})",
                code="forbidden",
            )
        if changes and principal.csrf_token is not None:
            # As bytes: compare_digest refuses str with non-ASCII characters (a 500 before).
            sent = request.headers.get("X-CSRF-Token", "").encode("utf-8", "replace")
            if not hmac.compare_digest(sent, principal.csrf_token.encode()):
                raise json_error(
                    web.HTTPForbidden, "missing or wrong X-CSRF-Token header", code="csrf"
                )
        refuse_nul(request)
        refuse_unknown_query(request, route)
        if route.body is not None:
            request[BODY] = await _validated_body(request, route.body)
        handled = True
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        # A route that audits itself does so in its handler: a refusal before it is ours.
        if changes and not (route.self_audited and handled):
            await request.app[AUDIT].record(
                principal=principal if principal is not ANONYMOUS else None,
                source=_source(request),
                action=f"{request.method} {route.path}",
                target=request.path,
                result="ok" if status < 400 else f"refused {status}",
                detail=_what(request),
            )


_SECRET_KEY = re.compile(r"(?i)password|secret|token")
_AUDIT_TEXT_MAX = 500  # characters of one text kept in the audit record


def _what(request: web.Request) -> dict[str, Any] | None:
    """What a state change asked for, for its audit record: its validated body (alarm ids and
    comment, the rule set, the reason...), long texts shortened and secrets left out."""
    body = request.get(BODY)
    if body is None:
        return None

    def kept(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: kept(v) for k, v in value.items() if not _SECRET_KEY.search(k)}
        if isinstance(value, list):
            return [kept(v) for v in value]
        if isinstance(value, str) and len(value) > _AUDIT_TEXT_MAX:
            return value[:_AUDIT_TEXT_MAX] + "…"
        return value

    out: dict[str, Any] = kept(body.model_dump(mode="json"))
    return out


async def _validated_body(request: web.Request, model: type[BaseModel]) -> BaseModel:
    try:
        text = await request.text()
        raw = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise BadRequest("the body is not JSON") from None
    if (unfit := unfit_value(raw)) is not None:
        field, problem = unfit
        raise json_error(
            web.HTTPBadRequest,
            f"{field}: {problem}",
            field=field,
            errors=[{"field": field, "message": problem}],
        )
    try:
        # Strictly (no "90" for a number, no true for 1) from the JSON text, which still
        # takes a string as a time, a date or an enum's value.
        return model.model_validate_json(text, strict=True)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(x) for x in first["loc"]) or "<body>"
        raise json_error(
            web.HTTPBadRequest,
            f"{field}: {first['msg']}",
            field=field,
            errors=[
                {"field": ".".join(str(x) for x in e["loc"]), "message": e["msg"]}
                for e in exc.errors(include_url=False)
            ],
        ) from None


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Hardening headers on every answer; errors of the API always in JSON."""
    api = request.path.startswith("/api/")
    try:
        response: web.StreamResponse = await handler(request)
    except web.HTTPException as exc:
        if api and exc.status >= 400 and exc.content_type != "application/json":
            # aiohttp's own answers (unknown method, body too large…) say it in plain text.
            exc.text = json.dumps({"error": exc.text or exc.reason}, ensure_ascii=False)
            exc.content_type = "application/json"
        _harden(exc.headers)
        raise
    except Exception:
        if not api:
            raise
        log.exception("%s %s failed", request.method, request.path)
        response = web.json_response(
            {"error": "internal error: the server could not answer this request (logged)"},
            status=500,
        )
    _harden(response.headers)
    return response


def _harden(headers: Any) -> None:
    headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        # blob: for the live camera views: Media Source Extensions play from a blob: URL.
        "media-src 'self' blob:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    )
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Cache-Control", "no-store")


async def _ingest_rate(app: web.Application) -> AsyncIterator[None]:
    """Samples the hub's counter each second so health can report a rate over the last 10 s."""
    rate = app[_RATE]

    async def sample() -> None:
        while True:
            rate.append((time.monotonic(), app[SERVICES].hub.samples_published))
            await asyncio.sleep(1.0)

    task = asyncio.create_task(sample())
    yield
    task.cancel()


def make_app(
    services_ctx: Callable[[web.Application], AsyncIterator[None]],
    security: SecuritySettings | None = None,
) -> web.Application:
    """The web application; `services_ctx` is a cleanup context that sets app[SERVICES]
    (and the AUDIT and ACCOUNTS services the security routes use)."""
    security = security or SecuritySettings()
    app = web.Application(
        middlewares=[security_headers, guard], client_max_size=security.max_request_bytes
    )
    app[_RATE] = deque(maxlen=11)
    app.cleanup_ctx.append(services_ctx)
    app.cleanup_ctx.append(_ingest_rate)
    routes = [
        *SPINE_ROUTES, *AUTH_ROUTES, *ADMIN_ROUTES, *AUDIT_ROUTES, *ALARM_ROUTES, *WARNING_ROUTES,
        *VIDEO_ROUTES, *VIDEO_LIVE_ROUTES, *OVERVIEW_ROUTES, *REPORT_ROUTES,
    ]  # fmt: skip
    app[ROUTES] = routes
    by_match: dict[object, Route] = {}
    for r in routes:
        by_match[app.router.add_route(r.method, r.path, r.handler)] = r
    app[_BY_MATCH] = by_match
    app.router.add_static(STATIC_PREFIX, STATIC)
    return app
