// A camera's live view: fragmented MP4 over a WebSocket into Media Source Extensions; a JPEG
// snapshot refreshed every second when MSE, the codec or the live feed is not available.
//
//   const view = cameraView(container, cameraId, {label});   ...   view.destroy();
//
// Protocol of GET /ws/cameras/{id}/live (web/video_live.py): a text message
// {"type": "codec", "mime": "video/mp4; codecs=\"avc1.42C01F\""} precedes each init segment,
// then binary messages carry the init segment and one moof+mdat fragment per frame; text
// {"type": "status", "state": "waiting" | "live" | "offline"} says what the camera does.
import { el } from "./dom.js";
import { onLang, register, t } from "./i18n.js";

register({
  "zh-CN": {
    "camera.connecting": "正在连接视频…",
    "camera.live": "实时",
    "camera.waiting": "等待视频关键帧…",
    "camera.offline": "视频离线",
    "camera.snapshot": "快照（每秒刷新）",
    "camera.no_picture": "暂无画面",
  },
  en: {
    "camera.connecting": "Connecting to the camera…",
    "camera.live": "Live",
    "camera.waiting": "Waiting for a keyframe…",
    "camera.offline": "Video offline",
    "camera.snapshot": "Snapshot (refreshed every second)",
    "camera.no_picture": "No picture",
  },
});

const STYLE_HREF = "/static/camera.css";
const LIVE_EDGE_S = 1.0; // further behind the newest frame than this: jump to the live edge
const EDGE_MARGIN_S = 0.1; // where the jump lands, behind the newest frame
const CATCH_UP_S = 0.15; // further behind than this: play at CATCH_UP_RATE
const CATCH_UP_RATE = 1.1;
const KEEP_S = 20; // media kept behind the playhead in the SourceBuffer
const SNAPSHOT_MS = 1000;
const RETRY_MS = [1000, 2000, 5000, 10000, 30000];

export function ensureStyle() {
  if (document.querySelector(`link[href="${STYLE_HREF}"]`)) return;
  document.head.append(el("link", { rel: "stylesheet", href: STYLE_HREF }));
}

export function liveUrl(cameraId) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws/cameras/${encodeURIComponent(cameraId)}/live`;
}

export function snapshotUrl(cameraId) {
  return `/api/cameras/${encodeURIComponent(cameraId)}/snapshot.jpg?t=${Date.now()}`;
}

export function mseSupported(mime) {
  return typeof MediaSource !== "undefined" && MediaSource.isTypeSupported(mime);
}

export function cameraView(container, cameraId, { label } = {}) {
  ensureStyle();
  const video = el("video", { class: "camera-video", "data-camera": String(cameraId) });
  video.muted = true;
  video.autoplay = true;
  video.playsInline = true;
  const img = el("img", { class: "camera-snapshot", alt: "" });
  const state = el("span", { class: "camera-state" });
  const name = el("span", { class: "camera-label" }, label || "");
  const root = el("figure", { class: "camera-view", "data-state": "connecting" },
    video, img, el("figcaption", {}, name, state));
  container.append(root);

  let ws = null;
  let media = null; // {source: MediaSource, buffer: SourceBuffer | null, queue: ArrayBuffer[]}
  let retry = 0;
  let retryTimer = null;
  let snapTimer = null;
  let stateKey = "camera.connecting";
  let mseUsable = typeof MediaSource !== "undefined";
  let destroyed = false;

  function show(mode, key) {
    root.dataset.state = mode; // connecting | live | waiting | offline | snapshot
    stateKey = key;
    state.textContent = t(key);
  }

  // ---- JPEG refresh (fallback) -------------------------------------------------------------
  function snapshots(on) {
    if (on && snapTimer === null) {
      const refresh = () => { img.src = snapshotUrl(cameraId); };
      refresh();
      snapTimer = setInterval(refresh, SNAPSHOT_MS);
    } else if (!on && snapTimer !== null) {
      clearInterval(snapTimer);
      snapTimer = null;
    }
    root.classList.toggle("camera-fallback", on);
  }
  img.addEventListener("load", () => {
    if (root.dataset.state !== "live") show("snapshot", "camera.snapshot");
  });
  video.addEventListener("error", () => { if (media) restart(); });
  img.addEventListener("error", () => {
    if (root.dataset.state !== "live") show("offline", "camera.offline");
  });

  // ---- Media Source Extensions -------------------------------------------------------------
  function closeMedia() {
    if (!media) return;
    const old = media;
    media = null;
    video.removeAttribute("src");
    video.load();
    URL.revokeObjectURL(old.url);
  }

  function openMedia(mime) {
    closeMedia();
    if (!mseSupported(mime)) {
      mseUsable = false; // this browser cannot play the camera's codec: snapshots only
      stopLive();
      snapshots(true);
      return;
    }
    const source = new MediaSource();
    const url = URL.createObjectURL(source);
    const m = { source, url, buffer: null, queue: [], synced: false };
    media = m;
    source.addEventListener("sourceopen", () => {
      if (media !== m) return;
      m.buffer = source.addSourceBuffer(mime);
      m.buffer.addEventListener("updateend", () => {
        if (media !== m) return; // closed while appending
        followEdge(m);
        pump(m);
      });
      m.buffer.addEventListener("error", () => restart());
      pump(m);
    }, { once: true });
    video.src = url;
  }

  function pump(m) {
    const buffer = m.buffer;
    if (media !== m || !buffer || buffer.updating || m.source.readyState !== "open") return;
    const ranges = buffer.buffered;
    if (ranges.length && video.currentTime - ranges.start(0) > 2 * KEEP_S) {
      buffer.remove(ranges.start(0), video.currentTime - KEEP_S);
      return; // updateend pumps again
    }
    const next = m.queue.shift();
    if (!next) return;
    try {
      buffer.appendBuffer(next);
    } catch (err) {
      if (err.name !== "QuotaExceededError") throw err;
      m.queue.unshift(next);
      if (ranges.length) buffer.remove(ranges.start(0), Math.max(ranges.start(0) + 0.1,
        video.currentTime - 2));
    }
  }

  // Live means the newest frame: jump there once the joining burst (the frames since the last
  // keyframe) is in, then play a little faster while behind, and jump again when far behind.
  function followEdge(m) {
    const ranges = m.buffer.buffered;
    if (!ranges.length) return;
    const last = ranges.length - 1;
    const start = ranges.start(last);
    const end = ranges.end(last);
    const lag = end - video.currentTime;
    if (video.currentTime < start || lag > LIVE_EDGE_S || (!m.synced && !m.queue.length)) {
      m.synced = !m.queue.length;
      if (lag > EDGE_MARGIN_S) video.currentTime = Math.max(start, end - EDGE_MARGIN_S);
    } else {
      video.playbackRate = lag > CATCH_UP_S ? CATCH_UP_RATE : 1;
    }
    if (video.paused) video.play().catch(() => {});
    if (root.dataset.state !== "live") {
      show("live", "camera.live");
      snapshots(false);
    }
  }

  // ---- WebSocket -----------------------------------------------------------------------------
  function onMessage(ev) {
    if (typeof ev.data === "string") {
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }
      if (msg.type === "codec") {
        openMedia(msg.mime);
      } else if (msg.type === "status" && msg.state !== "live") {
        closeMedia(); // the next codec message starts over
        show(msg.state === "offline" ? "offline" : "waiting", `camera.${msg.state}`);
        snapshots(true);
      }
      return;
    }
    retry = 0; // media arrives: the connection is good
    if (media) {
      media.queue.push(ev.data);
      pump(media);
    }
  }

  function startLive() {
    retryTimer = null;
    if (destroyed || !mseUsable) return;
    const socket = new WebSocket(liveUrl(cameraId));
    ws = socket;
    socket.binaryType = "arraybuffer";
    socket.addEventListener("message", onMessage);
    socket.addEventListener("close", () => {
      if (ws !== socket || destroyed) return; // closed on purpose
      ws = null;
      closeMedia();
      if (root.dataset.state === "live" || root.dataset.state === "connecting") {
        show("connecting", "camera.connecting");
      }
      snapshots(true);
      retryTimer = setTimeout(startLive, RETRY_MS[Math.min(retry, RETRY_MS.length - 1)]);
      retry += 1;
    });
  }

  function stopLive() {
    if (retryTimer !== null) clearTimeout(retryTimer);
    retryTimer = null;
    if (ws) {
      const old = ws;
      ws = null;
      old.close();
    }
  }

  function restart() {
    if (destroyed) return;
    stopLive();
    closeMedia();
    retryTimer = setTimeout(startLive, RETRY_MS[0]);
  }

  const offLang = onLang(() => {
    state.textContent = t(stateKey);
  });
  show("connecting", "camera.connecting");
  if (mseUsable) startLive(); else snapshots(true);

  return {
    element: root,
    video,
    destroy() {
      destroyed = true;
      stopLive();
      snapshots(false);
      closeMedia();
      if (typeof offLang === "function") offLang();
      root.remove();
    },
  };
}
