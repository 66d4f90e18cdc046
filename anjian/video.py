"""Video wiring for the supervisor: the alarm rules on cameras' health points, and the demo's
simulated cameras (GStreamer's RTSP server under the system Python, when it can run here).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from alarms.model import AlarmClass
from alarms.rules import BadQuality, PointRule, Priorities
from collectors.sim.rtsp_server import GST_PACKAGES
from streams.config import Camera, Config, Enterprise
from video.health import HEALTH_SUFFIXES
from video.manager import CameraSpec
from video.settings import VideoSettings

log = logging.getLogger("anjian.video")
GST_PYTHON = os.environ.get("ANJIAN_GST_PYTHON", "/usr/bin/python3")
RTSP_SERVER = Path(__file__).resolve().parents[1] / "collectors" / "sim" / "rtsp_server.py"
# The demo's cameras: small pictures, so three live encoders stay light on a laptop.
DEMO_SIZE = (640, 360)


def camera_rules(cameras: Sequence[CameraSpec], settings: VideoSettings) -> list[PointRule]:
    """ "Video offline": bad quality (COMM_FAIL) of the online point for `offline_alarm_s`.
    "Picture frozen": the frozen point (seconds unchanged) above `frozen_alarm_s`. Both are
    quality alarms; fps, bitrate and keyframe age are recorded, not alarmed."""
    rules: list[PointRule] = []
    for spec in cameras:
        ids = dict(zip(HEALTH_SUFFIXES, spec.health_points, strict=True))
        tag = f"{spec.enterprise}/{spec.camera.code}"
        rules.append(
            PointRule(
                point=ids["online"],
                tag=f"{tag}.online",
                alarm_class=AlarmClass.VIDEO,
                bad_quality=BadQuality(after_s=settings.offline_alarm_s),
            )
        )
        rules.append(
            PointRule(
                point=ids["frozen"],
                tag=f"{tag}.frozen",
                alarm_class=AlarmClass.QUALITY,
                h=settings.frozen_alarm_s,
                priority=Priorities(h=Priorities().quality),
            )
        )
    return rules


def gstreamer_available() -> bool:
    """Whether the system Python can run the simulated cameras (GStreamer's RTSP server)."""
    probe = (
        "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0');"
        "from gi.repository import Gst, GstRtspServer"
    )
    try:
        done = subprocess.run([GST_PYTHON, "-c", probe], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@contextlib.asynccontextmanager
async def demo_cameras(cfg: Config) -> AsyncIterator[Config]:
    """The demo config with one simulated camera per enterprise (its name and the time on the
    picture), watching its gas detectors; unchanged when GStreamer cannot run here."""
    if not cfg.enterprises or not await asyncio.to_thread(gstreamer_available):
        log.warning(
            "demo cameras off: %s cannot import GStreamer's RTSP server (Debian packages %s; "
            "./run installs them as root)",
            GST_PYTHON,
            GST_PACKAGES,
        )
        yield cfg
        return
    mounts = [a for e in cfg.enterprises for a in ("--mount", f"{e.code}={e.name}")]
    width, height = DEMO_SIZE
    process = await asyncio.create_subprocess_exec(
        GST_PYTHON, str(RTSP_SERVER), *mounts, "--width", str(width), "--height", str(height),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        if not line.startswith("ready "):
            raise RuntimeError(f"the demo camera server did not start: {line!r}")
        port = int(line.split()[1])
        log.info("demo cameras: rtsp://127.0.0.1:%d/<enterprise>", port)
        enterprises = [
            e.model_copy(update={"cameras": [*e.cameras, _demo_camera(e, port)]})
            for e in cfg.enterprises
        ]
        yield cfg.model_copy(update={"enterprises": enterprises})
    finally:
        if process.returncode is None:
            process.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 10)
            if process.returncode is None:
                process.kill()
                await process.wait()


def _demo_camera(enterprise: Enterprise, port: int) -> Camera:
    gas = [p.code for d in enterprise.devices for p in d.points if p.kind == "gas" or p.gas]
    source = enterprise.hazard_sources[0].code if enterprise.hazard_sources else None
    return Camera(
        code="CAM-DEMO",
        name=f"{enterprise.name} 全景",
        url=f"rtsp://127.0.0.1:{port}/{enterprise.code}",
        hazard_source=source,
        points=gas,
        position="模拟摄像机 (测试图像)",
    )
