"""The enterprise reports page (#/reports) in a real browser, against the demo.

The enterprise user resubmits today's safety commitment (the demo submitted one at start) and
registers special work, sees it listed and ends it; a refused registration shows the API's
message and keeps what was typed. The duty officer sees the commitment (not flagged missing) and
the special work still on-going, the overrun flagged; the English switch relabels the page.
"""

from __future__ import annotations

import re
import time
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from playwright.sync_api import Page, expect

from tests.console_kit import Console, login, shot

BROWSER_ZONE = ZoneInfo("Asia/Shanghai")  # console_page's time zone


def _local(t: datetime) -> str:
    """The value of a datetime-local input in the browser's time zone."""
    return t.astimezone(BROWSER_ZONE).strftime("%Y-%m-%dT%H:%M")


def _own(listed: dict[str, Any], enterprise: str) -> dict[str, Any]:
    return next(c for c in listed["commitments"] if c["enterprise"] == enterprise)


def test_enterprise_commits_and_reports_special_work_and_the_centre_sees_it(
    console: Console, console_page: Page
) -> None:
    page = console_page
    firm, duty = console.api("enterprise"), console.api("duty")
    before = _own(firm.call("GET", "/api/commitments"), "E1")  # the demo's, or a resubmission
    stamp = int(time.time())
    permit, overrun = f"DH-{stamp}", f"SX-{stamp}"

    login(page, "enterprise")
    page.evaluate("location.hash = '#/reports'")
    form = page.locator("form.reports-commitment-form")
    status = page.locator(".reports-status")
    expect(status).to_have_attribute("data-state", "submitted")
    submitted = status.locator(".reports-ok")
    expect(submitted).to_have_attribute("data-revision", str(before["revision"]))
    # Prefilled from the commitment in force; every work type of the rules has its count.
    expect(form.locator("input[name=signed_by]")).to_have_value(before["signed_by"])
    expect(form.locator("input[name^='special_work.']")).to_have_count(8)
    expect(form.locator("select[name^='sources_safe.']")).to_have_count(2)
    form.locator("select[name=risk_level]").select_option("yellow")
    expect(form.locator("select[name=risk_level] option")).to_have_text(
        ["重大风险（红）", "较大风险（橙）", "一般风险（黄）", "较低风险（蓝）"]
    )
    form.locator("select[name=production_state]").select_option("normal")
    for name, value in {
        "units_running": "2",
        "units_stopped": "0",
        "units_maintenance": "1",
        "special_work.hot_work": "1",
        "special_work.lifting": "2",
        "hot_work_grade1": "1",
        "hot_work_special": "0",
        "note": "液氨储罐区安排动火作业一处",
        "signed_by": "王总",
    }.items():
        form.locator(f"[name='{name}']").fill(value)
    form.locator("select[name='sources_safe.HS102']").select_option("false")
    form.locator("button[type=submit]").click()
    revision = before["revision"] + 1
    expect(submitted).to_have_attribute("data-revision", str(revision))
    previous = status.locator(".reports-previous")
    expect(previous).to_have_attribute("data-previous", str(revision - 1))
    mine = firm.call("GET", "/api/commitments")
    assert mine["missing"] == []
    now = _own(mine, "E1")
    assert (now["revision"], now["risk_level"], now["signed_by"]) == (revision, "yellow", "王总")
    assert (now["units_running"], now["units_maintenance"], now["hot_work_grade1"]) == (2, 1, 1)
    assert now["special_work"]["hot_work"] == 1 and now["special_work"]["lifting"] == 2
    assert now["sources_safe"] == {"HS101": True, "HS102": False}
    assert len(now["previous"]) == revision - 1

    # A planned end before the start is refused with the API's message; nothing typed is lost.
    work = page.locator("form.reports-work-form")
    start = datetime.now(BROWSER_ZONE) - timedelta(minutes=10)
    work.locator("select[name=source]").select_option("HS102")
    work.locator("select[name=type]").select_option("hot_work")
    work.locator("input[name=permit_no]").fill(permit)
    work.locator("input[name=started_at]").fill(_local(start))
    work.locator("input[name=planned_end]").fill(_local(start - timedelta(hours=1)))
    work.locator("input[name=location]").fill("2号液氨储罐顶部")
    work.locator("input[name=supervisor]").fill("李四")
    work.locator("button[type=submit]").click()
    expect(work.locator(".reports-error")).to_contain_text("planned_end:")
    expect(work.locator(".reports-error")).to_contain_text("is not after started_at")
    expect(work.locator("input[name=permit_no]")).to_have_value(permit)
    expect(work.locator("input[name=supervisor]")).to_have_value("李四")
    assert firm.call("GET", "/api/special-work")["special_work"] == []

    work.locator("input[name=planned_end]").fill(_local(start + timedelta(hours=2)))
    work.locator("button[type=submit]").click()
    row = page.locator(f"tr.reports-work-row[data-permit='{permit}']")
    expect(row).to_contain_text("进行中")
    expect(row).to_contain_text("液氨储罐区")
    expect(row).to_contain_text("动火作业")
    (listed,) = firm.call("GET", "/api/special-work")["special_work"]
    assert (listed["permit_no"], listed["hazard_source"], listed["supervisor"]) == (
        permit,
        "HS102",
        "李四",
    )
    assert listed["ongoing"] and not listed["overrun"]
    shot(page, "reports-enterprise")

    row.locator("button.reports-end").click()
    page.locator("dialog[open] textarea[name=note]").fill("作业完毕，现场已清理")
    page.locator("dialog[open] button[type=submit]").click()
    expect(row).to_contain_text("已结束")
    expect(row.locator("button.reports-end")).to_have_count(0)
    (ended,) = firm.call("GET", "/api/special-work")["special_work"]
    assert ended["ended_at"] is not None and ended["end_note"] == "作业完毕，现场已清理"

    # The language switch rebuilds the page and keeps what was typed and not yet sent.
    work.locator("input[name=permit_no]").fill("DH-DRAFT")
    page.click("#lang")
    expect(page.locator(".reports-work h2")).to_have_text("Register special work")
    expect(work.locator("input[name=permit_no]")).to_have_value("DH-DRAFT")
    expect(form.locator("input[name=signed_by]")).to_have_value("王总")
    expect(row).to_contain_text("ended")
    # A hazard source is named with its code in the language's own brackets.
    sources = work.locator("select[name=source] option")
    expect(sources).to_have_text(["液氯储罐区 (HS101)", "液氨储罐区 (HS102)"])
    page.click("#lang")
    expect(sources).to_have_text(["液氯储罐区（HS101）", "液氨储罐区（HS102）"])

    # Another work, still on-going past its planned end: the centre sees it flagged.
    began = datetime.now(BROWSER_ZONE) - timedelta(hours=3)
    firm.call("POST", "/api/special-work", {
        "source": "HS101", "type": "confined_space", "permit_no": overrun,
        "started_at": began.isoformat(), "planned_end": (began + timedelta(hours=1)).isoformat(),
        "location": "液氯储罐区", "supervisor": "赵六",
    })  # fmt: skip

    page.click("#logout")
    login(page, "duty")
    page.evaluate("location.hash = '#/reports'")
    e1 = page.locator("tr.reports-row[data-enterprise=E1]")
    expect(e1).to_have_attribute("data-state", "submitted")
    expect(e1).not_to_have_class(re.compile(r"\bmissing\b"))
    expect(e1).to_contain_text("王总")
    expect(e1).to_contain_text("一般风险（黄）")
    expect(e1).to_contain_text(f"第 {revision} 版")
    expect(e1).to_contain_text("不安全：液氨储罐区")
    centre = duty.call("GET", "/api/commitments")
    assert "E1" not in centre["missing"]
    assert _own(centre, "E1")["revision"] == revision
    expect(page.locator("tr.reports-row.missing")).to_have_count(len(centre["missing"]))
    expect(page.locator(".reports-date")).to_have_value(centre["date"])
    ongoing = page.locator(".reports-ongoing tr.reports-work-row")
    expect(ongoing).to_have_count(1)
    expect(ongoing).to_have_attribute("data-permit", overrun)
    expect(ongoing).to_have_class(re.compile(r"\boverdue\b"))
    expect(ongoing).to_contain_text("已超计划结束时间")
    active = duty.call("GET", "/api/special-work?active=true")["special_work"]
    assert [(w["permit_no"], w["overrun"]) for w in active] == [(overrun, True)]
    shot(page, "reports")
    # On a 1366 px laptop screen the short cells keep to one line: "已提交", "第 N 版".
    page.set_viewport_size({"width": 1366, "height": 768})
    lines = """td => {
      const r = document.createRange();
      r.selectNodeContents(td.firstChild);
      return r.getClientRects().length;
    }"""
    for cell in (e1.locator("td").nth(1), e1.locator("td").last):
        assert cell.evaluate(lines) == 1, cell.inner_text()
    page.set_viewport_size({"width": 1600, "height": 900})

    # The day before (the fresh database has none of its commitments): every enterprise missing.
    yesterday = (date.fromisoformat(centre["date"]) - timedelta(days=1)).isoformat()
    page.locator(".reports-date").fill(yesterday)
    past = duty.call("GET", f"/api/commitments?date={yesterday}")
    assert past["commitments"] == [] and past["missing"] == ["E1", "E2", "E3"]
    expect(page.locator("tr.reports-row.missing")).to_have_count(3)
    expect(e1).to_have_attribute("data-state", "missing")
    expect(e1).to_contain_text("未提交")
    expect(e1).to_contain_text("已超过截止时间")

    page.click("#lang")
    expect(page.locator("#nav a[data-page=reports]")).to_have_text("Reports")
    expect(page.locator(".reports-centre h2").first).to_have_text("Safety commitments")
    expect(e1).to_contain_text("missing")
    expect(ongoing).to_contain_text("past its planned end")
    page.click("#lang")
    expect(page.locator("#nav a[data-page=reports]")).to_have_text("企业填报")
    errors: list[str] = page.errors  # type: ignore[attr-defined]
    assert [e for e in errors if not re.search(r"status of (400|401)", e)] == []
