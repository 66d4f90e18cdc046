"""VideoManager: the cameras of the configuration, their sources, rings, snapshots and health.

Camera ids are the registry's (as strings, as they appear in URLs). A camera with linked points
is pulled at full rate all the time (an alarm may need the seconds before it); any other camera
only while somebody holds `want(camera, reason)` (a live viewer, a snapshot), and otherwise in
the low-rate mode: a short pull every `idle_every_s` keeps its health points current.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import numpy as np

from streams import Hub, SampleBatch, now_ns
from streams.config import Camera, Config, redact_url
from streams.registry import PointIndex
from video.health import HEALTH_SUFFIXES, Health, HealthMeter
from video.ring import Packet, PacketRing
from video.settings import VideoSettings
from video.snapshot import Snapshot, Snapshotter
from video.source import CameraSource, SourceSettings

log = logging.getLogger("anjian.video")
Release = Callable[[], None]


@dataclass(frozen=True, slots=True)
class CameraSpec:
    """A configured camera with its registry ids."""

    id: str
    enterprise: str
    camera: Camera
    linked_points: tuple[int, ...]  # point ids
    health_points: tuple[int, ...]  # point ids in CAMERA_HEALTH order

    def view(self) -> dict[str, Any]:
        """What the API shows: never the URL's credentials."""
        c = self.camera
        return {
            "id": self.id,
            "enterprise": self.enterprise,
            "code": c.code,
            "name": c.name,
            "hazard_source": c.hazard_source,
            "position": c.position,
            "lon": c.lon,
            "lat": c.lat,
            "url": redact_url(c.url),
            "transport": c.transport,
            "points": list(self.linked_points),
            "health_points": dict(zip(HEALTH_SUFFIXES, self.health_points, strict=True)),
        }


async def load_cameras(pool: asyncpg.Pool, cfg: Config, points: PointIndex) -> list[CameraSpec]:
    """The configured cameras with the ids sync_config gave them."""
    rows = await pool.fetch(
        "SELECT c.id, e.code AS enterprise, c.code FROM cameras c"
        " JOIN enterprises e ON e.id = c.enterprise_id"
    )
    ids = {(r["enterprise"], r["code"]): r["id"] for r in rows}
    return [
        CameraSpec(
            id=str(ids[(e.code, c.code)]),
            enterprise=e.code,
            camera=c,
            linked_points=tuple(points.id(e.code, p) for p in c.points),
            health_points=tuple(points.id(e.code, c.health_code(s)) for s in HEALTH_SUFFIXES),
        )
        for e in cfg.enterprises
        for c in e.cameras
    ]


@dataclass
class _Running:
    spec: CameraSpec
    ring: PacketRing
    source: CameraSource
    meter: HealthMeter
    snapshots: Snapshotter
    health: Health | None = None
    wants: Counter[str] = field(default_factory=Counter)

    def apply_demand(self) -> None:
        self.source.set_continuous(bool(self.spec.linked_points) or sum(self.wants.values()) > 0)


class VideoManager:
    def __init__(self, cameras: Sequence[CameraSpec], settings: VideoSettings, hub: Hub) -> None:
        self.settings = settings
        self.hub = hub
        self._cameras: dict[str, _Running] = {}
        for spec in cameras:
            src = _source_settings(spec.camera, settings)
            ring = PacketRing(spec.camera.ring_seconds or settings.ring_seconds)
            running = _Running(
                spec,
                ring,
                CameraSource(f"{spec.enterprise}/{spec.camera.code}", src, ring),
                HealthMeter(src),
                Snapshotter(ring),
            )
            running.apply_demand()
            self._cameras[spec.id] = running

    # -- lifecycle ----------------------------------------------------------------------

    async def run(self) -> None:
        """Pull every camera and publish health until cancelled; then stop the threads."""
        for cam in self._cameras.values():
            cam.source.start()
        try:
            while True:
                await self.publish_health()
                await asyncio.sleep(self.settings.health_every_s)
        finally:
            for cam in self._cameras.values():
                cam.source.stop()
            # Wait for the threads to end: one still inside FFmpeg while the interpreter
            # finalizes can crash the process (seen once as SIGSEGV after SIGTERM). A session
            # ends at its next packet or I/O timeout, so this is bounded.
            limit = self.settings.open_timeout_s + self.settings.read_timeout_s + 1.0
            await asyncio.to_thread(self._join_threads, limit)

    def _join_threads(self, limit_s: float) -> None:
        deadline = time.monotonic() + limit_s
        for cam in self._cameras.values():
            cam.source.join(max(0.0, deadline - time.monotonic()))
        left = [cam.spec.id for cam in self._cameras.values() if cam.source.alive]
        if left:
            log.warning("camera threads still running at stop: %s", ", ".join(left))

    async def publish_health(self) -> None:
        if not self._cameras:
            return
        now = now_ns()
        points: list[int] = []
        values: list[float] = []
        qualities: list[int] = []
        for cam in self._cameras.values():
            health = cam.meter.read(cam.source.stats, cam.source.continuous, now)
            cam.health = health
            points += cam.spec.health_points
            values += health.values
            qualities += health.qualities
        await self.hub.publish(
            SampleBatch.of(now, points, np.array(values), np.array(qualities, np.uint8))
        )

    # -- what the web and the clips use -------------------------------------------------

    @property
    def cameras(self) -> list[CameraSpec]:
        return [c.spec for c in self._cameras.values()]

    def spec(self, camera_id: str) -> CameraSpec | None:
        cam = self._cameras.get(camera_id)
        return cam.spec if cam else None

    def ring(self, camera_id: str) -> PacketRing | None:
        cam = self._cameras.get(camera_id)
        return cam.ring if cam else None

    def linked(self, point: int) -> list[CameraSpec]:
        """The cameras watching a point."""
        return [c.spec for c in self._cameras.values() if point in c.spec.linked_points]

    def health(self, camera_id: str) -> dict[str, Any]:
        cam = self._cameras[camera_id]
        st = cam.source.stats
        out: dict[str, Any] = cam.health.as_dict() if cam.health else {"online": False}
        out |= {
            "mode": "full" if cam.source.continuous else "low",
            "wanted_by": sorted(cam.wants),
            "codec": st.codec or None,
            "width": st.width or None,
            "height": st.height or None,
            "last_error": st.last_error or None,
        }
        return out

    def want(self, camera_id: str, reason: str) -> Release:
        """Pull this camera at full rate until the returned function is called (once)."""
        cam = self._cameras[camera_id]
        cam.wants[reason] += 1
        cam.apply_demand()
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            cam.wants[reason] -= 1
            if cam.wants[reason] <= 0:
                del cam.wants[reason]
            cam.apply_demand()

        return release

    async def snapshot(self, camera_id: str, wait_s: float = 5.0) -> Snapshot:
        """The latest keyframe as JPEG (cached ≤ 1 s). A camera in the low-rate mode is pulled
        at full rate for a moment first, so the picture is current."""
        cam = self._cameras[camera_id]
        if cam.source.continuous:
            return await cam.snapshots.get()
        release = self.want(camera_id, "snapshot")
        loop = asyncio.get_running_loop()
        fresh = asyncio.Event()

        def on_packet(packet: Packet) -> None:  # in the camera's thread
            if packet.keyframe:
                loop.call_soon_threadsafe(fresh.set)

        cam.ring.add_listener(on_packet)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await fresh.wait()
            return await cam.snapshots.get()
        finally:
            cam.ring.remove_listener(on_packet)
            loop.call_later(self.settings.idle_pull_s, release)


def _source_settings(camera: Camera, s: VideoSettings) -> SourceSettings:
    return SourceSettings(
        url=camera.url,
        transport=camera.transport,
        open_timeout_s=s.open_timeout_s,
        read_timeout_s=s.read_timeout_s,
        backoff_max_s=s.backoff_max_s,
        probe_every_s=s.probe_every_s,
        idle_every_s=s.idle_every_s,
        idle_pull_s=s.idle_pull_s,
    )
