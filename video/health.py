"""Camera health as monitoring points: online, fps, bitrate, keyframe age, frozen seconds.

`HealthMeter` turns a source's counters into one sample per health point (streams.config
CAMERA_HEALTH order); the manager publishes them on the hub each second, so "video offline"
(bad quality of the online point) and "picture frozen" are ordinary alarm rules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from streams.config import CAMERA_HEALTH
from streams.quality import Quality
from video.source import SourceSettings, SourceStats

NS = 1_000_000_000
HEALTH_SUFFIXES = tuple(h[0] for h in CAMERA_HEALTH)
_N = len(HEALTH_SUFFIXES)


@dataclass(frozen=True, slots=True)
class Health:
    """One reading of a camera's health, in CAMERA_HEALTH order."""

    online: bool
    fps: float
    kbps: float
    keyframe_age_s: float
    frozen_s: float

    @property
    def values(self) -> tuple[float, ...]:
        return (float(self.online), self.fps, self.kbps, self.keyframe_age_s, self.frozen_s)

    @property
    def qualities(self) -> tuple[Quality, ...]:
        """Offline: every point COMM_FAIL (通讯中断), which the online point's rule alarms on."""
        if not self.online:
            return (Quality.COMM_FAIL,) * _N
        return tuple(Quality.GOOD if not math.isnan(v) else Quality.UNCERTAIN for v in self.values)

    def as_dict(self) -> dict[str, float | bool | None]:
        return {
            "online": self.online,
            "fps": _num(self.fps),
            "bitrate_kbps": _num(self.kbps),
            "keyframe_age_s": _num(self.keyframe_age_s),
            "frozen_s": _num(self.frozen_s),
        }


def _num(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 2)


class HealthMeter:
    """Rates from the counters' change between two readings (the caller's period)."""

    def __init__(self, settings: SourceSettings) -> None:
        self.settings = settings
        self._last: tuple[int, int, int] | None = None  # (ns, packets, bytes)

    def read(self, stats: SourceStats, continuous: bool, now_ns: int) -> Health:
        s = self.settings
        last, self._last = self._last, (now_ns, stats.packets, stats.bytes)
        nan = math.nan
        # Full rate: online while packets keep coming. Low rate: while the last short pull
        # worked and the next one is not overdue.
        stall_ns = int(max(2.0, s.read_timeout_s) * NS)
        live = stats.connected and now_ns - stats.last_packet_ns < stall_ns
        if continuous:
            online = live
            fps = kbps = nan
            if last is not None and now_ns > last[0] and online:
                seconds = (now_ns - last[0]) / NS
                fps = (stats.packets - last[1]) / seconds
                kbps = (stats.bytes - last[2]) * 8 / 1000 / seconds
        else:
            # The rates of the last complete short pull (a connection starts with a burst).
            overdue = s.idle_every_s + s.idle_pull_s + s.open_timeout_s + s.backoff_min_s
            recent = stats.idle_ok_ns > 0 and now_ns - stats.idle_ok_ns < overdue * NS
            online = live or recent
            fps, kbps = stats.idle_fps, stats.idle_kbps
        if not online:
            return Health(False, nan, nan, nan, nan)
        keyframe_age = (now_ns - stats.last_keyframe_ns) / NS if stats.last_keyframe_ns else nan
        frozen = nan
        if stats.picture_probed_ns:
            frozen = (stats.picture_probed_ns - stats.picture_changed_ns) / NS
        return Health(True, fps, kbps, keyframe_age if live else nan, frozen)
