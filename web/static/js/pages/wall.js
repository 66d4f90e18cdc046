// Placeholder created by SHELL so main.js's imports never break; MAP replaces it.
import { el } from "../dom.js";
import { t } from "../i18n.js";

export default {
  id: "wall",
  nav: "nav.wall",
  permission: "monitor:read",
  chrome: false, // full-screen 1920×1080, no nav chrome
  mount(container) {
    container.append(el("p", { class: "placeholder" }, t("common.placeholder")));
    return () => {};
  },
};
