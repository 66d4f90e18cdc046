"""The simulator: the demo plant on a wall clock, served over Modbus TCP, OPC-UA and MQTT.

E1 (and E3 without a broker) answer Modbus TCP, one port per device; E2 is an OPC-UA server; E3
publishes through an MQTT gateway. `config_toml` is the anjian configuration that reads them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from collectors.sim.demo import DEMO_LAYOUT, demo_config_toml, modbus_devices
from collectors.sim.modbus_server import ModbusSimServer
from collectors.sim.mqtt_gateway import MqttSimGateway
from collectors.sim.opcua_server import OpcUaSimServer
from collectors.sim.plant import Plant, Scenario
from collectors.sim.ports import free_port_block
from streams.config import Config, ModbusDevice, MqttDevice, MqttSettings, OpcUaDevice, parse_config

log = logging.getLogger("anjian.sim")


class Simulator:
    """Runs the demo plant and its field devices until `stop`.

    Ports 0 mean free ones, chosen at `start`; `config_toml`, `config` and `endpoints` are known
    from then on. Modbus devices listen on consecutive ports from `modbus_port`.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        modbus_port: int = 0,
        opcua_port: int = 0,
        mqtt: MqttSettings | None = None,
        seed: int = 1,
        step_s: float = 0.2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if step_s <= 0:
            raise ValueError(f"step_s must be > 0 (got {step_s})")
        self.host = host
        self.mqtt = mqtt
        self.step_s = step_s
        self._clock = clock
        self._modbus_base = modbus_port
        self._opcua_port = opcua_port
        self.plant = Plant(DEMO_LAYOUT, seed=seed, start_s=clock())
        self.config_toml = ""
        self.endpoints: dict[str, str] = {}
        self._config: Config | None = None
        self._modbus: dict[str, ModbusSimServer] = {}
        self._opcua: dict[str, OpcUaSimServer] = {}
        self._gateways: dict[str, MqttSimGateway] = {}
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def config(self) -> Config:
        if self._config is None:
            raise RuntimeError("the simulator's configuration is known once it has started")
        return self._config

    @property
    def scenarios(self) -> list[Scenario]:
        return self.plant.scenarios

    async def start(self) -> None:
        modbus_codes = modbus_devices(self.mqtt is not None)
        base = self._modbus_base or free_port_block(self.host, len(modbus_codes))
        opcua_port = self._opcua_port or free_port_block(self.host, 1)
        endpoint = f"opc.tcp://{self.host}:{opcua_port}/anjian/"
        self.config_toml = demo_config_toml(
            modbus_host=self.host, modbus_port=base, opcua_endpoint=endpoint, mqtt=self.mqtt
        )
        config = self._config = parse_config(self.config_toml, "<demo plant>")

        read = self.plant.values
        for e in config.enterprises:
            mqtt_devices = [d for d in e.devices if isinstance(d, MqttDevice)]
            for d in e.devices:
                if isinstance(d, ModbusDevice):
                    self._modbus[d.code] = ModbusSimServer([d], read, host=self.host, port=d.port)
                    self.endpoints[d.code] = f"modbus://{d.host}:{d.port} (unit {d.unit_id})"
                elif isinstance(d, OpcUaDevice):
                    server = OpcUaSimServer([d], read, host=self.host, port=opcua_port)
                    if server.endpoint != d.endpoint:
                        raise RuntimeError(
                            f"OPC-UA server at {server.endpoint}, configured {d.endpoint}"
                        )
                    self._opcua[d.code] = server
                    self.endpoints[d.code] = d.endpoint
            if mqtt_devices and config.mqtt is not None:
                gateway = MqttSimGateway(config.mqtt, e.code, mqtt_devices, read)
                for d in mqtt_devices:
                    self._gateways[d.code] = gateway
                    self.endpoints[d.code] = (
                        f"mqtt://{config.mqtt.host}:{config.mqtt.port} {gateway.topic(d.code)}"
                    )

        self._tasks.append(asyncio.create_task(self._clock_loop(), name="sim-plant-clock"))
        try:
            for m in self._modbus.values():
                await m.start()
            for o in self._opcua.values():
                await o.start()
        except BaseException:
            await self.stop()
            raise
        for gateway in dict.fromkeys(self._gateways.values()):
            self._tasks.append(asyncio.create_task(gateway.run(), name="sim-mqtt-gateway"))
        log.info("simulated plant serving %s", ", ".join(self.endpoints.values()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for m in self._modbus.values():
            await m.stop()
        for o in self._opcua.values():
            await o.stop()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def set_scenario(self, name: str, target: str | None = None, **params: float) -> None:
        """Start a plant scenario (see `Plant.set_scenario`); returns once devices reflect it.

        `comm_loss` of a device stops its server (or silences its gateway); `normal` ends every
        scenario and brings the devices back.
        """
        self.plant.set_scenario(name, target, **params)
        if name == "comm_loss" and target is not None:
            await self._serve(target, False)
        elif name == "normal":
            for code in [*self._modbus, *self._opcua, *self._gateways]:
                await self._serve(code, True)
        log.info("simulator scenarios: %s", ", ".join(map(str, self.scenarios)) or "normal")

    async def _serve(self, device: str, up: bool) -> None:
        if (m := self._modbus.get(device)) is not None:
            await (m.start() if up else m.stop())
        elif (o := self._opcua.get(device)) is not None:
            await (o.start() if up else o.stop())
        elif (g := self._gateways.get(device)) is not None:
            if up:
                g.resume()
            else:
                g.pause()
        else:
            raise ValueError(f"device {device!r} is not served by this simulator")

    async def _clock_loop(self) -> None:
        while True:
            # The wall clock may step back (NTP); the plant's time must not.
            now = self._clock()
            self.plant.step(max(now, self.plant.time_s or now))
            await asyncio.sleep(self.step_s)
