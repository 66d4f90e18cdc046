"""The packet ring: eviction by age and size, keyframe-aligned slices, segments, followers."""

from __future__ import annotations

import threading
from fractions import Fraction

import pytest

from video.ring import PacketRing, StreamInfo

TB = Fraction(1, 90000)
SECOND = 1_000_000_000


def _stream(name: str = "a") -> StreamInfo:
    return StreamInfo("h264", 1280, 720, TB, name.encode(), Fraction(25))


def _feed(
    ring: PacketRing, start_s: float, seconds: float, *, fps: int = 25, gop: int = 25
) -> None:
    """Frames at `fps` from wall second `start_s`, a keyframe every `gop` frames."""
    for i in range(int(seconds * fps)):
        wall = int((start_s + i / fps) * SECOND)
        ring.append(b"x" * 100, i * 3600, i * 3600, i % gop == 0, wall_ns=wall)


def test_ring_keeps_only_the_last_seconds() -> None:
    ring = PacketRing(seconds=5)
    ring.start_segment(_stream())
    _feed(ring, 1000, 20)
    assert len(ring) == 5 * 25 + 1
    assert ring.last_seq == 500
    assert ring.packets_after(0)[0].wall_ns >= (1000 + 20 - 1 / 25 - 5) * SECOND


def test_ring_evicts_by_size_too() -> None:
    ring = PacketRing(seconds=30, max_bytes=1000)
    ring.start_segment(_stream())
    _feed(ring, 1000, 2)
    assert len(ring) == 10


def test_window_starts_at_the_keyframe_before_the_start() -> None:
    ring = PacketRing(seconds=30)
    ring.start_segment(_stream())
    _feed(ring, 1000, 20)
    part = ring.window(int(1010.5 * SECOND), int(1015.5 * SECOND))
    assert part is not None
    assert part.packets[0].keyframe and part.start_ns == 1010 * SECOND
    assert part.end_ns <= 1015.5 * SECOND
    assert [p.seq for p in part.packets] == list(
        range(part.packets[0].seq, part.packets[-1].seq + 1)
    )
    assert part.seconds == pytest.approx(5.52, abs=0.05)


def test_window_before_the_ring_starts_at_its_first_keyframe() -> None:
    ring = PacketRing(seconds=5)
    ring.start_segment(_stream())
    _feed(ring, 1000, 20)
    part = ring.window(990 * SECOND, None)
    assert part is not None and part.packets[0].keyframe
    assert part.start_ns == 1015 * SECOND and part.packets[-1].seq == ring.last_seq


def test_window_stays_within_the_newest_segment() -> None:
    ring = PacketRing(seconds=30)
    first, second = _stream("a"), _stream("b")
    ring.start_segment(first)
    _feed(ring, 1000, 4)
    ring.start_segment(second)
    _feed(ring, 1005, 4)
    part = ring.window(1001 * SECOND, None)
    assert part is not None and part.stream is second
    assert {p.stream for p in part.packets} == {second}
    older = ring.window(1001 * SECOND, 1003 * SECOND)
    assert older is not None and older.stream is first and older.start_ns == 1001 * SECOND


def test_empty_ring_has_no_slices() -> None:
    ring = PacketRing()
    assert ring.snapshot_from_keyframe() is None and ring.latest_keyframe() is None
    with pytest.raises(RuntimeError):
        ring.append(b"x", 0, 0, True)
    with pytest.raises(ValueError, match="positive"):
        PacketRing(seconds=0)


def test_followers_see_every_new_packet() -> None:
    ring = PacketRing()
    ring.start_segment(_stream())
    seen: list[int] = []
    ring.add_listener(lambda p: seen.append(p.seq))
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(ring.wait(0, 5)))
    waiter.start()
    _feed(ring, 1000, 1)
    waiter.join()
    assert got == [True] and seen == list(range(1, 26))
    assert [p.seq for p in ring.packets_after(20)] == [21, 22, 23, 24, 25]
    assert ring.packets_after(25) == [] and not ring.wait(25, 0.01)
