"""The warning desk and the alarm KPI page in a real browser, against the demo.

A broken 4–20 mA loop (the demo's out_of_range scenario) issues a blue early warning, pushed to
the source's 包保责任人; the enterprise user signs and answers it, clears it once the loop is
repaired; the duty officer sees each step live on their own screen, then reviews and closes it.
The KPI page shows the API's figures against the API's targets, in its cards and its charts.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.console_kit import Api, Console, login, open_page, shot, text_lines

TARGET = "TK104.LT"  # its loop breaks: E1's hazard source HS102 gets a blue warning
ECHARTS = "/static/vendor/echarts/echarts.esm.min.js"


def _option(page: Page, selector: str) -> Any:
    """The ECharts option of the chart in `selector`, as the page set it."""
    script = f"""async () => {{
      const echarts = await import("{ECHARTS}");
      const o = echarts.getInstanceByDom(document.querySelector("{selector}")).getOption();
      return {{ categories: o.xAxis[0].data, series: o.series.map((s) => ({{
        data: s.data, marks: (s.markLine?.data ?? []).map((d) => d.yAxis) }})) }};
    }}"""
    return page.evaluate(script)


def _wait_for(what: str, probe: Any, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (found := probe()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1)
    return found


def _open_warning(api: Api) -> dict[str, Any] | None:
    return next(
        (
            w
            for w in api.call("GET", "/api/warnings")["warnings"]
            if w["rule"] == "blue.out_of_range"
            and w["enterprise"] == "E1"
            and w["state"] == "pushed"  # to HS102's three 包保责任人
        ),
        None,
    )


def _submit(page: Page, **fields: str) -> None:
    """Fills the open dialog's fields and submits it."""
    dialog = page.locator("dialog[open]")
    for name, value in fields.items():
        field = dialog.locator(f"[name={name}]")
        if field.evaluate("n => n.tagName") == "SELECT":
            field.select_option(value)
        else:
            field.fill(value)
    dialog.locator("button[type=submit]").click()
    expect(page.locator("dialog[open]")).to_have_count(0)


@pytest.fixture
def duty_page(console_browser: Browser, console: Console) -> Iterator[Page]:
    """A second browser, side by side with `console_page`."""
    with open_page(console_browser, console) as page:
        yield page


def test_enterprise_signs_answers_and_clears_and_the_duty_officer_reviews(
    console: Console,
    console_page: Page,
    duty_page: Page,
) -> None:
    duty = console.api("duty")
    console.scenario("out_of_range", TARGET)
    try:
        warning = _wait_for("the blue warning", lambda: _open_warning(duty))
        wid = warning["id"]
        ent, officer = console_page, duty_page
        login(ent, "enterprise")
        login(officer, "duty")
        for page in (ent, officer):
            page.evaluate("location.hash = '#/warnings'")
        ent_row = ent.locator(f"tr.wdesk-row[data-warning='{wid}']")
        duty_row = officer.locator(f"tr.wdesk-row[data-warning='{wid}']")
        expect(ent_row).to_have_attribute("data-level", "blue")
        expect(duty_row.locator(".wdesk-level-badge")).to_have_text("蓝色预警")
        expect(officer.locator(".wdesk-count[data-level=blue] b")).not_to_have_text("0")
        # The evidence is the API's, as it stood when the warning was issued, and says so.
        evidence = "；".join(e["zh"] for e in warning["evidence"])
        expect(duty_row.locator(".wdesk-evidence")).to_have_text(f"发布时：{evidence}")

        # On a narrow screen the deadline, each button's label and the state of the
        # warning's condition (触发条件仍存在) keep to one line each.
        for page in (ent, officer):
            page.set_viewport_size({"width": 1024, "height": 768})
        for row in (ent_row, duty_row):
            cells = row.locator("td.wdesk-deadline, td.wdesk-actions button, td.wdesk-state .muted")
            assert cells.count() >= 3
            for cell in cells.all():
                assert text_lines(cell) == 1, cell.inner_text()
        # The deadline (from the rules: 24 h to sign a blue warning) counts down live.
        deadline_cell = duty_row.locator("td.wdesk-deadline")
        expect(deadline_cell).to_contain_text("剩余 23:")
        before = deadline_cell.inner_text()
        expect(deadline_cell).not_to_have_text(before, timeout=5000)
        expect(duty_row.locator("td.wdesk-escalation")).to_contain_text("企业")

        # Signing and answering are the enterprise's; the regulator may only clear with a reason.
        expect(duty_row.locator("button.act-sign")).to_have_count(0)
        expect(duty_row.locator("button.act-regulator-clear")).to_have_count(1)
        ent_row.locator("button.act-sign").click()
        _submit(ent, comment="已签收，安排仪表工检查")
        expect(ent_row).to_have_attribute("data-state", "signed")
        expect(duty_row).to_have_attribute("data-state", "signed")  # live, no reload
        expect(duty_row.locator("td.wdesk-deadline")).to_contain_text("反馈")

        ent_row.locator("button.act-feedback").click()
        reasons = ent.locator("dialog[open] select[name=reason] option")
        expect(reasons).to_have_text(["真实报警", "误报", "仪表故障", "检维修", "工艺波动"])
        _submit(ent, reason="instrument_fault", measures="液位计4-20mA回路断线，已更换接线端子")
        expect(ent_row).to_have_attribute("data-state", "feedback")
        expect(duty_row).to_have_attribute("data-state", "feedback")
        # Clearing waits for the condition to end.
        expect(ent_row.locator("button.act-clear")).to_be_disabled()
        # Beside the evidence as at issue, the detail shows what holds at the source now, as
        # the API's latest evaluation found it.
        ent_row.click()
        now = ent.locator(f"tr.wdesk-detail[data-detail='{wid}'] .wdesk-now")
        expect(now).to_have_attribute("data-level", "blue")
        finding = duty.call("GET", f"/api/warnings/{wid}")["now"]["finding"]
        assert finding["level"] == "blue"
        expect(now.locator(".wdesk-now-meets")).to_have_text(
            f"当前满足蓝色预警条件：{finding['title_zh']}"
        )
        expect(now.locator("li")).to_have_text([e["zh"] for e in finding["evidence"]])
        shot(ent, "warnings-enterprise")

        console.scenario("normal")  # the loop is repaired
        expect(now).to_contain_text("该危险源当前不满足任何预警条件", timeout=60_000)
        assert duty.call("GET", f"/api/warnings/{wid}")["now"]["finding"] is None
        expect(ent_row.locator("button.act-clear")).to_be_enabled(timeout=60_000)
        ent_row.locator("button.act-clear").click()
        _submit(ent, reason="回路修复，数值恢复正常")
        expect(ent_row).to_have_attribute("data-state", "cleared")
        expect(duty_row).to_have_attribute("data-state", "cleared")

        # The duty officer reviews: the record shows who did what.
        duty_row.locator("button.act-review").click()
        _submit(officer, comment="已电话核实")
        expect(duty_row).to_have_attribute("data-state", "reviewed")
        duty_row.click()
        steps = officer.locator(f"tr.wdesk-detail[data-detail='{wid}'] .wdesk-steps li")
        expect(steps.locator("b")).to_have_text(
            ["发布", "推送至包保责任人", "签收", "处置反馈", "触发条件结束", "消警", "复核"]
        )
        expect(officer.locator(f"tr.wdesk-detail[data-detail='{wid}']")).to_contain_text(
            "包保责任人 主要负责人 王建国；技术负责人 李明；操作负责人 张伟"
        )
        expect(officer.locator(f"tr.wdesk-detail[data-detail='{wid}']")).to_contain_text(
            "反馈：仪表故障；液位计4-20mA回路断线"
        )
        shot(officer, "warnings-duty")
        record = next(w for w in duty.call("GET", "/api/warnings")["warnings"] if w["id"] == wid)
        by = [(s["action"], s["username"]) for s in record["steps"] if s["username"] != "system"]
        assert by == [
            ("signed", "enterprise"),
            ("feedback", "enterprise"),
            ("cleared", "enterprise"),
            ("reviewed", "duty"),
        ]
        assert record["feedback"]["reason"] == "instrument_fault"

        # In English the lists the page puts together take English punctuation: no "；" or
        # "、" between English words.
        officer.click("#lang")
        expect(duty_row.locator(".wdesk-level-badge")).to_have_text("Blue")
        evidence_en = "; ".join(e["en"] for e in warning["evidence"])
        expect(duty_row.locator(".wdesk-evidence")).to_have_text(f"At issue: {evidence_en}")
        detail = officer.locator(f"tr.wdesk-detail[data-detail='{wid}']")
        duty_row.click()  # the switch rebuilt the table: open the detail again
        expect(detail).to_contain_text(
            "Responsible persons principal 王建国; technical 李明; operational 张伟"
        )
        for text in (duty_row.inner_text(), detail.inner_text()):
            assert not {"；", "、", "："} & set(text), text
        officer.click("#lang")
        expect(duty_row.locator(".wdesk-level-badge")).to_have_text("蓝色预警")

        duty_row.locator("button.act-close").click()
        _submit(officer, comment="")
        expect(duty_row).to_have_count(0)
        expect(ent_row).to_have_count(0)
        for page in (ent, officer):
            assert [e for e in page.errors if "401" not in e] == []  # type: ignore[attr-defined]
    finally:
        console.scenario("normal")


LABELS = {
    "HH": "高高限", "H": "高限", "L": "低限", "LL": "低低限", "ROC": "变化率超限",
    "BAD_QUALITY": "坏质量/通讯中断", "STALE": "数据陈旧", "STUCK": "数值冻结",
    "OUT_OF_RANGE": "超量程", "FORECAST": "趋势预测超限",
}  # fmt: skip
GAS_LABELS = {"H": "一级报警", "HH": "二级报警"}


def _card(page: Page, metric: str) -> Locator:
    return page.locator(f".kpi-card[data-metric='{metric}']")


def _status(value: float, targets: list[float]) -> str:
    values = sorted(set(targets))
    if value <= values[0]:
        return "ok"
    return "warn" if value <= values[-1] else "bad"


def test_kpi_page_shows_the_api_figures_against_its_targets(
    console: Console,
    console_page: Page,
) -> None:
    shift = console.api("shift")
    if shift.call("GET", "/api/alarms/kpi")["overall"]["annunciated"] == 0:
        console.scenario("out_of_range", TARGET)  # one alarm at least
        try:
            _wait_for(
                "an alarm",
                lambda: shift.call("GET", "/api/alarms/kpi")["overall"]["annunciated"],
            )
        finally:
            console.scenario("normal")
    page = console_page
    login(page, "shift")
    # Through the overview first, as a duty room would: its stylesheet stays loaded and must
    # not reshape this page.
    page.evaluate("location.hash = '#/overview'")
    page.wait_for_selector(".overview[data-ready]")
    page.evaluate("location.hash = '#/kpi'")
    expect(page.locator(".kpi-page[data-loaded]")).to_have_count(1)
    tops = [box["y"] for box in (c.bounding_box() for c in page.locator(".kpi-card").all()) if box]
    assert len(tops) == 10 and tops[1] == tops[0], f"the KPI cards are not laid out in rows: {tops}"

    # The page asks for the last 24 h at its own instant: compare with the answer it got.
    with page.expect_response(lambda r: "/api/alarms/kpi" in r.url) as answer:
        page.locator("button.kpi-refresh").click()
    report = answer.value.json()
    m = report["overall"]
    page.wait_for_load_state("networkidle")
    expect(_card(page, "annunciated").locator(".kpi-value")).to_have_text(str(m["annunciated"]))
    figures = {
        "per_10min": m["rate"]["per_10min"]["average"],
        "per_hour": m["rate"]["per_hour"]["average"],
        "per_day": m["rate"]["per_day"]["average"],
        "max_10min": m["rate"]["per_10min"]["max"],
        "pct_10min_over_10": m["rate"]["per_10min"]["pct_periods_over_10"],
        "pct_time_in_flood": m["floods"]["pct_time"],
        "top10_share_pct": m["bad_actors"]["share_pct"],
        "chattering": len(m["chattering"]),
        "stale": len(m["stale"]),
    }
    for metric, value in figures.items():
        targets = [t["value"] for t in report["targets"] if t["metric"] == metric]
        assert targets, f"the API gives no target for {metric}"
        card = _card(page, metric)
        status = _status(value, targets)
        if metric == "top10_share_pct" and m["bad_actors"]["distinct"] <= report["rules"]["top_n"]:
            status = "na"  # the whole load: 100 % by definition, not judged
            expect(card.locator(".kpi-status")).to_contain_text(
                f"不评价：仅 {m['bad_actors']['distinct']} 种报警"
            )
        expect(card).to_have_attribute("data-status", status)
        # The figure as read on the card: rounded, but never 0 unless it is 0 (one alarm in
        # 24 h is 0.042 an hour).
        shown = float(card.locator(".kpi-value").inner_text().rstrip("%").replace(",", ""))
        assert (shown == 0) == (value == 0), f"{metric}: {value} reads {shown}"
        assert shown == pytest.approx(value, rel=0.05, abs=0.5), metric
        for target in set(targets):
            expect(card.locator(".kpi-targets")).to_contain_text(f"{target:g}")

    # The rate chart: one bar per 10 minutes as counted by the server, the targets and the
    # flood threshold drawn; the priority chart: the server's distribution.
    rate = _option(page, ".kpi-rate-chart")["series"][0]
    assert [n for _, n in rate["data"]] == m["per_window"]
    assert sum(m["per_window"]) == m["annunciated"] > 0
    per_10min = {t["value"] for t in report["targets"] if t["metric"] == "per_10min"}
    assert set(rate["marks"]) == per_10min | {report["rules"]["flood_start_above"]}
    # In a flood (163 alarms in the last 10 minutes) the axis reaches far past the targets (1 and
    # 2 alarms) and the flood threshold (10): no two texts of the chart, the names of those lines
    # and the axis labels, may be written over each other.
    texts = page.evaluate(f"""async () => {{
      const echarts = await import("{ECHARTS}");
      const chart = echarts.getInstanceByDom(document.querySelector(".kpi-rate-chart"));
      const data = chart.getOption().series[0].data.map(([t, n]) => [t, n]);
      data[data.length - 1][1] = 163;
      chart.setOption({{ series: [{{ data }}] }});
      return chart.getZr().storage.getDisplayList(true)
        .filter((e) => e.style?.text)
        .map((e) => {{
          const r = e.getBoundingRect().clone();
          r.applyTransform(e.transform);
          return {{ text: e.style.text, x: r.x, y: r.y, w: r.width, h: r.height }};
        }});
    }}""")
    names = [x["text"] for x in texts]
    assert sum("≤" in n for n in names) == len(per_10min) >= 2, names
    assert any(n.endswith(f">{report['rules']['flood_start_above']}") for n in names), names
    for a, b in itertools.combinations(texts, 2):
        apart = a["x"] + a["w"] <= b["x"] or b["x"] + b["w"] <= a["x"]
        assert apart or a["y"] + a["h"] <= b["y"] or b["y"] + b["h"] <= a["y"], (a, b)
    chart = _option(page, ".kpi-priority-chart")
    prio = chart["series"]
    assert [d["value"] for d in prio[0]["data"]] == [
        m["priority"][p]["pct"] for p in ("emergency", "high", "medium", "low")
    ]
    # Each figure is written under its priority's name, where no target mark can cover it.
    assert [c.partition("\n")[2] for c in chart["categories"]] == [
        f"{round(m['priority'][p]['pct'], 1):g}% ({m['priority'][p]['count']})"
        for p in ("emergency", "high", "medium", "low")
    ]
    assert prio[1]["data"] == [
        next(t["value"] for t in report["targets"] if t["metric"] == f"priority_pct.{p}")
        for p in ("emergency", "high", "medium", "low")
    ]
    # Each listed alarm named in words, a gas detector's H and HH by GB/T 50493.
    cells = page.locator(".kpi-bad-actors tbody tr td:nth-child(2)").all_inner_texts()
    expected = []
    for b in m["bad_actors"]["top"]:
        assert b["class"] in ("process", "gas", "quality", "video", "system")
        gas = b["class"] == "gas" and b["condition"] in GAS_LABELS
        expected.append((GAS_LABELS if gas else LABELS)[b["condition"]])
    assert cells == expected
    shot(page, "kpi")
    assert [e for e in page.errors if "401" not in e] == []  # type: ignore[attr-defined]
