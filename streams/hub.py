"""The in-process hub: lossless subscribers with backpressure, and coalesced latest values.

The store and the alarm engine subscribe losslessly: `publish` waits while any of their
queues is full. Viewers (WebSocket clients) only read `Hub.latest`, which is updated in
place by `publish` and can never slow ingest.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from streams.batch import SampleBatch, now_ns
from streams.quality import Quality

_CLOSED = object()


class Subscription:
    """A lossless, ordered stream of batches for one consumer."""

    def __init__(self, hub: Hub, name: str, maxsize: int) -> None:
        self.name = name
        self._hub = hub
        self._queue: asyncio.Queue[object] = asyncio.Queue(maxsize)

    async def _put(self, item: object) -> None:
        await self._queue.put(item)

    def task_done(self) -> None:
        self._queue.task_done()

    async def join(self) -> None:
        """Wait until every batch received so far has been taken and marked done."""
        await self._queue.join()

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    async def get(self) -> SampleBatch | None:
        """The next batch, or None once the subscription is closed and drained."""
        item = await self._queue.get()
        if item is _CLOSED:
            self._queue.task_done()
            return None
        assert isinstance(item, SampleBatch)
        return item

    def __aiter__(self) -> AsyncIterator[SampleBatch]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[SampleBatch]:
        while (batch := await self.get()) is not None:
            try:
                yield batch
            finally:
                self._queue.task_done()

    def close(self) -> None:
        self._hub._unsubscribe(self)
        try:
            self._queue.put_nowait(_CLOSED)
        except asyncio.QueueFull:
            asyncio.get_running_loop().create_task(self._queue.put(_CLOSED))


@dataclass(frozen=True, slots=True)
class Latest:
    """Latest known values of some points (a copy, safe to keep)."""

    point: npt.NDArray[np.int32]
    ts: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]
    quality: npt.NDArray[np.uint8]


class LatestValues:
    """The latest sample of every point, kept in dense arrays indexed by point id."""

    def __init__(self, capacity: int = 1024) -> None:
        self._ts = np.zeros(capacity, np.int64)
        self._value = np.full(capacity, np.nan)
        self._quality = np.full(capacity, Quality.BAD, np.uint8)
        self.version = 0
        self._changed = asyncio.Event()
        self._waiters = 0

    def _grow(self, needed: int) -> None:
        size = max(needed, 2 * len(self._ts))
        extra = size - len(self._ts)
        self._ts = np.concatenate([self._ts, np.zeros(extra, np.int64)])
        self._value = np.concatenate([self._value, np.full(extra, np.nan)])
        self._quality = np.concatenate([self._quality, np.full(extra, Quality.BAD, np.uint8)])

    def update(self, batch: SampleBatch) -> None:
        if not len(batch):
            return
        top = int(batch.point.max()) + 1
        if top > len(self._ts):
            self._grow(top)
        # Within a batch a point's samples are in time order; keep the newest per point
        # (and never let an older batch overwrite a newer value).
        newer = batch.ts >= self._ts[batch.point]
        p = batch.point[newer]
        self._ts[p] = batch.ts[newer]
        self._value[p] = batch.value[newer]
        self._quality[p] = batch.quality[newer]
        self.version += 1
        if self._waiters:  # an Event per publish costs; make one only when somebody waits
            self._changed.set()
            self._changed = asyncio.Event()

    def get(self, points: npt.ArrayLike) -> Latest:
        p = np.asarray(points, np.int32)
        inside = p < len(self._ts)
        ts = np.zeros(len(p), np.int64)
        value = np.full(len(p), np.nan)
        quality = np.full(len(p), Quality.BAD, np.uint8)
        ts[inside] = self._ts[p[inside]]
        value[inside] = self._value[p[inside]]
        quality[inside] = self._quality[p[inside]]
        return Latest(p, ts, value, quality)

    async def wait_changed(self, since: int, timeout: float | None = None) -> int:
        """Wait until the version moves past `since` (or the timeout); return the version."""
        if self.version == since:
            event = self._changed
            self._waiters += 1
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), timeout)
            finally:
                self._waiters -= 1
        return self.version


class Hub:
    """Publish/subscribe of SampleBatches inside one process."""

    def __init__(self) -> None:
        self._subs: list[Subscription] = []
        self.latest = LatestValues()
        self.samples_published = 0
        self.batches_published = 0
        self.last_publish_ns = 0
        self.last_sample_ts_ns = 0

    def subscribe(self, name: str, maxsize: int = 64) -> Subscription:
        """A lossless subscriber: `publish` waits for it when its queue is full."""
        sub = Subscription(self, name, maxsize)
        self._subs.append(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    async def publish(self, batch: SampleBatch) -> None:
        if not len(batch):
            return
        self.latest.update(batch)
        self.samples_published += len(batch)
        self.batches_published += 1
        self.last_publish_ns = now_ns()
        self.last_sample_ts_ns = max(self.last_sample_ts_ns, int(batch.ts.max()))
        for sub in list(self._subs):
            await sub._put(batch)

    @property
    def subscribers(self) -> list[str]:
        return [s.name for s in self._subs]
