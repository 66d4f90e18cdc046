"""The store against real servers, plain PostgreSQL and TimescaleDB: schema, retention, series."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import numpy as np
import numpy.typing as npt
import pytest

from streams.quality import Quality
from streams.store import MAX_BUCKETS, MigrationError, Series, Store, select_migrations

S = 1_000_000_000
MINUTE = 60 * S
DAY = 86_400 * S


@pytest.fixture(autouse=True)
def timescale(request: pytest.FixtureRequest) -> bool:
    """Whether this run is the TimescaleDB one of the store_url parametrisation.

    Autouse so the TimescaleDB server is resolved here, before the event loop runs: the
    conftest fixture probes it with asyncio.run(), which fails inside a running loop.
    """
    callspec = getattr(request.node, "callspec", None)
    on = callspec is not None and callspec.params.get("store_url") == "timescaledb"
    if on:
        request.getfixturevalue("timescale_server_url")
    return on


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = await Store.open(store_url)
    yield s
    await s.close()


def _now_minute() -> int:
    import time

    return time.time_ns() // MINUTE * MINUTE


async def _insert(
    store: Store,
    ts: npt.NDArray[np.int64],
    point: int | npt.NDArray[np.int32],
    value: npt.NDArray[np.float64],
    quality: int | npt.NDArray[np.uint8] = Quality.GOOD,
) -> None:
    """Plain INSERT (not the writer's COPY), after making partitions for the rows."""
    await store.ensure_partitions(int(ts.min()), int(ts.max()))
    n = len(ts)
    async with store.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO samples (ts, point, value, quality)"
            " SELECT 'epoch'::timestamptz + us * interval '1 microsecond', p, v, q"
            " FROM unnest($1::bigint[], $2::int4[], $3::float8[], $4::int2[]) AS u(us, p, v, q)",
            (ts // 1000).tolist(),
            np.broadcast_to(point, n).tolist(),
            value.tolist(),
            np.broadcast_to(quality, n).tolist(),
        )


async def _refresh_rollups(store: Store, now: int) -> None:
    if store.timescale:
        await store.refresh_rollups(now - 7 * DAY, now)  # both continuous aggregates
    else:
        await store.maintain(now)


def _expected(
    ts: npt.NDArray[np.int64],
    value: npt.NDArray[np.float64],
    origin: int,
    width: int,
    doubtful: npt.NDArray[np.bool_] | None = None,
) -> Series:
    """The buckets computed with numpy from the rows themselves (ts sorted, all readings;
    `doubtful` marks the doubtful ones)."""
    k = (ts - origin) // width
    keys, first = np.unique(k, return_index=True)
    last_index = np.r_[first[1:], len(k)] - 1
    return Series(
        point=0,
        width_ns=width,
        ts=origin + keys * width,
        min=np.minimum.reduceat(value, first),
        max=np.maximum.reduceat(value, first),
        avg=np.add.reduceat(value, first) / np.diff(np.r_[first, len(k)]),
        last=value[last_index],
        count=np.diff(np.r_[first, len(k)]),
        doubtful=np.add.reduceat(
            np.zeros(len(k), np.int64) if doubtful is None else doubtful.astype(np.int64), first
        ),
    )


def _assert_series(got: Series, want: Series) -> None:
    assert got.width_ns == want.width_ns
    np.testing.assert_array_equal(got.ts, want.ts)
    np.testing.assert_array_equal(got.count, want.count)
    np.testing.assert_array_equal(got.doubtful, want.doubtful)
    np.testing.assert_array_equal(got.min, want.min)
    np.testing.assert_array_equal(got.max, want.max)
    np.testing.assert_array_equal(got.last, want.last)
    np.testing.assert_allclose(got.avg, want.avg, rtol=1e-12)


# -- migrations ---------------------------------------------------------------------------------


def test_common_migrations_apply_in_both_modes_and_variants_in_one() -> None:
    files = ["0002_samples.postgresql.sql", "0001_registry.sql", "0002_samples.timescaledb.sql"]
    assert [m.file for m in select_migrations(files, timescale=True)] == [
        "0001_registry.sql",
        "0002_samples.timescaledb.sql",
    ]
    plain = select_migrations(files, timescale=False)
    assert [(m.version, m.name) for m in plain] == [
        (1, "0001_registry"),
        (2, "0002_samples.postgresql"),
    ]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (["1_registry.sql"], "is not named NNNN_name.sql"),
        (["0001_registry.mysql.sql"], "is not named NNNN_name.sql"),
        (["0001_a.sql", "0001_b.sql"], "conflicting files"),
        (["0001_a.sql", "0001_a.postgresql.sql", "0001_a.timescaledb.sql"], "conflicting files"),
        (["0002_samples.postgresql.sql"], "needs both a .timescaledb.sql"),
    ],
)
def test_misnamed_or_ambiguous_migrations_are_refused(files: list[str], message: str) -> None:
    with pytest.raises(MigrationError, match=message):
        select_migrations(files, timescale=False)


async def test_migrations_apply_once_and_a_second_open_changes_nothing(
    store_url: str, timescale: bool
) -> None:
    first = await Store.open(store_url)
    try:
        async with first.pool.acquire() as conn:
            applied = await conn.fetch("SELECT * FROM schema_migrations ORDER BY version")
    finally:
        await first.close()
    names = [r["name"] for r in applied]
    assert [r["version"] for r in applied][:2] == [1, 2]
    assert len(set(r["version"] for r in applied)) == len(applied)
    assert names[1] == ("0002_samples.timescaledb" if timescale else "0002_samples.postgresql")

    second = await Store.open(store_url)
    try:
        async with second.pool.acquire() as conn:
            again = await conn.fetch("SELECT * FROM schema_migrations ORDER BY version")
    finally:
        await second.close()
    assert again == applied


async def test_mode_is_timescaledb_with_a_hypertable_or_postgresql_with_partitions(
    store: Store, timescale: bool
) -> None:
    async with store.pool.acquire() as conn:
        if timescale:
            assert store.mode == "timescaledb" and store.timescale
            assert await conn.fetchval(
                "SELECT count(*) FROM timescaledb_information.hypertables"
                " WHERE hypertable_name = 'samples'"
            )
            assert await conn.fetchval(
                "SELECT count(*) FROM timescaledb_information.continuous_aggregates"
                " WHERE view_name = 'samples_1m'"
            )
        else:
            assert store.mode == "postgresql" and not store.timescale
            assert (
                await conn.fetchval(
                    "SELECT partstrat FROM pg_partitioned_table"
                    " WHERE partrelid = 'samples'::regclass"
                )
                == b"r"
            )
            # Opening created today's partition and the days ahead.
            today = _now_minute() // DAY
            names = {
                r["relname"]
                for r in await conn.fetch(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                    " WHERE i.inhparent = 'samples'::regclass"
                )
            }
            for day in range(today, today + 4):
                assert f"samples_{np.datetime64(day, 'D').astype(str).replace('-', '')}" in names
        columns = await conn.fetch(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_name = 'samples' ORDER BY ordinal_position"
        )
    assert [(c["column_name"], c["data_type"]) for c in columns] == [
        ("ts", "timestamp with time zone"),
        ("point", "integer"),
        ("value", "double precision"),
        ("quality", "smallint"),
    ]


async def test_embedded_flag_reports_embedded_and_uses_plain_partitions(database_url: str) -> None:
    store = await Store.open(database_url, embedded=True)
    try:
        assert store.mode == "embedded" and not store.timescale
        async with store.pool.acquire() as conn:
            name = await conn.fetchval("SELECT name FROM schema_migrations WHERE version = 2")
        assert name == "0002_samples.postgresql"
    finally:
        await store.close()


# -- retention and partitions -----------------------------------------------------------------


async def test_old_samples_are_dropped_after_retention_and_recent_ones_kept(
    store: Store, timescale: bool
) -> None:
    now = _now_minute()
    old = np.array([now - 45 * DAY, now - 40 * DAY, now - 31 * DAY - MINUTE], np.int64)
    recent = np.array([now - 29 * DAY, now - DAY, now - MINUTE], np.int64)
    for ts in (old, recent):
        await _insert(store, ts, 5, np.arange(3, dtype=np.float64))

    if timescale:
        async with store.pool.acquire() as conn:
            job = await conn.fetchval(
                "SELECT job_id FROM timescaledb_information.jobs"
                " WHERE proc_name = 'policy_retention' AND hypertable_name = 'samples'"
            )
        conn = await asyncpg.connect(store.url)
        try:
            await conn.execute(f"CALL run_job({job})")
        finally:
            await conn.close()
    else:
        await store.maintain(now)

    async with store.pool.acquire() as conn:
        kept = await conn.fetch(
            "SELECT (extract(epoch FROM ts) * 1e9)::bigint AS ts FROM samples ORDER BY ts"
        )
    assert [r["ts"] for r in kept] == recent.tolist()


async def test_a_changed_retention_setting_replaces_the_timescaledb_policies(
    store_url: str, timescale: bool
) -> None:
    if not timescale:
        pytest.skip("plain PostgreSQL applies retention in maintain(), no policy to change")
    await (await Store.open(store_url)).close()
    store = await Store.open(store_url, retention_days=45, rollup_retention_days=90)
    try:
        async with store.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT hypertable_name, (config->>'drop_after')::interval AS drop_after"
                " FROM timescaledb_information.jobs WHERE proc_name = 'policy_retention'"
                " ORDER BY hypertable_name"
            )
    finally:
        await store.close()
    assert [(r["hypertable_name"], r["drop_after"]) for r in rows] == [
        ("samples", timedelta(days=45)),
        ("samples_1m", timedelta(days=90)),
        ("samples_1m_doubtful", timedelta(days=90)),
    ]


async def test_maintain_creates_partitions_ahead_and_drops_them_after_retention(
    database_url: str,
) -> None:
    store = await Store.open(database_url, retention_days=35)
    try:
        future = _now_minute() + 100 * DAY
        await store.maintain(future)
        days = await store._existing_days()
    finally:
        await store.close()
    assert set(range(future // DAY, future // DAY + 4)) <= days
    # Today's partitions, made at open, are now older than the 35 days of retention.
    assert min(days) >= future // DAY - 35


async def test_known_partition_days_cost_no_query(database_url: str) -> None:
    store = await Store.open(database_url)
    now = _now_minute()
    await store.close()
    # The pool is closed: only a call that needs no query can succeed.
    await store.ensure_partitions(now, now + DAY)
    with pytest.raises(asyncpg.InterfaceError):
        await store.ensure_partitions(now + 10 * DAY, now + 10 * DAY)


async def test_partition_range_spanning_years_is_refused(database_url: str) -> None:
    store = await Store.open(database_url)
    try:
        with pytest.raises(ValueError, match="device clock is probably wrong"):
            await store.ensure_partitions(0, _now_minute())
    finally:
        await store.close()


# -- series -----------------------------------------------------------------------------------


async def test_short_range_series_is_downsampled_from_raw_readings(store: Store) -> None:
    rng = np.random.default_rng(1)
    start = _now_minute() - 20 * MINUTE + 123_456_000  # not aligned to anything
    ts = start + np.arange(600, dtype=np.int64) * S + rng.integers(0, 999, 600) * 1000
    value = rng.normal(50, 10, 600).round(3)
    # Communication failures carry no reading; uncertain and out-of-range ones do, counted.
    quality = rng.choice(
        [Quality.GOOD, Quality.COMM_FAIL, Quality.UNCERTAIN, Quality.OUT_OF_RANGE],
        600,
        p=[0.7, 0.1, 0.1, 0.1],
    ).astype(np.uint8)
    await _insert(store, ts, 7, value, quality)
    await _insert(store, ts, 8, value + 1000)  # another point: must not leak in

    end = start + 10 * MINUTE
    series = await store.series(7, start, end, 37)

    assert series.width_ns == 17 * S  # ceil(600 s / 37) = 16.2 s, rounded up to 17 s
    assert len(series) <= 37
    reading = (quality != Quality.COMM_FAIL) & (ts < end)
    doubtful = quality[reading] != Quality.GOOD
    assert 0 < doubtful.sum() < reading.sum()
    _assert_series(series, _expected(ts[reading], value[reading], start, 17 * S, doubtful))


@pytest.mark.parametrize("buckets", [100, 3])  # 6 s buckets from raw rows; 4 min of rollups
async def test_series_gives_where_readings_failed_and_resumed(store: Store, buckets: int) -> None:
    """A point that reports on change (a device's link: 1 when read, COMM_FAIL when not): each
    bucket's first failure and every failure after a reading (a loss begins), and every reading
    after a failure with its value (read again), so that the trend bounds each loss, one within
    a bucket too (it was not drawn: the bucket's last reading hid it)."""
    start = _now_minute() - 20 * MINUTE + 500_000_000
    at = [5, 40, 50, 70, 200, 201, 202, 300, 301, 420, 421, 540, 590]  # s after start
    good = [1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 1]  # 1: a reading (the link up), 0: COMM_FAIL
    ts = start + np.array(at, np.int64) * S
    value = np.where(np.array(good) == 1, np.arange(len(at), dtype=np.float64), np.nan)
    quality = np.where(np.array(good) == 1, Quality.GOOD, Quality.COMM_FAIL).astype(np.uint8)
    await _insert(store, ts, 9, value, quality)
    await _insert(store, ts + S, 10, np.zeros(len(ts)), Quality.COMM_FAIL)  # must not leak in
    end = start + 600 * S

    series = await store.series(9, start, end, buckets, failures=True)

    width = series.width_ns
    origin = start if width < MINUTE else start // MINUTE * MINUTE
    rows = list(zip(ts.tolist(), good, value.tolist(), strict=True))
    first_in_bucket = {}
    for t, g, _ in rows:
        if not g:
            first_in_bucket.setdefault((t - origin) // width, t)
    begins = {t for i, (t, g, _) in enumerate(rows) if not g and (i == 0 or rows[i - 1][1])}
    assert series.failed.tolist() == sorted(set(first_in_bucket.values()) | begins)
    back = [(t, v) for i, (t, g, v) in enumerate(rows) if g and i and not rows[i - 1][1]]
    assert list(zip(series.back_at.tolist(), series.back_value.tolist(), strict=True)) == back
    assert len(back) == 4
    # A loss from 301 s, read again at 421 s (within one 4-minute bucket), is bounded by both.
    assert ts[8] in series.failed and ts[10] in series.back_at
    plain = await store.series(9, start, end, buckets)
    assert (plain.failed.tolist(), plain.back_at.tolist()) == ([], [])


async def test_long_range_series_is_downsampled_from_minute_rollups(store: Store) -> None:
    rng = np.random.default_rng(2)
    now = _now_minute()
    ts = now - 2 * DAY + np.arange(0, 2 * DAY, 30 * S, dtype=np.int64)
    value = rng.normal(20, 5, len(ts)).round(2)
    quality = np.where(rng.random(len(ts)) < 0.1, Quality.BAD, Quality.GOOD).astype(np.uint8)
    # An hour of a saturated reading, in whole minutes: doubtful rollups beside the GOOD ones.
    saturated = (ts >= now - DAY) & (ts < now - DAY + 60 * MINUTE)
    quality[saturated] = Quality.OUT_OF_RANGE
    value[saturated] = 103.1
    await _insert(store, ts, 3, value, quality)
    await _refresh_rollups(store, now)
    # Rows after the rollup refresh are read from raw samples (or TimescaleDB's real-time part).
    tail = now + np.arange(0, 5 * MINUTE, 20 * S, dtype=np.int64)
    tail_value = rng.normal(20, 5, len(tail)).round(2)
    await _insert(store, tail, 3, tail_value)

    start, end = now - 2 * DAY + 17 * S, now + 5 * MINUTE
    series = await store.series(3, start, end, 100)

    # The range is widened to whole minutes and the width rounded up to whole minutes.
    origin = now - 2 * DAY
    width = -(-(end - origin) // 100)
    width = -(-width // MINUTE) * MINUTE
    assert series.width_ns == width == 29 * MINUTE
    assert len(series) <= 100
    all_ts = np.r_[ts, tail]
    all_value = np.r_[value, tail_value]
    reading = np.r_[quality != Quality.BAD, np.ones(len(tail), bool)]
    doubtful = np.r_[saturated, np.zeros(len(tail), bool)][reading]
    want = _expected(all_ts[reading], all_value[reading], origin, width, doubtful)
    assert want.doubtful.sum() == 120 and want.max.max() == 103.1
    _assert_series(series, want)


async def test_late_rows_reach_the_rollups(store: Store) -> None:
    now = _now_minute()
    ts = now - 3 * DAY + np.arange(0, 3 * DAY, MINUTE, dtype=np.int64)
    await _insert(store, ts, 4, np.ones(len(ts)))
    await _refresh_rollups(store, now)
    late = np.array([now - 5 * MINUTE + 7 * S], np.int64)  # behind the refresh, within look-back
    await _insert(store, late, 4, np.array([100.0]))
    await _refresh_rollups(store, now + MINUTE)

    series = await store.series(4, now - 3 * DAY, now, 3)
    assert series.count.tolist() == [1440, 1440, 1441]
    assert series.max.tolist() == [1.0, 1.0, 100.0]


@pytest.mark.parametrize(
    ("start", "end", "buckets", "message"),
    [
        (10, 10, 5, "start 10 must be before end 10"),
        (20, 10, 5, "start 20 must be before end 10"),
        (0, 10, 0, "buckets must be 1..10000, got 0"),
        (0, 10, MAX_BUCKETS + 1, "got 10001"),
    ],
)
async def test_series_refuses_bad_arguments(
    database_url: str, start: int, end: int, buckets: int, message: str
) -> None:
    store = await Store.open(database_url)
    try:
        with pytest.raises(ValueError, match=message):
            await store.series(1, start, end, buckets)
    finally:
        await store.close()


async def test_series_of_a_point_without_samples_is_empty(store: Store) -> None:
    now = _now_minute()
    series = await store.series(99, now - DAY, now, 500)
    assert len(series) == 0 and series.ts.dtype == np.int64 and series.avg.dtype == np.float64


# -- latest values ----------------------------------------------------------------------------


async def test_latest_values_come_back_in_the_asked_order_with_unknown_points_bad(
    store: Store,
) -> None:
    now = _now_minute()
    async with store.pool.acquire() as conn:
        await conn.executemany(
            "INSERT INTO latest_values VALUES ($1, 'epoch'::timestamptz + $2 * interval '1 us',"
            " $3, $4)",
            [(3, now // 1000, 1.5, 0), (1, (now + S) // 1000, None, int(Quality.COMM_FAIL))],
        )
    everything = await store.latest()
    assert everything.point.tolist() == [1, 3]
    assert everything.ts.tolist() == [now + S, now]
    assert np.isnan(everything.value[0]) and everything.value[1] == 1.5
    assert everything.quality.tolist() == [Quality.COMM_FAIL, Quality.GOOD]

    some = await store.latest([3, 42])
    assert some.point.tolist() == [3, 42]
    assert some.ts.tolist() == [now, 0]
    assert some.value[0] == 1.5 and np.isnan(some.value[1])
    assert some.quality.tolist() == [Quality.GOOD, Quality.BAD]
