// Message catalogue: zh-CN first, English by a switch. Each module registers its own strings
// at import time under its namespace (board.*, overview.*, common.*, nav.* …).
const CATALOGUE = { "zh-CN": {}, en: {} };
const LANGS = ["zh-CN", "en"];
const listeners = new Set();
let current = LANGS.includes(localStorage.getItem("anjian.lang")) ? localStorage.getItem("anjian.lang") : "zh-CN";

/** Adds {"zh-CN": {...}, en: {...}} to the catalogue (later keys override earlier ones). */
export function register(catalogue) {
  for (const [l, messages] of Object.entries(catalogue)) {
    CATALOGUE[l] = Object.assign(CATALOGUE[l] ?? {}, messages);
  }
}

/** The text of `key` in the current language (falling back to zh-CN, then the key itself);
 * `{name}` placeholders are filled from `vars`. */
export function t(key, vars) {
  const text = CATALOGUE[current]?.[key] ?? CATALOGUE["zh-CN"][key] ?? key;
  if (!vars) return text;
  return text.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
}

/** Whether `key` is in the catalogue (e.g. to translate a server code only when known). */
export function has(key) {
  return key in CATALOGUE["zh-CN"] || key in (CATALOGUE[current] ?? {});
}

export function lang() {
  return current;
}

export function setLang(l) {
  if (!LANGS.includes(l) || l === current) return;
  current = l;
  localStorage.setItem("anjian.lang", l);
  document.documentElement.lang = l;
  for (const cb of [...listeners]) cb(l);
}

/** Calls cb(lang) after every language switch; returns a function that stops it. */
export function onLang(cb) {
  listeners.add(cb);
  return () => listeners.delete(cb);
}

/** Fills every element under root carrying data-i18n="key" (text), data-i18n-title="key"
 * (title attribute) or data-i18n-placeholder="key". */
export function translate(root = document) {
  for (const node of root.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const node of root.querySelectorAll("[data-i18n-title]")) node.title = t(node.dataset.i18nTitle);
  for (const node of root.querySelectorAll("[data-i18n-placeholder]")) {
    node.placeholder = t(node.dataset.i18nPlaceholder);
  }
}

/** A time as the current language writes it (local time of the browser): 2026/12/02 08:51:31 in
 * Chinese; in English the date as ISO 8601, 2026-12-02 08:51:31, not the US month/day order
 * (12/02/2026) that a reader in China takes for 12 February. Hours run 00-23 (h23: never 24). */
export function formatTime(iso, withDate = false) {
  if (!iso) return "—";
  const d = new Date(iso);
  const opts = { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" };
  if (withDate) Object.assign(opts, { year: "numeric", month: "2-digit", day: "2-digit" });
  if (!withDate || current === "zh-CN") return d.toLocaleString(current, opts);
  const p = Object.fromEntries(new Intl.DateTimeFormat("en", opts).formatToParts(d).map((x) => [x.type, x.value]));
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second}`;
}

/** The current language's punctuation for text put together in code: Chinese full-width marks
 * (人名、人名；名称：值；名称（代码）), English ASCII marks with their spaces. */
const PUNCTUATION = {
  "zh-CN": { colon: "：", semicolon: "；", comma: "、", open: "（", close: "）" },
  en: { colon: ": ", semicolon: "; ", comma: ", ", open: " (", close: ")" },
};
export function punctuation() {
  return PUNCTUATION[current] ?? PUNCTUATION.en;
}

/** The current language's name of an item the API names in both, {zh, en} ("" for none). */
export function named(item) {
  return item ? (current === "zh-CN" ? item.zh : item.en) : "";
}

/** A number with at most `digits` decimals, "—" for null. */
export function formatNumber(v, digits = 2) {
  if (v === null || v === undefined || Number.isNaN(v)) return "—";
  return Number(v).toLocaleString(current, { maximumFractionDigits: digits });
}

/** As `formatNumber`, but a figure that is not zero never reads 0: one too small for `digits`
 * decimals keeps two significant digits (one alarm a day is 0.042 an hour, not 0). */
export function formatFigure(v, digits = 2) {
  if (typeof v === "number" && v !== 0 && Math.abs(v) < 0.5 * 10 ** -digits) {
    return v.toLocaleString(current, { maximumSignificantDigits: 2 });
  }
  return formatNumber(v, digits);
}

document.documentElement.lang = current;

register({
  "zh-CN": {
    "common.app": "安监 · 应急指挥中心", "common.switch": "English", "common.signin": "登录",
    "common.logout": "退出", "common.username": "用户名", "common.password": "密码",
    "common.totp": "动态口令", "common.totp_hint": "请输入身份验证器应用中的6位动态口令",
    "common.cancel": "取消", "common.ok": "确定", "common.close": "关闭", "common.loading": "加载中…",
    "common.none": "无", "common.all": "全部", "common.error": "出错：{message}",
    "common.link.down": "中断", "common.link.up": "正常", // a device's link (通讯状态)
    "common.forbidden": "当前角色无权执行此操作", "common.not_found": "未找到",
    "common.mute": "静音", "common.unmute": "取消静音",
    "common.sound_on": "声音：开", "common.sound_off": "声音：关",
    "common.bad_credentials": "用户名或密码错误",
    "common.locked": "账号已锁定，请稍后再试或联系安全管理员",
    "common.not_authorised": "账号尚未经安全管理员授权，请联系安全管理员",
    "common.totp_required": "请输入动态口令", "common.bad_totp": "动态口令错误",
    "common.session_expired": "因长时间未操作，会话已超时，请重新登录",
    "common.signed_out": "已退出登录", "common.too_many": "尝试过于频繁，请稍后再试",
    "common.must_change_password": "密码需修改：请先修改密码后再使用控制台",
    "common.must_enrol_totp": "需先绑定身份验证器（动态口令）后再使用控制台",
    "common.offline": "实时连接中断，正在重连…",
    "common.role.duty_officer": "值班员", "common.role.shift_leader": "值班长",
    "common.role.expert": "专家", "common.role.leader": "指挥长", "common.role.enterprise": "企业用户",
    "common.role.sysadmin": "系统管理员", "common.role.secadmin": "安全管理员",
    "common.role.auditor": "审计管理员",
    "common.placeholder": "该页面正在建设中",
    "common.no_pages": "当前角色没有可用的控制台页面",
    "common.old_password": "当前密码", "common.new_password": "新密码", "common.repeat_password": "再次输入新密码",
    "common.passwords_differ": "两次输入的新密码不一致",
    "common.enrol_hint": "在身份验证器应用中添加下面的密钥（或链接），然后输入它显示的6位动态口令。",
  },
  en: {
    "common.app": "anjian · Emergency command centre", "common.switch": "中文",
    "common.signin": "Sign in", "common.logout": "Sign out", "common.username": "User name",
    "common.password": "Password", "common.totp": "One-time code",
    "common.totp_hint": "Enter the 6-digit code from your authenticator app",
    "common.cancel": "Cancel", "common.ok": "OK", "common.close": "Close",
    "common.loading": "Loading…", "common.none": "none", "common.all": "all",
    "common.link.down": "lost", "common.link.up": "up",
    "common.error": "Error: {message}", "common.forbidden": "Your role may not do this",
    "common.not_found": "Not found", "common.mute": "Mute", "common.unmute": "Unmute",
    "common.sound_on": "Sound: on", "common.sound_off": "Sound: off",
    "common.bad_credentials": "Wrong user name or password",
    "common.locked": "Account locked: try later or ask the security administrator",
    "common.not_authorised": "The security administrator has not yet authorised this account",
    "common.totp_required": "Enter your one-time code", "common.bad_totp": "Wrong one-time code",
    "common.session_expired": "Your session timed out after inactivity: sign in again",
    "common.signed_out": "Signed out", "common.too_many": "Too many attempts: wait a minute",
    "common.must_change_password": "Your password must be changed before using the console",
    "common.must_enrol_totp": "Enrol an authenticator app (one-time codes) before using the console",
    "common.offline": "Live connection lost, reconnecting…",
    "common.role.duty_officer": "duty officer", "common.role.shift_leader": "shift leader",
    "common.role.expert": "expert", "common.role.leader": "leader",
    "common.role.enterprise": "enterprise user", "common.role.sysadmin": "system administrator",
    "common.role.secadmin": "security administrator", "common.role.auditor": "auditor",
    "common.placeholder": "This page is being built",
    "common.no_pages": "Your role has no console pages",
    "common.old_password": "Current password", "common.new_password": "New password",
    "common.repeat_password": "New password again", "common.passwords_differ": "The new passwords differ",
    "common.enrol_hint": "Add this key (or link) to your authenticator app, then enter the 6-digit code it shows.",
  },
});
