"""The Modbus TCP collector against real pymodbus servers over real TCP on localhost."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import numpy as np
import pytest

from collectors.base import Backoff
from collectors.modbus import DeviceUnavailable, ModbusCollector, plan_blocks
from collectors.sim.modbus_server import ModbusSimServer
from streams import Hub, Quality, SampleBatch, Subscription
from streams.config import ModbusDevice

PERIOD = 0.1


def device(code: str, points: list[dict[str, Any]], port: int = 502, **kw: Any) -> ModbusDevice:
    fields: dict[str, Any] = {"period_s": PERIOD, "timeout_s": 0.5}
    fields.update(kw)
    for p in points:
        p.setdefault("name", p["code"])
    return ModbusDevice.model_validate(
        {
            "protocol": "modbus",
            "code": code,
            "host": "127.0.0.1",
            "port": port,
            "points": points,
            **fields,
        }
    )


def ids(dev: ModbusDevice, base: int = 0) -> dict[str, int]:
    return {p.code: base + i for i, p in enumerate(dev.points)}


class Plant:
    """Live values by device and point, changed by the test."""

    def __init__(self, values: Mapping[str, Mapping[str, float]]) -> None:
        self.values = {d: dict(v) for d, v in values.items()}

    def read(self, device_code: str) -> Mapping[str, float]:
        return self.values[device_code]


@asynccontextmanager
async def serving(
    devices: list[ModbusDevice], plant: Plant, **kw: Any
) -> AsyncIterator[ModbusSimServer]:
    server = ModbusSimServer(devices, plant.read, **kw)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@asynccontextmanager
async def collecting(*collectors: ModbusCollector) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(c.run()) for c in collectors]
    try:
        yield
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def next_batch(sub: Subscription, timeout: float = 3.0) -> SampleBatch:
    batch = await asyncio.wait_for(sub.get(), timeout)
    assert batch is not None
    return batch


async def batch_where(sub: Subscription, predicate: Any, timeout: float = 5.0) -> SampleBatch:
    deadline = time.monotonic() + timeout
    while True:
        batch = await next_batch(sub, max(0.01, deadline - time.monotonic()))
        if predicate(batch):
            return batch


def on_port(dev: ModbusDevice, port: int) -> ModbusDevice:
    return dev.model_copy(update={"port": port})


# -- decoding over the wire ----------------------------------------------------------------

ALL_TYPES: list[tuple[str, float]] = [
    ("int16", -1234),
    ("uint16", 54321),
    ("int32", -123456789),
    ("uint32", 3_000_000_000),
    ("float32", 1234.5),
    ("float64", -9876.54321),
]


async def test_every_type_and_order_decodes_over_the_wire() -> None:
    points: list[dict[str, Any]] = []
    values: dict[str, float] = {}
    address = 0
    for table in ("holding", "input"):
        for data_type, value in ALL_TYPES:
            for bo in ("big", "little"):
                for wo in ("big", "little"):
                    code = f"{table[0]}_{data_type}_{bo[0]}{wo[0]}"
                    points.append(
                        {
                            "code": code,
                            "table": table,
                            "address": address,
                            "data_type": data_type,
                            "byte_order": bo,
                            "word_order": wo,
                        }
                    )
                    values[code] = value
                    address += 4
    for table in ("coil", "discrete"):
        for i, bit in enumerate([1.0, 0.0, 1.0, 1.0, 0.0]):
            code = f"{table}{i}"
            points.append({"code": code, "table": table, "address": 3 + 7 * i, "data_type": "bool"})
            values[code] = bit
    points.append(
        {
            "code": "scaled",
            "table": "holding",
            "address": 500,
            "data_type": "int16",
            "scale": 0.1,
            "offset": -40.0,
        }
    )
    values["scaled"] = 21.7
    dev = device("D1", points)
    plant = Plant({"D1": values})
    async with serving([dev], plant) as server:
        dev = on_port(dev, server.port)
        hub = Hub()
        sub = hub.subscribe("test")
        collector = ModbusCollector("E1", dev, ids(dev), hub)
        async with collecting(collector):
            batch = await next_batch(sub)
    expected = np.array([values[p.code] for p in dev.points])
    np.testing.assert_array_equal(batch.point, np.arange(len(points), dtype=np.int32))
    np.testing.assert_allclose(batch.value, expected, rtol=1e-7)
    assert (batch.quality == Quality.GOOD).all()
    assert len(set(batch.ts.tolist())) == 1
    assert collector.status.up is True and collector.status.reads >= 1


# -- block coalescing ----------------------------------------------------------------------


def float_points(count: int, start: int = 0, stride: int = 2) -> list[dict[str, Any]]:
    return [
        {"code": f"p{i}", "table": "holding", "address": start + stride * i, "data_type": "float32"}
        for i in range(count)
    ]


async def reads_per_poll(dev: ModbusDevice) -> int:
    plant = Plant({dev.code: {p.code: float(i) for i, p in enumerate(dev.points)}})
    async with serving([dev], plant) as server:
        dev = on_port(dev, server.port)
        hub = Hub()
        sub = hub.subscribe("test")
        collector = ModbusCollector("E1", dev, ids(dev), hub)
        async with collecting(collector):
            for _ in range(3):
                batch = await next_batch(sub)
            # The next poll waits for its tick, so the count is exactly three polls' worth.
            seen = server.requests[(dev.code, 3)]
        np.testing.assert_array_equal(batch.value, np.arange(len(dev.points), dtype=float))
    assert seen % 3 == 0
    return seen // 3


async def test_sixty_adjacent_registers_are_read_in_one_request() -> None:
    assert await reads_per_poll(device("D1", float_points(30))) == 1


async def test_more_than_125_registers_take_two_requests() -> None:
    assert await reads_per_poll(device("D1", float_points(65))) == 2


async def test_small_gaps_are_read_through_and_large_gaps_split_the_block() -> None:
    assert await reads_per_poll(device("D1", float_points(5, stride=10))) == 1
    assert await reads_per_poll(device("D1", float_points(3, stride=200))) == 3


def test_blocks_respect_the_device_max_block() -> None:
    dev = device("D1", float_points(20), max_block=10)
    blocks = plan_blocks([p for p in dev.points], max_block=dev.max_block)
    assert [(b.start, b.count) for b in blocks] == [(0, 10), (10, 10), (20, 10), (30, 10)]


# -- values changed at the device, and writes ----------------------------------------------

SETPOINT_DEVICE: list[dict[str, Any]] = [
    {"code": "level", "table": "input", "address": 0, "data_type": "float32"},
    {
        "code": "setpoint",
        "table": "holding",
        "address": 10,
        "data_type": "int32",
        "scale": 0.1,
        "word_order": "little",
    },
    {"code": "single", "table": "holding", "address": 20, "data_type": "uint16"},
    {"code": "pump", "table": "coil", "address": 5, "data_type": "bool"},
    {"code": "alarm_in", "table": "discrete", "address": 0, "data_type": "bool"},
]


async def test_value_set_at_the_device_appears_in_a_published_batch() -> None:
    dev = device("D1", [dict(p) for p in SETPOINT_DEVICE])
    plant = Plant({"D1": {"level": 1.0, "setpoint": 50.0, "single": 7, "pump": 0, "alarm_in": 0}})
    async with serving([dev], plant) as server:
        dev = on_port(dev, server.port)
        hub = Hub()
        sub = hub.subscribe("test")
        async with collecting(ModbusCollector("E1", dev, ids(dev), hub)):
            first = await next_batch(sub)
            assert first.value[0] == 1.0
            server.override("D1", "level", 3.5)
            server.override("D1", "alarm_in", 1)
            changed = await batch_where(sub, lambda b: b.value[0] == 3.5)
            assert changed.value[4] == 1.0
            plant.values["D1"]["level"] = 2.0  # the override still wins
            assert (await next_batch(sub)).value[0] == 3.5
            server.clear_override("D1", "level")
            await batch_where(sub, lambda b: b.value[0] == 2.0)


async def test_write_from_the_collector_reaches_the_device() -> None:
    dev = device("D1", [dict(p) for p in SETPOINT_DEVICE])
    plant = Plant({"D1": {"level": 1.0, "setpoint": 50.0, "single": 7, "pump": 0, "alarm_in": 0}})
    seen: list[tuple[str, str, float]] = []
    async with serving([dev], plant, on_write=lambda d, p, v: seen.append((d, p, v))) as server:
        dev = on_port(dev, server.port)
        hub = Hub()
        sub = hub.subscribe("test")
        collector = ModbusCollector("E1", dev, ids(dev), hub)
        async with collecting(collector):
            await next_batch(sub)
            await collector.write("setpoint", 123.4)
            await collector.write("single", 65000)
            await collector.write("pump", 1)
            assert server.written()["D1"] == pytest.approx(
                {"setpoint": 123.4, "single": 65000, "pump": 1.0}
            )
            assert [p for _, p, _ in seen] == ["setpoint", "single", "pump"]
            batch = await batch_where(sub, lambda b: b.value[3] == 1.0)
            np.testing.assert_allclose(batch.value[1:4], [123.4, 65000, 1.0])

            with pytest.raises(ValueError, match="read-only input"):
                await collector.write("level", 1.0)
            with pytest.raises(ValueError, match="no point 'nope'"):
                await collector.write("nope", 1.0)
            with pytest.raises(ValueError, match="70000 does not fit a uint16"):
                await collector.write("single", 70000)
            await server.stop()
            await batch_where(sub, lambda b: (b.quality == Quality.COMM_FAIL).all())
            with pytest.raises(DeviceUnavailable, match="not connected"):
                await collector.write("setpoint", 1.0)


# -- failure, recovery and isolation -------------------------------------------------------


@contextmanager
def collector_log(caplog: pytest.LogCaptureFixture) -> Iterator[list[logging.LogRecord]]:
    with caplog.at_level(logging.INFO, logger="anjian.collectors"):
        yield caplog.records


async def test_stopped_and_restarted_device_fails_then_recovers_each_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dev = device("D1", float_points(4), timeout_s=0.3)
    plant = Plant({"D1": {f"p{i}": float(i) for i in range(4)}})
    async with serving([dev], plant) as server:
        dev = on_port(dev, server.port)
        hub = Hub()
        sub = hub.subscribe("test")
        # The device's link point (99) has an id too.
        point_ids = {**ids(dev, 100), "D1.link": 99}
        collector = ModbusCollector("E1", dev, point_ids, hub, backoff=Backoff(0.05, 0.1))
        link: list[tuple[float, int]] = []  # the link's samples: (value, quality)

        async def read() -> SampleBatch:
            batch = await next_batch(sub)
            at = batch.point == 99
            link.extend(zip(batch.value[at].tolist(), batch.quality[at].tolist(), strict=True))
            return batch.take(~at)

        with collector_log(caplog) as records:
            async with collecting(collector):
                while not len(await read()):
                    pass
                await read()  # a second poll
                await server.stop()
                failures = 0
                while failures < 3:  # several failed reconnects, still one log line
                    batch = await read()
                    if (batch.quality == Quality.COMM_FAIL).all():
                        failures += 1
                        np.testing.assert_array_equal(batch.point, np.arange(100, 104))
                        assert np.isnan(batch.value).all()
                assert collector.status.up is False
                await server.start()
                while not len(good := await read()) or (good.quality != Quality.GOOD).any():
                    pass
                np.testing.assert_array_equal(good.value, [0.0, 1.0, 2.0, 3.0])
                await read()
    messages = [r.getMessage() for r in records if r.name == "anjian.collectors"]
    assert sum("communication lost" in m for m in messages) == 1, messages
    assert sum("communication restored" in m for m in messages) == 1, messages
    assert collector.status.failures >= 3 and collector.status.up is True
    # The link is set at the first success and at the recovery, not at every poll, and fails
    # with the points.
    said = ["up" if (v, q) == (1.0, Quality.GOOD) else q == Quality.COMM_FAIL for v, q in link]
    assert said[0] == said[-1] == "up" and said[1:-1] == [True] * (len(said) - 2), link
    assert len(said) >= 2 + 3


async def test_exception_response_marks_the_device_failed() -> None:
    served = device("D1", float_points(2))
    missing = {"code": "missing", "table": "holding", "address": 300, "data_type": "uint16"}
    configured = device("D1", [*float_points(2), missing])
    plant = Plant({"D1": {"p0": 1.0, "p1": 2.0}})
    async with serving([served], plant) as server:
        dev = on_port(configured, server.port)
        hub = Hub()
        sub = hub.subscribe("test")
        collector = ModbusCollector("E1", dev, ids(dev), hub, backoff=Backoff(0.05, 0.1))
        async with collecting(collector):
            batch = await next_batch(sub)
    assert (batch.quality == Quality.COMM_FAIL).all()
    assert "exception response" in (collector.status.last_error or "")


async def _silent_listener() -> asyncio.Server:
    """A device that accepts connections and never answers."""

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(1024):
            pass
        writer.close()

    return await asyncio.start_server(swallow, "127.0.0.1", 0)


async def test_failed_device_does_not_delay_healthy_one() -> None:
    period = 0.2
    healthy = device("OK", float_points(4), period_s=period, timeout_s=1.0)
    plant = Plant({"OK": {f"p{i}": float(i) for i in range(4)}})
    silent = await _silent_listener()
    dead_port = silent.sockets[0].getsockname()[1]
    dead = device("DEAD", float_points(4), port=dead_port, period_s=period, timeout_s=1.0)
    try:
        async with serving([healthy], plant) as server:
            healthy = on_port(healthy, server.port)
            hub = Hub()
            sub = hub.subscribe("test")
            good = ModbusCollector("E1", healthy, ids(healthy), hub, stagger=False)
            bad = ModbusCollector("E1", dead, ids(dead, 10), hub, backoff=Backoff(0.05, 0.1))
            stamps: list[int] = []
            async with collecting(good, bad):
                t_end = time.monotonic() + 2.5
                while time.monotonic() < t_end:
                    batch = await next_batch(sub)
                    if batch.point[0] == 0:
                        stamps.append(int(batch.ts[0]))
    finally:
        silent.close()
    assert bad.status.up is False and bad.status.failures >= 1
    period_ns = int(period * 1e9)
    since_tick = (np.array(stamps) - good.phase_ns) % period_ns
    # A leaked 1 s timeout would put polls far off the 200 ms grid or skip ticks.
    assert (since_tick < 50e6).all(), since_tick / 1e6
    ticks = (np.array(stamps) - good.phase_ns) // period_ns
    assert (np.diff(ticks) == 1).all(), np.diff(ticks)
    assert len(stamps) >= 11


async def test_value_outside_the_instrument_range_is_out_of_range() -> None:
    points = [
        {
            "code": "lvl",
            "table": "holding",
            "address": 0,
            "data_type": "float32",
            "range": [0, 100],
        },
        {
            "code": "tmp",
            "table": "holding",
            "address": 2,
            "data_type": "float32",
            "range": [-20, 60],
        },
        {"code": "free", "table": "holding", "address": 4, "data_type": "float32"},
    ]
    dev = device("D1", points)
    plant = Plant({"D1": {"lvl": 150.0, "tmp": 25.0, "free": 1e9}})
    async with serving([dev], plant) as server:
        dev = on_port(dev, server.port)
        hub = Hub()
        sub = hub.subscribe("test")
        async with collecting(ModbusCollector("E1", dev, ids(dev), hub)):
            batch = await next_batch(sub)
            plant.values["D1"]["tmp"] = -20.5
            plant.values["D1"]["lvl"] = 100.0
            later = await batch_where(sub, lambda b: b.value[1] == -20.5)
    assert batch.quality.tolist() == [Quality.OUT_OF_RANGE, Quality.GOOD, Quality.GOOD]
    assert later.quality.tolist() == [Quality.GOOD, Quality.OUT_OF_RANGE, Quality.GOOD]


async def test_staggered_devices_keep_distinct_fixed_phases() -> None:
    plant = Plant({f"D{i}": {"p0": 1.0} for i in range(3)})
    devs = [device(f"D{i}", float_points(1), unit_id=i + 1) for i in range(3)]
    async with serving(devs, plant) as server:
        hub = Hub()
        sub = hub.subscribe("test")
        collectors = [
            ModbusCollector("E1", on_port(d, server.port), {"p0": i}, hub, stagger=True)
            for i, d in enumerate(devs)
        ]
        stamps: dict[int, list[int]] = {0: [], 1: [], 2: []}
        async with collecting(*collectors):
            while min(len(v) for v in stamps.values()) < 4:
                batch = await next_batch(sub)
                stamps[int(batch.point[0])].append(int(batch.ts[0]))
    period_ns = int(PERIOD * 1e9)
    phases = [c.phase_ns for c in collectors]
    assert len(set(phases)) == 3 and all(0 <= p < period_ns for p in phases)
    for i, c in enumerate(collectors):
        since_tick = (np.array(stamps[i]) - c.phase_ns) % period_ns
        assert (since_tick < 30e6).all(), since_tick / 1e6
