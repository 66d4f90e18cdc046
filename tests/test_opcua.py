"""The OPC-UA collector against a real asyncua server in-process (the simulated plant's server)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from asyncua.crypto import cert_gen
from asyncua.ua.status_codes import StatusCodes
from cryptography.x509.oid import ExtendedKeyUsageOID

from collectors.base import Backoff
from collectors.opcua import OpcUaCollector, qualities
from collectors.sim.opcua_server import OpcUaSimServer
from streams import Hub, Quality, SampleBatch, Subscription
from streams.config import OpcUaDevice
from tests.conftest import cancel_while_connecting


def device(
    points: list[dict[str, Any]], endpoint: str = "opc.tcp://127.0.0.1:1", **kw: Any
) -> OpcUaDevice:
    for p in points:
        p.setdefault("name", p["code"])
        p.setdefault("node", f"ns=2;s=E1.TK1.{p['code']}")
    fields: dict[str, Any] = {"publishing_interval_ms": 50, "sampling_interval_ms": 20}
    fields.update(kw)
    return OpcUaDevice.model_validate(
        {"protocol": "opcua", "code": "TK1", "endpoint": endpoint, "points": points, **fields}
    )


@contextlib.asynccontextmanager
async def collecting(
    dev: OpcUaDevice, ids: dict[str, int]
) -> AsyncIterator[tuple[OpcUaCollector, Subscription]]:
    hub = Hub()
    sub = hub.subscribe("test", maxsize=1000)
    collector = OpcUaCollector("E1", dev, ids, hub, backoff=Backoff(0.1, 0.5))
    task = asyncio.create_task(collector.run())
    try:
        yield collector, sub
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def collect(
    sub: Subscription, done: Callable[[SampleBatch], bool], timeout: float = 5
) -> list[SampleBatch]:
    """Batches until their concatenation satisfies `done`."""
    got: list[SampleBatch] = []
    async with asyncio.timeout(timeout):
        while True:
            batch = await sub.get()
            assert batch is not None
            sub.task_done()
            got.append(batch)
            if done(SampleBatch.concat(got)):
                return got


def has(point: int, quality: Quality, value: float | None = None) -> Callable[[SampleBatch], bool]:
    def check(b: SampleBatch) -> bool:
        hit = (b.point == point) & (b.quality == quality)
        if value is not None:
            hit &= np.isclose(b.value, value)
        return bool(hit.any())

    return check


def test_status_codes_map_to_qualities() -> None:
    s = StatusCodes
    codes = {
        s.Good: Quality.GOOD,
        s.GoodClamped: Quality.GOOD,
        s.Uncertain: Quality.UNCERTAIN,
        s.UncertainLastUsableValue: Quality.UNCERTAIN,
        s.UncertainSensorNotAccurate: Quality.UNCERTAIN,
        s.Bad: Quality.BAD,
        s.BadSensorFailure: Quality.BAD,
        s.BadDeviceFailure: Quality.BAD,
        s.BadCommunicationError: Quality.COMM_FAIL,
        s.BadNotConnected: Quality.COMM_FAIL,
        s.BadServerNotConnected: Quality.COMM_FAIL,
        s.BadNoCommunication: Quality.COMM_FAIL,
        s.BadOutOfRange: Quality.OUT_OF_RANGE,
        # The low 16 bits are info bits (e.g. overflow, limits): they do not change the meaning.
        s.BadNoCommunication | 0x0400: Quality.COMM_FAIL,
        s.Good | 0x0400: Quality.GOOD,
    }
    got = qualities(np.array(list(codes), np.uint32))
    assert got.tolist() == [int(q) for q in codes.values()]


async def test_values_changes_and_statuses_arrive_as_batches() -> None:
    server_dev = device(
        [
            {"code": "LT", "scale": 0.01, "data_type": "int16"},
            {"code": "PT", "range": [0, 10]},
            {"code": "TT", "data_type": "float64", "offset": -50},
        ]
    )
    plant = {"LT": 2.5, "PT": 1.5, "TT": 20.0}
    server = OpcUaSimServer([server_dev], lambda _: plant, update_interval_s=0.05)
    await server.start()
    try:
        # The collector also asks for a node the server does not have.
        client_dev = device(
            [
                {"code": "LT", "scale": 0.01, "data_type": "int16"},
                {"code": "PT", "range": [0, 10]},
                {"code": "TT", "data_type": "float64", "offset": -50},
                {"code": "XX", "node": "ns=2;s=E1.TK1.MISSING"},
            ],
            endpoint=server.endpoint,
        )
        ids = {"LT": 11, "PT": 12, "TT": 13, "XX": 14}
        async with collecting(client_dev, ids) as (collector, sub):
            first = SampleBatch.concat(
                await collect(sub, lambda b: {11, 12, 13, 14} <= set(b.point.tolist()))
            )
            by_point = {int(p): (float(v), int(q)) for p, v, q in zip(*_cols(first), strict=True)}
            assert by_point[11] == pytest.approx((2.5, Quality.GOOD))
            assert by_point[12] == pytest.approx((1.5, Quality.GOOD))
            assert by_point[13] == pytest.approx((20.0, Quality.GOOD))
            assert by_point[14][1] == Quality.BAD and np.isnan(by_point[14][0])
            assert "MISSING" in collector.problems["XX"]
            assert "BadNodeIdUnknown" in collector.problems["XX"]

            # Changes in one server cycle come as one batch, not one per notification.
            plant.update(LT=3.0, PT=2.0, TT=21.0)
            changed = await collect(sub, lambda b: {11, 12, 13} <= set(b.point.tolist()))
            assert len(changed) == 1
            assert sorted(changed[0].point.tolist()) == [11, 12, 13]
            assert changed[0].value[np.argsort(changed[0].point)] == pytest.approx([3, 2, 21])

            plant["PT"] = 12.0  # outside the configured instrument range [0, 10]
            await collect(sub, has(12, Quality.OUT_OF_RANGE, 12.0))
            await server.set_value("TK1", "LT", 1.0, status="UncertainSensorNotAccurate")
            await collect(sub, has(11, Quality.UNCERTAIN))
            await server.set_value("TK1", "TT", 1.0, status="BadSensorFailure")
            await collect(sub, has(13, Quality.BAD))
            await server.set_value("TK1", "TT", 1.0, status="BadNoCommunication")
            await collect(sub, has(13, Quality.COMM_FAIL))
            await server.set_value("TK1", "LT", 1.0, status="BadOutOfRange")
            await collect(sub, has(11, Quality.OUT_OF_RANGE))
            await server.release("TK1", "LT")
            await collect(sub, has(11, Quality.GOOD, 3.0))

            assert collector.status.up is True
            assert collector.status.rejected == {"node_unusable": 1}
            # The missing node's point is the only one ever BAD.
            assert collector.hub.latest.get([14]).quality[0] == Quality.BAD
    finally:
        await server.stop()


async def test_a_steady_value_is_published_again_while_the_session_is_up() -> None:
    """A subscription sends nothing for a value that does not change: the collector publishes
    it again every `republish_s`, on the server's clock, and stops while the server is away."""
    server_dev = device([{"code": "XV"}, {"code": "LT"}])
    plant = {"XV": 1.0, "LT": 2.0}
    # The server's clock is 5 s behind ours, as a field device's clock may well be.
    server = OpcUaSimServer(
        [server_dev], lambda _: plant, update_interval_s=0.05, clock_offset_s=-5.0
    )
    await server.start()
    try:
        client_dev = device(
            [{"code": "XV"}, {"code": "LT"}], endpoint=server.endpoint, republish_s=0.3
        )
        async with collecting(client_dev, {"XV": 21, "LT": 22}) as (collector, sub):
            got = SampleBatch.concat(
                await collect(sub, lambda b: int((b.point == 21).sum()) >= 5, timeout=10)
            )
            xv = got.point == 21
            assert (got.value[xv] == 1.0).all() and (got.quality[xv] == Quality.GOOD).all()
            ts = got.ts[xv]
            assert (np.diff(ts) > 0).all()
            beats_s = np.diff(ts[1:]) / 1e9  # between republished values (not the first)
            assert ((beats_s >= 0.29) & (beats_s < 1.0)).all(), beats_s

            # A change right after a heartbeat is newer than it: heartbeats keep to the
            # server's clock, so the change is the point's latest value.
            plant["XV"] = 0.0
            changed = SampleBatch.concat(await collect(sub, has(21, Quality.GOOD, 0.0)))
            assert changed.ts[changed.point == 21].max() > ts.max()
            assert collector.hub.latest.get([21]).value[0] == 0.0

            # The server goes away: COMM_FAIL, and no value is republished until it is back.
            await server.stop()
            await collect(sub, has(21, Quality.COMM_FAIL))
            away: list[SampleBatch] = []
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.2):  # four heartbeats
                    while True:
                        batch = await sub.get()
                        assert batch is not None
                        sub.task_done()
                        away.append(batch)
            assert not any(((b.point == 21) & (b.quality == Quality.GOOD)).any() for b in away), (
                "a value was republished while the server was away"
            )
            await server.start()
            await collect(sub, has(21, Quality.GOOD, 0.0), timeout=10)
    finally:
        await server.stop()


def _cols(b: SampleBatch) -> tuple[Any, ...]:
    return b.point, b.value, b.quality


async def test_server_restart_gives_comm_fail_then_resubscribes() -> None:
    dev = device([{"code": "LT"}, {"code": "PT"}])
    plant = {"LT": 1.0, "PT": 2.0}
    server = OpcUaSimServer([dev], lambda _: plant, update_interval_s=0.05)
    await server.start()
    try:
        async with collecting(
            dev.model_copy(update={"endpoint": server.endpoint}), {"LT": 1, "PT": 2}
        ) as (
            collector,
            sub,
        ):
            await collect(sub, has(2, Quality.GOOD, 2.0))
            await server.stop()
            await collect(
                sub, lambda b: has(1, Quality.COMM_FAIL)(b) and has(2, Quality.COMM_FAIL)(b)
            )
            assert collector.status.up is False
            lost_error = collector.status.last_error

            plant["LT"] = 5.0
            await server.start()  # same port, a fresh address space: the old subscription is gone
            await collect(sub, has(1, Quality.GOOD, 5.0), timeout=10)
            # Not just the initial read: data changes flow on the new subscription.
            plant["PT"] = 7.0
            await collect(sub, has(2, Quality.GOOD, 7.0))
            assert collector.status.up is True
            assert collector.status.last_error is None
    finally:
        await server.stop()
    assert lost_error


async def test_basic256sha256_with_username_and_password_connects(tmp_path: Path) -> None:
    key, cert = tmp_path / "client-key.pem", tmp_path / "client-cert.der"
    await cert_gen.setup_self_signed_certificate(
        key,
        cert,
        "urn:anjian:test:collector",
        socket.gethostname(),
        [ExtendedKeyUsageOID.CLIENT_AUTH],
        {},
    )
    dev = device([{"code": "LT"}])
    server = OpcUaSimServer(
        [dev], lambda _: {"LT": 4.0}, certificate_dir=tmp_path / "server", users={"op": "s3cret"}
    )
    await server.start()
    try:
        secure: dict[str, Any] = {
            "endpoint": server.endpoint,
            "security_policy": "Basic256Sha256",
            "security_mode": "SignAndEncrypt",
            "certificate": cert,
            "private_key": key,
            "server_certificate": server.server_certificate,
            "username": "op",
        }
        good = dev.model_copy(update={**secure, "password": "s3cret"})
        async with collecting(good, {"LT": 1}) as (collector, sub):
            await collect(sub, has(1, Quality.GOOD, 4.0))
            assert collector.status.up is True

        wrong = dev.model_copy(update={**secure, "password": "guess"})
        async with collecting(wrong, {"LT": 1}) as (collector, sub):
            await collect(sub, has(1, Quality.COMM_FAIL))
            assert "BadUserAccessDenied" in (collector.status.last_error or "")

        # The server offers no unsecured endpoint, so a client without security is refused.
        plain = dev.model_copy(
            update={"endpoint": server.endpoint, "username": "op", "password": "s3cret"}
        )
        async with collecting(plain, {"LT": 1}) as (collector, sub):
            await collect(sub, has(1, Quality.COMM_FAIL))
            assert collector.status.up is False
    finally:
        await server.stop()


async def test_collector_stops_when_cancelled_at_any_moment_of_its_connection() -> None:
    # A connection to the local server takes about 4 ms; about 3 % of cancellations in the
    # first 6 ms hung the collector before the fix (it went on to wait for data changes).
    dev = device([{"code": "LT"}])
    server = OpcUaSimServer([dev], lambda _: {"LT": 1.0}, update_interval_s=0.05)
    await server.start()
    try:
        dev = dev.model_copy(update={"endpoint": server.endpoint})
        await cancel_while_connecting(
            lambda: OpcUaCollector("E1", dev, {"LT": 1}, Hub(), backoff=Backoff(0.1, 0.5)).run(),
            window_s=0.006,
        )
    finally:
        await server.stop()
