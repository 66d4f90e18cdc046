"""The embedded PostgreSQL server: starts in a data directory, answers, stops, starts again."""

from __future__ import annotations

import os
from pathlib import Path

import asyncpg
import pytest

from streams.embedded import DataDirInUse, EmbeddedPostgres, lock_data_dir


async def test_embedded_server_starts_answers_stops_and_keeps_its_data(tmp_path: Path) -> None:
    server = EmbeddedPostgres()
    url = await server.start(tmp_path / "data")
    try:
        assert url.startswith("postgresql://postgres:@/anjian?host=")
        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval("SELECT current_database()") == "anjian"
            await conn.execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")
        finally:
            await conn.close()
    finally:
        await server.stop()

    with pytest.raises((OSError, asyncpg.PostgresError)):
        await asyncpg.connect(url, timeout=2)

    again = EmbeddedPostgres()
    assert await again.start(tmp_path / "data") == url
    try:
        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval("SELECT x FROM kept") == 42
        finally:
            await conn.close()
    finally:
        await again.stop()


def test_a_data_directory_is_held_by_one_process_at_a_time(tmp_path: Path) -> None:
    taken = f"in use by another anjian process \\(pid {os.getpid()}\\)"
    first, second = lock_data_dir(tmp_path / "data"), lock_data_dir(tmp_path / "data")
    with first, pytest.raises(DataDirInUse, match=taken), second:
        pass
    with lock_data_dir(tmp_path / "data"):  # let go at the end
        pass
