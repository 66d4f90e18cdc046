// An alarm's detail (#/alarm/<id>): what and where, its event history, the trend ±30 minutes
// around it with the limits drawn, and a slot for the linked camera (filled by the video work).
import { alarmMedia } from "../alarm_media.js";
import { get } from "../api.js";
import { clear, el } from "../dom.js";
import { formatNumber, formatTime, named, register, t } from "../i18n.js";
import { subscribe } from "../live.js";
import { seriesDoubtful, seriesPoints, seriesStep } from "../series.js";
import {
  UNACKED, acknowledge, canOperate, conditionLabel, formatReading, loadNames, priorityBadge, shelve,
  unshelve,
} from "./alarm-common.js";

register({
  "zh-CN": {
    "alarm.back": "← 返回报警列表", "alarm.not_found": "没有该报警（或无权查看）",
    "alarm.what": "报警", "alarm.place": "位置", "alarm.history": "事件记录", "alarm.trend": "趋势（报警前后30分钟）",
    "alarm.camera": "关联摄像机",
    "alarm.enterprise": "企业", "alarm.hazard_source": "重大危险源", "alarm.grade": "{grade}级",
    "alarm.position": "坐标", "alarm.address": "地址", "alarm.device": "采集设备",
    "alarm.point": "监测点", "alarm.value_at_raise": "报警值", "alarm.value": "当前值",
    "alarm.raised_at": "报警时间", "alarm.state": "状态", "alarm.limits": "报警限值",
    "alarm.limit.gas.hh": "二级", "alarm.limit.gas.h": "一级",
    "alarm.suppressed": "抑制原因", "alarm.suppressing": "抑制",
    "alarm.suppressing_n": "同一原因的 {n} 条报警已被抑制（报警列表：状态“已抑制”）",
    "alarm.acked": "确认", "alarm.shelved": "屏蔽", "alarm.time": "时间", "alarm.event": "事件",
    "alarm.who": "操作人", "alarm.event_value": "值", "alarm.why": "说明", "alarm.transition": "状态变化",
    "alarm.escalated_to": "通知{to}（第 {n} 次）",
    "alarm.no_data": "该时段没有数据", "alarm.chart_missing": "趋势图组件尚未就绪",
    "alarm.open_trends": "在趋势页打开", "alarm.open_enterprise": "查看企业",
  },
  en: {
    "alarm.back": "← Back to the alarm board", "alarm.not_found": "No such alarm (or not yours to see)",
    "alarm.what": "Alarm", "alarm.place": "Place", "alarm.history": "Event history",
    "alarm.trend": "Trend (30 minutes either side)", "alarm.camera": "Linked camera",
    "alarm.enterprise": "Enterprise", "alarm.hazard_source": "Hazard source", "alarm.grade": "grade {grade}",
    "alarm.position": "Position", "alarm.address": "Address", "alarm.device": "Device",
    "alarm.point": "Point", "alarm.value_at_raise": "Value at raise", "alarm.value": "Value",
    "alarm.raised_at": "Raised", "alarm.state": "State", "alarm.limits": "Limits",
    "alarm.limit.gas.hh": "level 2", "alarm.limit.gas.h": "level 1",
    "alarm.suppressed": "Suppressed by", "alarm.suppressing": "Suppresses",
    "alarm.suppressing_n": "{n} alarms of the same cause (board: state “suppressed”)",
    "alarm.acked": "Acknowledged", "alarm.shelved": "Shelved", "alarm.time": "Time", "alarm.event": "Event",
    "alarm.who": "By", "alarm.event_value": "Value", "alarm.why": "Note", "alarm.transition": "State change",
    "alarm.escalated_to": "{to} notified (notice {n})",
    "alarm.no_data": "No data in this period", "alarm.chart_missing": "The trend chart is not available yet",
    "alarm.open_trends": "Open in trends", "alarm.open_enterprise": "Open the enterprise",
  },
});

const HALF_WINDOW_MS = 30 * 60 * 1000;
const BUCKETS = 360;
const LIMIT_PRIORITY = { hh: 1, h: 2, l: 2, ll: 1 };

/** The alarm's limits in force, [[key, value]], highest first. */
const limitsOf = (a) => ["hh", "h", "l", "ll"].filter((k) => Number.isFinite(a.limits?.[k])).map((k) => [k, a.limits[k]]);

/** A limit's name: a gas detector's high limits are its GB/T 50493 一级/二级 alarms. */
function limitName(a, key) {
  return a.kind === "gas" && (key === "hh" || key === "h") ? t(`alarm.limit.gas.${key}`) : key.toUpperCase();
}

function dl(rows) {
  return el("dl", { class: "facts" }, rows.filter(Boolean).flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v ?? "—")]));
}

export default {
  id: "alarm",
  nav: null,
  parent: "board", // highlighted in the navigation
  permission: "monitor:read",
  mount(container, ctx) {
    const id = Number(ctx.params.arg);
    const operate = canOperate(ctx.me);
    let alive = true;
    let alarm = null;
    let chart = null;
    let chartRange = null;
    let reloadTimer = null;

    const head = el("div", { class: "alarm-head" });
    const actions = el("div", { class: "alarm-actions" });
    const what = el("section", { class: "panel alarm-what" });
    const place = el("section", { class: "panel alarm-place" });
    const history = el("section", { class: "panel alarm-history" });
    const trendBox = el("div", { class: "alarm-chart" });
    const trendNote = el("p", { class: "muted", hidden: true });
    const cameraSlot = el("div", { class: "camera-slot", "data-camera": "" });
    const camera = el("section", { class: "panel alarm-camera", "data-slot": "camera" },
      el("h3", {}, t("alarm.camera")), cameraSlot);
    let media = null; // the linked cameras live, and the clip and snapshot saved on the alarm
    container.append(el("div", { class: "alarm-detail" },
      el("a", { href: "#/board", class: "back" }, t("alarm.back")),
      head, actions,
      el("div", { class: "alarm-grid" },
        what, place,
        el("section", { class: "panel alarm-trend" }, el("h3", {}, t("alarm.trend")), trendBox, trendNote),
        camera, history)));

    function renderHead(a) {
      clear(head, priorityBadge(a.priority),
        el("h2", {}, `${a.code ?? ""} ${a.name ?? ""} · ${conditionLabel(a)}`),
        el("span", { class: ["state-tag", `state-${a.state}`, UNACKED.has(a.state) && "unacked"] }, t(`board.state.${a.state}`)));
      head.className = `alarm-head prio-${a.priority}`;
      clear(actions);
      if (!operate) return;
      const refresh = (done) => { if (done) load(); };
      actions.append(
        el("button", { type: "button", class: "primary", "data-action": "ack", disabled: !UNACKED.has(a.state),
          onclick: async () => refresh(await acknowledge([a])) }, t("board.ack")),
        a.state === "shelved"
          ? el("button", { type: "button", "data-action": "unshelve", onclick: async () => refresh(await unshelve(a)) }, t("board.unshelve"))
          : el("button", { type: "button", "data-action": "shelve", disabled: a.state === "out_of_service",
            onclick: async () => refresh(await shelve(a)) }, t("board.shelve")),
        el("a", { href: `#/trends?points=${encodeURIComponent(a.point)}`, class: "button-link" }, t("alarm.open_trends")));
    }

    function renderWhat(a) {
      const limits = limitsOf(a).map(([k, v]) => `${limitName(a, k)} ${formatNumber(v, 3)} ${a.unit ?? ""}`.trim()).join(" · ");
      clear(what, el("h3", {}, t("alarm.what")), dl([
        [t("alarm.state"), t(`board.state.${a.state}`)],
        [t("board.priority"), `P${a.priority} ${t(`board.priority.${a.priority}`)}`],
        [t("board.class"), a.class ? t(`board.class.${a.class}`) : "—"],
        [t("alarm.raised_at"), formatTime(a.raised_at, true)],
        [t("alarm.value_at_raise"), formatReading(a.value_at_raise, a)],
        [t("alarm.value"), formatReading(a.value, a)],
        [t("alarm.limits"), limits || "—"],
        a.acked_by && [t("alarm.acked"), `${a.acked_by} · ${formatTime(a.acked_at, true)}${a.ack_comment ? ` · ${a.ack_comment}` : ""}`],
        a.state === "shelved" && [t("alarm.shelved"), `${a.shelve_reason ?? ""} · ${a.shelved_until ? formatTime(a.shelved_until, true) : t("board.shelved_once")}`],
        a.state === "suppressed" && a.suppressed && [t("alarm.suppressed"), a.suppressed],
        a.suppressing > 0 && [t("alarm.suppressing"), t("alarm.suppressing_n", { n: a.suppressing })],
      ]));
    }

    async function renderPlace(a) {
      const names = await loadNames().catch(() => null);
      const point = names?.points.get(a.point);
      const enterprise = names?.enterprises.get(a.enterprise);
      let source = null;
      try {
        const overview = await get("/api/overview", { enterprise: a.enterprise });
        source = overview.enterprises?.[0]?.hazard_sources?.find((h) => h.code === a.hazard_source) ?? null;
      } catch {
        /* the overview endpoint is optional here: the place is shown without the source's position */
      }
      if (!alive) return;
      const lonlat = source?.lon != null ? source : enterprise;
      const position = lonlat?.lon != null ? `${Number(lonlat.lon).toFixed(6)}°E, ${Number(lonlat.lat).toFixed(6)}°N (WGS-84)` : "—";
      clear(place, el("h3", {}, t("alarm.place")), dl([
        [t("alarm.enterprise"), el("a", { href: `#/enterprise/${encodeURIComponent(a.enterprise ?? "")}` },
          `${enterprise?.name ?? a.enterprise ?? "—"} (${a.enterprise ?? ""})`)],
        [t("alarm.hazard_source"), a.hazard_source
          ? `${source?.name ?? point?.hazard_source_name ?? ""} (${a.hazard_source})${source?.grade ? ` · ${t("alarm.grade", { grade: source.grade })}` : ""}`
          : "—"],
        [t("alarm.point"), `${a.code ?? ""} ${a.name ?? ""}`],
        point && [t("alarm.device"), `${point.device} (${point.protocol})`],
        [t("alarm.position"), position],
        enterprise?.address && [t("alarm.address"), enterprise.address],
      ]));
    }

    function renderHistory(events) {
      clear(history, el("h3", {}, t("alarm.history")),
        el("table", { class: "events" },
          el("thead", {}, el("tr", {}, el("th", {}, t("alarm.time")), el("th", {}, t("alarm.event")),
            el("th", {}, t("alarm.transition")), el("th", { class: "num" }, t("alarm.event_value")),
            el("th", {}, t("alarm.who")), el("th", {}, t("alarm.why")))),
          el("tbody", {}, events.map((e) => el("tr", { dataset: { kind: e.kind } },
            el("td", { class: "num" }, formatTime(e.ts, true)),
            el("td", {}, t(`board.kind.${e.kind}`)),
            el("td", {}, `${t(`board.state.${e.from}`)} → ${t(`board.state.${e.to}`)}`),
            el("td", { class: "num" }, formatNumber(e.value, 3)),
            el("td", {}, e.who ?? ""),
            el("td", {}, e.kind === "escalated" ? escalatedTo(e.detail ?? {}) : e.why ?? ""))))));
    }

    function escalatedTo(d) {
      return t("alarm.escalated_to", { to: named(d), n: d.attempt });
    }

    async function series(start, end) {
      const s = await get(`/api/points/${alarm.point}/series`, { start: Math.round(start), end: Math.round(end), buckets: BUCKETS });
      const name = `${alarm.code} ${alarm.name ?? ""}`.trim();
      const link = alarm.kind === "device_link"; // 1 while read, 0 (中断) from a failure
      return [{
        name, unit: alarm.unit ?? "", points: seriesPoints(s, link ? 0 : null), step: seriesStep(s),
        doubtful: seriesDoubtful(s), states: link ? [t("common.link.down"), t("common.link.up")] : null,
      }];
    }

    async function renderTrend(a) {
      const raised = Date.parse(a.raised_at);
      if (!Number.isFinite(raised)) return;
      const start = raised - HALF_WINDOW_MS;
      const end = raised + HALF_WINDOW_MS;
      const [from, to] = chartRange ?? [start, end];
      let data;
      try {
        data = await series(from, Math.min(to, Date.now()) > from ? Math.min(to, Date.now()) : to);
      } catch (err) {
        trendNote.hidden = false;
        trendNote.textContent = t("common.error", { message: err.message });
        return;
      }
      if (!alive) return;
      trendNote.hidden = data[0].points.length > 0;
      trendNote.textContent = t("alarm.no_data");
      const name = data[0].name;
      const limits = limitsOf(a).map(([k, v]) => ({ name: limitName(a, k), value: v, series: name, priority: LIMIT_PRIORITY[k] }));
      if (chart) {
        chart.update({ series: data });
        return;
      }
      let module;
      try {
        module = await import("../chart.js");
      } catch {
        trendNote.hidden = false;
        trendNote.textContent = t("alarm.chart_missing");
        return;
      }
      if (!alive) return;
      chart = module.trendChart(trendBox, {
        series: data, limits, start, end,
        onZoom: async (s, e) => {
          chartRange = [s, e];
          const zoomed = await series(s, e).catch(() => null);
          if (zoomed && alive) chart.update({ series: zoomed });
        },
      });
    }

    async function load() {
      try {
        alarm = await get(`/api/alarms/${id}`);
      } catch (err) {
        if (!alive) return;
        clear(head, el("h2", {}, err.status === 404 ? t("alarm.not_found") : t("common.error", { message: err.message })));
        return;
      }
      if (!alive) return;
      const names = await loadNames().catch(() => null);
      const p = names?.points.get(alarm.point);
      alarm.name ??= p?.name;
      renderHead(alarm);
      renderWhat(alarm);
      renderHistory(alarm.events ?? []);
      renderPlace(alarm);
      renderTrend(alarm);
      media ??= alarmMedia(cameraSlot, { id: alarm.id, point: alarm.point });
    }

    // The alarm's own events reload the detail; the trend follows the live values.
    const stop = subscribe("alarms", (msg) => {
      if (msg.type === "alarms_resync" || (msg.events ?? []).some((e) => e.alarm === id)) {
        clearTimeout(reloadTimer);
        reloadTimer = setTimeout(load, 150);
      }
    });
    const trendTimer = setInterval(() => {
      if (alarm && !chartRange && Date.parse(alarm.raised_at) + HALF_WINDOW_MS > Date.now()) renderTrend(alarm);
    }, 5000);
    load();

    return () => {
      alive = false;
      stop();
      clearTimeout(reloadTimer);
      clearInterval(trendTimer);
      chart?.dispose();
      media?.destroy();
    };
  },
};
