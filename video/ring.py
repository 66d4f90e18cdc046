"""A camera's packet ring buffer: the last seconds of compressed video, never decoded.

The source's worker thread appends whole access units (one per frame); readers in other
threads or the event loop take slices that start at a keyframe, ready to remux or decode.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

NS = 1_000_000_000
DEFAULT_RING_SECONDS = 30.0
DEFAULT_RING_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """What a muxer or decoder needs about one connection's video stream."""

    codec: str  # FFmpeg codec name, e.g. "h264"
    width: int
    height: int
    time_base: Fraction  # of pts/dts
    extradata: bytes  # codec parameters (H.264: SPS/PPS), empty when in-band only
    rate: Fraction | None = None  # nominal frames per second, when the stream says


@dataclass(frozen=True, slots=True)
class Packet:
    """One access unit as received: Annex B bytes for H.264, timestamps in `stream.time_base`."""

    seq: int  # per ring, increasing by one
    data: bytes
    pts: int
    dts: int
    keyframe: bool
    wall_ns: int  # arrival time, UTC ns (the clock alarms use)
    stream: StreamInfo  # the connection it came from: packets of one segment share it

    @property
    def pts_ns(self) -> int:
        return int(self.pts * self.stream.time_base * NS)

    @property
    def time_base(self) -> Fraction:
        return self.stream.time_base


@dataclass(frozen=True, slots=True)
class RingSlice:
    """Packets of one segment (one connection), the first a keyframe, in decoding order."""

    stream: StreamInfo
    packets: tuple[Packet, ...]
    # pts → wall clock: the segment's smallest arrival delay (see PacketRing.capture_ns).
    delay_ns: int = 0

    def capture_ns(self, packet: Packet) -> int:
        return packet.pts_ns + self.delay_ns

    @property
    def start_ns(self) -> int:
        return self.capture_ns(self.packets[0])

    @property
    def end_ns(self) -> int:
        return self.capture_ns(self.packets[-1])

    @property
    def seconds(self) -> float:
        """Media time covered by the packets (pts span plus one frame)."""
        first, last = self.packets[0], self.packets[-1]
        pts = [p.pts for p in self.packets]
        span = max(pts) - min(pts)
        frame = (last.pts - first.pts) / (len(pts) - 1) if len(pts) > 1 else 0
        return float((span + frame) * self.stream.time_base)


Listener = Callable[[Packet], None]


class PacketRing:
    """The last `seconds` (and at most `max_bytes`) of one camera's packets.

    Thread-safe. `append` is called by the camera's worker thread only; listeners run in that
    thread right after each append and must not block (hand over with
    `loop.call_soon_threadsafe`).
    """

    def __init__(
        self, seconds: float = DEFAULT_RING_SECONDS, max_bytes: int = DEFAULT_RING_BYTES
    ) -> None:
        if seconds <= 0:
            raise ValueError(f"ring seconds must be positive, got {seconds}")
        self.seconds = seconds
        self.max_bytes = max_bytes
        self._packets: deque[Packet] = deque()
        self._bytes = 0
        self._seq = itertools.count(1)
        self._last_seq = 0
        self._stream: StreamInfo | None = None
        self._delays: dict[int, int] = {}  # id(stream) → the segment's smallest delay
        self._changed = threading.Condition()
        self._listeners: list[Listener] = []

    # -- writer (the camera's worker thread) -------------------------------------------

    def start_segment(self, stream: StreamInfo) -> None:
        """A new connection: later packets carry `stream` (older ones keep theirs)."""
        with self._changed:
            self._stream = stream

    def append(
        self, data: bytes, pts: int, dts: int, keyframe: bool, wall_ns: int | None = None
    ) -> Packet:
        stream = self._stream
        if stream is None:
            raise RuntimeError("PacketRing.append before start_segment")
        packet = Packet(
            seq=next(self._seq),
            data=data,
            pts=pts,
            dts=dts,
            keyframe=keyframe,
            wall_ns=time.time_ns() if wall_ns is None else wall_ns,
            stream=stream,
        )
        delay = packet.wall_ns - packet.pts_ns
        with self._changed:
            self._packets.append(packet)
            key = id(stream)
            self._delays[key] = min(self._delays.get(key, delay), delay)
            self._bytes += len(data)
            self._last_seq = packet.seq
            horizon = packet.wall_ns - int(self.seconds * 1e9)
            while self._packets and (
                self._packets[0].wall_ns < horizon or self._bytes > self.max_bytes
            ):
                gone = self._packets.popleft()
                self._bytes -= len(gone.data)
                if not self._packets or self._packets[0].stream is not gone.stream:
                    self._delays.pop(id(gone.stream), None)
            self._changed.notify_all()
            listeners = tuple(self._listeners)
        for listener in listeners:
            listener(packet)
        return packet

    # -- readers ---------------------------------------------------------------------

    @property
    def stream(self) -> StreamInfo | None:
        """The current connection's stream, None before the first connection."""
        return self._stream

    @property
    def last_seq(self) -> int:
        """Sequence number of the newest packet (0 when none yet)."""
        return self._last_seq

    def __len__(self) -> int:
        return len(self._packets)

    def add_listener(self, listener: Listener) -> None:
        with self._changed:
            self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with self._changed, contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def wait(self, after_seq: int, timeout: float) -> bool:
        """Block (a worker thread, never the event loop) until a packet newer than `after_seq`."""
        with self._changed:
            return self._changed.wait_for(lambda: self._last_seq > after_seq, timeout)

    def packets_after(self, seq: int) -> list[Packet]:
        """Packets newer than `seq`, oldest first (those already evicted are gone)."""
        with self._changed:
            if not self._packets or self._last_seq <= seq:
                return []
            skip = max(0, seq - self._packets[0].seq + 1)
            return list(itertools.islice(self._packets, skip, None))

    def capture_ns(self, packet: Packet) -> int:
        """When the frame was taken, on the wall clock: its pts shifted by the smallest
        arrival delay of its segment. Frames may arrive late and in bursts (a busy encoder,
        the network); cutting windows on this time keeps a clip as long as it should be."""
        with self._changed:
            return packet.pts_ns + self._delays.get(id(packet.stream), packet.wall_ns)

    def latest_keyframe(self) -> Packet | None:
        with self._changed:
            for packet in reversed(self._packets):
                if packet.keyframe:
                    return packet
        return None

    def snapshot_from_keyframe(self, seconds_back: float = 0.0) -> RingSlice | None:
        """From the newest keyframe at least `seconds_back` old (or the oldest keyframe of the
        newest segment when none is that old) up to the newest packet."""
        return self.window(time.time_ns() - int(seconds_back * 1e9), None)

    def window(self, start_ns: int, end_ns: int | None) -> RingSlice | None:
        """Packets from the keyframe taken at or before wall time `start_ns` (or the first one
        after, when the ring does not reach that far back) up to the last taken at or before
        `end_ns` (None: the newest). Times are capture times (`Packet.capture_ns`).

        The slice stays within one segment: the one of the newest packet at or before
        `end_ns`.
        """
        with self._changed:
            packets = list(self._packets)
            delays = dict(self._delays)
        if end_ns is not None and packets:
            while packets and packets[-1].pts_ns + delays[id(packets[-1].stream)] > end_ns:
                packets.pop()
        if not packets:
            return None
        stream = packets[-1].stream
        delay = delays[id(stream)]
        first = len(packets)
        while first > 0 and packets[first - 1].stream is stream:
            first -= 1
        segment = packets[first:]
        start = None
        for i, packet in enumerate(segment):
            taken = packet.pts_ns + delay
            if packet.keyframe and (start is None or taken <= start_ns):
                start = i
            if taken > start_ns and start is not None:
                break
        if start is None:
            return None
        return RingSlice(stream, tuple(segment[start:]), delay)
