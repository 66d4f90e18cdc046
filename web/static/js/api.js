// HTTP calls to anjian: JSON in and out, the CSRF header on state changes, HttpError on failure.
export class HttpError extends Error {
  constructor(status, body) {
    super(body?.error ?? `HTTP ${status}`);
    this.status = status;
    this.code = body?.code ?? null;
    this.body = body;
  }
}

let csrf = null;
const unauthorized = new Set();

/** The CSRF token the sign-in (or /api/auth/me) returned; main.js sets it. */
export function setCsrf(token) {
  csrf = token ?? null;
}

/** cb(error) runs when a call answers 401 (session ended, idle timeout). */
export function onUnauthorized(cb) {
  unauthorized.add(cb);
  return () => unauthorized.delete(cb);
}

/** call("POST", "/api/alarms/3/ack", {comment}) → parsed JSON; throws HttpError.
 * `background: true` marks polling that is not a person acting (does not keep a session alive). */
export async function call(method, url, body, { background = false } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && method !== "HEAD" && csrf) headers["X-CSRF-Token"] = csrf;
  if (background) headers["X-Anjian-Background"] = "1";
  const response = await fetch(url, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = new HttpError(response.status, data);
    if (response.status === 401 && url !== "/api/auth/login") for (const cb of unauthorized) cb(error);
    throw error;
  }
  return data;
}

/** GET with query parameters (undefined/null/"" left out). */
export function get(url, params, options) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params ?? {})) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const s = q.toString();
  return call("GET", s ? `${url}?${s}` : url, undefined, options);
}
