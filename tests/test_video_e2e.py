"""Video end to end through the real runtime, PostgreSQL, the simulated plant and a real RTSP
camera: the camera API (credentials redacted, enterprise scoping), snapshots, the clip saved
for an alarm on a linked point, and "video offline" raised when the camera dies and cleared
when it returns, fed to the warning model."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import av
import pytest
from aiohttp import ClientSession, CookieJar

from anjian.runtime import Running
from collectors.sim.runner import Simulator
from streams import SampleBatch, now_ns
from tests.conftest import DUTY, ENTERPRISE, serving, sign_in
from tests.video_kit import RtspServer

PRE_S, POST_S = 3.0, 4.0
VIDEO = f"""
[video]
pre_alarm_s = {PRE_S}
post_alarm_s = {POST_S}
offline_alarm_s = 2.0
read_timeout_s = 2.0
backoff_max_s = 2.0
"""
LINKED = "TK101.TT"  # tank temperature, H 40 °C


def _camera(url: str) -> str:
    return f"""
[[enterprises.cameras]]
code = "CAM1"
name = "1号罐区"
url = "{url}"
hazard_source = "{{source}}"
points = ["{LINKED}"]
position = "罐区东北角"
"""


async def _until(check: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.25)


@pytest.fixture
async def site(
    database_url: str, tmp_path: Path, rtsp_server_factory: type[RtspServer]
) -> AsyncIterator[tuple[RtspServer, Running, ClientSession]]:
    camera = rtsp_server_factory(("tank=E1 罐区",), user="admin", password="s3cret-pw")
    camera.start()
    sim = Simulator(mqtt=None)
    await sim.start()
    text = sim.config_toml
    cut = text.index("[[enterprises]]", text.index('code = "E1"'))
    source = text[text.index("[[enterprises.hazard_sources]]") :].split('code = "', 1)[1]
    source = source.split('"', 1)[0]
    text = text[:cut] + _camera(camera.url("tank")).format(source=source) + "\n" + text[cut:]
    config = tmp_path / "plant.toml"
    config.write_text(text + VIDEO, encoding="utf-8")
    try:
        async with (
            serving(config, database_url, "E2") as served,
            ClientSession(served.url, cookie_jar=CookieJar(unsafe=True)) as http,
        ):
            await sign_in(http, *DUTY)
            yield camera, served.run, http
    finally:
        await sim.stop()


async def _get(http: ClientSession, path: str) -> Any:
    async with http.get(path) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def test_camera_api_snapshot_clip_and_offline_alarm(
    site: tuple[RtspServer, Running, ClientSession],
) -> None:
    camera, run, http = site
    [cam] = (await _get(http, "/api/cameras"))["cameras"]
    assert cam["url"] == f"rtsp://127.0.0.1:{camera.port}/tank"  # no user, no password
    assert "s3cret" not in str(await _get(http, f"/api/cameras/{cam['id']}"))
    assert cam["points"] == [run.points.id("E1", LINKED)]
    assert cam["health"]["mode"] == "full"  # a linked point: always pulled at full rate

    async def online() -> bool:
        health = (await _get(http, f"/api/cameras/{cam['id']}"))["health"]
        return bool(health["online"]) and (health["fps"] or 0) > 15

    await _until(online, 30, "the camera online at 25 fps")
    async with http.get(f"/api/cameras/{cam['id']}/snapshot.jpg") as r:
        assert r.status == 200 and r.content_type == "image/jpeg"
        with av.open(io.BytesIO(await r.read())) as jpeg:
            frame = next(jpeg.decode(video=0))
        assert (frame.width, frame.height) == (1280, 720)

    # The seconds before an alarm must be in the ring before the alarm can have them.
    ring = run.video.ring(cam["id"])
    assert ring is not None

    async def buffered() -> bool:
        held = ring.window(0, None)
        return held is not None and held.seconds >= PRE_S + 1.0

    await _until(buffered, 30, f"{PRE_S + 1.0} s of video in the ring")

    # An alarm on the linked point: the clip from 3 s before to 4 s after it.
    point = run.points.id("E1", LINKED)
    await run.hub.publish(SampleBatch.of(now_ns(), [point], [80.0]))

    async def alarm_id() -> int | None:
        alarms = (await _get(http, "/api/alarms?state=unack,acked,rtn_unack"))["alarms"]
        return next((a["id"] for a in alarms if a["point"] == point), None)

    alarm = await _until(alarm_id, 10, "the H alarm on the linked point")
    await _until(lambda: _has(http, f"/api/alarms/{alarm}/clip.mp4"), 60, "the clip")
    async with http.get(f"/api/alarms/{alarm}/clip.mp4") as r:
        assert r.content_type == "video/mp4"
        clip = await r.read()
    with av.open(io.BytesIO(clip)) as mp4:
        video = mp4.streams.video[0]
        duration = float(video.duration * video.time_base)
        frames = sum(1 for _ in mp4.decode(video))
    assert duration == pytest.approx(PRE_S + POST_S, abs=1.0)
    assert frames == pytest.approx(duration * 25, abs=3)
    async with http.get(f"/api/alarms/{alarm}/snapshot.jpg") as r:
        assert r.status == 200 and r.content_type == "image/jpeg"

    # Another enterprise's user sees neither the camera nor the evidence.
    other = ClientSession(str(http._base_url), cookie_jar=CookieJar(unsafe=True))
    async with other:
        await sign_in(other, *ENTERPRISE)
        assert (await _get(other, "/api/cameras"))["cameras"] == []
        for path in (f"/api/cameras/{cam['id']}", f"/api/cameras/{cam['id']}/snapshot.jpg"):
            async with other.get(path) as r:
                assert r.status == 404
        async with other.get(f"/api/alarms/{alarm}/clip.mp4") as r:
            assert r.status == 404

    # The camera dies: "video offline" (bad quality of its online point), and the warning
    # model's video_offline input; it returns: the alarm clears.
    online_point = run.points.id("E1", "CAM1.online")
    camera.kill()

    async def offline_alarm() -> dict[str, Any] | None:
        alarms = (await _get(http, "/api/alarms"))["alarms"]
        return next((a for a in alarms if a["point"] == online_point and a["active"]), None)

    raised = await _until(offline_alarm, 30, "the video offline alarm")
    assert raised["condition"] == "BAD_QUALITY" and raised["class"] == "quality"
    inputs = run.warnings.inputs(now_ns())
    [e1] = [e for e in inputs.enterprises if e.code == "E1"]
    assert any("CAM1" in s.cameras_offline for s in e1.sources)
    camera.start()

    async def cleared() -> bool:
        view = await _get(http, f"/api/alarms/{raised['id']}")
        return not view["active"]

    await _until(cleared, 40, "the video offline alarm to clear")


async def _has(http: ClientSession, path: str) -> bool:
    async with http.get(path) as r:
        return r.status == 200
