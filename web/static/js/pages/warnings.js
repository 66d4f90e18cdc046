// Warning desk (#/warnings): every open early warning (预警 红橙黄蓝) with its deadline counting
// down and its escalations. The enterprise user signs (签收), answers (处置反馈) and clears (消警)
// its own warnings; the regulator reviews (复核), closes, or clears with a reason. Live over the
// `warnings` topic; the reason codes, regulator levels and deadlines come from the server's rules.
import { call, get } from "../api.js";
import { clear, dialog, el, stylesheet, toast } from "../dom.js";
import { formatTime, lang, named, punctuation, register, t } from "../i18n.js";
import * as live from "../live.js";
import { LEVELS } from "../map.js";

register({
  "zh-CN": {
    "warnings.title": "预警处置", "warnings.empty": "当前没有预警",
    "warnings.level.red": "红色预警", "warnings.level.orange": "橙色预警",
    "warnings.level.yellow": "黄色预警", "warnings.level.blue": "蓝色预警",
    "warnings.state.issued": "已发布", "warnings.state.pushed": "已推送", "warnings.state.signed": "已签收",
    "warnings.state.feedback": "已反馈", "warnings.state.cleared": "已消警", "warnings.state.reviewed": "已复核",
    "warnings.state.closed": "已关闭",
    "warnings.action.issued": "发布", "warnings.action.pushed": "推送至包保责任人",
    "warnings.action.signed": "签收", "warnings.action.feedback": "处置反馈", "warnings.action.cleared": "消警",
    "warnings.action.reviewed": "复核", "warnings.action.closed": "关闭",
    "warnings.action.condition_ended": "触发条件结束", "warnings.action.condition_resumed": "触发条件再现",
    "warnings.action.escalated": "超时升级", "warnings.action.reminded": "超时提醒",
    "warnings.col.level": "等级", "warnings.col.warning": "预警", "warnings.col.where": "企业 / 重大危险源",
    "warnings.col.issued": "发布时间", "warnings.col.state": "状态", "warnings.col.deadline": "时限",
    "warnings.col.escalation": "推送层级", "warnings.col.actions": "操作",
    "warnings.filter.group": "范围", "warnings.filter.level": "等级", "warnings.filter.enterprise": "企业",
    "warnings.group.all": "全部", "warnings.group.live": "待处置", "warnings.group.review": "待复核",
    "warnings.sign": "签收", "warnings.feedback": "处置反馈", "warnings.clear": "消警",
    "warnings.review": "复核", "warnings.close": "关闭", "warnings.regulator_clear": "监管消警",
    "warnings.comment": "备注", "warnings.reason": "原因", "warnings.measures": "处置措施",
    "warnings.clear_reason": "消警原因", "warnings.done": "{action}：{title}",
    "warnings.left": "剩余 {time}", "warnings.overdue_by": "已超时 {time}", "warnings.no_deadline": "—",
    "warnings.phase.sign": "签收", "warnings.phase.feedback": "反馈",
    "warnings.overdue": "超时：{phases}", "warnings.condition_active": "触发条件仍存在",
    "warnings.condition_ended": "触发条件已结束", "warnings.cannot_clear": "触发条件仍存在，结束后方可消警",
    "warnings.evidence": "发布依据（发布时的情况）", "warnings.at_issue": "发布时：", "warnings.steps": "处置记录", "warnings.recipients": "包保责任人",
    "warnings.now": "现在的情况", "warnings.now_at": "（{time} 评估）", "warnings.now_none": "该危险源当前不满足任何预警条件",
    "warnings.now_meets": "当前满足{level}条件：{title}", "warnings.now_also": "另满足：{rules}",
    "warnings.feedback_given": "反馈：{reason}；{measures}", "warnings.by": "{who}（{role}）",
    "warnings.count": "{n} 条", "warnings.duty.principal": "主要负责人",
    "warnings.duty.technical": "技术负责人", "warnings.duty.operational": "操作负责人",
    "warnings.late": "（超时）", "warnings.system": "系统",
  },
  en: {
    "warnings.title": "Warning desk", "warnings.empty": "No warnings",
    "warnings.level.red": "Red", "warnings.level.orange": "Orange",
    "warnings.level.yellow": "Yellow", "warnings.level.blue": "Blue",
    "warnings.state.issued": "issued", "warnings.state.pushed": "pushed", "warnings.state.signed": "signed",
    "warnings.state.feedback": "answered", "warnings.state.cleared": "cleared", "warnings.state.reviewed": "reviewed",
    "warnings.state.closed": "closed",
    "warnings.action.issued": "issued", "warnings.action.pushed": "pushed to the responsible persons",
    "warnings.action.signed": "signed", "warnings.action.feedback": "disposal feedback",
    "warnings.action.cleared": "cleared", "warnings.action.reviewed": "reviewed", "warnings.action.closed": "closed",
    "warnings.action.condition_ended": "condition ended", "warnings.action.condition_resumed": "condition resumed",
    "warnings.action.escalated": "escalated (overdue)", "warnings.action.reminded": "reminder (overdue)",
    "warnings.col.level": "Level", "warnings.col.warning": "Warning", "warnings.col.where": "Enterprise / hazard source",
    "warnings.col.issued": "Issued", "warnings.col.state": "State", "warnings.col.deadline": "Deadline",
    "warnings.col.escalation": "Pushed to", "warnings.col.actions": "Actions",
    "warnings.filter.group": "Show", "warnings.filter.level": "Level", "warnings.filter.enterprise": "Enterprise",
    "warnings.group.all": "all", "warnings.group.live": "to handle", "warnings.group.review": "to review",
    "warnings.sign": "Sign", "warnings.feedback": "Feedback", "warnings.clear": "Clear",
    "warnings.review": "Review", "warnings.close": "Close", "warnings.regulator_clear": "Clear (regulator)",
    "warnings.comment": "Comment", "warnings.reason": "Reason", "warnings.measures": "Measures taken",
    "warnings.clear_reason": "Reason for clearing", "warnings.done": "{action}: {title}",
    "warnings.left": "{time} left", "warnings.overdue_by": "overdue by {time}", "warnings.no_deadline": "—",
    "warnings.phase.sign": "signing", "warnings.phase.feedback": "feedback",
    "warnings.overdue": "overdue: {phases}", "warnings.condition_active": "condition persists",
    "warnings.condition_ended": "condition ended", "warnings.cannot_clear": "The condition persists: clear it once it has ended",
    "warnings.evidence": "Evidence (as at issue)", "warnings.at_issue": "At issue: ", "warnings.steps": "Record", "warnings.recipients": "Responsible persons",
    "warnings.now": "Now", "warnings.now_at": " (evaluated {time})", "warnings.now_none": "No warning condition holds at this source now",
    "warnings.now_meets": "Now meets the {level} condition: {title}", "warnings.now_also": "Also: {rules}",
    "warnings.feedback_given": "Feedback: {reason}; {measures}", "warnings.by": "{who} ({role})",
    "warnings.count": "{n}", "warnings.duty.principal": "principal",
    "warnings.duty.technical": "technical", "warnings.duty.operational": "operational",
    "warnings.late": " (late)", "warnings.system": "system",
  },
});

const LIVE = new Set(["issued", "pushed", "signed", "feedback"]);

/** "1:02:03" / "12:34" for a duration in ms. */
function duration(ms) {
  const s = Math.floor(Math.abs(ms) / 1000);
  const h = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, "0");
  const ss = String(s % 60).padStart(2, "0");
  return h ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

const nsToIso = (ns) => (ns ? new Date(ns / 1e6).toISOString() : null);

export default {
  id: "warnings",
  nav: "nav.warnings",
  permission: "monitor:read",
  mount(container, ctx) {
    stylesheet("/static/desk.css");
    const can = (perm) => ctx.me.permissions.includes(perm);
    const answerer = can("warning:answer"); // the enterprise user
    const reviewer = can("warning:review"); // the regulator
    let lifecycle = null;
    const names = new Map(); // "E1" and "E1/HS101" -> their names
    const warnings = new Map(); // id -> view
    const open = new Set(); // ids whose detail is shown
    // What holds at an open warning's source now (GET /api/warnings/{id}), beside its evidence,
    // which is a record of the time of issue; refetched while the detail is open.
    const present = new Map(); // id -> the answer's `now`
    let disposed = false;

    const groupSel = el("select", { class: "wdesk-group" },
      ["all", "live", "review"].map((g) => el("option", { value: g }, t(`warnings.group.${g}`))));
    const levelSel = el("select", { class: "wdesk-level" },
      el("option", { value: "" }, t("common.all")),
      LEVELS.map((l) => el("option", { value: l }, t(`warnings.level.${l}`))));
    const entSel = el("select", { class: "wdesk-enterprise", hidden: !!ctx.me.enterprise },
      el("option", { value: "" }, t("common.all")));
    const counts = el("div", { class: "wdesk-counts" });
    const body = el("tbody");
    const table = el("table", { class: "wdesk-table" },
      el("thead", {}, el("tr", {}, ["level", "warning", "where", "issued", "state", "deadline", "escalation", "actions"]
        .map((c) => el("th", {}, t(`warnings.col.${c}`))))), body);
    const empty = el("p", { class: "empty", hidden: true }, t("warnings.empty"));
    clear(container, el("div", { class: "wdesk" },
      el("div", { class: "wdesk-toolbar" }, counts, el("span", { class: "spacer" }),
        el("label", {}, t("warnings.filter.group"), " ", groupSel),
        el("label", {}, t("warnings.filter.level"), " ", levelSel),
        el("label", { hidden: !!ctx.me.enterprise }, t("warnings.filter.enterprise"), " ", entSel)),
      table, empty));

    function deadlineOf(w) {
      return w.deadline ? Date.parse(w.deadline) : null;
    }

    function escalationName(w) {
      const chain = lifecycle?.escalation_chain ?? [];
      return named(chain[Math.min(w.escalation, chain.length - 1)]) || String(w.escalation);
    }

    function reasonName(code) {
      return named(lifecycle?.reason_codes?.find((r) => r.code === code)) || code;
    }

    function phaseOf(w) {
      if (w.state === "issued" || w.state === "pushed") return "sign";
      if (w.state === "signed") return "feedback";
      return null;
    }

    function countdown(cell, w) {
      const due = deadlineOf(w);
      if (due === null) {
        cell.textContent = t("warnings.no_deadline");
        cell.className = "wdesk-deadline";
        return;
      }
      const left = due - Date.now();
      const phase = t(`warnings.phase.${phaseOf(w)}`);
      cell.textContent = `${phase} · ${t(left >= 0 ? "warnings.left" : "warnings.overdue_by", { time: duration(left) })}`;
      cell.className = `wdesk-deadline ${left < 0 ? "overdue" : left < 5 * 60_000 ? "soon" : ""}`;
    }

    async function act(w, kind) {
      const title = lang() === "zh-CN" ? w.title_zh : w.title_en;
      const textarea = (name, label, required) => el("label", {}, t(label),
        el("textarea", { name, rows: 3, maxlength: name === "measures" ? 2000 : 1000, required }));
      let fields;
      let path = kind;
      let submit = t(`warnings.${kind}`);
      if (kind === "feedback") {
        fields = [el("label", {}, t("warnings.reason"), el("select", { name: "reason", required: true },
          (lifecycle?.reason_codes ?? []).map((r) => el("option", { value: r.code }, named(r))))),
        textarea("measures", "warnings.measures", true)];
      } else if (kind === "clear" || kind === "regulator_clear") {
        fields = [textarea("reason", "warnings.clear_reason", kind === "regulator_clear")];
        path = kind === "clear" ? "clear" : "regulator-clear";
      } else {
        fields = [textarea("comment", "warnings.comment", false)];
      }
      const values = await dialog({
        title: `${submit} · ${title}`, fields, submitLabel: submit, cancelLabel: t("common.cancel"),
        className: "wdesk-dialog",
      });
      if (values === null) return;
      try {
        const done = await call("POST", `/api/warnings/${w.id}/${path}`, values);
        upsert([done]);
        toast(t("warnings.done", { action: submit, title }));
      } catch (err) {
        toast(t("common.error", { message: err.message }), "error");
      }
    }

    function actions(w) {
      const out = [];
      const button = (kind, extra = {}) => el("button", {
        type: "button", class: [`act-${kind.replace("_", "-")}`, extra.primary ? "primary" : null],
        disabled: extra.disabled, title: extra.title,
        onclick: (e) => { e.stopPropagation(); act(w, kind); },
      }, t(`warnings.${kind}`));
      const mine = answerer && ctx.me.enterprise === w.enterprise;
      if (mine && (w.state === "issued" || w.state === "pushed")) out.push(button("sign", { primary: true }));
      if (mine && w.state === "signed") out.push(button("feedback", { primary: true }));
      if (mine && w.state === "feedback") {
        out.push(button("clear", { disabled: w.condition_active, title: w.condition_active ? t("warnings.cannot_clear") : null }));
      }
      if (reviewer && w.state === "cleared") out.push(button("review", { primary: true }));
      if (reviewer && w.state === "reviewed") out.push(button("close"));
      if (reviewer && LIVE.has(w.state)) out.push(button("regulator_clear"));
      return out;
    }

    async function refreshNow(id) {
      try {
        const answer = await get(`/api/warnings/${id}`, {}, { background: true });
        if (disposed || !open.has(id)) return;
        present.set(id, answer.now);
        render();
      } catch {
        present.delete(id); // closed meanwhile, or the network: the block says loading
      }
    }

    function nowBlock(w) {
      const p = present.get(w.id);
      const title = (x) => (lang() === "zh-CN" ? x.title_zh : x.title_en);
      const head = el("h3", {}, t("warnings.now"),
        p?.evaluated_at ? el("span", { class: "muted" }, t("warnings.now_at", { time: formatTime(p.evaluated_at) })) : null);
      if (!p) return el("div", { class: "wdesk-now" }, head, el("p", { class: "muted" }, t("common.loading")));
      const f = p.finding;
      if (!f) return el("div", { class: "wdesk-now", dataset: { level: "" } }, head, el("p", {}, t("warnings.now_none")));
      return el("div", { class: ["wdesk-now", `level-${f.level}`], dataset: { level: f.level } }, head,
        el("p", { class: "wdesk-now-meets" }, t("warnings.now_meets", { level: t(`warnings.level.${f.level}`), title: title(f) })),
        el("ul", {}, f.evidence.map((e) => el("li", {}, named(e)))),
        f.also.length ? el("p", { class: "muted" }, t("warnings.now_also",
          { rules: f.also.map((h) => `${t(`warnings.level.${h.level}`)} ${title(h)}`).join(punctuation().semicolon) })) : null);
    }

    function detail(w) {
      const recipients = (w.recipients ?? []).map((r) =>
        `${t(`warnings.duty.${r.duty}`)} ${r.name}${r.phone ? ` ${r.phone}` : ""}`).join(punctuation().semicolon);
      return el("tr", { class: "wdesk-detail", dataset: { detail: w.id } }, el("td", { colspan: 8 },
        el("div", { class: "wdesk-detail-grid" },
          el("div", {}, el("h3", {}, t("warnings.evidence")),
            el("ul", {}, w.evidence.map((e) => el("li", {}, named(e)))),
            recipients ? el("p", {}, el("b", {}, t("warnings.recipients")), " ", recipients) : null,
            w.feedback ? el("p", { class: "wdesk-feedback" }, t("warnings.feedback_given",
              { reason: reasonName(w.feedback.reason), measures: w.feedback.measures })) : null),
          nowBlock(w),
          el("div", {}, el("h3", {}, t("warnings.steps")),
            el("ol", { class: "wdesk-steps" }, w.steps.map((s) => el("li", { dataset: { action: s.action } },
              el("time", {}, formatTime(nsToIso(s.at_ns), true)), " ",
              el("b", {}, t(`warnings.action.${s.action}`)), s.detail?.late ? t("warnings.late") : "", " · ",
              s.role === "system" ? t("warnings.system") : t("warnings.by", { who: s.username, role: t(`common.role.${s.role}`) }),
              s.detail?.reason ? ` · ${reasonName(s.detail.reason)}` : "",
              s.comment ? ` · ${s.comment}` : "")))))));
    }

    function visible(w) {
      const g = groupSel.value;
      if (g === "live" && !LIVE.has(w.state)) return false;
      if (g === "review" && !(w.state === "cleared" || w.state === "reviewed")) return false;
      if (levelSel.value && w.level !== levelSel.value) return false;
      if (entSel.value && w.enterprise !== entSel.value) return false;
      return true;
    }

    function render() {
      const all = [...warnings.values()];
      const rank = (l) => LEVELS.indexOf(l);
      all.sort((a, b) => rank(a.level) - rank(b.level) || (LIVE.has(b.state) - LIVE.has(a.state)) ||
        (a.issued_at_ns < b.issued_at_ns ? -1 : 1));
      clear(counts, LEVELS.map((l) => {
        const n = all.filter((w) => w.level === l && LIVE.has(w.state)).length;
        return el("span", { class: ["wdesk-count", `level-${l}`, n ? "on" : null], dataset: { level: l } },
          t(`warnings.level.${l}`), " ", el("b", {}, String(n)));
      }));
      const enterprises = [...new Set(all.map((w) => w.enterprise))].sort();
      const chosen = entSel.value;
      clear(entSel, el("option", { value: "" }, t("common.all")),
        enterprises.map((e) => el("option", { value: e, selected: e === chosen }, names.get(e) ?? e)));
      const rows = [];
      for (const w of all.filter(visible)) {
        const title = lang() === "zh-CN" ? w.title_zh : w.title_en;
        const deadlineCell = el("td", { class: "wdesk-deadline" });
        countdown(deadlineCell, w);
        const overdue = w.overdue?.length
          ? el("div", { class: "wdesk-overdue" }, t("warnings.overdue", { phases: w.overdue.map((p) => t(`warnings.phase.${p}`)).join(punctuation().comma) }))
          : null;
        rows.push(el("tr", {
          class: ["wdesk-row", `level-${w.level}`, open.has(w.id) ? "open" : null],
          dataset: { warning: w.id, state: w.state, level: w.level },
          onclick: () => {
            if (open.has(w.id)) {
              open.delete(w.id);
              present.delete(w.id);
            } else {
              open.add(w.id);
              refreshNow(w.id);
            }
            render();
          },
        },
        el("td", {}, el("span", { class: "wdesk-level-badge" }, t(`warnings.level.${w.level}`))),
        // The evidence is the warning's basis as it stood when issued (a record, not a live view:
        // "未确认" there may since have been acknowledged), and says so.
        el("td", { class: "wdesk-title" }, title, el("div", { class: "muted wdesk-evidence" }, t("warnings.at_issue"),
          w.evidence.map(named).join(punctuation().semicolon))),
        el("td", { class: "wdesk-where" }, names.get(w.enterprise) ?? w.enterprise,
          w.hazard_source ? el("div", { class: "muted" },
            names.get(`${w.enterprise}/${w.hazard_source}`) ?? w.hazard_source) : null),
        el("td", {}, formatTime(nsToIso(w.issued_at_ns), true)),
        el("td", { class: "wdesk-state" }, t(`warnings.state.${w.state}`), el("div", { class: "muted" },
          t(w.condition_active ? "warnings.condition_active" : "warnings.condition_ended"))),
        deadlineCell,
        el("td", { class: "wdesk-escalation" }, escalationName(w), overdue),
        el("td", { class: "wdesk-actions" }, actions(w))));
        if (open.has(w.id)) rows.push(detail(w));
      }
      clear(body, rows);
      empty.hidden = rows.length > 0;
    }

    function upsert(views) {
      for (const v of views) {
        if (v.state === "closed") {
          warnings.delete(v.id);
          open.delete(v.id);
          present.delete(v.id);
        } else {
          warnings.set(v.id, v);
          if (open.has(v.id)) refreshNow(v.id); // its step may follow a change of what holds
        }
      }
      render();
    }

    async function reload() {
      try {
        const answer = await get("/api/warnings", {}, { background: true });
        if (disposed) return;
        lifecycle = answer.lifecycle ?? lifecycle;
        warnings.clear();
        upsert(answer.warnings);
      } catch (err) {
        if (!disposed) toast(t("common.error", { message: err.message }), "error");
      }
    }

    for (const s of [groupSel, levelSel, entSel]) s.addEventListener("change", render);
    const unsubscribe = live.subscribe("warnings", (msg) => {
      if (msg.type === "warnings_resync") reload();
      else upsert(msg.events ?? []);
    });
    // The countdowns tick every second without rebuilding the table.
    const tick = setInterval(() => {
      for (const cell of body.querySelectorAll("tr.wdesk-row")) {
        const w = warnings.get(Number(cell.dataset.warning));
        if (w) countdown(cell.querySelector("td.wdesk-deadline"), w);
      }
    }, 1000);
    // The desk evaluates every few seconds: so often is what holds now refetched.
    const nowTick = setInterval(() => { for (const id of open) refreshNow(id); }, 5000);
    reload();
    // Names of enterprises and hazard sources (the warnings carry their codes).
    Promise.all([get("/api/enterprises"), get("/api/points")]).then(([ents, points]) => {
      for (const e of ents) names.set(e.code, e.name);
      for (const p of points) if (p.hazard_source) names.set(`${p.enterprise}/${p.hazard_source}`, p.hazard_source_name);
      if (!disposed) render();
    }).catch(() => {});

    return () => {
      disposed = true;
      clearInterval(tick);
      clearInterval(nowTick);
      unsubscribe();
    };
  },
};
