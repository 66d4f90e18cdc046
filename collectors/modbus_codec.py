"""Modbus register codec: register blocks to engineering values and back, vectorised with numpy.

Types bool/int16/uint16/int32/uint32/float32/float64, byte order within a register, word order
across registers, then `value * scale + offset`; a `RegisterLayout` decodes a whole block at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from streams.config import REGISTER_COUNT, DataType, Order

Registers = npt.NDArray[np.uint16]
Floats = npt.NDArray[np.float64]
Index = npt.NDArray[np.intp]

# Big-endian numpy dtype of each type's raw bytes once the registers are in big-endian order.
_RAW: dict[str, np.dtype[np.generic]] = {
    "bool": np.dtype(">u2"),
    "int16": np.dtype(">i2"),
    "uint16": np.dtype(">u2"),
    "int32": np.dtype(">i4"),
    "uint32": np.dtype(">u4"),
    "float32": np.dtype(">f4"),
    "float64": np.dtype(">f8"),
}


class EncodeError(ValueError):
    """A value that the point's data type cannot hold."""


def _canonical(words: Registers, byte_order: Order, word_order: Order) -> Registers:
    """Device order ↔ big-endian bytes, most significant register first (an involution)."""
    if word_order == "little":
        words = words[..., ::-1]
    if byte_order == "little":
        words = ((words >> 8) | (words << 8)).astype(np.uint16)
    return words


def decode(
    words: npt.ArrayLike, data_type: DataType, byte_order: Order = "big", word_order: Order = "big"
) -> Floats:
    """Raw values (before scale) of n points from their registers, shape (n, register count)."""
    k = REGISTER_COUNT[data_type]
    w = np.asarray(words, np.uint16).reshape(-1, k)
    if data_type == "bool":
        flags: Floats = (w[:, 0] != 0).astype(np.float64)
        return flags
    w = _canonical(w, byte_order, word_order)
    raw = np.ascontiguousarray(w, dtype=">u2").view(_RAW[data_type]).reshape(-1)
    values: Floats = raw.astype(np.float64)
    return values


def encode(
    raw: npt.ArrayLike,
    data_type: DataType,
    byte_order: Order = "big",
    word_order: Order = "big",
    *,
    saturate: bool = False,
) -> Registers:
    """Registers, shape (n, register count), holding n raw values (after the inverse scale).

    Integers are rounded. A value the type cannot hold raises EncodeError naming it, unless
    `saturate` (a simulated transmitter pinned at its limit; NaN reads as 0).
    """
    r = np.asarray(raw, np.float64).reshape(-1)
    k = REGISTER_COUNT[data_type]
    if data_type == "bool":
        return np.where(np.nan_to_num(r) != 0, 1, 0).astype(np.uint16).reshape(-1, 1)
    target = _RAW[data_type]
    if target.kind in "iu":
        info = np.iinfo(target)  # type: ignore[type-var]
        r = np.rint(r)
        if saturate:
            r = np.clip(np.nan_to_num(r), info.min, info.max)
        else:
            bad = ~np.isfinite(r) | (r < info.min) | (r > info.max)
            if bad.any():
                raise EncodeError(
                    f"{r[bad][0]:g} does not fit a {data_type} ({info.min}..{info.max})"
                )
    elif data_type == "float32":
        limit = float(np.finfo(np.float32).max)
        if saturate:
            r = np.clip(r, -limit, limit)
        else:
            bad = np.isfinite(r) & (np.abs(r) > limit)
            if bad.any():
                raise EncodeError(f"{r[bad][0]:g} does not fit a float32")
    w = r.astype(target).view(">u2").reshape(-1, k).astype(np.uint16)
    return _canonical(w, byte_order, word_order)


def bits_to_values(bits: Sequence[bool] | npt.ArrayLike) -> Floats:
    """Coils or discrete inputs as 1.0 / 0.0."""
    return np.asarray(bits, dtype=bool).astype(np.float64)


@dataclass(frozen=True, slots=True)
class _Group:
    data_type: DataType
    byte_order: Order
    word_order: Order
    rows: Index  # positions of the group's points in the layout
    index: Index  # (n, k) register offsets of each point in the block


class RegisterLayout:
    """Where n points sit in one block of registers, with their types and scaling.

    Built once; `decode` turns a block into the n engineering values with one gather and one
    view per (type, byte order, word order) group, `encode` does the reverse into a block.
    """

    def __init__(
        self,
        offsets: Sequence[int],
        data_types: Sequence[DataType],
        byte_orders: Sequence[Order],
        word_orders: Sequence[Order],
        scale: npt.ArrayLike,
        offset: npt.ArrayLike,
    ) -> None:
        n = len(offsets)
        self.size = n
        self.scale = np.asarray(scale, np.float64).reshape(n)
        self.offset = np.asarray(offset, np.float64).reshape(n)
        keys: dict[tuple[DataType, Order, Order], list[int]] = {}
        for i, key in enumerate(zip(data_types, byte_orders, word_orders, strict=True)):
            keys.setdefault(key, []).append(i)
        starts = np.asarray(offsets, np.intp)
        self.groups: list[_Group] = []
        for (dt, bo, wo), members in keys.items():
            rows = np.asarray(members, np.intp)
            k = REGISTER_COUNT[dt]
            index = starts[rows, None] + np.arange(k, dtype=np.intp)[None, :]
            self.groups.append(_Group(dt, bo, wo, rows, index))
        self.width = int(max((int(g.index.max()) for g in self.groups), default=-1)) + 1
        self._identity = bool((self.scale == 1).all() and (self.offset == 0).all())
        self._single_registers = all(
            g.data_type in ("int16", "uint16") and g.byte_order == "big" for g in self.groups
        )
        self._index = starts
        self._unsigned = np.asarray(
            [dt == "uint16" for dt in data_types] if n else [], bool
        ).reshape(n)

    def decode(self, block: npt.ArrayLike) -> Floats:
        """Engineering values of the layout's points from a block of registers."""
        b = np.asarray(block, np.uint16)
        if self._single_registers:
            # The common case (16-bit values, big-endian bytes) is one gather and one cast.
            raw: Floats = b[self._index].view(np.int16).astype(np.float64)
            raw[self._unsigned] = b[self._index[self._unsigned]]
        else:
            raw = np.empty(self.size)
            for g in self.groups:
                raw[g.rows] = decode(b[g.index], g.data_type, g.byte_order, g.word_order)
        if self._identity:
            return raw
        raw *= self.scale
        raw += self.offset
        return raw

    def raw(self, values: npt.ArrayLike) -> Floats:
        return (np.asarray(values, np.float64) - self.offset) / self.scale

    def encode_into(
        self,
        block: Registers,
        values: npt.ArrayLike,
        *,
        rows: Index | None = None,
        saturate: bool = False,
    ) -> None:
        """Write engineering values (all points, or those at `rows`) into `block` in place."""
        v = np.asarray(values, np.float64).reshape(-1)
        selected = np.arange(self.size) if rows is None else np.asarray(rows, np.intp)
        raw = np.empty(self.size)
        raw[selected] = (v - self.offset[selected]) / self.scale[selected]
        chosen = np.zeros(self.size, bool)
        chosen[selected] = True
        for g in self.groups:
            mine = chosen[g.rows]
            if not mine.any():
                continue
            words = encode(
                raw[g.rows[mine]], g.data_type, g.byte_order, g.word_order, saturate=saturate
            )
            block[g.index[mine]] = words
