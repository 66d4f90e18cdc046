"""The sample writer: hub batches into `samples` by binary COPY together with `latest_values`,
and, while the database is unreachable, a disk spool replayed exactly once when it returns.

Every write unit (the hub batches coalesced into one COPY) carries a sequence number that is
committed to `ingest_state` in the same transaction as its rows; a replayed spool file whose
number is at or below the committed one was already written (the crash between COMMIT and
deleting the file) and is skipped.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import numpy as np

from streams.batch import SampleBatch
from streams.hub import Subscription
from streams.pgcopy import COLUMNS, encode, pg_timestamp_us
from streams.spool import Spool, SpoolError
from streams.store import Store

log = logging.getLogger(__name__)

# Refused for what the rows contain: retrying cannot help, the rows go to `rejected/`.
# ValueError covers asyncpg's client-side encoding errors and an implausible time range.
_REJECTED: tuple[type[BaseException], ...] = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.ProgramLimitExceededError,
    ValueError,
)
# Anything else from the database or the link (connection lost, server shutting down or
# starting, too many connections, disk full, serialization failure, timeout) is retried.
_RETRIED: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)

_CLAIM_SQL = """
INSERT INTO ingest_state AS s (writer, last_seq) VALUES ($1, $2)
ON CONFLICT (writer) DO UPDATE SET last_seq = excluded.last_seq, updated_at = now()
WHERE s.last_seq < excluded.last_seq
RETURNING last_seq
"""

_LATEST_SQL = """
INSERT INTO latest_values AS l (point, ts, value, quality)
SELECT p, timestamptz '2000-01-01 00:00:00+00' + t * interval '1 microsecond',
       nullif(v, 'NaN'), q
FROM unnest($1::integer[], $2::bigint[], $3::float8[], $4::smallint[]) AS u(p, t, v, q)
ON CONFLICT (point) DO UPDATE
SET ts = excluded.ts, value = excluded.value, quality = excluded.quality
WHERE excluded.ts >= l.ts
"""


def _newest_per_point(batch: SampleBatch) -> tuple[list[int], list[int], list[float], list[int]]:
    """Arguments of `_LATEST_SQL`: the newest sample of each point (the later row on a tie)."""
    order = np.lexsort((batch.ts, batch.point))
    sorted_points = batch.point[order]
    last = order[np.flatnonzero(np.append(sorted_points[1:] != sorted_points[:-1], True))]
    return (
        batch.point[last].tolist(),
        pg_timestamp_us(batch.ts[last]).tolist(),
        batch.value[last].tolist(),
        batch.quality[last].astype(np.int16).tolist(),
    )


def _slice(batch: SampleBatch, lo: int, hi: int) -> SampleBatch:
    return SampleBatch(
        batch.ts[lo:hi], batch.point[lo:hi], batch.value[lo:hi], batch.quality[lo:hi]
    )


@dataclass(slots=True)
class _Unit:
    """Hub batches written (or spooled) together under one sequence number."""

    batch: SampleBatch
    parts: tuple[int, ...]  # row counts of the hub batches, to single out a refused one
    seq: int | None = None
    _copy: memoryview | None = field(default=None, repr=False)

    @classmethod
    def of(cls, batches: Sequence[SampleBatch]) -> _Unit:
        return cls(SampleBatch.concat(batches), tuple(len(b) for b in batches))

    @property
    def copy_data(self) -> memoryview:
        if self._copy is None:
            self._copy = encode(self.batch)
        return self._copy


class _Duplicate(Exception):
    """The database already holds this sequence number."""


class SampleWriter:
    """Writes hub batches to the store; spools them to disk while the database is unreachable."""

    def __init__(
        self,
        store: Store,
        spool_dir: Path,
        *,
        max_rows: int = 100_000,
        retry_initial: float = 0.5,
        retry_max: float = 10.0,
        name: str = "samples",
        timeout: float = 30.0,
    ) -> None:
        self.store = store
        self.name = name  # the row of `ingest_state`: one per writer sharing a database
        self.max_rows = max_rows
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.timeout = timeout
        self._spool = Spool(spool_dir)
        self._lock = asyncio.Lock()  # one write unit at a time, in sequence order
        self._started = False
        self._drain_task: asyncio.Task[None] | None = None
        self._drained = asyncio.Event()
        self._db_up = True
        self._down_since = 0.0
        self.rows_written = 0
        self.batches_written = 0
        self.rows_spooled = 0
        self.rows_rejected = 0
        self.last_error: str | None = None

    @property
    def stats(self) -> dict[str, object]:
        return {
            "rows_written": self.rows_written,
            "batches_written": self.batches_written,
            "rows_spooled": self.rows_spooled,
            "rows_rejected": self.rows_rejected,
            "spool_backlog_batches": len(self._spool),
            "db_up": self._db_up,
            "last_error": self.last_error,
        }

    async def run(self, sub: Subscription) -> None:
        """Write the subscription's batches until it closes, coalescing what is already queued."""
        async with self._lock:
            await self._start()
        try:
            closed = False
            while not closed:
                first = await sub.get()
                if first is None:
                    return
                batches = [first]
                rows = len(first)
                # Take only what is waiting: a low-rate stream is written at once.
                while rows < self.max_rows and sub.backlog:
                    more = await sub.get()
                    if more is None:
                        closed = True
                        break
                    batches.append(more)
                    rows += len(more)
                try:
                    await self._submit(_Unit.of(batches))
                finally:
                    for _ in batches:
                        sub.task_done()
        finally:
            await self.close()

    async def write(self, batch: SampleBatch) -> None:
        """Write one batch now (or spool it); returns once it is committed or on disk."""
        await self._submit(_Unit.of([batch]))

    async def flush(self) -> None:
        """Wait until everything received so far is committed or spooled."""
        async with self._lock:
            pass

    async def wait_drained(self) -> None:
        """Wait until the spool is empty (everything received is in the database)."""
        async with self._lock:
            await self._start()
        while len(self._spool):
            self._drained.clear()
            await self._drained.wait()

    async def close(self) -> None:
        """Stop replaying; what is still spooled stays on disk for the next writer."""
        if self._drain_task is not None:
            self._drain_task.cancel()
            try:
                await self._drain_task
            except asyncio.CancelledError:
                if (task := asyncio.current_task()) is not None and task.cancelling():
                    raise
            self._drain_task = None

    # -- internals (the caller holds self._lock from here on) ------------------------

    async def _submit(self, unit: _Unit) -> None:
        if not len(unit.batch):
            return
        async with self._lock:
            await self._start()
            if not len(self._spool):
                try:
                    await self._write_live(unit)
                    return
                except _RETRIED as exc:
                    self._lost(exc)
            await self._spool_unit(unit)

    async def _start(self) -> None:
        if self._started:
            return
        self._started = True
        try:
            async with asyncio.timeout(self.timeout), self.store.pool.acquire() as conn:
                last = await conn.fetchval(
                    "SELECT last_seq FROM ingest_state WHERE writer = $1", self.name
                )
        except _RETRIED as exc:
            # The spool's own counter keeps numbers rising until the database is back.
            self._lost(exc)
        else:
            if last is not None:
                self._spool.observe(last)
        if len(self._spool):
            log.info(
                "%d sample batches spooled in %s from before; replaying them",
                len(self._spool),
                self._spool.directory,
            )
            self._start_drain()

    async def _take_seq(self) -> int:
        if self._spool.needs_reserve:
            await asyncio.to_thread(self._spool.reserve)
        return self._spool.take_seq()

    async def _write_live(self, unit: _Unit) -> None:
        unit.seq = await self._take_seq()
        while True:
            try:
                await self._commit(unit)
                return
            except _Duplicate:
                # Our counter is behind the database's (a spool directory that lost its
                # counter while the clock stepped back): move past it and write afresh.
                async with asyncio.timeout(self.timeout), self.store.pool.acquire() as conn:
                    last = await conn.fetchval(
                        "SELECT last_seq FROM ingest_state WHERE writer = $1", self.name
                    )
                self._spool.observe(int(last))
                unit.seq = await self._take_seq()

    async def _spool_unit(self, unit: _Unit) -> None:
        if unit.seq is None:
            unit.seq = await self._take_seq()
        await asyncio.to_thread(self._spool.put, unit.seq, unit.batch, unit.parts)
        self.rows_spooled += len(unit.batch)
        self._start_drain()

    async def _commit(self, unit: _Unit) -> None:
        """Write a unit in one transaction with its sequence number; raise _Duplicate if the
        database already has it; refused rows go to `rejected/` and the rest is written."""
        try:
            b = unit.batch
            await self.store.ensure_partitions(int(b.ts.min()), int(b.ts.max()))
            async with (
                asyncio.timeout(self.timeout),
                self.store.pool.acquire() as conn,
                conn.transaction(),
            ):
                await self._claim(conn, unit)
                await conn.copy_to_table(
                    "samples", source=unit.copy_data, columns=COLUMNS, format="binary"
                )
                await conn.execute(_LATEST_SQL, *_newest_per_point(b))
        except _REJECTED:
            await self._commit_parts(unit)
            return
        self.rows_written += len(b)
        self.batches_written += len(unit.parts)

    async def _commit_parts(self, unit: _Unit) -> None:
        """The unit was refused: write its hub batches one by one, each in a savepoint, and
        keep the refused ones under `rejected/` (written before COMMIT, so a retry of the
        unit after a lost COMMIT rewrites the same files)."""
        assert unit.seq is not None
        bounds = np.cumsum((0, *unit.parts)).tolist()
        accepted: list[SampleBatch] = []
        async with (
            asyncio.timeout(self.timeout),
            self.store.pool.acquire() as conn,
            conn.transaction(),
        ):
            await self._claim(conn, unit)
            for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
                part = _slice(unit.batch, lo, hi)
                try:
                    await self.store.ensure_partitions(int(part.ts.min()), int(part.ts.max()))
                    async with conn.transaction():
                        await conn.copy_to_table(
                            "samples", source=encode(part), columns=COLUMNS, format="binary"
                        )
                except _REJECTED as exc:
                    reason = f"{type(exc).__name__}: {exc}"
                    path = await asyncio.to_thread(self._spool.reject, unit.seq, i, part, reason)
                    log.error(
                        "database refused a batch of %d samples (points %d..%d, %s); kept in %s",
                        len(part),
                        int(part.point.min()),
                        int(part.point.max()),
                        reason,
                        path,
                    )
                    self.rows_rejected += len(part)
                    self.last_error = reason
                else:
                    accepted.append(part)
            if accepted:
                await conn.execute(_LATEST_SQL, *_newest_per_point(SampleBatch.concat(accepted)))
        self.rows_written += sum(len(p) for p in accepted)
        self.batches_written += len(accepted)

    async def _claim(self, conn: asyncpg.Connection, unit: _Unit) -> None:
        # The row lock taken here also serialises two processes that share a writer name.
        if await conn.fetchval(_CLAIM_SQL, self.name, unit.seq) is None:
            raise _Duplicate(unit.seq)

    # -- outage and replay ---------------------------------------------------------------

    def _lost(self, exc: BaseException) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self._db_up:
            self._db_up = False
            self._down_since = time.monotonic()
            log.warning(
                "database unreachable (%s); spooling sample batches to %s until it returns",
                self.last_error,
                self._spool.directory,
            )

    def _start_drain(self) -> None:
        if self._drain_task is None or self._drain_task.done():
            self._drain_task = asyncio.create_task(self._drain(), name="sample-spool-replay")

    async def _drain(self) -> None:
        delay = self.retry_initial
        while True:
            if not self._db_up:
                await asyncio.sleep(random.uniform(delay / 2, delay))
                delay = min(self.retry_max, delay * 2)
            async with self._lock:
                if not len(self._spool):
                    self._drained.set()
                    return
                if await self._replay_oldest():
                    delay = self.retry_initial

    async def _replay_oldest(self) -> bool:
        """Replay the oldest spool file; False if the database is still unreachable."""
        seq = self._spool.pending[0]
        try:
            entry = await asyncio.to_thread(self._spool.read, seq)
        except (SpoolError, OSError) as exc:
            path = await asyncio.to_thread(self._spool.reject_file, seq, str(exc))
            log.error("unreadable spool file moved to %s: %s", path, exc)
            return True
        unit = _Unit(entry.batch, entry.parts, seq)
        try:
            await self._commit(unit)
        except _Duplicate:
            log.info("spooled batch %d was committed before; dropping its file", seq)
        except _RETRIED as exc:
            self._lost(exc)
            return False
        await asyncio.to_thread(self._spool.remove, seq)
        if not self._db_up:
            self._db_up = True
            log.info(
                "database reachable again after %.0f s; replaying %d spooled batches",
                time.monotonic() - self._down_since,
                len(self._spool) + 1,
            )
        return True
