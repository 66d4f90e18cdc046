"""MQTT ingest: enterprises' gateways publish JSON to {prefix}/{enterprise}/{device}/data.

One broker connection for all gateway devices; messages are parsed on arrival, published in batches.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import aiomqtt
import numpy as np

from collectors.base import Backoff, CollectorStatus, DeviceCollector, raise_if_cancelled
from streams import Hub, Quality, SampleBatch, now_ns
from streams.config import MqttDevice, MqttSettings

log = logging.getLogger("anjian.collectors.mqtt")

REJECT_LOG_INTERVAL_S = 60.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
# Epoch milliseconds outside 2000..2100 are a gateway bug (often seconds sent as milliseconds).
_MS_LOW, _MS_HIGH = 946_684_800_000, 4_102_444_800_000


def parse_ts(ts: object) -> int:
    """A payload's ts (RFC 3339 string or epoch milliseconds) as int64 ns; ValueError if bad."""
    if isinstance(ts, str):
        try:
            dt = datetime.fromisoformat(ts)
        except ValueError:
            raise ValueError(f"ts {ts!r} is not an RFC 3339 date-time") from None
        if dt.tzinfo is None:
            raise ValueError(f"ts {ts!r} has no UTC offset")
        return (dt - _EPOCH) // _US * 1000
    if isinstance(ts, int | float) and not isinstance(ts, bool):
        if not (math.isfinite(ts) and _MS_LOW <= ts < _MS_HIGH):
            raise ValueError(f"ts {ts!r} is not epoch milliseconds between 2000 and 2100")
        return int(ts) * 1_000_000 if isinstance(ts, int) else round(ts * 1e6)
    raise ValueError(f"ts {ts!r} is neither an RFC 3339 string nor epoch milliseconds")


class _GatewayDevice(DeviceCollector):
    """One gateway device's status; `run` watches for silence (messages come via MqttIngest)."""

    device: MqttDevice

    def __init__(
        self,
        enterprise: str,
        device: MqttDevice,
        point_ids: Mapping[str, int],
        hub: Hub,
        first_slot: int,
    ) -> None:
        super().__init__(enterprise, device, point_ids, hub)
        self.slots = {p.config.code: first_slot + i for i, p in enumerate(self.points)}
        self.last_message = time.monotonic()
        self.broker_down = False
        self._next_reject_log = 0.0

    async def run(self) -> None:
        silence = self.device.loss_report_s
        while True:
            remaining = self.last_message + silence - time.monotonic()
            if remaining > 0:
                await asyncio.sleep(remaining)
                continue
            if self.status.up is not False:
                await self.failed(
                    f"no message for {silence:g} s (period {self.device.period_s:g} s)"
                )
            await asyncio.sleep(self.device.period_s)

    def reject(self, reason: str, detail: str) -> None:
        self.status.rejected[reason] = self.status.rejected.get(reason, 0) + 1
        now = time.monotonic()
        if now >= self._next_reject_log:
            self._next_reject_log = now + REJECT_LOG_INTERVAL_S
            log.warning(
                "%s: rejected MQTT input (%s): %s (counted in health; next log in %g s)",
                self._name,
                reason,
                detail,
                REJECT_LOG_INTERVAL_S,
            )


class MqttIngest:
    """Subscribes `{prefix}/+/+/data` (QoS 1) and turns gateway messages into SampleBatches."""

    def __init__(
        self,
        settings: MqttSettings,
        devices: Sequence[tuple[str, MqttDevice, Mapping[str, int]]],
        hub: Hub,
        *,
        linger_s: float = 0.01,
        backoff: Backoff | None = None,
    ) -> None:
        self.settings = settings
        self.hub = hub
        self.linger_s = linger_s
        self.backoff = backoff or Backoff()
        self._prefix = settings.topic_prefix.rstrip("/") + "/"
        self._devices: dict[tuple[str, str], _GatewayDevice] = {}
        slot = 0
        for enterprise, device, point_ids in devices:
            gw = _GatewayDevice(enterprise, device, point_ids, hub, slot)
            self._devices[enterprise, device.code] = gw
            slot += len(gw.points)
        gws = list(self._devices.values())
        cfgs = [p.config for gw in gws for p in gw.points]
        self._point = np.concatenate([gw.point_array for gw in gws] or [np.empty(0, np.int32)])
        self._scale = np.array([c.scale for c in cfgs], np.float64)
        self._offset = np.array([c.offset for c in cfgs], np.float64)
        self._low = np.array([c.range[0] if c.range else -math.inf for c in cfgs], np.float64)
        self._high = np.array([c.range[1] if c.range else math.inf for c in cfgs], np.float64)
        self.statuses: list[CollectorStatus] = [gw.status for gw in gws]
        # Messages for devices that are not configured, by reason.
        self.rejected: dict[str, int] = {}
        self.connected = False
        self._next_unknown_log = 0.0
        self._slot: list[int] = []
        self._ts: list[int] = []
        self._val: list[float] = []
        self._recovered: set[_GatewayDevice] = set()
        self._pending = asyncio.Event()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._flush_loop(), name="mqtt-flush")
            for gw in self._devices.values():
                tg.create_task(gw.run(), name=f"mqtt-silence {gw.enterprise}/{gw.device.code}")
            tg.create_task(self._connection_loop(), name="mqtt-connection")

    async def _connection_loop(self) -> None:
        s = self.settings
        ingest = self

        class _Sink(asyncio.Queue[aiomqtt.Message]):
            # aiomqtt hands every message to its queue's put_nowait from the socket callback;
            # parsing right there avoids a task and a queue round trip per message.
            def put_nowait(self, item: aiomqtt.Message) -> None:
                ingest._on_message(item)

        lost_logged = False
        while True:
            try:
                async with aiomqtt.Client(
                    s.host,
                    s.port,
                    username=s.username,
                    password=s.password,
                    identifier=f"anjian-ingest-{uuid.uuid4().hex[:12]}",
                    queue_type=_Sink,
                    keepalive=10,
                    timeout=10,
                ) as client:
                    await client.subscribe(f"{self._prefix}+/+/data", qos=1)
                    raise_if_cancelled()  # one that came with the CONNACK or SUBACK
                    if lost_logged:
                        log.info("MQTT broker %s:%s: connection restored", s.host, s.port)
                    lost_logged = False
                    self.connected = True
                    self.backoff.reset()
                    now = time.monotonic()
                    for gw in self._devices.values():
                        gw.last_message = max(gw.last_message, now)
                    async for _ in client.messages:
                        pass  # the sink parsed it; this only waits for a disconnection
            except aiomqtt.MqttError as exc:
                raise_if_cancelled()  # the client's clean-up may have replaced it
                self.connected = False
                if not lost_logged:
                    log.warning(
                        "MQTT broker %s:%s: connection lost (%s); %d gateway devices COMM_FAIL",
                        s.host,
                        s.port,
                        exc,
                        len(self._devices),
                    )
                    lost_logged = True
                await self._broker_lost(f"MQTT broker {s.host}:{s.port}: {exc}")
            await asyncio.sleep(self.backoff.next_delay())

    async def _broker_lost(self, reason: str) -> None:
        await self._flush()
        batches = []
        for gw in self._devices.values():
            gw.status.failures += 1
            gw.status.last_error = reason
            if gw.status.up is not False:
                # Logged once above for all devices, not once per device.
                gw.status.up = False
                gw.broker_down = True
                batches.append(gw.comm_fail())
        batch = SampleBatch.concat(batches)
        if len(batch):
            await self.hub.publish(batch)

    def _on_message(self, message: aiomqtt.Message) -> None:
        try:
            self._parse(message)
        except Exception:
            log.exception("MQTT ingest: unexpected error on a message to %s", message.topic.value)

    def _parse(self, message: aiomqtt.Message) -> None:
        topic = message.topic.value
        parts = topic[len(self._prefix) :].split("/")
        gw = self._devices.get((parts[0], parts[1])) if len(parts) == 3 else None
        if gw is None:
            self._reject_unknown(topic)
            return
        payload = message.payload
        try:
            doc = json.loads(payload) if isinstance(payload, bytes | str) else None
        except ValueError:
            gw.reject("not_json", f"payload {_clip(payload)} is not JSON")
            return
        values = doc.get("values") if isinstance(doc, dict) else None
        if not isinstance(values, dict):
            gw.reject("bad_shape", f'payload {_clip(payload)} is not {{"ts": …, "values": {{…}}}}')
            return
        try:
            ts = parse_ts(doc.get("ts"))
        except ValueError as exc:
            gw.reject("bad_ts", str(exc))
            return
        gw.last_message = time.monotonic()
        if gw.status.up is True:
            gw.status.reads += 1
            gw.status.last_success_ns = now_ns()
        else:
            self._recovered.add(gw)
        accepted = 0
        for code, v in values.items():
            slot = gw.slots.get(code)
            if slot is None:
                gw.reject("unknown_point", f"point {code!r} (value {v!r}) is not configured")
                continue
            if isinstance(v, int | float) and math.isfinite(v):
                self._slot.append(slot)
                self._ts.append(ts)
                self._val.append(float(v))
                accepted += 1
            else:
                gw.reject("not_a_number", f"point {code!r}: value {v!r} is not a finite number")
        gw.status.samples += accepted
        self._pending.set()

    def _reject_unknown(self, topic: str) -> None:
        self.rejected["unknown_device"] = self.rejected.get("unknown_device", 0) + 1
        now = time.monotonic()
        if now >= self._next_unknown_log:
            self._next_unknown_log = now + REJECT_LOG_INTERVAL_S
            log.warning(
                "MQTT ingest: message on %r for a device that is not configured "
                "(counted in health; next log in %g s)",
                topic,
                REJECT_LOG_INTERVAL_S,
            )

    async def _flush_loop(self) -> None:
        while True:
            await self._pending.wait()
            # Under load many messages arrive within a few ms: publish them as one batch.
            await asyncio.sleep(self.linger_s)
            self._pending.clear()
            await self._flush()

    async def _flush(self) -> None:
        recovered, self._recovered = self._recovered, set()
        for gw in recovered:
            # The broker's recovery was logged once; the device needs no line of its own.
            await gw.succeeded(quiet=gw.broker_down)
            gw.broker_down = False
        if not self._slot:
            return
        slot = np.array(self._slot, np.intp)
        ts = np.array(self._ts, np.int64)
        raw = np.array(self._val, np.float64)
        self._slot, self._ts, self._val = [], [], []
        value = raw * self._scale[slot] + self._offset[slot]
        q = np.zeros(len(slot), np.uint8)
        q[(value < self._low[slot]) | (value > self._high[slot])] = Quality.OUT_OF_RANGE
        await self.hub.publish(SampleBatch(ts, self._point[slot], value, q))


def _clip(payload: object) -> str:
    text = repr(payload)
    return text if len(text) <= 120 else text[:117] + "..."
