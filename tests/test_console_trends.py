"""The trend viewer in a real browser: two points plotted from the series API with their limit
lines, a wheel zoom that refetches server-downsampled data for the new range, and a CSV export
holding exactly the rows shown."""

from __future__ import annotations

import csv
import io
import itertools
import time
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlparse

from playwright.sync_api import Page, Response, expect

from tests.console_kit import Console, login, shot

POINTS = ("E1/TK104.LT", "E1/GD-108")
SPAN_S = 1800  # the range first shown: half an hour, in buckets of a few seconds
ECHARTS = "/static/vendor/echarts/echarts.esm.min.js"
# The plotted series (non-null points) and limit lines, read from the page's ECharts instance.
PLOTTED = f"""async () => {{
  const echarts = await import("{ECHARTS}");
  const chart = echarts.getInstanceByDom(document.querySelector(".trends-chart"));
  const option = chart.getOption();
  const zoom = option.dataZoom[0];
  return {{
    series: option.series.map((s) => ({{
      name: s.name,
      step: s.step,
      points: s.data.filter((p) => p[1] !== null),
      limits: (s.markLine?.data ?? []).map((d) => [d.name, d.yAxis]),
      shaded: (s.markArea?.data ?? []).map(([from, to]) => [from.xAxis, to.xAxis]),
    }})),
    window: [zoom.startValue, zoom.endValue],
  }};
}}"""


class SeriesLog:
    """Every answer of GET /api/points/{id}/series the page received, in order."""

    def __init__(self, page: Page) -> None:
        self.answers: list[tuple[int, dict[str, str], dict[str, Any]]] = []
        page.on("response", self._on)

    def _on(self, response: Response) -> None:
        url = urlparse(response.url)
        if url.path.startswith("/api/points/") and url.path.endswith("/series") and response.ok:
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            self.answers.append((int(url.path.split("/")[3]), query, response.json()))

    def last(self, point: int) -> tuple[dict[str, str], dict[str, Any]]:
        _, query, body = next(a for a in reversed(self.answers) if a[0] == point)
        return query, body

    def of_window(self, point: int, window: list[int]) -> tuple[dict[str, str], dict[str, Any]]:
        """The answer for exactly this range (answers of older requests may come in later)."""
        start, end = (str(v) for v in window)
        for p, query, body in reversed(self.answers):
            if p == point and (query["start"], query["end"]) == (start, end):
                return query, body
        asked = [(q["start"], q["end"]) for p, q, _ in self.answers if p == point]
        raise AssertionError(f"no answer for {point} over {window}; asked: {asked}")


def _point_id(api: Any, enterprise: str, code: str) -> int:
    points = api.call("GET", "/api/points")
    return next(int(p["id"]) for p in points if (p["enterprise"], p["code"]) == (enterprise, code))


def _stored_s(series: dict[str, Any]) -> float:
    """How many seconds of the last hour a series answer covers."""
    ts = series["ts"]
    return (ts[-1] - ts[0]) / 1000 if ts else 0.0


def _settled(page: Page) -> None:
    page.wait_for_load_state("networkidle")
    expect(page.locator(".trends-chart:not([data-loading])")).to_have_count(1)


def _one_point(console: Console, page: Page, enterprise: str, code: str) -> dict[str, Any]:
    """Signs the duty officer in, shows the last SPAN_S of one point; the series answer."""
    point = _point_id(console.api("duty"), enterprise, code)
    log = SeriesLog(page)
    login(page, "duty")
    page.evaluate(f"location.hash = '#/trends?points={enterprise}/{code}&span={SPAN_S}'")
    expect(page.locator(".trends-chart[data-series='1']")).to_have_count(1)
    _settled(page)
    return log.last(point)[1]


def test_two_points_zoom_refetches_and_csv_holds_the_shown_rows(
    console: Console,
    console_page: Page,
) -> None:
    page = console_page
    duty = console.api("duty")
    ids = {f"{p['enterprise']}/{p['code']}": p["id"] for p in duty.call("GET", "/api/points")}
    rules = {r["point"]: r for r in duty.call("GET", "/api/alarms/rules")["rules"]}
    log = SeriesLog(page)
    login(page, "duty")
    # Twenty seconds of data for both points (the demo polls once a second): a few buckets of
    # the half hour first shown, more once zoomed in.
    deadline = time.monotonic() + 120
    while any(_stored_s(duty.call("GET", f"/api/points/{ids[p]}/series")) < 20 for p in POINTS):
        assert time.monotonic() < deadline, "the demo stored no 20 s of samples of the two points"
        time.sleep(2)

    page.evaluate(f"location.hash = '#/trends?points={','.join(POINTS)}&span={SPAN_S}'")
    expect(page.locator(".trends-chips .chip")).to_have_count(2)
    expect(page.locator(".trends-chart[data-series='2']")).to_have_count(1)
    _settled(page)

    # Both series are plotted with exactly the averages the server returned, and their limits.
    plotted = page.evaluate(PLOTTED)
    assert len(plotted["series"]) == 2
    for tag, series in zip(POINTS, plotted["series"], strict=True):
        assert series["name"].startswith(tag)
        _, body = log.last(ids[tag])
        served = [[ts, v] for ts, v in zip(body["ts"], body["avg"], strict=True) if v is not None]
        assert served and series["points"] == served
        rule = rules[ids[tag]]
        expected = {(n.upper(), rule[n]) for n in ("hh", "h", "l", "ll") if rule[n] is not None}
        assert {(n, v) for n, v in series["limits"]} == expected
    # Each axis (m, mg/m3) shows every limit and value, and its ends are ticks like the others,
    # evenly spaced: an end just past the data (3.249 over a tick 3) crowded the labels.
    axes = page.evaluate(f"""async () => {{
      const echarts = await import("{ECHARTS}");
      const chart = echarts.getInstanceByDom(document.querySelector(".trends-chart"));
      return chart.getModel().queryComponents({{ mainType: "yAxis" }})
        .map((m) => m.axis.scale.getTicks().map((tick) => tick.value));
    }}""")
    assert len(axes) == 2
    for ticks, series in zip(axes, plotted["series"], strict=True):
        steps = [b - a for a, b in itertools.pairwise(ticks)]
        assert 4 <= len(steps) <= 10 and max(steps) - min(steps) < 1e-9 * max(steps), ticks
        shown = [v for _, v in series["points"]] + [v for _, v in series["limits"]]
        assert ticks[0] <= min(shown) and max(shown) <= ticks[-1], (ticks, shown)
    first_query, first = log.last(ids[POINTS[0]])
    shot(page, "trends")

    # A wheel zoom at the right end (the data are in the last minutes) refetches a narrower range.
    before = len(log.answers)
    box = page.locator(".trends-chart canvas").first.bounding_box()
    assert box is not None
    plot_right = box["x"] + box["width"] - 56  # the chart's grid ends there
    page.mouse.move(plot_right - 4, box["y"] + box["height"] / 2)
    for _ in range(6):
        page.mouse.wheel(0, -300)
        page.wait_for_timeout(60)
    deadline = time.monotonic() + 10
    while len(log.answers) < before + 2:
        assert time.monotonic() < deadline, "zooming did not refetch the series"
        page.wait_for_timeout(100)
    _settled(page)
    plotted = page.evaluate(PLOTTED)
    # The window shown was asked for (and is served with finer buckets).
    query, zoomed = log.of_window(ids[POINTS[0]], plotted["window"])
    start, end = int(query["start"]), int(query["end"])
    assert int(first_query["start"]) < start < end <= int(first_query["end"])
    assert zoomed["bucket_ms"] < first["bucket_ms"] and zoomed["ts"]
    assert plotted["series"][0]["points"] == [
        [ts, v] for ts, v in zip(zoomed["ts"], zoomed["avg"], strict=True) if v is not None
    ]
    shot(page, "trends-zoomed")

    # The CSV holds one row per bucket time shown, one column per point, with a header row.
    with page.expect_download() as download:
        page.locator("button.trends-export").click()
    text = download.value.path().read_text(encoding="utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    header, body_rows = rows[0], rows[1:]
    assert len(header) == 3 and header[1].startswith(POINTS[0]) and header[2].startswith(POINTS[1])
    expected_rows: dict[int, list[str]] = {}
    for col, tag in enumerate(POINTS):
        q, answer = log.of_window(ids[tag], plotted["window"])
        lo, hi = int(q["start"]), int(q["end"])
        for ts, v in zip(answer["ts"], answer["avg"], strict=True):
            if lo <= ts <= hi:
                row = expected_rows.setdefault(ts, ["", ""])
                row[col] = "" if v is None else repr(v)
    assert len(body_rows) == len(expected_rows) > 0
    for row, ts in zip(body_rows, sorted(expected_rows), strict=True):
        assert row[0] == time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts / 1000)) + (
            f".{ts % 1000:03d}Z"
        )
        assert [float(x) if x else None for x in row[1:]] == [
            float(x) if x else None for x in expected_rows[ts]
        ]
    # (The only console error allowed: the 401 of the session probe before signing in.)
    assert [e for e in page.errors if "401" not in e] == []  # type: ignore[attr-defined]


def test_a_value_that_reports_on_change_is_held_as_a_step_line(
    console: Console,
    console_page: Page,
) -> None:
    """E2's tank valve (OPC-UA) sends a value only when it changes, and again every heartbeat:
    the viewer draws it as a step line, held between samples, broken where it went unsent for
    longer than two heartbeats."""
    page = console_page
    answer = _one_point(console, page, "E2", "TK201.XV")
    assert answer["hold_ms"] and answer["ts"], answer
    series = page.evaluate(PLOTTED)["series"][0]
    assert series["step"] == "end"
    # Held from its last sample to the end of the range (or for two heartbeats, if sooner).
    last = answer["ts"][-1]
    assert series["points"][-1] == [min(_ms(answer["end"]), last + answer["hold_ms"]), 1.0]

    # The rule itself, on a made-up answer: 30 s buckets, a 2 min hold. 5 at 0 s and 60 s is
    # one line; after 60 s nothing for 4 min, so it ends at 180 s; 7 from 300 s to the end.
    made_up = {
        "end": "1970-01-01T00:10:00Z", "bucket_ms": 30_000, "hold_ms": 120_000,
        "ts": [0, 60_000, 300_000], "last": [5, 5, 7], "avg": [5, 5, 7],
    }  # fmt: skip
    assert _drawn(page, made_up) == [
        [0, 5], [60_000, 5], [180_000, 5], [180_000, None], [300_000, 7], [420_000, 7],
    ]  # fmt: skip
    # Zoomed out to 20 min buckets, each with a heartbeat: one line, held from bucket to bucket.
    zoomed = {
        "end": "1970-01-01T02:00:00Z", "bucket_ms": 1_200_000, "hold_ms": 120_000,
        "ts": [0, 1_200_000, 2_400_000], "last": [1, 2, 3], "avg": [1, 2, 3],
    }  # fmt: skip
    assert _drawn(page, zoomed) == [[0, 1], [1_200_000, 2], [2_400_000, 3], [2_520_000, 3]]
    assert [e for e in page.errors if "401" not in e] == []  # type: ignore[attr-defined]


def test_readings_beyond_the_range_are_drawn_over_a_named_shade(
    console: Console, console_page: Page
) -> None:
    page = console_page
    duty = console.api("duty")
    point = _point_id(duty, "E3", "TK301.LT")
    # A 4–20 mA level loop at 22 mA: its readings are above the instrument range, and flagged.
    console.scenario("out_of_range", "TK301.LT", current_ma=22.0)
    try:
        deadline = time.monotonic() + 30
        while not any(duty.call("GET", f"/api/points/{point}/series")["doubtful"]):
            assert time.monotonic() < deadline, "no doubtful reading stored"
            time.sleep(1)
        log = SeriesLog(page)
        login(page, "duty")
        page.evaluate(f"location.hash = '#/trends?points=E3/TK301.LT&span={SPAN_S}'")
        expect(page.locator(".trends-chart[data-series='1']")).to_have_count(1)
        _settled(page)
    finally:
        console.scenario("normal")
    _, answer = log.last(point)
    plotted = page.evaluate(PLOTTED)["series"]
    # The readings are drawn, with a shade over their buckets and a legend entry naming it.
    flagged = [k for k, n in enumerate(answer["doubtful"]) if n]
    values = {ts: v for ts, v in plotted[0]["points"]}
    assert all(values[answer["ts"][k]] == answer["avg"][k] for k in flagged)
    assert plotted[0]["shaded"] and plotted[0]["shaded"][-1][1] == (
        answer["ts"][flagged[-1]] + answer["bucket_ms"]
    )
    assert [s["name"] for s in plotted][-1] == "可疑或超量程读数"

    # The spans on a made-up answer: adjacent buckets merge, a clean one splits them.
    made_up = {"bucket_ms": 30_000, "ts": [0, 30_000, 60_000, 120_000], "doubtful": [1, 2, 0, 1]}
    spans = page.evaluate(
        "async (a) => (await import('/static/js/series.js')).seriesDoubtful(a)", made_up
    )
    assert spans == [[0, 60_000], [120_000, 150_000]]


def _drawn(page: Page, answer: dict[str, Any], failed_value: float | None = None) -> Any:
    """The points the console's series.js draws for a series answer."""
    draw = "async ([a, v]) => (await import('/static/js/series.js')).seriesPoints(a, v)"
    return page.evaluate(draw, [answer, failed_value])


def _ms(iso: str) -> int:
    return round(datetime.fromisoformat(iso).timestamp() * 1000)


def test_a_device_link_is_drawn_on_an_axis_of_its_two_states(
    console: Console,
    console_page: Page,
) -> None:
    """A device's link point (通讯状态) is 1 while its collector reads the device: the trend
    holds it as a step line on an axis that names its two states, 中断 and 正常, not numbers."""
    page = console_page
    answer = _one_point(console, page, "E1", "GDS101.link")
    assert answer["last"] and set(answer["last"]) <= {0.0, 1.0}, answer
    axis = page.evaluate(
        f"""async () => {{
          const echarts = await import("{ECHARTS}");
          const chart = echarts.getInstanceByDom(document.querySelector(".trends-chart"));
          const y = chart.getOption().yAxis[0];
          return {{ min: y.min, max: y.max, interval: y.interval,
                    labels: [0, 1].map((v) => y.axisLabel.formatter(v)) }};
        }}"""
    )
    assert axis == {"min": 0, "max": 1, "interval": 1, "labels": ["中断", "正常"]}
    assert answer["failed"] is not None  # held: the failures that end a held value
    assert answer["back"] is not None  # and the readings that end a loss
    series = page.evaluate(PLOTTED)["series"][0]
    assert series["step"] == "end" and series["points"][-1][1] == 1.0
    shot(page, "trend-link")

    # The rule, on a made-up answer (30 s buckets): up at 0, lost at 70 s (the collector's
    # COMM_FAIL, retried at 100 s), up again at 150 s. A link is drawn at 中断 (0) while lost;
    # another held point's line breaks there instead.
    made_up = {
        "end": "1970-01-01T00:05:00Z", "bucket_ms": 30_000, "hold_ms": 10**9,
        "ts": [0, 150_000], "last": [1, 1], "failed": [70_000, 100_000], "back": [[150_000, 1]],
    }  # fmt: skip
    assert _drawn(page, made_up, 0) == [
        [0, 1], [70_000, 0], [100_000, 0], [150_000, 1], [300_000, 1],
    ]  # fmt: skip
    assert _drawn(page, made_up) == [
        [0, 1], [70_000, 1], [70_000, None], [150_000, 1], [300_000, 1],
    ]  # fmt: skip
    # Zoomed out (60 s buckets) a loss within one bucket is drawn too, from its failure at 70 s
    # to the reading at 100 s; the bucket's own value (its last reading) is drawn at its start.
    within = {
        "end": "1970-01-01T00:05:00Z", "bucket_ms": 60_000, "hold_ms": 10**9,
        "ts": [0, 60_000], "last": [1, 1], "failed": [70_000], "back": [[100_000, 1]],
    }  # fmt: skip
    assert _drawn(page, within, 0) == [
        [0, 1], [60_000, 1], [70_000, 0], [100_000, 1], [300_000, 1],
    ]  # fmt: skip
    assert _drawn(page, within) == [
        [0, 1], [60_000, 1], [70_000, 1], [70_000, None], [100_000, 1], [300_000, 1],
    ]  # fmt: skip
    # Lost at 70 s, retried at 130 s, read again at 150 s: the bucket from 120 s holds that
    # reading as its last, but the link stays lost until 150 s.
    spanning = {
        "end": "1970-01-01T00:05:00Z", "bucket_ms": 60_000, "hold_ms": 10**9,
        "ts": [0, 120_000], "last": [1, 1], "failed": [70_000, 130_000], "back": [[150_000, 1]],
    }  # fmt: skip
    assert _drawn(page, spanning, 0) == [
        [0, 1], [70_000, 0], [130_000, 0], [150_000, 1], [300_000, 1],
    ]  # fmt: skip
    assert [e for e in page.errors if "401" not in e] == []  # type: ignore[attr-defined]
