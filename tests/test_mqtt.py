"""MQTT ingest against the real Mosquitto broker at 127.0.0.1:1883 and simulated gateways."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import aiomqtt
import numpy as np
import pytest

from collectors.base import Backoff
from collectors.mqtt import MqttIngest, parse_ts
from collectors.sim.mqtt_gateway import MqttSimGateway
from streams import Hub, Quality, SampleBatch, Subscription
from streams.config import MqttDevice, MqttSettings
from tests.conftest import cancel_while_connecting


def settings() -> MqttSettings:
    # A topic prefix of its own keeps this test from seeing any other test's messages.
    return MqttSettings(topic_prefix=f"anjian-test/{uuid.uuid4().hex[:12]}")


def device(code: str, points: list[dict[str, Any]], period_s: float = 0.2) -> MqttDevice:
    for p in points:
        p.setdefault("name", p["code"])
    return MqttDevice.model_validate(
        {"protocol": "mqtt", "code": code, "period_s": period_s, "points": points}
    )


async def _broker_answers() -> bool:
    try:
        async with aiomqtt.Client("127.0.0.1", 1883, timeout=2):
            return True
    except aiomqtt.MqttError:
        return False


@pytest.fixture(autouse=True)
async def broker() -> None:
    if not await _broker_answers():
        pytest.fail("no MQTT broker at 127.0.0.1:1883 (Mosquitto is required for these tests)")


@contextlib.asynccontextmanager
async def running(*runners: Callable[[], Any]) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(r()) for r in runners]
    try:
        yield
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t


async def connected(ingest: MqttIngest) -> None:
    async with asyncio.timeout(5):
        while not ingest.connected:  # noqa: ASYNC110 - a test polling a status flag
            await asyncio.sleep(0.01)


async def collect(
    sub: Subscription, done: Callable[[SampleBatch], bool], timeout: float = 5
) -> SampleBatch:
    """All batches until the concatenation so far satisfies `done`."""
    got: list[SampleBatch] = []
    async with asyncio.timeout(timeout):
        while True:
            batch = await sub.get()
            assert batch is not None
            sub.task_done()
            got.append(batch)
            if done(SampleBatch.concat(got)):
                return SampleBatch.concat(got)


def test_ts_accepts_rfc3339_and_epoch_milliseconds_only() -> None:
    assert parse_ts(1_700_000_000_123) == 1_700_000_000_123_000_000
    assert parse_ts("2023-11-14T22:13:20.123Z") == 1_700_000_000_123_000_000
    assert parse_ts("2023-11-15T06:13:20.123+08:00") == 1_700_000_000_123_000_000
    for bad in ("2023-11-14T22:13:20", "yesterday", 1_700_000_000, True, None, float("nan")):
        with pytest.raises(ValueError, match="ts"):
            parse_ts(bad)


async def test_gateway_values_arrive_with_both_timestamp_formats() -> None:
    s = settings()
    tank = device(
        "TK1",
        [
            {"code": "LT", "scale": 0.1},
            {"code": "PT", "offset": -1.0, "range": [0, 10]},
        ],
    )
    gas = device("GD1", [{"code": "NH3"}])
    values = {"TK1": {"LT": 4.5, "PT": 2.5}, "GD1": {"NH3": 12.0}}
    hub = Hub()
    sub = hub.subscribe("test")
    ingest = MqttIngest(
        s,
        [("E1", tank, {"LT": 1, "PT": 2}), ("E2", gas, {"NH3": 3})],
        hub,
    )
    e1 = MqttSimGateway(s, "E1", [tank], values.__getitem__, ts_format="epoch_ms")
    e2 = MqttSimGateway(s, "E2", [gas], values.__getitem__, ts_format="rfc3339")
    async with running(ingest.run):
        await connected(ingest)
        async with running(e1.run, e2.run):
            before = time.time_ns()
            got = await collect(sub, lambda b: {1, 2, 3} <= set(b.point.tolist()))
            values["TK1"]["PT"] = 12.0  # above the instrument range [0, 10]
            over = await collect(sub, lambda b: bool(((b.point == 2) & (b.value == 12.0)).any()))
    latest = {
        int(p): (v, q, t)
        for p, v, q, t in zip(got.point, got.value, got.quality, got.ts, strict=True)
    }
    assert latest[1][:2] == pytest.approx((4.5, Quality.GOOD))
    assert latest[2][:2] == pytest.approx((2.5, Quality.GOOD))
    assert latest[3][:2] == pytest.approx((12.0, Quality.GOOD))
    for _, _, ts in latest.values():
        # Epoch ms and RFC 3339 with milliseconds are both within a second of sending.
        assert before - 1_000_000_000 < ts < time.time_ns()
    assert over.quality[(over.point == 2) & (over.value == 12.0)][0] == Quality.OUT_OF_RANGE
    st = {x.device: x for x in ingest.statuses}
    assert st["TK1"].up is True and st["GD1"].up is True
    assert st["TK1"].rejected == {} and ingest.rejected == {}


async def test_malformed_payloads_are_counted_by_reason_and_good_messages_all_arrive() -> None:
    s = settings()
    dev = device("GW1", [{"code": "A"}, {"code": "B"}], period_s=60)
    hub = Hub()
    sub = hub.subscribe("test")
    ingest = MqttIngest(s, [("E1", dev, {"A": 10, "B": 11})], hub)
    topic = f"{s.topic_prefix}/E1/GW1/data"

    def good(seq: int) -> bytes:
        return json.dumps({"ts": 1_700_000_000_000 + seq, "values": {"A": seq}}).encode()

    ts = 1_700_000_000_000
    messages: list[tuple[str, bytes]] = [
        (topic, good(1)),
        (topic, b"{not json"),
        (topic, good(2)),
        (topic, json.dumps({"ts": ts}).encode()),  # no values
        (topic, good(3)),
        (topic, json.dumps({"ts": ts, "values": {"A": 4, "B": "12.5"}}).encode()),
        (topic, good(5)),
        (topic, json.dumps({"ts": ts, "values": {"A": 6, "ZZ": 1.0}}).encode()),
        (f"{s.topic_prefix}/E1/NOPE/data", good(99)),
        (f"{s.topic_prefix}/E9/GW1/data", good(98)),
        (topic, json.dumps({"ts": "last tuesday", "values": {"A": 97}}).encode()),
        (topic, json.dumps([1, 2]).encode()),
        (topic, good(7)),
    ]
    async with running(ingest.run):
        await connected(ingest)
        async with aiomqtt.Client("127.0.0.1", 1883) as pub:
            for t, payload in messages:
                await pub.publish(t, payload, qos=1)
        got = await collect(sub, lambda b: bool((b.value == 7).any()))
    a = got.value[got.point == 10]
    assert a.tolist() == [1, 2, 3, 4, 5, 6, 7]
    assert (got.quality == Quality.GOOD).all()
    assert not (got.point == 11).any()
    assert ingest.statuses[0].rejected == {
        "not_json": 1,
        "bad_shape": 2,
        "not_a_number": 1,
        "unknown_point": 1,
        "bad_ts": 1,
    }
    assert ingest.rejected == {"unknown_device": 2}
    assert ingest.statuses[0].as_dict()["rejected"] == ingest.statuses[0].rejected


async def test_many_messages_are_published_in_few_batches() -> None:
    s = settings()
    devs = [device(f"D{i}", [{"code": "X"}], period_s=60) for i in range(50)]
    hub = Hub()
    sub = hub.subscribe("test")
    ingest = MqttIngest(s, [("E1", d, {"X": i}) for i, d in enumerate(devs)], hub)
    async with running(ingest.run):
        await connected(ingest)
        async with aiomqtt.Client("127.0.0.1", 1883) as pub:
            for round_ in range(4):
                for i in range(50):
                    body = {"ts": 1_700_000_000_000 + round_, "values": {"X": round_ * 100 + i}}
                    await pub.publish(f"{s.topic_prefix}/E1/D{i}/data", json.dumps(body), qos=1)
        got = await collect(sub, lambda b: len(b) == 200)
    assert sorted(got.value.tolist()) == [r * 100 + i for r in range(4) for i in range(50)]
    assert hub.batches_published < 50


async def test_silent_gateway_goes_comm_fail_then_recovers() -> None:
    s = settings()
    quiet = device("GW1", [{"code": "A"}, {"code": "B"}], period_s=0.2)
    chatty = device("GW2", [{"code": "C"}], period_s=0.2)
    values: Mapping[str, Mapping[str, float]] = {"GW1": {"A": 1.0, "B": 2.0}, "GW2": {"C": 3.0}}
    hub = Hub()
    sub = hub.subscribe("test")
    ingest = MqttIngest(
        s, [("E1", quiet, {"A": 1, "B": 2, "GW1.link": 11}), ("E1", chatty, {"C": 3})], hub
    )
    g1 = MqttSimGateway(s, "E1", [quiet], values.__getitem__)
    g2 = MqttSimGateway(s, "E1", [chatty], values.__getitem__)
    async with running(ingest.run):
        await connected(ingest)
        async with running(g1.run, g2.run):
            first = await collect(sub, lambda b: {1, 2, 3, 11} <= set(b.point.tolist()))
            g1.pause()
            silent_at = time.monotonic()
            down = await collect(sub, lambda b: bool((b.quality == Quality.COMM_FAIL).any()))
            waited = time.monotonic() - silent_at
            failed = down.take(down.quality == Quality.COMM_FAIL)
            st = {x.device: x for x in ingest.statuses}
            assert st["GW1"].up is False and st["GW2"].up is True
            assert "no message for 0.6 s" in (st["GW1"].last_error or "")
            g1.resume()
            back = await collect(
                sub, lambda b: bool(((b.point == 1) & (b.quality == Quality.GOOD)).any())
            )
    # GW1's link point (11) is set at its first message, fails with it and is set again.
    assert first.value[first.point == 11].tolist() == [1.0]
    assert sorted(failed.point.tolist()) == [1, 2, 11]
    assert back.value[(back.point == 11) & (back.quality == Quality.GOOD)].tolist() == [1.0]
    assert np.isnan(failed.value).all()
    assert 0.4 < waited < 2.0  # 3 periods of 0.2 s
    assert back.value[(back.point == 1)][-1] == 1.0
    assert st["GW1"].up is True and st["GW1"].last_error is None


async def test_broker_unreachable_means_comm_fail_for_every_gateway_device() -> None:
    s = MqttSettings(port=1, topic_prefix="anjian-test/unreachable")
    devs = [device("GW1", [{"code": "A"}]), device("GW2", [{"code": "B"}])]
    hub = Hub()
    sub = hub.subscribe("test")
    links = {"GW1.link": 11, "GW2.link": 12}
    ingest = MqttIngest(
        s, [("E1", devs[0], {"A": 1, **links}), ("E1", devs[1], {"B": 2, **links})], hub,
        backoff=Backoff(5, 5),
    )  # fmt: skip
    async with running(ingest.run):
        got = await collect(sub, lambda b: len(b) >= 4, timeout=3)
    assert sorted(got.point.tolist()) == [1, 2, 11, 12]  # and the devices' link points
    assert (got.quality == Quality.COMM_FAIL).all()
    assert all(st.up is False and "MQTT broker" in (st.last_error or "") for st in ingest.statuses)
    assert ingest.connected is False


async def test_ingest_stops_when_cancelled_at_any_moment_of_its_connection() -> None:
    # About 2 % of cancellations in the first 15 ms (connect, subscribe) hung it before the
    # fix: it subscribed and waited for messages forever.
    def ingest() -> Awaitable[None]:
        device_ = device("D", [{"code": "X"}])
        return MqttIngest(settings(), [("E1", device_, {"X": 1})], Hub()).run()

    await cancel_while_connecting(ingest, window_s=0.015)
