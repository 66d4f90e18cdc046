// Placeholder created by SHELL so main.js's imports never break; DESK replaces it.
import { el } from "../dom.js";
import { t } from "../i18n.js";

export default {
  id: "warnings",
  nav: "nav.warnings",
  permission: "monitor:read",
  mount(container) {
    container.append(el("p", { class: "placeholder" }, t("common.placeholder")));
    return () => {};
  },
};
