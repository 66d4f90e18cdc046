"""Snapshots: a camera's latest keyframe decoded and encoded as JPEG, on demand, off the loop.

Decoding one keyframe needs no earlier packet; the JPEG is FFmpeg's MJPEG encoder (no image
library). A camera's JPEG is cached for at most `max_age_s` (1 s) and concurrent requests share
one decode.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av

from video.ring import Packet, PacketRing, StreamInfo

SNAPSHOT_MAX_AGE_S = 1.0


class NoPicture(LookupError):
    """The camera has sent no keyframe yet (offline, or just connecting)."""


def decode_keyframe(data: bytes, stream: StreamInfo) -> Any:
    """Decode one keyframe with a fresh decoder; the av.VideoFrame, or None if it gave none."""
    ctx: Any = av.CodecContext.create(stream.codec, "r")
    if stream.extradata:
        ctx.extradata = stream.extradata
    ctx.thread_count = 1  # one frame: threads would only add start-up cost
    frames = list(ctx.decode(av.Packet(data)))
    frames += list(ctx.decode(None))  # flush: a decoder may hold the frame back
    return frames[0] if frames else None


def encode_jpeg(frame: Any) -> bytes:
    """One video frame as a JPEG (baseline, full-range YUV 4:2:0, FFmpeg's default quality)."""
    enc: Any = av.CodecContext.create("mjpeg", "w")
    enc.width, enc.height = frame.width, frame.height
    enc.pix_fmt = "yuvj420p"
    enc.time_base = Fraction(1, 25)
    out = enc.encode(frame.reformat(format="yuvj420p"))
    out += enc.encode(None)
    return b"".join(bytes(p) for p in out)


def keyframe_jpeg(packet: Packet) -> bytes:
    frame = decode_keyframe(packet.data, packet.stream)
    if frame is None:
        raise NoPicture("the keyframe did not decode to a picture")
    return encode_jpeg(frame)


@dataclass(frozen=True, slots=True)
class Snapshot:
    jpeg: bytes
    taken_ns: int  # wall time the keyframe arrived
    width: int
    height: int


class Snapshotter:
    """JPEGs of one camera's latest keyframe, cached ≤ `max_age_s`, decoded in a thread."""

    def __init__(
        self,
        ring: PacketRing,
        max_age_s: float = SNAPSHOT_MAX_AGE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ring = ring
        self.max_age_s = max_age_s
        self.clock = clock
        self._cached: tuple[float, Snapshot] | None = None
        self._pending: asyncio.Future[Snapshot] | None = None

    async def get(self) -> Snapshot:
        """The newest snapshot; NoPicture when the ring holds no keyframe."""
        cached = self._cached
        if cached is not None and self.clock() - cached[0] <= self.max_age_s:
            return cached[1]
        if self._pending is not None:
            return await asyncio.shield(self._pending)
        loop = asyncio.get_running_loop()
        self._pending = loop.create_future()
        pending = self._pending
        try:
            made_at = self.clock()
            snap = await asyncio.to_thread(self._make)
            self._cached = (made_at, snap)
            pending.set_result(snap)
            return snap
        except BaseException as exc:
            pending.set_exception(exc)
            pending.exception()  # retrieved: nobody else may be waiting
            raise
        finally:
            self._pending = None

    def _make(self) -> Snapshot:
        key = self.ring.latest_keyframe()
        if key is None:
            raise NoPicture("no picture from this camera yet")
        return Snapshot(keyframe_jpeg(key), key.wall_ns, key.stream.width, key.stream.height)
