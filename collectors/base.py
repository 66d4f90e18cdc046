"""What every device collector shares: status, failure logged once, backoff, COMM_FAIL batches.

One DeviceCollector owns one device connection (Home Assistant's coordinator discipline): a
failure is logged the first time and the recovery the first time, never on every poll.
"""

from __future__ import annotations

import asyncio
import logging
import random
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from streams import Hub, Quality, SampleBatch, now_ns
from streams.config import Device, PointConfig

log = logging.getLogger("anjian.collectors")


def raise_if_cancelled() -> None:
    """Raise CancelledError when the current task has a cancellation pending.

    Python 3.11's asyncio.wait_for (inside pymodbus, aiomqtt and asyncua) can swallow a
    cancellation that arrives with the awaited reply, and a client's clean-up can replace it with
    its own error; a reconnect or poll loop that went on after either would never stop. Call it
    after such calls and in the loop's error handler.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


@dataclass(frozen=True, slots=True)
class BoundPoint:
    """A configured point with the id the store gave it."""

    id: int
    config: PointConfig


@dataclass
class CollectorStatus:
    enterprise: str
    device: str
    protocol: str
    up: bool | None = None  # None until the first attempt
    last_success_ns: int = 0
    last_error: str | None = None
    failures: int = 0  # attempts that failed since start
    reads: int = 0  # successful reads (polls, notifications or messages)
    samples: int = 0
    rejected: dict[str, int] = field(default_factory=dict)  # malformed input by reason

    def as_dict(self) -> dict[str, object]:
        return {
            "enterprise": self.enterprise,
            "device": self.device,
            "protocol": self.protocol,
            "up": self.up,
            "last_success_ns": self.last_success_ns,
            "last_error": self.last_error,
            "failures": self.failures,
            "reads": self.reads,
            "samples": self.samples,
            "rejected": dict(self.rejected),
        }


class Backoff:
    """Exponential backoff with full jitter: 'initial, 2×, 4× … max', each drawn in [d/2, d]."""

    def __init__(self, initial: float = 0.5, maximum: float = 30.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self._attempt = 0

    def reset(self) -> None:
        self._attempt = 0

    def next_delay(self) -> float:
        d = min(self.maximum, self.initial * (2**self._attempt))
        self._attempt += 1
        return random.uniform(d / 2, d)


class DeviceCollector(ABC):
    """Reads one device and publishes its samples as SampleBatches on the hub."""

    def __init__(
        self,
        enterprise: str,
        device: Device,
        point_ids: Mapping[str, int],
        hub: Hub,
        *,
        backoff: Backoff | None = None,
    ) -> None:
        self.enterprise = enterprise
        self.device = device
        self.hub = hub
        self.points = [BoundPoint(point_ids[p.code], p) for p in device.points]
        self.point_array = np.array([p.id for p in self.points], np.int32)
        # The device's communication-status point (streams.config `link_point`), when it has an
        # id: 1 at the first success and at each recovery, COMM_FAIL with the points' failure.
        self.link = point_ids.get(device.link_code)
        self.backoff = backoff or Backoff()
        self.status = CollectorStatus(enterprise, device.code, device.protocol)
        self._name = f"{enterprise}/{device.code}"

    @abstractmethod
    async def run(self) -> None:
        """Collect until cancelled. Never raises for a device or network failure."""

    async def publish(self, batch: SampleBatch) -> None:
        self.status.samples += len(batch)
        await self.hub.publish(batch)

    async def succeeded(self, *, quiet: bool = False) -> None:
        """Record a successful read; log the recovery once (`quiet`: said already, e.g. for a
        broker shared by many devices). The first success and each recovery set the link."""
        came_up = self.status.up is not True
        if self.status.up is False and not quiet:
            log.info("%s: communication restored (%s)", self._name, self.device.protocol)
        self.status.up = True
        self.status.last_error = None
        self.status.last_success_ns = now_ns()
        self.status.reads += 1
        self.backoff.reset()
        if came_up and self.link is not None:
            await self.hub.publish(SampleBatch.of(now_ns(), [self.link], [1.0], Quality.GOOD))

    async def failed(self, exc: BaseException | str) -> None:
        """Record a failed attempt: COMM_FAIL on every point of the device, logged once."""
        reason = exc if isinstance(exc, str) else (str(exc) or type(exc).__name__)
        if self.status.up is not False:
            log.warning("%s: communication lost (%s): %s", self._name, self.device.protocol, reason)
        self.status.up = False
        self.status.last_error = reason
        self.status.failures += 1
        await self.publish(self.comm_fail())

    def comm_fail(self) -> SampleBatch:
        """COMM_FAIL, now, for every point of the device and its link."""
        ids = self.point_array if self.link is None else np.append(self.point_array, self.link)
        return SampleBatch.of(now_ns(), ids, np.full(len(ids), np.nan), Quality.COMM_FAIL)

    async def sleep_backoff(self) -> None:
        await asyncio.sleep(self.backoff.next_delay())
