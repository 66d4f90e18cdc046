// Alarm KPIs (#/kpi) for the shift leader: annunciated alarm rates per 10 minutes, hour and day
// against the ISA-18.2 / EEMUA 191 targets (the targets, their sources and the flood rule come
// from GET /api/alarms/kpi), flood episodes, bad actors, chattering and stale alarms, and the
// priority distribution.
import * as echarts from "/static/vendor/echarts/echarts.esm.min.js";
import { get } from "../api.js";
import { clear, el, stylesheet } from "../dom.js";
import { formatFigure, formatNumber, formatTime, register, t } from "../i18n.js";
import { conditionLabel } from "./alarm-common.js";

register({
  "zh-CN": {
    "kpi.period": "统计时段", "kpi.area": "区域（企业）", "kpi.refresh": "刷新",
    "kpi.period.28800": "近8小时（一个班次）", "kpi.period.86400": "近24小时", "kpi.period.604800": "近7天",
    "kpi.annunciated": "报警总数", "kpi.per_10min": "平均每10分钟报警数", "kpi.per_hour": "平均每小时报警数",
    "kpi.per_day": "平均每天报警数", "kpi.max_10min": "10分钟最大报警数",
    "kpi.pct_10min_over_10": "超过10条/10分钟的时段占比", "kpi.pct_time_in_flood": "报警泛滥时间占比",
    "kpi.top10_share_pct": "前10个频发报警占比", "kpi.chattering": "振荡报警", "kpi.stale": "长期报警",
    "kpi.target.acceptable": "可接受 ≤ {value}", "kpi.target.manageable": "最大可管理 ≤ {value}",
    "kpi.target.single": "目标 ≤ {value}", "kpi.target.about": "目标约 {value}%",
    "kpi.status.ok": "达标", "kpi.status.warn": "超出可接受", "kpi.status.bad": "超标",
    "kpi.status.na": "不评价：仅 {n} 种报警（不多于 {top} 种时，前{top}占比必为100%）",
    "kpi.rate_chart": "每10分钟报警数", "kpi.alarms": "报警数", "kpi.flood": "泛滥 >{n}",
    "kpi.priority_chart": "报警优先级分布", "kpi.actual": "实际", "kpi.target": "目标",
    "kpi.priority.emergency": "紧急", "kpi.priority.high": "高", "kpi.priority.medium": "中", "kpi.priority.low": "低",
    "kpi.floods": "报警泛滥时段", "kpi.bad_actors": "频发报警（前{n}）", "kpi.chattering_list": "振荡报警",
    "kpi.stale_list": "长期报警（超过{hours}小时）",
    "kpi.col.start": "开始", "kpi.col.end": "结束", "kpi.col.duration": "持续", "kpi.col.alarms": "期间报警",
    "kpi.col.peak": "10分钟峰值", "kpi.col.point": "测点", "kpi.col.condition": "报警类型", "kpi.col.area": "区域",
    "kpi.col.count": "次数", "kpi.col.share": "占比", "kpi.col.activations": "触发次数",
    "kpi.col.in_window": "{s}秒内最多", "kpi.col.since": "报警起始", "kpi.col.hours": "已持续（小时）",
    "kpi.none": "无", "kpi.ongoing": "持续中", "kpi.min": "{n} 分钟",
    "kpi.counting": "统计口径：报警数为首次报警（raised）事件，重复提醒不计；泛滥：10分钟内超过{start}条开始，少于{end}条结束。",
  },
  en: {
    "kpi.period": "Period", "kpi.area": "Area (enterprise)", "kpi.refresh": "Refresh",
    "kpi.period.28800": "last 8 h (a shift)", "kpi.period.86400": "last 24 h", "kpi.period.604800": "last 7 days",
    "kpi.annunciated": "Alarms annunciated", "kpi.per_10min": "Average per 10 min", "kpi.per_hour": "Average per hour",
    "kpi.per_day": "Average per day", "kpi.max_10min": "Maximum in 10 min",
    "kpi.pct_10min_over_10": "10-min periods over 10 alarms", "kpi.pct_time_in_flood": "Time in flood",
    "kpi.top10_share_pct": "Share of the top 10 alarms", "kpi.chattering": "Chattering alarms",
    "kpi.stale": "Stale alarms",
    "kpi.target.acceptable": "acceptable ≤ {value}", "kpi.target.manageable": "maximum manageable ≤ {value}",
    "kpi.target.single": "target ≤ {value}", "kpi.target.about": "target about {value}%",
    "kpi.status.ok": "on target", "kpi.status.warn": "above acceptable", "kpi.status.bad": "over target",
    "kpi.status.na": "not assessed: only {n} distinct alarms (with {top} or fewer the top {top} are 100% by definition)",
    "kpi.rate_chart": "Alarms per 10 minutes", "kpi.alarms": "alarms", "kpi.flood": "flood >{n}",
    "kpi.priority_chart": "Priority distribution", "kpi.actual": "actual", "kpi.target": "target",
    "kpi.priority.emergency": "emergency", "kpi.priority.high": "high", "kpi.priority.medium": "medium",
    "kpi.priority.low": "low",
    "kpi.floods": "Flood episodes", "kpi.bad_actors": "Bad actors (top {n})", "kpi.chattering_list": "Chattering alarms",
    "kpi.stale_list": "Stale alarms (over {hours} h)",
    "kpi.col.start": "Start", "kpi.col.end": "End", "kpi.col.duration": "Duration", "kpi.col.alarms": "Alarms",
    "kpi.col.peak": "Peak per 10 min", "kpi.col.point": "Point", "kpi.col.condition": "Condition", "kpi.col.area": "Area",
    "kpi.col.count": "Count", "kpi.col.share": "Share", "kpi.col.activations": "Activations",
    "kpi.col.in_window": "Most in {s} s", "kpi.col.since": "Active since", "kpi.col.hours": "Active (h)",
    "kpi.none": "none", "kpi.ongoing": "ongoing", "kpi.min": "{n} min",
    "kpi.counting": "Counting: alarms are RAISED events, re-annunciations are not counted; a flood starts above {start} alarms in 10 minutes and ends below {end}.",
  },
});

const PERIODS_S = [28800, 86400, 604800];
const PRIORITIES = ["emergency", "high", "medium", "low"]; // priority 1 … 4
// Each card: the target's metric name in the API and where its figure is in a report.
const CARDS = [
  ["per_10min", (m) => m.rate.per_10min.average, 2],
  ["per_hour", (m) => m.rate.per_hour.average, 1],
  ["per_day", (m) => m.rate.per_day.average, 0],
  ["max_10min", (m) => m.rate.per_10min.max, 0],
  ["pct_10min_over_10", (m) => m.rate.per_10min.pct_periods_over_10, 1],
  ["pct_time_in_flood", (m) => m.floods.pct_time, 1],
  ["top10_share_pct", (m) => m.bad_actors.share_pct, 1],
  ["chattering", (m) => m.chattering.length, 0],
  ["stale", (m) => m.stale.length, 0],
];
const PERCENT = new Set(["pct_10min_over_10", "pct_time_in_flood", "top10_share_pct"]);

function css(name, fallback) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
}

/** The card's status against its targets: ok ≤ the lowest, warn ≤ the highest, else bad. */
function judge(value, targets) {
  if (!targets.length) return null;
  const values = targets.map((x) => x.value).sort((a, b) => a - b);
  if (value <= values[0]) return "ok";
  return value <= values[values.length - 1] ? "warn" : "bad";
}

export default {
  id: "kpi",
  nav: "nav.kpi",
  permission: "monitor:read",
  mount(container, ctx) {
    stylesheet("/static/desk.css");
    let disposed = false;
    const charts = [];
    let pointsById = new Map();
    const periodSel = el("select", { class: "kpi-period" },
      PERIODS_S.map((s) => el("option", { value: s, selected: s === 86400 }, t(`kpi.period.${s}`))));
    const areaSel = el("select", { class: "kpi-area", hidden: !!ctx.me.enterprise },
      el("option", { value: "" }, t("common.all")));
    const refresh = el("button", { type: "button", class: "kpi-refresh" }, t("kpi.refresh"));
    const cards = el("div", { class: "kpi-cards" });
    const rateBox = el("div", { class: "kpi-chart kpi-rate-chart" });
    const prioBox = el("div", { class: "kpi-chart kpi-priority-chart" });
    const tables = el("div", { class: "kpi-tables" });
    const note = el("p", { class: "muted kpi-note" });
    clear(container, el("div", { class: "kpi-page" },
      el("div", { class: "kpi-toolbar" },
        el("label", {}, t("kpi.period"), " ", periodSel),
        el("label", { hidden: !!ctx.me.enterprise }, t("kpi.area"), " ", areaSel), refresh),
      cards,
      el("div", { class: "kpi-charts" }, rateBox, prioBox),
      tables, note));

    function chartOf(box) {
      const c = echarts.init(box);
      charts.push(c);
      return c;
    }
    const rateChart = chartOf(rateBox);
    const prioChart = chartOf(prioBox);
    const resize = new ResizeObserver(() => charts.forEach((c) => c.resize()));
    resize.observe(rateBox);
    resize.observe(prioBox);

    const pointName = (id) => {
      const p = pointsById.get(id);
      return p ? `${p.enterprise}/${p.code} ${p.name}` : `#${id}`;
    };

    function renderCards(report, m) {
      clear(cards, el("div", { class: "kpi-card", dataset: { metric: "annunciated" } },
        el("div", { class: "kpi-label" }, t("kpi.annunciated")),
        el("div", { class: "kpi-value" }, formatNumber(m.annunciated, 0))),
      CARDS.map(([metric, pick, digits]) => {
        const value = pick(m);
        const targets = report.targets.filter((x) => x.metric === metric);
        // The top 10's share of a load of no more than 10 distinct alarms is 100 % whatever it is.
        const few = metric === "top10_share_pct" && m.bad_actors.distinct <= report.rules.top_n;
        const status = few ? "na" : judge(value, targets);
        // Two distinct values: the lower is "very likely acceptable", the higher the maximum.
        const values = [...new Set(targets.map((x) => x.value))].sort((a, b) => a - b);
        const lines = values.map((v, i) => t(values.length > 1
          ? (i === 0 ? "kpi.target.acceptable" : "kpi.target.manageable") : "kpi.target.single",
        { value: `${formatNumber(v, 2)}${PERCENT.has(metric) ? "%" : ""}` }));
        return el("div", {
          class: ["kpi-card", status ? `kpi-${status}` : null],
          dataset: { metric, status: status ?? "" },
          title: targets.map((x) => `${x.value} ${x.unit}: ${x.meaning} — ${x.source} [${x.mark}]`).join("\n"),
        },
        el("div", { class: "kpi-label" }, t(`kpi.${metric}`)),
        el("div", { class: "kpi-value" }, `${formatFigure(value, digits)}${PERCENT.has(metric) ? "%" : ""}`),
        el("div", { class: "kpi-targets" }, lines.join(" · ")),
        status ? el("div", { class: "kpi-status" },
          t(`kpi.status.${status}`, { n: m.bad_actors.distinct, top: report.rules.top_n })) : null);
      }));
    }

    function renderRate(report, m) {
      const start = report.period.start_ns / 1e6;
      const width = report.rules.window_s * 1000;
      const data = m.per_window.map((n, i) => [start + i * width, n]);
      const fg = css("--fg", "#ddd");
      const muted = css("--muted", "#999");
      const line = css("--line", "#333");
      const targets = report.targets.filter((x) => x.metric === "per_10min")
        .map((x) => x.value).filter((v, i, a) => a.indexOf(v) === i).sort((a, b) => a - b);
      // The acceptable rate's name at the left end, the maximum's at the right, the flood's in the
      // middle: in a flood the axis reaches far past 1, 2 and 10 alarms, their lines lie a few
      // pixels apart, and names at the same end would be written over each other.
      const marks = [
        ...targets.map((v, i) => ({
          yAxis: v, name: t(i === 0 ? "kpi.target.acceptable" : "kpi.target.manageable", { value: v }),
          lineStyle: { color: i === 0 ? css("--ok", "#2fbf71") : css("--warn-yellow", "#f5c400"), type: "dashed" },
          label: { position: i === 0 && targets.length > 1 ? "insideStartTop" : "insideEndTop" },
        })),
        { yAxis: report.rules.flood_start_above, name: t("kpi.flood", { n: report.rules.flood_start_above }),
          lineStyle: { color: css("--bad", "#ff5a5a"), type: "dashed" }, label: { position: "insideMiddleTop" } },
      ];
      rateChart.setOption({
        animation: false,
        title: { text: t("kpi.rate_chart"), textStyle: { color: fg, fontSize: 14 } },
        grid: { left: 48, right: 24, top: 40, bottom: 40 },
        tooltip: { trigger: "axis", renderMode: "richText" }, // no HTML: the CSP refuses its styles
        xAxis: { type: "time", min: start, max: report.period.end_ns / 1e6,
          axisLabel: { color: muted, hideOverlap: true }, axisLine: { lineStyle: { color: line } } },
        // Up to the flood threshold at least, so that the targets are seen against the bars; past
        // it, ECharts' own round maximum (the data's, e.g. 160, crowds the tick label 150 below it).
        yAxis: { type: "value", minInterval: 1, name: t("kpi.alarms"), nameTextStyle: { color: muted },
          max: (v) => (v.max > report.rules.flood_start_above ? null : report.rules.flood_start_above + 1),
          axisLabel: { color: muted }, splitLine: { lineStyle: { color: line, opacity: 0.5 } } },
        series: [{
          type: "bar", name: t("kpi.alarms"), data, barMaxWidth: 12, color: css("--accent", "#3d9bff"),
          markLine: { symbol: "none", silent: true, data: marks,
            label: { formatter: "{b}", position: "insideEndTop", color: muted } },
          markArea: { silent: true, itemStyle: { color: "rgba(224, 32, 32, 0.15)" },
            data: m.floods.episodes.map((e) => [{ xAxis: e.start_ns / 1e6 }, { xAxis: e.end_ns / 1e6 }]) },
        }],
      }, { notMerge: true });
    }

    function renderPriorities(report, m) {
      const fg = css("--fg", "#ddd");
      const muted = css("--muted", "#999");
      const line = css("--line", "#333");
      const target = (p) => report.targets.find((x) => x.metric === `priority_pct.${p}`)?.value ?? null;
      prioChart.setOption({
        animation: false,
        title: { text: t("kpi.priority_chart"), textStyle: { color: fg, fontSize: 14 } },
        legend: { right: 8, top: 28, textStyle: { color: fg } },
        grid: { left: 48, right: 24, top: 64, bottom: 56 },
        tooltip: { trigger: "axis", renderMode: "richText", valueFormatter: (v) => (v === null ? "—" : `${formatNumber(v, 1)}%`) },
        // Each priority's figure is written under its name, not on its bar, where a target
        // mark beside the bar's top would strike through it.
        xAxis: { type: "category", axisLabel: { color: muted, lineHeight: 16 },
          data: PRIORITIES.map((p) => `${t(`kpi.priority.${p}`)}\n${formatNumber(m.priority[p].pct, 1)}% (${m.priority[p].count})`),
          axisLine: { lineStyle: { color: line } } },
        yAxis: { type: "value", max: 100, axisLabel: { color: muted, formatter: "{value}%" },
          splitLine: { lineStyle: { color: line, opacity: 0.5 } } },
        series: [
          { type: "bar", name: t("kpi.actual"), barMaxWidth: 36,
            data: PRIORITIES.map((p, i) => ({
              value: m.priority[p].pct, itemStyle: { color: css(`--prio-${i + 1}`, "#888") },
            })) },
          { type: "scatter", name: t("kpi.target"), symbol: "rect", symbolSize: [40, 3],
            color: fg, data: PRIORITIES.map(target) },
        ],
      }, { notMerge: true });
    }

    function table(title, cols, rows, cls) {
      return el("section", { class: ["kpi-table", cls] }, el("h3", {}, title),
        rows.length === 0 ? el("p", { class: "muted" }, t("kpi.none")) : el("table", {},
          el("thead", {}, el("tr", {}, cols.map((c) => el("th", {}, c)))),
          el("tbody", {}, rows.map((r) => el("tr", {}, r.map((v) => el("td", {}, v)))))));
    }

    function renderTables(report, m) {
      const iso = (ns) => formatTime(new Date(ns / 1e6).toISOString(), true);
      clear(tables,
        table(t("kpi.floods"), ["start", "end", "duration", "alarms", "peak"].map((c) => t(`kpi.col.${c}`)),
          m.floods.episodes.map((e) => [iso(e.start_ns), e.ongoing ? t("kpi.ongoing") : iso(e.end_ns),
            t("kpi.min", { n: formatNumber(e.duration_s / 60, 1) }), e.alarms, e.peak_10min]), "kpi-floods"),
        table(t("kpi.bad_actors", { n: report.rules.top_n }),
          ["point", "condition", "area", "count", "share"].map((c) => t(`kpi.col.${c}`)),
          m.bad_actors.top.map((b) => [pointName(b.point), conditionLabel(b), b.area, b.count,
            `${formatNumber(b.share_pct, 1)}%`]), "kpi-bad-actors"),
        table(t("kpi.chattering_list"), ["point", "condition", "area", "activations", "in_window"]
          .map((c) => t(`kpi.col.${c}`, { s: report.rules.chatter_window_s })),
        m.chattering.map((c) => [pointName(c.point), conditionLabel(c), c.area, c.activations, c.max_in_window]),
        "kpi-chattering"),
        table(t("kpi.stale_list", { hours: report.rules.stale_after_s / 3600 }),
          ["point", "condition", "area", "since", "hours"].map((c) => t(`kpi.col.${c}`)),
          m.stale.map((s) => [pointName(s.point), conditionLabel(s), s.area, iso(s.active_since_ns),
            formatNumber(s.active_h, 1)]), "kpi-stale"));
      note.textContent = t("kpi.counting", { start: report.rules.flood_start_above, end: report.rules.flood_end_below });
    }

    async function load() {
      const to = Date.now();
      const from = to - Number(periodSel.value) * 1000;
      try {
        const report = await get("/api/alarms/kpi", {
          from: new Date(from).toISOString(), to: new Date(to).toISOString(), area: areaSel.value || undefined,
        }, { background: true });
        if (disposed) return;
        const m = report.overall; // of the area asked for, when one is
        renderCards(report, m);
        renderRate(report, m);
        renderPriorities(report, m);
        renderTables(report, m);
        container.querySelector(".kpi-page").dataset.loaded = String(to);
      } catch (err) {
        if (!disposed) clear(cards, el("p", { class: "error" }, t("common.error", { message: err.message })));
      }
    }

    periodSel.addEventListener("change", load);
    areaSel.addEventListener("change", load);
    refresh.addEventListener("click", load);
    const timer = setInterval(load, 60_000);
    (async () => {
      try {
        const [ents, points] = await Promise.all([get("/api/enterprises"), get("/api/points")]);
        pointsById = new Map(points.map((p) => [p.id, p]));
        for (const e of ents) areaSel.append(el("option", { value: e.code }, `${e.code} ${e.name}`));
      } catch {
        // names are a nicety: the KPIs still show with point ids
      }
      if (!disposed) await load();
    })();

    return () => {
      disposed = true;
      clearInterval(timer);
      resize.disconnect();
      charts.forEach((c) => c.dispose());
    };
  },
};
