"""The enterprise overview, its drill-down and the wall display in a real browser (Debian's
Chromium) against the demo: the demo's enterprises on the offline map coloured by warning level,
an enterprise user who sees only its own enterprise, the wall display at 1920×1080 without
scrollbars. Screenshots: tests/output/screenshots/{map,enterprise,wall}.png."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from playwright.sync_api import Page, expect

from tests.console_kit import Console, login, shot, text_lines

# The colours of style.css's warning variables (and green without a warning).
COLOURS = {"red": "#e02020", "orange": "#ff7f00", "yellow": "#f5c400", "blue": "#1e6fff"}
WARNING_TIMEOUT_S = 120

# The map's ECharts option as the page holds it: the registered map's districts and the markers.
MAP_STATE = """async (id) => {
  const echarts = await import("/static/vendor/echarts/echarts.esm.min.js");
  const chart = echarts.getInstanceByDom(document.getElementById(id));
  if (!chart) return null;
  const o = chart.getOption();
  const geo = o.geo && o.geo[0];
  const map = geo ? echarts.getMap(geo.map) : null;
  const box = document.getElementById(id).getBoundingClientRect();
  return {
    map: geo ? geo.map : null,
    districts: map ? map.geoJSON.features.map((f) => [f.id, f.properties.name]) : [],
    markers: o.series[0].data.map((d) => ({
      code: d.code, kind: d.kind, name: d.name, lon: d.value[0], lat: d.value[1],
      colour: d.itemStyle.color,
      pixel: chart.convertToPixel({ seriesIndex: 0 }, [d.value[0], d.value[1]]),
    })),
    box: [box.width, box.height],
  };
}"""


# The map as drawn: the rects of the names of the sites and of their markers (ZRender's display
# list; markers are drawn above the names).
MAP_DRAWN = """async (id) => {
  const echarts = await import("/static/vendor/echarts/echarts.esm.min.js");
  const chart = echarts.getInstanceByDom(document.getElementById(id));
  const names = new Set(chart.getOption().series[0].data.map((d) => d.name));
  const rect = (e) => {
    const r = e.getBoundingRect().clone();
    if (e.transform) r.applyTransform(e.transform);
    return [r.x, r.y, r.width, r.height];
  };
  const shown = chart.getZr().storage.getDisplayList(true).filter((e) => !e.ignore && !e.invisible);
  return {
    names: shown.filter((e) => e.type === "tspan" && names.has(e.style.text)).map(rect),
    markers: shown.filter((e) => e.type === "path" && e.zlevel === 2).map(rect),
  };
}"""


def _names_clear(page: Page, element_id: str, state: Any) -> None:
    """Each site's name touches no other name and no marker, and each marker stands on its
    site (a pin's tip, a diamond's middle)."""
    drawn = page.evaluate(MAP_DRAWN, element_id)
    names, markers = drawn["names"], drawn["markers"]
    assert len(names) == len(markers) == len(state["markers"]), drawn

    def cross(a: list[float], b: list[float]) -> bool:  # overlap of over 1 px both ways
        return min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]) > 1 and (
            min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]) > 1
        )

    for i, name in enumerate(names):
        assert not [n for n in names[i + 1 :] if cross(name, n)], (name, names)
        assert not [m for m in markers if cross(name, m)], (name, markers)
    for site in state["markers"]:
        x, y = site["pixel"]
        k = 1.0 if site["kind"] == "enterprise" else 0.5  # a pin's tip, a diamond's middle
        on_site = [r for r in markers if abs(r[0] + r[2] / 2 - x) <= 2 >= abs(r[1] + r[3] * k - y)]
        assert on_site, (site, markers)


def _map(page: Page, element_id: str) -> Any:
    return page.evaluate(MAP_STATE, element_id)


def _wait_map(page: Page, element_id: str, want: int) -> Any:
    deadline = time.monotonic() + 30
    while True:
        state = _map(page, element_id)
        if state and state["map"] and len(state["markers"]) == want:
            return state
        assert time.monotonic() < deadline, f"the map never showed {want} markers: {state}"
        page.wait_for_timeout(300)


def _overview(console: Console, user: str) -> dict[str, Any]:
    body: dict[str, Any] = console.api(user).call("GET", "/api/overview")
    return {e["code"]: e for e in body["enterprises"]}


def _until_warning(console: Console, code: str, level: str) -> str:
    """Waits until the enterprise has a warning of `level` or, when an earlier test's plume left
    a higher one open there, of that higher level; returns the level shown."""
    deadline = time.monotonic() + WARNING_TIMEOUT_S
    api = console.api("duty")  # one session: every sign-in counts against the server's limit
    order = list(COLOURS)  # red first
    while True:
        shown = {e["code"]: e for e in api.call("GET", "/api/overview")["enterprises"]}[code][
            "warning"
        ]
        if shown is not None and order.index(shown) <= order.index(level):
            return str(shown)
        assert time.monotonic() < deadline, f"{code} never got a {level} warning"
        time.sleep(1)


CAMERA_FPS_NAME = "南京演示氯碱化工有限公司 全景 视频帧率"  # the demo camera of E1


def test_the_map_shows_the_demo_enterprises_coloured_by_warning(
    console: Console, console_page: Page
) -> None:
    page = console_page
    # An out-of-range level at E3 (a 4–20 mA loop above 20 mA) issues a blue warning there.
    console.scenario("out_of_range", "TK301.LT", current_ma=22.0)
    try:
        e3_level = _until_warning(console, "E3", "blue")
    finally:
        console.scenario("normal")
    login(page, "duty")
    page.goto(f"{console.url}#/overview")
    page.wait_for_selector(".overview[data-ready]")
    api = _overview(console, "duty")
    rows = page.locator(".ov-row")
    expect(rows).to_have_count(3)
    assert sorted(rows.evaluate_all("rs => rs.map(r => r.dataset.code)")) == ["E1", "E2", "E3"]
    labels = {"red": "红色预警", "orange": "橙色预警", "yellow": "黄色预警", "blue": "蓝色预警"}
    expect(page.locator('.ov-row[data-code="E3"] .level-badge')).to_have_text(labels[e3_level])

    state = _wait_map(page, "overview-map", 5)  # three enterprises, E1's two targets
    # Districts of 南京市 (GB/T 2260 3201xx) from the vendored package; the demo park is in 六合区.
    assert ["320116", "六合区"] in state["districts"]
    assert all(re.fullmatch(r"3201\d\d", code) for code, _ in state["districts"])
    width, height = state["box"]
    sites = [m for m in state["markers"] if m["kind"] != "target"]
    for m in sites:
        e = api[m["code"]]
        assert m["kind"] == "enterprise" and m["name"] == e["name"]
        assert (m["lon"], m["lat"]) == (e["lon"], e["lat"])
        assert m["colour"].lower() == COLOURS.get(e["warning"], "#2fbf71"), m
        x, y = m["pixel"]
        assert 0 <= x <= width and 0 <= y <= height, m  # drawn inside the map
    assert {m["code"]: m["colour"].lower() for m in sites}["E3"] == COLOURS[e3_level]
    _names_clear(page, "overview-map", state)
    # E1's sensitive targets (a school, homes) are drawn where they stand, inside the map, and
    # named clear of the sites and their names (checked above with the others).
    targets = [t for e in api.values() for t in e["sensitive_targets"]]
    assert [t["name"] for t in targets] == ["演示镇中心小学", "演示村居民区"]
    drawn = [m for m in state["markers"] if m["kind"] == "target"]
    assert [(m["name"], m["lon"], m["lat"]) for m in drawn] == [
        (t["name"], t["lon"], t["lat"]) for t in targets
    ]
    assert all(0 <= m["pixel"][0] <= width and 0 <= m["pixel"][1] <= height for m in drawn)
    expect(page.locator(".ov-legend")).to_contain_text("敏感目标")
    # Their tooltip names the kind; an enterprise's gives its station's wind.
    lines = page.evaluate(
        """async () => {
             const { tooltipLines } = await import('/static/js/pages/overview.js');
             const site = { name: 'E', warning: null, online_rate: 1, online: 1, points: 1,
               alarms: { total: 0, unack: 0 }, wind: { from_deg: 268.4, speed_m_s: 2.96 } };
             return [tooltipLines({ kind: 'target', name: '小学', target_kind: 'school' }),
               tooltipLines({ ...site, kind: 'enterprise' }).at(-1)];
           }"""
    )
    assert lines == [["小学", "敏感目标：学校"], "风向 268°（西风） 风速 3.0 米/秒"]
    # A name is moved past each marker in its way in turn (the second one is met only after
    # the first move), and never for its own marker, one beside it or one below.
    rects = [[0, 0, 8, 10], [20, 2, 8, 8], [30, 0, 8, 10], [200, 0, 8, 8], [12, 30, 8, 8]]
    moved = page.evaluate(
        """async (rects) => (await import('/static/js/map.js')).nameX(
             { x: 10, y: 0, width: 50, height: 10 },
             rects.map(([x, y, width, height]) => ({ x, y, width, height })), 0)""",
        rects,
    )
    assert moved == 38 + 4  # past the second marker, with the gap
    shot(page, "map", docs=True)

    # The English switch relabels the page.
    page.click("#lang")
    english = {"red": "Red", "orange": "Orange", "yellow": "Yellow", "blue": "Blue"}[e3_level]
    expect(page.locator('.ov-row[data-code="E3"] .level-badge')).to_have_text(f"{english} warning")
    # On a 1366 px laptop screen the list fits its column in either language: no column is cut.
    cut = "s => s.scrollWidth - s.clientWidth"
    page.set_viewport_size({"width": 1366, "height": 768})
    assert page.locator(".ov-side").evaluate(cut) <= 0, "en"
    page.click("#lang")
    expect(page.locator(".ov-side h3")).to_have_text("企业列表")
    expect(rows).to_have_count(3)
    assert page.locator(".ov-side").evaluate(cut) <= 0, "zh-CN"
    # Chinese headers keep to one line (在线率, not 在线/率).
    for th in page.locator(".ov-table th").all():
        assert text_lines(th) == 1, th.inner_text()
    page.set_viewport_size({"width": 1600, "height": 900})

    # Drill-down: a click on the row opens the enterprise with its hazard sources and points.
    page.click('.ov-row[data-code="E1"]')
    page.wait_for_url(re.compile(r"#/enterprise/E1$"))
    page.wait_for_selector(".enterprise[data-ready]")
    expect(page.locator('.ov-source[data-source="HS101"] .grade')).to_contain_text("一级")
    expect(page.locator('.ov-source[data-source="HS102"] .grade')).to_contain_text("三级")
    state = _wait_map(page, "enterprise-map", 3)  # the enterprise and its two hazard sources
    assert sorted(m["code"] for m in state["markers"]) == ["E1", "HS101", "HS102"]
    _names_clear(page, "enterprise-map", state)
    # Live values arrive in the point rows (the quality column fills in).
    quality = page.locator('.ov-source[data-source="HS101"] tbody tr').first.locator("td").nth(3)
    expect(quality).not_to_have_text("—", timeout=15_000)
    # The points by code, as a duty officer reads a list (not in the database's id order).
    codes = page.locator('.ov-source[data-source="HS101"] tbody tr td.mono').all_inner_texts()
    assert codes == sorted(codes, key=str.encode) and "GD-101" in codes, codes
    # The sources' sensitive targets, nearest first, with where they lie; in a west wind the
    # school 1.5 km east of the chlorine tanks is marked downwind (the red warning's rule).
    console.scenario("wind", None, direction_deg=270.0, speed_m_s=3.0)
    try:
        targets = page.locator('.ov-source[data-source="HS101"] .ov-target')
        school = targets.filter(has_text="演示镇中心小学")
        expect(school).to_have_attribute("data-downwind", "true", timeout=30_000)
        expect(school).to_contain_text("演示镇中心小学（学校）东 1.49 公里")
        expect(school).to_contain_text("当前下风向")
        expect(targets.nth(1)).to_contain_text("演示村居民区（居民区）北 2 公里")
        expect(targets.nth(1)).to_have_attribute("data-downwind", "false")
    finally:
        console.scenario("normal")
    # On a 1366-px screen the point tables fit in either language: the long names of camera
    # health points end in "…" with the whole name as the cell's title.
    page.set_viewport_size({"width": 1366, "height": 768})
    for lang in ("zh-CN", "en"):
        if lang == "en":
            page.click("#lang")
            expect(page.locator(".ov-sources h3")).to_have_text("Major hazard sources")
        assert page.locator(".ov-sources").evaluate(cut) <= 0, lang
    # (The west wind may still blow at this refresh: the school's mark is either way.)
    expect(page.locator('.ov-source[data-source="HS101"] .ov-targets')).to_have_text(
        re.compile(
            r"Sensitive targets: 演示镇中心小学 \(school\) 1\.49 km E( ⚠ downwind now)?; "
            r"演示村居民区 \(homes\) 2 km N( ⚠ downwind now)?\s*"
        )
    )
    # The headings' colons are the language's: "Industry: 氯碱化工", not "Industry：氯碱化工".
    expect(page.locator(".enterprise .meta").first).to_contain_text("Industry: 氯碱化工")
    expect(page.locator('.ov-source[data-source="HS101"] .grade')).to_have_text("GB 18218: Grade 1")
    if console.api("duty").call("GET", "/api/cameras")["cameras"]:  # GStreamer runs here
        fps = page.locator('.ov-source[data-source="HS101"] tr', has_text="CAM-DEMO.fps")
        name = fps.locator("td.clip")
        assert name.evaluate("td => td.scrollWidth > td.clientWidth")  # ends in "…"
        assert name.get_attribute("title") == name.text_content() == CAMERA_FPS_NAME
    page.click("#lang")
    page.set_viewport_size({"width": 1600, "height": 900})
    shot(page, "enterprise")
    assert not [e for e in page.errors if "status of 4" not in e]  # type: ignore[attr-defined]


def test_an_enterprise_user_sees_only_its_own_enterprise(
    console: Console, console_page: Page
) -> None:
    page = console_page
    login(page, "enterprise")
    page.goto(f"{console.url}#/overview")
    page.wait_for_selector(".overview[data-ready]")
    expect(page.locator(".ov-row")).to_have_count(1)
    assert page.locator(".ov-row").get_attribute("data-code") == "E1"
    state = _wait_map(page, "overview-map", 3)  # E1 and its two targets
    assert [m["code"] for m in state["markers"] if m["kind"] != "target"] == ["E1"]
    assert "E2" not in page.inner_text("#page") and "南京演示燃气" not in page.inner_text("#page")
    page.goto(f"{console.url}#/enterprise/E2")
    expect(page.locator(".ov-sources .error")).to_be_visible()
    assert json.dumps(_overview(console, "enterprise"), ensure_ascii=False).count('"code": "E') == 1


def test_the_enterprise_puts_a_source_in_maintenance_and_the_centre_reads_why(
    console: Console, console_page: Page
) -> None:
    page = console_page
    reason = "年度检修 JX-2026-07"
    login(page, "enterprise")
    page.goto(f"{console.url}#/enterprise/E1")
    page.wait_for_selector(".enterprise[data-ready]")
    source = page.locator('.ov-source[data-source="HS102"]')
    expect(source.locator(".ov-operating")).to_have_count(0)  # running: nothing to say
    try:
        source.locator("button.ov-set-state").click()
        form = page.locator("dialog[open]")
        expect(form.locator("select[name=state] option")).to_have_text(
            ["运行", "开停车", "检维修", "停用"]
        )
        form.locator("select[name=state]").select_option("maintenance")
        form.locator("button[type=submit]").click()  # without a reason: the form refuses
        expect(form).to_be_visible()
        form.locator("textarea[name=reason]").fill(reason)
        # The planned end, as the browser's local time (Asia/Shanghai): tomorrow 18:00.
        zone = ZoneInfo("Asia/Shanghai")
        end = (datetime.now(zone) + timedelta(days=1)).replace(
            hour=18, minute=0, second=0, microsecond=0
        )
        form.locator("input[name=planned_end]").fill(f"{end:%Y-%m-%dT%H:%M}")
        form.locator("button[type=submit]").click()
        expect(page.locator("dialog[open]")).to_have_count(0)
        line = source.locator(".ov-operating")
        expect(line).to_have_attribute("data-state", "maintenance")
        expect(line.locator(".op-state")).to_have_text("检维修")
        expect(line).to_contain_text(f"（enterprise 设置）：{reason}")
        stored = console.api("duty").call("GET", "/api/sources/HS102/state")
        assert (stored["state"], stored["set_by"], stored["reason"], stored["overdue"]) == (
            "maintenance", "enterprise", reason, False,
        )  # fmt: skip
        assert datetime.fromisoformat(stored["planned_end"]) == end
        expect(line).to_contain_text(f"计划至 {end:%Y/%m/%d} 18:00:00")
        since = datetime.fromisoformat(stored["since"]).astimezone(ZoneInfo("Asia/Shanghai"))
        expect(line).to_contain_text(f"自 {since:%Y/%m/%d %H:%M:%S} 起")  # the browser's zone

        # The duty officer's list counts the sources not running; the page says the same, in
        # English too.
        page.click("#logout")
        login(page, "duty")
        page.goto(f"{console.url}#/overview")
        page.wait_for_selector(".overview[data-ready]")
        expect(page.locator('.ov-row[data-code="E1"] .op-count')).to_have_text("1 检维修")
        expect(page.locator('.ov-row[data-code="E2"] .op-count')).to_have_count(0)
        page.goto(f"{console.url}#/enterprise/E1")
        page.wait_for_selector(".enterprise[data-ready]")
        expect(line.locator(".op-state")).to_have_text("检维修")
        page.click("#lang")
        expect(line.locator(".op-state")).to_have_text("maintenance")
        expect(line).to_contain_text(f"(set by enterprise): {reason}")
        page.click("#lang")
        expect(line.locator(".op-state")).to_have_text("检维修")
        # The enterprise changes it while the duty officer watches: a notice, and the line
        # follows at once.
        extended = "检修延长一天"
        console.api("enterprise").call(
            "POST", "/api/sources/HS102/state", {"state": "maintenance", "reason": extended}
        )
        notice = f"E1 液氨储罐区 已设为检维修（enterprise：{extended}）"
        expect(page.locator(".toast", has_text=notice)).to_have_count(1)
        expect(line).to_contain_text(extended, timeout=3_000)  # before the 5-s refresh
        # An expert reads but may not set it: no button.
        page.click("#logout")
        login(page, "expert")
        page.goto(f"{console.url}#/enterprise/E1")
        page.wait_for_selector(".enterprise[data-ready]")
        expect(line).to_have_attribute("data-state", "maintenance")
        expect(page.locator("button.ov-set-state")).to_have_count(0)
        # Past its planned end the state is flagged, on the page and in the list.
        duty = console.api("duty")  # signed in (paced) before the clock starts
        soon = datetime.now(UTC) + timedelta(seconds=2)
        duty.call("POST", "/api/sources/HS102/state", {
            "state": "maintenance", "reason": reason, "planned_end": soon.isoformat(),
        })  # fmt: skip
        heard = page.locator(".toast", has_text=f"E1 液氨储罐区 已设为检维修（duty：{reason}）")
        expect(heard).to_have_count(1)  # the expert hears of it
        expect(line.locator(".op-overdue")).to_have_text(" ⚠ 已超计划结束时间", timeout=15_000)
        page.goto(f"{console.url}#/overview")
        expect(page.locator('.ov-row[data-code="E1"] .op-count.overdue')).to_have_text(
            "1 已超计划结束时间"
        )
        page.goto(f"{console.url}#/enterprise/E1")
        page.wait_for_selector(".enterprise[data-ready]")
        expect(line).to_have_attribute("data-state", "maintenance")
        # The enterprise hears when the centre sets one of its sources.
        page.click("#logout")
        login(page, "enterprise")
        page.goto(f"{console.url}#/enterprise/E1")
        page.wait_for_selector(".enterprise[data-ready]")
        duty.call("POST", "/api/sources/HS102/state", {"state": "running", "reason": "检修完毕"})
        heard = page.locator(".toast", has_text="E1 液氨储罐区 已设为运行（duty：检修完毕）")
        expect(heard).to_have_count(1)
    finally:
        console.api("duty").call(
            "POST", "/api/sources/HS102/state", {"state": "running", "reason": "检修完毕"}
        )
    expect(line).to_have_count(0, timeout=15_000)  # the page follows within its refresh
    assert not [e for e in page.errors if "status of 4" not in e]  # type: ignore[attr-defined]


def test_the_wall_display_fits_1920x1080_without_scrollbars(
    console: Console, console_browser: Any
) -> None:
    context = console_browser.new_context(
        viewport={"width": 1920, "height": 1080}, locale="zh-CN", timezone_id="Asia/Shanghai"
    )
    # A loop above 20 mA at E3: its out-of-range alarm on the live list.
    console.scenario("out_of_range", "TK301.LT", current_ma=22.0)
    try:
        page = context.new_page()
        page.goto(console.url)
        login(page, "duty", console=console)
        page.goto(f"{console.url}#/wall")
        page.wait_for_selector("#wall[data-ready]")
        _wait_map(page, "wall-map", 5)
        page.wait_for_timeout(2500)  # a health poll and some live values for the pipeline panel
        size = page.evaluate(
            """() => ({sw: document.documentElement.scrollWidth,
                       sh: document.documentElement.scrollHeight,
                       w: window.innerWidth, h: window.innerHeight,
                       topbar: getComputedStyle(document.getElementById('topbar')).display,
                       wall: document.getElementById('wall').getBoundingClientRect().toJSON()})"""
        )
        assert (size["w"], size["h"]) == (1920, 1080)
        assert size["sw"] <= size["w"] and size["sh"] <= size["h"], size
        assert size["topbar"] == "none"  # no navigation chrome
        assert size["wall"]["width"] == 1920 and size["wall"]["height"] == 1080
        for panel in ("#wall .wall-kpis", "#wall .wall-levels", "#wall .wall-health", "#wall-map"):
            box = page.locator(panel).bounding_box()
            assert box, panel
            assert box["y"] + box["height"] <= 1080 and box["x"] + box["width"] <= 1920, panel
        # Each alarm says first what it is, in words (a long line loses the enterprise at its
        # end, not the alarm).
        alarm = page.locator("#wall .wall-list li .what", has_text="TK301.LT").first
        expect(alarm).to_have_text(
            re.compile(r"^超量程 · TK301\.LT .+ · 南京演示石化储运有限公司$")
        )
        shot(page, "wall", docs=True)
        # On a 1366 × 768 screen in English, the longer title still leaves the clock and the
        # live-feed state on the screen.
        page.set_viewport_size({"width": 1366, "height": 768})
        page.evaluate("localStorage.setItem('anjian.lang', 'en')")
        page.reload()
        page.wait_for_selector("#wall[data-ready]")
        expect(page.locator("#wall .wall-head h1")).to_have_text(re.compile("monitoring"))
        for part in (".clock", "h1", ".wall-live"):
            box = page.locator(f"#wall .wall-head {part}").evaluate(
                "e => ({right: e.getBoundingClientRect().right,"
                " cut: e.scrollWidth - e.clientWidth})"
            )
            assert box["right"] <= 1366 and box["cut"] <= 0, (part, box)
        page.evaluate("localStorage.setItem('anjian.lang', 'zh-CN')")
        page.keyboard.press("Escape")
        page.wait_for_function("() => !document.body.classList.contains('no-chrome')")
        # The enterprise's point list names the alarm in words too (in English, still).
        page.goto(f"{console.url}#/enterprise/E3")
        page.wait_for_selector(".enterprise[data-ready]")
        row = page.locator(".ov-points tr", has=page.locator("td.mono", has_text="TK301.LT"))
        expect(row.locator("td").nth(5)).to_have_text("out of range")
    finally:
        context.close()
        console.scenario("normal")
