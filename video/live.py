"""Live view: a camera's H.264 packets as fragmented MP4 for the browser's Media Source Extensions.

No transcoding: the packets the source demuxed into the ring are remuxed by PyAV's mp4 muxer into
an init segment (ftyp+moov) and one moof+mdat fragment per frame. One `LiveFeed` per watched
camera is shared by all of its viewers; a viewer starts at the latest keyframe.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import struct
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

import av

from video.ring import Packet, PacketRing, StreamInfo

log = logging.getLogger("anjian.video.live")

# empty_moov: the init segment carries no samples; default_base_moof: what MSE expects;
# frag_every_frame: a frame leaves as soon as the next one tells its duration (one frame late).
MOVFLAGS = "frag_every_frame+empty_moov+default_base_moof"


class Discontinuity(ValueError):
    """The camera's clock went backwards or jumped (a reconnect): a new init segment is needed."""


@dataclass(frozen=True, slots=True)
class Fragment:
    """One moof+mdat pair: a frame a viewer can append; it may start there when `keyframe`."""

    data: bytes
    keyframe: bool
    dts: int  # of the frame, in the muxer's time base
    wall_ns: int  # when its packet reached the ring


def _boxes(data: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Split complete top-level ISO-BMFF boxes off `data`: [(type, whole box)], the rest."""
    boxes: list[tuple[bytes, bytes]] = []
    at = 0
    while len(data) - at >= 8:
        size, kind = struct.unpack_from(">I4s", data, at)
        if size == 1:
            if len(data) - at < 16:
                break
            (size,) = struct.unpack_from(">Q", data, at + 8)
        if size < 8:
            raise ValueError(f"malformed mp4 box {kind!r} of size {size}")
        if len(data) - at < size:
            break
        boxes.append((kind, data[at : at + size]))
        at += size
    return boxes, data[at:]


def _nal_types(data: bytes) -> set[int]:
    """The NAL unit types in an Annex B byte stream (start codes 00 00 01 / 00 00 00 01)."""
    types: set[int] = set()
    at = data.find(b"\x00\x00\x01")
    while 0 <= at < len(data) - 3:
        types.add(data[at + 3] & 0x1F)
        at = data.find(b"\x00\x00\x01", at + 3)
    return types


def _annexb(data: bytes) -> bool:
    return data.startswith((b"\x00\x00\x01", b"\x00\x00\x00\x01"))


_SPS = 7


def codec_string(init: bytes) -> str:
    """The RFC 6381 codec of an init segment, e.g. avc1.42C01F (profile, constraints, level)."""
    at = init.find(b"avcC")
    if at < 0 or len(init) < at + 8:
        raise ValueError("the init segment has no avcC box (not H.264)")
    profile, constraints, level = init[at + 5 : at + 8]
    return f"avc1.{profile:02X}{constraints:02X}{level:02X}"


class Fmp4Muxer:
    """H.264 packets in (Annex B, as PyAV demuxes RTSP), fMP4 out, without decoding anything.

    `push` returns the fragments the muxer finished; `init` holds the init segment once the first
    keyframe went in. Packets before the first keyframe are dropped: a viewer needs one to start.
    """

    def __init__(
        self, *, width: int, height: int, time_base: Fraction, extradata: bytes | None
    ) -> None:
        self._buffer = io.BytesIO()
        self._out = av.open(self._buffer, "w", format="mp4", options={"movflags": MOVFLAGS})
        self._stream = self._out.add_mux_stream("h264", width=width, height=height)
        self._stream.time_base = time_base
        self.time_base = time_base
        # SPS/PPS from the SDP, put in front of keyframes that lack them in-band: the muxer takes
        # its avcC from the first keyframe.
        self._config = extradata if extradata and _annexb(extradata) else b""
        self._pending: deque[tuple[bool, int, int]] = deque()  # frames muxed, not yet out
        self._rest = b""
        self.init = b""
        self.first_dts: int | None = None  # its media time is 0 (tfdt counts from it)
        self.last_dts: int | None = None
        self.closed = False

    @property
    def started(self) -> bool:
        return self.last_dts is not None

    def push(
        self, data: bytes, pts: int | None, dts: int, keyframe: bool, wall_ns: int = 0
    ) -> list[Fragment]:
        """Mux one access unit (one frame); raises Discontinuity when time does not go forward."""
        if self.last_dts is None and not keyframe:
            return []
        if self.last_dts is not None and dts <= self.last_dts:
            raise Discontinuity(f"dts went from {self.last_dts} to {dts}")
        if keyframe and self._config and _SPS not in _nal_types(data[:256]):
            data = self._config + data
        packet = av.Packet(data)
        packet.pts = dts if pts is None else pts
        packet.dts = dts
        packet.time_base = self.time_base
        packet.is_keyframe = keyframe
        packet.stream = self._stream
        self._pending.append((keyframe, dts, wall_ns))
        self._out.mux(packet)
        if self.first_dts is None:
            self.first_dts = dts
        self.last_dts = dts
        return self._collect()

    def _collect(self) -> list[Fragment]:
        written = self._buffer.getvalue()
        if not written:
            return []
        self._buffer.seek(0)
        self._buffer.truncate()
        boxes, self._rest = _boxes(self._rest + written)
        fragments: list[Fragment] = []
        moof = b""
        for kind, box in boxes:
            if kind in (b"ftyp", b"moov"):
                self.init += box
            elif kind == b"moof":
                moof = box
            elif kind == b"mdat" and moof:
                fragments.append(Fragment(moof + box, *self._pending.popleft()))
                moof = b""
        if moof:  # a moof whose mdat is still in the muxer's buffer: wait for the rest
            self._rest = moof + self._rest
        return fragments

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        # The trailer is for a stream nobody will read: its errors do not matter.
        with contextlib.suppress(av.FFmpegError, ValueError):
            self._out.close()


# ---- the shared feed of one camera and its viewers ----------------------------------------------

OFFLINE_S = 3.0  # no packet for this long: the viewers are told the camera is offline
# A camera pulled at the low rate until its first viewer needs this long to connect first
# (RTSP open timeout of the source).
CONNECT_GRACE_S = 10.0
MAX_BACKLOG = 50  # frames queued for one viewer (2 s at 25 fps) before it skips to a keyframe
MAX_GOP = 500  # frames cached for joining viewers; a longer keyframe interval makes them wait
LINGER_S = 15.0  # full-rate demand kept after the last viewer left (a page reload, a new tab)
CHECK_S = 0.5

Message = str | bytes
Release = Callable[[], None]
# VideoManager.want(camera id, reason) → release: the camera is pulled at full rate until then.
Want = Callable[[str, str], Release]


def _status(state: str) -> str:
    return json.dumps({"type": "status", "state": state})


class Viewer:
    """One browser's share of a feed: the messages to send it, in order (None: the feed ended).

    A viewer starts at a keyframe with the codec message and the init segment; one that falls
    MAX_BACKLOG frames behind is emptied and starts over at the next keyframe.
    """

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Message | None] = asyncio.Queue()
        self._frames = 0  # fragments queued
        self._burst = 0  # frames of the joining burst (a long keyframe interval is no backlog)
        self.started = False  # has the current muxer's init segment
        self.dropped = 0  # frames skipped because it fell behind

    async def next(self) -> Message | None:
        message = await self._queue.get()
        if isinstance(message, bytes):
            self._frames = max(0, self._frames - 1)
        return message

    def _put(self, message: Message | None) -> None:
        self._queue.put_nowait(message)

    def _start(self, codec: str, init: bytes, frames: Sequence[Fragment]) -> None:
        self._put(codec)
        self._put(init)
        for fragment in frames:
            self._put(fragment.data)
        self._frames += len(frames) + 1
        self._burst = len(frames)
        self.started = True

    def _frame(self, fragment: Fragment, codec: str, init: bytes) -> None:
        if self.started and self._frames >= MAX_BACKLOG + self._burst:
            while not self._queue.empty():
                self._queue.get_nowait()
            self._frames = 0
            self.started = False
        if self.started:
            self._frames += 1
            self._put(fragment.data)
        elif fragment.keyframe:
            self._start(codec, init, [fragment])
        else:
            self.dropped += 1


class LiveFeed:
    """One camera's ring remuxed to fMP4 once, for all of its viewers (on the event loop: remuxing
    is a copy of bytes, about 15 µs a frame; nothing is decoded)."""

    def __init__(self, camera_id: str, ring: PacketRing) -> None:
        self.camera_id = camera_id
        self.ring = ring
        self.viewers: set[Viewer] = set()
        self._loop = asyncio.get_running_loop()
        self._muxer: Fmp4Muxer | None = None
        self._stream: StreamInfo | None = None
        self._codec = ""  # the codec message of the current muxer, sent before its init
        self._gop: list[Fragment] = []  # from the newest keyframe: where a new viewer starts
        self._cursor = 0
        self._last_packet = time.monotonic()
        self._quiet_s = CONNECT_GRACE_S  # allowed silence: longer until the first packet
        self.state = "waiting"
        self.fragments = 0
        self.restarts = 0
        self._watchdog: asyncio.Task[None] | None = None
        self._warned = False
        self._stopped = False

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        self.ring.add_listener(self._from_worker)
        recent = self.ring.snapshot_from_keyframe(0.0)
        # After low-rate pulling the ring may hold old packets: live starts from fresh ones.
        if recent is not None and time.time_ns() - recent.end_ns < OFFLINE_S * 1e9:
            for packet in recent.packets:
                self._take(packet)
        self._watchdog = asyncio.create_task(self._watch())

    def stop(self) -> None:
        self._stopped = True  # packets the worker already handed over are ignored
        self.ring.remove_listener(self._from_worker)
        if self._watchdog is not None:
            self._watchdog.cancel()
        self._drop_muxer()
        for viewer in self.viewers:
            viewer._put(None)
        self.viewers.clear()

    def join(self) -> Viewer:
        viewer = Viewer()
        if self._muxer is not None and self._codec and self._gop:
            viewer._start(self._codec, self._muxer.init, self._gop)
        else:
            viewer._put(_status(self.state if self.state != "live" else "waiting"))
        self.viewers.add(viewer)
        return viewer

    @property
    def media_origin(self) -> tuple[int, Fraction] | None:
        """(dts, time base) of the current muxer's first frame: media time 0 in the browser."""
        if self._muxer is None or self._muxer.first_dts is None:
            return None
        return self._muxer.first_dts, self._muxer.time_base

    def leave(self, viewer: Viewer) -> None:
        self.viewers.discard(viewer)

    # -- packets -----------------------------------------------------------------------

    def _from_worker(self, packet: Packet) -> None:
        """Ring listener, in the camera's worker thread: hand over to the event loop."""
        with contextlib.suppress(RuntimeError):  # the loop closed under a stopping worker
            self._loop.call_soon_threadsafe(self._take, packet)

    def _take(self, packet: Packet) -> None:
        if packet.seq <= self._cursor or self._stopped:
            return  # already taken from the ring's keyframe slice, or nobody watches
        self._cursor = packet.seq
        self._last_packet = time.monotonic()
        self._quiet_s = OFFLINE_S
        if self._muxer is None or packet.stream is not self._stream:
            if not packet.keyframe:
                return
            if not self._new_muxer(packet.stream):
                return
        assert self._muxer is not None
        try:
            fragments = self._muxer.push(
                packet.data, packet.pts, packet.dts, packet.keyframe, packet.wall_ns
            )
        except Discontinuity:
            self._drop_muxer()
            if packet.keyframe:
                self._cursor -= 1
                self._take(packet)
            return
        except (av.FFmpegError, ValueError) as exc:
            if not self._warned:
                log.warning("camera %s: live remux failed: %s", self.camera_id, exc)
                self._warned = True
            self._drop_muxer()
            return
        if not self._codec and self._muxer.init:
            self._announce()
        for fragment in fragments:
            self._fan_out(fragment)

    def _new_muxer(self, stream: StreamInfo) -> bool:
        self._drop_muxer()
        self._stream = stream
        if stream.codec != "h264":
            self._set_state("unsupported")  # the console shows snapshots instead
            return False
        self._muxer = Fmp4Muxer(
            width=stream.width,
            height=stream.height,
            time_base=stream.time_base,
            extradata=stream.extradata,
        )
        self.restarts += 1
        return True

    def _drop_muxer(self) -> None:
        if self._muxer is not None:
            self._muxer.close()
        self._muxer = None
        self._codec = ""
        self._gop = []
        for viewer in self.viewers:
            viewer.started = False

    def _announce(self) -> None:
        assert self._muxer is not None
        mime = f'video/mp4; codecs="{codec_string(self._muxer.init)}"'
        self._codec = json.dumps({"type": "codec", "mime": mime, "camera": self.camera_id})
        self.state = "live"
        self._warned = False

    def _fan_out(self, fragment: Fragment) -> None:
        assert self._muxer is not None
        self.fragments += 1
        if fragment.keyframe:
            self._gop = [fragment]
        elif self._gop and len(self._gop) < MAX_GOP:
            self._gop.append(fragment)
        else:
            self._gop = []  # too long to replay: joining viewers wait for the next keyframe
        for viewer in self.viewers:
            viewer._frame(fragment, self._codec, self._muxer.init)

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            for viewer in self.viewers:
                viewer._put(_status(state))

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(CHECK_S)
            quiet = time.monotonic() - self._last_packet
            if quiet > self._quiet_s and self.state != "offline":
                self._drop_muxer()
                self._set_state("offline")


class LiveService:
    """The live feeds of all cameras: a feed starts with its first viewer and stops with its last.

    Demand: while a camera has viewers (and LINGER_S after the last left) the service holds
    `want(camera, "live")` from the VideoManager, which pulls the camera at full rate only while
    someone holds such a claim; otherwise the manager may pull it at its low rate.
    """

    def __init__(
        self,
        rings: Callable[[str], PacketRing | None],
        want: Want | None = None,
        *,
        linger_s: float | None = None,
    ) -> None:
        self._rings = rings
        self._want = want
        self.linger_s = LINGER_S if linger_s is None else linger_s
        self._feeds: dict[str, LiveFeed] = {}
        self._claims: dict[str, Release] = {}
        self._lingering: dict[str, asyncio.TimerHandle] = {}

    @contextlib.asynccontextmanager
    async def watch(self, camera_id: str) -> AsyncIterator[Viewer]:
        """A viewer of the camera's live feed for the duration of the block."""
        feed = self._feeds.get(camera_id)
        if feed is None:
            ring = self._rings(camera_id)
            if ring is None:
                raise LookupError(f"camera {camera_id!r} has no packet ring")
            self._claim(camera_id)
            feed = self._feeds[camera_id] = LiveFeed(camera_id, ring)
            feed.start()
        viewer = feed.join()
        try:
            yield viewer
        finally:
            feed.leave(viewer)
            if not feed.viewers and self._feeds.get(camera_id) is feed:
                feed.stop()
                del self._feeds[camera_id]
                self._unclaim_later(camera_id)

    def _claim(self, camera_id: str) -> None:
        timer = self._lingering.pop(camera_id, None)
        if timer is not None:
            timer.cancel()  # still held from the previous viewer
        elif self._want is not None and camera_id not in self._claims:
            self._claims[camera_id] = self._want(camera_id, "live")

    def _unclaim_later(self, camera_id: str) -> None:
        if camera_id not in self._claims:
            return
        loop = asyncio.get_running_loop()
        self._lingering[camera_id] = loop.call_later(self.linger_s, self._unclaim, camera_id)

    def _unclaim(self, camera_id: str) -> None:
        self._lingering.pop(camera_id, None)
        release = self._claims.pop(camera_id, None)
        if release is not None:
            release()

    def viewers(self, camera_id: str) -> int:
        feed = self._feeds.get(camera_id)
        return len(feed.viewers) if feed else 0

    def feed(self, camera_id: str) -> LiveFeed | None:
        return self._feeds.get(camera_id)

    def close(self) -> None:
        """Stop every feed and release every claim (at shutdown)."""
        for feed in list(self._feeds.values()):
            feed.stop()
        self._feeds.clear()
        for timer in self._lingering.values():
            timer.cancel()
        self._lingering.clear()
        for release in self._claims.values():
            release()
        self._claims.clear()
