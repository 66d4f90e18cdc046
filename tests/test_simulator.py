"""The simulator end to end: the demo plant read back by plain protocol clients over sockets."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import aiomqtt
import pytest
import pytest_asyncio
from asyncua.client.client import Client as OpcUaClient
from pymodbus.client import AsyncModbusTcpClient

from collectors.modbus_codec import decode
from collectors.sim.runner import Simulator
from streams.config import ModbusDevice, MqttSettings, OpcUaDevice, PointConfig

# One simulator for the module (an OPC-UA server takes seconds to start); each test that
# starts a scenario ends it.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sim() -> AsyncIterator[Simulator]:
    mqtt = MqttSettings(host="127.0.0.1", port=1883, topic_prefix=f"test-{uuid.uuid4().hex}/v1")
    async with Simulator(mqtt=mqtt, seed=5, step_s=0.05) as s:
        yield s


def _device(sim: Simulator, code: str) -> tuple[ModbusDevice, dict[str, PointConfig]]:
    d = next(d for e in sim.config.enterprises for d in e.devices if d.code == code)
    assert isinstance(d, ModbusDevice)
    return d, {p.code: p for p in d.points}


async def _read_modbus(device: ModbusDevice, point: PointConfig) -> float:
    """One register read with a plain pymodbus client, decoded as the point says."""
    client = AsyncModbusTcpClient(device.host, port=device.port, timeout=1, retries=0)
    try:
        if not await client.connect():
            raise ConnectionError(f"cannot connect to {device.host}:{device.port}")
        assert point.address is not None
        read = (
            client.read_holding_registers
            if point.table == "holding"
            else client.read_input_registers
        )
        rr = await read(point.address, count=point.register_count, device_id=device.unit_id)
        assert not rr.isError(), rr
        raw = decode(
            rr.registers,
            point.data_type,
            point.byte_order or device.byte_order,
            point.word_order or device.word_order,
        )[0]
        return float(raw * point.scale + point.offset)
    finally:
        client.close()


async def test_modbus_devices_serve_the_plant_values(sim: Simulator) -> None:
    plc, points = _device(sim, "PLC101")
    for code in ("TK101.LT", "TK101.TT", "TK101.WT", "WS101.WS", "WS101.WD"):
        got = await _read_modbus(plc, points[code])
        # The plant moves on between the read and this check: compare within a few noise sd.
        span = points[code].range
        assert span is not None
        assert got == pytest.approx(sim.plant.value(code), abs=0.02 * (span[1] - span[0])), code
    gds, gas = _device(sim, "GDS101")
    # A stuck value reads back exactly, to the register's resolution.
    await sim.set_scenario("stuck", "GD-103")
    await asyncio.sleep(0.2)
    assert await _read_modbus(gds, gas["GD-103"]) == pytest.approx(
        sim.plant.value("GD-103"), abs=gas["GD-103"].scale
    )
    await sim.set_scenario("normal")


async def test_opcua_server_serves_the_lpg_tank_farm(sim: Simulator) -> None:
    d = next(d for e in sim.config.enterprises for d in e.devices if d.code == "DCS201")
    assert isinstance(d, OpcUaDevice)
    node = next(p.node for p in d.points if p.code == "TK201.PT")
    assert node is not None
    async with OpcUaClient(d.endpoint, timeout=5) as client:
        got = await client.get_node(node).read_value()
    # Pressure follows the tank temperature, which moves slowly: one update interval apart.
    assert got == pytest.approx(sim.plant.value("TK201.PT"), abs=0.02)


async def test_mqtt_gateway_publishes_the_methanol_tank_farm(sim: Simulator) -> None:
    assert sim.config.mqtt is not None
    topic = f"{sim.config.mqtt.topic_prefix}/E3/GW301/data"
    async with aiomqtt.Client("127.0.0.1", 1883) as client:
        await client.subscribe(topic, qos=1)
        async with asyncio.timeout(5):
            message = await anext(aiter(client.messages))
    assert isinstance(message.payload, bytes)
    payload = json.loads(message.payload)
    assert set(payload["values"]) == {
        p.code for _, d, p in sim.config.points() if d.code == "GW301"
    }
    assert payload["values"]["TK301.LT"] == pytest.approx(sim.plant.value("TK301.LT"), abs=0.2)


async def test_comm_loss_silences_one_modbus_device_until_normal(sim: Simulator) -> None:
    plc, points = _device(sim, "PLC101")
    gds, gas = _device(sim, "GDS101")
    await _read_modbus(plc, points["TK102.LT"])

    await sim.set_scenario("comm_loss", "PLC101")
    with pytest.raises(ConnectionError):
        await _read_modbus(plc, points["TK102.LT"])
    # The GDS controller is another device: it keeps answering.
    await _read_modbus(gds, gas["GD-101"])
    assert [str(s) for s in sim.scenarios] == ["comm_loss PLC101"]

    await sim.set_scenario("normal")
    got = await _read_modbus(plc, points["TK102.LT"])
    assert got == pytest.approx(sim.plant.value("TK102.LT"), abs=0.05)


async def test_comm_loss_takes_the_opcua_server_down_until_normal(sim: Simulator) -> None:
    endpoint = sim.endpoints["DCS201"]
    await sim.set_scenario("comm_loss", "DCS201")
    with pytest.raises(OSError):
        async with OpcUaClient(endpoint, timeout=2):
            pass
    await sim.set_scenario("normal")
    async with OpcUaClient(endpoint, timeout=5) as client:
        got = await client.get_node("ns=2;s=DCS201.TK201.LT").read_value()
    assert got == pytest.approx(sim.plant.value("TK201.LT"), abs=0.1)


async def test_comm_loss_pauses_the_mqtt_gateway(sim: Simulator) -> None:
    assert sim.config.mqtt is not None
    topic = f"{sim.config.mqtt.topic_prefix}/E3/GW301/data"
    await sim.set_scenario("comm_loss", "GW301")
    async with aiomqtt.Client("127.0.0.1", 1883) as client:
        await client.subscribe(topic, qos=1)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(2.5):  # more than two publishing periods
                await anext(aiter(client.messages))
        await sim.set_scenario("normal")
        async with asyncio.timeout(5):
            await anext(aiter(client.messages))


async def test_endpoints_name_every_device(sim: Simulator) -> None:
    assert set(sim.endpoints) == {"PLC101", "GDS101", "DCS201", "GW301"}
    assert sim.endpoints["DCS201"].startswith("opc.tcp://127.0.0.1:")
    assert "E3/GW301/data" in sim.endpoints["GW301"]


async def test_without_a_broker_e3_is_a_modbus_device() -> None:
    async with Simulator(seed=2, step_s=0.05) as s:
        gw, points = _device(s, "GW301")
        assert gw.word_order == "little"
        got = await _read_modbus(gw, points["GD-301"])
        assert got == pytest.approx(s.plant.value("GD-301"), abs=1.0)
        got = await _read_modbus(gw, points["TK303.LT"])
        assert got == pytest.approx(s.plant.value("TK303.LT"), abs=0.1)
