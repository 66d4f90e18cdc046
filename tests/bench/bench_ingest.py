"""Ingest benchmark: collector-shaped batches through Hub → SampleWriter → store, measured against
a bare asyncpg copy_records_to_table of the same rows into an identical, fresh database.

Run: python tests/bench/bench_ingest.py [--samples N] [--server URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import numpy as np

from streams import Hub, SampleBatch
from streams.pgcopy import COLUMNS
from streams.store import Store
from streams.writer import SampleWriter

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
SECOND = 1_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def make_batches(samples: int, points: int, seed: int = 0) -> list[SampleBatch]:
    """Polls of devices of 20-100 points at 1 Hz, each batch a device's last 2-20 polls
    (200-2,000 rows), interleaved across devices, ending about now."""
    rng = np.random.default_rng(seed)
    sizes = []
    while sum(sizes) < points:
        sizes.append(int(rng.integers(20, 101)))
    first = np.cumsum([0, *sizes[:-1]])
    clock = [0] * len(sizes)  # polls done per device
    start = (time.time_ns() // SECOND - samples // points - 60) * SECOND
    batches: list[SampleBatch] = []
    total = 0
    while total < samples:
        d = int(rng.integers(len(sizes)))
        polls = int(rng.integers(max(2, -(-200 // sizes[d])), 2_000 // sizes[d] + 1))
        ids = np.arange(first[d], first[d] + sizes[d], dtype=np.int32)
        t = start + (clock[d] + np.arange(polls, dtype=np.int64)) * SECOND
        clock[d] += polls
        n = polls * sizes[d]
        ts = np.repeat(t, sizes[d]) + rng.integers(0, 5_000_000, n)  # read jitter
        value = np.round(rng.normal(50.0, 15.0, n), 3)
        quality = np.where(rng.random(n) < 0.01, 1, 0).astype(np.uint8)
        batches.append(SampleBatch(ts, np.tile(ids, polls), value, quality))
        total += n
    return batches


def _with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")


async def _create(server: str) -> str:
    name = f"anjian_bench_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name


async def _drop(server: str, name: str) -> None:
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def run_ours(url: str, batches: list[SampleBatch], rows: int) -> float:
    """Samples per second from the first publish until the writer has flushed."""
    store = await Store.open(url)
    try:
        with tempfile.TemporaryDirectory(prefix="anjian-bench-spool-") as spool:
            hub = Hub()
            sub = hub.subscribe("store")
            writer = SampleWriter(store, Path(spool))
            task = asyncio.create_task(writer.run(sub))
            step = max(1, len(batches) // 10)
            start = time.perf_counter()
            published = 0
            for i, batch in enumerate(batches, 1):
                await hub.publish(batch)
                published += len(batch)
                if i % step == 0:
                    elapsed = time.perf_counter() - start
                    print(
                        f"  ours: {published:>10,} samples published, {writer.rows_written:>10,} "
                        f"written, {elapsed:6.2f} s",
                        flush=True,
                    )
            await sub.join()
            await writer.flush()
            elapsed = time.perf_counter() - start
            sub.close()
            await task
            if writer.rows_written != rows or writer.rows_spooled:
                raise RuntimeError(f"writer stats do not add up to {rows} rows: {writer.stats}")
            print(
                f"  ours: {rows:,} samples in {elapsed:.2f} s, "
                f"{writer.stats['batches_written']:,} batches "
                f"({store.mode} mode)",
                flush=True,
            )
            return rows / elapsed
    finally:
        await store.close()


async def run_ceiling(url: str, batches: list[SampleBatch]) -> float:
    """Rows per second of one bare copy_records_to_table of the same rows (built untimed)."""
    store = await Store.open(url)
    try:
        b = SampleBatch.concat(batches)
        await store.ensure_partitions(int(b.ts.min()), int(b.ts.max()))
        t0 = time.perf_counter()
        stamps = [_EPOCH + timedelta(microseconds=us) for us in (b.ts // 1000).tolist()]
        records = list(
            zip(stamps, b.point.tolist(), b.value.tolist(), b.quality.tolist(), strict=True)
        )
        print(f"  ceiling: {len(records):,} tuples built in {time.perf_counter() - t0:.2f} s")
        conn = await asyncpg.connect(url)
        try:
            start = time.perf_counter()
            await conn.copy_records_to_table("samples", records=records, columns=COLUMNS)
            elapsed = time.perf_counter() - start
        finally:
            await conn.close()
        print(f"  ceiling: {len(records):,} rows in {elapsed:.2f} s", flush=True)
        return len(records) / elapsed
    finally:
        await store.close()


async def main(argv: Sequence[str]) -> str:
    parser = argparse.ArgumentParser(prog="bench ingest", description=__doc__)
    parser.add_argument("--samples", type=int, default=2_000_000)
    parser.add_argument("--points", type=int, default=500)
    parser.add_argument(
        "--server",
        default=os.environ.get("ANJIAN_BENCH_DATABASE_URL", DEFAULT_SERVER),
        help="a PostgreSQL server URL; the benchmark creates and drops its own databases",
    )
    parser.add_argument("--rounds", type=int, default=2, help="best of this many runs each")
    args = parser.parse_args(list(argv))

    batches = make_batches(args.samples, args.points)
    rows = sum(len(b) for b in batches)
    print(
        f"bench ingest: {rows:,} samples of {args.points} points in {len(batches):,} batches "
        f"({min(map(len, batches))}-{max(map(len, batches))} rows)",
        flush=True,
    )
    ours = ceiling = 0.0
    for round_ in range(1, args.rounds + 1):
        # Best of the rounds, the order alternating: other load on the machine and the
        # server's checkpoints and autovacuum slow single runs of either side by 10-30 %.
        print(f"round {round_} of {args.rounds}", flush=True)
        for side in ("ours", "ceiling") if round_ % 2 else ("ceiling", "ours"):
            db = await _create(args.server)
            try:
                url = _with_database(args.server, db)
                if side == "ours":
                    ours = max(ours, await run_ours(url, batches, rows))
                else:
                    ceiling = max(ceiling, await run_ceiling(url, batches))
            finally:
                await _drop(args.server, db)
    line = f"bench ingest: ours={ours:.0f} ceiling={ceiling:.0f} ratio={ours / ceiling:.2f}"
    return line


if __name__ == "__main__":
    print(asyncio.run(main(sys.argv[1:])))
