"""Pulling a real RTSP camera: packets without decoding, health, snapshots, frozen pictures,
reconnection after the camera restarts, the low-rate mode, and clips remuxed to MP4."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import pytest

from streams.config import redact_url
from tests.video_kit import RtspServer
from video.clips import write_mp4
from video.health import HealthMeter
from video.ring import PacketRing
from video.snapshot import Snapshotter
from video.source import CameraSource, SourceSettings

NS = 1_000_000_000


def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def pull() -> Iterator[Callable[..., CameraSource]]:
    started: list[CameraSource] = []

    def start(url: str, ring: PacketRing | None = None, **settings: float | str) -> CameraSource:
        source = CameraSource("test", SourceSettings(url, **settings), ring or PacketRing())  # type: ignore[arg-type]
        source.start()
        started.append(source)
        return source

    yield start
    for source in started:
        source.stop(wait_s=10)


def test_redact_url_removes_credentials() -> None:
    assert (
        redact_url("rtsp://admin:s3cr%40t@10.0.0.5:554/h264/ch1") == "rtsp://10.0.0.5:554/h264/ch1"
    )
    assert redact_url("rtsp://10.0.0.5/x") == "rtsp://10.0.0.5/x"
    # Recorders that take credentials as query parameters (Dahua's realmonitor URLs).
    assert (
        redact_url(
            "rtsp://10.0.0.6:554/cam/realmonitor?channel=1&subtype=0&user=admin&password=S3c"
        )
        == "rtsp://10.0.0.6:554/cam/realmonitor?channel=1&subtype=0&user=***&password=***"
    )
    assert redact_url("rtsp://h/s?token=abc&Pwd=x&keep") == "rtsp://h/s?token=***&Pwd=***&keep"


def test_pull_fills_the_ring_with_whole_frames_and_health_reads_25_fps(
    rtsp_server_factory: type[RtspServer], pull: Callable[..., CameraSource]
) -> None:
    server = rtsp_server_factory(("cam1=pull",), user="viewer", password="p@ss:w/rd")
    server.start()
    source = pull(server.url())
    meter = HealthMeter(source.settings)
    _until(lambda: source.stats.packets > 10, 20, "the first packets")
    meter.read(source.stats, True, time.time_ns())
    time.sleep(3)
    health = meter.read(source.stats, True, time.time_ns())
    assert health.online
    assert 18 <= health.fps <= 32, health
    assert 300 <= health.kbps <= 5000, health
    assert 0 <= health.keyframe_age_s < 2.5
    packets = source.ring.packets_after(0)
    # One packet per frame: timestamps strictly increase (RTP slices were joined).
    pts = [p.pts for p in packets]
    assert all(b > a for a, b in itertools.pairwise(pts))
    assert packets[-1].stream.codec == "h264" and packets[-1].stream.width == 1280
    keys = [p for p in packets if p.keyframe]
    assert len(keys) >= 2  # one a second (the server's GOP is 25 frames)


def test_wrong_password_is_an_error_without_the_password(
    rtsp_server_factory: type[RtspServer],
    pull: Callable[..., CameraSource],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = rtsp_server_factory(("cam1",), user="viewer", password="right")
    server.start()
    bad = server.url().replace(":right@", ":wrong-secret@")
    with caplog.at_level(logging.INFO, "anjian.video"):
        source = pull(bad)
        _until(lambda: source.stats.failures >= 1, 20, "a failed connection")
    assert "401" in source.stats.last_error or "nauthorized" in source.stats.last_error
    assert "wrong-secret" not in source.stats.last_error
    assert "wrong-secret" not in caplog.text and "unreachable" in caplog.text
    assert source.stats.packets == 0


async def test_snapshot_is_a_current_jpeg_cached_for_at_most_a_second(
    rtsp_server: RtspServer, pull: Callable[..., CameraSource]
) -> None:
    source = pull(rtsp_server.url())
    await asyncio.to_thread(_until, lambda: source.ring.latest_keyframe() is not None, 20, "key")
    snaps = Snapshotter(source.ring)
    first, again = await asyncio.gather(snaps.get(), snaps.get())
    assert first is again  # one decode for concurrent requests
    assert first.jpeg[:2] == b"\xff\xd8" and first.jpeg[-2:] == b"\xff\xd9"
    with av.open(__import__("io").BytesIO(first.jpeg)) as jpeg:
        frame = next(jpeg.decode(video=0))
    assert (frame.width, frame.height) == (1280, 720)
    assert (await snaps.get()) is first  # within the second: the cached picture
    await asyncio.sleep(2.1)
    later = await snaps.get()
    assert later is not first and later.taken_ns > first.taken_ns


def test_camera_killed_goes_offline_and_comes_back_after_restart(
    rtsp_server: RtspServer, pull: Callable[..., CameraSource]
) -> None:
    source = pull(rtsp_server.url(), read_timeout_s=2.0, backoff_min_s=0.5, backoff_max_s=2.0)
    meter = HealthMeter(source.settings)
    _until(lambda: meter.read(source.stats, True, time.time_ns()).online, 20, "online")
    rtsp_server.kill()
    _until(lambda: not meter.read(source.stats, True, time.time_ns()).online, 10, "offline")
    failures = source.stats.failures
    time.sleep(2)
    assert source.stats.failures > failures  # it keeps trying, with backoff
    connects = source.stats.connects
    rtsp_server.start()
    _until(lambda: meter.read(source.stats, True, time.time_ns()).online, 20, "back online")
    assert source.stats.connects == connects + 1
    # The new connection is a new segment: slices never mix the two.
    part = source.ring.snapshot_from_keyframe(60)
    assert part is not None and {p.stream for p in part.packets} == {part.stream}


def test_still_picture_counts_as_frozen_a_moving_one_does_not(
    rtsp_server_factory: type[RtspServer], pull: Callable[..., CameraSource]
) -> None:
    server = rtsp_server_factory(("moving",), still=("still",), width=640, height=360)
    server.start()
    still = pull(server.url("still"), probe_every_s=1.0)
    moving = pull(server.url("moving"), probe_every_s=1.0)
    meter_still, meter_moving = HealthMeter(still.settings), HealthMeter(moving.settings)
    time.sleep(1)
    _until(
        lambda: still.stats.picture_probed_ns - still.stats.picture_changed_ns > 3 * NS,
        30,
        "frozen",
    )
    assert meter_still.read(still.stats, True, time.time_ns()).frozen_s >= 3
    assert meter_moving.read(moving.stats, True, time.time_ns()).frozen_s < 1.5


def test_low_rate_mode_pulls_briefly_and_stays_online(
    rtsp_server: RtspServer, pull: Callable[..., CameraSource]
) -> None:
    ring = PacketRing()
    source = CameraSource(
        "idle", SourceSettings(rtsp_server.url(), idle_every_s=30, idle_pull_s=1.5), ring
    )
    source.set_continuous(False)
    source.start()
    try:
        _until(lambda: source.stats.idle_ok_ns > 0, 20, "a short pull")
        assert not source.stats.connected
        meter = HealthMeter(source.settings)
        health = meter.read(source.stats, False, time.time_ns())
        assert health.online and 15 <= health.fps <= 35
        count = source.stats.packets
        time.sleep(1.5)
        assert source.stats.packets == count  # not pulling between short pulls
        source.set_continuous(True)  # somebody wants it: full rate at once
        _until(lambda: source.stats.packets > count + 25, 20, "full rate")
    finally:
        source.stop(wait_s=10)


def test_clip_is_remuxed_without_reencoding_and_decodes(
    rtsp_server: RtspServer, pull: Callable[..., CameraSource], tmp_path: Path
) -> None:
    source = pull(rtsp_server.url())
    _until(lambda: source.stats.packets > 5 * 25 + 10, 30, "5 s of video")
    now = time.time_ns()
    part = source.ring.window(now - 4 * NS, now)
    assert part is not None
    target = tmp_path / "clip.mp4"
    seconds = write_mp4(part.stream, part.packets, str(target))
    assert 4 <= seconds <= 5.2
    with av.open(str(target)) as clip:
        video = clip.streams.video[0]
        assert video.codec_context.name == "h264"
        duration = float(video.duration * video.time_base)
        frames = sum(1 for _ in clip.decode(video))
        demuxed = [bytes(p) for p in av.open(str(target)).demux(video=0) if p.size]
    assert duration == pytest.approx(seconds, abs=0.1)
    assert frames == len(part.packets)
    # Not re-encoded: the frames' compressed sizes are the camera's (plus NAL length prefixes).
    assert abs(sum(map(len, demuxed)) - sum(len(p.data) for p in part.packets)) < 0.02 * sum(
        len(p.data) for p in part.packets
    )
