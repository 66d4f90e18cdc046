// Stand-in for the console's js/i18n.js (same contract), served by the test only when the
// console's own module is not in web/static/js.
const catalogues = { "zh-CN": {}, en: {} };
const listeners = [];
let current = "zh-CN";

export function register(catalogue) {
  for (const [l, strings] of Object.entries(catalogue)) {
    catalogues[l] = { ...(catalogues[l] || {}), ...strings };
  }
}

export function t(key, vars = {}) {
  const text = catalogues[current]?.[key] ?? catalogues["zh-CN"][key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? `{${name}}`));
}

export function lang() { return current; }

export function setLang(l) {
  current = l;
  for (const cb of listeners) cb(l);
}

export function onLang(cb) {
  listeners.push(cb);
  return () => listeners.splice(listeners.indexOf(cb), 1);
}

export function translate(root) {
  for (const node of root.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
}
