"""Enterprise report routes: special-work permits (特殊作业) and the daily safety commitment
(安全承诺), inputs of the early-warning model.

An enterprise user reports and reads only its own enterprise's (another's is 404); the centre
reads all. Each change updates the cache the warning desk reads and has it evaluate at once.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated, Any

from aiohttp import web
from pydantic import Field

from alarms.reports import ReportConflict, ReportError, ReportNotFound, Reports
from alarms.warning_rules import WarningLevel
from web.inputs import INT8_MAX, Body, Instant, enterprise_param, parse_id
from web.security import BODY, PRINCIPAL, Permission, Principal, Route, json_error
from web.warnings import DESK

REPORTS = web.AppKey("reports", Reports)

Text = Annotated[str, Field(min_length=1, max_length=200)]
Count = Annotated[int, Field(ge=0, le=100_000)]


class SpecialWorkBody(Body):
    source: Annotated[Text, Field(description="the hazard source (重大危险源) code")]
    type: Annotated[str, Field(description="a special work type code (warning rules)")]
    permit_no: Annotated[Text, Field(description="作业证编号")]
    started_at: Instant
    planned_end: Instant
    location: Text
    supervisor: Annotated[Text, Field(description="监护人")]


class EndBody(Body):
    note: Annotated[str, Field(max_length=1000)] = ""


class CommitmentBody(Body):
    date: date
    risk_level: Annotated[
        WarningLevel, Field(description="red/orange/yellow/blue = 重大/较大/一般/较低风险")
    ]
    production_state: Annotated[str, Field(description="normal, startup, shutdown, maintenance")]
    units_running: Count
    units_stopped: Count
    units_maintenance: Count
    special_work: Annotated[
        dict[str, Count],
        Field(default_factory=dict, description="special work type → permits planned today"),
    ]
    hot_work_grade1: Annotated[Count, Field(description="一级动火")] = 0
    hot_work_special: Annotated[Count, Field(description="特级动火")] = 0
    sources_safe: Annotated[
        dict[str, bool], Field(description="each hazard source → in a safe state")
    ]
    note: Annotated[str, Field(max_length=2000)] = ""
    signed_by: Annotated[Text, Field(description="the main responsible person (主要负责人)")]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, ensure_ascii=False))


def _principal(request: web.Request) -> Principal:
    principal: Principal = request[PRINCIPAL]
    return principal


def _reporter(request: web.Request) -> tuple[str, str]:
    """(enterprise, username) of the enterprise user reporting."""
    p = _principal(request)
    if p.enterprise is None:
        raise json_error(
            web.HTTPForbidden, "only an enterprise's own users report for it", code="forbidden"
        )
    return p.enterprise, p.username


def _refused(exc: ReportError) -> web.HTTPException:
    kind: type[web.HTTPException] = web.HTTPBadRequest
    if isinstance(exc, ReportNotFound):
        kind = web.HTTPNotFound
    elif isinstance(exc, ReportConflict):
        kind = web.HTTPConflict
    return json_error(kind, str(exc))


def _changed(request: web.Request) -> None:
    request.app[DESK].poke()


async def report_work(request: web.Request) -> web.Response:
    enterprise, by = _reporter(request)
    body = request[BODY]
    assert isinstance(body, SpecialWorkBody)
    try:
        work = await request.app[REPORTS].report_work(
            enterprise, by, hazard_source=body.source, work_type=body.type,
            permit_no=body.permit_no, started_at=body.started_at, planned_end=body.planned_end,
            location=body.location, supervisor=body.supervisor,
        )  # fmt: skip
    except ReportError as exc:
        raise _refused(exc) from None
    _changed(request)
    return _json(work.view(request.app[REPORTS].now()), status=201)


async def end_work(request: web.Request) -> web.Response:
    enterprise, by = _reporter(request)
    raw = request.match_info["id"]
    body = request[BODY]
    assert isinstance(body, EndBody)
    reports = request.app[REPORTS]
    try:
        work_id = parse_id(raw, INT8_MAX)
        if work_id is None:
            raise ReportNotFound(f"no special work {raw!r}")
        work = await reports.end_work(work_id, enterprise, by, body.note)
    except ReportError as exc:
        raise _refused(exc) from None
    _changed(request)
    return _json(work.view(reports.now()))


async def list_works(request: web.Request) -> web.Response:
    active = request.query.get("active")
    if active not in (None, "", "true", "false"):
        raise json_error(web.HTTPBadRequest, f"active: true or false, not {active!r}")
    reports = request.app[REPORTS]
    works = await reports.works(
        enterprise_param(request),
        request.query.get("source") or None,
        None if not active else active == "true",
    )
    now = reports.now()
    return _json({"special_work": [w.view(now) for w in works]})


async def submit_commitment(request: web.Request) -> web.Response:
    enterprise, by = _reporter(request)
    body = request[BODY]
    assert isinstance(body, CommitmentBody)
    fields = body.model_dump(exclude={"date"})
    try:
        c = await request.app[REPORTS].submit_commitment(enterprise, by, day=body.date, **fields)
    except ReportError as exc:
        raise _refused(exc) from None
    _changed(request)
    return _json(c.view(), status=201)


async def list_commitments(request: web.Request) -> web.Response:
    reports = request.app[REPORTS]
    raw = request.query.get("date")
    try:
        day = date.fromisoformat(raw) if raw else reports.today()
    except ValueError:
        raise json_error(web.HTTPBadRequest, f"date: YYYY-MM-DD, not {raw!r}") from None
    enterprise = enterprise_param(request)
    days = await reports.commitments(day, enterprise)
    submitted = {revisions[0].enterprise for revisions in days}
    deadline = reports.deadline(day)
    rules = request.app[DESK].rules
    return _json(
        {
            "date": day.isoformat(),
            "deadline": deadline.isoformat() if deadline else None,
            # The codes a commitment and a special work report use, named for the console's form.
            "special_work_types": [w.model_dump() for w in rules.special_work_types],
            "production_states": [s.model_dump() for s in rules.production_states],
            "commitments": [
                {**revisions[0].view(), "previous": [c.view() for c in revisions[1:]]}
                for revisions in days
            ],
            # The enterprises asked for a commitment (those with hazard sources) without one.
            "missing": sorted(
                e
                for e in reports.sources
                if e not in submitted and (enterprise is None or e == enterprise)
            ),
        }
    )


REPORT_ROUTES = [
    Route("POST", "/api/special-work", report_work, Permission.WARNING_ANSWER,
          "Report special work (特殊作业) on a hazard source: on-going until ended",
          body=SpecialWorkBody),
    Route("POST", "/api/special-work/{id}/end", end_work, Permission.WARNING_ANSWER,
          "End a reported special work", body=EndBody),
    Route("GET", "/api/special-work", list_works, Permission.MONITOR_READ,
          "Reported special work, latest start first",
          query={"enterprise": "enterprise code", "source": "hazard source code",
                 "active": "true: on-going now; false: ended or not yet started"}),
    Route("POST", "/api/commitments", submit_commitment, Permission.WARNING_ANSWER,
          "Submit today's safety commitment (安全承诺); a resubmission replaces it",
          body=CommitmentBody),
    Route("GET", "/api/commitments", list_commitments, Permission.MONITOR_READ,
          "The safety commitments of a day, the enterprises still missing one, and the special "
          "work types and production states (codes with their names) a report may use",
          query={"date": "YYYY-MM-DD (default: today, local)", "enterprise": "enterprise code"}),
]  # fmt: skip
