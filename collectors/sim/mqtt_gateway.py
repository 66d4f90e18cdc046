"""A simulated enterprise MQTT gateway publishing the plant's values as a real one would.

Each device's values go to {prefix}/{enterprise}/{device}/data every period_s, QoS 1.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Literal

import aiomqtt

from collectors.base import Backoff, raise_if_cancelled
from streams.config import MqttDevice, MqttSettings

log = logging.getLogger("anjian.sim.mqtt")


class MqttSimGateway:
    """Publishes `read_values(device_code)` for each device; `pause()` makes the gateway silent."""

    def __init__(
        self,
        settings: MqttSettings,
        enterprise: str,
        devices: Sequence[MqttDevice],
        read_values: Callable[[str], Mapping[str, float]],
        *,
        ts_format: Literal["epoch_ms", "rfc3339"] = "epoch_ms",
    ) -> None:
        self.settings = settings
        self.enterprise = enterprise
        self.devices = list(devices)
        self.read_values = read_values
        self.ts_format = ts_format
        self.published = 0
        self._running = asyncio.Event()
        self._running.set()
        self._prefix = settings.topic_prefix.rstrip("/")
        self._points = {d.code: {p.code: p for p in d.points} for d in self.devices}

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def topic(self, device_code: str) -> str:
        return f"{self._prefix}/{self.enterprise}/{device_code}/data"

    async def run(self) -> None:
        s = self.settings
        backoff = Backoff()
        while True:
            try:
                async with aiomqtt.Client(
                    s.host,
                    s.port,
                    username=s.username,
                    password=s.password,
                    identifier=f"anjian-sim-{self.enterprise}-{uuid.uuid4().hex[:8]}",
                    timeout=10,
                ) as client:
                    backoff.reset()
                    async with asyncio.TaskGroup() as tg:
                        for device in self.devices:
                            tg.create_task(self._publish_loop(client, device))
            except* aiomqtt.MqttError as group:
                raise_if_cancelled()  # the client's clean-up may have replaced it
                log.warning(
                    "simulated gateway %s: broker lost: %s", self.enterprise, group.exceptions[0]
                )
            await asyncio.sleep(backoff.next_delay())

    async def _publish_loop(self, client: aiomqtt.Client, device: MqttDevice) -> None:
        period = device.period_s
        next_at = time.monotonic()
        while True:
            await self._running.wait()
            await client.publish(self.topic(device.code), self.payload(device.code), qos=1)
            raise_if_cancelled()  # one that came with the PUBACK
            self.published += 1
            next_at = max(next_at + period, time.monotonic())
            await asyncio.sleep(next_at - time.monotonic())

    def payload(self, device_code: str) -> bytes:
        now = time.time_ns()
        ts: str | int
        if self.ts_format == "epoch_ms":
            ts = now // 1_000_000
        else:
            ts = datetime.fromtimestamp(now / 1e9, UTC).isoformat(timespec="milliseconds")
        points = self._points[device_code]
        # The gateway sends raw readings of its configured points; the centre applies scale/offset.
        values = {
            code: (float(v) - points[code].offset) / points[code].scale
            for code, v in self.read_values(device_code).items()
            if code in points
        }
        return json.dumps({"ts": ts, "values": values}).encode()
