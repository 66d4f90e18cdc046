"""The `anjian` command: serve, simulate, check-config, migrate, bench.

Exit codes: 0 success, 1 runtime failure, 2 bad configuration or bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import getpass
import importlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from alarms.rules import RuleError
from anjian.config_check import check_config_file
from streams.config import Config, ConfigError, MqttSettings, SecuritySettings, load_config
from streams.embedded import DataDirInUse
from streams.store import DatabaseUnavailable, MigrationError

if TYPE_CHECKING:
    from collectors.sim.runner import Simulator
    from streams.store import Store

log = logging.getLogger("anjian")
REPO = Path(__file__).resolve().parent.parent
SCENARIOS = ("normal", "leak", "stuck", "out_of_range", "comm_loss", "wind")


class CannotListen(Exception):
    """The console's address is taken, or not one of this host's."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="anjian", description="安监 monitoring and command server")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server (collectors, store, web console)")
    serve.add_argument("--config", type=Path, help="the TOML configuration file")
    serve.add_argument("--demo", action="store_true", help="run the simulated plant in-process")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--data-dir", type=Path, default=Path("data"))
    serve.add_argument("--database-url", default=None, help="default: $ANJIAN_DATABASE_URL")

    sim = sub.add_parser("simulate", help="run the simulated plant alone and print its endpoints")
    sim.add_argument("--scenario", choices=SCENARIOS, default="normal")
    sim.add_argument("--target", help="the tank, point or device the scenario acts on")
    sim.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="scenario parameter, e.g. rate_g_s=500 for a leak",
    )
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--modbus-port", type=int, default=5020)
    sim.add_argument("--opcua-port", type=int, default=4840)
    sim.add_argument("--mqtt", metavar="HOST:PORT", help="broker for enterprise 3's gateway")
    sim.add_argument("--write-config", type=Path, help="write the matching config file here")

    check = sub.add_parser("check-config", help="validate a configuration file")
    check.add_argument("file", type=Path)

    mig = sub.add_parser("migrate", help="apply the database migrations and exit")
    _database_options(mig)

    admin = sub.add_parser("admin", help="administration: `admin init` creates the 三员 accounts")
    admin_sub = admin.add_subparsers(dest="action", required=True)
    _database_options(admin_sub.add_parser("init", help="create the three administrators"))

    audit = sub.add_parser("audit", help="the audit log: `audit verify` checks its hash chain")
    audit_sub = audit.add_subparsers(dest="action", required=True)
    _database_options(audit_sub.add_parser("verify", help="walk the chain; exit 1 if broken"))

    bench = sub.add_parser("bench", help="run a benchmark from tests/bench (ingest, modbus)")
    bench.add_argument("name")
    bench.add_argument("args", nargs=argparse.REMAINDER)
    return p


def _database_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path)
    p.add_argument("--data-dir", type=Path, default=Path("data"))
    p.add_argument("--database-url", default=None, help="default: $ANJIAN_DATABASE_URL")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    faulthandler.enable()  # a crash in native code (FFmpeg, drivers) leaves a traceback in the log
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # asyncua logs every publish at INFO and a traceback per lost connection at ERROR; our
    # collectors say a loss once, so keep only its warnings (and its errors when verbose).
    logging.getLogger("asyncua").setLevel(logging.DEBUG if args.verbose else logging.CRITICAL)
    # pymodbus logs every failed connect and timeout; a dead PLC must not flood the log.
    logging.getLogger("pymodbus").setLevel(logging.DEBUG if args.verbose else logging.CRITICAL)
    try:
        if args.command == "check-config":
            return _check_config(args.file)
        if args.command == "serve":
            return _serve(args)
        if args.command == "simulate":
            return asyncio.run(_simulate(args))
        if args.command == "migrate":
            return asyncio.run(_migrate(args))
        if args.command == "admin":
            return asyncio.run(_admin_init(args))
        if args.command == "audit":
            return asyncio.run(_audit_verify(args))
        if args.command == "bench":
            return _bench(args.name, args.args)
    except (ConfigError, RuleError) as exc:
        print(exc, file=sys.stderr)
        return 2
    except (DatabaseUnavailable, MigrationError, CannotListen, DataDirInUse) as exc:
        # What stops start-up, said in one line (everything started so far has been stopped).
        print(f"anjian: {exc}", file=sys.stderr)
        return 1
    raise AssertionError(args.command)


def _check_config(file: Path) -> int:
    cfg = check_config_file(file)
    points = sum(1 for _ in cfg.points())
    devices = sum(len(e.devices) for e in cfg.enterprises)
    print(f"{file}: OK — {len(cfg.enterprises)} enterprises, {devices} devices, {points} points")
    return 0


def _database_url(arg: str | None) -> str | None:
    return arg or os.environ.get("ANJIAN_DATABASE_URL") or None


def _serve(args: argparse.Namespace) -> int:
    from anjian.runtime import Settings

    if args.config is not None:
        check_config_file(args.config)  # a bad file stops here, before anything starts
    settings = Settings(
        config=args.config,
        demo=args.demo,
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        database_url=_database_url(args.database_url),
    )
    return asyncio.run(_serve_async(settings))


async def _serve_async(settings: object) -> int:
    from anjian.runtime import Running, Settings, build_app, security_settings, ssl_context

    assert isinstance(settings, Settings)
    tls = ssl_context(security_settings(settings))
    demo: list[Running] = []
    app = build_app(settings, ready=demo.append)
    runner = web.AppRunner(app, handle_signals=False)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await runner.setup()  # runs the cleanup contexts: database, plant, collectors
    try:
        site = web.TCPSite(runner, settings.host, settings.port, ssl_context=tls)
        try:
            await site.start()
        except OSError as exc:
            where = f"{settings.host}:{settings.port}"
            raise CannotListen(f"cannot listen on {where}: {exc.strerror or exc}") from exc
        if demo and demo[0].demo_accounts:
            print(
                "demo accounts (README): duty / Duty@2026!, enterprise / Enterprise@2026! …; "
                f"administrators' TOTP secrets in {settings.data_dir / 'demo-accounts.txt'}",
                flush=True,
            )
        scheme = "https" if tls else "http"
        print(f"anjian console: {scheme}://{settings.host}:{settings.port}/", flush=True)
        await stop.wait()
        log.info("stopping: flushing the writer")
    finally:
        await runner.cleanup()
    return 0


async def _simulate(args: argparse.Namespace) -> int:
    from collectors.sim.runner import Simulator

    mqtt = None
    if args.mqtt:
        host, _, port = args.mqtt.rpartition(":")
        mqtt = MqttSettings(host=host or "127.0.0.1", port=int(port))
    sim = Simulator(
        host=args.host, modbus_port=args.modbus_port, opcua_port=args.opcua_port, mqtt=mqtt
    )
    await sim.start()
    try:
        if args.scenario != "normal":
            await sim.set_scenario(args.scenario, args.target, **_params(args.param))
        if args.write_config:
            args.write_config.write_text(sim.config_toml, encoding="utf-8")
            print(f"config: {args.write_config}")
        for name, endpoint in sim.endpoints.items():
            print(f"{name}: {endpoint}")
        print("scenario:", args.scenario, args.target or "")
        print(
            "switch scenario by typing e.g. 'leak TK101 rate_g_s=500', 'comm_loss PLC101', 'normal'"
        )
        await _scenario_prompt(sim)
    finally:
        await sim.stop()
    return 0


def _params(pairs: Sequence[str]) -> dict[str, float]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        try:
            out[name] = float(value)
        except ValueError:
            raise ValueError(f"parameter {pair!r} must be NAME=NUMBER") from None
        if not sep:
            raise ValueError(f"parameter {pair!r} must be NAME=NUMBER")
    return out


async def _scenario_prompt(sim: Simulator) -> None:
    """Read scenario lines from stdin until EOF or a signal."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if not sys.stdin.isatty() and sys.stdin.closed:
        await stop.wait()
        return
    reader = asyncio.StreamReader()
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    except (ValueError, OSError):
        await stop.wait()
        return
    stopping = asyncio.ensure_future(stop.wait())
    while not stop.is_set():
        reading = asyncio.ensure_future(reader.readline())
        await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not reading.done():
            reading.cancel()
            break
        line = reading.result().decode().strip()
        if not line:
            if reader.at_eof():
                await stop.wait()
            continue
        name, *rest = line.split()
        target = next((w for w in rest if "=" not in w), None)
        try:
            params = _params([w for w in rest if "=" in w])
            await sim.set_scenario(name, target, **params)
            print(f"scenario: {line}", flush=True)
        except (KeyError, ValueError, RuntimeError) as exc:
            print(f"cannot switch: {exc}", flush=True)


@contextlib.asynccontextmanager
async def _store(args: argparse.Namespace) -> AsyncIterator[tuple[Store, Config | None]]:
    """The store the server would use (migrated), for the one-shot commands."""
    from streams.embedded import DataDirInUse, EmbeddedPostgres, lock_data_dir, server_running_in
    from streams.store import Store

    cfg = load_config(args.config) if args.config else None
    url = _database_url(args.database_url) or (cfg.database.url if cfg else None)
    embedded = url is None
    async with contextlib.AsyncExitStack() as stack:
        if url is None:
            # While `anjian serve` runs on this data directory, use its server and leave it
            # running; else hold the directory and stop the server afterwards.
            try:
                stack.enter_context(lock_data_dir(args.data_dir))
                owner = True
            except DataDirInUse:
                if not server_running_in(args.data_dir):
                    raise  # that anjian runs no embedded server here to share
                owner = False
            pg = EmbeddedPostgres()
            url = await pg.start(args.data_dir)
            stack.push_async_callback(pg.stop, shut_down=owner)
        store = await Store.open(url, embedded=embedded)
        stack.push_async_callback(store.close)
        yield store, cfg


async def _migrate(args: argparse.Namespace) -> int:
    from streams.registry import sync_config

    async with _store(args) as (store, cfg):
        if cfg is not None:
            index = await sync_config(store.pool, cfg)
            print(f"registry: {len(index)} points")
        print(f"migrated ({store.mode})")
    return 0


async def _admin_init(args: argparse.Namespace) -> int:
    from web.accounts import AlreadyInitialised, admin_init
    from web.audit import AuditLog

    async with _store(args) as (store, cfg):
        security = cfg.security if cfg else SecuritySettings()
        audit = AuditLog(store.pool)
        who = f"os:{getpass.getuser()}"
        try:
            created = await admin_init(store.pool, security)
        except AlreadyInitialised as exc:
            await audit.record(
                principal=None, username=who, source="cli", action="admin.init",
                result="refused", detail={"reason": str(exc)},
            )  # fmt: skip
            print(f"admin init: {exc}", file=sys.stderr)
            return 1
        await audit.record(
            principal=None, username=who, source="cli", action="admin.init",
            target=",".join(c.username for c in created), result="ok",
        )  # fmt: skip
    print("The three administrators (三员). Shown once: store them safely now.")
    print("Each must change the one-time password at first sign-in.")
    for c in created:
        print(f"  {c.role:9} user {c.username:9} one-time password {c.password}")
        print(f"            TOTP secret {c.totp_secret}  ({c.totp_uri})")
    return 0


async def _audit_verify(args: argparse.Namespace) -> int:
    from web.audit import verify_command

    async with _store(args) as (store, _cfg):
        return await verify_command(store.url)


def _bench(name: str, argv: list[str]) -> int:
    bench_dir = REPO / "tests" / "bench"
    if not bench_dir.is_dir():
        print(f"the benchmarks run from a source checkout ({bench_dir} not found)", file=sys.stderr)
        return 2
    file = bench_dir / f"bench_{name}.py"
    if not file.exists():
        known = sorted(p.stem.removeprefix("bench_") for p in bench_dir.glob("bench_*.py"))
        print(f"no benchmark {name!r}; known: {', '.join(known)}", file=sys.stderr)
        return 2
    # Imported by name (not from a file spec) so that worker processes can import it too.
    sys.path.insert(0, str(bench_dir))
    module = importlib.import_module(f"bench_{name}")
    print(asyncio.run(module.main(argv)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
