// Trend viewer (#/trends?points=E1/TK101.LT,E1/GD-101): several points on one time axis, zoom and
// pan with server-side downsampling (GET /api/points/{id}/series for the range shown), the
// alarm limits of each point (GET /api/alarms/rules), CSV export of exactly the data shown.
import { get } from "../api.js";
import { trendChart } from "../chart.js";
import { clear, el, stylesheet } from "../dom.js";
import { formatTime, register, t } from "../i18n.js";
import { seriesDoubtful, seriesPoints, seriesStep } from "../series.js";

register({
  "zh-CN": {
    "trends.search": "搜索位号、名称、企业或重大危险源", "trends.selected": "已选测点",
    "trends.none": "请从左侧选择测点（最多 {max} 个）", "trends.range": "时间范围",
    "trends.refresh": "刷新至当前", "trends.export": "导出 CSV", "trends.no_data": "所选时段无数据",
    "trends.too_many": "最多同时显示 {max} 个测点", "trends.remove": "移除",
    "trends.shown": "显示 {start} 至 {end}，每桶 {bucket}", "trends.loading": "正在加载数据…",
    "trends.unknown": "未知测点：{points}", "trends.time": "时间",
    "trends.span.1800": "30分钟", "trends.span.3600": "1小时", "trends.span.21600": "6小时",
    "trends.span.86400": "24小时", "trends.span.604800": "7天",
    "trends.matches": "{n} 个测点", "trends.span.s": "{n}秒",
  },
  en: {
    "trends.search": "Search tag, name, enterprise or hazard source", "trends.selected": "Selected points",
    "trends.none": "Choose points on the left (at most {max})", "trends.range": "Range",
    "trends.refresh": "Up to now", "trends.export": "Export CSV", "trends.no_data": "No data in this range",
    "trends.too_many": "At most {max} points at once", "trends.remove": "Remove",
    "trends.shown": "Showing {start} to {end}, {bucket} per bucket", "trends.loading": "Loading data…",
    "trends.unknown": "Unknown points: {points}", "trends.time": "Time",
    "trends.span.1800": "30 min", "trends.span.3600": "1 h", "trends.span.21600": "6 h",
    "trends.span.86400": "24 h", "trends.span.604800": "7 days",
    "trends.matches": "{n} points", "trends.span.s": "{n} s",
  },
});

const SPANS_S = [1800, 3600, 21600, 86400, 604800];
const MAX_POINTS = 8;
const LIMITS = [["hh", "HH"], ["h", "H"], ["l", "L"], ["ll", "LL"]];

const tagOf = (p) => `${p.enterprise}/${p.code}`;

function parseTime(raw) {
  if (raw === undefined || raw === null || raw === "") return null;
  const ms = /^\d+$/.test(raw) ? Number(raw) : Date.parse(raw);
  return Number.isFinite(ms) ? ms : null;
}

function formatBucket(ms) {
  if (ms >= 3600_000 && ms % 3600_000 === 0) return `${ms / 3600_000} h`;
  if (ms >= 60_000 && ms % 60_000 === 0) return `${ms / 60_000} min`;
  return `${ms / 1000} s`;
}

function csvField(v) {
  const s = String(v);
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** The rows shown: one per bucket time in [start, end], one column per point (its average). */
export function csvOf(points, data, start, end) {
  const header = [`${t("trends.time")} (UTC)`, ...points.map((p) => `${tagOf(p)} ${p.name} [${p.unit}]`)];
  const byTime = new Map();
  points.forEach((p, col) => {
    const d = data.get(p.id);
    if (!d) return;
    d.ts.forEach((ts, i) => {
      if (ts < start || ts > end) return;
      if (!byTime.has(ts)) byTime.set(ts, new Array(points.length).fill(""));
      byTime.get(ts)[col] = d.avg[i] === null ? "" : d.avg[i];
    });
  });
  const lines = [header.map(csvField).join(",")];
  for (const ts of [...byTime.keys()].sort((a, b) => a - b)) {
    lines.push([new Date(ts).toISOString(), ...byTime.get(ts)].map(csvField).join(","));
  }
  return `\uFEFF${lines.join("\r\n")}\r\n`; // the BOM lets Excel read the Chinese names
}

export default {
  id: "trends",
  nav: "nav.trends",
  permission: "monitor:read",
  mount(container, ctx) {
    stylesheet("/static/desk.css");
    let disposed = false;
    let chart = null;
    let all = []; // every point the user may see
    let limitsOf = new Map(); // point id -> [{name, value, priority}]
    let selected = []; // points, in the order chosen
    const data = new Map(); // point id -> the last series answer for the range shown
    let generation = 0; // answers of an older request are dropped
    const now = Date.now();
    const span0 = Number(ctx.params.span) || 3600;
    let end = parseTime(ctx.params.end) ?? now;
    let start = parseTime(ctx.params.start) ?? end - span0 * 1000;
    let shown = [start, end];

    const search = el("input", { type: "search", class: "trends-search", placeholder: t("trends.search") });
    const count = el("div", { class: "muted trends-count" });
    const list = el("ul", { class: "trends-list" });
    const chips = el("div", { class: "trends-chips" });
    const status = el("div", { class: "muted trends-status", role: "status" });
    const chartBox = el("div", { class: "trends-chart" });
    const spanSelect = el("select", { class: "trends-span", "aria-label": t("trends.range") },
      [...new Set([...SPANS_S, span0])].sort((a, b) => a - b).map((s) => el("option", { value: s, selected: s === span0 },
        SPANS_S.includes(s) ? t(`trends.span.${s}`) : t("trends.span.s", { n: s }))));
    const exportButton = el("button", { type: "button", class: "trends-export", disabled: true }, t("trends.export"));
    const refreshButton = el("button", { type: "button", class: "trends-refresh" }, t("trends.refresh"));

    clear(container, el("div", { class: "trends" },
      el("aside", { class: "trends-side" }, search, count, list),
      el("section", { class: "trends-main" },
        el("div", { class: "trends-toolbar" },
          el("span", { class: "muted" }, t("trends.selected")), chips,
          el("span", { class: "spacer" }),
          el("label", {}, t("trends.range"), " ", spanSelect), refreshButton, exportButton),
        chartBox, status)));

    function setUrl() {
      const q = new URLSearchParams();
      if (selected.length) q.set("points", selected.map(tagOf).join(","));
      q.set("span", String(Math.round((end - start) / 1000)));
      // replaceState: the page stays mounted (a hashchange would remount it).
      history.replaceState(null, "", `#/trends?${q.toString().replace(/%2F/g, "/").replace(/%2C/g, ",")}`);
    }

    function renderList() {
      const words = search.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
      const hits = all.filter((p) => {
        const text = `${tagOf(p)} ${p.name} ${p.hazard_source ?? ""} ${p.hazard_source_name ?? ""}`.toLowerCase();
        return words.every((w) => text.includes(w));
      });
      count.textContent = t("trends.matches", { n: hits.length });
      const chosen = new Set(selected.map((p) => p.id));
      clear(list, hits.slice(0, 200).map((p) => el("li", {
        class: chosen.has(p.id) ? "chosen" : null,
        dataset: { point: tagOf(p) },
        tabindex: 0,
        title: `${p.hazard_source_name ?? ""} ${p.unit}`,
        onclick: () => toggle(p),
        onkeydown: (e) => { if (e.key === "Enter") toggle(p); },
      }, el("b", {}, tagOf(p)), " ", el("span", {}, p.name))));
    }

    function renderChips() {
      clear(chips, selected.length === 0
        ? el("span", { class: "muted" }, t("trends.none", { max: MAX_POINTS }))
        : selected.map((p) => el("span", { class: "chip", dataset: { point: tagOf(p) } },
          `${tagOf(p)} ${p.name}`,
          el("button", { type: "button", class: "chip-x", title: t("trends.remove"),
            "aria-label": `${t("trends.remove")} ${tagOf(p)}`, onclick: () => toggle(p) }, "×"))));
    }

    function toggle(p) {
      const at = selected.findIndex((s) => s.id === p.id);
      if (at >= 0) {
        selected.splice(at, 1);
        data.delete(p.id);
      } else if (selected.length >= MAX_POINTS) {
        status.textContent = t("trends.too_many", { max: MAX_POINTS });
        return;
      } else {
        selected.push(p);
      }
      setUrl();
      renderList();
      renderChips();
      load(shown[0], shown[1]);
    }

    function seriesOpts() {
      return selected.map((p) => ({
        name: `${tagOf(p)} ${p.name}`,
        unit: p.unit,
        // A link's failure is its state 0, lost (中断).
        points: data.has(p.id) ? seriesPoints(data.get(p.id), p.kind === "device_link" ? 0 : null) : [],
        step: data.has(p.id) ? seriesStep(data.get(p.id)) : false,
        doubtful: data.has(p.id) ? seriesDoubtful(data.get(p.id)) : [],
        // A device's link point: 1 while its collector reads it (通讯状态).
        states: p.kind === "device_link" ? [t("common.link.down"), t("common.link.up")] : null,
      }));
    }

    function limitOpts() {
      return selected.flatMap((p) => (limitsOf.get(p.id) ?? []).map((l) => ({
        ...l, series: `${tagOf(p)} ${p.name}`,
      })));
    }

    function buckets() {
      // About one bucket per two pixels of plot width: as fine as the eye can see.
      return Math.max(50, Math.min(2000, Math.round((chartBox.clientWidth || 1000) / 2)));
    }

    async function load(from, to) {
      const mine = ++generation;
      shown = [from, to];
      chartBox.dataset.loading = "1";
      status.textContent = t("trends.loading");
      try {
        const answers = await Promise.all(selected.map((p) => get(`/api/points/${p.id}/series`, {
          start: Math.floor(from), end: Math.ceil(to), buckets: buckets(),
        }, { background: true })));
        if (disposed || mine !== generation) return;
        data.clear();
        answers.forEach((a, i) => data.set(selected[i].id, a));
        chart.update({ series: seriesOpts(), limits: limitOpts() });
        const rows = answers.reduce((n, a) => n + a.ts.length, 0);
        const bucket = answers[0]?.bucket_ms;
        status.textContent = selected.length === 0 ? "" : rows === 0 ? t("trends.no_data")
          : t("trends.shown", { start: formatTime(from, true), end: formatTime(to, true), bucket: formatBucket(bucket) });
        exportButton.disabled = rows === 0;
        chartBox.dataset.series = String(answers.filter((a) => a.ts.length > 0).length);
      } catch (err) {
        if (!disposed && mine === generation) status.textContent = t("common.error", { message: err.message });
      } finally {
        if (mine === generation) delete chartBox.dataset.loading;
      }
    }

    function setExtent(spanS) {
      end = Date.now();
      start = end - spanS * 1000;
      chart.update({ start, end });
      setUrl();
      load(start, end);
    }

    search.addEventListener("input", renderList);
    spanSelect.addEventListener("change", () => setExtent(Number(spanSelect.value)));
    refreshButton.addEventListener("click", () => setExtent(Math.round((end - start) / 1000)));
    exportButton.addEventListener("click", () => {
      const [from, to] = shown;
      const blob = new Blob([csvOf(selected, data, from, to)], { type: "text/csv;charset=utf-8" });
      const stamp = (ms) => new Date(ms).toISOString().slice(0, 19).replace(/[-:]/g, "");
      const a = el("a", { href: URL.createObjectURL(blob), download: `trend-${stamp(from)}-${stamp(to)}.csv` });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
    });

    chart = trendChart(chartBox, {
      series: [], limits: [], start, end,
      onZoom: (from, to) => load(from, to),
    });

    (async () => {
      try {
        const [points, rules] = await Promise.all([get("/api/points"), get("/api/alarms/rules")]);
        if (disposed) return;
        all = points.sort((a, b) => tagOf(a).localeCompare(tagOf(b)));
        limitsOf = new Map(rules.rules.map((r) => [r.point, LIMITS
          .filter(([key]) => r[key] !== null && r[key] !== undefined)
          .map(([key, name]) => ({ name, value: r[key], priority: r.priority?.[key] }))]));
        const wanted = (ctx.params.points ?? "").split(",").map((s) => s.trim()).filter(Boolean);
        const unknown = [];
        for (const w of wanted.slice(0, MAX_POINTS)) {
          const p = all.find((x) => tagOf(x) === w || String(x.id) === w);
          if (p && !selected.includes(p)) selected.push(p);
          else if (!p) unknown.push(w);
        }
        renderList();
        renderChips();
        await load(start, end);
        if (unknown.length) status.textContent = t("trends.unknown", { points: unknown.join(", ") });
      } catch (err) {
        if (!disposed) status.textContent = t("common.error", { message: err.message });
      }
    })();

    return () => {
      disposed = true;
      chart?.dispose();
    };
  },
};
