"""PostgreSQL binary COPY of SampleBatch columns into `samples`, built by numpy without any
Python object per sample; a NaN value is sent as SQL NULL (no value, skipped by aggregates)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from streams.batch import SampleBatch

COLUMNS = ("ts", "point", "value", "quality")

# Microseconds from the Unix epoch to PostgreSQL's epoch, 2000-01-01 00:00:00 UTC.
PG_EPOCH_US = 946_684_800_000_000

_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_TRAILER = (-1).to_bytes(2, "big", signed=True)

_ROW_FIELDS = [
    ("fields", ">i2"),
    ("ts_len", ">i4"),
    ("ts", ">i8"),
    ("point_len", ">i4"),
    ("point", ">i4"),
    ("value_len", ">i4"),
    ("value", ">f8"),
    ("quality_len", ">i4"),
    ("quality", ">i2"),
]
_ROW = np.dtype(_ROW_FIELDS)
_ROW_SIZE = _ROW.itemsize
_VALUE_AT = np.dtype(_ROW_FIELDS[:6]).itemsize  # byte offset of the value payload in a row


def pg_timestamp_us(ts_ns: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Nanoseconds since the Unix epoch → PostgreSQL timestamp microseconds (floored)."""
    return ts_ns // 1000 - PG_EPOCH_US


def encode(batch: SampleBatch) -> memoryview:
    """The complete binary COPY stream (header, one row per sample, trailer) for `batch`."""
    n = len(batch)
    body = len(_HEADER) + n * _ROW_SIZE
    buf = np.empty(body + len(_TRAILER), np.uint8)
    buf[: len(_HEADER)] = np.frombuffer(_HEADER, np.uint8)
    rows = buf[len(_HEADER) : body].view(_ROW)
    rows["fields"] = len(COLUMNS)
    rows["ts_len"] = 8
    rows["ts"] = pg_timestamp_us(batch.ts)
    rows["point_len"] = 4
    rows["point"] = batch.point
    rows["value_len"] = 8
    rows["value"] = batch.value
    rows["quality_len"] = 2
    rows["quality"] = batch.quality
    buf[body:] = np.frombuffer(_TRAILER, np.uint8)

    missing = np.isnan(batch.value)
    if not missing.any():
        return buf.data
    # A NULL field is its length -1 with no payload: drop the 8 value bytes of those rows
    # with one boolean mask over the row bytes, which keeps every other byte in order.
    rows["value_len"][missing] = -1
    keep = np.ones(len(buf), np.bool_)
    row_bytes = keep[len(_HEADER) : body].reshape(n, _ROW_SIZE)
    row_bytes[missing, _VALUE_AT : _VALUE_AT + 8] = False
    return buf[keep].data
