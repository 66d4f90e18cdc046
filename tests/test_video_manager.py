"""VideoManager: health points on the hub, the low-rate mode of a camera nobody needs, demand
through want/release, snapshots of a low-rate camera, and the alarm rules on health points."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator

import numpy as np
import pytest

from alarms.evaluator import EvalState, evaluate, tick
from alarms.model import AlarmClass, Condition
from alarms.rules import RuleArrays
from anjian.video import camera_rules
from streams import Hub, Quality, SampleBatch
from streams.config import Camera, parse_config
from tests.video_kit import RtspServer
from video.manager import CameraSpec, VideoManager
from video.settings import VideoSettings, VideoSettingsError, video_settings

NS = 1_000_000_000
HEALTH = (11, 12, 13, 14, 15)  # online, fps, bitrate, keyframe age, frozen


def _spec(url: str, linked: tuple[int, ...] = ()) -> CameraSpec:
    camera = Camera(code="CAM1", name="罐区", url=url, points=["P"] if linked else [])
    return CameraSpec("7", "E1", camera, linked, HEALTH)


@contextlib.asynccontextmanager
async def _running(manager: VideoManager) -> AsyncIterator[None]:
    task = asyncio.create_task(manager.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _until_online(manager: VideoManager, camera: str, timeout: float) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = manager.health(camera)
        if health["online"]:
            return health
        await asyncio.sleep(0.2)
    raise AssertionError(f"camera not online within {timeout} s: {manager.health(camera)}")


async def test_health_points_reach_the_hub_and_a_camera_nobody_needs_is_pulled_briefly(
    rtsp_server: RtspServer,
) -> None:
    hub = Hub()
    sub = hub.subscribe("test")
    settings = VideoSettings(idle_every_s=30, idle_pull_s=2, health_every_s=0.5)
    manager = VideoManager([_spec(rtsp_server.url())], settings, hub)
    async with _running(manager):
        health = await _until_online(manager, "7", 30)
        assert health["mode"] == "low"
        batch = await asyncio.wait_for(sub.get(), 5)
        assert batch is not None and batch.point.tolist() == list(HEALTH)
        while (batch := await asyncio.wait_for(sub.get(), 5)) is not None:
            if batch.value[0] == 1.0 and batch.quality[1] == Quality.GOOD:
                break  # online, and a short pull has measured the rates
        assert batch is not None and batch.quality[0] == Quality.GOOD
        assert 15 <= batch.value[1] <= 35  # fps of the short pull
        source = manager._cameras["7"].source
        count = source.stats.packets
        await asyncio.sleep(2.5)
        assert source.stats.packets <= count + 5  # no full-rate pull between short ones

        # A snapshot wants the camera for a moment: a current picture, then back to low rate.
        snap = await manager.snapshot("7")
        assert snap.jpeg[:2] == b"\xff\xd8" and time.time_ns() - snap.taken_ns < 3 * NS
        release = manager.want("7", "live")
        assert manager.health("7")["mode"] == "full"
        assert manager.health("7")["wanted_by"] == ["live", "snapshot"]
        release()
        release()  # twice is harmless
        assert manager.health("7")["wanted_by"] == ["snapshot"]


async def test_camera_with_linked_points_is_always_pulled_and_offline_is_comm_fail(
    rtsp_server: RtspServer,
) -> None:
    hub = Hub()
    settings = VideoSettings(read_timeout_s=2, backoff_max_s=2, health_every_s=0.5)
    manager = VideoManager([_spec(rtsp_server.url(), linked=(3,))], settings, hub)
    async with _running(manager):
        health = await _until_online(manager, "7", 30)
        assert health["mode"] == "full" and health["codec"] == "h264"
        rtsp_server.kill()
        for _ in range(50):
            await asyncio.sleep(0.2)
            if not manager.health("7")["online"]:
                break
        latest = hub.latest.get(list(HEALTH))
        await asyncio.sleep(1)
        latest = hub.latest.get(list(HEALTH))
        assert latest.value[0] == 0 and (latest.quality == Quality.COMM_FAIL).all()
        rtsp_server.start()
        await _until_online(manager, "7", 30)


def test_health_rules_raise_video_offline_and_picture_frozen() -> None:
    rules = camera_rules([_spec("rtsp://127.0.0.1/x")], VideoSettings(offline_alarm_s=30))
    arrays = RuleArrays.build(rules)
    t0 = 1_800_000_000 * NS
    state = EvalState.initial(arrays, t0)
    online, frozen = HEALTH[0], HEALTH[4]

    def feed(at_s: float, values: list[float], quality: int = Quality.GOOD) -> set[object]:
        batch = SampleBatch.of(t0 + int(at_s * NS), [online, frozen], values, quality)
        changes = evaluate(arrays, state, batch)[1]
        return {(c.point, c.condition, c.active) for c in changes}

    assert feed(0, [1.0, 0.0]) == set()
    assert feed(1, [0.0, math.nan], Quality.COMM_FAIL) == set()  # not before offline_alarm_s
    changes = tick(arrays, state, t0 + 32 * NS)[1]
    assert [(c.point, c.condition, c.active) for c in changes] == [
        (online, Condition.BAD_QUALITY, True)
    ]
    assert feed(40, [1.0, 121.0]) == {
        (online, Condition.BAD_QUALITY, False),
        (frozen, Condition.H, True),  # frozen_alarm_s defaults to 120 s
    }
    assert arrays.class_of(frozen, Condition.H) is AlarmClass.QUALITY
    assert arrays.class_of(online, Condition.BAD_QUALITY) is AlarmClass.QUALITY


def test_camera_config_is_checked() -> None:
    base = """
[[enterprises]]
code = "E1"
name = "x"
region = "370600"
[[enterprises.devices]]
code = "D1"
protocol = "mqtt"
[[enterprises.devices.points]]
code = "P"
name = "p"
[[enterprises.cameras]]
code = "{code}"
name = "c"
url = "{url}"
points = ["P"]
[mqtt]
"""
    cfg = parse_config(base.format(code="CAM1", url="rtsp://u:p@10.0.0.1/ch1"))
    assert [p.code for _, _, p in cfg.camera_points()][:2] == ["CAM1.online", "CAM1.fps"]
    with pytest.raises(Exception, match="rtsp"):
        parse_config(base.format(code="CAM1", url="http://10.0.0.1/ch1"))
    with pytest.raises(Exception, match="D1"):
        parse_config(base.format(code="D1", url="rtsp://10.0.0.1/ch1"))
    with pytest.raises(VideoSettingsError, match="pre_alarm_s"):
        video_settings({"pre_alarm_s": -1})
    assert video_settings({}).ring_seconds == 30
    assert np.isfinite(video_settings({"frozen_alarm_s": 5}).frozen_alarm_s)
