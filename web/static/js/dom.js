// Small DOM helpers: build elements without innerHTML (no injection, CSP-friendly).

/** el("td", {class: "x", dataset: {id: 3}, onclick: fn}, "text", child, [more]) */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "dataset") Object.assign(node.dataset, v);
    else if (k === "style" && typeof v === "object") Object.assign(node.style, v);
    else if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = Array.isArray(v) ? v.filter(Boolean).join(" ") : v;
    else if (v === true) node.setAttribute(k, "");
    else node.setAttribute(k, String(v));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(node, c);
    else node.append(c instanceof Node ? c : String(c));
  }
}

/** Replaces the children of node. */
export function clear(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

/** A modal dialog (<dialog>): resolves with the form's values on submit, null on cancel.
 * `fields` are elements placed in the form; `submitLabel`/`cancelLabel` are texts. */
export function dialog({ title, fields, submitLabel, cancelLabel, className }) {
  return new Promise((resolve) => {
    const form = el("form", { method: "dialog", class: "dialog-form" },
      el("h3", {}, title), ...fields,
      el("div", { class: "dialog-buttons" },
        el("button", { type: "button", value: "cancel", class: "cancel" }, cancelLabel),
        el("button", { type: "submit", value: "ok", class: "primary" }, submitLabel)));
    const dlg = el("dialog", { class: ["dialog", className] }, form);
    let result = null;
    form.querySelector("button.cancel").addEventListener("click", () => dlg.close());
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (!form.reportValidity()) return;
      result = Object.fromEntries(new FormData(form).entries());
      dlg.close();
    });
    dlg.addEventListener("close", () => { dlg.remove(); resolve(result); });
    document.body.append(dlg);
    dlg.showModal();
    form.querySelector("input, select, textarea")?.focus();
  });
}

/** A transient message at the bottom of the screen. */
export function toast(text, kind = "info") {
  let box = document.getElementById("toasts");
  if (!box) document.body.append((box = el("div", { id: "toasts", role: "status" })));
  const node = el("div", { class: ["toast", kind] }, text);
  box.append(node);
  setTimeout(() => node.remove(), 5000);
}

/** Adds <link rel="stylesheet" href> once (a page's own stylesheet, e.g. "/static/desk.css"). */
export function stylesheet(href) {
  if (document.querySelector(`link[rel=stylesheet][href="${href}"]`)) return;
  document.head.append(el("link", { rel: "stylesheet", href }));
}
