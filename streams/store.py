"""The PostgreSQL/TimescaleDB store: migrations, partitions, rollups and series reads.

Samples live in `samples`; with TimescaleDB as a hypertable, else as daily partitions that
anjian creates, drops and rolls up itself. Readers get numpy columns either way.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any, Literal

import asyncpg  # type: ignore[import-untyped]
import numpy as np
import numpy.typing as npt

from streams import batch
from streams.config import redact_url
from streams.hub import Latest
from streams.quality import DOUBTFUL, Quality

Mode = Literal["timescaledb", "postgresql", "embedded"]

MAX_BUCKETS = 10_000

_log = logging.getLogger(__name__)

_NS_PER_US = 1_000
_NS_PER_S = 1_000_000_000
_MINUTE_NS = 60 * _NS_PER_S
_DAY_NS = 86_400 * _NS_PER_S
_MINUTE_US = 60_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_PARTITIONS_AHEAD_DAYS = 3
# A range wider than this is a clock gone wrong, not data worth a year of empty partitions.
_MAX_PARTITION_SPAN_DAYS = 366
# Late rows are re-aggregated into the rollups for this long after their minute closed.
_ROLLUP_LOOKBACK_US = 10 * _MINUTE_US
# A refresh of the continuous aggregate meeting the refresh policy's: retry this often.
REFRESH_ATTEMPTS = 50
REFRESH_RETRY_S = 0.2

# pg_advisory_xact_lock keys: "anjian" in ASCII, then a number per critical section.
_LOCK_MIGRATIONS = 0x616E6A69616E0001
_LOCK_PARTITIONS = 0x616E6A69616E0002
_LOCK_ROLLUPS = 0x616E6A69616E0003

_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+?)(?:\.(timescaledb|postgresql))?\.sql$")
_PARTITION = re.compile(r"^samples_(\d{8})$")


class DatabaseUnavailable(Exception):
    """The database cannot be reached, or refuses the connection (the reason is in the
    message; the URL in it carries no credentials)."""


class MigrationError(Exception):
    """A migration file that is misnamed, ambiguous or fails to apply."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str  # the file name without ".sql", e.g. "0002_samples.postgresql"
    file: str


def select_migrations(files: Sequence[str], timescale: bool) -> list[Migration]:
    """The migrations to apply in one mode, in version order, from the migration file names.

    `NNNN_name.sql` applies in both modes; `NNNN_name.timescaledb.sql` and
    `NNNN_name.postgresql.sql` are the two variants of a version, exactly one of which applies.
    """
    variant = "timescaledb" if timescale else "postgresql"
    by_version: dict[int, list[tuple[str, str | None]]] = {}
    for file in files:
        m = _MIGRATION_FILE.match(file)
        if m is None:
            raise MigrationError(
                f"migration file {file!r} is not named NNNN_name.sql, "
                "NNNN_name.timescaledb.sql or NNNN_name.postgresql.sql"
            )
        by_version.setdefault(int(m.group(1)), []).append((file, m.group(3)))
    selected = []
    for version in sorted(by_version):
        entries = by_version[version]
        common = [f for f, v in entries if v is None]
        variants = {v: f for f, v in entries if v is not None}
        if (common and variants) or len(common) > 1:
            raise MigrationError(
                f"migration version {version:04d} has conflicting files: "
                f"{sorted(f for f, _ in entries)}"
            )
        if variants and len(variants) != 2:
            raise MigrationError(
                f"migration version {version:04d} needs both a .timescaledb.sql and a "
                f".postgresql.sql variant, found {sorted(variants.values())}"
            )
        file = common[0] if common else variants[variant]
        selected.append(Migration(version, file.removesuffix(".sql"), file))
    return selected


def _read_migrations(timescale: bool) -> list[tuple[Migration, str]]:
    folder = resources.files("streams") / "migrations"
    files = sorted(e.name for e in folder.iterdir() if e.name.endswith(".sql"))
    return [
        (m, (folder / m.file).read_text(encoding="utf-8"))
        for m in select_migrations(files, timescale)
    ]


@dataclass(frozen=True, slots=True)
class Series:
    """A downsampled series of one point: one row per bucket holding readings, GOOD or doubtful
    (streams.quality.DOUBTFUL); `doubtful` counts the doubtful ones among `count`.

    Buckets without a reading are absent; `width_ns` is the bucket width. In a bucket of minute
    rollups holding both kinds within one minute, `last` is the GOOD one's.
    """

    point: int
    width_ns: int
    ts: npt.NDArray[np.int64]  # bucket start, ns UTC
    min: npt.NDArray[np.float64]
    max: npt.NDArray[np.float64]
    avg: npt.NDArray[np.float64]
    last: npt.NDArray[np.float64]
    count: npt.NDArray[np.int64]
    doubtful: npt.NDArray[np.int64]
    # With `failures`, the times the point's collector reported it could not read it (a sample
    # that is no reading: COMM_FAIL, BAD…), ns UTC: each bucket's first such time and each that
    # follows a reading (a loss begins); and the readings that follow one (`back_at`, ns UTC, and
    # `back_value`: the point is read again). Together they bound every loss exactly, one that
    # begins and ends within a bucket too. Empty otherwise.
    failed: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    back_at: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    back_value: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0, np.float64))

    def __len__(self) -> int:
        return len(self.ts)


def _ts(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _partition_name(day: int) -> str:
    return f"samples_{_ts(day * 86_400_000_000):%Y%m%d}"


def _partition_day(name: str) -> int | None:
    m = _PARTITION.match(name)
    if m is None:
        return None
    date = datetime.strptime(m.group(1), "%Y%m%d").replace(tzinfo=UTC)
    return (date - _EPOCH).days


class Store:
    """The samples database: open it once, share its pool, close it on shutdown."""

    def __init__(
        self,
        url: str,
        mode: Mode,
        pool: asyncpg.Pool,
        retention_days: int,
        rollup_retention_days: int,
    ) -> None:
        self.url = url
        self.mode: Mode = mode
        self.timescale = mode == "timescaledb"
        self.pool = pool
        self.retention_days = retention_days
        self.rollup_retention_days = rollup_retention_days
        self._days: set[int] = set()
        self._partition_lock = asyncio.Lock()
        self._maintain_lock = asyncio.Lock()

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        embedded: bool = False,
        retention_days: int = 30,
        rollup_retention_days: int = 400,
        pool_size: int = 4,
    ) -> Store:
        """Connect, choose the mode, apply pending migrations and the retention settings."""
        if retention_days < 1 or rollup_retention_days < 1:
            raise ValueError(
                f"retention must be at least 1 day, got retention_days={retention_days}, "
                f"rollup_retention_days={rollup_retention_days}"
            )
        try:
            conn: asyncpg.Connection = await asyncpg.connect(url)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise DatabaseUnavailable(
                f"cannot connect to the database {redact_url(url)}: {exc}"
            ) from exc
        try:
            async with conn.transaction():
                # Serialises start-up of several processes on one database.
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_MIGRATIONS)
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version integer PRIMARY KEY, name text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                )
                applied = {
                    r["version"]: r["name"]
                    for r in await conn.fetch("SELECT version, name FROM schema_migrations")
                }
                timescale = not embedded and await _choose_timescale(conn, applied)
                migrations = await asyncio.to_thread(_read_migrations, timescale)
                for migration, sql in migrations:
                    if migration.version in applied:
                        continue
                    _log.info("applying migration %s", migration.file)
                    try:
                        await conn.execute(sql)
                    except asyncpg.PostgresError as exc:
                        raise MigrationError(f"migration {migration.file} failed: {exc}") from exc
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                        migration.version,
                        migration.name,
                    )
                if timescale:
                    await _set_retention(conn, "samples", retention_days)
                    for table in _ROLLUPS:
                        await _set_retention(conn, table, rollup_retention_days)
        finally:
            await conn.close()
        mode: Mode = "embedded" if embedded else "timescaledb" if timescale else "postgresql"
        pool = await asyncpg.create_pool(url, min_size=1, max_size=pool_size)
        store = cls(url, mode, pool, retention_days, rollup_retention_days)
        if not timescale:
            try:
                store._days = await store._existing_days()
                now = batch.now_ns()
                await store.ensure_partitions(now, now + _PARTITIONS_AHEAD_DAYS * _DAY_NS)
            except BaseException:
                await pool.close()
                raise
        _log.info("store open in %s mode", mode)
        return store

    async def close(self) -> None:
        await self.pool.close()

    async def ensure_partitions(self, start_ns: int, end_ns: int) -> None:
        """Make sure daily partitions (UTC days) cover [start_ns, end_ns]; a no-op on TimescaleDB.

        Known days cost no query, so the writer calls this before every COPY.
        """
        if self.timescale:
            return
        if end_ns < start_ns:
            raise ValueError(f"partition range ends ({end_ns}) before it starts ({start_ns})")
        first, last = start_ns // _DAY_NS, end_ns // _DAY_NS
        if first in self._days and last in self._days and last - first <= 1:
            return
        if last - first > _MAX_PARTITION_SPAN_DAYS:
            raise ValueError(
                f"samples from {_ts(start_ns // _NS_PER_US):%Y-%m-%d %H:%M:%S} to "
                f"{_ts(end_ns // _NS_PER_US):%Y-%m-%d %H:%M:%S} UTC span {last - first + 1} "
                f"days, more than {_MAX_PARTITION_SPAN_DAYS}: a device clock is probably wrong"
            )
        async with self._partition_lock:
            missing = [d for d in range(first, last + 1) if d not in self._days]
            if not missing:
                return
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_PARTITIONS)
                for day in missing:
                    lo, hi = _ts(day * 86_400_000_000), _ts((day + 1) * 86_400_000_000)
                    await conn.execute(
                        f"CREATE TABLE IF NOT EXISTS {_partition_name(day)} PARTITION OF samples"
                        f" FOR VALUES FROM ('{lo.isoformat()}') TO ('{hi.isoformat()}')"
                    )
            self._days.update(missing)

    async def maintain(self, now_ns: int | None = None) -> None:
        """Periodic upkeep (call every minute or so); on TimescaleDB its policies do the work.

        Plain PostgreSQL: partitions for today and the next days, old partitions dropped
        after retention, the minute rollups refreshed from recent raw samples and pruned.
        """
        if self.timescale:
            return
        now = batch.now_ns() if now_ns is None else now_ns
        async with self._maintain_lock:
            await self.ensure_partitions(now, now + _PARTITIONS_AHEAD_DAYS * _DAY_NS)
            await self._drop_partitions(now // _DAY_NS - self.retention_days)
            await self._refresh_recent_rollups(now)
            cutoff = _ts(now // _NS_PER_US - self.rollup_retention_days * 86_400_000_000)
            async with self.pool.acquire() as conn:
                for table in _ROLLUPS:
                    await conn.execute(f"DELETE FROM {table} WHERE bucket < $1", cutoff)

    async def refresh_rollups(self, start_ns: int, end_ns: int) -> None:
        """Re-aggregate the minute rollups over [start_ns, end_ns) from raw samples.

        For backfills older than maintain()'s look-back, e.g. after replaying a long spool.
        """
        if not start_ns < end_ns:
            raise ValueError(f"rollup range start {start_ns} must be before end {end_ns}")
        start_us = start_ns // _NS_PER_US // _MINUTE_US * _MINUTE_US
        end_us = _ceil_div(_ceil_div(end_ns, _NS_PER_US), _MINUTE_US) * _MINUTE_US
        if self.timescale:
            async with self.pool.acquire() as conn:
                for table in _ROLLUPS:
                    # A procedure that refuses to run inside a transaction: simple protocol, no
                    # params.
                    sql = (
                        f"CALL refresh_continuous_aggregate('{table}', "
                        f"'{_ts(start_us).isoformat()}', '{_ts(end_us).isoformat()}')"
                    )
                    # TimescaleDB's refresh policy may hold an overlapping window: wait it out.
                    for attempt in range(REFRESH_ATTEMPTS):
                        try:
                            await conn.execute(sql)
                            break
                        except asyncpg.LockNotAvailableError:
                            if attempt == REFRESH_ATTEMPTS - 1:
                                raise
                            await asyncio.sleep(REFRESH_RETRY_S)
            return
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_ROLLUPS)
            for sql in _REFRESH_SQL:
                await conn.execute(sql, _ts(start_us), _ts(end_us))

    async def _refresh_recent_rollups(self, now: int) -> None:
        end_us = now // _NS_PER_US // _MINUTE_US * _MINUTE_US
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_ROLLUPS)
            watermark = await conn.fetchval(
                "SELECT (extract(epoch FROM watermark) * 1000000)::bigint"
                " FROM rollup_state WHERE name = 'samples_1m'"
            )
            if watermark is None:
                # First run: aggregate everything still stored.
                days = await _partition_days(conn)
                start_us = min(days, default=0) * 86_400_000_000
            else:
                start_us = min(watermark, end_us) - _ROLLUP_LOOKBACK_US
            if start_us < end_us:
                for sql in _REFRESH_SQL:
                    await conn.execute(sql, _ts(start_us), _ts(end_us))
            await conn.execute(
                "INSERT INTO rollup_state (name, watermark) VALUES ('samples_1m', $1)"
                " ON CONFLICT (name) DO UPDATE SET watermark = excluded.watermark",
                _ts(end_us),
            )

    async def _existing_days(self) -> set[int]:
        async with self.pool.acquire() as conn:
            return await _partition_days(conn)

    async def _drop_partitions(self, before_day: int) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_PARTITIONS)
            days = await _partition_days(conn)
            old = sorted(d for d in days if d < before_day)
            for day in old:
                _log.info("dropping samples partition %s (retention)", _partition_name(day))
                await conn.execute(f"DROP TABLE {_partition_name(day)}")
        self._days = days.difference(old)

    async def series(
        self, point: int, start_ns: int, end_ns: int, buckets: int, failures: bool = False
    ) -> Series:
        """Readings (GOOD or doubtful) of one point in [start_ns, end_ns), downsampled to at most
        `buckets`.

        The bucket width is the range over `buckets`, rounded up to a whole second. Widths of a
        minute or more read the minute rollups, widened to whole minutes, instead of raw rows.
        With `failures`, also where readings failed and resumed (`Series.failed`, `back_at`,
        `back_value`), from raw rows: for a point that reports on change only, which has few.
        """
        if not start_ns < end_ns:
            raise ValueError(f"series start {start_ns} must be before end {end_ns}")
        if not 1 <= buckets <= MAX_BUCKETS:
            raise ValueError(f"series buckets must be 1..{MAX_BUCKETS}, got {buckets}")
        width_ns = _ceil_div(_ceil_div(end_ns - start_ns, buckets), _NS_PER_S) * _NS_PER_S
        async with self.pool.acquire() as conn:
            if width_ns < _MINUTE_NS:
                origin_ns = start_ns
                row = await conn.fetchrow(
                    _SERIES_RAW_SQL,
                    point,
                    _ts(_ceil_div(start_ns, _NS_PER_US)),
                    _ts(_ceil_div(end_ns, _NS_PER_US)),
                    _ceil_div(start_ns, _NS_PER_US),
                    width_ns // _NS_PER_US,
                )
            else:
                origin_ns = start_ns // _MINUTE_NS * _MINUTE_NS
                width_ns = _ceil_div(_ceil_div(end_ns - origin_ns, buckets), _MINUTE_NS)
                width_ns *= _MINUTE_NS
                origin_us = origin_ns // _NS_PER_US
                end_us = _ceil_div(end_ns, _MINUTE_NS) * _MINUTE_NS // _NS_PER_US
                if self.timescale:
                    watermark_us = end_us  # the continuous aggregate is real-time
                else:
                    watermark_us = await conn.fetchval(
                        "SELECT (extract(epoch FROM watermark) * 1000000)::bigint"
                        " FROM rollup_state WHERE name = 'samples_1m'"
                    )
                    watermark_us = min(max(watermark_us or origin_us, origin_us), end_us)
                row = await conn.fetchrow(
                    _SERIES_ROLLUP_SQL,
                    point,
                    _ts(origin_us),
                    _ts(end_us),
                    origin_us,
                    width_ns // _NS_PER_US,
                    _ts(watermark_us),
                )
            losses: dict[str, Any] = {}
            if failures:
                losses = dict(
                    await conn.fetchrow(
                        _FAILURES_SQL,
                        point,
                        _ts(_ceil_div(max(start_ns, origin_ns), _NS_PER_US)),
                        _ts(_ceil_div(end_ns, _NS_PER_US)),
                        _ceil_div(origin_ns, _NS_PER_US),
                        width_ns // _NS_PER_US,
                    )
                    or {}
                )
        assert row is not None
        k = np.array(row["k"] or [], np.int64)
        return Series(
            point=point,
            width_ns=width_ns,
            ts=origin_ns + k * width_ns,
            min=np.array(row["min"] or [], np.float64),
            max=np.array(row["max"] or [], np.float64),
            avg=np.array(row["avg"] or [], np.float64),
            last=np.array(row["last"] or [], np.float64),
            count=np.array(row["count"] or [], np.int64),
            doubtful=np.array(row["doubtful"] or [], np.int64),
            failed=np.array(losses.get("failed") or [], np.int64) * _NS_PER_US,
            back_at=np.array(losses.get("back_at") or [], np.int64) * _NS_PER_US,
            back_value=np.array(losses.get("back_value") or [], np.float64),
        )

    async def readings(
        self, points: Sequence[int], start_ns: int, end_ns: int
    ) -> batch.SampleBatch:
        """The GOOD samples of `points` in [start_ns, end_ns), in time order (raw rows: for a
        short window, as the warning desk's wind history at start-up)."""
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                _READINGS_SQL,
                np.asarray(points, np.int32).tolist(),
                _ts(_ceil_div(start_ns, _NS_PER_US)),
                _ts(_ceil_div(end_ns, _NS_PER_US)),
            )
        assert row is not None
        n = len(row["point"] or [])
        return batch.SampleBatch(
            np.array(row["ts"] or [], np.int64) * _NS_PER_US,
            np.array(row["point"] or [], np.int32),
            np.array(row["value"] or [], np.float64),
            np.full(n, Quality.GOOD, np.uint8),
        )

    async def latest(self, points: Sequence[int] | None = None) -> Latest:
        """The stored latest value of the given points (all points if None), in that order.

        A point never seen comes back with ts 0, value NaN and quality BAD.
        """
        async with self.pool.acquire() as conn:
            if points is None:
                row = await conn.fetchrow(_LATEST_ALL_SQL)
            else:
                row = await conn.fetchrow(_LATEST_SOME_SQL, np.asarray(points, np.int32).tolist())
        assert row is not None
        return Latest(
            point=np.array(row["point"] or [], np.int32),
            ts=np.array(row["ts"] or [], np.int64) * _NS_PER_US,
            value=np.array(row["value"] or [], np.float64),
            quality=np.array(row["quality"] or [], np.uint8),
        )


async def _choose_timescale(conn: asyncpg.Connection, applied: dict[int, str]) -> bool:
    """TimescaleDB when it is loaded, unless this database was already migrated without it."""
    recorded = {name.rpartition(".")[2] for name in applied.values() if "." in name}
    if "postgresql" in recorded:
        return False
    # Packages often install the extension without preloading it, and CREATE EXTENSION
    # then ends the session; only a preloaded library can be used.
    preloaded = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')"
        " AND 'timescaledb' = ANY (string_to_array("
        "replace(current_setting('shared_preload_libraries'), ' ', ''), ','))"
    )
    if not preloaded:
        if "timescaledb" in recorded:
            raise MigrationError(
                "this database was set up with TimescaleDB, but the server does not load it "
                "(add timescaledb to shared_preload_libraries)"
            )
        return False
    await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    return True


async def _set_retention(conn: asyncpg.Connection, relation: str, days: int) -> None:
    """Make the TimescaleDB retention policy of `relation` drop data older than `days`."""
    wanted = timedelta(days=days)
    current = await conn.fetchval(
        "SELECT (config->>'drop_after')::interval FROM timescaledb_information.jobs"
        " WHERE proc_name = 'policy_retention' AND hypertable_schema = current_schema()"
        " AND hypertable_name = $1",
        relation,
    )
    if current == wanted:
        return
    if current is not None:
        await conn.execute("SELECT remove_retention_policy($1::regclass)", relation)
    await conn.execute(
        "SELECT add_retention_policy($1::regclass, drop_after => $2::interval)", relation, wanted
    )
    _log.info("retention of %s set to %d days", relation, days)


async def _partition_days(conn: asyncpg.Connection) -> set[int]:
    names = await conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'samples'::regclass"
    )
    days = (_partition_day(r["relname"]) for r in names)
    return {d for d in days if d is not None}


# Samples that carry a reading: GOOD ones and doubtful ones (streams.quality.DOUBTFUL).
_GOOD = f"quality = {int(Quality.GOOD)}"
_DOUBTFUL = f"quality IN ({', '.join(str(int(q)) for q in sorted(DOUBTFUL))})"
_READING = f"({_GOOD} OR {_DOUBTFUL})"

# Minute rollups of GOOD samples and of doubtful ones, each in its table ($1/$2 range).
_ROLLUP_KINDS = {"samples_1m": _GOOD, "samples_1m_doubtful": _DOUBTFUL}
_ROLLUPS = tuple(_ROLLUP_KINDS)
_REFRESH_SQL = [
    f"""
INSERT INTO {table} (bucket, point, min, max, avg, last, count)
SELECT date_bin('1 minute', ts, 'epoch'::timestamptz), point, min(value), max(value),
       avg(value), (array_agg(value ORDER BY ts DESC))[1], count(*)
FROM samples
WHERE ts >= $1 AND ts < $2 AND {kind} AND value IS NOT NULL
GROUP BY 1, 2
ON CONFLICT (point, bucket) DO UPDATE
SET min = excluded.min, max = excluded.max, avg = excluded.avg, last = excluded.last,
    count = excluded.count
"""
    for table, kind in _ROLLUP_KINDS.items()
]

# $1 point, $2/$3 range, $4 origin (µs since the epoch), $5 bucket width (µs).
_SERIES_RAW_SQL = f"""
WITH g AS (
    SELECT ((extract(epoch FROM ts) * 1000000)::bigint - $4) / $5 AS k,
           min(value) AS mn, max(value) AS mx, avg(value) AS av,
           (array_agg(value ORDER BY ts DESC))[1] AS la, count(*) AS n,
           count(*) FILTER (WHERE NOT {_GOOD}) AS d
    FROM samples
    WHERE point = $1 AND ts >= $2 AND ts < $3 AND {_READING} AND value IS NOT NULL
    GROUP BY 1
)
SELECT array_agg(k ORDER BY k) AS k, array_agg(mn ORDER BY k) AS min,
       array_agg(mx ORDER BY k) AS max, array_agg(av ORDER BY k) AS avg,
       array_agg(la ORDER BY k) AS last, array_agg(n ORDER BY k) AS count,
       array_agg(d ORDER BY k) AS doubtful
FROM g
"""

_READINGS_SQL = f"""
SELECT array_agg((extract(epoch FROM ts) * 1000000)::bigint ORDER BY ts, point) AS ts,
       array_agg(point ORDER BY ts, point) AS point, array_agg(value ORDER BY ts, point) AS value
FROM samples
WHERE point = ANY($1::integer[]) AND ts >= $2 AND ts < $3 AND {_GOOD} AND value IS NOT NULL
"""

# $1 point, $2/$3 range, $4 origin (µs since the epoch), $5 bucket width (µs): `failed`, each
# bucket's first sample that is no reading and each that follows a reading (µs); `back_at` and
# `back_value`, each reading that follows one (µs, value); in time order.
_FAILURES_SQL = f"""
WITH s AS (
    SELECT ((extract(epoch FROM ts) * 1000000)::bigint - $4) / $5 AS k, ts, value,
           ({_READING} AND value IS NOT NULL) AS reading
    FROM samples
    WHERE point = $1 AND ts >= $2 AND ts < $3
), e AS (
    SELECT k, ts, value, reading, lag(reading) OVER (ORDER BY ts) AS prev
    FROM s
), f AS (
    SELECT min(ts) AS ts FROM e WHERE NOT reading GROUP BY k
    UNION
    SELECT ts FROM e WHERE NOT reading AND prev IS DISTINCT FROM false
)
SELECT (SELECT array_agg((extract(epoch FROM ts) * 1000000)::bigint ORDER BY ts) FROM f) AS failed,
       array_agg((extract(epoch FROM ts) * 1000000)::bigint ORDER BY ts) AS back_at,
       array_agg(value ORDER BY ts) AS back_value
FROM e WHERE reading AND prev = false
"""

# As above, from minute rollups before the watermark $6 and raw samples after it. Within a
# minute of the rollups, the GOOD rollup's last value comes before the doubtful one's.
_SERIES_ROLLUP_SQL = f"""
WITH m AS (
    SELECT bucket, min, max, avg, last, count, 0::bigint AS d, 0 AS src
    FROM samples_1m
    WHERE point = $1 AND bucket >= $2::timestamptz
          AND bucket < least($3::timestamptz, $6::timestamptz)
    UNION ALL
    SELECT bucket, min, max, avg, last, count, count AS d, 1 AS src
    FROM samples_1m_doubtful
    WHERE point = $1 AND bucket >= $2::timestamptz
          AND bucket < least($3::timestamptz, $6::timestamptz)
    UNION ALL
    SELECT date_bin('1 minute', ts, 'epoch'::timestamptz), min(value), max(value),
           avg(value), (array_agg(value ORDER BY ts DESC))[1], count(*),
           count(*) FILTER (WHERE NOT {_GOOD}), 0
    FROM samples
    WHERE point = $1 AND ts >= greatest($2::timestamptz, $6::timestamptz) AND ts < $3
          AND {_READING} AND value IS NOT NULL
    GROUP BY 1
), g AS (
    SELECT ((extract(epoch FROM bucket) * 1000000)::bigint - $4) / $5 AS k,
           min(min) AS mn, max(max) AS mx, sum(avg * count) / sum(count) AS av,
           (array_agg(last ORDER BY bucket DESC, src))[1] AS la, sum(count)::bigint AS n,
           sum(d)::bigint AS d
    FROM m
    GROUP BY 1
)
SELECT array_agg(k ORDER BY k) AS k, array_agg(mn ORDER BY k) AS min,
       array_agg(mx ORDER BY k) AS max, array_agg(av ORDER BY k) AS avg,
       array_agg(la ORDER BY k) AS last, array_agg(n ORDER BY k) AS count,
       array_agg(d ORDER BY k) AS doubtful
FROM g
"""

_LATEST_COLUMNS = """
SELECT array_agg(p.point ORDER BY {order}) AS point,
       array_agg(coalesce((extract(epoch FROM l.ts) * 1000000)::bigint, 0) ORDER BY {order}) AS ts,
       array_agg(l.value ORDER BY {order}) AS value,
       array_agg(coalesce(l.quality, {bad}) ORDER BY {order}) AS quality
"""
_LATEST_ALL_SQL = _LATEST_COLUMNS.format(order="p.point", bad=int(Quality.BAD)) + (
    "FROM latest_values l, LATERAL (SELECT l.point) AS p(point)"
)
# Missing points come back as BAD, like the hub's LatestValues.
_LATEST_SOME_SQL = _LATEST_COLUMNS.format(order="p.i", bad=int(Quality.BAD)) + (
    "FROM unnest($1::integer[]) WITH ORDINALITY AS p(point, i)"
    " LEFT JOIN latest_values l ON l.point = p.point"
)
