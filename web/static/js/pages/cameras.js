// The camera wall (视频监控): a grid of live views, one page of cameras at a time, so only the
// cameras on screen are pulled at full rate. #/cameras?enterprise=E001&layout=4&camera=CAM1
import { call } from "../api.js";
import { cameraView } from "../camera_view.js";
import { el } from "../dom.js";
import { onLang, register, t, translate } from "../i18n.js";

register({
  "zh-CN": {
    "nav.cameras": "视频监控",
    "cameras.title": "视频监控",
    "cameras.all_enterprises": "全部企业",
    "cameras.layout": "画面布局",
    "cameras.layout_n": "{n} 画面",
    "cameras.previous": "上一页",
    "cameras.next": "下一页",
    "cameras.page": "第 {page} / {pages} 页",
    "cameras.none": "没有可查看的摄像机",
    "cameras.load_failed": "摄像机列表加载失败：{message}",
    "cameras.hazard_source": "重大危险源 {code}",
  },
  en: {
    "nav.cameras": "Cameras",
    "cameras.title": "Cameras",
    "cameras.all_enterprises": "All enterprises",
    "cameras.layout": "Layout",
    "cameras.layout_n": "{n} views",
    "cameras.previous": "Previous",
    "cameras.next": "Next",
    "cameras.page": "Page {page} of {pages}",
    "cameras.none": "No cameras to show",
    "cameras.load_failed": "Could not load the cameras: {message}",
    "cameras.hazard_source": "Major hazard source {code}",
  },
});

const LAYOUTS = [1, 4, 9, 16];
const DEFAULT_LAYOUT = 9;

function cameraId(camera) {
  return camera.id ?? camera.code;
}

export default {
  id: "cameras",
  nav: "nav.cameras",
  permission: "monitor:read",
  mount(container, ctx = {}) {
    const params = ctx.params || {};
    let layout = LAYOUTS.includes(Number(params.layout)) ? Number(params.layout) : DEFAULT_LAYOUT;
    let enterprise = params.enterprise || "";
    let page = 0;
    let cameras = [];
    let views = [];

    const select = el("select", { name: "enterprise" });
    const layoutButtons = LAYOUTS.map((n) =>
      el("button", { type: "button", "data-layout": String(n) }));
    const prev = el("button", { type: "button", "data-i18n": "cameras.previous" });
    const next = el("button", { type: "button", "data-i18n": "cameras.next" });
    const pageLabel = el("span", { class: "camera-page" });
    const grid = el("div", { class: "camera-grid" });
    const message = el("p", { class: "empty", role: "status" });
    const root = el("section", { class: "cameras-page" },
      el("header", {},
        el("h2", { "data-i18n": "cameras.title" }),
        select,
        el("span", { class: "camera-layouts", role: "group" }, ...layoutButtons),
        prev, pageLabel, next),
      message,
      grid);
    container.append(root);

    function shown() {
      return cameras.filter((c) => !enterprise || c.enterprise === enterprise);
    }

    function labels() {
      translate(root);
      for (const b of layoutButtons) {
        b.textContent = t("cameras.layout_n", { n: b.dataset.layout });
        b.setAttribute("aria-pressed", String(Number(b.dataset.layout) === layout));
      }
      select.querySelectorAll("option[value='']").forEach((o) => {
        o.textContent = t("cameras.all_enterprises");
      });
      const pages = Math.max(1, Math.ceil(shown().length / layout));
      pageLabel.textContent = t("cameras.page", { page: page + 1, pages });
      prev.disabled = page === 0;
      next.disabled = page + 1 >= pages;
    }

    function clearViews() {
      for (const v of views) v.destroy();
      views = [];
      grid.replaceChildren();
    }

    function render() {
      clearViews();
      const list = shown();
      const pages = Math.max(1, Math.ceil(list.length / layout));
      page = Math.min(page, pages - 1);
      grid.className = `camera-grid layout-${layout}`;
      message.hidden = list.length > 0;
      if (!list.length) {
        message.textContent = t("cameras.none");
      }
      for (const camera of list.slice(page * layout, (page + 1) * layout)) {
        const meta = el("div", { class: "camera-meta" },
          [
            camera.enterprise_name || camera.enterprise,
            camera.hazard_source && t("cameras.hazard_source", { code: camera.hazard_source }),
            camera.position,
          ].filter(Boolean).join(" · "));
        const tile = el("div", { class: "camera-tile", "data-camera": String(cameraId(camera)) });
        grid.append(tile);
        views.push(cameraView(tile, cameraId(camera), { label: camera.name || camera.code }));
        tile.append(meta);
      }
      labels();
    }

    function fillEnterprises() {
      const codes = [...new Set(cameras.map((c) => c.enterprise))].sort();
      select.replaceChildren(el("option", { value: "" }),
        ...codes.map((code) => {
          const c = cameras.find((x) => x.enterprise === code);
          return el("option", { value: code }, c.enterprise_name || code);
        }));
      select.value = codes.includes(enterprise) ? enterprise : "";
      select.hidden = codes.length < 2;
    }

    select.addEventListener("change", () => { enterprise = select.value; page = 0; render(); });
    for (const b of layoutButtons) {
      b.addEventListener("click", () => { layout = Number(b.dataset.layout); page = 0; render(); });
    }
    prev.addEventListener("click", () => { page = Math.max(0, page - 1); render(); });
    next.addEventListener("click", () => { page += 1; render(); });
    const offLang = onLang(labels);

    let alive = true;
    call("GET", "/api/cameras")
      .then((list) => {
        if (!alive) return;
        cameras = Array.isArray(list) ? list : list.cameras || [];
        if (params.camera) {
          const one = cameras.filter((c) => String(cameraId(c)) === String(params.camera));
          if (one.length) { cameras = one; layout = 1; }
        }
        fillEnterprises();
        render();
      })
      .catch((err) => {
        if (!alive) return;
        message.hidden = false;
        message.textContent = t("cameras.load_failed", { message: err.message || String(err) });
      });
    labels();

    return function unmount() {
      alive = false;
      clearViews();
      if (typeof offLang === "function") offLang();
      root.remove();
    };
  },
};
