"""The hub: lossless subscribers get every batch in order with backpressure; viewers never block."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from streams import Hub, Quality, SampleBatch


def batch(ts: int, points: list[int], values: list[float]) -> SampleBatch:
    return SampleBatch.of(ts, points, values)


def test_batch_refuses_wrong_dtypes_and_ragged_columns() -> None:
    with pytest.raises(TypeError, match="point must be 1-D int32"):
        SampleBatch(
            np.zeros(2, np.int64), np.zeros(2, np.int64), np.zeros(2), np.zeros(2, np.uint8)
        )
    with pytest.raises(ValueError, match="value has 3 rows, ts has 2"):
        SampleBatch(
            np.zeros(2, np.int64), np.zeros(2, np.int32), np.zeros(3), np.zeros(2, np.uint8)
        )


def test_batch_of_broadcasts_time_and_quality_and_concat_keeps_order() -> None:
    a = SampleBatch.of(5, [1, 2], [1.0, 2.0], Quality.UNCERTAIN)
    b = SampleBatch.of([6, 7], [3, 4], [3.0, 4.0])
    both = SampleBatch.concat([a, b])
    assert both.ts.tolist() == [5, 5, 6, 7]
    assert both.point.tolist() == [1, 2, 3, 4]
    assert both.quality.tolist() == [1, 1, 0, 0]
    assert len(SampleBatch.concat([])) == 0


async def test_lossless_subscriber_gets_every_batch_in_order() -> None:
    hub = Hub()
    sub = hub.subscribe("store", maxsize=4)
    sent = [batch(i, [1], [float(i)]) for i in range(50)]

    async def consume() -> list[int]:
        got = []
        async for b in sub:
            got.append(int(b.ts[0]))
        return got

    consumer = asyncio.create_task(consume())
    for b in sent:
        await hub.publish(b)
    sub.close()
    assert await consumer == list(range(50))


async def test_full_lossless_subscriber_applies_backpressure() -> None:
    hub = Hub()
    sub = hub.subscribe("store", maxsize=2)
    await hub.publish(batch(1, [1], [1.0]))
    await hub.publish(batch(2, [1], [2.0]))
    third = asyncio.create_task(hub.publish(batch(3, [1], [3.0])))
    await asyncio.sleep(0.05)
    assert not third.done()  # the publisher waits for the slow consumer
    first = await sub.get()
    assert first is not None and first.ts[0] == 1
    sub.task_done()
    await asyncio.wait_for(third, 1)
    assert sub.backlog == 2


async def test_viewers_read_coalesced_latest_without_slowing_publish() -> None:
    hub = Hub()
    for i in range(1000):
        await hub.publish(batch(i, [3, 7], [float(i), -float(i)]))
    latest = hub.latest.get([7, 3, 5000])
    assert latest.value[:2].tolist() == [-999.0, 999.0]
    assert latest.ts[:2].tolist() == [999, 999]
    # A point never seen reads as BAD with no value.
    assert latest.quality[2] == Quality.BAD and np.isnan(latest.value[2])


async def test_latest_keeps_newest_when_an_older_batch_arrives_late() -> None:
    hub = Hub()
    await hub.publish(batch(200, [1], [2.0]))
    await hub.publish(batch(100, [1], [1.0]))
    assert hub.latest.get([1]).value[0] == 2.0


async def test_wait_changed_wakes_on_publish() -> None:
    hub = Hub()
    version = hub.latest.version
    waiter = asyncio.create_task(hub.latest.wait_changed(version, timeout=5))
    await asyncio.sleep(0.01)
    await hub.publish(batch(1, [1], [1.0]))
    assert await asyncio.wait_for(waiter, 1) == version + 1
    assert await hub.latest.wait_changed(version + 1, timeout=0.01) == version + 1
