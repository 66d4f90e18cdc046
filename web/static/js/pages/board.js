// The alarm board (报警): every alarm that is not normal, live over the WebSocket, by priority
// then time (newest first), coloured by priority; unacknowledged alarms marked until
// acknowledged; filters with live counts; acknowledge (one or many, with a comment) and shelve
// (duration and reason), also from the keyboard.
import { get } from "../api.js";
import { $, clear, el } from "../dom.js";
import { formatTime, named, register, t } from "../i18n.js";
import { subscribe } from "../live.js";
import {
  CLASSES, STATES, UNACKED, acknowledge, canOperate, conditionLabel, formatReading, loadNames,
  priorityBadge, shelve, unshelve,
} from "./alarm-common.js";

register({
  "zh-CN": {
    "board.title": "实时报警", "board.all": "全部", "board.enterprise": "企业",
    "board.hazard_source": "重大危险源", "board.class": "类别", "board.priority": "优先级",
    "board.state": "状态", "board.time": "报警时间", "board.point": "位号", "board.name": "名称",
    "board.condition": "报警类型", "board.value": "当前值", "board.operator": "处理",
    "board.total": "报警 {n}", "board.unacked": "未确认 {n}", "board.p": "P{p} {n}",
    "board.empty": "当前没有报警", "board.empty_filtered": "没有符合筛选条件的报警",
    "board.ack_selected": "确认 (A)", "board.ack_checked": "确认勾选 (Shift+A)",
    "board.shelve_selected": "屏蔽 (S)", "board.unshelve_selected": "解除屏蔽 (U)",
    "board.details": "详情 (Enter)", "board.clear_filters": "清除筛选",
    "board.keys": "快捷键：↑/↓ 选择 · 空格 勾选 · A 确认 · Shift+A 确认勾选 · S 屏蔽 · U 解除屏蔽 · Enter 详情 · M 静音",
    "board.check_all": "全选", "board.acked_by": "{who} 确认", "board.shelved_until": "屏蔽至 {time}",
    "board.escalated": "已升级至{to}（第 {n} 次）",
    "board.suppressed": "另有已抑制 {n} 条（查看）", "board.suppressed_by": "抑制：{why}",
    "board.shelved_once": "屏蔽至恢复",
  },
  en: {
    "board.title": "Live alarms", "board.all": "all", "board.enterprise": "Enterprise",
    "board.hazard_source": "Hazard source", "board.class": "Class", "board.priority": "Priority",
    "board.state": "State", "board.time": "Raised", "board.point": "Tag", "board.name": "Name",
    "board.condition": "Condition", "board.value": "Value", "board.operator": "Handling",
    "board.total": "{n} alarms", "board.unacked": "{n} unacknowledged", "board.p": "P{p} {n}",
    "board.empty": "No alarms", "board.empty_filtered": "No alarm matches the filters",
    "board.ack_selected": "Acknowledge (A)", "board.ack_checked": "Acknowledge checked (Shift+A)",
    "board.shelve_selected": "Shelve (S)", "board.unshelve_selected": "Unshelve (U)",
    "board.details": "Details (Enter)", "board.clear_filters": "Clear filters",
    "board.keys": "Keys: ↑/↓ select · Space check · A acknowledge · Shift+A acknowledge checked · S shelve · U unshelve · Enter details · M mute",
    "board.check_all": "Check all", "board.acked_by": "acknowledged by {who}",
    "board.escalated": "escalated to the {to} ({n})",
    "board.suppressed": "{n} more suppressed (show)", "board.suppressed_by": "suppressed: {why}",
    "board.shelved_until": "shelved until {time}", "board.shelved_once": "shelved until it clears",
  },
});

// Kept across remounts (a language switch remounts the page).
const FILTERS = ["enterprise", "hazard_source", "class", "priority", "state"];
const filters = Object.fromEntries(FILTERS.map((f) => [f, ""]));
let selectedId = null;
const checked = new Set();
const REFRESH_DEBOUNCE_MS = 150;

function sortKey(a, b) {
  return a.priority - b.priority || (b.raised_at ?? "").localeCompare(a.raised_at ?? "") || b.id - a.id;
}

// Suppressed by design (ISA-18.2): the cause is known and annunciated (a lost device's one
// alarm, a unit in maintenance), so these are listed only when the state filter asks for them.
function matches(a, except) {
  if (a.state === "suppressed" && except !== "state" && filters.state !== "suppressed") return false;
  return FILTERS.every((f) => f === except || !filters[f] || String(a[f] ?? "") === filters[f]);
}

export default {
  id: "board",
  nav: "nav.board",
  permission: "monitor:read",
  mount(container, ctx) {
    const operate = canOperate(ctx.me);
    const alarms = new Map(); // id → alarm view (+ shown_ms, received_ms)
    let names = { enterprises: new Map(), points: new Map() };
    let renderQueued = false;
    let refetch = new Set();
    let refetchTimer = null;
    let alive = true;

    const selects = Object.fromEntries(FILTERS.map((f) => [f, el("select", {
      name: f, "aria-label": t(`board.${f}`),
      onchange: (e) => { filters[f] = e.target.value; queueRender(); },
    })]));
    const counts = el("div", { class: "board-counts" });
    const checkAll = el("input", { type: "checkbox", title: t("board.check_all"), "aria-label": t("board.check_all"),
      onchange: (e) => {
        for (const a of visible()) if (e.target.checked) checked.add(a.id); else checked.delete(a.id);
        queueRender();
      } });
    const buttons = {
      ack: el("button", { type: "button", class: "primary", "data-action": "ack", onclick: () => ackSelected() }, t("board.ack_selected")),
      ackChecked: el("button", { type: "button", "data-action": "ack-checked", onclick: () => ackChecked() }, t("board.ack_checked")),
      shelve: el("button", { type: "button", "data-action": "shelve", onclick: () => shelveSelected() }, t("board.shelve_selected")),
      unshelve: el("button", { type: "button", "data-action": "unshelve", onclick: () => unshelveSelected() }, t("board.unshelve_selected")),
      details: el("button", { type: "button", "data-action": "details", onclick: () => openSelected() }, t("board.details")),
    };
    const tbody = el("tbody");
    const empty = el("p", { class: "empty", hidden: true });
    const head = el("tr", {},
      operate ? el("th", { class: "check" }, checkAll) : null,
      el("th", {}, t("board.priority")), el("th", {}, t("board.state")), el("th", {}, t("board.time")),
      el("th", {}, t("board.enterprise")), el("th", {}, t("board.hazard_source")), el("th", {}, t("board.point")),
      el("th", {}, t("board.name")), el("th", {}, t("board.condition")), el("th", {}, t("board.class")),
      el("th", { class: "num" }, t("board.value")), el("th", {}, t("board.operator")));

    container.append(el("section", { class: "board" },
      el("div", { class: "board-bar" },
        el("h2", {}, t("board.title")), counts),
      el("div", { class: "board-filters" },
        FILTERS.map((f) => el("label", {}, el("span", {}, t(`board.${f}`)), selects[f])),
        el("button", { type: "button", class: "link", onclick: () => { for (const f of FILTERS) filters[f] = ""; queueRender(); } },
          t("board.clear_filters"))),
      operate ? el("div", { class: "board-actions" }, Object.values(buttons),
        el("span", { class: "muted keys" }, t("board.keys"))) : null,
      el("div", { class: "board-table" }, el("table", { id: "alarm-table" }, el("thead", {}, head), tbody), empty)));

    // -- data ------------------------------------------------------------------------------

    function enrich(a) {
      const p = names.points.get(a.point);
      const e = names.enterprises.get(a.enterprise ?? p?.enterprise);
      a.enterprise ??= p?.enterprise;
      a.hazard_source ??= p?.hazard_source;
      a.hazard_source_name = p?.hazard_source_name ?? a.hazard_source ?? "";
      a.enterprise_name = e?.name ?? a.enterprise ?? "";
      a.code ??= p?.code;
      a.name ??= p?.name;
      a.unit ??= p?.unit;
      a.range ??= p?.range;
      a.readings ??= p?.readings; // so a failure signal reads as one before the full record
      if (a.class === undefined || a.class === null) {
        a.class = p?.kind === "gas" && ["H", "HH"].includes(a.condition) ? "gas" : null;
      }
      return a;
    }

    const touched = new Map(); // id → when its last event arrived

    async function reload() {
      const started = Date.now();
      const answer = await get("/api/alarms");
      if (!alive) return;
      const kept = new Map(alarms);
      alarms.clear();
      for (const a of answer.alarms) {
        const old = kept.get(a.id);
        alarms.set(a.id, Object.assign(enrich(a), old ? { received_ms: old.received_ms, shown_ms: old.shown_ms } : {}));
      }
      // Events that arrived while the list was on its way may be newer than it.
      for (const [id, at] of touched) if (at >= started) scheduleRefetch(id);
      queueRender();
    }

    async function fetchOne(id) {
      try {
        const a = await get(`/api/alarms/${id}`);
        if (!alive) return;
        delete a.events;
        const old = alarms.get(id);
        if (a.state === "normal") alarms.delete(id);
        else alarms.set(id, Object.assign(enrich(a), old ? { received_ms: old.received_ms, shown_ms: old.shown_ms } : {}));
        queueRender();
      } catch (err) {
        if (err.status === 404) {
          alarms.delete(id);
          queueRender();
        }
      }
    }

    function scheduleRefetch(id) {
      refetch.add(id);
      clearTimeout(refetchTimer);
      refetchTimer = setTimeout(() => {
        const ids = [...refetch];
        refetch = new Set();
        if (ids.length > 20) reload();
        else for (const i of ids) fetchOne(i);
      }, REFRESH_DEBOUNCE_MS);
    }

    function onEvents(msg) {
      if (msg.type === "alarms_resync") {
        reload();
        return;
      }
      for (const e of msg.events ?? []) {
        touched.set(e.alarm, msg.received_ms);
        let a = alarms.get(e.alarm);
        if (e.to === "normal") {
          alarms.delete(e.alarm);
          checked.delete(e.alarm);
          continue;
        }
        if (!a) {
          // Shown at once from the event and the point's names; the full view follows.
          a = enrich({ id: e.alarm, point: e.point, condition: e.condition, priority: e.priority, raised_at: e.ts,
            value: e.value, state: e.to, received_ms: msg.received_ms });
          alarms.set(e.alarm, a);
        }
        a.state = e.to;
        a.priority = e.priority ?? a.priority;
        if (e.value !== null && e.value !== undefined) a.value = e.value;
        if (e.kind === "raised") {
          Object.assign(a, { raised_at: e.ts, received_ms: msg.received_ms, shown_ms: null, acked_by: null, escalated: null });
        }
        if (e.kind === "acknowledged") Object.assign(a, { acked_by: e.who, acked_at: e.ts, ack_comment: e.why });
        if (!UNACKED.has(a.state)) checked.delete(a.id);
        scheduleRefetch(e.alarm);
      }
      queueRender();
    }

    // -- rendering ---------------------------------------------------------------------------

    function visible() {
      return [...alarms.values()].filter((a) => matches(a)).sort(sortKey);
    }

    function queueRender() {
      if (renderQueued) return;
      renderQueued = true;
      requestAnimationFrame(() => {
        renderQueued = false;
        if (alive) render();
      });
    }

    function fillSelect(f, options) {
      const all = [...alarms.values()].filter((a) => matches(a, f));
      const n = (v) => all.filter((a) => String(a[f] ?? "") === v).length;
      const select = selects[f];
      const chosen = filters[f];
      clear(select,
        el("option", { value: "" }, `${t("board.all")} (${all.length})`),
        options.map(([value, label]) => el("option", { value, selected: value === chosen }, `${label} (${n(value)})`)));
      select.value = chosen;
    }

    function renderFilters() {
      const present = (key) => [...new Set([...alarms.values()].map((a) => a[key]).filter(Boolean))].sort();
      fillSelect("enterprise", present("enterprise").map((c) => [c, names.enterprises.get(c)?.name ?? c]));
      const sources = new Map();
      for (const a of alarms.values()) if (a.hazard_source) sources.set(a.hazard_source, a.hazard_source_name);
      fillSelect("hazard_source", [...sources].sort());
      fillSelect("class", CLASSES.map((c) => [c, t(`board.class.${c}`)]));
      fillSelect("priority", ["1", "2", "3", "4"].map((p) => [p, `P${p} ${t(`board.priority.${p}`)}`]));
      fillSelect("state", STATES.map((s) => [s, t(`board.state.${s}`)]));
    }

    function renderCounts(all) {
      const list = all.filter((a) => a.state !== "suppressed");
      const suppressed = all.length - list.length;
      const unacked = list.filter((a) => UNACKED.has(a.state)).length;
      clear(counts,
        el("span", { class: "count total", "data-count": "total" }, t("board.total", { n: list.length })),
        el("span", { class: ["count", "unacked", unacked && "blink"], "data-count": "unacked" }, t("board.unacked", { n: unacked })),
        [1, 2, 3, 4].map((p) => el("span", { class: ["count", `prio-${p}`], "data-count": `p${p}` },
          el("i", { class: "dot" }), t("board.p", { p, n: list.filter((a) => a.priority === p).length }))),
        suppressed > 0 && filters.state !== "suppressed"
          ? el("button", { type: "button", class: "link count suppressed", "data-count": "suppressed",
            onclick: () => { filters.state = "suppressed"; queueRender(); } }, t("board.suppressed", { n: suppressed }))
          : null);
    }

    // Rows are kept between renders (live values arrive several times a second): a row is
    // rebuilt only when what it shows changed, otherwise its value and marks are updated.
    const rows = new Map(); // id → {tr, key, value, box}

    function rowKey(a) {
      return [a.priority, a.state, a.raised_at, a.enterprise_name, a.hazard_source_name, a.code, a.name,
        a.condition, a.class, a.unit, a.acked_by, a.shelved_until, a.escalated?.role, a.escalated?.attempt,
        a.suppressed].join("|");
    }

    function buildRow(a) {
      const unacked = UNACKED.has(a.state);
      let handling = "";
      if (a.state === "shelved") handling = a.shelved_until ? t("board.shelved_until", { time: formatTime(a.shelved_until) }) : t("board.shelved_once");
      else if (a.state === "suppressed" && a.suppressed) handling = t("board.suppressed_by", { why: a.suppressed });
      else if (a.acked_by) handling = t("board.acked_by", { who: a.acked_by });
      else if (a.escalated) {
        handling = t("board.escalated", { to: named(a.escalated), n: a.escalated.attempt });
      }
      const value = el("td", { class: "num value" });
      const box = operate ? el("input", { type: "checkbox", "aria-label": a.code,
        onchange: (ev) => { if (ev.target.checked) checked.add(a.id); else checked.delete(a.id); queueRender(); } }) : null;
      const tr = el("tr", {
        class: [`prio-${a.priority}`, `state-${a.state}`, unacked && "unacked"],
        dataset: { alarm: a.id, state: a.state, priority: a.priority, raisedMs: Date.parse(a.raised_at ?? "") || "" },
        onclick: (ev) => { if (ev.target.type !== "checkbox") select(a.id); },
        ondblclick: () => ctx.navigate(`#/alarm/${a.id}`),
      },
      operate ? el("td", { class: "check" }, box) : null,
      el("td", {}, priorityBadge(a.priority)),
      el("td", { class: "state" }, unacked ? el("i", { class: "unack-mark", "aria-hidden": "true" }) : null, t(`board.state.${a.state}`)),
      el("td", { class: "num" }, formatTime(a.raised_at)),
      el("td", { class: "clip enterprise", title: a.enterprise_name }, a.enterprise_name),
      el("td", { class: "clip", title: a.hazard_source_name }, a.hazard_source_name),
      el("td", {}, el("a", { href: `#/alarm/${a.id}`, class: "code" }, a.code ?? `#${a.point}`)),
      el("td", { class: "clip name", title: a.name }, a.name ?? ""),
      el("td", { class: "condition" }, conditionLabel(a)),
      el("td", {}, a.class ? t(`board.class.${a.class}`) : ""),
      value,
      el("td", { class: "muted handling", title: handling || null }, handling));
      return { tr, key: rowKey(a), value, box };
    }

    function row(a, now) {
      a.shown_ms ??= now;
      let r = rows.get(a.id);
      if (!r || r.key !== rowKey(a)) {
        r?.tr.remove();
        rows.set(a.id, (r = buildRow(a)));
      }
      r.value.textContent = formatReading(a.value, a);
      r.tr.classList.toggle("selected", a.id === selectedId);
      r.tr.classList.toggle("checked", checked.has(a.id));
      if (r.box) r.box.checked = checked.has(a.id);
      r.tr.dataset.receivedMs = a.received_ms ?? "";
      r.tr.dataset.shownMs = a.shown_ms;
      return r.tr;
    }

    function place(list, now) {
      const wanted = new Set(list.map((a) => a.id));
      for (const [id, r] of rows) {
        if (!wanted.has(id)) {
          r.tr.remove();
          rows.delete(id);
        }
      }
      list.forEach((a, i) => {
        const tr = row(a, now);
        if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] ?? null);
      });
    }

    function render() {
      const list = visible();
      if (selectedId !== null && !alarms.has(selectedId)) selectedId = null;
      if (selectedId === null && list.length) selectedId = list[0].id;
      const now = Date.now();
      renderFilters();
      renderCounts([...alarms.values()]);
      place(list, now);
      empty.hidden = list.length > 0;
      empty.textContent = t(alarms.size ? "board.empty_filtered" : "board.empty");
      const sel = alarms.get(selectedId);
      const checkedList = [...checked].map((id) => alarms.get(id)).filter((a) => a && UNACKED.has(a.state));
      buttons.ack.disabled = !sel || !UNACKED.has(sel.state);
      buttons.ackChecked.disabled = checkedList.length === 0;
      buttons.shelve.disabled = !sel || sel.state === "shelved" || sel.state === "out_of_service";
      buttons.unshelve.disabled = !sel || sel.state !== "shelved";
      buttons.details.disabled = !sel;
      checkAll.checked = list.length > 0 && list.every((a) => checked.has(a.id));
      tbody.querySelector("tr.selected")?.scrollIntoView({ block: "nearest" });
    }

    // -- actions -----------------------------------------------------------------------------

    function select(id) {
      selectedId = id;
      queueRender();
    }

    function move(delta) {
      const list = visible();
      if (!list.length) return;
      const i = list.findIndex((a) => a.id === selectedId);
      const next = list[Math.max(0, Math.min(list.length - 1, (i < 0 ? 0 : i + delta)))];
      select(next.id);
    }

    async function ackSelected() {
      const a = alarms.get(selectedId);
      if (a && UNACKED.has(a.state) && (await acknowledge([a]))) scheduleRefetch(a.id);
    }

    async function ackChecked() {
      const list = [...checked].map((id) => alarms.get(id)).filter((a) => a && UNACKED.has(a.state));
      if (list.length && (await acknowledge(list, { bulk: true }))) {
        for (const a of list) checked.delete(a.id);
        queueRender();
      }
    }

    async function shelveSelected() {
      const a = alarms.get(selectedId);
      if (a && a.state !== "shelved" && (await shelve(a))) scheduleRefetch(a.id);
    }

    async function unshelveSelected() {
      const a = alarms.get(selectedId);
      if (a && a.state === "shelved" && (await unshelve(a))) scheduleRefetch(a.id);
    }

    function openSelected() {
      if (selectedId !== null) ctx.navigate(`#/alarm/${selectedId}`);
    }

    function onKey(ev) {
      if (ev.ctrlKey || ev.metaKey || ev.altKey || document.querySelector("dialog[open]")) return;
      if (ev.target.closest?.("input, select, textarea") && ev.key !== "Escape") return;
      const key = ev.key;
      let handled = true;
      if (key === "ArrowDown" || key === "j") move(1);
      else if (key === "ArrowUp" || key === "k") move(-1);
      else if (key === "Home") move(-Infinity);
      else if (key === "End") move(Infinity);
      else if (key === "Enter") openSelected();
      else if (!operate) handled = false;
      else if (key === "a") ackSelected();
      else if (key === "A") ackChecked();
      else if (key === "s") shelveSelected();
      else if (key === "u") unshelveSelected();
      else if (key === " " && selectedId !== null) {
        if (checked.has(selectedId)) checked.delete(selectedId); else checked.add(selectedId);
        queueRender();
      } else handled = false;
      if (handled) ev.preventDefault();
    }

    // The value column follows the points' live values.
    let stopPoints = [];
    function onPoints(msg) {
      if (msg.type !== "points") return;
      let changed = false;
      const byPoint = new Map(msg.values.map(([point, , value]) => [point, value]));
      for (const a of alarms.values()) {
        if (byPoint.has(a.point) && byPoint.get(a.point) !== a.value) {
          a.value = byPoint.get(a.point);
          changed = true;
        }
      }
      if (changed) queueRender();
    }

    window.addEventListener("keydown", onKey);
    const stop = subscribe("alarms", onEvents);
    loadNames()
      .then((n) => {
        names = n;
        for (const a of alarms.values()) enrich(a);
        if (alive) stopPoints = [...n.enterprises.keys()].map((code) => subscribe(`points:${code}`, onPoints));
      })
      .catch(() => null)
      .finally(() => reload().catch((err) => { empty.hidden = false; empty.textContent = t("common.error", { message: err.message }); }));
    queueRender();

    return () => {
      alive = false;
      clearTimeout(refetchTimer);
      stop();
      for (const u of stopPoints) u();
      window.removeEventListener("keydown", onKey);
    };
  },
};

export { sortKey };
