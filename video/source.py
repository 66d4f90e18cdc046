"""One camera's RTSP pull: a worker thread demuxing with PyAV, without decoding, into its ring.

The thread connects (TCP by default), appends whole access units to the PacketRing, keeps the
counters health is computed from, decodes one keyframe every few seconds for the
frozen-picture check, and reconnects with jittered exponential backoff. Every PyAV call has a
timeout, so a dead camera can never hang the thread; `stop()` is a flag checked between reads.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

import av
import numpy as np
import numpy.typing as npt

from streams.config import redact_url
from video.ring import PacketRing, StreamInfo
from video.snapshot import decode_keyframe

log = logging.getLogger("anjian.video")

Transport = Literal["tcp", "udp"]
NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class SourceSettings:
    """How to pull one camera; `url` may hold credentials: never log it, use `redact_url`."""

    url: str
    transport: Transport = "tcp"
    open_timeout_s: float = 10.0
    read_timeout_s: float = 5.0
    backoff_min_s: float = 1.0
    backoff_max_s: float = 30.0
    # Frozen-picture check: decode one keyframe this often and compare with the previous one.
    probe_every_s: float = 5.0
    # Two probes show the same picture when no pixel of a 160x90 grey thumbnail differs by this
    # many grey levels (0-255) or more: a moving clock changes some pixels a lot, a frozen
    # camera re-encoding one image changes none much.
    frozen_threshold: float = 12.0
    # Low-rate mode (nobody watching, no linked alarm): connect this often, for `idle_pull_s`.
    idle_every_s: float = 60.0
    idle_pull_s: float = 4.0


@dataclass(slots=True)
class SourceStats:
    """Counters the worker thread updates and health reads (plain ints: no lock needed)."""

    connected: bool = False
    packets: int = 0  # access units received, ever
    bytes: int = 0
    last_packet_ns: int = 0
    last_keyframe_ns: int = 0
    connects: int = 0
    failures: int = 0
    last_error: str = ""
    # The frozen-picture check: when the picture last changed and when it was last probed.
    picture_changed_ns: int = 0
    picture_probed_ns: int = 0
    # Low-rate mode: the last short pull that worked, and what it measured.
    idle_ok_ns: int = 0
    idle_fps: float = float("nan")
    idle_kbps: float = float("nan")
    width: int = 0
    height: int = 0
    codec: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class _Stopped(Exception):
    pass


class CameraSource:
    """Pulls one camera in a daemon thread of its own into `ring`."""

    def __init__(self, name: str, settings: SourceSettings, ring: PacketRing) -> None:
        self.name = name
        self.settings = settings
        self.ring = ring
        self.stats = SourceStats()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._continuous = True
        self._thread: threading.Thread | None = None
        self._thumbnail: npt.NDArray[np.uint8] | None = None

    @property
    def continuous(self) -> bool:
        return self._continuous

    def set_continuous(self, continuous: bool) -> None:
        """Full-rate pull (True) or the low-rate mode: short pulls every `idle_every_s`."""
        if continuous != self._continuous:
            self._continuous = continuous
            self._wake.set()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=f"camera {self.name}", daemon=True)
        self._thread.start()

    def stop(self, wait_s: float = 0.0) -> None:
        """Ask the thread to end; it does at the next packet or timeout (it is a daemon)."""
        self._stop.set()
        self._wake.set()
        if wait_s > 0:
            self.join(wait_s)

    def join(self, timeout_s: float) -> None:
        """Wait up to `timeout_s` for the thread to end (after `stop()`)."""
        if self._thread is not None:
            self._thread.join(timeout_s)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- the worker thread --------------------------------------------------------------

    def _run(self) -> None:
        s = self.settings
        backoff = s.backoff_min_s
        failing = False
        while not self._stop.is_set():
            started = time.monotonic()
            self._wake.clear()  # set from now on: a change of demand during this session
            try:
                self._session()
            except _Stopped:
                break
            except Exception as exc:  # whatever a camera sends, the thread must live on
                self.stats.failures += 1
                self.stats.last_error = str(exc).replace(s.url, redact_url(s.url))
                if not failing:
                    log.warning(
                        "camera %s (%s) unreachable: %s",
                        self.name,
                        redact_url(s.url),
                        self.stats.last_error,
                    )
                failing = True
            else:
                if failing:
                    log.info("camera %s is back", self.name)
                failing = False
            finally:
                self.stats.connected = False
            if failing:
                # A session that ran a while resets the backoff; jitter spreads reconnects.
                if time.monotonic() - started > s.backoff_max_s:
                    backoff = s.backoff_min_s
                self._wake.wait(backoff * random.uniform(0.8, 1.2))
                backoff = min(s.backoff_max_s, backoff * 2)
            else:
                backoff = s.backoff_min_s
                if not self._continuous:
                    self._wake.wait(s.idle_every_s)

    def _session(self) -> None:
        """One connection, until the stream ends, fails, or is no longer wanted."""
        s = self.settings
        options = {
            "rtsp_transport": s.transport,
            # FFmpeg's RTSP socket I/O timeout, in microseconds.
            "timeout": str(int(s.read_timeout_s * 1_000_000)),
        }
        container: Any = av.open(
            s.url, options=options, timeout=(s.open_timeout_s, s.read_timeout_s)
        )
        try:
            stream = container.streams.video[0]
            ctx = stream.codec_context
            info = StreamInfo(
                codec=ctx.name,
                width=ctx.width,
                height=ctx.height,
                time_base=Fraction(stream.time_base),
                extradata=bytes(ctx.extradata or b""),
                rate=Fraction(stream.average_rate) if stream.average_rate else None,
            )
            self.ring.start_segment(info)
            st = self.stats
            st.codec, st.width, st.height = info.codec, info.width, info.height
            st.connected = True
            st.connects += 1
            self._pump(container, stream, info)
        finally:
            container.close()

    def _pump(self, container: Any, stream: Any, info: StreamInfo) -> None:
        s, st, ring = self.settings, self.stats, self.ring
        began = time.monotonic_ns()
        packets0, bytes0 = st.packets, st.bytes
        first_pts: int | None = None
        # RTP may cut one frame into several packets with one timestamp (slices, parameter
        # sets): join them into one access unit, flushed when the next frame starts.
        pending: list[bytes] = []
        pending_pts: int | None = None
        pending_dts: int | None = None
        pending_key = False
        next_probe = 0
        for packet in container.demux(stream):
            if self._stop.is_set():
                raise _Stopped
            if packet.size == 0:
                continue
            pts, dts = packet.pts, packet.dts
            if pts is None and dts is None:
                pending.append(bytes(packet))  # parameter sets ahead of the frame
                pending_key = pending_key or packet.is_keyframe
                continue
            pts = dts if pts is None else pts
            dts = pts if dts is None else dts
            if pending_pts is not None and (pts != pending_pts or dts != pending_dts):
                assert pending_dts is not None
                now = time.time_ns()
                data = b"".join(pending)
                unit = ring.append(data, pending_pts, pending_dts, pending_key, now)
                if first_pts is None:
                    first_pts = unit.pts
                st.packets += 1
                st.bytes += len(data)
                st.last_packet_ns = now
                if pending_key:
                    st.last_keyframe_ns = now
                    if now >= next_probe:
                        next_probe = now + int(s.probe_every_s * NS)
                        self._probe_picture(unit.data, info, now)
                pending, pending_key = [], False
                if not self._continuous and time.monotonic_ns() - began > s.idle_pull_s * NS:
                    # Low-rate mode: this short pull (or the full-rate one that was no longer
                    # wanted) is what health reports until the next one.
                    # Rates over media time: a connection starts with a burst of frames.
                    frames = st.packets - packets0
                    seconds = float((unit.pts - (first_pts or 0)) * info.time_base)
                    if frames > 1 and seconds > 0:
                        st.idle_fps = (frames - 1) / seconds
                        st.idle_kbps = (
                            (st.bytes - bytes0) * 8 / 1000 / seconds * (frames - 1) / frames
                        )
                    st.idle_ok_ns = now
                    return
            pending.append(bytes(packet))
            pending_pts, pending_dts = pts, dts
            pending_key = pending_key or packet.is_keyframe
        raise OSError("the camera ended the stream")

    def _probe_picture(self, data: bytes, info: StreamInfo, now: int) -> None:
        """Decode this keyframe to a small grey thumbnail and compare with the last one."""
        try:
            frame = decode_keyframe(data, info)
        except av.FFmpegError as exc:
            self.stats.extra["probe_error"] = str(exc)
            return
        if frame is None:
            return
        thumb: npt.NDArray[np.uint8] = frame.reformat(
            width=64, height=36, format="gray"
        ).to_ndarray()
        previous = self._thumbnail
        self._thumbnail = thumb
        st = self.stats
        st.picture_probed_ns = now
        if previous is None or previous.shape != thumb.shape:
            st.picture_changed_ns = now
            return
        change = float(np.abs(thumb.astype(np.int16) - previous.astype(np.int16)).max())
        if change >= self.settings.frozen_threshold:
            st.picture_changed_ns = now
