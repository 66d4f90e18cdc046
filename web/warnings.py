"""Early-warning routes (预警): the regulator's and the enterprise's views and each disposal step.

An enterprise user sees, signs, answers and clears only its own enterprise's warnings (others are
404); the centre reviews and closes. The pure lifecycle refuses steps out of order (409) and
steps by the wrong party (403).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from alarms import warnings as wm
from alarms.warning_desk import WarningDesk
from web.security import BODY, PRINCIPAL, Permission, Principal, Route, json_error

DESK = web.AppKey("warning_desk", WarningDesk)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CommentBody(_Body):
    comment: Annotated[str, Field(max_length=1000)] = ""


class FeedbackBody(_Body):
    reason: Annotated[
        str, Field(min_length=1, description="真实报警, 误报, 仪表故障, 检维修, 工艺波动")
    ]
    measures: Annotated[str, Field(min_length=1, max_length=2000)]


class ClearBody(_Body):
    reason: Annotated[str, Field(max_length=1000)] = ""


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, ensure_ascii=False))


def _principal(request: web.Request) -> Principal:
    principal: Principal = request[PRINCIPAL]
    return principal


def _warning(request: web.Request) -> wm.Warning:
    raw = request.match_info["id"]
    desk = request.app[DESK]
    w = desk.warnings.get(int(raw)) if raw.isdigit() else None
    if w is None or not _principal(request).sees(w.enterprise):
        raise json_error(web.HTTPNotFound, f"no warning {raw!r}")
    return w


async def list_warnings(request: web.Request) -> web.Response:
    desk = request.app[DESK]
    scope = _principal(request).enterprise
    enterprise = request.query.get("enterprise", scope)
    if scope is not None and enterprise != scope:
        raise json_error(web.HTTPNotFound, f"no enterprise {enterprise!r}")
    rows = [
        desk.view(w)
        for w in sorted(desk.warnings.values(), key=lambda w: (-w.level.rank, w.issued_at_ns))
        if enterprise is None or w.enterprise == enterprise
    ]
    return _json({"warnings": rows})


def _step(
    build: Callable[[web.Request, wm.Actor], Callable[[wm.Warning, int], wm.Warning]],
) -> Callable[[web.Request], Any]:
    async def handler(request: web.Request) -> web.Response:
        w = _warning(request)
        p = _principal(request)
        actor = wm.Actor(p.username, p.role.value, p.enterprise)
        desk = request.app[DESK]
        assert w.id is not None
        try:
            done = await desk.act(w.id, build(request, actor))
        except wm.WarningPermissionError as exc:
            raise json_error(web.HTTPForbidden, str(exc), code=exc.code) from None
        except wm.WarningTransitionError as exc:
            raise json_error(web.HTTPConflict, str(exc), code=exc.code) from None
        return _json(desk.view(done))

    return handler


def _sign(request: web.Request, actor: wm.Actor) -> Callable[[wm.Warning, int], wm.Warning]:
    body = request[BODY]
    assert isinstance(body, CommentBody)
    rules = request.app[DESK].rules
    return lambda w, now: wm.sign(w, actor, now, rules, body.comment)


def _feedback(request: web.Request, actor: wm.Actor) -> Callable[[wm.Warning, int], wm.Warning]:
    body = request[BODY]
    assert isinstance(body, FeedbackBody)
    rules = request.app[DESK].rules
    return lambda w, now: wm.submit_feedback(w, actor, now, rules, body.reason, body.measures)


def _clear(request: web.Request, actor: wm.Actor) -> Callable[[wm.Warning, int], wm.Warning]:
    body = request[BODY]
    assert isinstance(body, ClearBody)
    rules = request.app[DESK].rules
    return lambda w, now: wm.clear(w, actor, now, rules, body.reason)


def _review(request: web.Request, actor: wm.Actor) -> Callable[[wm.Warning, int], wm.Warning]:
    body = request[BODY]
    assert isinstance(body, CommentBody)
    rules = request.app[DESK].rules
    return lambda w, now: wm.review(w, actor, now, rules, body.comment)


def _close(request: web.Request, actor: wm.Actor) -> Callable[[wm.Warning, int], wm.Warning]:
    body = request[BODY]
    assert isinstance(body, CommentBody)
    rules = request.app[DESK].rules
    return lambda w, now: wm.close(w, actor, now, rules, body.comment)


WARNING_ROUTES = [
    Route("GET", "/api/warnings", list_warnings, Permission.MONITOR_READ,
          "Open early warnings (预警), highest level first",
          query={"enterprise": "enterprise code"}),
    Route("POST", "/api/warnings/{id}/sign", _step(_sign), Permission.WARNING_ANSWER,
          "签收: the enterprise signs for a warning", body=CommentBody),
    Route("POST", "/api/warnings/{id}/feedback", _step(_feedback), Permission.WARNING_ANSWER,
          "核实/处置: the enterprise's reason code and measures", body=FeedbackBody),
    Route("POST", "/api/warnings/{id}/clear", _step(_clear), Permission.WARNING_ANSWER,
          "消警 by the enterprise once the condition has ended", body=ClearBody),
    Route("POST", "/api/warnings/{id}/regulator-clear", _step(_clear), Permission.WARNING_REVIEW,
          "消警 by the regulator, with a reason", body=ClearBody),
    Route("POST", "/api/warnings/{id}/review", _step(_review), Permission.WARNING_REVIEW,
          "审核/现场核查 by the regulator", body=CommentBody),
    Route("POST", "/api/warnings/{id}/close", _step(_close), Permission.WARNING_REVIEW,
          "Close a reviewed warning", body=CommentBody),
]  # fmt: skip
