"""The `anjian` command: serve, simulate, check-config, migrate, bench.

Exit codes: 0 success, 1 runtime failure, 2 bad configuration or bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from streams.config import ConfigError, MqttSettings, load_config

if TYPE_CHECKING:
    from collectors.sim.runner import Simulator

log = logging.getLogger("anjian")
REPO = Path(__file__).resolve().parent.parent
SCENARIOS = ("normal", "leak", "stuck", "out_of_range", "comm_loss", "wind")


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
    mig.add_argument("--config", type=Path)
    mig.add_argument("--data-dir", type=Path, default=Path("data"))
    mig.add_argument("--database-url", default=None)

    bench = sub.add_parser("bench", help="run a benchmark from tests/bench (ingest, modbus)")
    bench.add_argument("name")
    bench.add_argument("args", nargs=argparse.REMAINDER)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
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
        if args.command == "bench":
            return _bench(args.name, args.args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    raise AssertionError(args.command)


def _check_config(file: Path) -> int:
    cfg = load_config(file)
    points = sum(1 for _ in cfg.points())
    devices = sum(len(e.devices) for e in cfg.enterprises)
    print(f"{file}: OK — {len(cfg.enterprises)} enterprises, {devices} devices, {points} points")
    return 0


def _database_url(arg: str | None) -> str | None:
    return arg or os.environ.get("ANJIAN_DATABASE_URL") or None


def _serve(args: argparse.Namespace) -> int:
    from anjian.runtime import Settings

    if args.config is not None:
        load_config(args.config)  # a bad file stops here, before anything starts
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
    from anjian.runtime import Settings, build_app

    assert isinstance(settings, Settings)
    app = build_app(settings)
    runner = web.AppRunner(app, handle_signals=False)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await runner.setup()  # runs the cleanup contexts: database, plant, collectors
    try:
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        print(f"anjian console: http://{settings.host}:{settings.port}/", flush=True)
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


async def _migrate(args: argparse.Namespace) -> int:
    from streams.embedded import EmbeddedPostgres
    from streams.registry import sync_config
    from streams.store import Store

    cfg = load_config(args.config) if args.config else None
    url = _database_url(args.database_url) or (cfg.database.url if cfg else None)
    pg = None
    if url is None:
        pg = EmbeddedPostgres()
        args.data_dir.mkdir(parents=True, exist_ok=True)
        url = await pg.start(args.data_dir)
    try:
        store = await Store.open(url, embedded=pg is not None)
        try:
            if cfg is not None:
                index = await sync_config(store.pool, cfg)
                print(f"registry: {len(index)} points")
            print(f"migrated ({store.mode})")
        finally:
            await store.close()
    finally:
        if pg is not None:
            await pg.stop()
    return 0


def _bench(name: str, argv: list[str]) -> int:
    file = REPO / "tests" / "bench" / f"bench_{name}.py"
    if not file.exists():
        known = sorted(p.stem.removeprefix("bench_") for p in file.parent.glob("bench_*.py"))
        print(f"no benchmark {name!r}; known: {', '.join(known)}", file=sys.stderr)
        return 2
    spec = importlib.util.spec_from_file_location(f"bench_{name}", file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    line = asyncio.run(module.main(argv))
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
