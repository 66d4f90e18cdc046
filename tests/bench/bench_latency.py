"""Benchmark: alarm latency end to end, from a value changed at a device to the alarm event on a
WebSocket, through the real application (collectors, hub, alarm engine, PostgreSQL, /ws).

A Modbus device polled every period and an OPC-UA device publishing every interval each cross a
high limit N times; each change is at a random phase of the poll grid / publish loop, so the
figures include the wait for the next poll or publish. The hub is watched too, which splits each
latency into acquisition (device → hub) and processing (hub → WebSocket client).

Run: python tests/bench/bench_latency.py [--samples N] [--modbus-period-s P] [--opcua-interval-ms Q]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import numpy as np
import numpy.typing as npt
from aiohttp import ClientSession, ClientWebSocketResponse, CookieJar, web
from pymodbus.client import AsyncModbusTcpClient

from anjian.runtime import Running, Settings, build_app
from collectors.sim.modbus_server import ModbusSimServer
from collectors.sim.opcua_server import OpcUaSimServer
from streams import Hub
from streams.config import ModbusDevice, OpcUaDevice, parse_config
from web.accounts import DEMO_ACCOUNTS, ensure_demo_accounts

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
ENTERPRISE = "E1"
MODBUS_DEVICE, MODBUS_POINT = "PLC1", "TT1"
OPCUA_DEVICE, OPCUA_POINT = "UA1", "TT2"
SCALE = 0.1  # the Modbus point is an int16 register in tenths of a degree
HIGH_LIMIT = 50.0
NORMAL, ABOVE = 20.0, 60.0

CONFIG = """
[[regions]]
code = "320500"
province = "江苏省"
city = "苏州市"

[[enterprises]]
code = "{enterprise}"
name = "延迟测试化工有限公司"
region = "320500"

  [[enterprises.hazard_sources]]
  code = "HS1"
  name = "反应釜区"

  [[enterprises.devices]]
  code = "{modbus_device}"
  protocol = "modbus"
  host = "127.0.0.1"
  port = {modbus_port}
  period_s = {period_s}
  timeout_s = 0.5
  hazard_source = "HS1"

    [[enterprises.devices.points]]
    code = "{modbus_point}"
    name = "1号反应釜温度"
    unit = "°C"
    kind = "temperature"
    table = "holding"
    address = 0
    data_type = "int16"
    scale = {scale}
    range = [0, 100]
    limits = {{ h = {limit} }}

  [[enterprises.devices]]
  code = "{opcua_device}"
  protocol = "opcua"
  endpoint = "{endpoint}"
  publishing_interval_ms = {interval_ms}
  hazard_source = "HS1"

    [[enterprises.devices.points]]
    code = "{opcua_point}"
    name = "2号反应釜温度"
    unit = "°C"
    kind = "temperature"
    node = "ns=2;s={opcua_device}.{opcua_point}"
    data_type = "float64"
    range = [0, 100]
    limits = {{ h = {limit} }}
"""


# -- a fresh database ----------------------------------------------------------------------


def _with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")


@contextlib.asynccontextmanager
async def fresh_database(server: str) -> AsyncIterator[str]:
    name = f"anjian_bench_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield _with_database(server, name)
    finally:
        conn = await asyncpg.connect(server)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


# -- what the client and the hub saw -------------------------------------------------------


@dataclass
class Seen:
    """Arrival times (wall clock, ns) of the WebSocket's alarm events and of the hub's samples
    of the watched points, appended by reader tasks the moment each arrives."""

    events: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    samples: list[tuple[int, int, float]] = field(default_factory=list)  # (arrival, point, value)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def read_ws(self, ws: ClientWebSocketResponse) -> None:
        while True:
            msg = await ws.receive_json()
            arrival = time.time_ns()
            if msg.get("type") == "alarms_resync":
                raise RuntimeError("the WebSocket alarm feed fell behind (alarms_resync)")
            if msg.get("type") == "alarms":
                self.events += [(arrival, e) for e in msg["events"]]
                self.changed.set()

    async def read_hub(self, hub: Hub, points: npt.NDArray[np.int32]) -> None:
        sub = hub.subscribe("bench latency", maxsize=1024)
        try:
            async for batch in sub:
                arrival = time.time_ns()
                mine = np.isin(batch.point, points)
                if mine.any():
                    self.samples += [
                        (arrival, int(p), float(v))
                        for p, v in zip(batch.point[mine], batch.value[mine], strict=True)
                    ]
        finally:
            sub.close()

    async def event(self, point: int, kind: str, after_ns: int, timeout_s: float) -> int:
        """The arrival time of the first H event of `kind` for `point` that came after a time."""
        deadline = time.monotonic() + timeout_s
        while True:
            for arrival, e in self.events:
                if (
                    arrival >= after_ns
                    and e["point"] == point
                    and e["condition"] == "H"
                    and e["kind"] == kind
                ):
                    return arrival
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {kind!r} H event for point {point} within {timeout_s} s")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)

    def at_hub(self, point: int, after_ns: int) -> int | None:
        """When the first sample of `point` above the limit reached the hub after a time."""
        return next(
            (a for a, p, v in self.samples if a >= after_ns and p == point and v > HIGH_LIMIT),
            None,
        )


# -- the measurement -----------------------------------------------------------------------


@dataclass
class Result:
    total_ms: npt.NDArray[np.float64]
    acquisition_ms: npt.NDArray[np.float64]  # change at the device → sample on the hub
    processing_ms: npt.NDArray[np.float64]  # sample on the hub → event at the WebSocket client


async def measure(
    name: str,
    seen: Seen,
    point: int,
    change: Callable[[float], Awaitable[None]],
    cadence_s: float,
    samples: int,
    rng: np.random.Generator,
) -> Result:
    """Cross the limit `samples` times, each at a random phase within `cadence_s`, returning the
    value below it (and waiting for the clearing) between crossings."""
    timeout = 3 * cadence_s + 10
    total, acquisition, processing = [], [], []
    for i in range(samples):
        await asyncio.sleep(float(rng.uniform(0.0, cadence_s)))
        t0 = time.time_ns()
        await change(ABOVE)
        arrival = await seen.event(point, "raised", t0, timeout)
        hub = seen.at_hub(point, t0)
        if hub is None:
            raise RuntimeError(f"{name}: an alarm was raised but no high sample reached the hub")
        total.append((arrival - t0) / 1e6)
        acquisition.append((hub - t0) / 1e6)
        processing.append((arrival - hub) / 1e6)
        back = time.time_ns()
        await change(NORMAL)
        await seen.event(point, "cleared", back, timeout)
        if (i + 1) % 10 == 0 or i + 1 == samples:
            print(
                f"{name}: {i + 1}/{samples} samples, last {total[-1]:.1f} ms "
                f"(acquisition {acquisition[-1]:.1f} + processing {processing[-1]:.1f})",
                flush=True,
            )
    return Result(*(np.array(x, np.float64) for x in (total, acquisition, processing)))


def summary(name: str, r: Result) -> str:
    def pct(x: npt.NDArray[np.float64]) -> str:
        p50, p99, top = np.percentile(x, [50, 99, 100])
        return f"p50={p50:.1f} p99={p99:.1f} max={top:.1f}"

    return (
        f"{name}: {len(r.total_ms)} samples, total {pct(r.total_ms)} ms; "
        f"acquisition {pct(r.acquisition_ms)} ms; processing {pct(r.processing_ms)} ms"
    )


async def _sign_in(base: str) -> ClientSession:
    username, _role, password = next(a for a in DEMO_ACCOUNTS if a[0] == "duty")
    http = ClientSession(base, cookie_jar=CookieJar(unsafe=True))
    r = await http.post("/api/auth/login", json={"username": username, "password": password})
    if r.status != 200:
        await http.close()
        raise RuntimeError(f"sign-in as {username!r} failed: {r.status} {await r.text()}")
    return http


def config_text(modbus_port: int, endpoint: str, period_s: float, interval_ms: float) -> str:
    return CONFIG.format(
        enterprise=ENTERPRISE, modbus_device=MODBUS_DEVICE, modbus_point=MODBUS_POINT,
        modbus_port=modbus_port, period_s=period_s, scale=SCALE, limit=HIGH_LIMIT,
        opcua_device=OPCUA_DEVICE, opcua_point=OPCUA_POINT, endpoint=endpoint,
        interval_ms=interval_ms,
    )  # fmt: skip


@contextlib.asynccontextmanager
async def devices(
    period_s: float, interval_ms: float
) -> AsyncIterator[tuple[ModbusSimServer, OpcUaSimServer]]:
    """Both simulated devices, listening, each point starting below its limit."""
    # The simulators need only the devices' points; the real port goes into the app's config.
    cfg = parse_config(config_text(502, "opc.tcp://127.0.0.1:4840/", period_s, interval_ms))
    found = [d for e in cfg.enterprises for d in e.devices]
    modbus = [d for d in found if isinstance(d, ModbusDevice)]
    opcua = [d for d in found if isinstance(d, OpcUaDevice)]
    plc = ModbusSimServer(modbus, lambda _code: {MODBUS_POINT: NORMAL})
    ua_server = OpcUaSimServer(opcua, lambda _code: {OPCUA_POINT: NORMAL})
    await plc.start()
    try:
        await ua_server.start()
        try:
            yield plc, ua_server
        finally:
            await ua_server.stop()
    finally:
        await plc.stop()


@contextlib.asynccontextmanager
async def application(config: Path, data_dir: Path, db: str) -> AsyncIterator[tuple[str, Running]]:
    """The whole application on a real HTTP server: its base URL and what runs inside."""
    holder: list[Running] = []
    app = build_app(
        Settings(config=config, data_dir=data_dir, database_url=db), ready=holder.append
    )
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}", holder[0]
    finally:
        await runner.cleanup()


async def run(
    server: str, tmp: Path, samples: int, period_s: float, interval_ms: float, seed: int
) -> str:
    async with fresh_database(server) as db, devices(period_s, interval_ms) as (plc, ua_server):
        config = tmp / "plant.toml"
        config.write_text(
            config_text(plc.port, ua_server.endpoint, period_s, interval_ms), encoding="utf-8"
        )
        async with application(config, tmp / "data", db) as (base, running):
            await ensure_demo_accounts(running.store.pool, ENTERPRISE)
            modbus_id = running.points.id(ENTERPRISE, MODBUS_POINT)
            opcua_id = running.points.id(ENTERPRISE, OPCUA_POINT)
            http = await _sign_in(base)
            writer = AsyncModbusTcpClient("127.0.0.1", port=plc.port, timeout=2.0)
            try:
                if not await writer.connect():
                    raise RuntimeError(f"cannot connect to the simulated PLC on port {plc.port}")
                ws = await http.ws_connect("/ws")
                await ws.send_json({"op": "subscribe", "topics": ["alarms"]})
                reply = await ws.receive_json(timeout=10)
                if reply.get("topics") != ["alarms"]:
                    raise RuntimeError(f"subscribing to alarms failed: {reply}")
                await _until_live(running, 10 + 3 * period_s)
                print(
                    f"app at {base}, database {db.rsplit('/', 1)[1]}; Modbus at :{plc.port} "
                    f"every {period_s * 1000:g} ms, OPC-UA at {ua_server.endpoint} publishing "
                    f"every {interval_ms:g} ms; {samples} crossings each",
                    flush=True,
                )

                async def modbus_change(value: float) -> None:
                    rr = await writer.write_register(0, round(value / SCALE), device_id=1)
                    if rr.isError():
                        raise RuntimeError(f"the simulated PLC refused a write: {rr}")

                async def opcua_change(value: float) -> None:
                    await ua_server.set_value(OPCUA_DEVICE, OPCUA_POINT, value)

                seen = Seen()
                rng = np.random.default_rng(seed)
                ids = np.array([modbus_id, opcua_id], np.int32)
                # A reader that fails (the feed fell behind, the socket closed) ends the run.
                async with asyncio.TaskGroup() as tg:
                    readers = [
                        tg.create_task(seen.read_ws(ws)),
                        tg.create_task(seen.read_hub(running.hub, ids)),
                    ]
                    try:
                        mb = await measure(
                            "modbus", seen, modbus_id, modbus_change, period_s, samples, rng
                        )
                        print(summary("modbus", mb), flush=True)
                        ua = await measure(
                            "opcua", seen, opcua_id, opcua_change, interval_ms / 1000, samples, rng
                        )
                        print(summary("opcua", ua), flush=True)
                    finally:
                        for t in readers:
                            t.cancel()
                await ws.close()
            finally:
                writer.close()
                await http.close()
    mb_p99 = float(np.percentile(mb.total_ms, 99))
    ua_p99 = float(np.percentile(ua.total_ms, 99))
    return (
        f"bench latency: modbus_p99_ms={mb_p99:.1f} modbus_period_ms={period_s * 1000:g} "
        f"opcua_p99_ms={ua_p99:.1f} opcua_interval_ms={interval_ms:g}"
    )


async def _until_live(running: Running, timeout_s: float) -> None:
    """Wait until every collector is connected and has delivered its first values."""
    deadline = time.monotonic() + timeout_s
    while not all(c.status.up and c.status.samples for c in running.collectors):
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"collectors not up within {timeout_s:g} s: {running.collector_health()}"
            )
        await asyncio.sleep(0.05)


async def main(argv: Sequence[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="anjian bench latency", description=__doc__)
    parser.add_argument("--samples", type=int, default=30, help="limit crossings per protocol")
    parser.add_argument("--modbus-period-s", type=float, default=1.0)
    parser.add_argument("--opcua-interval-ms", type=float, default=500.0)
    parser.add_argument("--seed", type=int, default=0, help="of the random change phases")
    args = parser.parse_args(list(argv) if argv is not None else None)
    # Device chatter is not what is measured; the app's own warnings still show.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("asyncua").setLevel(logging.CRITICAL)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    server = os.environ.get("ANJIAN_BENCH_DATABASE_URL", DEFAULT_SERVER)
    with tempfile.TemporaryDirectory(prefix="anjian-bench-latency-") as tmp:
        return await run(
            server, Path(tmp), args.samples, args.modbus_period_s, args.opcua_interval_ms, args.seed
        )


if __name__ == "__main__":
    print(asyncio.run(main(sys.argv[1:])))
