"""Video routes: cameras (credentials never shown), their snapshots, and the clip and picture
saved for an alarm. Enterprise users see only their own enterprise's cameras (others are 404).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from aiohttp import web

from video.clips import alarm_media
from video.manager import CameraSpec, VideoManager
from video.snapshot import NoPicture
from web.inputs import INT8_MAX, enterprise_param, parse_id
from web.security import PRINCIPAL, Permission, Principal, Route, json_error


@dataclass(frozen=True)
class VideoServices:
    manager: VideoManager
    pool: asyncpg.Pool  # alarm_media
    media_root: Path  # alarm_media paths are relative to it


VIDEO = web.AppKey("video", VideoServices)


def _json(data: Any) -> web.Response:
    return web.json_response(data, dumps=lambda d: json.dumps(d, ensure_ascii=False))


def _principal(request: web.Request) -> Principal:
    principal: Principal = request[PRINCIPAL]
    return principal


def _manager(request: web.Request) -> VideoManager | None:
    """None when video is not running (no cameras configured)."""
    services = request.app.get(VIDEO)
    return services.manager if services is not None else None


def _camera(request: web.Request) -> tuple[VideoManager, CameraSpec]:
    raw = request.match_info["id"]
    manager = _manager(request)
    spec = manager.spec(raw) if manager is not None else None
    if manager is None or spec is None or not _principal(request).sees(spec.enterprise):
        raise json_error(web.HTTPNotFound, f"no camera {raw!r}")
    return manager, spec


async def list_cameras(request: web.Request) -> web.Response:
    manager = _manager(request)
    who, only = _principal(request), enterprise_param(request)
    if manager is None:
        return _json({"cameras": []})
    cameras = [
        {**c.view(), "health": manager.health(c.id)}
        for c in manager.cameras
        if who.sees(c.enterprise) and only in (None, c.enterprise)
    ]
    return _json({"cameras": cameras})


async def get_camera(request: web.Request) -> web.Response:
    manager, spec = _camera(request)
    return _json({**spec.view(), "health": manager.health(spec.id)})


async def camera_snapshot(request: web.Request) -> web.Response:
    manager, spec = _camera(request)
    try:
        snap = await manager.snapshot(spec.id)
    except NoPicture as exc:
        raise json_error(
            web.HTTPServiceUnavailable, f"camera {spec.camera.code}: {exc}", camera=spec.id
        ) from None
    return web.Response(
        body=snap.jpeg,
        content_type="image/jpeg",
        headers={"Cache-Control": "private, max-age=1", "X-Picture-Time-Ns": str(snap.taken_ns)},
    )


async def _alarm_file(request: web.Request, kind: str) -> web.FileResponse:
    raw = request.match_info["id"]
    services = request.app.get(VIDEO)
    alarm_id = parse_id(raw, INT8_MAX)
    found = None
    if alarm_id is not None and services is not None:
        found = await alarm_media(services.pool, alarm_id, kind)
    spec = services.manager.spec(str(found[2])) if found and services else None
    if found is None or spec is None or not _principal(request).sees(spec.enterprise):
        raise json_error(web.HTTPNotFound, f"no {kind} saved for alarm {raw!r}")
    assert services is not None
    path = services.media_root / found[0]
    if not path.is_file():
        raise json_error(web.HTTPGone, f"the {kind} of alarm {raw} is no longer stored")
    return web.FileResponse(path, headers={"Content-Type": found[1]})


async def alarm_clip(request: web.Request) -> web.FileResponse:
    return await _alarm_file(request, "clip")


async def alarm_snapshot(request: web.Request) -> web.FileResponse:
    return await _alarm_file(request, "snapshot")


VIDEO_ROUTES: list[Route] = [
    Route("GET", "/api/cameras", list_cameras, Permission.MONITOR_READ,
          "Cameras with their health (URLs without credentials)",
          query={"enterprise": "only this enterprise's cameras"}),
    Route("GET", "/api/cameras/{id}", get_camera, Permission.MONITOR_READ,
          "One camera and its health"),
    Route("GET", "/api/cameras/{id}/snapshot.jpg", camera_snapshot, Permission.MONITOR_READ,
          "The camera's latest keyframe as JPEG (cached at most 1 s)",
          query={"t": "ignored: a browser cache-buster (the console sends the time)"}),
    Route("GET", "/api/alarms/{id}/clip.mp4", alarm_clip, Permission.MONITOR_READ,
          "The clip saved when the alarm became active (MP4, not re-encoded)"),
    Route("GET", "/api/alarms/{id}/snapshot.jpg", alarm_snapshot, Permission.MONITOR_READ,
          "The camera's picture when the alarm became active"),
]  # fmt: skip
