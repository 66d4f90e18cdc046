"""End to end: a value written at a simulated Modbus device reaches PostgreSQL and a WebSocket."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from aiohttp import ClientWebSocketResponse
from aiohttp.test_utils import TestClient
from pymodbus.client import AsyncModbusTcpClient

from anjian.runtime import Running
from collectors.sim.modbus_server import ModbusSimServer
from streams.config import parse_config
from tests.conftest import DUTY, free_port, serving, sign_in

CONFIG = """
[[regions]]
code = "320500"
province = "江苏省"
city = "苏州市"

[[enterprises]]
code = "E9"
name = "测试化工有限公司"
region = "320500"

  [[enterprises.hazard_sources]]
  code = "HS1"
  name = "液氨储罐区"

  [[enterprises.devices]]
  code = "PLC1"
  protocol = "modbus"
  host = "127.0.0.1"
  port = {port}
  period_s = 0.1
  timeout_s = 0.5
  hazard_source = "HS1"

    [[enterprises.devices.points]]
    code = "TK1.LT"
    name = "1号储罐液位"
    unit = "m"
    table = "holding"
    address = 0
    data_type = "int16"
    scale = 0.01
    range = [0, 20]

    [[enterprises.devices.points]]
    code = "TK1.PT"
    name = "1号储罐压力"
    unit = "MPa"
    table = "holding"
    address = 2
    data_type = "float32"
"""


@dataclass
class Spine:
    client: TestClient[asyncpg.Record, object]
    run: Running
    device: ModbusSimServer
    db: str


@pytest.fixture
async def spine(database_url: str, tmp_path: Path) -> AsyncIterator[Spine]:
    port = free_port()
    text = CONFIG.format(port=port)
    cfg = parse_config(text)
    values = {"TK1.LT": 5.0, "TK1.PT": 0.8}
    device = ModbusSimServer(
        [d for e in cfg.enterprises for d in e.devices],  # type: ignore[misc]
        lambda _code: values,
        port=port,
    )
    await device.start()
    config_file = tmp_path / "plant.toml"
    config_file.write_text(text, encoding="utf-8")
    try:
        async with serving(config_file, database_url, "E9") as served:
            client = TestClient(served.server)
            await client.start_server()
            try:
                await sign_in(client, *DUTY)
                yield Spine(client, served.run, device, database_url)
            finally:
                await client.close()
    finally:
        await device.stop()


async def _until(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout} s")


async def _next_points(ws: ClientWebSocketResponse, timeout: float = 10.0) -> dict[int, float]:
    while True:
        msg = await asyncio.wait_for(ws.receive_json(), timeout)
        if msg["type"] == "points":
            return {v[0]: v[2] for v in msg["values"]}


async def test_register_written_at_device_reaches_samples_and_websocket(spine: Spine) -> None:
    level_id = spine.run.points.id("E9", "TK1.LT")
    ws = await spine.client.ws_connect("/ws")
    await ws.send_json({"op": "subscribe", "topics": ["points:E9"]})
    assert (await ws.receive_json())["type"] == "subscribed"

    # An operator at the plant writes the level register (int16, scale 0.01): 1234 → 12.34 m.
    async with AsyncModbusTcpClient("127.0.0.1", port=spine.device.port) as plc:
        reply = await plc.write_register(0, 1234, device_id=1)
        assert not reply.isError()

    seen: dict[int, float] = {}
    while seen.get(level_id) != pytest.approx(12.34):
        seen.update(await _next_points(ws))

    async def stored() -> bool:
        conn = await asyncpg.connect(spine.db)
        try:
            n = await conn.fetchval(
                "SELECT count(*) FROM samples WHERE point = $1 AND abs(value - 12.34) < 1e-9",
                level_id,
            )
        finally:
            await conn.close()
        return bool(n)

    await _until(stored)
    await ws.close()


async def test_latest_and_series_serve_collected_values(spine: Spine) -> None:
    pressure_id = spine.run.points.id("E9", "TK1.PT")

    async def have_latest() -> bool:
        r = await spine.client.get("/api/latest", params={"enterprise": "E9"})
        body = await r.json()
        row = next(v for v in body["values"] if v["id"] == pressure_id)
        return row["quality"] == "GOOD" and row["value"] == pytest.approx(0.8)

    await _until(have_latest)
    await spine.run.writer.flush()

    async def have_series() -> bool:
        r = await spine.client.get(f"/api/points/{pressure_id}/series", params={"buckets": "10"})
        assert r.status == 200
        body = await r.json()
        return sum(body["count"]) > 0 and len(body["ts"]) <= 10

    await _until(have_series)


async def test_health_reports_mode_and_collectors(spine: Spine) -> None:
    async def up() -> bool:
        r = await spine.client.get("/api/health")
        body = await r.json()
        return bool(body["collectors"]["up"] == 1)

    await _until(up)
    body = await (await spine.client.get("/api/health")).json()
    assert body["database"]["mode"] in ("postgresql", "timescaledb")
    assert body["collectors"]["devices"][0]["device"] == "PLC1"


@pytest.mark.parametrize(
    ("path", "params", "status", "needle"),
    [
        ("/api/latest", {}, 400, "enterprise is required"),
        ("/api/latest", {"enterprise": "NOPE"}, 404, "NOPE"),
        ("/api/points/999999/series", {}, 404, "999999"),
        ("/api/points/{id}/series", {"buckets": "many"}, 400, "many"),
        ("/api/points/{id}/series", {"buckets": "0"}, 400, "between 1"),
        ("/api/points/{id}/series", {"start": "yesterday"}, 400, "yesterday"),
        (
            "/api/points/{id}/series",
            {"start": "2026-11-30T10:00:00Z", "end": "2026-11-30T09:00:00Z"},
            400,
            "must be before",
        ),
    ],
)
async def test_bad_parameters_get_4xx_with_message(
    spine: Spine, path: str, params: dict[str, str], status: int, needle: str
) -> None:
    point = spine.run.points.id("E9", "TK1.PT")
    r = await spine.client.get(path.format(id=point), params=params)
    assert r.status == status
    assert needle in (await r.json())["error"]


async def test_websocket_rejects_unknown_topic_and_keeps_serving(spine: Spine) -> None:
    ws = await spine.client.ws_connect("/ws")
    await ws.send_str("not json")
    assert (await ws.receive_json())["message"] == "not JSON"
    await ws.send_json({"op": "subscribe", "topics": ["points:NOPE"]})
    assert "NOPE" in (await ws.receive_json())["message"]
    assert (await ws.receive_json()) == {"type": "subscribed", "topics": []}
    await ws.send_json({"op": "subscribe", "topics": ["points:E9"]})
    msg = await ws.receive_json()
    assert msg == {"type": "subscribed", "topics": ["points:E9"]}
    assert await _next_points(ws)
    await ws.close()
