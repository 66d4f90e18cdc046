// Trend chart helper over the vendored ECharts: several series (one y axis per unit), limit
// lines, zoom and pan with a callback so the caller can refetch server-downsampled data for the
// range shown, colours from the page's CSS variables (dark or light theme).
//
//   const chart = trendChart(div, {
//     series: [{ name: "TK101 液位", unit: "m", points: [[ms, value], ...], step: false,
//                doubtful: [[ms, ms], ...] }],  // spans of doubtful readings, shaded
//     limits: [{ name: "HH", value: 9.5, series: "TK101 液位", priority: 1 }],
//     start: ms, end: ms,            // the full extent of the time axis
//     onZoom(start, end) { ... },    // the range shown changed (debounced); refetch it
//   });
//   chart.update({ series });        // new data (the zoom window is kept)
//   chart.update({ start, end });    // new extent (the zoom window is reset to all of it)
//   chart.range();                   // [start, end] shown now, in ms
//   chart.dispose();
//
// A limit attaches to the series named by `series` (default: the first one); `priority` 1..4
// colours it with --prio-<n>, otherwise --limit.
import * as echarts from "/static/vendor/echarts/echarts.esm.min.js";
import { register, t } from "./i18n.js";

register({
  "zh-CN": { "chart.doubtful": "可疑或超量程读数" },
  en: { "chart.doubtful": "doubtful or out-of-range readings" },
});

const ZOOM_DEBOUNCE_MS = 250;
const FALLBACK = {
  "--fg": "#d8dee9",
  "--muted": "#8a93a6",
  "--line": "#39414f",
  "--panel": "#1b2029",
  "--limit": "#e02020",
  "--prio-1": "#e02020",
  "--prio-2": "#ff7f00",
  "--prio-3": "#f5c400",
  "--prio-4": "#1e6fff",
};
const PALETTE = ["#4ea1ff", "#3ecf8e", "#f2a33a", "#c77dff", "#ff6b81", "#2ec4d6", "#b5e061"];

function colours(node) {
  const style = getComputedStyle(node);
  const get = (name) => style.getPropertyValue(name).trim() || FALLBACK[name];
  const palette = [];
  for (let i = 1; i <= PALETTE.length; i++) {
    palette.push(style.getPropertyValue(`--series-${i}`).trim() || PALETTE[i - 1]);
  }
  return {
    fg: get("--fg"), muted: get("--muted"), line: get("--line"), panel: get("--panel"),
    limit: get("--limit"), prio: [1, 2, 3, 4].map((p) => get(`--prio-${p}`)), palette,
  };
}

function formatValue(v, unit) {
  if (v === null || v === undefined || Number.isNaN(v)) return "—";
  const abs = Math.abs(v);
  const digits = abs >= 1000 ? 0 : abs >= 100 ? 1 : abs >= 1 ? 2 : 3;
  return `${v.toFixed(digits)}${unit ? ` ${unit}` : ""}`;
}

function two(n) {
  return String(n).padStart(2, "0");
}

// An axis over [lo, hi] with 5 % to spare on each side, its ends and ticks on one 1-2-5 grid of
// 4 to 10 intervals, so that an end's label is a tick like the others (an end of 3.249 crowded the
// tick 3 below it).
function niceAxis(lo, hi) {
  const span = hi - lo || Math.abs(hi) || 1;
  const margin = span * 0.05;
  const least = (span + 2 * margin) / 8; // 8 intervals, and one more at each end for rounding
  const power = 10 ** Math.floor(Math.log10(least));
  const interval = [1, 2, 5, 10].map((m) => m * power).find((step) => step >= least * (1 - 1e-9));
  const on = (v) => Number(v.toPrecision(12)); // 7 × 0.1 is 0.7000000000000001
  let min = on(Math.floor((lo - margin) / interval) * interval);
  if (lo >= 0 && min < 0) min = 0; // a positive quantity keeps its zero
  return { min, max: on(Math.ceil((hi + margin) / interval) * interval), interval };
}

function formatTime(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ` +
    `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}

export function trendChart(container, opts) {
  const chart = echarts.init(container, null, { renderer: "canvas" });
  let state = { series: [], limits: [], start: null, end: null, onZoom: null, ...opts };
  let view = [state.start, state.end]; // the zoom window, ms
  let timer = null;
  let applying = false; // our own setOption must not look like a user's zoom

  function build() {
    const c = colours(container);
    const units = [...new Set(state.series.map((s) => s.unit ?? ""))];
    const firstName = state.series[0]?.name;
    const limitsOn = (s) => (state.limits ?? []).filter((l) => (l.series ?? firstName) === s.name);
    // Each axis reaches out to the limits drawn on it, so that every limit line is seen.
    const reach = units.map((unit) => {
      const on = state.series.filter((s) => (s.unit ?? "") === unit);
      const limits = on.flatMap((s) => limitsOn(s).map((l) => l.value)).filter(Number.isFinite);
      if (!limits.length) return null;
      let [lo, hi] = [Math.min(...limits), Math.max(...limits)];
      for (const s of on) {
        for (const [, v] of s.points) {
          if (Number.isFinite(v)) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
        }
      }
      return niceAxis(lo, hi);
    });
    // An axis whose every series is of states (`states`: the name of 0, of 1, …) shows those
    // names at their values, and nothing between them.
    const statesOf = units.map((unit) => {
      const on = state.series.filter((s) => (s.unit ?? "") === unit);
      return on.every((s) => s.states?.length) ? on[0].states : null;
    });
    for (const [i, names] of statesOf.entries()) {
      if (names) reach[i] = { min: 0, max: names.length - 1, interval: 1 };
    }
    const yAxis = units.map((unit, i) => ({
      type: "value",
      name: unit,
      scale: true,
      min: reach[i]?.min,
      max: reach[i]?.max,
      interval: reach[i]?.interval,
      position: i % 2 === 0 ? "left" : "right",
      offset: Math.floor(i / 2) * 56,
      nameTextStyle: { color: c.muted },
      axisLine: { show: true, lineStyle: { color: c.line } },
      axisLabel: {
        color: c.muted,
        formatter: (v) => (statesOf[i] ? statesOf[i][v] ?? "" : String(Number(v.toPrecision(4)))),
      },
      splitLine: { show: i === 0, lineStyle: { color: c.line, opacity: 0.5 } },
    }));
    if (yAxis.length === 0) yAxis.push({ type: "value", axisLabel: { color: c.muted } });
    const series = state.series.map((s, i) => {
      const mine = limitsOn(s);
      return {
        type: "line",
        name: s.name,
        yAxisIndex: Math.max(0, units.indexOf(s.unit ?? "")),
        data: s.points,
        showSymbol: false,
        sampling: "lttb",
        connectNulls: false,
        step: s.step ?? false,
        lineStyle: { width: 1.5 },
        color: c.palette[i % c.palette.length],
        // Doubtful readings (uncertain, beyond the instrument range) are drawn, over a shade
        // that the legend names.
        markArea: !s.doubtful?.length ? undefined : {
          silent: true,
          animation: false,
          itemStyle: { color: c.prio[2], opacity: 0.15 },
          label: { show: false },
          data: s.doubtful.map(([from, to]) => [{ xAxis: from }, { xAxis: to }]),
        },
        markLine: mine.length === 0 ? undefined : {
          symbol: "none",
          silent: true,
          animation: false,
          data: mine.map((l) => {
            const colour = l.priority >= 1 && l.priority <= 4 ? c.prio[l.priority - 1] : c.limit;
            return {
              name: l.name,
              yAxis: l.value,
              lineStyle: { color: colour, type: "dashed", width: 1 },
              label: {
                formatter: `${l.name} ${formatValue(l.value, s.unit)}`,
                // Next to the axis the series is read on.
                color: colour, position: units.indexOf(s.unit ?? "") % 2 ? "insideEndTop" : "insideStartTop",
              },
            };
          }),
        },
      };
    });
    if (state.series.some((s) => s.doubtful?.length)) {
      // A legend entry for the shade only: no data of its own.
      series.push({
        type: "line", name: t("chart.doubtful"), data: [], silent: true,
        color: c.prio[2], itemStyle: { opacity: 0.5 }, legendIcon: "rect",
      });
    }
    const left = 56 * Math.ceil(units.length / 2);
    const right = units.length > 1 ? 56 * Math.floor(units.length / 2) : 24;
    return {
      backgroundColor: "transparent",
      animation: false,
      textStyle: { color: c.fg },
      grid: { left, right, top: 36, bottom: 72 },
      legend: { top: 4, textStyle: { color: c.fg }, inactiveColor: c.muted },
      tooltip: {
        trigger: "axis",
        // Drawn on the canvas: an HTML tooltip carries style attributes, which the CSP refuses.
        renderMode: "richText",
        backgroundColor: c.panel,
        borderColor: c.line,
        textStyle: { color: c.fg },
        formatter(items) {
          if (!items.length) return "";
          const lines = [formatTime(items[0].value[0])];
          for (const it of items) {
            const s = state.series[it.seriesIndex];
            if (!s) continue; // the shade's legend entry
            const at = it.value[0];
            const doubtful = s.doubtful?.some(([from, to]) => at >= from && at < to);
            const v = it.value[1];
            const shown = s.states?.[v] ?? formatValue(v, s.unit);
            lines.push(`${it.marker}${it.seriesName}: ${shown}` +
              (doubtful ? ` (${t("chart.doubtful")})` : ""));
          }
          return lines.join("\n");
        },
      },
      xAxis: {
        type: "time",
        min: state.start ?? undefined,
        max: state.end ?? undefined,
        axisLine: { lineStyle: { color: c.line } },
        axisLabel: { color: c.muted, hideOverlap: true },
        splitLine: { show: false },
      },
      yAxis,
      dataZoom: [
        { type: "inside", xAxisIndex: 0, filterMode: "none",
          startValue: view[0] ?? undefined, endValue: view[1] ?? undefined },
        { type: "slider", xAxisIndex: 0, filterMode: "none", height: 24, bottom: 16,
          startValue: view[0] ?? undefined, endValue: view[1] ?? undefined,
          textStyle: { color: c.muted }, borderColor: c.line,
          labelFormatter: (v) => formatTime(v) },
      ],
      series,
    };
  }

  function render() {
    applying = true;
    try {
      chart.setOption(build(), { notMerge: true, lazyUpdate: false });
    } finally {
      applying = false;
    }
  }

  // The window after a zoom or pan, in ms, from ECharts' own record of it.
  function currentWindow() {
    const dz = chart.getOption().dataZoom?.[0];
    if (!dz) return view;
    const s = dz.startValue ?? state.start;
    const e = dz.endValue ?? state.end;
    return [Math.round(Number(s)), Math.round(Number(e))];
  }

  chart.on("datazoom", () => {
    if (applying) return;
    view = currentWindow();
    clearTimeout(timer);
    timer = setTimeout(() => {
      if (typeof state.onZoom === "function") state.onZoom(view[0], view[1]);
    }, ZOOM_DEBOUNCE_MS);
  });

  const resize = new ResizeObserver(() => chart.resize());
  resize.observe(container);
  // A theme switch changes the CSS variables: re-read them.
  const rerender = () => render();
  const themeWatch = new MutationObserver(rerender);
  themeWatch.observe(document.documentElement, {
    attributes: true, attributeFilter: ["class", "data-theme", "style"],
  });
  themeWatch.observe(document.body, { attributes: true, attributeFilter: ["class", "data-theme"] });
  const media = window.matchMedia("(prefers-color-scheme: dark)");
  media.addEventListener("change", rerender);

  render();

  return {
    update(next) {
      const extentChanged = ("start" in next && next.start !== state.start) ||
        ("end" in next && next.end !== state.end);
      state = { ...state, ...next };
      if (extentChanged) view = [state.start, state.end];
      render();
    },
    range() {
      return [view[0] ?? state.start, view[1] ?? state.end];
    },
    // The ECharts instance, for tests and for callers that need more.
    get echarts() {
      return chart;
    },
    dispose() {
      clearTimeout(timer);
      resize.disconnect();
      themeWatch.disconnect();
      media.removeEventListener("change", rerender);
      chart.dispose();
    },
  };
}
