"""A simulated Modbus TCP field device: live engineering values served as real registers.

Serves ModbusDevices (by unit id) on one TCP port with pymodbus' SimDevice; each request fills
the registers from `read_values`; a client's write becomes an override that later reads return.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from collectors.modbus_codec import RegisterLayout
from streams.config import ModbusDevice, ModbusTable

ReadValues = Callable[[str], Mapping[str, float]]
WriteCallback = Callable[[str, str, float], None]

# pymodbus' SimDevice keeps four tables in this order when they are not shared.
_TABLE_ORDER: tuple[ModbusTable, ...] = ("coil", "discrete", "holding", "input")
_FUNCTION_TABLE: dict[int, ModbusTable] = {
    1: "coil",
    5: "coil",
    15: "coil",
    2: "discrete",
    3: "holding",
    6: "holding",
    16: "holding",
    22: "holding",
    23: "holding",
    4: "input",
}


@dataclass
class _Table:
    """The points of one table of one device and where they sit."""

    name: ModbusTable
    codes: list[str]
    addresses: npt.NDArray[np.intp]  # absolute addresses
    widths: npt.NDArray[np.intp]  # registers per point (1 for bits)
    start: int
    end: int  # one past the last register or bit
    layout: RegisterLayout | None  # register tables only

    @property
    def bits(self) -> bool:
        return self.layout is None


@dataclass
class _Device:
    config: ModbusDevice
    tables: dict[ModbusTable, _Table]
    overrides: dict[str, float] = field(default_factory=dict)


def _tables(device: ModbusDevice) -> dict[ModbusTable, _Table]:
    tables: dict[ModbusTable, _Table] = {}
    for name in _TABLE_ORDER:
        points = sorted((p for p in device.points if p.table == name), key=lambda p: p.address or 0)
        if not points:
            continue
        bits = name in ("coil", "discrete")
        addresses = np.array([p.address or 0 for p in points], np.intp)
        widths = np.array([1 if bits else p.register_count for p in points], np.intp)
        start, end = int(addresses.min()), int((addresses + widths).max())
        layout = None
        if not bits:
            layout = RegisterLayout(
                (addresses - start).tolist(),
                [p.data_type for p in points],
                [p.byte_order or device.byte_order for p in points],
                [p.word_order or device.word_order for p in points],
                [p.scale for p in points],
                [p.offset for p in points],
            )
        tables[name] = _Table(name, [p.code for p in points], addresses, widths, start, end, layout)
    return tables


class ModbusSimServer:
    """Serves simulated devices on one TCP port; restartable on the same port.

    `requests` counts the requests each device has answered, by (device code, function code).
    """

    def __init__(
        self,
        devices: Sequence[ModbusDevice],
        read_values: ReadValues,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        on_write: WriteCallback | None = None,
    ) -> None:
        units = [d.unit_id for d in devices]
        if len(set(units)) != len(units):
            raise ValueError(f"devices on one simulated server need distinct unit ids: {units}")
        self.host = host
        self.port = port
        self.read_values = read_values
        self.on_write = on_write
        self.requests: Counter[tuple[str, int]] = Counter()
        self._devices = [_Device(d, _tables(d)) for d in devices]
        self._by_code = {d.config.code: d for d in self._devices}
        self._server: ModbusTcpServer | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        """Listen (again) on the port; with port 0 the first start picks a free one."""
        if self._server is not None:
            return
        sim = [self._sim_device(d) for d in self._devices]
        server = ModbusTcpServer(context=sim, address=(self.host, self.port))
        await server.serve_forever(background=True)
        sockets = getattr(server.transport, "sockets", None) or []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        self._server = server

    async def stop(self) -> None:
        """Close the listening socket and every client connection: the device goes dead."""
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()  # type: ignore[no-untyped-call]
            # Let the transports run their close callbacks before the caller goes on.
            await asyncio.sleep(0)

    async def __aenter__(self) -> ModbusSimServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- values set at the device ----------------------------------------------------------

    def override(self, device_code: str, point_code: str, value: float) -> None:
        """Pin a point at a value, as if set at the device; reads return it until cleared."""
        device = self._device(device_code)
        if not any(point_code in t.codes for t in device.tables.values()):
            raise KeyError(f"device {device_code!r} has no point {point_code!r}")
        device.overrides[point_code] = float(value)

    def clear_override(self, device_code: str, point_code: str | None = None) -> None:
        device = self._device(device_code)
        if point_code is None:
            device.overrides.clear()
        else:
            device.overrides.pop(point_code, None)

    def written(self) -> Mapping[str, Mapping[str, float]]:
        """The overrides in force (set with `override` or written by a client), by device."""
        return {d.config.code: dict(d.overrides) for d in self._devices if d.overrides}

    def _device(self, code: str) -> _Device:
        try:
            return self._by_code[code]
        except KeyError:
            raise KeyError(f"no simulated device {code!r} on this server") from None

    # -- pymodbus glue ---------------------------------------------------------------------

    def _sim_device(self, device: _Device) -> SimDevice:
        blocks: list[list[SimData]] = []
        for name in _TABLE_ORDER:
            table = device.tables.get(name)
            if table is None:
                # pymodbus needs all four tables; `_serve` refuses every access to this one.
                kind = DataType.BITS if name in ("coil", "discrete") else DataType.REGISTERS
                blocks.append([SimData(address=0, count=1, values=0, datatype=kind)])
            elif table.bits:
                blocks.append(
                    [
                        SimData(
                            address=table.start,
                            count=table.end - table.start,
                            values=False,
                            datatype=DataType.BITS,
                        )
                    ]
                )
            else:
                blocks.append(
                    [
                        SimData(
                            address=table.start,
                            count=table.end - table.start,
                            values=0,
                            datatype=DataType.REGISTERS,
                        )
                    ]
                )

        async def action(
            function_code: int,
            start_address: int,
            address: int,
            count: int,
            registers: list[int],
            set_values: list[int] | list[bool] | None,
        ) -> ExcCodes | None:
            return self._serve(device, function_code, start_address, address, registers, set_values)

        return SimDevice(
            id=device.config.unit_id,
            simdata=(blocks[0], blocks[1], blocks[2], blocks[3]),
            action=action,
        )

    def _current(self, device: _Device, table: _Table) -> npt.NDArray[np.float64]:
        live = self.read_values(device.config.code)
        over = device.overrides
        return np.array(
            [over[c] if c in over else live.get(c, np.nan) for c in table.codes], np.float64
        )

    def _serve(
        self,
        device: _Device,
        function_code: int,
        start_address: int,
        address: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        code = device.config.code
        self.requests[(code, function_code)] += 1
        table = device.tables.get(_FUNCTION_TABLE[function_code])
        if table is None:
            return ExcCodes.ILLEGAL_ADDRESS
        values = self._current(device, table)
        if table.layout is not None:
            # pymodbus' block starts at the table's first register and has one guard register.
            block = np.zeros(table.end - table.start, np.uint16)
            table.layout.encode_into(block, values, saturate=True)
            registers[: len(block)] = block.tolist()
            if set_values is not None:
                self._record_register_write(device, table, block, address, set_values)
        else:
            bit0 = start_address * 16  # pymodbus packs 16 bits per register, LSB first
            bits = np.unpackbits(
                np.array(registers, "<u2").view(np.uint8), bitorder="little"
            ).astype(bool)
            bits[table.addresses - bit0] = np.nan_to_num(values) != 0
            packed = np.packbits(bits, bitorder="little").view("<u2")
            registers[:] = packed.tolist()
            if set_values is not None:
                written = np.asarray(set_values, bool)
                hit = (table.addresses >= address) & (table.addresses < address + len(written))
                for i in np.flatnonzero(hit):
                    self._record(
                        device, table.codes[i], float(written[table.addresses[i] - address])
                    )
        return None

    def _record_register_write(
        self,
        device: _Device,
        table: _Table,
        block: npt.NDArray[np.uint16],
        address: int,
        set_values: list[int] | list[bool],
    ) -> None:
        assert table.layout is not None
        first = address - table.start
        after = block.copy()
        after[first : first + len(set_values)] = np.asarray(set_values, np.uint16)
        ends = table.addresses + table.widths
        hit = (table.addresses < address + len(set_values)) & (ends > address)
        decoded = table.layout.decode(after)
        for i in np.flatnonzero(hit):
            self._record(device, table.codes[i], float(decoded[i]))

    def _record(self, device: _Device, point_code: str, value: float) -> None:
        device.overrides[point_code] = value
        if self.on_write is not None:
            self.on_write(device.config.code, point_code, value)
