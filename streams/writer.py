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
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
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
    # Releasing a connection whose COPY the server cut off (the pool terminates it).
    asyncpg.exceptions.InternalClientError,
)

# In one round trip after the COPY: claim the unit's sequence number (no row comes back if
# the database already has it) and keep the newest value of each point.
_FINISH_SQL = """
WITH claim AS (
    INSERT INTO ingest_state AS s (writer, last_seq) VALUES ($1, $2)
    ON CONFLICT (writer) DO UPDATE SET last_seq = excluded.last_seq, updated_at = now()
    WHERE s.last_seq < excluded.last_seq
    RETURNING last_seq
), latest AS (
    INSERT INTO latest_values AS l (point, ts, value, quality)
    SELECT p, timestamptz '2000-01-01 00:00:00+00' + t * interval '1 microsecond',
           nullif(v, 'NaN'), q
    FROM unnest($3::integer[], $4::bigint[], $5::float8[], $6::smallint[]) AS u(p, t, v, q)
    ON CONFLICT (point) DO UPDATE
    SET ts = excluded.ts, value = excluded.value, quality = excluded.quality
    WHERE excluded.ts >= l.ts
)
SELECT last_seq FROM claim
"""

_INT64_MIN = np.iinfo(np.int64).min


def _newest_per_point(batch: SampleBatch) -> tuple[list[int], list[int], list[float], list[int]]:
    """The point, ts, value, quality arguments of `_FINISH_SQL`: the newest sample per point."""
    top = int(batch.point.max()) + 1
    if int(batch.point.min()) >= 0 and top <= 4 * len(batch) + 65_536:
        # Point ids are dense in practice: O(n) through arrays indexed by point id.
        newest = np.full(top, _INT64_MIN)
        np.maximum.at(newest, batch.point, batch.ts)
        row_of = np.full(top, -1, np.intp)
        rows = np.flatnonzero(batch.ts == newest[batch.point])
        row_of[batch.point[rows]] = rows  # on equal timestamps one of them
        last = row_of[row_of >= 0]
    else:
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


async def _settled(prev: asyncio.Future[bool] | None) -> bool:
    """Whether the previous unit committed (True when there is none)."""
    return True if prev is None else await prev


@dataclass(slots=True)
class _Unit:
    """Hub batches written (or spooled) together under one sequence number."""

    batch: SampleBatch
    parts: tuple[int, ...]  # row counts of the hub batches, to single out a refused one
    seq: int | None = None  # taken when its COPY commits or it is spooled, in unit order

    @classmethod
    def of(cls, batches: Sequence[SampleBatch]) -> _Unit:
        return cls(SampleBatch.concat(batches), tuple(len(b) for b in batches))


class _Duplicate(Exception):
    """The database already holds this sequence number."""


class _PreviousFailed(Exception):
    """The unit before this one was not committed: this one must not commit before it."""


class SampleWriter:
    """Writes hub batches to the store; spools them to disk while the database is unreachable.

    Units are pipelined two deep: the COPY of one runs while the one before it finishes, but
    a unit claims its sequence number and commits only after the one before it committed;
    if that one was spooled instead, this one is spooled behind it.
    """

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
        self.timeout = timeout  # per database step; a server that hangs counts as unreachable
        self._spool = Spool(spool_dir)
        self._lock = asyncio.Lock()  # the spool and the start-up check
        self._tail: asyncio.Future[bool] | None = None  # outcome of the last unit submitted
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
        await self._start()
        in_flight: deque[tuple[asyncio.Task[None], int]] = deque()
        next_batch: asyncio.Future[SampleBatch | None] | None = None
        try:
            closed = False
            while not closed:
                # Mark units done as they finish while waiting for the next batch.
                next_batch = asyncio.ensure_future(sub.get())
                while in_flight and not next_batch.done():
                    oldest = in_flight[0][0]
                    await asyncio.wait((next_batch, oldest), return_when=asyncio.FIRST_COMPLETED)
                    if oldest.done():
                        await self._settle(in_flight.popleft(), sub)
                first = await next_batch
                if first is None:
                    break
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
                task = asyncio.create_task(self._submit(_Unit.of(batches)))
                in_flight.append((task, len(batches)))
                if len(in_flight) == 2:
                    await self._settle(in_flight.popleft(), sub)
        finally:
            if next_batch is not None:
                next_batch.cancel()
            while in_flight:
                await self._settle(in_flight.popleft(), sub)
            await self.close()

    @staticmethod
    async def _settle(entry: tuple[asyncio.Task[None], int], sub: Subscription) -> None:
        task, batches = entry
        try:
            await task
        finally:
            for _ in range(batches):
                sub.task_done()

    async def write(self, batch: SampleBatch) -> None:
        """Write one batch now (or spool it); returns once it is committed or on disk."""
        await self._submit(_Unit.of([batch]))

    async def flush(self) -> None:
        """Wait until everything received so far is committed or spooled."""
        await _settled(self._tail)
        async with self._lock:
            pass

    async def wait_drained(self) -> None:
        """Wait until the spool is empty (everything received is in the database)."""
        await self._start()
        await self.flush()
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

    # -- writing ----------------------------------------------------------------------

    async def _submit(self, unit: _Unit) -> None:
        if not len(unit.batch):
            return
        prev = self._tail
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._tail = done
        committed = False
        try:
            await self._start()
            if not len(self._spool):
                try:
                    committed = await self._write_live(unit, prev)
                except _RETRIED as exc:
                    self._lost(exc)
            if not committed:
                await _settled(prev)
                async with self._lock:
                    await self._spool_unit(unit)
        finally:
            done.set_result(committed)

    async def _start(self) -> None:
        if self._started:
            return
        async with self._lock:
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

    async def _write_live(self, unit: _Unit, prev: asyncio.Future[bool] | None) -> bool:
        """Write a unit that was never tried; False (nothing written) if `prev` failed."""
        while True:
            try:
                try:
                    await self._transaction(unit, prev)
                except _REJECTED:
                    if not await _settled(prev):
                        return False
                    await self._commit_parts(unit)
                return True
            except _PreviousFailed:
                return False
            except _Duplicate:
                # Our counter is behind the database's (a spool directory that lost its
                # counter while the clock stepped back): move past it and write afresh.
                async with asyncio.timeout(self.timeout), self.store.pool.acquire() as conn:
                    last = await conn.fetchval(
                        "SELECT last_seq FROM ingest_state WHERE writer = $1", self.name
                    )
                self._spool.observe(int(last))
                unit.seq = None

    async def _spool_unit(self, unit: _Unit) -> None:
        if unit.seq is None:
            unit.seq = await self._take_seq()
        await asyncio.to_thread(self._spool.put, unit.seq, unit.batch, unit.parts)
        self.rows_spooled += len(unit.batch)
        self._start_drain()

    async def _transaction(self, unit: _Unit, prev: asyncio.Future[bool] | None) -> None:
        """COPY a unit, then (once `prev` committed) claim its sequence number and update the
        latest values, all in one transaction. _Duplicate: the database already has it."""
        b = unit.batch
        await self.store.ensure_partitions(int(b.ts.min()), int(b.ts.max()))
        loop = asyncio.get_running_loop()
        async with (
            asyncio.timeout(self.timeout) as deadline,
            self.store.pool.acquire() as conn,
            conn.transaction(),
        ):
            await conn.copy_to_table("samples", source=encode(b), columns=COLUMNS, format="binary")
            if prev is not None:
                deadline.reschedule(None)  # the previous unit has its own deadline
                if not await prev:
                    raise _PreviousFailed  # rolls back: this unit goes to the spool after it
                deadline.reschedule(loop.time() + self.timeout)
            if unit.seq is None:
                unit.seq = await self._take_seq()
            if await conn.fetchval(_FINISH_SQL, self.name, unit.seq, *_newest_per_point(b)) is None:
                raise _Duplicate(unit.seq)
        self.rows_written += len(b)
        self.batches_written += len(unit.parts)

    async def _commit_parts(self, unit: _Unit) -> None:
        """The unit was refused: write its hub batches one by one, each in a savepoint, and
        keep the refused ones under `rejected/` (written before COMMIT, so a retry of the
        unit after a lost COMMIT rewrites the same files)."""
        if unit.seq is None:
            unit.seq = await self._take_seq()
        bounds = np.cumsum((0, *unit.parts)).tolist()
        accepted: list[SampleBatch] = []
        async with (
            asyncio.timeout(self.timeout),
            self.store.pool.acquire() as conn,
            conn.transaction(),
        ):
            for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
                part = _slice(unit.batch, lo, hi)
                try:
                    await self.store.ensure_partitions(int(part.ts.min()), int(part.ts.max()))
                    async with conn.transaction():
                        await conn.copy_to_table(
                            "samples", source=encode(part), columns=COLUMNS, format="binary"
                        )
                except _REJECTED as exc:
                    await self._reject(unit.seq, i, part, exc)
                else:
                    accepted.append(part)
            newest = _newest_per_point(SampleBatch.concat(accepted)) if accepted else ([],) * 4
            if await conn.fetchval(_FINISH_SQL, self.name, unit.seq, *newest) is None:
                raise _Duplicate(unit.seq)
        self.rows_written += sum(len(p) for p in accepted)
        self.batches_written += len(accepted)

    async def _reject(self, seq: int, part: int, batch: SampleBatch, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        path = await asyncio.to_thread(self._spool.reject, seq, part, batch, reason)
        log.error(
            "database refused a batch of %d samples (points %d..%d, %s); kept in %s",
            len(batch),
            int(batch.point.min()),
            int(batch.point.max()),
            reason,
            path,
        )
        self.rows_rejected += len(batch)
        self.last_error = reason

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
            try:
                await self._transaction(unit, None)
            except _REJECTED:
                await self._commit_parts(unit)
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
