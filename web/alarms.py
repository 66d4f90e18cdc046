"""Alarm routes: the list and detail of alarms, operator actions, and the alarm KPIs.

Enterprise users see only their own enterprise's alarms (anything else is 404); the centre's
duty officers, shift leaders and leaders acknowledge, shelve and take alarms out of service.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import numpy as np
from aiohttp import web
from pydantic import Field

from alarms import state as sm
from alarms.engine import AlarmEngine, RuleBook, event_view
from alarms.kpi import EventColumns, kpis
from alarms.model import AlarmEvent, AlarmState, Condition
from alarms.notify import WebSocketChannel
from alarms.rules import RuleArrays, RuleError, RuleOverride
from streams.registry import PointIndex
from web.inputs import INT4_MAX, INT8_MAX, Body, enterprise_param, parse_id, parse_time, to_ns
from web.security import BODY, PRINCIPAL, Permission, Principal, Route, json_error
from web.sources import SOURCE_ROUTES

ENGINE = web.AppKey("alarm_engine", AlarmEngine)
NOTIFICATIONS = web.AppKey("alarm_notifications", WebSocketChannel)
RULES = web.AppKey("alarm_rules", RuleBook)
POINTS = web.AppKey("alarm_points", PointIndex)
MAX_EVENTS = 500


# A reason must say something: blank is refused like a missing one.
Reason = Annotated[str, Field(min_length=1, max_length=500, pattern=r"\S")]
# The longest KPI period one request may ask for. The report keeps a count per 10-minute window
# for every area and is computed on the event loop: 292 years took seconds and hundreds of MB.
MAX_KPI_PERIOD = timedelta(days=366)


class AckBody(Body):
    comment: Annotated[str, Field(max_length=500)] = ""


class BulkAckBody(Body):
    ids: Annotated[list[int], Field(min_length=1, max_length=1000)]
    comment: Annotated[str, Field(max_length=500)] = ""


class ShelveBody(Body):
    reason: Reason
    duration_s: Annotated[float, Field(gt=0)] | None = None
    one_shot: bool = False


class ReasonBody(Body):
    reason: Reason


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, ensure_ascii=False))


def _principal(request: web.Request) -> Principal:
    principal: Principal = request[PRINCIPAL]
    return principal


def _info(request: web.Request, point: int) -> dict[str, Any]:
    points: PointIndex = request.app[POINTS]
    if point not in points:
        return {"enterprise": None, "code": None, "name": None, "kind": None, "unit": None}
    p = points.info(point)
    return {
        "enterprise": p.enterprise,
        "hazard_source": p.hazard_source,
        "code": p.code,
        "name": p.name,
        "kind": p.kind,
        "unit": p.unit,
        "range": None if p.range is None else list(p.range),
        "readings": readings(request.app[ENGINE].rules, point),
        "limits": limits_in_force(request, point) or p.limits.model_dump(),
    }


def limits_in_force(request: web.Request, point: int) -> dict[str, float | None] | None:
    """The limits in force: the point's rule (the configuration's limits with its
    `[alarms.points]` overrides and those set over the API; a gas detector's GB/T 50493
    defaults when none is configured), not the limits the point's table names."""
    book = request.app.get(RULES)
    rule = book.rules.get(point) if book is not None else None
    if rule is None:
        return None  # no alarm rule: the configured limits are all there is
    return {"hh": rule.hh, "h": rule.h, "l": rule.l, "ll": rule.ll}


def readings(rules: RuleArrays, point: int) -> list[float] | None:
    """Beyond the point's instrument range, the readings that are measurements (bounds), not
    failure signals; None without a range."""
    if point >= rules.size or math.isnan(rules.reading_lo[point]):
        return None
    return [float(rules.reading_lo[point]), float(rules.reading_hi[point])]


def _visible(request: web.Request, point: int) -> bool:
    points = request.app[POINTS]
    return point in points and _principal(request).sees(points.info(point).enterprise)


def _alarm_id(request: web.Request) -> int:
    """The {id} of the path, as 404 when it does not exist or is another enterprise's."""
    raw = request.match_info["id"]
    engine = request.app[ENGINE]
    alarm_id = parse_id(raw, INT8_MAX)
    if (
        alarm_id is not None
        and alarm_id in engine.keys
        and _visible(request, engine.keys[alarm_id][0])
    ):
        return alarm_id
    raise json_error(web.HTTPNotFound, f"no alarm {raw!r}")


def _time(raw: str | None, name: str) -> int | None:
    return None if raw is None else to_ns(parse_time(raw, name))


async def list_alarms(request: web.Request) -> web.Response:
    engine, q = request.app[ENGINE], request.query
    states = set(q["state"].split(",")) if "state" in q else None
    if states is not None and not states <= {s.value for s in AlarmState}:
        raise json_error(
            web.HTTPBadRequest,
            f"state={q['state']!r}: use {', '.join(s.value for s in AlarmState)}",
        )
    priority = q.get("priority")
    if priority is not None and priority not in ("1", "2", "3", "4"):
        raise json_error(web.HTTPBadRequest, f"priority={priority!r} must be 1, 2, 3 or 4")
    enterprise = enterprise_param(request)
    start, end = _time(q.get("from"), "from"), _time(q.get("to"), "to")
    if start is not None and end is not None and start >= end:
        raise json_error(web.HTTPBadRequest, "from must be before to")
    out = []
    for alarm_id, (point, _cond) in sorted(engine.keys.items()):
        a = engine.alarms[(point, _cond)]
        if not _visible(request, point):
            continue
        info = _info(request, point)
        if enterprise is not None and info["enterprise"] != enterprise:
            continue
        if states is None and a.state is AlarmState.NORMAL:
            continue  # by default the board: every alarm that is not normal
        if states is not None and a.state.value not in states:
            continue
        if priority is not None and int(a.priority) != int(priority):
            continue
        raised = a.raised_at_ns or 0
        if (start is not None and raised < start) or (end is not None and raised >= end):
            continue
        out.append(engine.view(alarm_id, info))
    out.sort(key=lambda v: (v["priority"], v["raised_at"] or ""))
    return _json({"alarms": out})


async def escalations(request: web.Request) -> web.Response:
    """The latest escalation notice of each alarm still unacknowledged after it (as the topic
    `notifications` sent it): a console that signs in later shows those for its role."""
    notes = [n.as_dict() for n in request.app[ENGINE].escalations() if _visible(request, n.point)]
    return _json({"notifications": sorted(notes, key=lambda n: n["ts"])})


async def get_alarm(request: web.Request) -> web.Response:
    alarm_id = _alarm_id(request)
    engine = request.app[ENGINE]
    point = engine.keys[alarm_id][0]
    rows = await engine.pool.fetch(
        "SELECT point, condition, kind, from_state, to_state, ts, value, priority, who, why,"
        " detail FROM alarm_events WHERE alarm = $1 ORDER BY id DESC LIMIT $2",
        alarm_id, MAX_EVENTS,
    )  # fmt: skip
    events = [
        {
            "kind": r["kind"], "from": r["from_state"], "to": r["to_state"],
            "ts": r["ts"].isoformat(timespec="milliseconds"), "value": r["value"],
            "priority": r["priority"], "who": r["who"], "why": r["why"],
            "detail": json.loads(r["detail"]),
        }
        for r in rows
    ]  # fmt: skip
    return _json({**engine.view(alarm_id, _info(request, point)), "events": events})


def _operation(
    build: Callable[
        [web.Request, str], Callable[[sm.Alarm, int], tuple[sm.Alarm, list[AlarmEvent]]]
    ],
) -> Callable[[web.Request], Any]:
    async def handler(request: web.Request) -> web.Response:
        alarm_id = _alarm_id(request)
        who = _principal(request).username
        engine = request.app[ENGINE]
        try:
            (alarm,) = await engine.operate([alarm_id], build(request, who))
        except sm.AlarmOperationError as exc:
            raise json_error(web.HTTPConflict, str(exc)) from None
        point = alarm.point
        return _json(engine.view(alarm_id, _info(request, point)))

    return handler


def _ack(request: web.Request, who: str) -> Callable[[sm.Alarm, int], Any]:
    body = request[BODY]
    assert isinstance(body, AckBody)
    return lambda a, now: sm.acknowledge(a, who, body.comment or None, now)


def _shelve(request: web.Request, who: str) -> Callable[[sm.Alarm, int], Any]:
    body = request[BODY]
    assert isinstance(body, ShelveBody)
    if (body.duration_s is None) == (not body.one_shot):
        raise json_error(web.HTTPBadRequest, "give duration_s, or one_shot: true (not both)")
    engine = request.app[ENGINE]
    longest = engine.settings.max_shelve_s
    if body.duration_s is not None and body.duration_s > longest:
        raise json_error(
            web.HTTPBadRequest, f"duration_s: at most {longest:g} s, not {body.duration_s:g}"
        )
    return lambda a, now: sm.shelve(
        a, who, body.reason, now, duration_s=body.duration_s, one_shot=body.one_shot,
        max_s=longest,
    )  # fmt: skip


def _unshelve(request: web.Request, who: str) -> Callable[[sm.Alarm, int], Any]:
    return lambda a, now: sm.unshelve(a, who, now)


def _remove(request: web.Request, who: str) -> Callable[[sm.Alarm, int], Any]:
    body = request[BODY]
    assert isinstance(body, ReasonBody)
    return lambda a, now: sm.remove_from_service(a, who, body.reason, now)


def _restore(request: web.Request, who: str) -> Callable[[sm.Alarm, int], Any]:
    return lambda a, now: sm.return_to_service(a, who, now)


async def bulk_ack(request: web.Request) -> web.Response:
    body = request[BODY]
    assert isinstance(body, BulkAckBody)
    engine = request.app[ENGINE]
    for raw in body.ids:
        if raw not in engine.keys or not _visible(request, engine.keys[raw][0]):
            raise json_error(web.HTTPNotFound, f"no alarm {raw}")
    who = _principal(request).username
    comment = body.comment or None

    def ack(a: sm.Alarm, now: int) -> tuple[sm.Alarm, list[AlarmEvent]]:
        # In a bulk acknowledgement an alarm that has gone normal meanwhile is skipped.
        return (a, []) if a.state is AlarmState.NORMAL else sm.acknowledge(a, who, comment, now)

    try:
        alarms = await engine.operate(body.ids, ack)
    except sm.AlarmOperationError as exc:
        raise json_error(web.HTTPConflict, str(exc)) from None
    return _json({"acknowledged": len(alarms)})


async def alarm_kpi(request: web.Request) -> web.Response:
    engine, points, q = request.app[ENGINE], request.app[POINTS], request.query
    to, since = _time(q.get("to"), "to"), _time(q.get("from"), "from")
    end = engine.clock() if to is None else to
    start = end - 24 * 3600 * 10**9 if since is None else since
    if start >= end:
        raise json_error(web.HTTPBadRequest, "from must be before to")
    longest = MAX_KPI_PERIOD // timedelta(microseconds=1) * 1000
    if end - start > longest:
        raise json_error(
            web.HTTPBadRequest,
            f"from/to: a period of at most {MAX_KPI_PERIOD.days} days, "
            f"not {(end - start) / 86_400e9:.1f} days",
        )
    area = enterprise_param(request, "area")
    lookback = start - 600 * 10**9  # floods under way at the start are carried in
    rows = await engine.pool.fetch(
        "SELECT ts, point, condition, priority, kind FROM alarm_events"
        " WHERE (ts >= $1 AND ts < $2) OR (kind = 'raised' AND alarm IN"
        "  (SELECT id FROM alarms WHERE active)) ORDER BY ts",
        datetime.fromtimestamp(lookback / 1e9, UTC), datetime.fromtimestamp(end / 1e9, UTC),
    )  # fmt: skip
    area_of = {p.id: p.enterprise for p in points}
    if area is not None:
        rows = [r for r in rows if area_of.get(r["point"]) == area]
    events = EventColumns.of(
        np.array([int(r["ts"].timestamp() * 1e9) for r in rows], np.int64),
        np.array([r["point"] for r in rows], np.int64),
        np.array([r["condition"] for r in rows], np.int64),
        np.array([r["priority"] for r in rows], np.int64),
        [r["kind"] for r in rows],
    )
    report = kpis(events, start, end, area_of)
    # The alarm class of each listed alarm: the console names a gas detector's H and HH by
    # GB/T 50493 (一级/二级报警), other points' by their limit.
    rules = engine.rules
    for m in (report["overall"], *report["areas"].values()):
        for row in (*m["bad_actors"]["top"], *m["chattering"], *m["stale"]):
            point, condition = row["point"], Condition[row["condition"]]
            row["class"] = rules.class_of(point, condition).value if point < rules.size else None
    return _json(report)


def _rule_view(book: RuleBook, points: PointIndex, point: int) -> dict[str, Any]:
    info = points.info(point)
    stored = book.overrides.get(point)
    return {
        "enterprise": info.enterprise,
        "code": info.code,
        **book.rules[point].model_dump(mode="json"),
        # Where the rule comes from: the configuration file, or an override set over the API.
        "source": "config" if stored is None else "api",
        "set_by": None if stored is None else stored.by,
        "set_at": None if stored is None else stored.at.isoformat(timespec="seconds"),
    }


async def alarm_rules(request: web.Request) -> web.Response:
    """The rule in force for each point (its limits, deadbands, delays, priorities…)."""
    enterprise = enterprise_param(request)
    book, points = request.app[RULES], request.app[POINTS]
    out = [
        _rule_view(book, points, point)
        for point in sorted(book.rules)
        if _visible(request, point)
        and (enterprise is None or points.info(point).enterprise == enterprise)
    ]
    return _json({"rules": out})


def _rule_point(request: web.Request) -> int:
    raw = request.match_info["point"]
    point = parse_id(raw, INT4_MAX)
    if point is not None and point in request.app[RULES].rules and _visible(request, point):
        return point
    raise json_error(web.HTTPNotFound, f"no point {raw!r} with an alarm rule")


async def _set_rule(request: web.Request, override: RuleOverride | None) -> web.Response:
    point = _rule_point(request)
    book = request.app[RULES]
    if point not in book.points:
        info = request.app[POINTS].info(point)
        raise json_error(
            web.HTTPBadRequest,
            f"the alarm rule of {info.enterprise}/{info.code} follows from other rules (a "
            "device's link point, a camera's health point): it is not set over the API",
        )
    try:
        await book.set(point, override, _principal(request).username)
    except RuleError as exc:
        raise json_error(
            web.HTTPBadRequest, "; ".join(exc.problems), problems=exc.problems
        ) from None
    return _json(_rule_view(book, request.app[POINTS], point))


async def put_rule(request: web.Request) -> web.Response:
    body = request[BODY]
    assert isinstance(body, RuleOverride)
    return await _set_rule(request, body)


async def delete_rule(request: web.Request) -> web.Response:
    return await _set_rule(request, None)


ALARM_ROUTES = [
    Route(
        "GET", "/api/alarms", list_alarms, Permission.MONITOR_READ,
        "Alarms: by default every alarm that is not normal, by priority then time",
        query={"state": "comma-separated states", "priority": "1..4",
               "enterprise": "enterprise code",
               "from": "raised at or after (RFC 3339 or epoch ms)",
               "to": "raised before (RFC 3339 or epoch ms)"},
    ),
    Route("GET", "/api/alarms/kpi", alarm_kpi, Permission.MONITOR_READ,
          "Alarm KPIs (ISA-18.2 / EEMUA 191) over a period",
          query={"from": "RFC 3339 or epoch ms (default: to - 24 h; at most "
                         f"{MAX_KPI_PERIOD.days} days before to)",
                 "to": "RFC 3339 or epoch ms (default: now)",
                 "area": "enterprise code"}),
    Route("GET", "/api/alarms/rules", alarm_rules, Permission.MONITOR_READ,
          "The alarm rule in force for each point", query={"enterprise": "enterprise code"}),
    Route("PUT", "/api/alarms/rules/{point}", put_rule, Permission.ALARM_RULES,
          "Set a point's alarm rule (its override, as in the configuration file's "
          "[alarms.points]); in force at once, kept across restarts", body=RuleOverride),
    Route("DELETE", "/api/alarms/rules/{point}", delete_rule, Permission.ALARM_RULES,
          "Revert a point's alarm rule to the configuration file's"),
    Route("GET", "/api/alarms/escalations", escalations, Permission.ALARM_OPERATE,
          "The escalation notices of alarms still unacknowledged (topic notifications' latest)"),
    Route("GET", "/api/alarms/{id}", get_alarm, Permission.MONITOR_READ,
          "An alarm with its event history"),
    Route("POST", "/api/alarms/ack", bulk_ack, Permission.ALARM_OPERATE,
          "Acknowledge several alarms", body=BulkAckBody),
    Route("POST", "/api/alarms/{id}/ack", _operation(_ack), Permission.ALARM_OPERATE,
          "Acknowledge (确认) an alarm", body=AckBody),
    Route("POST", "/api/alarms/{id}/shelve", _operation(_shelve), Permission.ALARM_OPERATE,
          "Shelve (搁置) an alarm for a time, or until it next clears", body=ShelveBody),
    Route("POST", "/api/alarms/{id}/unshelve", _operation(_unshelve), Permission.ALARM_OPERATE,
          "Unshelve an alarm"),
    Route("POST", "/api/alarms/{id}/remove", _operation(_remove), Permission.ALARM_OPERATE,
          "Remove an alarm from service (停用)", body=ReasonBody),
    Route("POST", "/api/alarms/{id}/restore", _operation(_restore), Permission.ALARM_OPERATE,
          "Return an alarm to service"),
    # Hazard sources' operating states drive suppression by design (web.app takes one table).
    *SOURCE_ROUTES,
]  # fmt: skip

__all__ = ["ALARM_ROUTES", "ENGINE", "NOTIFICATIONS", "POINTS", "RULES", "Condition", "event_view"]
