// Console boot: sign-in (with the TOTP step), session, role-aware navigation, hash router,
// idle-timeout message, the status bar with live pipeline health.
import { call, onUnauthorized, setCsrf } from "./api.js";
import { $, clear, el, toast } from "./dom.js";
import * as health from "./health.js";
import { formatNumber, lang, onLang, register, setLang, t, translate } from "./i18n.js";
import * as live from "./live.js";
import * as sound from "./sound.js";
import { forgetNames } from "./pages/alarm-common.js";
import board from "./pages/board.js";
import alarm from "./pages/alarm.js";
import overview from "./pages/overview.js";
import trends from "./pages/trends.js";
import warnings from "./pages/warnings.js";
import reports, { forgetDrafts } from "./pages/reports.js";
import kpi from "./pages/kpi.js";
import wall from "./pages/wall.js";
import cameras from "./pages/cameras.js";
import system from "./pages/system.js";

// Every page, in navigation order. A page: {id, nav (catalogue key or null = not in the nav),
// permission, aliases? (more first path segments it serves), chrome? (false = no nav chrome),
// mount(container, ctx) → unmount()}.
const PAGES = [board, overview, warnings, reports, trends, kpi, cameras, system, wall, alarm];

register({
  "zh-CN": {
    "nav.board": "报警", "nav.overview": "企业总览", "nav.warnings": "预警", "nav.reports": "企业填报", "nav.trends": "趋势",
    "nav.kpi": "报警指标", "nav.wall": "大屏",
    "status.ingest": "采集", "status.latency": "延迟", "status.collectors": "采集器",
    "status.cameras": "摄像机", "status.up": "在线", "status.down": "离线", "status.live": "实时",
    "status.live_on": "已连接", "status.live_off": "中断", "status.database": "数据库",
    "status.per_s": "{n}点/秒", "status.latency_value": "{p50} ms（最大 {max}）",
    "status.latency_title": "设备采样时间到控制台收到的时间（近10秒中位数与最大值）",
    "sources.changed": "{source} 已设为{state}（{who}：{reason}）",
    "escalation.open": "查看报警", "escalation.dismiss": "知道了", "escalation.dismiss_all": "全部知道了（{n} 条）",
    "escalation.fold": "收起", "escalation.unfold": "升级通知 {n} 条（展开）",
  },
  en: {
    "nav.board": "Alarms", "nav.overview": "Enterprises", "nav.warnings": "Warnings", "nav.reports": "Reports",
    "nav.trends": "Trends", "nav.kpi": "Alarm KPIs", "nav.wall": "Wall",
    "status.ingest": "Ingest", "status.latency": "Latency", "status.collectors": "Collectors",
    "status.cameras": "Cameras", "status.up": "up", "status.down": "down", "status.live": "Live",
    "status.live_on": "connected", "status.live_off": "lost", "status.database": "Database",
    "status.per_s": "{n} samples/s", "status.latency_value": "{p50} ms (max {max})",
    "status.latency_title": "From the device's sample time to its receipt here (median and max over 10 s)",
    "sources.changed": "{source} set to {state} ({who}: {reason})",
    "escalation.open": "Open the alarm", "escalation.dismiss": "Dismiss", "escalation.dismiss_all": "Dismiss all ({n})",
    "escalation.fold": "Fold", "escalation.unfold": "{n} escalation notice(s) (unfold)",
  },
});

// The audible cue: a new priority-1 alarm beeps on every page (unless muted).
let stopCue = null;
function startCue() {
  stopCue?.();
  stopCue = me.permissions.includes("alarm:operate")
    ? live.subscribe("alarms", (msg) => {
      if ((msg.events ?? []).some((e) => e.kind === "raised" && e.priority === 1)) sound.beep();
    })
    : null;
}

// Escalations up the duty roster (alarms.escalation: 值班员 → 值班长 → 指挥长) addressed to the
// signed-in account's role stay on screen, with the cue, until opened, dismissed, or the alarm is
// no longer unacknowledged; a later notice about the same alarm replaces the earlier one. In a
// flood they scroll within the right-hand column, and one button dismisses them all. Folded, they
// leave the board to read under a button that counts them; a new notice unfolds them.
let stopEscalations = null;
function startEscalations() {
  stopEscalations?.();
  stopEscalations = null;
  if (!me.permissions.includes("alarm:operate")) return;
  const all = el("button", { type: "button", class: "escalations-dismiss-all" });
  const fold = el("button", { type: "button", class: "escalations-fold" });
  const list = el("div", { class: "escalations-list" });
  const box = el("div", { id: "escalations", role: "alert", hidden: true },
    el("div", { class: "escalations-head" }, all, fold), list);
  document.body.append(box);
  let folded = false;
  const refresh = () => {
    const n = list.children.length;
    box.hidden = n === 0;
    box.classList.toggle("folded", folded);
    list.hidden = folded;
    all.hidden = n < 2 || folded;
    all.textContent = t("escalation.dismiss_all", { n });
    fold.textContent = folded ? t("escalation.unfold", { n }) : t("escalation.fold");
  };
  const remove = (node) => { node?.remove(); refresh(); };
  all.addEventListener("click", () => { list.replaceChildren(); refresh(); });
  fold.addEventListener("click", () => { folded = !folded; refresh(); });
  const notice = (alarm) => list.querySelector(`.escalation[data-alarm="${alarm}"]`);
  // Shows this role's notices; a later notice about an alarm replaces the earlier one.
  const show = (notes) => {
    const mine = notes.filter((n) => n.role === me.role && !(Number(notice(n.alarm)?.dataset.attempt) >= n.attempt));
    for (const n of mine) {
      const open = el("a", { href: `#/alarm/${n.alarm}`, class: "escalation-open" }, t("escalation.open"));
      const dismiss = el("button", { type: "button", class: "escalation-dismiss" }, t("escalation.dismiss"));
      const node = el("div", { class: "escalation",
        dataset: { alarm: String(n.alarm), priority: String(n.priority), attempt: String(n.attempt) } },
        el("p", {}, lang() === "zh-CN" ? n.text_zh : n.text_en), el("div", {}, open, " ", dismiss));
      open.addEventListener("click", () => remove(node));
      dismiss.addEventListener("click", () => remove(node));
      notice(n.alarm)?.remove();
      list.prepend(node);
    }
    if (mine.length) {
      folded = false;
      refresh();
      sound.beep();
    }
  };
  const offNotes = live.subscribe("notifications", (msg) => show(msg.events ?? []));
  // Those sent before this console signed in, for alarms still unacknowledged.
  let stopped = false;
  call("GET", "/api/alarms/escalations", undefined, { background: true })
    .then((body) => { if (!stopped) show(body.notifications); }).catch(() => null);
  const offAlarms = live.subscribe("alarms", (msg) => {
    for (const e of msg.events ?? []) {
      if (e.to !== "unack" && e.to !== "rtn_unack" && notice(e.alarm)) remove(notice(e.alarm));
    }
  });
  stopEscalations = () => { stopped = true; offNotes(); offAlarms(); box.remove(); };
}

// A hazard source's operating state set by someone else (maintenance suppresses its alarms by
// design): whoever may see the source hears of it at once (the server sends each account the
// changes of the enterprises it sees), the centre of every enterprise's, an enterprise of the
// centre's changes to its own sources.
let stopStateNotices = null;
function startStateNotices() {
  stopStateNotices?.();
  stopStateNotices = live.subscribe("sources", (msg) => {
    for (const s of msg.events ?? []) {
      if (s.set_by === me?.username) continue;
      toast(t("sources.changed", { source: `${s.enterprise} ${s.name}`, state: t(`overview.state.${s.state}`),
        who: s.set_by, reason: s.reason }));
    }
  });
}

let me = null; // the signed-in account: username, role, roles, permissions, enterprise
let unmount = null;
let mountedKey = null;

// -- sign-in -----------------------------------------------------------------------------------

function showLogin(code) {
  me = null;
  setCsrf(null);
  live.stop();
  stopCue?.();
  stopCue = null;
  stopEscalations?.();
  stopEscalations = null;
  stopStateNotices?.();
  stopStateNotices = null;
  forgetNames();
  health.stop();
  unmountPage();
  forgetDrafts(); // after the unmount, which keeps what the reports page's forms held
  document.body.classList.remove("signed-in", "no-chrome");
  $("#login").hidden = false;
  $("#login").reset();
  $("#totp-row").hidden = true;
  $("#login-error").textContent = code ? t(`common.${code}`) : "";
  $("#login input[name=username]").focus();
}

// -- account set-up: a password to change or an authenticator to enrol before any page ------

function setupForm(title, fields, submitLabel, onSubmit) {
  const error = el("p", { class: "error", role: "alert" });
  const form = el("form", { class: "login setup", id: "setup" }, el("h2", {}, title), ...fields,
    el("button", { type: "submit", class: "primary" }, submitLabel), error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    try {
      await onSubmit(Object.fromEntries(new FormData(form).entries()));
    } catch (err) {
      error.textContent = err.message;
    }
  });
  clear($("#page"), form);
  form.querySelector("input")?.focus();
}

async function accountSetup() {
  if (me.must_change_password) {
    setupForm(t("common.must_change_password"), [
      el("label", {}, t("common.old_password"), el("input", { name: "old", type: "password", required: true, autocomplete: "current-password" })),
      el("label", {}, t("common.new_password"), el("input", { name: "new", type: "password", required: true, autocomplete: "new-password" })),
      el("label", {}, t("common.repeat_password"), el("input", { name: "repeat", type: "password", required: true, autocomplete: "new-password" })),
    ], t("common.ok"), async (v) => {
      if (v.new !== v.repeat) throw new Error(t("common.passwords_differ"));
      await call("POST", "/api/auth/password", { old: v.old, new: v.new });
      await signedIn(await call("GET", "/api/auth/me"));
    });
    return;
  }
  const enrol = await call("POST", "/api/auth/totp");
  setupForm(t("common.must_enrol_totp"), [
    el("p", { class: "muted" }, t("common.enrol_hint")),
    el("code", { class: "totp-secret", id: "totp-secret" }, enrol.secret.replace(/(.{4})/g, "$1 ").trim()),
    el("code", { class: "totp-uri" }, enrol.uri),
    el("label", {}, t("common.totp"), el("input", { name: "code", inputmode: "numeric", pattern: "\\s*[0-9]{6}\\s*", required: true, autocomplete: "one-time-code" })),
  ], t("common.ok"), async (v) => {
    await call("POST", "/api/auth/totp/confirm", { code: v.code.trim() });
    await signedIn(await call("GET", "/api/auth/me"));
  });
}

/** Who is signed in, in the top bar; the whole of it on hover when a narrow bar cuts it short. */
function showWho(account) {
  const who = $("#who");
  who.textContent = `${account.display_name || account.username} · ${t(`common.role.${account.role}`)}`;
  who.title = who.textContent;
  who.dataset.role = account.role;
}

async function signedIn(answer) {
  setCsrf(answer.csrf_token ?? null);
  const account = answer.account;
  me = { ...account, roles: [account.role], permissions: account.permissions ?? [] };
  $("#login").hidden = true;
  document.body.classList.add("signed-in");
  showWho(account);
  buildNav();
  if (me.must_change_password || me.must_enrol_totp) {
    unmountPage();
    await accountSetup().catch((err) => $("#page").append(el("p", { class: "error" }, err.message)));
    return;
  }
  live.start();
  startCue();
  startEscalations();
  startStateNotices();
  health.start(me);
  route();
}

$("#login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const body = { username: form.get("username"), password: form.get("password") };
  if (form.get("totp")) body.totp = form.get("totp").trim();
  try {
    await signedIn(await call("POST", "/api/auth/login", body));
  } catch (err) {
    if (err.code === "totp_required" || err.code === "bad_totp") {
      $("#totp-row").hidden = false;
      $("#login input[name=totp]").value = "";
      $("#login input[name=totp]").focus();
    }
    $("#login-error").textContent = t(err.status === 429 ? "common.too_many" : `common.${err.code ?? "bad_credentials"}`);
  }
});

$("#logout").addEventListener("click", async () => {
  await call("POST", "/api/auth/logout").catch(() => null);
  location.hash = "";
  showLogin("signed_out");
});

// Any 401 after sign-in means the session ended (idle timeout, sign-out elsewhere, disabled).
onUnauthorized(() => {
  if (me) showLogin("session_expired");
});
live.onSessionEnded(() => {
  if (me) showLogin("session_expired");
});

// -- navigation and routing --------------------------------------------------------------------

function allowed(page) {
  return me && (!page.permission || me.permissions.includes(page.permission));
}

function buildNav() {
  const nav = $("#nav");
  clear(nav, PAGES.filter((p) => p.nav && allowed(p)).map((p) =>
    el("a", { href: `#/${p.id}`, dataset: { page: p.id }, "data-i18n": p.nav }, t(p.nav))));
}

/** #/name/arg?k=v → {name, arg, query}. */
function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, search = ""] = raw.split("?");
  const [name = "", ...rest] = path.split("/");
  const query = Object.fromEntries(new URLSearchParams(search));
  return { name: decodeURIComponent(name), arg: rest.length ? decodeURIComponent(rest.join("/")) : null, query };
}

function navigate(hash) {
  location.hash = hash.startsWith("#") ? hash : `#${hash}`;
}

function unmountPage() {
  if (unmount) {
    try {
      unmount();
    } catch (err) {
      console.error(err);
    }
  }
  unmount = null;
  mountedKey = null;
  $("#page").replaceChildren();
}

function limitedReason() {
  if (me.must_change_password) return "common.must_change_password";
  if (me.must_enrol_totp) return "common.must_enrol_totp";
  return "common.no_pages";
}

function route() {
  if (!me || me.must_change_password || me.must_enrol_totp) return;
  const { name, arg, query } = parseHash();
  const page = PAGES.find((p) => p.id === name || p.aliases?.includes(name));
  const first = PAGES.find((p) => p.nav && allowed(p));
  if (!page || !allowed(page)) {
    if (first && name !== first.id) {
      navigate(`#/${first.id}`);
      return;
    }
    unmountPage();
    $("#page").append(el("p", { class: "empty" }, t(limitedReason())));
    return;
  }
  const key = location.hash;
  if (key === mountedKey) return;
  unmountPage();
  mountedKey = key;
  document.body.classList.toggle("no-chrome", page.chrome === false);
  document.body.dataset.page = page.id;
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.page === (page.parent ?? page.id));
  const container = $("#page");
  const ctx = { me, navigate, params: { ...query, arg }, path: name };
  try {
    unmount = page.mount(container, ctx) ?? null;
  } catch (err) {
    console.error(err);
    container.append(el("p", { class: "error" }, t("common.error", { message: err.message })));
  }
}

window.addEventListener("hashchange", route);

// -- status bar --------------------------------------------------------------------------------

function renderStatus(s) {
  const bar = $("#statusbar");
  bar.hidden = !me;
  const fmt = (v) => (v === null || v === undefined ? "—" : String(v));
  $("#status-ingest").textContent = s.samples_per_s === null ? "—" : t("status.per_s", { n: formatNumber(s.samples_per_s, 1) });
  $("#status-latency").textContent = s.latency_p50_ms === null ? "—"
    : t("status.latency_value", { p50: Math.round(s.latency_p50_ms), max: Math.round(s.latency_max_ms) });
  $("#status-collectors").textContent = `${t("status.up")} ${fmt(s.collectors_up)} · ${t("status.down")} ${fmt(s.collectors_down)}`;
  $("#status-collectors").classList.toggle("bad", (s.collectors_down ?? 0) > 0);
  $("#status-cameras").textContent = `${t("status.up")} ${fmt(s.cameras_up)} · ${t("status.down")} ${fmt(s.cameras_down)}`;
  $("#status-cameras").classList.toggle("bad", (s.cameras_down ?? 0) > 0);
  $("#status-database").textContent = fmt(s.database);
  for (const id of ["ingest", "collectors", "cameras", "database"]) {
    $(`#status-${id}`).parentElement.hidden = s.allowed === false;
  }
}

function renderLive(connected) {
  const node = $("#status-live");
  node.textContent = t(connected ? "status.live_on" : "status.live_off");
  node.classList.toggle("bad", !connected);
  $("#banner").hidden = connected || !me;
}

health.onHealth(renderStatus);
live.onStatus(renderLive);

// -- language, sound, shortcuts ----------------------------------------------------------------

function renderMute() {
  const m = sound.isMuted();
  $("#mute").textContent = t(m ? "common.sound_off" : "common.sound_on");
  $("#mute").title = t(m ? "common.unmute" : "common.mute");
  $("#mute").classList.toggle("off", m);
  $("#mute").setAttribute("aria-pressed", String(m));
}

$("#lang").addEventListener("click", () => setLang(lang() === "zh-CN" ? "en" : "zh-CN"));
$("#mute").addEventListener("click", () => sound.setMuted(!sound.isMuted()));
sound.onMuted(renderMute);
for (const ev of ["keydown", "pointerdown"]) window.addEventListener(ev, () => sound.unlock(), { once: true });

function retranslate() {
  document.title = t("common.app");
  translate(document);
  $("#lang").textContent = t("common.switch");
  renderMute();
  renderStatus(health.current());
  renderLive(live.isConnected());
  if (me) {
    showWho(me);
    // Pages rebuild their texts: remount the current page.
    const key = mountedKey;
    mountedKey = null;
    if (key) route();
  }
}
onLang(retranslate);

// M mutes or unmutes the cue; Escape leaves the wall display.
window.addEventListener("keydown", (event) => {
  const typing = event.target.closest?.("input, select, textarea") || document.querySelector("dialog[open]");
  if ((event.key === "m" || event.key === "M") && me && !typing && !event.ctrlKey && !event.metaKey && !event.altKey) {
    sound.setMuted(!sound.isMuted());
  }
  if (event.key === "Escape" && document.body.classList.contains("no-chrome") && !document.querySelector("dialog[open]")) {
    navigate("#/");
  }
});

// -- boot --------------------------------------------------------------------------------------

retranslate();
try {
  await signedIn(await call("GET", "/api/auth/me"));
} catch {
  showLogin();
}
