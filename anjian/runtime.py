"""The supervisor: starts and stops everything, in one visible order.

Start: database (embedded or configured) → demo plant and cameras (if asked) → configuration →
registry → hub and writer → collectors and cameras → maintenance → web. Stop is the reverse, and
the writer is flushed after the collectors have stopped, so no received sample is lost on
SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import secrets
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from alarms.engine import AlarmEngine, FirstOutGroup, RuleBook, device_groups
from alarms.evaluator import warm_up
from alarms.notify import Notifier, NotifySettings, WebSocketChannel
from alarms.reports import Reports
from alarms.rules import AlarmSettings, RuleArrays
from alarms.warning_desk import Geography, WarningDesk
from alarms.warning_rules import WarningLevel
from alarms.warnings import Duty, Recipient
from anjian.video import camera_rules, demo_cameras
from collectors import DeviceCollector
from collectors.modbus import ModbusCollector
from collectors.mqtt import MqttIngest
from collectors.opcua import OpcUaCollector
from collectors.sim.runner import Simulator
from streams import Hub
from streams.config import (
    Config,
    ModbusDevice,
    MqttDevice,
    MqttSettings,
    OpcUaDevice,
    SecuritySettings,
    held_points,
    load_config,
    parse_config,
)
from streams.embedded import EmbeddedPostgres, lock_data_dir
from streams.registry import PointIndex, sync_config
from streams.store import Store
from streams.writer import SampleWriter
from video.clips import ClipRecorder
from video.manager import VideoManager, load_cameras
from video.settings import video_settings
from web.accounts import ACCOUNTS, Accounts, DemoAccount, ensure_demo_accounts
from web.alarms import ENGINE, NOTIFICATIONS, POINTS, RULES
from web.app import SERVICES, Services, make_app
from web.audit import AUDIT, AuditLog
from web.inputs import ENTERPRISES
from web.reports import REPORTS
from web.sources import SOURCES, SourceStates
from web.video import VIDEO, VideoServices
from web.warnings import DESK

log = logging.getLogger("anjian")
MAINTAIN_EVERY_S = 60.0
AUDIT_PRUNE_EVERY_S = 24 * 3600.0


@dataclass
class Settings:
    """How to run: where the config and data live and which database to use."""

    config: Path | None = None
    demo: bool = False
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("data")
    database_url: str | None = None  # ANJIAN_DATABASE_URL; else the config's; else embedded
    mqtt: MqttSettings | None = None  # demo only: the broker the simulated gateway uses


def mqtt_broker_answers(host: str = "127.0.0.1", port: int = 1883) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class Running:
    """What is running, for health and for tests."""

    store: Store
    hub: Hub
    writer: SampleWriter
    collectors: list[DeviceCollector]
    mqtt: MqttIngest | None
    config: Config
    points: PointIndex
    simulator: Simulator | None
    audit: AuditLog
    accounts: Accounts
    demo_accounts: list[DemoAccount]
    alarms: AlarmEngine
    warnings: WarningDesk
    notifications: WebSocketChannel
    rules: RuleBook
    sources: SourceStates
    reports: Reports
    video: VideoManager
    clips: ClipRecorder

    def collector_health(self) -> list[dict[str, Any]]:
        statuses = [c.status for c in self.collectors]
        if self.mqtt is not None:
            statuses += self.mqtt.statuses
        return [s.as_dict() for s in statuses]


def build_collectors(
    cfg: Config, index: PointIndex, hub: Hub
) -> tuple[list[DeviceCollector], MqttIngest | None]:
    collectors: list[DeviceCollector] = []
    mqtt_devices: list[tuple[str, MqttDevice, dict[str, int]]] = []
    for e in cfg.enterprises:
        ids = index.for_enterprise(e.code)
        for d in e.devices:
            if isinstance(d, ModbusDevice):
                collectors.append(ModbusCollector(e.code, d, ids, hub))
            elif isinstance(d, OpcUaDevice):
                collectors.append(OpcUaCollector(e.code, d, ids, hub))
            else:
                mqtt_devices.append((e.code, d, ids))
    mqtt = None
    if mqtt_devices:
        assert cfg.mqtt is not None  # the config validator guarantees it
        mqtt = MqttIngest(cfg.mqtt, mqtt_devices, hub)
    return collectors, mqtt


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Running]:
    """Everything but the web server, started in order and stopped in reverse."""
    async with contextlib.AsyncExitStack() as stack:
        stack.enter_context(lock_data_dir(settings.data_dir))  # before anything starts
        simulator: Simulator | None = None
        if settings.demo:
            mqtt = settings.mqtt
            if mqtt is None and mqtt_broker_answers():
                # A topic prefix of this demo's own: two demos on one broker (or a demo beside
                # the tests) must not read each other's gateway.
                mqtt = MqttSettings(topic_prefix=f"anjian/demo-{secrets.token_hex(4)}")
            simulator = Simulator(mqtt=mqtt)
            await simulator.start()
            stack.push_async_callback(simulator.stop)
            demo_file = settings.data_dir / "demo.toml"
            demo_file.write_text(simulator.config_toml, encoding="utf-8")
            cfg = parse_config(simulator.config_toml, demo_file)
            cfg = await stack.enter_async_context(demo_cameras(cfg))
        elif settings.config is not None:
            cfg = load_config(settings.config)
        else:
            cfg = Config()

        url = settings.database_url or cfg.database.url
        embedded = url is None
        if url is None:
            pg = EmbeddedPostgres()
            url = await pg.start(settings.data_dir)
            stack.push_async_callback(pg.stop)
        store = await Store.open(
            url,
            embedded=embedded,
            retention_days=cfg.database.retention_days,
            rollup_retention_days=cfg.database.rollup_retention_days,
        )
        stack.push_async_callback(store.close)
        index = await sync_config(store.pool, cfg)
        audit = AuditLog(store.pool)
        accounts = Accounts(store.pool, cfg.security)
        demo_accounts: list[DemoAccount] = []
        if settings.demo and cfg.enterprises:
            demo_accounts = await ensure_demo_accounts(store.pool, cfg.enterprises[0].code)
            _write_demo_accounts(settings.data_dir / "demo-accounts.txt", demo_accounts)

        alarm_settings = AlarmSettings.model_validate(cfg.alarms)
        video_config = video_settings(cfg.video)
        cameras = await load_cameras(store.pool, cfg, index)
        # The config's rules with the overrides set over the API (stored, the source of truth).
        rules = RuleBook(
            store.pool, cfg, {(p.enterprise, p.code): p.id for p in index}, alarm_settings,
            extra=camera_rules(cameras, video_config),
        )  # fmt: skip
        engine = AlarmEngine(store.pool, RuleArrays.build(await rules.load()))
        await asyncio.to_thread(warm_up)  # the evaluator's compiled kernels
        rules.engine = engine
        engine.first_out_groups(
            [
                FirstOutGroup(
                    f"firstout:{e.code}/{g.code}", tuple(index.id(e.code, p) for p in g.points)
                )
                for e in cfg.enterprises
                for g in e.first_out_groups
            ],
            alarm_settings.suppression.first_out,
        )
        engine.device_groups(
            device_groups(cfg, {(p.enterprise, p.code): p.id for p in index}),
            alarm_settings.suppression.device_comm,
        )
        restored = await engine.restore()
        log.info("alarm engine: %d rules, %d alarms restored", len(rules.rules), restored)
        sources = SourceStates(store.pool, engine, cfg, index, alarm_settings.suppression)
        log.info("hazard sources: %d operating states restored", await sources.restore())
        grades = {(e.code, h.code): h.grade for e in cfg.enterprises for h in e.hazard_sources}
        people = {
            (e.code, h.code): [
                Recipient(Duty(r.duty), r.name, r.username, r.phone) for r in h.responsible
            ]
            for e in cfg.enterprises
            for h in e.hazard_sources
        }
        desk = WarningDesk(store.pool, engine, index, grades, people)
        reports = Reports(
            store.pool,
            desk.rules,
            {e.code: [h.code for h in e.hazard_sources] for e in cfg.enterprises},
            operating_states=sources.states,
        )
        desk.reports = reports
        works, commitments = await reports.load()
        if simulator is not None:  # before the desk's first look: no warning of a missing one
            commitments += await submit_demo_commitments(cfg, reports)
        log.info("reports: %d special works not ended, %d recent commitments", works, commitments)
        log.info("warning desk: %d open warnings restored", await desk.restore())

        notify = NotifySettings.model_validate(cfg.notify)
        http = await stack.enter_async_context(aiohttp.ClientSession())
        ws_channel = WebSocketChannel()
        notifier = Notifier([ws_channel, *notify.channels(http)])
        stack.push_async_callback(notifier.drain)
        engine.escalate_with(notify.escalation, notifier, {p.id: p.code for p in index})

        hub = Hub()
        desk.geography = geo = Geography(cfg, index, hub.latest)  # the wind, from its points
        if (window := desk.wind_window_s) and geo.wind_points:
            # The wind of the window before a restart counts as if the desk had seen it.
            now = time.time_ns()
            ids = [i for pair in geo.wind_points.values() for i in pair]
            taken = geo.seed(await store.readings(ids, now - round(window * 1e9), now))
            log.info("warning desk: %d wind readings of the last %g s taken up", taken, window)
        writer = SampleWriter(store, settings.data_dir / "spool")
        collectors, mqtt_ingest = build_collectors(cfg, index, hub)
        video = VideoManager(cameras, video_config, hub)
        clips = ClipRecorder(video, engine.events, store.pool, settings.data_dir)
        run = Running(
            store, hub, writer, collectors, mqtt_ingest, cfg, index, simulator, audit, accounts,
            demo_accounts, engine, desk, ws_channel, rules, sources, reports, video, clips,
        )  # fmt: skip

        async with asyncio.TaskGroup() as tg:
            sub = hub.subscribe("store", maxsize=64)
            writer_task = tg.create_task(writer.run(sub), name="writer")
            alarm_sub = hub.subscribe("alarms", maxsize=64)
            engine_task = tg.create_task(engine.run(alarm_sub), name="alarms")
            jobs: list[asyncio.Task[None]] = [
                tg.create_task(c.run(), name=f"collector {c.enterprise}/{c.device.code}")
                for c in collectors
            ]
            if mqtt_ingest is not None:
                jobs.append(tg.create_task(mqtt_ingest.run(), name="mqtt"))
            if cameras:
                jobs.append(tg.create_task(video.run(), name="cameras"))
                jobs.append(tg.create_task(clips.run(), name="alarm clips"))
            jobs.append(tg.create_task(_every(MAINTAIN_EVERY_S, store.maintain), name="maintain"))
            jobs.append(tg.create_task(engine.ticker(), name="alarm ticker"))
            jobs.append(tg.create_task(desk.run(), name="warning desk"))
            if simulator is not None:
                jobs.append(tg.create_task(_demo_commitments(cfg, reports), name="commitments"))
            retention = cfg.security.audit_retention_days

            async def prune_audit() -> None:
                await audit.prune(retention)

            jobs.append(tg.create_task(_every(AUDIT_PRUNE_EVERY_S, prune_audit), name="audit"))
            # Everything long-lived exists now: keep it out of full collections, whose pauses
            # would otherwise delay every collector's poll (measured: 100-180 ms).
            gc.collect()
            gc.freeze()
            try:
                yield run
            finally:
                for job in jobs:
                    job.cancel()
                await asyncio.gather(*jobs, return_exceptions=True)
                sub.close()  # the writer drains what was received, then stops
                alarm_sub.close()
                await writer_task
                await engine_task


async def _every(period: float, job: Callable[[], Awaitable[None]]) -> None:
    while True:
        try:
            await job()
        except Exception:  # a failed maintenance run must not stop ingest; it retries next period
            log.exception("maintenance failed")
        await asyncio.sleep(period)


def _write_demo_accounts(file: Path, accounts: list[DemoAccount]) -> None:
    """The demo's accounts (with the administrators' TOTP secrets), readable by the owner only."""
    lines = ["# anjian demo accounts (demo only; see README). username role password [totp]"]
    for a in accounts:
        lines.append(f"{a.username} {a.role} {a.password} {a.totp_uri or ''}".rstrip())
    file.touch(mode=0o600)
    file.write_text("\n".join(lines) + "\n", encoding="utf-8")


def security_settings(settings: Settings) -> SecuritySettings:
    """The security policy the web server starts with (the demo uses the defaults)."""
    if settings.config is not None and not settings.demo:
        return load_config(settings.config).security
    return SecuritySettings()


def ssl_context(security: SecuritySettings) -> ssl.SSLContext | None:
    if security.tls_certificate is None or security.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(security.tls_certificate, security.tls_key)
    return context


DEMO_COMMITMENT_CHECK_S = 600.0


async def submit_demo_commitments(cfg: Config, reports: Reports) -> int:
    """Today's daily safety commitment (安全承诺) of every enterprise with hazard sources that has
    none yet, as its main responsible person would submit it; returns how many were submitted."""
    day = reports.today()
    submitted = 0
    for e in cfg.enterprises:
        sources = [h.code for h in e.hazard_sources]
        if not sources or await reports.commitments(day, e.code):
            continue
        principal = next(
            (r.name for h in e.hazard_sources for r in h.responsible if r.duty == "principal"),
            f"{e.name} 主要负责人",
        )
        await reports.submit_commitment(
            e.code, "demo", day=day, risk_level=WarningLevel.BLUE, production_state="normal",
            units_running=len(sources), units_stopped=0, units_maintenance=0, special_work={},
            hot_work_grade1=0, hot_work_special=0, sources_safe=dict.fromkeys(sources, True),
            note="模拟企业每日安全承诺", signed_by=principal,
        )  # fmt: skip
        submitted += 1
    return submitted


async def _demo_commitments(cfg: Config, reports: Reports) -> None:
    """The demo's enterprises commit every day, so the demo shows only the warnings its plant
    causes (a missing commitment is still warned about outside the demo)."""
    while True:
        await submit_demo_commitments(cfg, reports)
        await asyncio.sleep(DEMO_COMMITMENT_CHECK_S)


def build_app(
    settings: Settings, ready: Callable[[Running], None] | None = None
) -> web.Application:
    """The web application, owning the whole runtime through one cleanup context."""

    async def services(app: web.Application) -> AsyncIterator[None]:
        async with running(settings) as run:
            sim = run.simulator

            async def scenario(name: str, target: str | None, params: dict[str, float]) -> None:
                assert sim is not None
                await sim.set_scenario(name, target, **params)

            app[SERVICES] = Services(
                store=run.store,
                hub=run.hub,
                points=run.points,
                collectors=run.collector_health,
                writer=lambda: run.writer.stats,
                cameras=lambda: [
                    {"id": c.id, "online": bool(run.video.health(c.id).get("online"))}
                    for c in run.video.cameras
                ],
                scenario=scenario if sim is not None else None,
                hold_s={
                    run.points.id(e, code): hold
                    for (e, code), hold in held_points(run.config).items()
                },
            )
            app[AUDIT] = run.audit
            app[ACCOUNTS] = run.accounts
            app[ENGINE] = run.alarms
            app[DESK] = run.warnings
            app[RULES] = run.rules
            app[NOTIFICATIONS] = run.notifications
            app[POINTS] = run.points
            app[ENTERPRISES] = frozenset(e.code for e in run.config.enterprises)
            app[REPORTS] = run.reports
            app[SOURCES] = run.sources
            app[VIDEO] = VideoServices(run.video, run.store.pool, settings.data_dir)
            if ready is not None:
                ready(run)
            yield

    return make_app(services, security_settings(settings))
