"""The live camera route: GET /ws/cameras/{id}/live sends the camera as fragmented MP4 over a
WebSocket for the console's Media Source Extensions player (js/camera_view.js).

Messages, server to browser: text `{"type": "codec", "mime": ...}` before each init segment;
binary: the init segment, then one moof+mdat fragment per frame; text `{"type": "status",
"state": "waiting" | "offline" | "unsupported"}` when there is no picture to send. The browser
sends nothing. Enterprise users reach only their own enterprise's cameras (others are 404).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref

from aiohttp import web

from video.live import LiveService, Viewer
from video.manager import VideoManager
from web.auth import closed_with_session, refuse_foreign_origin
from web.security import PRINCIPAL, Permission, Principal, Route, json_error
from web.video import VIDEO

# How often a live feed checks that its session still exists.
SESSION_CHECK_S = 15.0

# One LiveService per VideoManager, made by the first viewer: its feeds end with their viewers.
_SERVICES: weakref.WeakKeyDictionary[VideoManager, LiveService] = weakref.WeakKeyDictionary()


def live_service(manager: VideoManager) -> LiveService:
    live = _SERVICES.get(manager)
    if live is None:
        live = _SERVICES[manager] = LiveService(manager.ring, manager.want)
    return live


async def camera_live(request: web.Request) -> web.WebSocketResponse:
    raw = request.match_info["id"]
    services = request.app.get(VIDEO)
    spec = services.manager.spec(raw) if services is not None else None
    principal: Principal = request[PRINCIPAL]
    if services is None or spec is None or not principal.sees(spec.enterprise):
        raise json_error(web.HTTPNotFound, f"no camera {raw!r}")
    refuse_foreign_origin(request)
    # Compressed video does not deflate: no per-message compression.
    ws = web.WebSocketResponse(heartbeat=30, compress=False)
    await ws.prepare(request)
    async with (
        live_service(services.manager).watch(spec.id) as viewer,
        closed_with_session(request, ws, SESSION_CHECK_S),
    ):
        relaying = asyncio.create_task(relay(viewer, ws))
        reading = asyncio.create_task(_read_until_closed(ws))
        try:
            await asyncio.wait({relaying, reading}, return_when=asyncio.FIRST_COMPLETED)
            if not reading.done():
                # The feed ended: close from here (not from the relay task, which a cancel
                # could stop before the closing handshake); the read loop sees it and ends.
                await ws.close()
        finally:
            relaying.cancel()
            reading.cancel()  # done already, unless the handler itself was cancelled
            await asyncio.gather(relaying, reading, return_exceptions=True)
    return ws


async def _read_until_closed(ws: web.WebSocketResponse) -> None:
    async for _ in ws:
        pass  # the browser only listens; this loop sees the close (and answers it)


async def relay(viewer: Viewer, ws: web.WebSocketResponse) -> None:
    """Send the viewer's messages until its feed ends or the socket closes."""
    with contextlib.suppress(ConnectionError):
        while (message := await viewer.next()) is not None and not ws.closed:
            if isinstance(message, bytes):
                await ws.send_bytes(message)
            else:
                await ws.send_str(message)


VIDEO_LIVE_ROUTES: list[Route] = [
    Route(
        "GET",
        "/ws/cameras/{id}/live",
        camera_live,
        Permission.MONITOR_READ,
        "A camera live: fragmented MP4 over WebSocket (binary), not transcoded",
    ),
]
