// Placeholder created by SHELL so main.js's imports never break; MAP replaces it.
import { el } from "../dom.js";
import { t } from "../i18n.js";

export default {
  id: "overview",
  nav: "nav.overview",
  permission: "monitor:read",
  aliases: ["enterprise"], // #/enterprise/<code> drills down (ctx.path === "enterprise")
  mount(container) {
    container.append(el("p", { class: "placeholder" }, t("common.placeholder")));
    return () => {};
  },
};
