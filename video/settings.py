"""The [video] table of the configuration file: ring length, clip times, health alarm delays."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Seconds = Annotated[float, Field(gt=0, le=3600, allow_inf_nan=False)]


class VideoSettings(BaseModel):
    """Defaults suit a 720p25 H.264 camera with a keyframe every 1-2 s."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ring_seconds: Seconds = 30.0  # packets kept per camera (a camera may set its own)
    pre_alarm_s: Annotated[float, Field(ge=0, le=300)] = 10.0  # clip before the alarm
    post_alarm_s: Annotated[float, Field(gt=0, le=300)] = 20.0  # clip after it
    open_timeout_s: Seconds = 10.0
    read_timeout_s: Seconds = 5.0
    backoff_max_s: Seconds = 30.0
    probe_every_s: Seconds = 5.0  # frozen-picture check: one decoded keyframe this often
    # "video offline" is a bad-quality alarm on the camera's online point after this long.
    offline_alarm_s: Annotated[float, Field(ge=0, le=86_400)] = 30.0
    # "picture frozen": the picture unchanged for this long (H limit on the frozen point).
    frozen_alarm_s: Annotated[float, Field(gt=0, le=86_400)] = 120.0
    # A camera nobody watches and no linked point needs is pulled only this often, briefly.
    idle_every_s: Seconds = 60.0
    idle_pull_s: Seconds = 4.0
    health_every_s: Seconds = 1.0


class VideoSettingsError(ValueError):
    pass


def video_settings(table: Mapping[str, Any]) -> VideoSettings:
    """Validate a [video] table; the error names each bad key and value."""
    try:
        return VideoSettings.model_validate(table)
    except ValidationError as exc:
        raise VideoSettingsError(
            "invalid [video] settings: "
            + "; ".join(
                f"[video].{'.'.join(str(x) for x in err['loc'])}: {err['msg']} "
                f"(got {err.get('input')!r})"
                for err in exc.errors(include_url=False)
            )
        ) from None
