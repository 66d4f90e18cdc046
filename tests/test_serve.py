"""`anjian serve`: the demo end to end, and a clean stop on SIGTERM that flushes the writer."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from anjian.runtime import Running, Settings, build_app
from streams.config import parse_config
from streams.registry import sync_config
from streams.store import Store
from tests.conftest import DUTY, free_port, sign_in
from tests.test_config import readme_example
from web.accounts import ensure_demo_accounts


async def test_demo_serves_every_enterprise_over_its_protocol(
    database_url: str, tmp_path: Path
) -> None:
    holder: list[Running] = []
    app = build_app(
        Settings(demo=True, data_dir=tmp_path, database_url=database_url), ready=holder.append
    )
    async with TestClient(TestServer(app)) as client:
        run = holder[0]
        assert {a.username for a in run.demo_accounts} >= {"duty", "sysadmin", "auditor"}
        await sign_in(client, *DUTY)
        protocols = {d.protocol for e in run.config.enterprises for d in e.devices}
        assert protocols >= {"modbus", "opcua"}
        deadline = time.monotonic() + 20
        health: dict[str, object] = {}
        while time.monotonic() < deadline:
            health = await (await client.get("/api/health")).json()
            collectors = health["collectors"]
            assert isinstance(collectors, dict)
            if collectors["down"] == 0 and collectors["up"] == len(collectors["devices"]):
                break
            await asyncio.sleep(0.2)
        else:
            raise AssertionError(f"not every demo device came up: {health}")
        for e in run.config.enterprises:
            body = await (await client.get("/api/latest", params={"enterprise": e.code})).json()
            good = [v for v in body["values"] if v["quality"] == "GOOD"]
            assert good, f"no good values from {e.code}"
        assert (tmp_path / "demo.toml").exists()  # the matching config, for the operator to read


async def test_serve_prints_url_and_stops_cleanly_on_sigterm_flushing_the_writer(
    database_url: str, tmp_path: Path
) -> None:
    from collectors.sim.modbus_server import ModbusSimServer
    from streams.config import ModbusDevice, parse_config

    # The README's plant with its Modbus PLC answered by a simulated device on a free port.
    port = free_port()
    text = readme_example().replace(
        'host = "192.0.2.10"\n  port = 502', f'host = "127.0.0.1"\n  port = {port}'
    )
    text = text.replace("period_s = 1.0", "period_s = 0.1")
    cfg = parse_config(text)
    plc = [d for d in cfg.enterprises[0].devices if isinstance(d, ModbusDevice)]
    device = ModbusSimServer(plc, lambda _code: {"TK1.LT": 5.0, "GD-1": 1.5}, port=port)
    await device.start()
    config = tmp_path / "plant.toml"
    config.write_text(text, encoding="utf-8")
    store = await Store.open(database_url)  # migrate first, so an account can exist
    try:
        await sync_config(store.pool, cfg)
        await ensure_demo_accounts(store.pool, "E1")
    finally:
        await store.close()
    web_port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "anjian.cli",
        "serve",
        "--config",
        str(config),
        "--port",
        str(web_port),
        "--data-dir",
        str(tmp_path / "data"),
        env={**os.environ, "ANJIAN_DATABASE_URL": database_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        assert line.decode().strip() == f"anjian console: http://127.0.0.1:{web_port}/"
        base = f"http://127.0.0.1:{web_port}"
        async with aiohttp.ClientSession(base, cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await sign_in(http, *DUTY)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                health = await (await http.get("/api/health")).json()
                if int(health["ingest"]["samples_total"]) >= 20:
                    break
                await asyncio.sleep(0.1)
        published = int(health["ingest"]["samples_total"])
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
        assert proc.stderr is not None
        assert code == 0, (await proc.stderr.read()).decode(errors="replace")[-6000:]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await device.stop()
    conn = await asyncpg.connect(database_url)
    try:
        stored = await conn.fetchval("SELECT count(*) FROM samples")
    finally:
        await conn.close()
    # Everything published before the signal (and what came after, up to the stop) is stored.
    assert stored >= published
    assert not list((tmp_path / "data" / "spool").glob("*.batch"))


async def test_simulate_prints_endpoints_and_switches_scenarios_from_stdin(tmp_path: Path) -> None:
    from pymodbus.client import AsyncModbusTcpClient

    modbus_port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "anjian.cli", "simulate",
        "--modbus-port", str(modbus_port), "--opcua-port", str(free_port()),
        "--write-config", str(tmp_path / "plant.toml"),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    stdout = proc.stdout

    async def line_with(text: str) -> str:
        while True:
            line = (await asyncio.wait_for(stdout.readline(), 60)).decode()
            assert line, f"simulate ended before printing {text!r}"
            if text in line:
                return line

    try:
        assert f"PLC101: modbus://127.0.0.1:{modbus_port}" in await line_with("PLC101:")
        await line_with("switch scenario")
        assert (tmp_path / "plant.toml").exists()
        async with AsyncModbusTcpClient("127.0.0.1", port=modbus_port) as plc:
            assert not (await plc.read_holding_registers(0, count=2, device_id=1)).isError()

        proc.stdin.write(b"leak NOSUCHTANK rate_g_s=500\n")
        assert "unknown tank" in await line_with("cannot switch")
        proc.stdin.write(b"comm_loss PLC101\n")
        await line_with("scenario: comm_loss PLC101")
        async with AsyncModbusTcpClient("127.0.0.1", port=modbus_port, retries=0) as plc:
            assert not plc.connected
        proc.stdin.write(b"normal\n")
        await line_with("scenario: normal")
        async with AsyncModbusTcpClient("127.0.0.1", port=modbus_port) as plc:
            assert plc.connected
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    """A throw-away self-signed certificate for 127.0.0.1 and its key."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_serve_over_tls_from_the_config(
    database_url: str, tmp_path: Path, tls_files: tuple[Path, Path]
) -> None:
    cert, key = tls_files
    text = readme_example().replace(
        '# tls_certificate = "/etc/anjian/tls.crt"\n# tls_key = "/etc/anjian/tls.key"',
        f'tls_certificate = "{cert}"\ntls_key = "{key}"',
    )
    assert str(cert) in text
    config = tmp_path / "plant.toml"
    config.write_text(text, encoding="utf-8")
    store = await Store.open(database_url)
    try:
        await sync_config(store.pool, parse_config(text))
        await ensure_demo_accounts(store.pool, "E1")
    finally:
        await store.close()
    web_port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "anjian.cli", "serve", "--config", str(config),
        "--port", str(web_port), "--data-dir", str(tmp_path / "data"),
        env={**os.environ, "ANJIAN_DATABASE_URL": database_url},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        assert line.decode().strip() == f"anjian console: https://127.0.0.1:{web_port}/"
        trust = ssl.create_default_context(cafile=str(cert))
        async with aiohttp.ClientSession(
            f"https://127.0.0.1:{web_port}",
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            connector=aiohttp.TCPConnector(ssl=trust),
        ) as https:
            r = await https.post("/api/auth/login", json={"username": DUTY[0], "password": DUTY[1]})
            assert r.status == 200
            cookie = r.cookies["anjian_session"]
            assert cookie["secure"] and cookie["httponly"]
            assert cookie["samesite"] == "Strict"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _anjian(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Runs `anjian …` to its end (60 s at most); its exit code and standard error."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "anjian.cli", *args,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, err.decode(errors="replace")


async def test_an_unreachable_database_stops_start_up_with_one_clear_line() -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql://anjian:s3cret@127.0.0.1:{port}/anjian"
    code, err = await _anjian("migrate", "--database-url", url)
    assert code == 1, err
    (line,) = err.strip().splitlines()
    where = f"postgresql://127.0.0.1:{port}/anjian"  # without the credentials
    assert line.startswith(f"anjian: cannot connect to the database {where}: "), line
    assert "Connect call failed" in line and "s3cret" not in err


async def test_a_taken_port_stops_start_up_cleanly_with_one_clear_line(
    database_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "plant.toml"
    config.write_text(readme_example(), encoding="utf-8")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # Everything starts (database, collectors, alarm engine), then the console cannot
        # listen: what started is stopped again and the command ends.
        code, err = await _anjian(
            "serve", "--config", str(config), "--port", str(port),
            "--data-dir", str(tmp_path / "data"), env={"ANJIAN_DATABASE_URL": database_url},
        )  # fmt: skip
    assert code == 1, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"anjian: cannot listen on 127.0.0.1:{port}: "), err[-3000:]
    assert "address already in use" in last and "Traceback" not in err


async def test_a_second_server_on_a_data_directory_is_refused_and_a_one_shot_command_shares_it(
    tmp_path: Path,
) -> None:
    # The first server runs its embedded PostgreSQL in the data directory. A second server
    # there is refused before it starts anything; `anjian audit verify` there uses the
    # running server's database and leaves it running (it once stopped it at its end).
    data = tmp_path / "data"
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "anjian.cli", "serve", "--port", str(port), "--data-dir", str(data),
        env={k: v for k, v in os.environ.items() if k != "ANJIAN_DATABASE_URL"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 120)
        assert line.decode().strip() == f"anjian console: http://127.0.0.1:{port}/"
        code, err = await _anjian("serve", "--port", str(free_port()), "--data-dir", str(data))
        assert code == 1, err
        assert err.strip().splitlines()[-1] == (
            f"anjian: the data directory {data} is in use by another anjian process "
            f"(pid {proc.pid}): stop it first, or give another --data-dir"
        )
        code, err = await _anjian("audit", "verify", "--data-dir", str(data))
        assert code == 0, err
        assert (data / "pg" / "postmaster.pid").exists()  # still running
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            r = await http.post("/api/auth/login", json={"username": "x", "password": "y"})
            assert r.status == 401  # the sign-in reached the database and found no such user
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        err = (await proc.stderr.read()).decode(errors="replace")
        assert "Traceback" not in err and "unreachable" not in err, err[-3000:]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
