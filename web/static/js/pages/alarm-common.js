// What the alarm board and the alarm detail share: labels, the acknowledge and shelve dialogs,
// the operator actions, and the small caches of names (enterprises, points).
import { call, get } from "../api.js";
import { dialog, el, toast } from "../dom.js";
import { formatNumber, register, t } from "../i18n.js";

register({
  "zh-CN": {
    "board.priority.1": "紧急", "board.priority.2": "高", "board.priority.3": "中", "board.priority.4": "低",
    "board.state.normal": "正常", "board.state.unack": "未确认", "board.state.acked": "已确认",
    "board.state.rtn_unack": "已恢复未确认", "board.state.shelved": "已屏蔽",
    "board.state.suppressed": "已抑制", "board.state.out_of_service": "已停用",
    "board.class.process": "工艺", "board.class.gas": "可燃有毒气体", "board.class.quality": "数据质量",
    "board.class.video": "视频", "board.class.system": "系统",
    "board.cond.HH": "高高限", "board.cond.H": "高限", "board.cond.L": "低限", "board.cond.LL": "低低限",
    "board.cond.gas.H": "一级报警", "board.cond.gas.HH": "二级报警",
    "board.cond.ROC": "变化率超限", "board.cond.BAD_QUALITY": "坏质量/通讯中断",
    "board.cond.STALE": "数据陈旧", "board.cond.STUCK": "数值冻结", "board.cond.OUT_OF_RANGE": "超量程",
    "board.cond.FORECAST": "趋势预测超限",
    "board.kind.raised": "报警", "board.kind.cleared": "恢复", "board.kind.acknowledged": "确认",
    "board.kind.shelved": "屏蔽", "board.kind.unshelved": "解除屏蔽", "board.kind.suppressed": "抑制",
    "board.kind.unsuppressed": "解除抑制", "board.kind.removed": "停用", "board.kind.restored": "恢复使用",
    "board.kind.reannunciated": "再次报警", "board.kind.reset": "复位", "board.kind.escalated": "升级通知",
    "board.ack": "确认", "board.ack_title": "确认报警", "board.ack_many_title": "确认 {n} 条报警",
    "board.comment": "确认意见（可选）", "board.comment_hint": "如：已电话通知企业现场核实",
    "board.shelve": "屏蔽", "board.shelve_title": "屏蔽报警", "board.duration": "屏蔽时长",
    "board.reason": "屏蔽原因", "board.reason_hint": "如：探测器标定作业",
    "board.dur.900": "15 分钟", "board.dur.3600": "1 小时", "board.dur.14400": "4 小时",
    "board.dur.28800": "8 小时", "board.dur.once": "至本次报警恢复",
    "board.unshelve": "解除屏蔽", "board.acked_toast": "已确认 {n} 条报警",
    "board.over_range": "超量程", "board.under_range": "低于量程", "board.signal_fault": "信号故障",
    "board.shelved_toast": "已屏蔽：{code}", "board.unshelved_toast": "已解除屏蔽：{code}",
  },
  en: {
    "board.priority.1": "emergency", "board.priority.2": "high", "board.priority.3": "medium",
    "board.priority.4": "low",
    "board.state.normal": "normal", "board.state.unack": "unacknowledged", "board.state.acked": "acknowledged",
    "board.state.rtn_unack": "cleared, unacknowledged", "board.state.shelved": "shelved",
    "board.state.suppressed": "suppressed", "board.state.out_of_service": "out of service",
    "board.class.process": "process", "board.class.gas": "gas", "board.class.quality": "data quality",
    "board.class.video": "video", "board.class.system": "system",
    "board.cond.HH": "high-high", "board.cond.H": "high", "board.cond.L": "low", "board.cond.LL": "low-low",
    "board.cond.gas.H": "level 1 gas alarm", "board.cond.gas.HH": "level 2 gas alarm",
    "board.cond.ROC": "rate of change", "board.cond.BAD_QUALITY": "bad quality / comm. loss",
    "board.cond.STALE": "stale", "board.cond.STUCK": "stuck", "board.cond.OUT_OF_RANGE": "out of range",
    "board.cond.FORECAST": "forecast crossing",
    "board.kind.raised": "raised", "board.kind.cleared": "cleared", "board.kind.acknowledged": "acknowledged",
    "board.kind.shelved": "shelved", "board.kind.unshelved": "unshelved", "board.kind.suppressed": "suppressed",
    "board.kind.unsuppressed": "unsuppressed", "board.kind.removed": "removed from service",
    "board.kind.restored": "returned to service", "board.kind.reannunciated": "re-annunciated",
    "board.kind.reset": "reset", "board.kind.escalated": "escalated",
    "board.ack": "Acknowledge", "board.ack_title": "Acknowledge alarm",
    "board.ack_many_title": "Acknowledge {n} alarms", "board.comment": "Comment (optional)",
    "board.comment_hint": "e.g. enterprise called to check on site",
    "board.shelve": "Shelve", "board.shelve_title": "Shelve alarm", "board.duration": "Duration",
    "board.reason": "Reason", "board.reason_hint": "e.g. detector calibration",
    "board.dur.900": "15 minutes", "board.dur.3600": "1 hour", "board.dur.14400": "4 hours",
    "board.dur.28800": "8 hours", "board.dur.once": "until this alarm clears",
    "board.unshelve": "Unshelve", "board.acked_toast": "{n} alarms acknowledged",
    "board.over_range": "over range", "board.under_range": "under range",
    "board.signal_fault": "signal fault",
    "board.shelved_toast": "Shelved: {code}", "board.unshelved_toast": "Unshelved: {code}",
  },
});

export const STATES = ["unack", "rtn_unack", "acked", "shelved", "suppressed", "out_of_service"];
export const CLASSES = ["process", "gas", "quality", "video", "system"];
export const UNACKED = new Set(["unack", "rtn_unack"]);
const SHELVE_DURATIONS = ["900", "3600", "14400", "28800", "once"];

export function conditionLabel(alarm) {
  const gas = alarm.class === "gas" && (alarm.condition === "H" || alarm.condition === "HH");
  return t(gas ? `board.cond.gas.${alarm.condition}` : `board.cond.${alarm.condition}`);
}

/** A reading of the alarm's point with its unit. Beyond the instrument range (`alarm.range`)
 * the reading is a bound, not the value (a saturated gas detector in a large leak): "≥ 3.094
 * mg/m3 超量程"; farther out than the measurements (`alarm.readings`) it is a failure signal
 * (a broken loop): "-0.75 MPa 信号故障". */
export function formatReading(value, alarm) {
  const text = `${formatNumber(value, 3)} ${alarm.unit ?? ""}`.trim();
  const [lo, hi] = alarm.range ?? [];
  if (!Number.isFinite(value) || !(value > hi || value < lo)) return text;
  const [min, max] = alarm.readings ?? [-Infinity, Infinity];
  if (value < min || value > max) return `${text} ${t("board.signal_fault")}`;
  return value > hi ? `≥ ${text} ${t("board.over_range")}` : `≤ ${text} ${t("board.under_range")}`;
}

export function priorityBadge(priority) {
  return el("span", { class: ["badge", `prio-${priority}`], title: t(`board.priority.${priority}`) },
    `P${priority}`);
}

export function canOperate(me) {
  return me.permissions.includes("alarm:operate");
}

// -- names of enterprises and points (loaded once per sign-in, small) --------------------------

let names = null;

/** {enterprises: Map(code → enterprise), points: Map(id → point)}, loaded once. */
export async function loadNames() {
  if (!names) {
    names = (async () => {
      const [enterprises, points] = await Promise.all([get("/api/enterprises"), get("/api/points")]);
      return {
        enterprises: new Map(enterprises.map((e) => [e.code, e])),
        points: new Map(points.map((p) => [p.id, p])),
      };
    })();
    names.catch(() => {
      names = null;
    });
  }
  return names;
}

/** Forgets the cached names (after sign-out: another account may see other enterprises). */
export function forgetNames() {
  names = null;
}

// -- operator actions ------------------------------------------------------------------------

function fail(err) {
  toast(t("common.error", { message: err.message }), "error");
}

/** Asks for a comment and acknowledges the alarms (one, or the checked ones with `bulk`);
 * resolves to true if done. */
export async function acknowledge(alarms, { bulk = false } = {}) {
  if (!alarms.length) return false;
  const one = alarms.length === 1 && !bulk ? alarms[0] : null;
  const values = await dialog({
    title: one ? `${t("board.ack_title")} · ${one.code ?? ""} ${conditionLabel(one)}` : t("board.ack_many_title", { n: alarms.length }),
    className: "ack-dialog",
    fields: [el("label", {}, t("board.comment"),
      el("input", { name: "comment", maxlength: 500, autocomplete: "off", placeholder: t("board.comment_hint") }))],
    submitLabel: t("board.ack"), cancelLabel: t("common.cancel"),
  });
  if (!values) return false;
  try {
    if (one) await call("POST", `/api/alarms/${one.id}/ack`, { comment: values.comment });
    else await call("POST", "/api/alarms/ack", { ids: alarms.map((a) => a.id), comment: values.comment });
    toast(t("board.acked_toast", { n: alarms.length }));
    return true;
  } catch (err) {
    fail(err);
    return false;
  }
}

/** Asks for a duration and a reason and shelves the alarm; resolves to true if done. */
export async function shelve(alarm) {
  const values = await dialog({
    title: `${t("board.shelve_title")} · ${alarm.code ?? ""} ${conditionLabel(alarm)}`,
    className: "shelve-dialog",
    fields: [
      el("label", {}, t("board.duration"), el("select", { name: "duration" },
        SHELVE_DURATIONS.map((d) => el("option", { value: d, selected: d === "3600" }, t(`board.dur.${d}`))))),
      el("label", {}, t("board.reason"),
        el("input", { name: "reason", required: true, maxlength: 500, autocomplete: "off", placeholder: t("board.reason_hint") })),
    ],
    submitLabel: t("board.shelve"), cancelLabel: t("common.cancel"),
  });
  if (!values) return false;
  const body = values.duration === "once"
    ? { reason: values.reason, one_shot: true }
    : { reason: values.reason, duration_s: Number(values.duration) };
  try {
    await call("POST", `/api/alarms/${alarm.id}/shelve`, body);
    toast(t("board.shelved_toast", { code: alarm.code ?? alarm.id }));
    return true;
  } catch (err) {
    fail(err);
    return false;
  }
}

export async function unshelve(alarm) {
  try {
    await call("POST", `/api/alarms/${alarm.id}/unshelve`);
    toast(t("board.unshelved_toast", { code: alarm.code ?? alarm.id }));
    return true;
  } catch (err) {
    fail(err);
    return false;
  }
}
