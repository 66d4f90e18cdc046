"""Live view: fragmented MP4 from the packet ring, shared per camera, decoded back with PyAV and
played by Debian's Chromium through Media Source Extensions."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Callable, Iterator
from fractions import Fraction

import av
import numpy as np
import pytest

from tests.video_kit import RtspServer
from video.live import (
    Discontinuity,
    Fmp4Muxer,
    LiveService,
    Message,
    Viewer,
    codec_string,
)
from video.ring import PacketRing, StreamInfo
from video.source import CameraSource, SourceSettings

FPS = 25
GOP = 10


def _encoded(
    frames: int, *, gop: int = GOP, width: int = 320, height: int = 180
) -> list[tuple[bytes, int, bool]]:
    """H.264 access units (Annex B, parameter sets in band) of a moving bar: (data, pts, key)."""
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
    codec.time_base = Fraction(1, FPS)
    codec.framerate = Fraction(FPS)
    codec.options = {"g": str(gop), "bf": "0", "tune": "zerolatency", "preset": "ultrafast"}
    units: list[tuple[bytes, int, bool]] = []
    for i in range(frames):
        picture = np.zeros((height, width, 3), np.uint8)
        picture[:, (i * 8) % width :] = 200
        frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        units += [(bytes(p), p.pts or 0, p.is_keyframe) for p in codec.encode(frame)]
    units += [(bytes(p), p.pts or 0, p.is_keyframe) for p in codec.encode(None)]
    return units


STREAM = StreamInfo("h264", 320, 180, Fraction(1, FPS), b"", Fraction(FPS))


def _decode(messages: list[Message]) -> list[av.VideoFrame]:
    data = b"".join(m for m in messages if isinstance(m, bytes))
    with av.open(io.BytesIO(data), "r") as container:
        return list(container.decode(video=0))


async def _take(viewer: Viewer, count: int, timeout: float = 10.0) -> list[Message]:
    messages: list[Message] = []
    while len(messages) < count:
        message = await asyncio.wait_for(viewer.next(), timeout)
        assert message is not None, "the feed ended"
        messages.append(message)
    return messages


def _text(message: Message) -> str:
    assert isinstance(message, str), f"expected a text message, got {len(message)} bytes"
    return message


def _kinds(messages: list[Message]) -> list[str]:
    return [m[4:8].decode() if isinstance(m, bytes) else m for m in messages]


# ---- the muxer alone -------------------------------------------------------------------------


def test_muxer_output_is_an_init_segment_then_one_fragment_per_frame_that_pyav_decodes() -> None:
    units = _encoded(30)
    muxer = Fmp4Muxer(width=320, height=180, time_base=Fraction(1, FPS), extradata=None)
    fragments = [f for data, pts, key in units for f in muxer.push(data, pts, pts, key)]
    muxer.close()
    assert muxer.init.startswith(b"\x00\x00\x00") and muxer.init[4:8] == b"ftyp"
    assert b"moov" in muxer.init and b"moof" not in muxer.init
    assert all(f.data[4:8] == b"moof" for f in fragments)
    # Each fragment leaves when the next frame arrives: all but the last are out.
    assert len(fragments) == len(units) - 1
    assert [f.keyframe for f in fragments] == [key for _, _, key in units[:-1]]
    assert codec_string(muxer.init).startswith("avc1.")  # avc1.<profile><flags><level>
    frames = _decode([muxer.init, *[f.data for f in fragments]])
    assert len(frames) == len(fragments)
    assert (frames[0].width, frames[0].height) == (320, 180)


def test_muxer_starts_at_a_keyframe_and_refuses_time_going_backwards() -> None:
    units = _encoded(12)
    muxer = Fmp4Muxer(width=320, height=180, time_base=Fraction(1, FPS), extradata=None)
    assert muxer.push(units[1][0], 1, 1, False) == []  # no keyframe yet: dropped
    assert not muxer.started and muxer.init == b""
    muxer.push(units[0][0], 0, 0, True)
    muxer.push(units[1][0], 1, 1, False)
    with pytest.raises(Discontinuity):
        muxer.push(units[2][0], 1, 1, False)
    muxer.close()


def test_parameter_sets_given_out_of_band_are_put_in_front_of_a_keyframe() -> None:
    """Cameras that send SPS/PPS only in the SDP: the init segment still gets its avcC."""
    units = _encoded(3)
    key = units[0][0]
    # Split the keyframe's parameter sets (NAL 7 and 8) off, as an SDP would carry them.
    starts = [i for i in range(len(key) - 3) if key[i : i + 3] == b"\x00\x00\x01"]
    slices = [i for i in starts if key[i + 3] & 0x1F == 5]
    config, frame = key[: slices[0]], key[slices[0] :]
    assert config.startswith(b"\x00\x00\x00\x01") and frame.startswith(b"\x00\x00\x01")
    muxer = Fmp4Muxer(width=320, height=180, time_base=Fraction(1, FPS), extradata=config)
    fragments = muxer.push(frame, 0, 0, True) + muxer.push(units[1][0], 1, 1, False)
    muxer.close()
    assert b"avcC" in muxer.init
    assert len(_decode([muxer.init, *[f.data for f in fragments]])) == 1


# ---- feeds on a ring written by the test, as a camera's worker thread would ------------------


class _Camera:
    """A ring fed from a thread with encoded frames at 25 fps."""

    def __init__(self, ring: PacketRing, units: list[tuple[bytes, int, bool]]) -> None:
        self.ring = ring
        self.units = units
        ring.start_segment(STREAM)

    async def play(self, start: int, count: int, *, fps: float = FPS, offset: int = 0) -> None:
        for data, pts, key in self.units[start : start + count]:
            await asyncio.to_thread(self.ring.append, data, pts + offset, pts + offset, key)
            await asyncio.sleep(1 / fps)


@pytest.fixture
async def service() -> AsyncIterator[tuple[LiveService, PacketRing, list[str]]]:
    ring = PacketRing(30)
    claims: list[str] = []

    def want(camera: str, reason: str) -> Callable[[], None]:
        claims.append(f"want {camera} {reason}")
        return lambda: claims.append(f"release {camera}")

    live = LiveService(lambda c: ring if c == "C1" else None, want, linger_s=0.3)
    yield live, ring, claims
    live.close()


async def test_viewers_share_one_feed_and_a_late_viewer_starts_at_the_latest_keyframe(
    service: tuple[LiveService, PacketRing, list[str]],
) -> None:
    live, ring, _ = service
    camera = _Camera(ring, _encoded(60))
    async with live.watch("C1") as first:
        assert _kinds(await _take(first, 1)) == ['{"type": "status", "state": "waiting"}']
        await camera.play(0, 15)  # keyframes at 0 and 10
        head = await _take(first, 16)
        assert _text(head[0]).startswith('{"type": "codec"')
        assert 'codecs=\\"avc1.' in _text(head[0])
        assert _kinds(head)[1:3] == ["ftyp", "moof"]
        async with live.watch("C1") as second:
            # Joins with the codec, the init segment and frames 10..13 (the current GOP).
            joined = await _take(second, 6)
            assert _kinds(joined)[1] == "ftyp"
            frames = _decode(joined)
            assert len(frames) == 4 and frames[0].key_frame
            feed = live.feed("C1")
            assert feed is not None and feed.restarts == 1
            assert live.viewers("C1") == 2
            await camera.play(15, 10)
            assert len(_decode(joined + await _take(second, 10))) == 14
        assert len(_decode(head + await _take(first, 10))) == 24
    assert live.feed("C1") is None


async def test_demand_is_claimed_while_watched_and_released_after_the_linger(
    service: tuple[LiveService, PacketRing, list[str]],
) -> None:
    live, _, claims = service
    async with live.watch("C1"), live.watch("C1"):
        assert claims == ["want C1 live"]  # one claim per camera, not per viewer
    assert claims == ["want C1 live"]  # kept a while: a page reload finds the camera pulled
    async with live.watch("C1"):
        pass
    await asyncio.sleep(0.5)
    assert claims == ["want C1 live", "release C1"]
    with pytest.raises(LookupError):
        async with live.watch("nope"):
            pass


async def test_a_slow_viewer_is_emptied_and_restarts_at_the_next_keyframe(
    service: tuple[LiveService, PacketRing, list[str]],
) -> None:
    live, ring, _ = service
    camera = _Camera(ring, _encoded(90, gop=30))
    async with live.watch("C1") as slow:
        await _take(slow, 1)
        await camera.play(0, 85, fps=500)  # nobody reads: far beyond the backlog
        await asyncio.sleep(0.1)
        messages: list[Message] = []
        while True:
            try:
                message = await asyncio.wait_for(slow.next(), 0.2)
            except TimeoutError:
                break
            assert message is not None
            messages.append(message)
        assert slow.dropped > 0
        # What is left starts over at a keyframe (frame 60) with codec and init, and decodes.
        assert _kinds(messages)[1] == "ftyp"
        frames = _decode(messages)
        assert frames[0].key_frame and 0 < len(frames) <= 30


async def test_a_camera_reconnect_gives_viewers_a_new_init_segment(
    service: tuple[LiveService, PacketRing, list[str]],
) -> None:
    live, ring, _ = service
    camera = _Camera(ring, _encoded(20))
    async with live.watch("C1") as viewer:
        await _take(viewer, 1)
        await camera.play(0, 12)
        first = await _take(viewer, 13)
        ring.start_segment(StreamInfo("h264", 320, 180, Fraction(1, FPS), b""))  # reconnected
        await camera.play(10, 5, offset=-10)  # its clock starts again at 0
        again = await _take(viewer, 4)
        codec = [i for i, m in enumerate(again) if isinstance(m, str)]
        assert codec and _text(again[codec[0]]).startswith('{"type": "codec"')
        assert _kinds(again)[codec[0] + 1] == "ftyp"
        assert len(_decode(again[codec[0] :])) >= 1
        assert len(_decode(first)) == 11


# ---- a real RTSP camera ----------------------------------------------------------------------


@pytest.fixture
def camera_source(rtsp_server: RtspServer) -> Iterator[tuple[CameraSource, PacketRing]]:
    ring = PacketRing(10)
    source = CameraSource("cam1", SourceSettings(rtsp_server.url(), read_timeout_s=2), ring)
    source.start()
    yield source, ring
    source.stop(5)


async def test_rtsp_camera_live_feed_decodes_and_says_offline_when_the_camera_dies(
    rtsp_server: RtspServer, camera_source: tuple[CameraSource, PacketRing]
) -> None:
    _, ring = camera_source
    live = LiveService(lambda c: ring)
    try:
        async with live.watch("cam1") as viewer:
            messages = await _take(viewer, 2 + 2 * 25, timeout=20)
            codec = [m for m in messages if isinstance(m, str) and '"codec"' in m]
            assert codec and 'codecs=\\"avc1.42C0' in codec[0]  # constrained baseline
            frames = _decode(messages)
            assert len(frames) >= 45 and frames[0].key_frame
            assert (frames[0].width, frames[0].height) == (1280, 720)
            rtsp_server.kill()
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                message = await asyncio.wait_for(viewer.next(), 15)
                if message == '{"type": "status", "state": "offline"}':
                    break
            else:
                pytest.fail("no offline status after the camera died")
    finally:
        live.close()
