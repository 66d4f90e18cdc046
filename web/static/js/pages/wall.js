// Wall display (大屏, #/wall): the whole screen (designed for 1920×1080) without scrolling: KPIs
// and open warnings by level, pipeline health, the map of enterprises coloured by warning, a
// compact read-only alarm board (GET /api/alarms + the live `alarms` topic) and the enterprises.
// Escape leaves it (main.js).
import { get } from "../api.js";
import { clear, el, stylesheet } from "../dom.js";
import * as health from "../health.js";
import { formatNumber, formatTime, register, t } from "../i18n.js";
import { isConnected, onStatus } from "../live.js";
import { enterpriseMap } from "../map.js";
import { conditionLabel } from "./alarm-common.js";
import { levelBadge, levelLabel, lifecycle, rate, tooltipLines } from "./overview.js";

const BOARD_ROWS = 14;

register({
  "zh-CN": {
    "wall.title": "危险化学品安全生产风险监测预警", "wall.kpis": "总体态势", "wall.warnings": "预警",
    "wall.alarms": "实时报警", "wall.health": "数据链路", "wall.map": "重大危险源分布",
    "wall.enterprises": "企业", "wall.points": "监测点在线率", "wall.active": "报警", "wall.unack": "未确认",
    "wall.ingest": "采集速率", "wall.latency": "端到端延迟", "wall.collectors": "采集器",
    "wall.cameras": "摄像机", "wall.database": "数据库", "wall.live": "实时连接",
    "wall.up_down": "{up} 在线 / {down} 离线", "wall.per_s": "{n} 点/秒", "wall.ms": "{p50} ms（最大 {max}）",
    "wall.no_alarms": "当前没有报警", "wall.more": "另有 {n} 条", "wall.exit": "Esc 退出",
    "wall.live_on": "● 实时", "wall.live_off": "○ 断开",
  },
  en: {
    "wall.title": "Hazardous chemicals safety risk monitoring", "wall.kpis": "Situation", "wall.warnings": "Warnings",
    "wall.alarms": "Live alarms", "wall.health": "Pipeline", "wall.map": "Major hazard sources",
    "wall.enterprises": "Enterprises", "wall.points": "Points online", "wall.active": "Alarms", "wall.unack": "Unack.",
    "wall.ingest": "Ingest", "wall.latency": "End-to-end latency", "wall.collectors": "Collectors",
    "wall.cameras": "Cameras", "wall.database": "Database", "wall.live": "Live feed",
    "wall.up_down": "{up} up / {down} down", "wall.per_s": "{n} samples/s", "wall.ms": "{p50} ms (max {max})",
    "wall.no_alarms": "No alarms", "wall.more": "{n} more", "wall.exit": "Esc to leave",
    "wall.live_on": "● live", "wall.live_off": "○ offline",
  },
});

function panel(title, body, cls = "") {
  return el("section", { class: ["wall-panel", cls] }, el("h2", {}, t(title)), body);
}

function situation(totals) {
  const a = totals.alarms;
  return el("div", {},
    el("div", { class: "wall-kpis" },
      el("div", { class: "kpi" }, el("b", {}, String(totals.enterprises)), el("span", {}, t("wall.enterprises"))),
      el("div", { class: "kpi" }, el("b", {}, rate(totals.online_rate)), el("span", {}, `${t("wall.points")} ${totals.online}/${totals.points}`)),
      el("div", { class: "kpi" }, el("b", { class: a.total ? "bad" : "" }, String(a.total)), el("span", {}, t("wall.active"))),
      el("div", { class: "kpi" }, el("b", { class: a.unack ? "bad" : "" }, String(a.unack)), el("span", {}, t("wall.unack")))),
    el("div", { class: "wall-prios" }, ["1", "2", "3", "4"].map((p) =>
      el("div", { class: `prio-${p}` }, el("b", {}, String(a.by_priority[p])), el("span", { class: `prio-chip prio-${p}` }, `P${p}`)))));
}

function levels(totals) {
  return el("div", { class: "wall-levels" }, ["red", "orange", "yellow", "blue"].map((l) =>
    el("div", { class: `lv-${l}` }, el("b", {}, String(totals.warnings[l] ?? 0)), levelLabel(l))));
}

function healthList(s, connected) {
  const row = (k, v, bad = false) => [el("dt", {}, t(k)), el("dd", { class: bad ? "bad" : "" }, v)];
  const updown = (up, down) => (up === null && down === null ? "—" : t("wall.up_down", { up: up ?? 0, down: down ?? 0 }));
  return el("dl", { class: "wall-health" },
    row("wall.ingest", s.samples_per_s === null ? "—" : t("wall.per_s", { n: formatNumber(s.samples_per_s, 1) })),
    row("wall.latency", s.latency_p50_ms === null ? "—" : t("wall.ms", { p50: Math.round(s.latency_p50_ms), max: Math.round(s.latency_max_ms) })),
    row("wall.collectors", updown(s.collectors_up, s.collectors_down), (s.collectors_down ?? 0) > 0),
    row("wall.cameras", updown(s.cameras_up, s.cameras_down), (s.cameras_down ?? 0) > 0),
    row("wall.database", s.database ?? "—"),
    row("wall.live", t(connected ? "wall.live_on" : "wall.live_off"), !connected));
}

function board(alarms, names) {
  if (!alarms.length) return el("p", { class: "wall-empty" }, t("wall.no_alarms"));
  const shown = alarms.slice(0, BOARD_ROWS);
  return el("ul", { class: "wall-list" },
    shown.map((a) => el("li", { class: a.state === "unack" || a.state === "rtn_unack" ? "unack" : "" },
      el("span", { class: `prio-chip prio-${a.priority}` }, `P${a.priority}`),
      // What the alarm is first: a long line loses its end (the enterprise), not the alarm.
      el("span", { class: "what" }, `${conditionLabel(a)} · ${a.code ?? ""} ${a.name ?? ""} · ${names.get(a.enterprise) ?? a.enterprise ?? ""}`),
      el("span", { class: "when" }, formatTime(a.raised_at)))),
    alarms.length > shown.length ? el("li", { class: "wall-empty" }, t("wall.more", { n: alarms.length - shown.length })) : null);
}

function enterpriseList(enterprises) {
  return el("ul", { class: "wall-list" }, enterprises.map((e) => el("li", { class: "wall-ent" },
    el("span", { class: "what" }, e.name), levelBadge(e.warning), el("span", { class: "when" }, rate(e.online_rate)))));
}

export default {
  id: "wall",
  nav: "nav.wall",
  permission: "monitor:read",
  chrome: false, // full screen, no nav chrome
  mount(container) {
    stylesheet("/static/map.css");
    const clock = el("span", { class: "clock" });
    const liveBox = el("span", { class: "wall-live" });
    const kpiBox = el("div", {});
    const levelBox = el("div", {});
    const healthBox = el("div", {});
    const boardBox = el("div", { class: "wall-list-box" });
    const entBox = el("div", {});
    const mapBox = el("div", { class: "wall-map", id: "wall-map" });
    const root = el("div", { class: "wall", id: "wall" },
      el("header", { class: "wall-head" }, clock, el("h1", {}, t("wall.title")), liveBox),
      el("div", { class: "wall-col" }, panel("wall.kpis", kpiBox), panel("wall.warnings", levelBox),
        panel("wall.health", healthBox)),
      panel("wall.map", mapBox, "wall-map-panel"),
      el("div", { class: "wall-col" }, panel("wall.alarms", boardBox, "grow"), panel("wall.enterprises", entBox)));
    container.append(root);
    const map = enterpriseMap(mapBox, { tooltip: tooltipLines, fontSize: 15 });
    let stopped = false;
    let connected = isConnected();
    let state = health.current();
    const tick = () => {
      clock.textContent = formatTime(new Date(), true);
    };
    tick();
    const clockTimer = setInterval(tick, 1000);
    const showHealth = () => {
      clear(healthBox, healthList(state, connected));
      liveBox.textContent = t(connected ? "wall.live_on" : "wall.live_off");
    };
    const offHealth = health.onHealth((s) => { state = s; showHealth(); });
    const offStatus = onStatus((c) => { connected = c; showHealth(); });

    async function refresh() {
      try {
        const [body, alarms] = await Promise.all([
          get("/api/overview", {}, { background: true }),
          get("/api/alarms", {}, { background: true }),
        ]);
        if (stopped) return;
        const names = new Map(body.enterprises.map((e) => [e.code, e.name]));
        clear(kpiBox, situation(body.totals));
        clear(levelBox, levels(body.totals));
        // As the board lists them: alarms suppressed by design have their cause annunciated.
        clear(boardBox, board(alarms.alarms.filter((a) => a.state !== "suppressed"), names));
        clear(entBox, enterpriseList(body.enterprises));
        await map.update({ enterprises: body.enterprises });
        root.dataset.ready = "1";
      } catch (err) {
        if (!stopped) clear(boardBox, el("p", { class: "error" }, t("common.error", { message: err.message })));
      }
    }
    return lifecycle(refresh, () => {
      stopped = true;
      clearInterval(clockTimer);
      offHealth();
      offStatus();
      map.dispose();
    });
  },
};
