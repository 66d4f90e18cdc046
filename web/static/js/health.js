// Live pipeline health for the status bar and the wall display: ingest rate, collectors (from
// GET /api/health, polled in the background), and the device → console latency measured here,
// on receipt, from the samples' own timestamps in the live point feeds.
import { call } from "./api.js";
import { onStatus, subscribe } from "./live.js";

const POLL_MS = 2000;
const WINDOW_MS = 10_000;
const listeners = new Set();
let latencies = []; // [received_ms, latency_ms]
// Newest sample time seen per point: a value counts only when it is a new sample that arrived
// while watching (the snapshot sent at subscription holds old samples, not transit times).
let seen = new Map();
let state = emptyState();
let timer = null;
let unsubscribers = [];

function emptyState() {
  return {
    allowed: null, // null until known; false when the role may not read pipeline health
    samples_per_s: null, collectors_up: null, collectors_down: null, database: null,
    cameras_up: null, cameras_down: null, // filled by the video work (health.cameras)
    latency_p50_ms: null, latency_max_ms: null, latency_samples: 0, server_lag_ms: null,
  };
}

onStatus((connected) => {
  if (!connected) seen = new Map();
});

function emit() {
  for (const cb of listeners) cb({ ...state });
}

/** cb(state) at every update; called at once with the current state. */
export function onHealth(cb) {
  listeners.add(cb);
  cb({ ...state });
  return () => listeners.delete(cb);
}

export function current() {
  return { ...state };
}

function onPoints(msg) {
  if (msg.type !== "points") return;
  const now = msg.received_ms ?? Date.now();
  for (const [id, ts] of msg.values) {
    const before = seen.get(id);
    seen.set(id, ts);
    if (before !== undefined && ts > before) latencies.push([now, now - ts]);
  }
}

function summarise() {
  const now = Date.now();
  latencies = latencies.filter(([at]) => now - at <= WINDOW_MS);
  const sorted = latencies.map(([, l]) => l).sort((a, b) => a - b);
  state.latency_samples = sorted.length;
  state.latency_p50_ms = sorted.length ? sorted[Math.floor(sorted.length / 2)] : null;
  state.latency_max_ms = sorted.length ? sorted[sorted.length - 1] : null;
}

async function poll() {
  summarise();
  if (state.allowed !== false) {
    try {
      const h = await call("GET", "/api/health", undefined, { background: true });
      state.allowed = true;
      state.samples_per_s = h.ingest?.samples_per_s ?? null;
      state.server_lag_ms = h.ingest?.lag_ms ?? null;
      state.collectors_up = h.collectors?.up ?? null;
      state.collectors_down = h.collectors?.down ?? null;
      state.database = h.database?.mode ?? null;
      state.cameras_up = h.cameras?.up ?? null;
      state.cameras_down = h.cameras?.down ?? null;
    } catch (err) {
      if (err.status === 403) state.allowed = false;
    }
  }
  emit();
}

/** Starts measuring for a signed-in principal (`me`: its permissions and enterprises). */
export async function start(me) {
  stop();
  state = emptyState();
  if (!me.permissions.includes("system:read")) state.allowed = false;
  if (me.permissions.includes("monitor:read")) {
    try {
      const enterprises = await call("GET", "/api/enterprises", undefined, { background: true });
      unsubscribers = enterprises.map((e) => subscribe(`points:${e.code}`, onPoints));
    } catch {
      /* no latency without point feeds */
    }
  }
  await poll();
  timer = setInterval(poll, POLL_MS);
}

export function stop() {
  clearInterval(timer);
  timer = null;
  for (const u of unsubscribers) u();
  unsubscribers = [];
  latencies = [];
  seen = new Map();
}
