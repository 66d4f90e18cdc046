"""The disk spool of the sample writer: batches waiting for the database, one fsynced file per
batch named by its sequence number, and the sequence counter that survives restarts.

Blocking file I/O: the writer calls these methods through `asyncio.to_thread`.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streams.batch import SampleBatch

_MAGIC = b"ANJSPOOL"
_VERSION = 1
# magic, version, rows, parts, crc32 of everything after the header
_HEADER = struct.Struct("<8sIQII")
_SUFFIX = ".batch"
_SEQUENCE_FILE = "sequence"
# Sequence numbers handed out without touching the disk between two writes of the ceiling.
_RESERVE = 1_000_000


class SpoolError(ValueError):
    """A spool file that cannot be read back (wrong format or corrupted)."""


@dataclass(frozen=True, slots=True)
class SpooledBatch:
    seq: int
    batch: SampleBatch
    parts: tuple[int, ...]  # row counts of the hub batches it was coalesced from


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, chunks: Sequence[bytes | memoryview]) -> None:
    """Write to a temporary name, fsync, rename into place, fsync the directory."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        for chunk in chunks:
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _encode(batch: SampleBatch, parts: Sequence[int]) -> list[bytes | memoryview]:
    body: list[bytes | memoryview] = [
        np.asarray(parts, "<u8").tobytes(),
        np.ascontiguousarray(batch.ts, "<i8").data.cast("B"),
        np.ascontiguousarray(batch.point, "<i4").data.cast("B"),
        np.ascontiguousarray(batch.value, "<f8").data.cast("B"),
        np.ascontiguousarray(batch.quality, "u1").data.cast("B"),
    ]
    crc = 0
    for chunk in body:
        crc = zlib.crc32(chunk, crc)
    return [_HEADER.pack(_MAGIC, _VERSION, len(batch), len(parts), crc), *body]


def _decode(data: bytes, name: str) -> tuple[SampleBatch, tuple[int, ...]]:
    if len(data) < _HEADER.size:
        raise SpoolError(f"spool file {name} is truncated ({len(data)} bytes)")
    magic, version, n, nparts, crc = _HEADER.unpack_from(data)
    if magic != _MAGIC or version != _VERSION:
        raise SpoolError(f"spool file {name} is not a version {_VERSION} spool file")
    expected = _HEADER.size + 8 * nparts + n * (8 + 4 + 8 + 1)
    if len(data) != expected:
        raise SpoolError(f"spool file {name} has {len(data)} bytes, expected {expected}")
    if zlib.crc32(memoryview(data)[_HEADER.size :]) != crc:
        raise SpoolError(f"spool file {name} fails its checksum")
    at = _HEADER.size
    parts = np.frombuffer(data, "<u8", nparts, at)
    at += 8 * nparts
    ts = np.frombuffer(data, "<i8", n, at).astype(np.int64)
    at += 8 * n
    point = np.frombuffer(data, "<i4", n, at).astype(np.int32)
    at += 4 * n
    value = np.frombuffer(data, "<f8", n, at).astype(np.float64)
    at += 8 * n
    quality = np.frombuffer(data, "u1", n, at).astype(np.uint8)
    if int(parts.sum()) != n:
        raise SpoolError(f"spool file {name}: parts add up to {int(parts.sum())}, not {n} rows")
    batch = SampleBatch(ts, point, value, quality)
    return batch, tuple(int(p) for p in parts)


class Spool:
    """A directory of `<seq>.batch` files, replayed in sequence order; `rejected/` beside them."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.rejected_dir = directory / "rejected"
        self.rejected_dir.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.tmp"):
            # A write that never reached its rename: the batch was never acknowledged.
            stale.unlink()
        self._pending = sorted(
            int(p.name.removesuffix(_SUFFIX)) for p in directory.glob("*" + _SUFFIX)
        )
        seq_file = directory / _SEQUENCE_FILE
        ceiling = int(seq_file.read_text()) if seq_file.exists() else 0
        # The wall clock in microseconds seeds a spool directory that lost (or never had) its
        # counter, so it starts above sequences it may have used before; the ceiling on disk
        # covers a clock that stepped back.
        self._next = max(
            ceiling, self._pending[-1] + 1 if self._pending else 0, time.time_ns() // 1000
        )
        self._ceiling = self._next

    # -- sequence numbers -------------------------------------------------------------

    def observe(self, last_seq: int) -> None:
        """The database has committed up to `last_seq`: never hand out a number at or below it."""
        self._next = max(self._next, last_seq + 1)

    @property
    def needs_reserve(self) -> bool:
        return self._next >= self._ceiling

    def reserve(self) -> None:
        """Persist a new ceiling above the next sequence number (fsynced)."""
        ceiling = self._next + _RESERVE
        _write_durably(self.directory / _SEQUENCE_FILE, [str(ceiling).encode()])
        self._ceiling = ceiling

    def take_seq(self) -> int:
        if self.needs_reserve:
            raise RuntimeError("Spool.reserve() must run before more sequence numbers are taken")
        seq = self._next
        self._next += 1
        return seq

    # -- batches ----------------------------------------------------------------------

    def _path(self, seq: int) -> Path:
        return self.directory / f"{seq:020d}{_SUFFIX}"

    @property
    def pending(self) -> list[int]:
        """Sequence numbers of the spooled batches, oldest first."""
        return list(self._pending)

    def __len__(self) -> int:
        return len(self._pending)

    def put(self, seq: int, batch: SampleBatch, parts: Sequence[int]) -> None:
        if self._pending and seq <= self._pending[-1]:
            raise ValueError(f"spool sequence {seq} is not after {self._pending[-1]}")
        _write_durably(self._path(seq), _encode(batch, parts))
        self._pending.append(seq)

    def read(self, seq: int) -> SpooledBatch:
        path = self._path(seq)
        batch, parts = _decode(path.read_bytes(), path.name)
        return SpooledBatch(seq, batch, parts)

    def remove(self, seq: int) -> None:
        self._path(seq).unlink(missing_ok=True)
        _fsync_dir(self.directory)
        self._pending.remove(seq)

    def reject_file(self, seq: int, reason: str) -> Path:
        """Move an unreadable spool file aside with the reason next to it."""
        path = self._path(seq)
        target = self.rejected_dir / path.name
        _write_durably(target.with_suffix(".reason.txt"), [reason.encode()])
        os.replace(path, target)
        _fsync_dir(self.rejected_dir)
        _fsync_dir(self.directory)
        self._pending.remove(seq)
        return target

    def reject(self, seq: int, part: int, batch: SampleBatch, reason: str) -> Path:
        """Keep a batch the database refused, with the reason, under `rejected/`."""
        target = self.rejected_dir / f"{seq:020d}-{part}{_SUFFIX}"
        _write_durably(target.with_suffix(".reason.txt"), [reason.encode()])
        _write_durably(target, _encode(batch, [len(batch)]))
        return target


def read_batch_file(path: Path) -> SampleBatch:
    """Read a spool or rejected batch file (for inspection and re-import by an operator)."""
    return _decode(path.read_bytes(), path.name)[0]
