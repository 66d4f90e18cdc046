"""Modbus TCP collector: polls one device in coalesced block reads on a wall-clock grid.

Each poll reads every block once and publishes one SampleBatch; a failure marks every point
COMM_FAIL (logged once), and the collector reconnects with backoff. Writes share the connection.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np
import numpy.typing as npt
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException

from collectors.base import Backoff, DeviceCollector, raise_if_cancelled
from collectors.modbus_codec import RegisterLayout, encode
from streams import Hub, Quality, SampleBatch
from streams.config import ModbusDevice, ModbusTable, Order, PointConfig

MAX_REGISTERS = 125  # per read, Modbus application protocol §6.3
MAX_BITS = 2000  # per read of coils or discrete inputs, §6.1
# Reading a few unused registers costs far less than another round trip.
MAX_GAP_REGISTERS = 16
MAX_GAP_BITS = 256

_TABLES: tuple[ModbusTable, ...] = ("holding", "input", "coil", "discrete")
_BIT_TABLES = frozenset({"coil", "discrete"})


class ModbusError(Exception):
    """A Modbus exchange that did not succeed (exception response, closed connection)."""


class DeviceUnavailable(ModbusError):
    """The device is not connected, so a write cannot be delivered."""


@dataclass(frozen=True, slots=True)
class Block:
    """One read request: `count` registers (or bits) of `table` from `start`."""

    table: ModbusTable
    start: int
    count: int
    rows: npt.NDArray[np.intp]  # positions in the collector's point order
    layout: RegisterLayout | None  # None for coils and discrete inputs
    bit_offsets: npt.NDArray[np.intp] | None  # for coils and discrete inputs


def plan_blocks(
    points: Sequence[PointConfig],
    device_byte_order: Order = "big",
    device_word_order: Order = "big",
    max_block: int = MAX_REGISTERS,
) -> list[Block]:
    """Coalesce the points of each table into as few reads as the block limits allow."""
    blocks: list[Block] = []
    for table in _TABLES:
        bits = table in _BIT_TABLES
        limit = MAX_BITS if bits else min(max_block, MAX_REGISTERS)
        gap = MAX_GAP_BITS if bits else MAX_GAP_REGISTERS
        members = sorted(
            (i for i, p in enumerate(points) if p.table == table),
            key=lambda i: points[i].address or 0,
        )
        current: list[int] = []
        start = end = 0
        for i in members:
            p = points[i]
            address = p.address or 0
            width = 1 if bits else p.register_count
            fits = current and address - end <= gap and address + width - start <= limit
            if not fits:
                if current:
                    blocks.append(
                        _block(
                            table, start, end, current, points, device_byte_order, device_word_order
                        )
                    )
                current, start, end = [], address, address
            current.append(i)
            end = max(end, address + width)
        if current:
            blocks.append(
                _block(table, start, end, current, points, device_byte_order, device_word_order)
            )
    return blocks


def _block(
    table: ModbusTable,
    start: int,
    end: int,
    members: list[int],
    points: Sequence[PointConfig],
    byte_order: Order,
    word_order: Order,
) -> Block:
    rows = np.asarray(members, np.intp)
    offsets = [(points[i].address or 0) - start for i in members]
    if table in _BIT_TABLES:
        return Block(table, start, end - start, rows, None, np.asarray(offsets, np.intp))
    chosen = [points[i] for i in members]
    layout = RegisterLayout(
        offsets,
        [p.data_type for p in chosen],
        [p.byte_order or byte_order for p in chosen],
        [p.word_order or word_order for p in chosen],
        [p.scale for p in chosen],
        [p.offset for p in chosen],
    )
    return Block(table, start, end - start, rows, layout, None)


TickObserver = Callable[[int, int], None]


class ModbusCollector(DeviceCollector):
    """Polls one Modbus TCP device (one unit id on one connection) and publishes its samples."""

    device: ModbusDevice

    def __init__(
        self,
        enterprise: str,
        device: ModbusDevice,
        point_ids: Mapping[str, int],
        hub: Hub,
        *,
        backoff: Backoff | None = None,
        stagger: bool = False,
        free_run: bool = False,
        on_tick: TickObserver | None = None,
    ) -> None:
        """Polls tick at `phase_ns + k * period` ns since the epoch: by default every tick is a
        whole multiple of the period. With `stagger` the phase is a fixed fraction of the period
        drawn from a hash of the device's name, so that devices with the same period do not all
        poll in the same millisecond (Prometheus spreads scrapes the same way).
        `free_run` polls back to back instead (benchmarks); `on_tick(tick_ns, start_ns)` is told
        the scheduled and actual start of each poll."""
        super().__init__(enterprise, device, point_ids, hub, backoff=backoff)
        self.device = device
        self.free_run = free_run
        self.on_tick = on_tick
        self.period_ns = round(device.period_s * 1e9)
        spread = zlib.crc32(self._name.encode()) / 2**32 if stagger else 0.0
        self.phase_ns = int(spread * self.period_ns)
        configs = [p.config for p in self.points]
        self.blocks = plan_blocks(configs, device.byte_order, device.word_order, device.max_block)
        self._by_code = {p.config.code: p.config for p in self.points}
        n = len(configs)
        self._low = np.array([p.range[0] if p.range else -np.inf for p in configs])
        self._high = np.array([p.range[1] if p.range else np.inf for p in configs])
        self._has_range = bool(np.isfinite(self._low).any())
        # One block covering every point in configured order needs no scatter.
        self._direct = len(self.blocks) == 1 and np.array_equal(self.blocks[0].rows, np.arange(n))
        self._lock = asyncio.Lock()
        self._client: AsyncModbusTcpClient | None = None

    # -- polling ---------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            client = AsyncModbusTcpClient(
                self.device.host,
                port=self.device.port,
                timeout=self.device.timeout_s,
                retries=0,
                # We own reconnection and its backoff; pymodbus must not retry behind our back.
                reconnect_delay=0,
                reconnect_delay_max=0,
                name=self._name,
            )
            client.ctx.trace_connect = self._connection_watcher(client)
            try:
                if not await client.connect():
                    raise ConnectionException(
                        f"cannot connect to {self.device.host}:{self.device.port}"
                    )
                self._client = client
                await self._poll_forever(client)
            except Exception as exc:
                raise_if_cancelled()  # a client's clean-up may have replaced it
                reason = _describe(exc)
            finally:
                self._client = None
                client.close()
            await self.failed(reason)
            await self.sleep_backoff()

    async def _poll_forever(self, client: AsyncModbusTcpClient) -> NoReturn:
        period, phase = self.period_ns, self.phase_ns
        while True:
            if self.free_run:
                tick = time.time_ns()
            else:
                now = time.time_ns()
                # The next grid point strictly in the future: a late tick is skipped, never bunched.
                tick = ((now - phase) // period + 1) * period + phase
                await asyncio.sleep((tick - now) / 1e9)
            start = time.time_ns()
            if self.on_tick is not None:
                self.on_tick(tick, start)
            batch = await self.poll(client, start)
            await self.succeeded()
            await self.publish(batch)
            raise_if_cancelled()  # one that came with a reply

    async def poll(self, client: AsyncModbusTcpClient, ts_ns: int) -> SampleBatch:
        """Read every block once; the batch is stamped with `ts_ns`. Raises on any failure."""
        unit = self.device.unit_id
        async with self._lock:
            if not client.connected:
                raise ConnectionException("connection closed")
            if self._direct:
                values = await self._read(client, self.blocks[0], unit)
            else:
                values = np.empty(len(self.points))
                for block in self.blocks:
                    values[block.rows] = await self._read(client, block, unit)
        quality = np.zeros(len(values), np.uint8)
        if self._has_range:
            quality[(values < self._low) | (values > self._high)] = Quality.OUT_OF_RANGE
        n = len(values)
        return SampleBatch(np.full(n, ts_ns, np.int64), self.point_array, values, quality)

    async def _read(
        self, client: AsyncModbusTcpClient, block: Block, unit: int
    ) -> npt.NDArray[np.float64]:
        if block.table == "holding":
            rr = await client.read_holding_registers(block.start, count=block.count, device_id=unit)
        elif block.table == "input":
            rr = await client.read_input_registers(block.start, count=block.count, device_id=unit)
        elif block.table == "coil":
            rr = await client.read_coils(block.start, count=block.count, device_id=unit)
        else:
            rr = await client.read_discrete_inputs(block.start, count=block.count, device_id=unit)
        if rr.isError():
            raise ModbusError(
                f"exception response {getattr(rr, 'exception_code', '?')} to a read of "
                f"{block.count} {block.table} from {block.start} (unit {unit})"
            )
        if block.layout is not None:
            regs = rr.registers
            if len(regs) < block.count:
                raise ModbusError(f"short reply: {len(regs)} of {block.count} registers")
            return block.layout.decode(np.array(regs, np.uint16))
        bits = rr.bits
        if len(bits) < block.count:
            raise ModbusError(f"short reply: {len(bits)} of {block.count} bits")
        assert block.bit_offsets is not None
        return np.asarray(bits, bool)[block.bit_offsets].astype(np.float64)

    def _connection_watcher(self, client: AsyncModbusTcpClient) -> Callable[[bool], None]:
        """Fail a request in flight as soon as the peer closes, rather than at its timeout."""

        def watch(connected: bool) -> None:
            future: asyncio.Future[Any] | None = getattr(client.ctx, "response_future", None)
            if not connected and future is not None and not future.done():
                future.set_exception(ConnectionResetError("connection closed by the device"))

        return watch

    # -- writing ---------------------------------------------------------------------------

    async def write(self, point_code: str, value: float) -> None:
        """Write an engineering value to a holding register point or a coil.

        Raises ValueError for an unknown or read-only point or a value the point cannot hold,
        DeviceUnavailable when the device is not connected, ModbusError when it refuses.
        """
        point = self._by_code.get(point_code)
        if point is None:
            raise ValueError(f"{self._name}: no point {point_code!r} on this device")
        if point.table not in ("holding", "coil"):
            raise ValueError(
                f"{self._name}: point {point_code!r} is in the read-only {point.table} table"
            )
        address = point.address or 0
        raw = (value - point.offset) / point.scale
        words = encode(
            [raw],
            point.data_type,
            point.byte_order or self.device.byte_order,
            point.word_order or self.device.word_order,
        )[0]
        unit = self.device.unit_id
        async with self._lock:
            client = self._client
            if client is None or not client.connected:
                raise DeviceUnavailable(
                    f"{self._name}: cannot write {point_code!r}: device "
                    f"{self.device.host}:{self.device.port} is not connected"
                )
            try:
                if point.table == "coil":
                    rr = await client.write_coil(address, bool(value != 0), device_id=unit)
                elif len(words) == 1:
                    rr = await client.write_register(address, int(words[0]), device_id=unit)
                else:
                    rr = await client.write_registers(
                        address, [int(w) for w in words], device_id=unit
                    )
            except Exception as exc:
                raise DeviceUnavailable(
                    f"{self._name}: write of {point_code!r} failed: {_describe(exc)}"
                ) from exc
        if rr.isError():
            raise ModbusError(
                f"{self._name}: device refused the write of {value!r} to {point_code!r} "
                f"(exception code {getattr(rr, 'exception_code', '?')})"
            )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
