// Minimal live page: enterprises and the live values of their points (the console is issue #5).
const QUALITY = ["GOOD", "UNCERTAIN", "BAD", "COMM_FAIL", "STALE", "OUT_OF_RANGE"];
const TEXT = {
  "zh-CN": {
    title: "安监 · 重大危险源实时监测", switch: "English", code: "位号", name: "名称",
    value: "实时值", unit: "单位", quality: "质量", points: "监测点", sources: "重大危险源",
    samples: "采集速率", mode: "数据库", up: "在线设备", down: "离线设备",
    GOOD: "正常", UNCERTAIN: "可疑", BAD: "坏值", COMM_FAIL: "通讯中断", STALE: "数据陈旧",
    OUT_OF_RANGE: "超量程",
    signin: "登录", logout: "退出", username: "用户名", password: "密码", totp: "动态口令",
    bad_credentials: "用户名或密码错误", locked: "账号已锁定，请稍后再试或联系安全管理员",
    totp_required: "请输入动态口令", bad_totp: "动态口令错误", session_expired: "会话已超时，请重新登录",
    too_many: "尝试过于频繁，请稍后再试",
  },
  en: {
    title: "anjian · Major hazard live monitoring", switch: "中文", code: "Tag", name: "Name",
    value: "Value", unit: "Unit", quality: "Quality", points: "points", sources: "hazard sources",
    samples: "ingest", mode: "database", up: "devices up", down: "devices down",
    GOOD: "good", UNCERTAIN: "uncertain", BAD: "bad", COMM_FAIL: "comm. loss", STALE: "stale",
    OUT_OF_RANGE: "out of range",
    signin: "Sign in", logout: "Sign out", username: "User name", password: "Password",
    totp: "One-time code", bad_credentials: "Wrong user name or password",
    locked: "Account locked: try later or ask the security administrator",
    totp_required: "Enter your one-time code", bad_totp: "Wrong one-time code",
    session_expired: "Session timed out: sign in again", too_many: "Too many attempts: wait a minute",
  },
};
let lang = localStorage.getItem("anjian.lang") || "zh-CN";
const t = (key) => TEXT[lang][key] ?? key;
const rows = new Map(); // point id -> <tr>
let csrf = null; // echoed in X-CSRF-Token on every state-changing request
let socket = null;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
}

class HttpError extends Error {
  constructor(status, body) {
    super(body?.error ?? String(status));
    this.status = status;
    this.code = body?.code;
  }
}

async function call(method, url, body, background = false) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && csrf) headers["X-CSRF-Token"] = csrf;
  if (background) headers["X-Anjian-Background"] = "1"; // polling is not a person acting
  const response = await fetch(url, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = new HttpError(response.status, data);
    if (response.status === 401 && url !== "/api/auth/login") showLogin(error.code);
    throw error;
  }
  return data;
}

const getJSON = (url) => call("GET", url);

function setValue(id, value, quality) {
  const tr = rows.get(id);
  if (!tr) return;
  const q = QUALITY[quality] ?? String(quality);
  tr.className = `q-${q}`;
  tr.querySelector(".value").textContent = value === null ? "—" : Number(value).toFixed(2);
  tr.querySelector(".quality").textContent = t(q);
}

async function render() {
  document.documentElement.lang = lang;
  document.title = t("title");
  translateStatic();
  const main = document.getElementById("enterprises");
  main.replaceChildren();
  rows.clear();
  const enterprises = await getJSON("/api/enterprises");
  for (const e of enterprises) {
    const table = el("table", {},
      el("tr", {}, el("th", {}, t("code")), el("th", {}, t("name")), el("th", {}, t("value")),
        el("th", {}, t("unit")), el("th", {}, t("quality"))));
    const points = await getJSON(`/api/points?enterprise=${encodeURIComponent(e.code)}`);
    points.sort((a, b) => a.code.localeCompare(b.code));
    for (const p of points) {
      const tr = el("tr", { "data-point": p.id }, el("td", {}, p.code), el("td", {}, p.name),
        el("td", { class: "value" }, "—"), el("td", {}, p.unit), el("td", { class: "quality" }, ""));
      rows.set(p.id, tr);
      table.append(tr);
    }
    const latest = await getJSON(`/api/latest?enterprise=${encodeURIComponent(e.code)}`);
    for (const v of latest.values) setValue(v.id, v.value, QUALITY.indexOf(v.quality));
    main.append(el("section", { "data-enterprise": e.code },
      el("h2", {}, `${e.name} (${e.code})`),
      el("div", { class: "meta" },
        `${e.province ?? ""}${e.city ?? ""} · ${e.hazard_sources} ${t("sources")} · ${e.points} ${t("points")}`),
      table));
  }
  return enterprises.map((e) => `points:${e.code}`);
}

function connect(topics) {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  socket = ws;
  ws.onopen = () => ws.send(JSON.stringify({ op: "subscribe", topics }));
  ws.onmessage = (event) => {
    const msg = JSON.parse(event.data);
    if (msg.type === "points") for (const [id, , value, quality] of msg.values) setValue(id, value, quality);
  };
  ws.onclose = (event) => {
    if (event.code === 4401) showLogin("session_expired");
    else if (socket === ws) setTimeout(() => connect(topics), 2000);
  };
}

let healthAllowed = true;
async function health() {
  if (!csrf || !healthAllowed) return;
  try {
    const h = await call("GET", "/api/health", undefined, true);
    document.getElementById("health").textContent =
      `${t("mode")}: ${h.database.mode} · ${t("samples")}: ${h.ingest.samples_per_s}/s · ` +
      `${t("up")}: ${h.collectors.up} · ${t("down")}: ${h.collectors.down}`;
  } catch (err) {
    if (err.status === 403) healthAllowed = false; // enterprise users do not see the pipeline
    document.getElementById("health").textContent = "";
  }
}

function showLogin(code) {
  csrf = null;
  const old = socket;
  socket = null;
  old?.close();
  document.getElementById("enterprises").replaceChildren();
  document.getElementById("login").hidden = false;
  document.getElementById("logout").hidden = true;
  document.getElementById("who").textContent = "";
  document.getElementById("login-error").textContent = code ? t(code) : "";
}

async function signedIn(me) {
  csrf = me.csrf_token;
  healthAllowed = true;
  document.getElementById("login").hidden = true;
  document.getElementById("logout").hidden = false;
  document.getElementById("who").textContent = `${me.account.username} (${me.account.role})`;
  connect(await render());
  await health();
}

function translateStatic() {
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  document.getElementById("lang").textContent = t("switch");
}

document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const body = { username: form.get("username"), password: form.get("password") };
  if (form.get("totp")) body.totp = form.get("totp");
  try {
    await signedIn(await call("POST", "/api/auth/login", body));
  } catch (err) {
    if (err.code === "totp_required") document.getElementById("totp-row").hidden = false;
    document.getElementById("login-error").textContent =
      t(err.status === 429 ? "too_many" : err.code ?? "bad_credentials");
  }
});

document.getElementById("logout").addEventListener("click", async () => {
  await call("POST", "/api/auth/logout").catch(() => null);
  showLogin();
});

document.getElementById("lang").addEventListener("click", async () => {
  lang = lang === "zh-CN" ? "en" : "zh-CN";
  localStorage.setItem("anjian.lang", lang);
  translateStatic();
  if (csrf) {
    await render();
    await health();
  }
});

translateStatic();
try {
  await signedIn(await call("GET", "/api/auth/me"));
} catch {
  showLogin();
}
setInterval(health, 2000);
