"""The daily safety commitment (安全承诺) end to end on the real application and database, with an
injected clock: past the deadline hour without one a blue warning is issued; submitting it ends
the condition; a resubmission is the next revision; the committed production state with special
work on a grade-1 source gives the yellow warning."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from alarms import warnings as wm
from alarms.reports import (
    PRODUCTION_STATE,
    commitment_deadline,
    commitment_rule,
    commitment_submitted,
)
from alarms.rules import SourceState
from alarms.warning_rules import load_warning_rules
from anjian.runtime import submit_demo_commitments
from tests.conftest import DUTY, ENTERPRISE
from tests.test_special_work import App, permit, running_app, until

RULE = commitment_rule(load_warning_rules())
assert RULE is not None
LOCAL = ZoneInfo(RULE.timezone)
S = 1_000_000_000


@pytest.fixture
async def app(database_url: str, tmp_path: Path) -> AsyncIterator[App]:
    async with running_app(database_url, tmp_path) as running:
        yield running


def at(day: date, hour: int, minute: int = 0, second: int = 0) -> int:
    return int(
        datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=LOCAL).timestamp() * S
    )


def commitment(day: date, **change: Any) -> dict[str, Any]:
    body = {
        "date": day.isoformat(),
        "risk_level": "blue",
        "production_state": "normal",
        "units_running": 3,
        "units_stopped": 0,
        "units_maintenance": 1,
        "special_work": {"hot_work": 1, "lifting": 2},
        "hot_work_grade1": 1,
        "sources_safe": {"HS1": True, "HS2": True},
        "note": "各装置运行平稳",
        "signed_by": "王总",
    }
    return body | change


def test_the_deadline_is_the_rules_hour_local_time_and_a_commitment_is_missing_only_after_it() -> (
    None
):
    assert (RULE.deadline_hour, RULE.timezone) == (9, "Asia/Shanghai")
    assert "[D]" in RULE.source
    day = date(2026, 12, 1)
    assert commitment_deadline(day, RULE) == datetime(2026, 12, 1, 1, tzinfo=UTC)
    assert commitment_submitted(False, at(day, 8, 59, 59), RULE) is None
    assert commitment_submitted(False, at(day, 9), RULE) is False
    assert commitment_submitted(True, at(day, 23), RULE) is True
    assert commitment_submitted(False, at(day, 23), None) is None  # no rule: not tracked


def _enterprise_warning(app: App) -> Any:
    """E9's enterprise-wide warning (the commitment is not about one hazard source)."""
    found = [
        w for w in app.run.warnings.warnings.values()
        if w.enterprise == "E9" and w.hazard_source is None
    ]  # fmt: skip
    assert len(found) <= 1
    return found[0] if found else None


async def test_missing_commitment_after_the_deadline_warns_blue_until_submitted(app: App) -> None:
    # Yesterday (local) at chosen hours: before real time, so the quality alarms of the never
    # reached device (raised in real time) have not lasted yet and add no warning.
    day = datetime.now(LOCAL).date() - timedelta(days=1)
    now = [at(day, 8, 59, 59)]
    app.run.warnings.clock = app.run.reports.clock = lambda: now[0]
    desk = app.run.warnings
    firm, centre = await app.signed_in(ENTERPRISE), await app.signed_in(DUTY)
    try:
        await desk.evaluate()
        (e9,) = [e for e in desk.inputs(now[0]).enterprises if e.code == "E9"]
        assert e9.commitment_submitted is None  # not yet due
        # (Started in real time, the desk may already have warned: then its condition ended.)
        assert _enterprise_warning(app) is None or not _enterprise_warning(app).condition_active
        listed = await (await centre.get("/api/commitments")).json()
        assert listed["date"] == day.isoformat()
        assert listed["deadline"] == f"{day.isoformat()}T09:00:00+08:00"
        assert (listed["commitments"], listed["missing"]) == ([], ["E8", "E9"])

        now[0] = at(day, 9, 0, 1)
        await desk.evaluate()
        w = _enterprise_warning(app)
        assert (w.level.value, w.rule, w.condition_active) == (
            "blue",
            "blue.missing_commitment",
            True,
        )
        assert [e.zh for e in w.evidence] == ["未提交今日安全承诺"]

        r = await firm.post("/api/commitments", json=commitment(day))
        assert r.status == 201, await r.text()
        first = await r.json()
        assert (first["enterprise"], first["revision"], first["submitted_by"]) == (
            "E9", 1, "enterprise",
        )  # fmt: skip
        assert first["special_work"]["hot_work"] == 1 and first["special_work"]["excavation"] == 0

        async def ended() -> bool:
            return not _enterprise_warning(app).condition_active

        await until(ended)  # the submission woke the desk
        (e9,) = [e for e in desk.inputs(now[0]).enterprises if e.code == "E9"]
        assert (e9.commitment_submitted, e9.production_state) == (True, "normal")

        # A resubmission the same day replaces it; the first is kept and both are audited.
        r = await firm.post("/api/commitments", json=commitment(day, risk_level="yellow"))
        assert r.status == 201 and (await r.json())["revision"] == 2
        listed = await (
            await centre.get("/api/commitments", params={"date": day.isoformat()})
        ).json()
        (c,) = listed["commitments"]
        assert (c["revision"], c["risk_level"]) == (2, "yellow")
        assert [(p["revision"], p["risk_level"]) for p in c["previous"]] == [(1, "blue")]
        assert listed["missing"] == ["E8"]
        audited = await app.run.store.pool.fetch(
            "SELECT username, result FROM audit_log WHERE action = 'POST /api/commitments'"
        )
        assert [tuple(r) for r in audited] == [("enterprise", "ok"), ("enterprise", "ok")]

        # The next day, past the deadline again: the same live warning's condition resumes.
        # (The warning, unsigned for 24 h, may be escalated by the desk's own timer as well.)
        before = len(_enterprise_warning(app).steps)
        now[0] = at(day + timedelta(days=1), 9, 30)
        await desk.evaluate()
        w = _enterprise_warning(app)
        assert w.condition_active
        assert "condition_resumed" in [s.action.value for s in w.steps[before:]]
    finally:
        await firm.close()
        await centre.close()


BAD_COMMITMENTS = [
    ({"date": "2020-01-01"}, "date: a commitment is submitted for the current day"),
    ({"production_state": "dancing"}, "unknown state 'dancing'"),
    ({"special_work": {"juggling": 1}}, "unknown special work type(s) ['juggling']"),
    ({"sources_safe": {"HS1": True}}, "missing ['HS2']"),
    ({"sources_safe": {"HS1": True, "HS2": True, "HS7": False}}, "unknown ['HS7']"),
    ({"risk_level": "purple"}, "risk_level:"),
    ({"units_running": -1}, "units_running:"),
    ({"signed_by": ""}, "signed_by:"),
]


async def test_a_bad_commitment_is_refused_naming_the_value(app: App) -> None:
    firm = await app.signed_in(ENTERPRISE)
    try:
        for change, says in BAD_COMMITMENTS:
            body = commitment(app.run.reports.today(), **change)
            r = await firm.post("/api/commitments", json=body)
            assert r.status == 400, change
            assert says in (await r.json())["error"], change
    finally:
        await firm.close()
    assert await app.run.store.pool.fetchval("SELECT count(*) FROM safety_commitments") == 0


async def test_only_the_enterprise_submits_and_reads_its_own(app: App) -> None:
    today = app.run.reports.today()
    firm, centre = await app.signed_in(ENTERPRISE), await app.signed_in(DUTY)
    try:
        r = await centre.post("/api/commitments", json=commitment(today))
        assert r.status == 403
        r = await firm.get("/api/commitments", params={"enterprise": "E8"})
        assert r.status == 404
        assert (await firm.post("/api/commitments", json=commitment(today))).status == 201
        mine = await (await firm.get("/api/commitments")).json()
        assert ([c["enterprise"] for c in mine["commitments"]], mine["missing"]) == (["E9"], [])
        r = await centre.get("/api/commitments", params={"date": "yesterday"})
        assert r.status == 400 and "YYYY-MM-DD" in (await r.json())["error"]
    finally:
        await firm.close()
        await centre.close()


async def test_the_listing_names_the_special_work_types_and_production_states(app: App) -> None:
    firm = await app.signed_in(ENTERPRISE)
    try:
        listed = await (await firm.get("/api/commitments")).json()
    finally:
        await firm.close()
    rules = load_warning_rules()
    assert listed["special_work_types"] == [w.model_dump() for w in rules.special_work_types]
    hot_work = {"code": "hot_work", "zh": "动火作业", "en": "hot work"}
    assert listed["special_work_types"][0] == hot_work
    maintenance = {"code": "maintenance", "zh": "检维修", "en": "maintenance"}
    assert maintenance in listed["production_states"]
    assert len(listed["production_states"]) == len(rules.production_states)


async def test_grade_1_source_in_maintenance_with_special_work_warns_yellow(app: App) -> None:
    today = app.run.reports.today()
    firm = await app.signed_in(ENTERPRISE)
    try:
        body = commitment(today, production_state="maintenance")
        assert (await firm.post("/api/commitments", json=body)).status == 201
        for source, number in (("HS1", "DZ-1"), ("HS2", "DZ-2")):
            r = await firm.post(
                "/api/special-work", json=permit(source=source, type="lifting", permit_no=number)
            )
            assert r.status == 201
    finally:
        await firm.close()
    desk = app.run.warnings
    await desk.evaluate()
    found = {(w.hazard_source, w.level.value, w.rule) for w in desk.warnings.values()}
    # HS1 is grade 1: yellow; HS2 is grade 2: the rule does not apply.
    assert ("HS1", "yellow", "yellow.grade1_state_with_special_work") in found
    assert not any(src == "HS2" for src, _, _ in found)
    (w,) = [w for w in desk.warnings.values() if w.hazard_source == "HS1"]
    assert [e.zh for e in w.evidence] == ["生产状态：检维修", "正在进行：吊装作业（作业证 DZ-1）"]


async def test_the_sources_operating_state_feeds_the_yellow_rule_and_overrides_the_commitment(
    app: App,
) -> None:
    assert set(PRODUCTION_STATE) == set(SourceState)  # every operating state has a rule state
    desk = app.run.warnings
    firm = await app.signed_in(ENTERPRISE)

    async def state(value: str) -> None:
        r = await firm.post("/api/sources/HS1/state", json={"state": value, "reason": "检修"})
        assert r.status == 200, await r.text()

    def hs1() -> tuple[str | None, list[str]]:
        now = time.time_ns()
        found = [
            f for f in wm.evaluate_warnings(desk.inputs(now), desk.rules, now)
            if (f.enterprise, f.hazard_source) == ("E9", "HS1")
        ]  # fmt: skip
        (src,) = [s for e in desk.inputs(now).enterprises if e.code == "E9"
                  for s in e.sources if s.code == "HS1"]  # fmt: skip
        return src.production_state, [e.zh for f in found for e in f.evidence]

    try:
        r = await firm.post("/api/special-work", json=permit(type="lifting", permit_no="DZ-7"))
        assert r.status == 201
        assert hs1() == (None, [])  # never set, nothing committed: running as far as known

        await state("maintenance")
        assert hs1() == ("maintenance", ["生产状态：检维修", "正在进行：吊装作业（作业证 DZ-7）"])
        await desk.evaluate()
        (w,) = [w for w in desk.warnings.values() if w.hazard_source == "HS1"]
        assert (w.level.value, w.rule) == ("yellow", "yellow.grade1_state_with_special_work")

        await state("startup_shutdown")
        assert hs1() == (
            "startup_shutdown",
            ["生产状态：开停车", "正在进行：吊装作业（作业证 DZ-7）"],
        )

        # Set running, the source is in normal operation whatever the enterprise committed to.
        body = commitment(app.run.reports.today(), production_state="maintenance")
        assert (await firm.post("/api/commitments", json=body)).status == 201
        await state("running")
        assert hs1() == ("normal", [])
        await desk.evaluate()
        assert not desk.warnings[w.id].condition_active  # type: ignore[index]
    finally:
        await firm.close()


async def test_the_demo_commits_in_the_name_of_the_sources_principal(app: App) -> None:
    await submit_demo_commitments(app.run.config, app.run.reports)
    firm = await app.signed_in(ENTERPRISE)
    try:
        listed = await (await firm.get("/api/commitments")).json()
    finally:
        await firm.close()
    (mine,) = [c for c in listed["commitments"] if c["enterprise"] == "E9"]
    assert mine["signed_by"] == "王总"  # HS1's 主要负责人
