// System health (系统状态): the pipeline as GET /api/health reports it, every 2 s: the database,
// ingest and the writer, and each device's collector with its last successful read, failures and
// last error, the devices that are down first. The status bar only counts them; this page says
// which. For the centre's staff and the system administrator (permission system:read).
import { get } from "../api.js";
import { clear, el } from "../dom.js";
import { formatNumber, formatTime, register, t } from "../i18n.js";
import { loadNames } from "./alarm-common.js";

register({
  "zh-CN": {
    "nav.system": "系统状态",
    "system.title": "系统状态", "system.collectors": "采集设备",
    "system.database": "数据库", "system.db_up": "写入正常", "system.db_down": "数据库不可用，数据暂存本地",
    "system.ingest": "采集速率", "system.per_s": "{n} 点/秒", "system.written": "已写入",
    "system.spooled": "暂存待补写", "system.rejected": "拒收", "system.uptime": "运行时长",
    "system.cameras": "摄像机", "system.up_down": "在线 {up} · 离线 {down}",
    "system.enterprise": "企业", "system.device": "设备", "system.protocol": "协议", "system.state": "状态",
    "system.up": "在线", "system.down": "通讯中断", "system.unknown": "未连接",
    "system.last_success": "最后成功采集", "system.failures": "失败次数", "system.reads": "读取次数",
    "system.samples": "样本数", "system.rejected_samples": "拒收样本", "system.last_error": "最后错误",
    "system.error": "无法获取系统状态：{message}",
  },
  en: {
    "nav.system": "System",
    "system.title": "System health", "system.collectors": "Collectors",
    "system.database": "Database", "system.db_up": "writing", "system.db_down": "database unavailable, data spooled locally",
    "system.ingest": "Ingest", "system.per_s": "{n} samples/s", "system.written": "Written",
    "system.spooled": "Spooled, to be written", "system.rejected": "Rejected", "system.uptime": "Uptime",
    "system.cameras": "Cameras", "system.up_down": "up {up} · down {down}",
    "system.enterprise": "Enterprise", "system.device": "Device", "system.protocol": "Protocol", "system.state": "State",
    "system.up": "up", "system.down": "communication lost", "system.unknown": "not connected yet",
    "system.last_success": "Last successful read", "system.failures": "Failures", "system.reads": "Reads",
    "system.samples": "Samples", "system.rejected_samples": "Rejected samples", "system.last_error": "Last error",
    "system.error": "System health unavailable: {message}",
  },
});

const POLL_MS = 2000;
const COLUMNS = ["enterprise", "device", "protocol", "state", "last_success", "failures", "reads", "samples",
  "rejected_samples", "last_error"];
const NUMERIC = new Set(["failures", "reads", "samples", "rejected_samples"]);

function duration(s) {
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return `${h}:${String(m).padStart(2, "0")}:${String(Math.floor(s % 60)).padStart(2, "0")}`;
}

function card(key, value, bad = false) {
  return el("div", { class: ["sys-card", bad && "bad"], dataset: { card: key } },
    el("span", { class: "muted" }, t(`system.${key}`)), el("b", {}, value));
}

export default {
  id: "system",
  nav: "nav.system",
  permission: "system:read",
  mount(container, ctx) {
    let alive = true;
    let timer = null;
    let enterprises = new Map();
    if (ctx.me.permissions.includes("monitor:read")) {
      loadNames().then((n) => { enterprises = n.enterprises; }).catch(() => null);
    }
    const cards = el("div", { class: "sys-cards" });
    const rows = el("tbody");
    const error = el("p", { class: "error", hidden: true });
    clear(container, el("div", { class: "sys-page" },
      el("h2", {}, t("system.title")), error, cards,
      el("h3", {}, t("system.collectors")),
      el("table", { class: "sys-devices" },
        el("thead", {}, el("tr", {}, COLUMNS.map((c) => el("th", { class: NUMERIC.has(c) ? "num" : null }, t(`system.${c}`))))),
        rows)));

    function render(h) {
      const w = h.writer ?? {};
      clear(cards,
        card("database", `${h.database?.mode ?? "—"} · ${t(w.db_up === false ? "system.db_down" : "system.db_up")}`,
          w.db_up === false),
        card("ingest", t("system.per_s", { n: formatNumber(h.ingest?.samples_per_s, 1) })),
        card("written", formatNumber(w.rows_written, 0)),
        card("spooled", formatNumber(w.rows_spooled, 0), (w.spool_backlog_batches ?? 0) > 0),
        card("rejected", formatNumber(w.rows_rejected, 0), (w.rows_rejected ?? 0) > 0),
        h.cameras && card("cameras", t("system.up_down", h.cameras), h.cameras.down > 0),
        card("uptime", duration(h.uptime_s ?? 0)));
      // Down first, then by enterprise and device.
      const devices = [...(h.collectors?.devices ?? [])].sort((a, b) =>
        (a.up === false ? 0 : 1) - (b.up === false ? 0 : 1)
        || a.enterprise.localeCompare(b.enterprise) || a.device.localeCompare(b.device));
      clear(rows, devices.map((d) => {
        const state = d.up === true ? "up" : d.up === false ? "down" : "unknown";
        const rejected = Object.values(d.rejected ?? {}).reduce((sum, n) => sum + n, 0);
        const last = d.last_success_ns ? new Date(d.last_success_ns / 1e6).toISOString() : null;
        return el("tr", { class: [state === "down" && "bad"], dataset: { device: `${d.enterprise}/${d.device}`, state } },
          el("td", {}, enterprises.get(d.enterprise)?.name ?? d.enterprise),
          el("td", {}, d.device),
          el("td", {}, d.protocol),
          el("td", { class: "sys-state" }, t(`system.${state}`)),
          el("td", { class: "num" }, formatTime(last, true)),
          el("td", { class: "num" }, formatNumber(d.failures, 0)),
          el("td", { class: "num" }, formatNumber(d.reads, 0)),
          el("td", { class: "num" }, formatNumber(d.samples, 0)),
          el("td", { class: "num", title: JSON.stringify(d.rejected ?? {}) }, formatNumber(rejected, 0)),
          el("td", { class: "sys-error" }, d.last_error ?? ""));
      }));
    }

    async function poll() {
      try {
        const h = await get("/api/health", null, { background: true });
        if (!alive) return;
        error.hidden = true;
        render(h);
        container.querySelector(".sys-page").dataset.loaded = "";
      } catch (err) {
        if (!alive) return;
        error.hidden = false;
        error.textContent = t("system.error", { message: err.message });
      } finally {
        if (alive) timer = setTimeout(poll, POLL_MS);
      }
    }
    poll();
    return () => {
      alive = false;
      clearTimeout(timer);
    };
  },
};
