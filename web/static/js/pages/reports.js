// Enterprise reports (#/reports): the daily safety commitment (安全承诺) and special work (特殊作业).
// An enterprise user submits today's commitment, registers its special work and ends it; the
// centre sees every enterprise's commitment of a day (the missing ones flagged, with the deadline)
// and the special work on-going everywhere. The work types and production states come from
// GET /api/commitments (the warning rules). Refreshed on the `warnings` topic and every 30 s.
import { call, get } from "../api.js";
import { clear, dialog, el, stylesheet } from "../dom.js";
import { formatTime, named, punctuation, register, t } from "../i18n.js";
import * as live from "../live.js";
import { LEVELS } from "../map.js";

register({
  "zh-CN": {
    "reports.commitment": "今日安全承诺", "reports.commitments": "企业安全承诺",
    "reports.work": "特殊作业登记", "reports.own_works": "本企业特殊作业", "reports.ongoing": "进行中的特殊作业",
    "reports.date": "日期", "reports.deadline": "截止时间 {time}",
    "reports.submitted": "已提交第 {revision} 版（{time}，承诺人：{signed_by}）",
    "reports.previous": "此前提交 {n} 版", "reports.not_submitted": "尚未提交",
    "reports.overdue": "已超过截止时间", "reports.summary": "已提交 {done} 家 · 未提交 {missing} 家",
    "reports.risk_level": "风险研判", "reports.risk.red": "重大风险（红）", "reports.risk.orange": "较大风险（橙）",
    "reports.risk.yellow": "一般风险（黄）", "reports.risk.blue": "较低风险（蓝）",
    "reports.production_state": "生产状态", "reports.units_running": "运行装置（套）",
    "reports.units_stopped": "停产装置（套）", "reports.units_maintenance": "检维修装置（套）",
    "reports.special_work": "今日计划特殊作业（张作业票）", "reports.hot_work_grade1": "一级动火（处）",
    "reports.hot_work_special": "特级动火（处）", "reports.sources_safe": "重大危险源是否处于安全状态",
    "reports.safe": "安全", "reports.unsafe": "不安全", "reports.note": "备注", "reports.signed_by": "承诺人（主要负责人）",
    "reports.submit_commitment": "提交承诺", "reports.resubmit_commitment": "重新提交承诺（替换当前版本）",
    "reports.commitment_done": "已提交安全承诺（第 {revision} 版）",
    "reports.source": "重大危险源", "reports.type": "作业类型", "reports.permit_no": "作业证编号",
    "reports.started_at": "开始时间", "reports.planned_end": "计划结束时间", "reports.location": "作业地点",
    "reports.supervisor": "监护人", "reports.register_work": "登记特殊作业",
    "reports.work_done": "已登记特殊作业 {permit}", "reports.end": "结束", "reports.end_note": "结束说明",
    "reports.end_title": "结束特殊作业 {permit}", "reports.ended": "已结束 {time}",
    "reports.state.ongoing": "进行中", "reports.state.planned": "未开始", "reports.overrun": "已超计划结束时间",
    "reports.col.enterprise": "企业", "reports.col.state": "状态", "reports.col.risk": "风险研判",
    "reports.col.production": "生产状态", "reports.col.units": "装置 运行/停产/检维修",
    "reports.col.special_work": "计划特殊作业", "reports.col.hot_work": "一级/特级动火",
    "reports.col.sources": "重大危险源状态", "reports.col.signed_by": "承诺人", "reports.col.submitted_at": "提交时间",
    "reports.col.revision": "版本", "reports.col.actions": "操作",
    "reports.status.submitted": "已提交", "reports.status.missing": "未提交",
    "reports.revision": "第 {revision} 版", "reports.none": "无", "reports.all_safe": "均安全",
    "reports.unsafe_sources": "不安全：{sources}",
  },
  en: {
    "reports.commitment": "Today's safety commitment", "reports.commitments": "Safety commitments",
    "reports.work": "Register special work", "reports.own_works": "Our special work",
    "reports.ongoing": "Special work on-going",
    "reports.date": "Date", "reports.deadline": "deadline {time}",
    "reports.submitted": "Revision {revision} submitted ({time}, signed by {signed_by})",
    "reports.previous": "{n} earlier revision(s)", "reports.not_submitted": "Not submitted yet",
    "reports.overdue": "past the deadline", "reports.summary": "{done} submitted · {missing} missing",
    "reports.risk_level": "Risk judgement", "reports.risk.red": "major risk (red)",
    "reports.risk.orange": "considerable risk (orange)", "reports.risk.yellow": "moderate risk (yellow)",
    "reports.risk.blue": "low risk (blue)",
    "reports.production_state": "Production state", "reports.units_running": "Units running",
    "reports.units_stopped": "Units stopped", "reports.units_maintenance": "Units in maintenance",
    "reports.special_work": "Special work planned today (permits)", "reports.hot_work_grade1": "Grade-1 hot work",
    "reports.hot_work_special": "Special-grade hot work", "reports.sources_safe": "Hazard sources in a safe state",
    "reports.safe": "safe", "reports.unsafe": "not safe", "reports.note": "Note",
    "reports.signed_by": "Signed by (main responsible person)",
    "reports.submit_commitment": "Submit commitment", "reports.resubmit_commitment": "Resubmit (replaces the current one)",
    "reports.commitment_done": "Safety commitment submitted (revision {revision})",
    "reports.source": "Hazard source", "reports.type": "Work type", "reports.permit_no": "Permit no.",
    "reports.started_at": "Start", "reports.planned_end": "Planned end", "reports.location": "Location",
    "reports.supervisor": "Supervisor", "reports.register_work": "Register special work",
    "reports.work_done": "Special work {permit} registered", "reports.end": "End", "reports.end_note": "Note on ending",
    "reports.end_title": "End special work {permit}", "reports.ended": "ended {time}",
    "reports.state.ongoing": "on-going", "reports.state.planned": "not started", "reports.overrun": "past its planned end",
    "reports.col.enterprise": "Enterprise", "reports.col.state": "State", "reports.col.risk": "Risk",
    "reports.col.production": "Production", "reports.col.units": "Units running/stopped/maintenance",
    "reports.col.special_work": "Special work planned", "reports.col.hot_work": "Hot work grade 1/special",
    "reports.col.sources": "Hazard sources", "reports.col.signed_by": "Signed by", "reports.col.submitted_at": "Submitted",
    "reports.col.revision": "Revision", "reports.col.actions": "Actions",
    "reports.status.submitted": "submitted", "reports.status.missing": "missing",
    "reports.revision": "rev. {revision}", "reports.none": "none", "reports.all_safe": "all safe",
    "reports.unsafe_sources": "not safe: {sources}",
  },
});

const COUNTS = ["units_running", "units_stopped", "units_maintenance"];
const HOT_WORK = ["hot_work_grade1", "hot_work_special"];
// A special work's columns, named as in the form that registers it.
const FORM_COLS = ["source", "type", "permit_no", "location", "supervisor", "started_at", "planned_end"];
const REFRESH_MS = 30_000;
// What was typed in a form and not yet accepted (and the day the centre chose), kept across a
// remount (a language switch).
const drafts = new Map(); // "<username>/<form>" -> {name: value}

const when = (iso) => formatTime(iso, true);

/** "2026-11-30T14:05" in the browser's time zone, as a datetime-local input holds it. */
function localInput(ms) {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60_000);
  return d.toISOString().slice(0, 16);
}

const field = (label, control) => el("label", { class: "reports-field" }, el("span", {}, t(label)), control);
const number = (name, value = 0) => el("input", { name, type: "number", min: 0, step: 1, required: true, value });
const text = (name, extra = {}) => el("input", { name, required: true, maxlength: 200, ...extra });

/** Forgets every draft (at sign-out: the next account must not see them). */
export function forgetDrafts() {
  drafts.clear();
}

function saveDraft(key, form) {
  drafts.set(key, Object.fromEntries(new FormData(form).entries()));
}

/** Sets the form's fields by name (those it has). */
function fill(form, values) {
  for (const [name, value] of Object.entries(values)) {
    const input = form.elements.namedItem(name);
    if (input) input.value = value;
  }
}

function restoreDraft(key, form) {
  const saved = drafts.get(key);
  if (saved) fill(form, saved);
  return !!saved;
}

/** A table: its header's catalogue keys and its rows of {attrs, cells}. */
function table(cls, cols, rows) {
  return el("table", { class: ["reports-table", cls] },
    el("thead", {}, el("tr", {}, cols.map((c) => el("th", {}, t(c))))),
    el("tbody", {}, rows.map((r) => el("tr", r.attrs, r.cells.map((c) => el("td", {}, c))))));
}

/** A special work's cells in the order of FORM_COLS. */
function workCells(w, names, typeName) {
  return [names.get(`${w.enterprise}/${w.hazard_source}`) ?? w.hazard_source, typeName(w.work_type),
    w.permit_no, w.location, w.supervisor, when(w.started_at), when(w.planned_end)];
}

/** "动火作业 1" for each work type a commitment plans, in the rules' order. */
function planned(c, types) {
  return types.filter((w) => c.special_work[w.code] > 0).map((w) => `${named(w)} ${c.special_work[w.code]}`);
}

const col = (names) => names.map((c) => `reports.col.${c}`);
/** A hazard source by its name and code: 液氯储罐区（HS101）, in English 液氯储罐区 (HS101). */
function sourceLabel(s) {
  const { open, close } = punctuation();
  return `${s.name}${open}${s.source}${close}`;
}

export default {
  id: "reports",
  nav: "nav.reports",
  permission: "monitor:read",
  mount(container, ctx) {
    stylesheet("/static/reports.css");
    const reporter = !!ctx.me.enterprise && ctx.me.permissions.includes("warning:answer");
    const names = new Map(); // "E1" and "E1/HS101" -> their names
    let vocabulary = { special_work_types: [], production_states: [] };
    let disposed = false;
    let pending = null;
    const view = reporter ? enterpriseView(container, ctx, names) : centreView(container, ctx, names);

    const typeName = (code) => named(vocabulary.special_work_types.find((w) => w.code === code)) || code;
    const stateName = (code) => named(vocabulary.production_states.find((s) => s.code === code)) || code;
    const lookups = { typeName, stateName };

    // The hazard sources' names (and the enterprise's own, for its forms) before the first render.
    const ready = Promise.all([get("/api/enterprises"), get("/api/sources")]).then(([ents, sources]) => {
      for (const e of ents) names.set(e.code, e.name);
      for (const s of sources.sources) names.set(`${s.enterprise}/${s.source}`, s.name);
      view.sources(sources.sources);
    }).catch(() => {});

    async function reload() {
      pending = null;
      await ready;
      try {
        const answers = await view.fetch();
        if (disposed) return;
        vocabulary = answers.commitments;
        view.render(answers, lookups, vocabulary);
      } catch (err) {
        if (!disposed) view.failed(err);
      }
    }

    // A burst of warning events is one reload.
    const soon = () => { pending ??= setTimeout(reload, 1000); };
    const unsubscribe = live.subscribe("warnings", soon);
    const timer = setInterval(reload, REFRESH_MS);
    view.onChange(reload);
    reload();

    return () => {
      disposed = true;
      clearTimeout(pending);
      clearInterval(timer);
      unsubscribe();
      view.unmount?.();
    };
  },
};

// -- the enterprise user: its commitment, its special work --------------------------------------

function enterpriseView(container, ctx, names) {
  const enterprise = ctx.me.enterprise;
  let today = null;
  // The commitment's draft is of its day: a draft kept past midnight is not restored.
  const draftKey = (form) => `${ctx.me.username}/${form}${form === "commitment" ? `/${today}` : ""}`;
  let changed = () => {};
  let commitmentFilled = false;
  let ownSources = [];

  const status = el("p", { class: "reports-status" });
  const commitmentFields = el("div", { class: "reports-fields" });
  const commitmentError = el("p", { class: "error reports-error", role: "alert" });
  const commitmentButton = el("button", { type: "submit", class: "primary" }, t("reports.submit_commitment"));
  const commitmentForm = el("form", { class: "reports-form reports-commitment-form" },
    commitmentFields, el("div", { class: "reports-buttons" }, commitmentButton), commitmentError);

  const workFields = el("div", { class: "reports-fields" });
  const workError = el("p", { class: "error reports-error", role: "alert" });
  const workForm = el("form", { class: "reports-form reports-work-form" }, workFields,
    el("div", { class: "reports-buttons" },
      el("button", { type: "submit", class: "primary" }, t("reports.register_work"))), workError);
  const works = el("div", { class: "reports-works" });
  const worksError = el("p", { class: "error reports-error", role: "alert" });
  const title = el("h2", {}, t("reports.commitment"));

  clear(container, el("div", { class: "reports reports-enterprise" },
    el("section", { class: "reports-panel reports-commitment" }, title, status, commitmentForm),
    el("section", { class: "reports-panel reports-work" }, el("h2", {}, t("reports.work")), workForm,
      el("h3", {}, t("reports.own_works")), worksError, works)));

  function buildCommitmentForm(vocabulary, current) {
    const select = (name, options) => el("select", { name, required: true }, options);
    clear(commitmentFields,
      field("reports.risk_level", select("risk_level",
        LEVELS.map((l) => el("option", { value: l }, t(`reports.risk.${l}`))))),
      field("reports.production_state", select("production_state",
        vocabulary.production_states.map((s) => el("option", { value: s.code }, named(s))))),
      COUNTS.map((c) => field(`reports.${c}`, number(c))),
      el("fieldset", { class: "reports-group" }, el("legend", {}, t("reports.special_work")),
        vocabulary.special_work_types.map((w) => el("label", { class: "reports-field" },
          el("span", {}, named(w)), number(`special_work.${w.code}`)))),
      HOT_WORK.map((c) => field(`reports.${c}`, number(c))),
      el("fieldset", { class: "reports-group" }, el("legend", {}, t("reports.sources_safe")),
        ownSources.map((s) => el("label", { class: "reports-field" },
          el("span", {}, sourceLabel(s)),
          select(`sources_safe.${s.source}`, [el("option", { value: "true" }, t("reports.safe")),
            el("option", { value: "false" }, t("reports.unsafe"))])))),
      field("reports.note", el("textarea", { name: "note", rows: 2, maxlength: 2000 })),
      field("reports.signed_by", text("signed_by")));
    if (restoreDraft(draftKey("commitment"), commitmentForm) || !current) return;
    const values = {
      risk_level: current.risk_level, production_state: current.production_state,
      note: current.note, signed_by: current.signed_by,
    };
    for (const c of [...COUNTS, ...HOT_WORK]) values[c] = current[c];
    for (const [k, v] of Object.entries(current.special_work)) values[`special_work.${k}`] = v;
    for (const [k, v] of Object.entries(current.sources_safe)) values[`sources_safe.${k}`] = String(v);
    fill(commitmentForm, values);
  }

  function buildWorkForm(vocabulary) {
    const now = Date.now();
    clear(workFields,
      field("reports.source", el("select", { name: "source", required: true },
        ownSources.map((s) => el("option", { value: s.source }, sourceLabel(s))))),
      field("reports.type", el("select", { name: "type", required: true },
        vocabulary.special_work_types.map((w) => el("option", { value: w.code }, named(w))))),
      field("reports.permit_no", text("permit_no")),
      field("reports.started_at", el("input", { name: "started_at", type: "datetime-local", required: true, value: localInput(now) })),
      field("reports.planned_end", el("input", { name: "planned_end", type: "datetime-local", required: true, value: localInput(now + 4 * 3600_000) })),
      field("reports.location", text("location")),
      field("reports.supervisor", text("supervisor")));
    restoreDraft(draftKey("work"), workForm);
  }

  function commitmentBody() {
    const f = new FormData(commitmentForm);
    const body = {
      date: today, risk_level: f.get("risk_level"), production_state: f.get("production_state"),
      special_work: {}, sources_safe: {}, note: f.get("note"), signed_by: f.get("signed_by").trim(),
    };
    for (const c of [...COUNTS, ...HOT_WORK]) body[c] = Number(f.get(c));
    for (const [name, value] of f.entries()) {
      const [group, code] = name.split(".");
      if (group === "special_work") body.special_work[code] = Number(value);
      if (group === "sources_safe") body.sources_safe[code] = value === "true";
    }
    return body;
  }

  commitmentForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    commitmentError.textContent = "";
    try {
      const done = await call("POST", "/api/commitments", commitmentBody());
      drafts.delete(draftKey("commitment"));
      status.textContent = t("reports.commitment_done", { revision: done.revision });
      changed();
    } catch (err) {
      commitmentError.textContent = err.message;
    }
  });

  workForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    workError.textContent = "";
    const f = Object.fromEntries(new FormData(workForm).entries());
    const body = { ...f, permit_no: f.permit_no.trim(), location: f.location.trim(), supervisor: f.supervisor.trim() };
    for (const k of ["started_at", "planned_end"]) body[k] = new Date(f[k]).toISOString();
    try {
      const done = await call("POST", "/api/special-work", body);
      drafts.delete(draftKey("work"));
      workForm.elements.namedItem("permit_no").value = "";
      workError.textContent = "";
      worksError.textContent = t("reports.work_done", { permit: done.permit_no });
      worksError.classList.add("ok");
      changed();
    } catch (err) {
      workError.textContent = err.message;
    }
  });

  async function end(w) {
    const values = await dialog({
      title: t("reports.end_title", { permit: w.permit_no }),
      fields: [el("label", {}, t("reports.end_note"), el("textarea", { name: "note", rows: 3, maxlength: 1000 }))],
      submitLabel: t("reports.end"), cancelLabel: t("common.cancel"), className: "reports-dialog",
    });
    if (values === null) return;
    worksError.classList.remove("ok");
    worksError.textContent = "";
    try {
      await call("POST", `/api/special-work/${w.id}/end`, { note: values.note });
      changed();
    } catch (err) {
      worksError.textContent = err.message;
    }
  }

  function workState(w) {
    if (w.ended_at) return t("reports.ended", { time: when(w.ended_at) });
    return [t(w.ongoing ? "reports.state.ongoing" : "reports.state.planned"),
      w.overrun ? el("div", { class: "reports-overrun" }, t("reports.overrun")) : null];
  }

  return {
    onChange(cb) { changed = cb; },
    sources(list) { ownSources = list.filter((s) => s.enterprise === enterprise); },
    async fetch() {
      const [commitments, work] = await Promise.all([
        get("/api/commitments", {}, { background: true }),
        get("/api/special-work", {}, { background: true }),
      ]);
      return { commitments, work };
    },
    render({ commitments, work }, lookups, vocabulary) {
      today = commitments.date;
      const current = commitments.commitments.find((c) => c.enterprise === enterprise) ?? null;
      title.textContent = `${t("reports.commitment")} · ${today}`;
      if (!commitmentFilled) {
        commitmentFilled = true;
        buildCommitmentForm(vocabulary, current);
        buildWorkForm(vocabulary);
      }
      const deadline = commitments.deadline;
      const late = deadline && Date.parse(deadline) < Date.now();
      commitmentButton.textContent = t(current ? "reports.resubmit_commitment" : "reports.submit_commitment");
      clear(status, current
        ? [el("span", { class: "reports-ok", dataset: { revision: current.revision } }, t("reports.submitted",
          { revision: current.revision, time: when(current.submitted_at), signed_by: current.signed_by })),
        " · ", el("span", { class: "reports-previous", dataset: { previous: current.previous.length } },
          t("reports.previous", { n: current.previous.length }))]
        : [el("span", { class: "reports-missing" }, t("reports.not_submitted")),
          deadline ? ` · ${t("reports.deadline", { time: when(deadline) })}` : "",
          late ? el("b", { class: "reports-missing" }, ` · ${t("reports.overdue")}`) : null]);
      status.dataset.state = current ? "submitted" : "missing";
      const rows = work.special_work.slice(0, 50).map((w) => ({
        attrs: { class: ["reports-work-row", w.overrun ? "overdue" : null, w.ended_at ? "ended" : null],
          dataset: { permit: w.permit_no, id: w.id } },
        cells: [...workCells(w, names, lookups.typeName), workState(w),
          w.ended_at ? "" : el("button", { type: "button", class: "reports-end", onclick: () => end(w) }, t("reports.end"))],
      }));
      clear(works, rows.length
        ? table("reports-work-table", [...FORM_COLS.map((c) => `reports.${c}`), ...col(["state", "actions"])], rows)
        : el("p", { class: "muted" }, t("reports.none")));
    },
    failed(err) {
      worksError.classList.remove("ok");
      worksError.textContent = t("common.error", { message: err.message });
    },
    unmount() {
      if (!commitmentFilled) return;
      saveDraft(draftKey("commitment"), commitmentForm);
      saveDraft(draftKey("work"), workForm);
    },
  };
}

// -- the centre: every enterprise's commitment of a day, the special work on-going ---------------

function centreView(container, ctx, names) {
  let changed = () => {};
  const draftKey = `${ctx.me.username}/day`; // the day chosen, kept across a language switch
  const day = el("input", { type: "date", class: "reports-date", name: "date", value: drafts.get(draftKey)?.date });
  const summary = el("span", { class: "reports-summary" });
  const commitments = el("div", { class: "reports-commitments" });
  const ongoing = el("div", { class: "reports-ongoing" });
  const error = el("p", { class: "error reports-error", role: "alert" });
  clear(container, el("div", { class: "reports reports-centre" },
    el("section", { class: "reports-panel" }, el("h2", {}, t("reports.commitments")),
      el("div", { class: "reports-toolbar" }, el("label", {}, t("reports.date"), " ", day), summary), error,
      commitments),
    el("section", { class: "reports-panel" }, el("h2", {}, t("reports.ongoing")), ongoing)));
  day.addEventListener("change", () => {
    drafts.set(draftKey, { date: day.value });
    changed();
  });

  function sourcesCell(c) {
    const unsafe = Object.entries(c.sources_safe).filter(([, safe]) => !safe)
      .map(([code]) => names.get(`${c.enterprise}/${code}`) ?? code);
    return unsafe.length
      ? el("span", { class: "reports-missing" }, t("reports.unsafe_sources", { sources: unsafe.join(punctuation().comma) }))
      : t("reports.all_safe");
  }

  return {
    onChange(cb) { changed = cb; },
    sources() {},
    async fetch() {
      const [listed, work] = await Promise.all([
        get("/api/commitments", { date: day.value }, { background: true }),
        get("/api/special-work", { active: "true" }, { background: true }),
      ]);
      return { commitments: listed, work };
    },
    render({ commitments: listed, work }, { typeName, stateName }, { special_work_types: types }) {
      error.textContent = "";
      day.value = listed.date;
      const deadline = listed.deadline;
      const late = deadline && Date.parse(deadline) < Date.now();
      summary.textContent = `${t("reports.summary", { done: listed.commitments.length, missing: listed.missing.length })}`
        + (deadline ? ` · ${t("reports.deadline", { time: when(deadline) })}` : "");
      const enterpriseName = (code) => names.get(code) ?? code;
      const rows = [
        ...listed.missing.map((e) => ({
          attrs: { class: "reports-row missing", dataset: { enterprise: e, state: "missing" } },
          cells: [enterpriseName(e), el("span", { class: "reports-missing" }, t("reports.status.missing"),
            el("div", {}, deadline ? t("reports.deadline", { time: when(deadline) }) : "",
              late ? ` · ${t("reports.overdue")}` : "")), "", "", "", "", "", "", "", "", ""],
        })),
        ...listed.commitments.map((c) => ({
          attrs: { class: ["reports-row", `level-${c.risk_level}`], dataset: { enterprise: c.enterprise, state: "submitted" } },
          cells: [enterpriseName(c.enterprise), t("reports.status.submitted"),
            el("span", { class: "reports-level" }, t(`reports.risk.${c.risk_level}`)), stateName(c.production_state),
            `${c.units_running} / ${c.units_stopped} / ${c.units_maintenance}`,
            planned(c, types).join(punctuation().comma) || t("reports.none"),
            `${c.hot_work_grade1} / ${c.hot_work_special}`, sourcesCell(c), c.signed_by, when(c.submitted_at),
            [t("reports.revision", { revision: c.revision }),
              c.previous.length ? el("div", { class: "muted" }, t("reports.previous", { n: c.previous.length })) : null]],
        })),
      ];
      clear(commitments, table("reports-commitment-table", col(["enterprise", "state", "risk", "production", "units",
        "special_work", "hot_work", "sources", "signed_by", "submitted_at", "revision"]), rows));
      const works = work.special_work.map((w) => ({
        attrs: { class: ["reports-work-row", w.overrun ? "overdue" : null], dataset: { permit: w.permit_no, id: w.id } },
        cells: [enterpriseName(w.enterprise), ...workCells(w, names, typeName).slice(0, -1),
          [when(w.planned_end), w.overrun ? el("div", { class: "reports-overrun" }, t("reports.overrun")) : null]],
      }));
      clear(ongoing, works.length
        ? table("reports-work-table", [...col(["enterprise"]), ...FORM_COLS.map((c) => `reports.${c}`)], works)
        : el("p", { class: "muted" }, t("reports.none")));
    },
    failed(err) { error.textContent = t("common.error", { message: err.message }); },
  };
}
