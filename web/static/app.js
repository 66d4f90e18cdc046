// Minimal live page: enterprises and the live values of their points (the console is issue #5).
const QUALITY = ["GOOD", "UNCERTAIN", "BAD", "COMM_FAIL", "STALE", "OUT_OF_RANGE"];
const TEXT = {
  "zh-CN": {
    title: "安监 · 重大危险源实时监测", switch: "English", code: "位号", name: "名称",
    value: "实时值", unit: "单位", quality: "质量", points: "监测点", sources: "重大危险源",
    samples: "采集速率", mode: "数据库", up: "在线设备", down: "离线设备",
    GOOD: "正常", UNCERTAIN: "可疑", BAD: "坏值", COMM_FAIL: "通讯中断", STALE: "数据陈旧",
    OUT_OF_RANGE: "超量程",
  },
  en: {
    title: "anjian · Major hazard live monitoring", switch: "中文", code: "Tag", name: "Name",
    value: "Value", unit: "Unit", quality: "Quality", points: "points", sources: "hazard sources",
    samples: "ingest", mode: "database", up: "devices up", down: "devices down",
    GOOD: "good", UNCERTAIN: "uncertain", BAD: "bad", COMM_FAIL: "comm. loss", STALE: "stale",
    OUT_OF_RANGE: "out of range",
  },
};
let lang = localStorage.getItem("anjian.lang") || "zh-CN";
const t = (key) => TEXT[lang][key] ?? key;
const rows = new Map(); // point id -> <tr>

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
}

async function getJSON(url) {
  const response = await fetch(url, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}

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
  document.querySelector("[data-i18n=title]").textContent = t("title");
  document.getElementById("lang").textContent = t("switch");
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
  ws.onopen = () => ws.send(JSON.stringify({ op: "subscribe", topics }));
  ws.onmessage = (event) => {
    const msg = JSON.parse(event.data);
    if (msg.type === "points") for (const [id, , value, quality] of msg.values) setValue(id, value, quality);
  };
  ws.onclose = () => setTimeout(() => connect(topics), 2000);
}

async function health() {
  try {
    const h = await getJSON("/api/health");
    document.getElementById("health").textContent =
      `${t("mode")}: ${h.database.mode} · ${t("samples")}: ${h.ingest.samples_per_s}/s · ` +
      `${t("up")}: ${h.collectors.up} · ${t("down")}: ${h.collectors.down}`;
  } catch (err) {
    document.getElementById("health").textContent = String(err);
  }
}

document.getElementById("lang").addEventListener("click", async () => {
  lang = lang === "zh-CN" ? "en" : "zh-CN";
  localStorage.setItem("anjian.lang", lang);
  await render();
  await health();
});

connect(await render());
await health();
setInterval(health, 2000);
