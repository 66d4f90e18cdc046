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
from pydantic import Field

from alarms import warnings as wm
from alarms.warning_desk import WarningDesk
from alarms.warning_rules import WarningRules
from web.inputs import INT8_MAX, Body, enterprise_param, parse_id
from web.security import BODY, PRINCIPAL, Permission, Principal, Route, json_error

DESK = web.AppKey("warning_desk", WarningDesk)


class CommentBody(Body):
    comment: Annotated[str, Field(max_length=1000)] = ""


class FeedbackBody(Body):
    reason: Annotated[
        str, Field(min_length=1, description="真实报警, 误报, 仪表故障, 检维修, 工艺波动")
    ]
    measures: Annotated[str, Field(min_length=1, max_length=2000)]


class ClearBody(Body):
    reason: Annotated[str, Field(max_length=1000)] = ""


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, ensure_ascii=False))


def _principal(request: web.Request) -> Principal:
    principal: Principal = request[PRINCIPAL]
    return principal


async def _warning(request: web.Request, closed: bool = False) -> wm.Warning:
    """The {id} of the path: an open warning, or with `closed` a closed one too (from the
    database: the desk keeps only open ones); 404 when there is none or it is another
    enterprise's."""
    raw = request.match_info["id"]
    desk = request.app[DESK]
    warning_id = parse_id(raw, INT8_MAX)
    w = None
    if warning_id is not None:
        w = await desk.record(warning_id) if closed else desk.warnings.get(warning_id)
    if w is None or not _principal(request).sees(w.enterprise):
        raise json_error(web.HTTPNotFound, f"no warning {raw!r}")
    return w


async def list_warnings(request: web.Request) -> web.Response:
    desk = request.app[DESK]
    enterprise = enterprise_param(request)
    rows = [
        desk.view(w)
        for w in sorted(desk.warnings.values(), key=lambda w: (-w.level.rank, w.issued_at_ns))
        if enterprise is None or w.enterprise == enterprise
    ]
    # The reason codes, regulator levels and deadlines, for the console to name and count down.
    lifecycle = desk.rules.lifecycle.model_dump(mode="json")
    return _json({"warnings": rows, "lifecycle": lifecycle})


async def get_warning(request: web.Request) -> web.Response:
    """One warning, open or closed, and what holds at its source now (`now`): its evidence is a
    record of the time of issue."""
    desk = request.app[DESK]
    w = await _warning(request, closed=True)
    return _json({**desk.view(w), "now": desk.now(w)})


# One disposal step: (warning, actor, now, rules, validated body) → the warning after it.
Step = Callable[[wm.Warning, wm.Actor, int, WarningRules, Any], wm.Warning]


def _step(apply: Step) -> Callable[[web.Request], Any]:
    async def handler(request: web.Request) -> web.Response:
        w = await _warning(request)
        p = _principal(request)
        actor = wm.Actor(p.username, p.role.value, p.enterprise)
        desk, body = request.app[DESK], request[BODY]
        assert w.id is not None
        try:
            done = await desk.act(w.id, lambda x, now: apply(x, actor, now, desk.rules, body))
        except wm.WarningPermissionError as exc:
            raise json_error(web.HTTPForbidden, str(exc), code=exc.code) from None
        except wm.WarningInputRefused as exc:
            raise json_error(web.HTTPBadRequest, str(exc), code=exc.code) from None
        except wm.WarningTransitionError as exc:
            raise json_error(web.HTTPConflict, str(exc), code=exc.code) from None
        return _json(desk.view(done))

    return handler


_sign = _step(lambda w, a, now, rules, b: wm.sign(w, a, now, rules, b.comment))
_feedback = _step(
    lambda w, a, now, rules, b: wm.submit_feedback(w, a, now, rules, b.reason, b.measures)
)
_clear = _step(lambda w, a, now, rules, b: wm.clear(w, a, now, rules, b.reason))
_review = _step(lambda w, a, now, rules, b: wm.review(w, a, now, rules, b.comment))
_close = _step(lambda w, a, now, rules, b: wm.close(w, a, now, rules, b.comment))

WARNING_ROUTES = [
    Route("GET", "/api/warnings", list_warnings, Permission.MONITOR_READ,
          "Open early warnings (预警), highest level first",
          query={"enterprise": "enterprise code"}),
    Route("GET", "/api/warnings/{id}", get_warning, Permission.MONITOR_READ,
          "One warning, open or closed, with what holds at its hazard source now (`now`: the "
          "latest evaluation's finding there, or null)"),
    Route("POST", "/api/warnings/{id}/sign", _sign, Permission.WARNING_ANSWER,
          "签收: the enterprise signs for a warning", body=CommentBody),
    Route("POST", "/api/warnings/{id}/feedback", _feedback, Permission.WARNING_ANSWER,
          "核实/处置: the enterprise's reason code and measures", body=FeedbackBody),
    Route("POST", "/api/warnings/{id}/clear", _clear, Permission.WARNING_ANSWER,
          "消警 by the enterprise once the condition has ended", body=ClearBody),
    Route("POST", "/api/warnings/{id}/regulator-clear", _clear, Permission.WARNING_REVIEW,
          "消警 by the regulator, with a reason", body=ClearBody),
    Route("POST", "/api/warnings/{id}/review", _review, Permission.WARNING_REVIEW,
          "审核/现场核查 by the regulator", body=CommentBody),
    Route("POST", "/api/warnings/{id}/close", _close, Permission.WARNING_REVIEW,
          "Close a reviewed warning", body=CommentBody),
]  # fmt: skip
