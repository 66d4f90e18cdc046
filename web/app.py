"""The aiohttp application: REST API, the live WebSocket and the console's static files.

The application object only serves; the composition root (`anjian`) opens the store, the hub and
the collectors in cleanup contexts and hands them over through the typed keys below.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

from streams import Hub, Quality
from streams.registry import PointIndex, list_enterprises, list_points
from streams.store import Store

log = logging.getLogger("anjian.web")
STATIC = Path(__file__).parent / "static"

# How often a WebSocket client may be sent point values at most: coalescing window.
LIVE_MIN_INTERVAL_S = 0.2
MAX_BUCKETS = 10_000
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
    # Demo only: switch a scenario of the simulated plant (name, target, parameters).
    scenario: Callable[[str, str | None, dict[str, float]], Awaitable[None]] | None = None
    started_ns: int = field(default_factory=time.time_ns)


SERVICES = web.AppKey("services", Services)
_RATE = web.AppKey("ingest_rate", deque[tuple[float, int]])


class BadRequest(web.HTTPBadRequest):
    """A 400 whose body says, in JSON, what was wrong."""

    def __init__(self, message: str) -> None:
        super().__init__(
            text=json.dumps({"error": message}, ensure_ascii=False),
            content_type="application/json",
        )


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, ensure_ascii=False))


def _iso(ts_ns: int) -> str | None:
    if ts_ns <= 0:
        return None
    return datetime.fromtimestamp(ts_ns / 1e9, UTC).isoformat(timespec="milliseconds")


def _float(v: float) -> float | None:
    return None if math.isnan(v) else float(v)


def parse_time(raw: str, name: str) -> int:
    """An instant given as RFC 3339 / ISO 8601 or as epoch milliseconds, as int ns UTC."""
    text = raw.strip()
    if text.lstrip("-").isdigit():
        return int(text) * 1_000_000
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(
            f"{name}={raw!r} is not a time: give RFC 3339 (2026-11-30T08:00:00Z) or epoch ms"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1e9)


def _services(request: web.Request) -> Services:
    return request.app[SERVICES]


async def health(request: web.Request) -> web.Response:
    s = _services(request)
    collectors = s.collectors()
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
            "points": len(s.points),
            "uptime_s": round((now - s.started_ns) / 1e9, 1),
        }
    )


async def enterprises(request: web.Request) -> web.Response:
    return _json(await list_enterprises(_services(request).store.pool))


def _enterprise_param(request: web.Request, required: bool) -> str | None:
    enterprise = request.query.get("enterprise")
    if enterprise is None and required:
        raise BadRequest("enterprise is required, e.g. ?enterprise=E001")
    if enterprise is not None and enterprise not in _enterprise_codes(_services(request)):
        raise web.HTTPNotFound(
            text=json.dumps({"error": f"no enterprise {enterprise!r}"}, ensure_ascii=False),
            content_type="application/json",
        )
    return enterprise


def _enterprise_codes(s: Services) -> set[str]:
    return {p.enterprise for p in s.points}


async def points(request: web.Request) -> web.Response:
    enterprise = _enterprise_param(request, required=False)
    return _json(await list_points(_services(request).store.pool, enterprise))


async def series(request: web.Request) -> web.Response:
    s = _services(request)
    raw_id = request.match_info["id"]
    if not raw_id.isdigit() or int(raw_id) not in s.points:
        raise web.HTTPNotFound(
            text=json.dumps({"error": f"no point {raw_id!r}"}), content_type="application/json"
        )
    point = int(raw_id)
    now = time.time_ns()
    q = request.query
    end = parse_time(q["end"], "end") if "end" in q else now
    start = parse_time(q["start"], "start") if "start" in q else end - 3600 * 10**9
    try:
        buckets = int(q.get("buckets", DEFAULT_BUCKETS))
    except ValueError:
        raise BadRequest(f"buckets={q['buckets']!r} is not a whole number") from None
    if not 1 <= buckets <= MAX_BUCKETS:
        raise BadRequest(f"buckets={buckets} must be between 1 and {MAX_BUCKETS}")
    if start >= end:
        raise BadRequest(f"start ({_iso(start)}) must be before end ({_iso(end)})")
    result = await s.store.series(point, start, end, buckets)
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


async def demo_scenario(request: web.Request) -> web.Response:
    s = _services(request)
    if s.scenario is None:
        raise web.HTTPNotFound(
            text=json.dumps({"error": "not running the demo plant"}),
            content_type="application/json",
        )
    usage = (
        'send {"name": "<scenario>", "target": "<tank, point or device>", '
        '"params": {"rate_g_s": 500}}'
    )
    try:
        body = await request.json()
        name, target = str(body["name"]), body.get("target")
        params = {str(k): float(v) for k, v in (body.get("params") or {}).items()}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        raise BadRequest(usage) from None
    try:
        await s.scenario(name, None if target is None else str(target), params)
    except (KeyError, ValueError, RuntimeError) as exc:
        raise BadRequest(str(exc).strip("'\"")) from None
    return _json({"scenario": name, "target": target, "params": params})


class _LiveClient:
    """One WebSocket client: its subscriptions and what it was last sent."""

    def __init__(self, ws: web.WebSocketResponse, s: Services) -> None:
        self.ws = ws
        self.s = s
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
        for topic in topics:
            kind, _, arg = topic.partition(":")
            if kind != "points" or arg not in enterprises:
                await self.error(f"unknown topic {topic!r}: use points:<enterprise code>")
                continue
            if msg["op"] == "subscribe":
                ids = np.array(sorted(self.s.points.for_enterprise(arg).values()), np.int32)
                self.topics[topic] = ids
                self.sent_ts[topic] = np.full(len(ids), -1, np.int64)
            else:
                self.topics.pop(topic, None)
                self.sent_ts.pop(topic, None)
        await self.ws.send_json({"type": "subscribed", "topics": sorted(self.topics)})
        self.wake.set()

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
                await asyncio.wait({waiter, woken}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                woken.cancel()


async def live(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    client = _LiveClient(ws, _services(request))
    pump = asyncio.create_task(client.pump())
    try:
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
    return ws


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


@web.middleware
async def security_headers(
    request: web.Request, handler: Callable[[web.Request], Any]
) -> web.StreamResponse:
    response: web.StreamResponse = await handler(request)
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'",
    )
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


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


def make_app(services_ctx: Callable[[web.Application], AsyncIterator[None]]) -> web.Application:
    """The web application; `services_ctx` is a cleanup context that sets app[SERVICES]."""
    app = web.Application(middlewares=[security_headers])
    app[_RATE] = deque(maxlen=11)
    app.cleanup_ctx.append(services_ctx)
    app.cleanup_ctx.append(_ingest_rate)
    app.router.add_get("/api/health", health)
    app.router.add_get("/api/enterprises", enterprises)
    app.router.add_get("/api/points", points)
    app.router.add_get("/api/points/{id}/series", series)
    app.router.add_get("/api/latest", latest)
    app.router.add_post("/api/demo/scenario", demo_scenario)
    app.router.add_get("/ws", live)
    app.router.add_get("/", index)
    app.router.add_static("/static/", STATIC)
    return app
