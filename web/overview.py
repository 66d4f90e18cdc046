"""The enterprise overview: per enterprise and hazard source its position, highest open early
warning, online rate of points and active alarms, and per enterprise its sensitive targets and
its wind, in one call for the map, list and wall display.

Enterprise users see only their own enterprise (another one's code answers 404).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np
from aiohttp import web

from alarms.model import AlarmState
from alarms.warning_rules import ToxicGasTowardTargetRule
from alarms.warnings import TargetAt, Wind, blows_toward
from streams import Quality
from streams.registry import PointIndex
from web.alarms import ENGINE, POINTS
from web.security import PRINCIPAL, Permission, Principal, Route, json_error
from web.sources import SOURCES, SourceStates, SourceStatus, suppression_key
from web.warnings import DESK

# Online rate = points with data in the window / configured points (DOMAIN.md §4.2, data-quality
# rules [D]). The window is a design default: a few polling periods of the slowest device.
ONLINE_WINDOW_S = 60.0
MAX_ONLINE_WINDOW_S = 24 * 3600.0
# Samples that carry no measured value: the device could not be read, or nothing came in time.
_NO_DATA = np.array([Quality.COMM_FAIL, Quality.STALE], np.uint8)
PRIORITIES = ("1", "2", "3", "4")


def _json(data: Any) -> web.Response:
    return web.json_response(data, dumps=lambda d: json.dumps(d, ensure_ascii=False))


def _principal(request: web.Request) -> Principal:
    principal: Principal = request[PRINCIPAL]
    return principal


def _services(request: web.Request) -> Any:
    # Imported here: web.app assembles its route table from this module's OVERVIEW_ROUTES.
    from web.app import SERVICES

    return request.app[SERVICES]


def _window_s(request: web.Request) -> float:
    raw = request.query.get("window_s")
    if raw is None:
        return ONLINE_WINDOW_S
    try:
        window = float(raw)
    except ValueError:
        window = float("nan")
    if not 0 < window <= MAX_ONLINE_WINDOW_S:
        raise json_error(
            web.HTTPBadRequest,
            f"window_s={raw!r} must be a number of seconds in (0, {MAX_ONLINE_WINDOW_S:g}]",
        )
    return window


def _online(request: web.Request, points: PointIndex, window_s: float) -> dict[int, bool]:
    """Point id → whether its latest sample holds a value and is recent: within the window, or
    at any age for a point that holds its value (`Services.hold_s`: it reports on change only)
    while its device's session is up (a steady value, such as a closed valve, is sent only on
    each heartbeat; a lost session sends COMM_FAIL for all its points)."""
    services = _services(request)
    ids = points.ids
    live = services.hub.latest.get(ids)
    fresh = live.ts >= time.time_ns() - int(window_s * 1e9)
    if services.hold_s:
        up = {(c["enterprise"], c["device"]) for c in services.collectors() if c["up"]}
        held = (
            i in services.hold_s and (p.enterprise, p.device) in up
            for i, p in ((i, points.info(i)) for i in ids.tolist())
        )
        fresh |= np.fromiter(held, np.bool_, len(ids))
    has_data = ~np.isin(live.quality, _NO_DATA) & ~np.isnan(live.value)
    return dict(zip(ids.tolist(), (fresh & has_data).tolist(), strict=True))


def _operating(
    states: SourceStates | None, held: dict[str, int], enterprise: str, source: str
) -> dict[str, Any]:
    """A hazard source's operating state and how many alarms it suppresses by design now
    (`held`: AlarmEngine.suppressed_counts)."""
    status = states.get(enterprise, source) if states else SourceStatus(enterprise, source)
    view = status.view()
    del view["enterprise"], view["source"]  # the source's own object says which
    key = suppression_key(enterprise, source, status.state)
    return {**view, "suppressed": held.get(key, 0)}


def _alarm_counts() -> dict[str, Any]:
    return {"total": 0, "unack": 0, "by_priority": dict.fromkeys(PRIORITIES, 0)}


def _count(c: dict[str, Any], priority: int, state: AlarmState) -> None:
    c["total"] += 1
    c["by_priority"][str(priority)] += 1
    if state in (AlarmState.UNACK, AlarmState.RTN_UNACK):
        c["unack"] += 1


async def _tree(request: web.Request, enterprise: str | None) -> list[dict[str, Any]]:
    """Enterprises (one or all) with region and hazard sources from the registry."""
    pool = request.app[ENGINE].pool
    rows = await pool.fetch(
        """
        SELECT e.code, e.name, e.region, r.province, r.city, e.industry, e.address, e.lon, e.lat,
               coalesce(json_agg(json_build_object(
                   'code', h.code, 'name', h.name, 'unit_type', h.unit_type, 'grade', h.grade,
                   'lon', h.lon, 'lat', h.lat) ORDER BY h.code)
                 FILTER (WHERE h.id IS NOT NULL), '[]') AS hazard_sources
        FROM enterprises e
        LEFT JOIN regions r ON r.code = e.region
        LEFT JOIN hazard_sources h ON h.enterprise_id = e.id
        WHERE $1::text IS NULL OR e.code = $1
        GROUP BY e.id, r.code
        ORDER BY e.code
        """,
        enterprise,
    )
    out = []
    for r in rows:
        row = dict(r)
        row["hazard_sources"] = json.loads(row["hazard_sources"])
        out.append(row)
    return out


def _targets(
    seen: tuple[TargetAt, ...],
    kinds: Mapping[str, str],
    rule: ToxicGasTowardTargetRule | None,
    wind: Wind | None,
) -> list[dict[str, Any]]:
    """A hazard source's sensitive targets, nearest first, each with its distance and bearing
    from the source and whether the wind now blows toward it as the red warning's rule sees it
    (None: no wind reading, or no such rule)."""
    return [
        {
            "name": t.name,
            "kind": kinds.get(t.name),
            "distance_m": round(t.distance_m),
            "bearing_deg": round(t.bearing_deg, 1),
            "downwind": blows_toward(rule, wind, t) if rule and wind else None,
        }
        for t in sorted(seen, key=lambda t: t.distance_m)
    ]


async def overview(request: web.Request) -> web.Response:
    principal = _principal(request)
    points = request.app[POINTS]
    enterprise = request.query.get("enterprise", principal.enterprise)
    # Another enterprise's code answers like an unknown one.
    tree = [] if enterprise and not principal.sees(enterprise) else await _tree(request, enterprise)
    if enterprise is not None and not tree:
        raise json_error(web.HTTPNotFound, f"no enterprise {enterprise!r}")
    window = _window_s(request)
    online = _online(request, points, window)

    # Per (enterprise, hazard source or None): points configured / online, alarms, warning.
    n_points: Counter[tuple[str, str | None]] = Counter()
    n_online: Counter[tuple[str, str | None]] = Counter()
    for p in points:
        for key in {(p.enterprise, None), (p.enterprise, p.hazard_source)}:
            n_points[key] += 1
            n_online[key] += online[p.id]
    alarms: dict[tuple[str, str | None], dict[str, Any]] = {}
    engine = request.app[ENGINE]
    for (point, _cond), a in engine.alarms.items():
        # As the board lists them: those suppressed by design have their cause annunciated.
        if a.state in (AlarmState.NORMAL, AlarmState.SUPPRESSED) or point not in points:
            continue
        info = points.info(point)
        for key in {(info.enterprise, None), (info.enterprise, info.hazard_source)}:
            _count(alarms.setdefault(key, _alarm_counts()), int(a.priority), a.state)
    level: dict[tuple[str, str | None], tuple[int, str]] = {}
    warnings: dict[str, Counter[str]] = {}
    for w in request.app[DESK].warnings.values():
        if not w.live:
            continue
        warnings.setdefault(w.enterprise, Counter())[w.level.value] += 1
        for key in {(w.enterprise, None), (w.enterprise, w.hazard_source)}:
            if w.level.rank > level.get(key, (0, ""))[0]:
                level[key] = (w.level.rank, w.level.value)

    def summary(key: tuple[str, str | None]) -> dict[str, Any]:
        total, up = n_points[key], n_online[key]
        return {
            "warning": level.get(key, (0, None))[1],
            "points": total,
            "online": up,
            "online_rate": round(up / total, 4) if total else None,
            "alarms": alarms.get(key, _alarm_counts()),
        }

    states = request.app.get(SOURCES)
    held = engine.suppressed_counts()
    desk = request.app[DESK]
    geo = desk.geography  # the sensitive targets and the wind
    toward = next((r for r in desk.rules.rules if isinstance(r, ToxicGasTowardTargetRule)), None)
    out = []
    for e in tree:
        if not principal.sees(e["code"]):
            continue
        wind = geo.reading(e["code"]) if geo else None
        kinds = {t.name: t.kind for t in (geo.sensitive.get(e["code"], ()) if geo else ())}
        sources = [
            {
                **h,
                **summary((e["code"], h["code"])),
                "targets": _targets(
                    geo.targets.get((e["code"], h["code"]), ()) if geo else (), kinds, toward, wind
                ),
                # 运行 / 开停车 / 检维修 / 停用, who set it, since when and why.
                "operating": _operating(states, held, e["code"], h["code"]),
            }
            for h in e.pop("hazard_sources")
        ]
        out.append(
            {
                **e,
                **summary((e["code"], None)),
                "warnings": dict(warnings.get(e["code"], Counter())),
                "hazard_sources": sources,
                "sensitive_targets": [
                    t.model_dump() for t in (geo.sensitive.get(e["code"], ()) if geo else ())
                ],
                "wind": {"from_deg": round(wind.from_deg, 1), "speed_m_s": round(wind.speed_m_s, 2)}
                if wind
                else None,
            }
        )
    totals = {
        "enterprises": len(out),
        "points": sum(e["points"] for e in out),
        "online": sum(e["online"] for e in out),
        "alarms": _alarm_counts(),
        "warnings": dict(sum((Counter(e["warnings"]) for e in out), Counter())),
    }
    for e in out:
        totals["alarms"]["total"] += e["alarms"]["total"]
        totals["alarms"]["unack"] += e["alarms"]["unack"]
        for prio in PRIORITIES:
            totals["alarms"]["by_priority"][prio] += e["alarms"]["by_priority"][prio]
    totals["online_rate"] = (
        round(totals["online"] / totals["points"], 4) if totals["points"] else None
    )
    return _json({"window_s": window, "enterprises": out, "totals": totals})


OVERVIEW_ROUTES = [
    Route(
        "GET",
        "/api/overview",
        overview,
        Permission.MONITOR_READ,
        "Per enterprise and hazard source: position, GB 18218 grade, highest open warning, "
        "online rate of points and active alarms by priority; per enterprise its sensitive "
        "targets and the wind its weather station reads now",
        query={
            "enterprise": "enterprise code (default: all you may see)",
            "window_s": f"online means data within this many seconds (default {ONLINE_WINDOW_S:g})",
        },
    ),
]
