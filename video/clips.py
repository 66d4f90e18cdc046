"""Alarm-linked evidence: when an alarm on a linked point becomes active, the clip around it
(pre- to post-alarm seconds, remuxed to MP4 without re-encoding) and a snapshot are saved
under the data directory and recorded in `alarm_media`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import av

from streams.fanout import Fanout
from video.manager import CameraSpec, VideoManager
from video.ring import Packet, RingSlice, StreamInfo
from video.snapshot import keyframe_jpeg

log = logging.getLogger("anjian.video.clips")
NS = 1_000_000_000
MEDIA_TYPES = {"clip": "video/mp4", "snapshot": "image/jpeg"}
LATE_FRAMES_S = 10.0  # how long after the clip's end its last frames may still arrive


def write_mp4(stream: StreamInfo, packets: Sequence[Packet], target: Path | Any) -> float:
    """Remux packets (the first a keyframe) into an MP4 file without re-encoding; returns the
    media duration in seconds. Timestamps are shifted to start at 0."""
    if not packets or not packets[0].keyframe:
        raise ValueError("a clip must start with a keyframe")
    out: Any = av.open(target, "w", format="mp4", options={"movflags": "+faststart"})
    try:
        video = out.add_stream(stream.codec, rate=stream.rate)
        video.width, video.height = stream.width, stream.height
        video.time_base = stream.time_base
        video.pix_fmt = "yuv420p"
        if stream.extradata:
            video.codec_context.extradata = stream.extradata
        origin = packets[0].dts
        for p in packets:
            packet = av.Packet(p.data)
            packet.pts, packet.dts = p.pts - origin, p.dts - origin
            packet.time_base = stream.time_base
            packet.is_keyframe = p.keyframe
            packet.stream = video
            out.mux(packet)
    finally:
        out.close()
    return RingSlice(stream, tuple(packets)).seconds


@dataclass(frozen=True, slots=True)
class SavedMedia:
    alarm: int
    camera: str
    kind: str  # "clip" or "snapshot"
    path: Path  # absolute
    starts_ns: int
    ends_ns: int
    seconds: float


class ClipRecorder:
    """Listens to the alarm engine's events; for each `raised` on a linked point, saves the
    evidence of every camera watching it."""

    def __init__(
        self,
        manager: VideoManager,
        events: Fanout,
        pool: asyncpg.Pool,
        data_dir: Path,
    ) -> None:
        self.manager = manager
        self.events = events
        self.pool = pool
        self.media_dir = data_dir / "media"
        self.saved: list[SavedMedia] = []  # this run's, newest last (for health and tests)
        self._tasks: set[asyncio.Task[list[SavedMedia]]] = set()

    async def run(self) -> None:
        queue = self.events.listen()
        try:
            while True:
                views = await queue.get()
                if views is None:  # fell behind and was dropped: listen again
                    self.events.unlisten(queue)
                    queue = self.events.listen()
                    continue
                for view in views:
                    if view.get("kind") != "raised":
                        continue
                    for spec in self.manager.linked(int(view["point"])):
                        ts = _ns(view.get("ts")) or time.time_ns()
                        task = asyncio.create_task(self.record(int(view["alarm"]), spec, ts))
                        self._tasks.add(task)
                        task.add_done_callback(self._tasks.discard)
        finally:
            self.events.unlisten(queue)
            for task in list(self._tasks):
                task.cancel()

    async def record(self, alarm: int, spec: CameraSpec, alarm_ns: int) -> list[SavedMedia]:
        """The clip [alarm − pre, alarm + post] and the picture at the alarm, stored and linked."""
        s = self.manager.settings
        ring = self.manager.ring(spec.id)
        if ring is None:
            return []
        release = self.manager.want(spec.id, f"alarm {alarm}")
        try:
            # Take the pre-alarm part now (the ring forgets), the rest once it has happened.
            pre = ring.window(alarm_ns - int(s.pre_alarm_s * NS), None)
            end_ns = alarm_ns + int(s.post_alarm_s * NS)
            await asyncio.sleep(max(0.0, (end_ns - time.time_ns()) / NS))
            # Frames may still be on their way (a camera's latency): wait for the last one.
            deadline = time.monotonic() + LATE_FRAMES_S
            while time.monotonic() < deadline:
                newest = ring.packets_after(ring.last_seq - 1)
                if newest and ring.capture_ns(newest[-1]) > end_ns:
                    break
                await asyncio.sleep(0.1)
            packets: list[Packet] = list(pre.packets) if pre is not None else []
            after = packets[-1].seq if packets else 0
            packets += [p for p in ring.packets_after(after) if ring.capture_ns(p) <= end_ns]
            # Start at the last keyframe taken by the clip's start (the pts→wall mapping may
            # have improved since the pre-alarm part was taken), or at the first keyframe.
            begin_ns = alarm_ns - int(s.pre_alarm_s * NS)
            keys = [i for i, p in enumerate(packets) if p.keyframe]
            early = [i for i in keys if ring.capture_ns(packets[i]) <= begin_ns]
            packets = packets[early[-1] if early else keys[0] if keys else len(packets) :]
            if not packets:
                log.warning("alarm %d: camera %s had no video to save", alarm, spec.camera.code)
                return []
            stream = packets[0].stream
            packets = [p for p in packets if p.stream is stream]  # one connection only
            taken = [ring.capture_ns(p) for p in packets]
            saved = await asyncio.to_thread(
                self._save, alarm, spec, alarm_ns, stream, packets, taken
            )
            await self._store(saved, alarm_ns)
            self.saved += saved
            return saved
        except Exception:  # one camera's failure must not stop the recorder
            log.exception("alarm %d: saving the clip of camera %s failed", alarm, spec.id)
            return []
        finally:
            release()

    def _save(
        self,
        alarm: int,
        spec: CameraSpec,
        alarm_ns: int,
        stream: StreamInfo,
        packets: list[Packet],
        taken: list[int],
    ) -> list[SavedMedia]:
        day = datetime.fromtimestamp(alarm_ns / NS, UTC).strftime("%Y%m%d")
        folder = self.media_dir / day
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"alarm{alarm}-{alarm_ns // 1_000_000}-cam{spec.id}"
        clip = folder / f"{stem}.mp4"
        partial = clip.with_suffix(".part")
        seconds = write_mp4(stream, packets, str(partial))
        partial.replace(clip)
        keys = [(t, p) for t, p in zip(taken, packets, strict=True) if p.keyframe]
        at_ns, at_alarm = min(keys, key=lambda k: abs(k[0] - alarm_ns))
        picture = folder / f"{stem}.jpg"
        picture.write_bytes(keyframe_jpeg(at_alarm))
        start, end = taken[0], taken[-1]
        return [
            SavedMedia(alarm, spec.id, "clip", clip, start, end, seconds),
            SavedMedia(alarm, spec.id, "snapshot", picture, at_ns, at_ns, 0),
        ]

    async def _store(self, saved: list[SavedMedia], alarm_ns: int) -> None:
        root = self.media_dir.parent
        await self.pool.executemany(
            "INSERT INTO alarm_media (alarm, camera, raised_at, kind, path, media_type, bytes,"
            " starts_at, ends_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            [
                (
                    m.alarm,
                    int(m.camera),
                    _dt(alarm_ns),
                    m.kind,
                    str(m.path.relative_to(root)),
                    MEDIA_TYPES[m.kind],
                    m.path.stat().st_size,
                    _dt(m.starts_ns),
                    _dt(m.ends_ns),
                )
                for m in saved
            ],
        )

    async def wait_idle(self) -> None:
        """Until every clip in progress is saved (tests, shutdown)."""
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._tasks)


async def alarm_media(pool: asyncpg.Pool, alarm: int, kind: str) -> tuple[str, str, int] | None:
    """The newest media of this kind for an alarm: (relative path, media type, camera id)."""
    row = await pool.fetchrow(
        "SELECT path, media_type, camera FROM alarm_media WHERE alarm = $1 AND kind = $2"
        " ORDER BY raised_at DESC, id DESC LIMIT 1",
        alarm,
        kind,
    )
    return None if row is None else (row["path"], row["media_type"], row["camera"])


def _dt(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / NS, UTC)


def _ns(iso: object) -> int | None:
    if not isinstance(iso, str):
        return None
    try:
        return int(datetime.fromisoformat(iso).timestamp() * NS)
    except ValueError:
        return None
