"""The warning desk: the imperative shell of early warnings (预警).

Every few seconds it turns the alarm engine's alarms and the data quality into the pure rules'
inputs, issues, updates and escalates warnings, stores each in PostgreSQL (restored at start-up)
and tells listeners (the WebSocket topic `warnings`). Operators' steps come through `act`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import numpy as np

from alarms import warnings as wm
from alarms.engine import AlarmEngine
from alarms.model import AlarmClass, AlarmState, Condition
from alarms.reports import Reports
from alarms.warning_rules import ToxicGasTowardTargetRule, WarningRules, load_warning_rules
from gis.coords import bearing_distance
from streams.batch import SampleBatch
from streams.config import DEVICE_LINK_KIND, Config
from streams.fanout import Fanout
from streams.hub import LatestValues
from streams.quality import Quality
from streams.registry import PointIndex

log = logging.getLogger("anjian.warnings")
EVALUATE_EVERY_S = 5.0
_QUALITY = {Condition.BAD_QUALITY, Condition.STALE}


def _gas_hazard(unit: str) -> wm.GasHazard | None:
    unit = unit.replace(" ", "").lower()
    if unit == "%lel":
        return wm.GasHazard.FLAMMABLE
    if unit in ("mg/m3", "mg/m³", "ppm"):
        return wm.GasHazard.TOXIC
    return None


def _dt(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, UTC)


class Geography:
    """What the wind may carry a toxic release toward: each enterprise's wind_direction and
    wind_speed points (its weather station) read from the hub at each of the desk's evaluations
    and kept for the rule's window, and its sensitive targets (as configured, and as seen from
    each hazard source: the source's position, else the enterprise's)."""

    def __init__(self, cfg: Config, points: PointIndex, latest: LatestValues) -> None:
        self.latest = latest
        self.wind_points: dict[str, tuple[int, int]] = {}
        self._seen: dict[str, deque[tuple[int, wm.Wind]]] = defaultdict(deque)
        self.sensitive = {e.code: tuple(e.sensitive_targets) for e in cfg.enterprises}
        self.targets: dict[tuple[str, str], tuple[wm.TargetAt, ...]] = {}
        for e in cfg.enterprises:
            kinds = {p.kind: points.id(e.code, p.code) for d in e.devices for p in d.points}
            if "wind_direction" in kinds and "wind_speed" in kinds:
                self.wind_points[e.code] = (kinds["wind_direction"], kinds["wind_speed"])
            for h in e.hazard_sources:
                placed = h.lon is not None and h.lat is not None
                lon, lat = (h.lon, h.lat) if placed else (e.lon, e.lat)
                if lon is None or lat is None:
                    continue
                self.targets[(e.code, h.code)] = tuple(
                    wm.TargetAt(t.name, *bearing_distance(lon, lat, t.lon, t.lat))
                    for t in e.sensitive_targets
                )

    def reading(self, enterprise: str) -> wm.Wind | None:
        """The enterprise's wind as its station reads it now (None: no station, or a reading
        that is not good)."""
        ids = self.wind_points.get(enterprise)
        if ids is None:
            return None
        now = self.latest.get(np.array(ids, np.int32))
        if not ((now.quality == Quality.GOOD).all() and np.isfinite(now.value).all()):
            return None
        return wm.Wind(float(now.value[0]), float(now.value[1]))

    def seed(self, readings: SampleBatch) -> int:
        """Take up the wind as the store holds it (GOOD samples of the wind points, in time
        order), as if seen at each sample: the window's history outlives a restart. Returns
        how many winds were taken up."""
        taken = 0
        for e, (direction, speed) in self.wind_points.items():
            known: dict[int, float] = {}
            seen = self._seen[e]
            mine = np.flatnonzero(np.isin(readings.point, (direction, speed)))
            for t, p, v in zip(
                readings.ts[mine].tolist(),
                readings.point[mine].tolist(),
                readings.value[mine].tolist(),
                strict=True,
            ):
                known[p] = v
                if len(known) == 2 and (not seen or t > seen[-1][0]):
                    seen.append((t, wm.Wind(known[direction], known[speed])))
                    taken += 1
        return taken

    def winds(self, now_ns: int, window_s: float) -> dict[str, tuple[wm.Wind, ...]]:
        """Enterprise → its wind as seen at each call within the last `window_s`, oldest first
        (a call where a reading is not good adds nothing)."""
        since = now_ns - round(window_s * 1e9)
        out = {}
        for e in self.wind_points:
            seen = self._seen[e]
            now = self.reading(e)
            if now is not None:
                seen.append((now_ns, now))
            while seen and seen[0][0] <= since:
                seen.popleft()
            out[e] = tuple(w for _, w in seen)
        return out


class WarningDesk:
    def __init__(
        self,
        pool: asyncpg.Pool,
        engine: AlarmEngine,
        points: PointIndex,
        grades: Mapping[tuple[str, str], int | None],
        recipients: Mapping[tuple[str, str], Sequence[wm.Recipient]] | None = None,
        *,
        rules: WarningRules | None = None,
        clock: Callable[[], int] = time.time_ns,
        reports: Reports | None = None,
        geography: Geography | None = None,
    ) -> None:
        self.pool = pool
        self.engine = engine
        self.points = points
        self.grades = grades  # (enterprise, hazard source) → GB 18218 grade
        self.recipients = recipients or {}  # (enterprise, hazard source) → 包保责任人
        self.rules = rules or load_warning_rules()
        self.clock = clock
        self.reports = reports  # what enterprises report: special work, daily commitment
        self.geography = geography  # the wind and the sensitive targets
        self.warnings: dict[int, wm.Warning] = {}
        # The latest evaluation: when, and the finding of each (enterprise, hazard source).
        self.evaluated_at_ns: int | None = None
        self.findings: dict[tuple[str, str | None], wm.WarningFinding] = {}
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self.events = Fanout()  # every warning change, for the WebSocket topic

    @property
    def wind_window_s(self) -> float | None:
        """How long the wind's history counts (the longest of the toxic-gas rules' windows);
        None without such a rule."""
        windows = [
            r.wind_window_s for r in self.rules.rules if isinstance(r, ToxicGasTowardTargetRule)
        ]
        return max(windows, default=None)

    async def restore(self) -> int:
        rows = await self.pool.fetch("SELECT id, record FROM warnings WHERE state <> 'closed'")
        for r in rows:
            self.warnings[r["id"]] = wm.from_row({**json.loads(r["record"]), "id": r["id"]})
        return len(rows)

    def inputs(self, now_ns: int) -> wm.WarningInputs:
        """The rules' view of the present: active alarms, data quality and what the enterprises
        reported (special work, the daily commitment) per hazard source."""
        alarms: dict[tuple[str, str | None], list[wm.ActiveAlarm]] = defaultdict(list)
        quality: dict[tuple[str, str | None], dict[int, dict[str, Any]]] = defaultdict(dict)
        cameras: dict[tuple[str, str | None], dict[str, int]] = defaultdict(dict)
        for (point, condition), a in self.engine.alarms.items():
            if not a.active or point not in self.points:
                continue
            p = self.points.info(point)
            where = (p.enterprise, p.hazard_source)
            since = a.condition_ts_ns or a.raised_at_ns or now_ns
            if p.kind == DEVICE_LINK_KIND:
                continue  # a lost device: its points' own quality conditions are the evidence
            if p.kind.startswith("video_"):
                # A camera's health points (device = the camera): offline feeds video_offline.
                if p.kind == "video_online" and condition in _QUALITY:
                    cameras[where][p.device] = since
                continue
            if condition in _QUALITY:
                quality[where].setdefault(point, {"code": p.code, "name": p.name})[
                    "offline_since_ns"
                ] = since
            elif condition is Condition.STUCK:
                quality[where].setdefault(point, {"code": p.code, "name": p.name})[
                    "stuck_since_ns"
                ] = since
            elif condition is Condition.OUT_OF_RANGE:
                quality[where].setdefault(point, {"code": p.code, "name": p.name})[
                    "out_of_range_since_ns"
                ] = since
            elif a.state is not AlarmState.NORMAL or a.active:
                alarms[where].append(
                    wm.ActiveAlarm(
                        point=point, code=p.code, condition=condition,
                        alarm_class=self.engine.rules.class_of(point, condition)
                        if point < self.engine.rules.size else AlarmClass.PROCESS,
                        priority=a.priority, kind=p.kind or "", raised_at_ns=since, name=p.name,
                        gas=_gas_hazard(p.unit) if p.kind == "gas" or p.gas else None,
                        acknowledged=a.acked_at_ns is not None,
                    )
                )  # fmt: skip
        enterprises: dict[str, set[str | None]] = defaultdict(set)
        for p in self.points:
            enterprises[p.enterprise].add(p.hazard_source)
        for e, src in self.grades:
            enterprises[e].add(src)  # a source without points may still have special work
        works = self.reports.special_work_at(now_ns) if self.reports else {}
        committed = {
            e: self.reports.commitment_inputs(e, now_ns) if self.reports else (None, None)
            for e in enterprises
        }
        geo, window = self.geography, self.wind_window_s
        winds = geo.winds(now_ns, window) if geo and window else {}
        return wm.WarningInputs(
            tuple(
                wm.EnterpriseInputs(
                    code=e,
                    sources=tuple(
                        wm.SourceInputs(
                            code=src,
                            grade=self.grades.get((e, src)) if src else None,
                            alarms=tuple(alarms.get((e, src), ())),
                            quality=tuple(
                                wm.PointQuality(point=pid, **q)
                                for pid, q in quality.get((e, src), {}).items()
                            ),
                            cameras_offline=cameras.get((e, src), {}),
                            special_work=frozenset(works.get((e, src), ()))
                            if self.reports and src
                            else None,
                            special_work_permits=works.get((e, src), {}) if src else {},
                            production_state=self.reports.source_state(e, src)
                            if self.reports and src
                            else None,
                            state_planned_end_ns=self.reports.source_planned_end(e, src)
                            if self.reports and src
                            else None,
                            winds=winds.get(e, ()),
                            targets=geo.targets.get((e, src), ()) if geo and src else (),
                        )
                        for src in sorted(sources, key=lambda s: s or "")
                    ),
                    commitment_submitted=committed[e][0],
                    production_state=committed[e][1],
                )
                for e, sources in sorted(enterprises.items())
            )
        )

    async def run(self, period_s: float = EVALUATE_EVERY_S) -> None:
        while True:
            self._wake.clear()
            try:
                await self.evaluate()
            except Exception:  # a bad evaluation must not stop the desk; it retries
                log.exception("warning evaluation failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), period_s)

    def poke(self) -> None:
        """Evaluate now rather than at the end of the period: an input changed."""
        self._wake.set()

    async def evaluate(self) -> None:
        now = self.clock()
        async with self._lock:
            findings = wm.evaluate_warnings(self.inputs(now), self.rules, now)
            self.findings = {(f.enterprise, f.hazard_source): f for f in findings}
            self.evaluated_at_ns = now
            live = [w for w in self.warnings.values() if w.live]
            result = wm.reconcile(live, findings, now)
            updated = {w.id: w for w in result.updated}
            for wid, stored in self.warnings.items():
                w = updated.get(wid, stored)
                due = wm.next_due_ns(w, self.rules)
                if due is not None and due <= now:
                    updated[wid] = wm.tick(w, now, self.rules)
            issued = [self._push(w, now) for w in result.issued]
            await self._store([*issued, *updated.values()])

    def _push(self, w: wm.Warning, now: int) -> wm.Warning:
        """To the source's 包保责任人; without any on record it stays issued (and escalates)."""
        people = self.recipients.get((w.enterprise, w.hazard_source or ""), ())
        if not people:
            log.warning("warning %s: no 包保责任人 configured to push it to", w.key)
            return w
        return wm.push(w, people, now, self.rules)

    async def act(
        self, warning_id: int, step: Callable[[wm.Warning, int], wm.Warning]
    ) -> wm.Warning:
        async with self._lock:
            w = step(self.warnings[warning_id], self.clock())
            await self._store([w])
            # A closed warning has left the desk: answer with the record as closed.
            return self.warnings.get(warning_id, w)

    async def _store(self, changed: list[wm.Warning]) -> None:
        if not changed:
            return
        views = []
        async with self.pool.acquire() as conn, conn.transaction():
            for w in changed:
                row = wm.to_row(w)
                record = json.dumps(row, ensure_ascii=False)
                if w.id is None:
                    wid = await conn.fetchval(
                        "INSERT INTO warnings (enterprise, hazard_source, level, state,"
                        " dedupe_key, issued_at, updated_at, record)"
                        " VALUES ($1, $2, $3, $4, $5, $6, now(), $7::jsonb) RETURNING id",
                        w.enterprise, w.hazard_source, w.level.value, w.state.value, w.key,
                        _dt(w.issued_at_ns), record,
                    )  # fmt: skip
                    w = wm.from_row({**row, "id": wid})
                else:
                    await conn.execute(
                        "UPDATE warnings SET state = $2, level = $3, updated_at = now(),"
                        " record = $4::jsonb WHERE id = $1",
                        w.id, w.state.value, w.level.value, record,
                    )  # fmt: skip
                assert w.id is not None
                self.warnings[w.id] = w
                views.append(self.view(w))
        for w in list(self.warnings.values()):
            if w.state is wm.WarningState.CLOSED:
                del self.warnings[w.id]  # type: ignore[arg-type]
        self.events.publish(views)

    async def record(self, warning_id: int) -> wm.Warning | None:
        """A warning by id: an open one as the desk holds it, a closed one from the database."""
        w = self.warnings.get(warning_id)
        if w is not None:
            return w
        record = await self.pool.fetchval("SELECT record FROM warnings WHERE id = $1", warning_id)
        return None if record is None else wm.from_row({**json.loads(record), "id": warning_id})

    def now(self, w: wm.Warning) -> dict[str, Any]:
        """What holds at a warning's source now, by the desk's latest evaluation: beside the
        warning's evidence, which is a record of the time of issue. `finding` is None when no
        rule fires there; it may be of another level than the warning."""
        at = self.evaluated_at_ns
        finding = self.findings.get((w.enterprise, w.hazard_source))
        return {
            "evaluated_at": _dt(at).isoformat(timespec="seconds") if at is not None else None,
            "finding": None if finding is None else wm.finding_row(finding),
        }

    def view(self, w: wm.Warning) -> dict[str, Any]:
        row = wm.to_row(w)
        deadline = wm.next_due_ns(w, self.rules)
        row["deadline"] = _dt(deadline).isoformat(timespec="seconds") if deadline else None
        return row
