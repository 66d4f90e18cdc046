"""The Modbus register codec: round trips for every type and order, and known register images."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.client import AsyncModbusTcpClient

from collectors.modbus_codec import EncodeError, RegisterLayout, decode, encode
from streams.config import DataType, Order

ORDERS: list[Order] = ["big", "little"]
INT_RANGES: dict[DataType, tuple[int, int]] = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
}
PYMODBUS_TYPE = {
    "int16": AsyncModbusTcpClient.DATATYPE.INT16,
    "uint16": AsyncModbusTcpClient.DATATYPE.UINT16,
    "int32": AsyncModbusTcpClient.DATATYPE.INT32,
    "uint32": AsyncModbusTcpClient.DATATYPE.UINT32,
    "float32": AsyncModbusTcpClient.DATATYPE.FLOAT32,
    "float64": AsyncModbusTcpClient.DATATYPE.FLOAT64,
}

orders = st.sampled_from(ORDERS)


def _raw_values(data_type: DataType) -> st.SearchStrategy[list[float]]:
    if data_type in INT_RANGES:
        lo, hi = INT_RANGES[data_type]
        element: st.SearchStrategy[float] = st.integers(lo, hi).map(float)
    elif data_type == "float32":
        element = st.floats(width=32, allow_nan=False, allow_infinity=False)
    elif data_type == "float64":
        element = st.floats(allow_nan=False, allow_infinity=False)
    else:
        element = st.sampled_from([0.0, 1.0])
    return st.lists(element, min_size=1, max_size=20)


@pytest.mark.parametrize("data_type", ["bool", *INT_RANGES, "float32", "float64"])
@given(data=st.data(), byte_order=orders, word_order=orders)
def test_raw_values_survive_encode_then_decode(
    data_type: DataType, data: st.DataObject, byte_order: Order, word_order: Order
) -> None:
    raw = data.draw(_raw_values(data_type))
    words = encode(raw, data_type, byte_order, word_order)
    assert words.dtype == np.uint16
    back = decode(words, data_type, byte_order, word_order)
    np.testing.assert_array_equal(back, np.asarray(raw))


@pytest.mark.parametrize("data_type", [*INT_RANGES, "float32", "float64"])
@given(
    data=st.data(),
    byte_order=orders,
    word_order=orders,
    scale=st.sampled_from([1.0, 0.1, 0.01, 2.5, -0.5]),
    offset=st.floats(-1000, 1000),
)
def test_scaled_values_survive_a_layout_round_trip(
    data_type: DataType,
    data: st.DataObject,
    byte_order: Order,
    word_order: Order,
    scale: float,
    offset: float,
) -> None:
    if data_type in INT_RANGES:
        lo, hi = INT_RANGES[data_type]
        raw = np.array(data.draw(st.lists(st.integers(lo, hi), min_size=1, max_size=8)), float)
    else:
        raw = np.array(data.draw(st.lists(st.floats(-1e6, 1e6, width=32), min_size=1, max_size=8)))
    values = raw * scale + offset
    k = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "float64": 4}[data_type]
    # Points spaced with a one-register gap, so a misplaced gather would read a zero.
    offsets = [i * (k + 1) for i in range(len(raw))]
    layout = RegisterLayout(
        offsets,
        [data_type] * len(raw),
        [byte_order] * len(raw),
        [word_order] * len(raw),
        [scale] * len(raw),
        [offset] * len(raw),
    )
    block = np.zeros(layout.width, np.uint16)
    layout.encode_into(block, values)
    np.testing.assert_allclose(layout.decode(block), values, rtol=1e-6, atol=1e-6 * abs(scale))


@pytest.mark.parametrize("data_type", [*INT_RANGES, "float32", "float64"])
@pytest.mark.parametrize("word_order", ORDERS)
def test_big_endian_bytes_match_pymodbus_conversion(data_type: DataType, word_order: Order) -> None:
    value = {"int16": -1234, "uint16": 54321, "int32": -123456789, "uint32": 3_000_000_000}.get(
        data_type, 1234.5
    )
    expected = AsyncModbusTcpClient.convert_to_registers(
        value, PYMODBUS_TYPE[data_type], word_order=word_order
    )
    assert encode([value], data_type, "big", word_order)[0].tolist() == expected
    assert decode([expected], data_type, "big", word_order)[0] == value


def test_little_byte_order_swaps_bytes_within_each_register() -> None:
    # 1.5 as float32 is 3F C0 00 00.
    assert encode([1.5], "float32", "big", "big")[0].tolist() == [0x3FC0, 0x0000]
    assert encode([1.5], "float32", "big", "little")[0].tolist() == [0x0000, 0x3FC0]
    assert encode([1.5], "float32", "little", "big")[0].tolist() == [0xC03F, 0x0000]
    assert encode([1.5], "float32", "little", "little")[0].tolist() == [0x0000, 0xC03F]
    swapped = struct.unpack(">H", struct.pack("<H", 0x1234))[0]
    assert decode([[swapped]], "uint16", "little", "big")[0] == 0x1234


def test_bool_is_one_for_any_nonzero_register() -> None:
    np.testing.assert_array_equal(decode([0, 1, 0xFF00], "bool"), [0.0, 1.0, 1.0])


def test_layout_decodes_mixed_types_and_orders_in_one_block() -> None:
    layout = RegisterLayout(
        [0, 2, 3, 7],
        ["float32", "int16", "float64", "uint32"],
        ["big", "little", "big", "big"],
        ["little", "big", "big", "little"],
        [1.0, 0.1, 1.0, 2.0],
        [0.0, 0.0, -5.0, 0.0],
    )
    values = np.array([3.25, -12.3, 101.5, 8_000_000_000.0])
    block = np.zeros(layout.width, np.uint16)
    layout.encode_into(block, values)
    assert block[0:2].tolist() == encode([3.25], "float32", "big", "little")[0].tolist()
    np.testing.assert_allclose(layout.decode(block), values)


@pytest.mark.parametrize(
    ("data_type", "raw"),
    [("int16", 40000), ("uint16", -1), ("uint32", 2**32), ("int32", float("nan"))],
)
def test_value_the_type_cannot_hold_is_refused_with_the_value(
    data_type: DataType, raw: float
) -> None:
    with pytest.raises(EncodeError, match=data_type):
        encode([raw], data_type)
    saturated = decode(encode([raw], data_type, saturate=True), data_type)[0]
    lo, hi = INT_RANGES[data_type]
    assert lo <= saturated <= hi
