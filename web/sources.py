"""Hazard sources' operating states (运行 / 开停车 / 检维修 / 停用) and their routes.

The centre or the enterprise (its own sources only) sets the state; maintenance and stopped
suppress the source's alarms by design in the alarm engine (which classes: `[alarms.suppression]`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg  # type: ignore[import-untyped]
from aiohttp import web
from pydantic import Field

from alarms.engine import AlarmEngine
from alarms.rules import SourceState, SuppressionSettings
from streams.config import Config
from streams.fanout import Fanout
from streams.registry import PointIndex
from web.inputs import Body, Instant, enterprise_param
from web.security import BODY, PRINCIPAL, Permission, Principal, Route, json_error
from web.warnings import DESK

_ZH = {
    SourceState.RUNNING: "运行",
    SourceState.STARTUP_SHUTDOWN: "开停车",
    SourceState.MAINTENANCE: "检维修",
    SourceState.STOPPED: "停用",
}


@dataclass(frozen=True, slots=True)
class SourceStatus:
    """The operating state of one hazard source; a source never set is running."""

    enterprise: str
    source: str
    state: SourceState = SourceState.RUNNING
    since: datetime | None = None
    reason: str = ""
    set_by: str | None = None
    planned_end: datetime | None = None

    def view(self) -> dict[str, Any]:
        """`overdue`: a planned end has passed."""
        now = datetime.now(UTC)
        return {
            "enterprise": self.enterprise,
            "source": self.source,
            "state": self.state.value,
            "state_zh": _ZH[self.state],
            "since": None if self.since is None else self.since.isoformat(timespec="seconds"),
            "reason": self.reason,
            "set_by": self.set_by,
            "planned_end": None
            if self.planned_end is None
            else self.planned_end.isoformat(timespec="seconds"),
            "overdue": self.planned_end is not None and self.planned_end <= now,
        }


def suppression_key(enterprise: str, source: str, state: SourceState) -> str:
    return f"source:{enterprise}/{source}:{state.value}"


class SourceStates:
    """The operating states of the configured hazard sources, stored in `source_states`, and
    the suppression by design they cause in the alarm engine."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        engine: AlarmEngine,
        cfg: Config,
        points: PointIndex,
        settings: SuppressionSettings,
    ) -> None:
        self.pool, self.engine, self.settings = pool, engine, settings
        self.names = {(e.code, h.code): h.name for e in cfg.enterprises for h in e.hazard_sources}
        self.points: dict[tuple[str, str], list[int]] = {k: [] for k in self.names}
        for p in points:
            if p.hazard_source is not None:
                self.points.setdefault((p.enterprise, p.hazard_source), []).append(p.id)
        self.states: dict[tuple[str, str], SourceStatus] = {}
        self.events = Fanout()  # WebSocket topic `sources`: each change, as `view` gives it
        self._lock = asyncio.Lock()  # one change at a time: set the new cause, lift the old

    async def restore(self) -> int:
        """Load the stored states and make the engine's suppressions agree with them (also
        when the configuration moved points or changed `[alarms.suppression]` meanwhile)."""
        rows = await self.pool.fetch(
            "SELECT enterprise, source, state, since, reason, set_by, planned_end"
            " FROM source_states"
        )
        for r in rows:
            which = (r["enterprise"], r["source"])
            if which in self.names:
                self.states[which] = SourceStatus(
                    *which, SourceState(r["state"]), r["since"], r["reason"], r["set_by"],
                    r["planned_end"],
                )  # fmt: skip
        for status in self.states.values():
            await self._suppress(status)
        wanted = {
            suppression_key(s.enterprise, s.source, s.state)
            for s in self.states.values()
            if self.settings.classes(s.state)
        }
        for key in [k for k in self.engine.suppressions if k.startswith("source:")]:
            if key not in wanted:
                await self.engine.set_design_suppression(
                    key, (), False, "the source's state no longer suppresses", "system"
                )
        return len(self.states)

    def get(self, enterprise: str, source: str) -> SourceStatus:
        return self.states.get((enterprise, source)) or SourceStatus(enterprise, source)

    async def set(
        self,
        enterprise: str,
        source: str,
        state: SourceState,
        reason: str,
        by: str,
        planned_end: datetime | None = None,
    ) -> SourceStatus:
        """Record the new state, then move the suppression: the new one is set before the old
        one is lifted, so alarms suppressed by both see no transition. One change at a time."""
        async with self._lock:
            old = self.get(enterprise, source)
            since = await self.pool.fetchval(
                "INSERT INTO source_states (enterprise, source, state, since, reason, set_by,"
                " planned_end) VALUES ($1, $2, $3, now(), $4, $5, $6)"
                " ON CONFLICT (enterprise, source) DO UPDATE"
                " SET state = excluded.state, reason = excluded.reason,"
                " set_by = excluded.set_by, planned_end = excluded.planned_end,"
                # The same state again (a new reason): it has lasted since it was first set.
                " since = CASE WHEN source_states.state = excluded.state"
                " THEN source_states.since ELSE excluded.since END RETURNING since",
                enterprise, source, state.value, reason, by, planned_end,
            )  # fmt: skip
            new = SourceStatus(enterprise, source, state, since, reason, by, planned_end)
            self.states[(enterprise, source)] = new
            await self._suppress(new)
            if old.state is not state:
                await self.engine.set_design_suppression(
                    suppression_key(enterprise, source, old.state), (), False, reason, by
                )
            self.events.publish([self.view(new)])
            return new

    def view(self, status: SourceStatus) -> dict[str, Any]:
        return {**status.view(), "name": self.names[(status.enterprise, status.source)]}

    async def _suppress(self, s: SourceStatus) -> None:
        classes = self.settings.classes(s.state)
        if not classes:
            return
        name = self.names.get((s.enterprise, s.source), s.source)
        await self.engine.set_design_suppression(
            suppression_key(s.enterprise, s.source, s.state),
            self.points.get((s.enterprise, s.source), []),
            True,
            f"{name} {_ZH[s.state]} ({s.state.value}): {s.reason}",
            s.set_by or "system",
            classes=classes,
        )

    def visible(self, principal: Principal) -> Iterable[tuple[str, str]]:
        return (k for k in self.names if principal.sees(k[0]))


SOURCES = web.AppKey("source_states", SourceStates)


class StateBody(Body):
    state: SourceState
    reason: Annotated[str, Field(min_length=1, max_length=500, pattern=r"\S")]
    planned_end: Annotated[
        Instant | None,
        Field(description="计划结束时间 of a state other than running; past it, it is overdue"),
    ] = None


def _json(data: Any) -> web.Response:
    return web.json_response(data, dumps=lambda d: json.dumps(d, ensure_ascii=False))


def _source(request: web.Request) -> tuple[str, str]:
    """(enterprise, source) of the path's {code}; 404 when unknown or another enterprise's, 400
    when the code is used by several enterprises and ?enterprise= does not say which."""
    sources = request.app[SOURCES]
    principal: Principal = request[PRINCIPAL]
    code = request.match_info["code"]
    wanted = request.query.get("enterprise")
    found = [
        k for k in sources.visible(principal) if k[1] == code and (wanted is None or k[0] == wanted)
    ]
    if not found:
        raise json_error(web.HTTPNotFound, f"no hazard source {code!r}")
    if len(found) > 1:
        raise json_error(
            web.HTTPBadRequest,
            f"hazard source code {code!r} is used by enterprises "
            f"{', '.join(sorted(e for e, _ in found))}: add ?enterprise=",
        )
    return found[0]


async def list_sources(request: web.Request) -> web.Response:
    sources = request.app[SOURCES]
    enterprise = enterprise_param(request)
    out = [
        sources.view(sources.get(*k))
        for k in sorted(sources.visible(request[PRINCIPAL]))
        if enterprise is None or k[0] == enterprise
    ]
    return _json({"sources": out})


async def get_state(request: web.Request) -> web.Response:
    sources = request.app[SOURCES]
    return _json(sources.view(sources.get(*_source(request))))


async def set_state(request: web.Request) -> web.Response:
    enterprise, source = _source(request)
    body = request[BODY]
    assert isinstance(body, StateBody)
    principal: Principal = request[PRINCIPAL]
    end = body.planned_end
    if end is not None and body.state is SourceState.RUNNING:
        raise json_error(web.HTTPBadRequest, "running has no planned end", field="planned_end")
    if end is not None and end <= datetime.now(UTC):
        raise json_error(
            web.HTTPBadRequest, f"planned end {end.isoformat()} is not in the future",
            field="planned_end",
        )  # fmt: skip
    status = await request.app[SOURCES].set(
        enterprise, source, body.state, body.reason.strip(), principal.username, body.planned_end
    )
    request.app[DESK].poke()  # the state is an input of the early warnings: evaluate now
    return _json(request.app[SOURCES].view(status))


_WHICH = {"enterprise": "enterprise code (needed only when the code is not unique)"}
SOURCE_ROUTES = [
    Route("GET", "/api/sources", list_sources, Permission.MONITOR_READ,
          "Hazard sources (重大危险源) with their operating states",
          query={"enterprise": "enterprise code"}),
    Route("GET", "/api/sources/{code}/state", get_state, Permission.MONITOR_READ,
          "A hazard source's operating state", query=_WHICH),
    Route("POST", "/api/sources/{code}/state", set_state, Permission.SOURCE_STATE,
          "Set a hazard source's operating state (运行/开停车/检维修/停用); maintenance and "
          "stopped suppress its alarms by design", body=StateBody, query=_WHICH),
]  # fmt: skip
