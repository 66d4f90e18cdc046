"""Live view: fragmented MP4 from the packet ring, shared per camera, decoded back with PyAV and
played by Debian's Chromium through Media Source Extensions."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from aiohttp import ClientSession, WSMsgType, WSServerHandshakeError, web
from aiohttp.test_utils import TestClient
from playwright.async_api import Browser, Page, Route, expect

import video.live
import web.video_live
from anjian.runtime import Running
from tests.conftest import DUTY, ENTERPRISE, close_code_sent, free_port, serving, sign_in
from tests.test_page import browser  # noqa: F401 - the fixture is shared
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


async def test_a_viewer_joining_a_long_keyframe_interval_is_not_taken_for_a_slow_one(
    service: tuple[LiveService, PacketRing, list[str]],
) -> None:
    live, ring, _ = service
    camera = _Camera(ring, _encoded(100, gop=100))  # one keyframe in 4 s
    async with live.watch("C1") as first:
        await camera.play(0, 81, fps=500)
        async with live.watch("C1") as late:
            await camera.play(81, 15, fps=500)  # arrive before the late viewer reads anything
            messages = await _take(late, 2 + 80 + 15)
            assert late.dropped == 0
            assert len(_decode(messages)) == 95  # frames 0..94 (95 leaves with frame 96)
        assert first.dropped > 0  # nobody read the first one: it waits for the next keyframe


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


# ---- the route and the console's view in the real application and a real browser -------------

CONFIG = """
[[regions]]
code = "320500"
province = "江苏省"
city = "苏州市"

[[enterprises]]
code = "E9"
name = "测试化工有限公司"
region = "320500"

  [[enterprises.hazard_sources]]
  code = "HS1"
  name = "液氨储罐区"

  [[enterprises.devices]]
  code = "PLC1"
  protocol = "modbus"
  host = "127.0.0.1"
  port = {plc_port}
  period_s = 1.0
  timeout_s = 0.5
  hazard_source = "HS1"

    [[enterprises.devices.points]]
    code = "TK1.LT"
    name = "1号储罐液位"
    unit = "m"
    table = "holding"
    address = 0
    data_type = "int16"
    scale = 0.01

  [[enterprises.cameras]]
  code = "CAM1"
  name = "储罐区东北角"
  url = "{url9}"
  hazard_source = "HS1"
  position = "1号储罐区东北角"
  points = ["TK1.LT"]

[[enterprises]]
code = "E8"
name = "另一化工有限公司"
region = "320500"

  [[enterprises.cameras]]
  code = "CAM2"
  name = "装卸台"
  url = "{url8}"
"""


@dataclass
class VideoApp:
    client: TestClient[web.Request, web.Application]
    cameras: dict[str, str]  # code → id
    server: RtspServer
    run: Running


@pytest.fixture
async def video_app(
    database_url: str, tmp_path: Path, rtsp_server_factory: type[RtspServer]
) -> AsyncIterator[VideoApp]:
    server = rtsp_server_factory(("cam9=E9 CAM1", "cam8=E8 CAM2"))
    server.start()
    config = tmp_path / "plant.toml"
    config.write_text(
        CONFIG.format(url9=server.url("cam9"), url8=server.url("cam8"), plc_port=free_port()),
        encoding="utf-8",
    )
    async with serving(config, database_url, "E9") as served:
        client: TestClient[web.Request, web.Application] = TestClient(served.server)
        await client.start_server()
        try:
            await sign_in(client, *DUTY)
            listed = await (await client.get("/api/cameras")).json()
            cameras = {c["code"]: str(c["id"]) for c in listed["cameras"]}
            yield VideoApp(client, cameras, server, served.run)
        finally:
            await client.close()


async def test_live_route_needs_a_session_and_hides_other_enterprises_cameras(
    video_app: VideoApp,
) -> None:
    app = video_app
    ws = await app.client.ws_connect(f"/ws/cameras/{app.cameras['CAM1']}/live")
    first = await asyncio.wait_for(ws.receive(), 20)
    assert first.type == WSMsgType.TEXT  # a codec (or a status while it connects)
    while (message := await asyncio.wait_for(ws.receive(), 20)).type == WSMsgType.TEXT:
        assert '"codec"' in message.data or '"status"' in message.data, message.data
    assert message.type == WSMsgType.BINARY and message.data[4:8] == b"ftyp"
    await ws.close()

    async with ClientSession() as anonymous:
        url = app.client.make_url(f"/ws/cameras/{app.cameras['CAM1']}/live")
        with pytest.raises(WSServerHandshakeError) as refused:
            await anonymous.ws_connect(url)
        assert refused.value.status == 401

    app.client.session.cookie_jar.clear()
    await sign_in(app.client, *ENTERPRISE)  # bound to E9
    ws = await app.client.ws_connect(f"/ws/cameras/{app.cameras['CAM1']}/live")
    await ws.close()
    with pytest.raises(WSServerHandshakeError) as hidden:
        await app.client.ws_connect(f"/ws/cameras/{app.cameras['CAM2']}/live")
    assert hidden.value.status == 404
    with pytest.raises(WSServerHandshakeError) as unknown:
        await app.client.ws_connect("/ws/cameras/999999/live")
    assert unknown.value.status == 404


async def test_live_view_closes_when_its_session_ends(
    video_app: VideoApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(web.video_live, "SESSION_CHECK_S", 0.1)
    video_app.client.session.cookie_jar.clear()
    csrf = await sign_in(video_app.client, *DUTY)
    ws = await video_app.client.ws_connect(f"/ws/cameras/{video_app.cameras['CAM1']}/live")
    assert (await asyncio.wait_for(ws.receive(), 20)).type == WSMsgType.TEXT
    r = await video_app.client.post("/api/auth/logout", headers={"X-CSRF-Token": csrf})
    assert r.status == 200
    assert await close_code_sent(ws) == 4401


async def test_an_unlinked_camera_is_pulled_at_full_rate_only_while_somebody_watches(
    video_app: VideoApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(video.live, "LINGER_S", 0.5)
    app, camera = video_app, video_app.cameras["CAM2"]  # watches no point: low rate when idle

    async def health() -> dict[str, object]:
        answer: dict[str, object] = (await (await app.client.get(f"/api/cameras/{camera}")).json())[
            "health"
        ]
        return answer

    assert (await health())["mode"] == "low"
    ws = await app.client.ws_connect(f"/ws/cameras/{camera}/live")
    assert (await health())["wanted_by"] == ["live"]
    assert (await health())["mode"] == "full"
    while (message := await asyncio.wait_for(ws.receive(), 30)).type == WSMsgType.TEXT:
        pass  # a status while the camera connects, then the codec
    assert message.type == WSMsgType.BINARY and message.data[4:8] == b"ftyp"
    await ws.close()
    deadline = time.monotonic() + 10
    while (await health())["mode"] != "low":
        assert time.monotonic() < deadline, "still pulled at full rate after the viewer left"
        await asyncio.sleep(0.2)
    assert (await health())["wanted_by"] == []


LIVE_PAGE = Path(__file__).parent / "live_page"
SCREENSHOTS = Path(__file__).parent / "output" / "screenshots"
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8"}


async def _open(
    chromium: Browser,
    app: VideoApp,
    *,
    user: tuple[str, str] = DUTY,
    mse: bool = True,
) -> tuple[Page, list[str]]:
    """A signed-in page of tests/live_page served as if by the app, under the app's CSP; it
    imports the console's own modules from the app."""
    csp = (await app.client.get("/static/camera.css")).headers["Content-Security-Policy"]
    # The page is fulfilled by the test, not fetched: Chromium cannot tell it came from the
    # loopback server and would hold its connections to 127.0.0.1 to the Local Network Access
    # checks. The console's real pages come from the server itself and need no permission.
    context = await chromium.new_context(
        viewport={"width": 1280, "height": 800}, permissions=["local-network-access"]
    )
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    async def from_test_folder(route: Route) -> None:
        name = route.request.url.split("?", 1)[0].rsplit("/", 1)[1]
        file = LIVE_PAGE / name
        await route.fulfill(
            body=file.read_bytes(),
            headers={"Content-Type": _TYPES[file.suffix], "Content-Security-Policy": csp},
        )

    await page.route("**/live-test/*", from_test_folder)
    if not mse:
        await page.add_init_script("delete window.MediaSource; delete window.ManagedMediaSource;")
    base = str(app.client.make_url("/")).rstrip("/")
    signed = await page.request.post(
        f"{base}/api/auth/login", data={"username": user[0], "password": user[1]}
    )
    assert signed.ok, await signed.text()
    return page, errors


async def _until(page: Page, expression: str, timeout: float) -> None:
    """Poll a page expression (evaluated over CDP: the page's CSP forbids eval in it)."""
    deadline = time.monotonic() + timeout
    while not await page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"{expression} still false after {timeout} s")
        await asyncio.sleep(0.1)


async def _shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


async def test_live_view_plays_in_chromium_and_its_current_time_advances(
    video_app: VideoApp,
    browser: Browser,  # noqa: F811
) -> None:
    page, errors = await _open(browser, video_app)
    camera = video_app.cameras["CAM1"]
    await page.goto(str(video_app.client.make_url(f"/live-test/index.html?camera={camera}")))
    view = page.locator(f".camera-view:has(video[data-camera='{camera}'])")
    await expect(view).to_have_attribute("data-state", "live", timeout=30_000)
    await expect(view.locator(".camera-state")).to_have_text("实时")
    await _until(page, "window.cameraTest.view.video.currentTime > 0.5", 20)
    before = await page.evaluate("window.cameraTest.view.video.currentTime")
    await asyncio.sleep(1.5)
    after = await page.evaluate("window.cameraTest.view.video.currentTime")
    assert after - before > 0.8, (before, after)  # plays in real time (catch-up rate ≤ 1.1)
    size = await page.evaluate(
        "[window.cameraTest.view.video.videoWidth, window.cameraTest.view.video.videoHeight]"
    )
    assert size == [1280, 720]
    # It stays near the live edge: the newest buffered frame is less than a second ahead.
    lag = await page.evaluate(
        "(() => { const v = window.cameraTest.view.video; const b = v.buffered;"
        " return b.end(b.length - 1) - v.currentTime; })()"
    )
    assert 0 <= lag < 1.0
    await _shot(page, "camera_view_live")
    assert errors == []
    await page.context.close()


async def test_without_media_source_the_view_refreshes_jpeg_snapshots(
    video_app: VideoApp,
    browser: Browser,  # noqa: F811
) -> None:
    page, errors = await _open(browser, video_app, mse=False)
    camera = video_app.cameras["CAM1"]
    await page.goto(str(video_app.client.make_url(f"/live-test/index.html?camera={camera}")))
    view = page.locator(".camera-view")
    await expect(view).to_have_attribute("data-state", "snapshot", timeout=30_000)
    image = view.locator("img.camera-snapshot")
    first = await image.get_attribute("src")
    await _until(page, "document.querySelector('img.camera-snapshot').naturalWidth === 1280", 10)
    # Refreshed: another URL (a new time parameter) a second later.
    await _until(
        page, f"document.querySelector('img.camera-snapshot').src.indexOf({first!r}) < 0", 5
    )
    await _shot(page, "camera_view_snapshot")
    assert errors == []
    await page.context.close()


async def test_camera_wall_shows_the_cameras_a_user_may_see_live(
    video_app: VideoApp,
    browser: Browser,  # noqa: F811
) -> None:
    page, errors = await _open(browser, video_app)
    await page.goto(str(video_app.client.make_url("/live-test/wall.html")))
    tiles = page.locator(".camera-tile")
    await expect(tiles).to_have_count(2, timeout=20_000)
    for tile in await tiles.all():
        await expect(tile.locator(".camera-view")).to_have_attribute(
            "data-state", "live", timeout=30_000
        )
    await expect(page.locator(".cameras-page h2")).to_have_text("视频监控")
    await expect(page.locator(".camera-tile").first.locator(".camera-meta")).to_contain_text(
        "1号储罐区东北角"
    )
    await _shot(page, "camera_wall")
    await page.evaluate("window.cameraTest.setLang('en')")
    await expect(page.locator(".cameras-page h2")).to_have_text("Cameras")
    await expect(page.locator(".camera-state").first).to_have_text("Live")
    await page.locator("button[data-layout='1']").click()
    await expect(tiles).to_have_count(1)
    await expect(page.locator(".camera-page")).to_have_text("Page 1 of 2")
    assert errors == []
    await page.context.close()

    # An enterprise user's wall holds its own enterprise's camera only.
    page, errors = await _open(browser, video_app, user=ENTERPRISE)
    await page.goto(str(video_app.client.make_url("/live-test/wall.html")))
    await expect(page.locator(".camera-tile")).to_have_count(1, timeout=20_000)
    assert (
        await page.locator(".camera-tile").get_attribute("data-camera") == video_app.cameras["CAM1"]
    )
    assert errors == []
    await page.context.close()


async def test_alarm_detail_slot_shows_the_linked_camera_live(
    video_app: VideoApp,
    browser: Browser,  # noqa: F811
) -> None:
    point = video_app.run.points.id("E9", "TK1.LT")
    page, errors = await _open(browser, video_app)
    await page.goto(str(video_app.client.make_url(f"/live-test/alarm.html?alarm=1&point={point}")))
    views = page.locator(".alarm-media .camera-view")
    await expect(views).to_have_count(1, timeout=20_000)  # CAM1 watches TK1.LT; CAM2 does not
    await expect(views).to_have_attribute("data-state", "live", timeout=30_000)
    await expect(page.locator(".alarm-media h3")).to_have_text("关联摄像机实时画面")
    # No clip was saved for this alarm: the evidence boxes stay hidden.
    await expect(page.locator(".alarm-media > figure")).to_have_count(2)
    for box in await page.locator(".alarm-media > figure").all():
        await expect(box).to_be_hidden()
    await _shot(page, "alarm_media")
    assert errors == []
    await page.context.close()
