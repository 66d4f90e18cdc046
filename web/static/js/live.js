// One shared WebSocket (/ws) for the whole console: topics are subscribed while some handler
// wants them and subscribed again after a reconnect.
// Topics: "alarms", "warnings", "notifications", "points:<enterprise code>" (web/app.py FEEDS).
// Handlers get every message of their topic: {type: "points", topic, values: [[id, ts_ms, value,
// quality], ...], sent_ms} or {type: "alarms", events: [...]} or {type: "alarms_resync"} (the
// server dropped events: reload from the REST API).
const handlers = new Map(); // topic -> Set(handler)
const statusListeners = new Set();
const endListeners = new Set();
let socket = null;
let connected = false;
let retry = null;
let stopped = true;
const SESSION_ENDED = 4401;

function topicOf(msg) {
  if (msg.topic) return msg.topic;
  if (typeof msg.type === "string" && msg.type.endsWith("_resync")) return msg.type.slice(0, -7);
  return msg.type;
}

function setConnected(value) {
  if (connected === value) return;
  connected = value;
  for (const cb of statusListeners) cb(value);
}

function send(obj) {
  if (socket?.readyState === WebSocket.OPEN) socket.send(JSON.stringify(obj));
}

function open() {
  if (stopped || socket) return;
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  socket = ws;
  ws.onopen = () => {
    setConnected(true);
    if (handlers.size) send({ op: "subscribe", topics: [...handlers.keys()] });
  };
  ws.onmessage = (event) => {
    let msg;
    try {
      msg = JSON.parse(event.data);
    } catch {
      return;
    }
    msg.received_ms = Date.now();
    if (msg.type === "error") console.warn("live:", msg.message);
    for (const h of [...(handlers.get(topicOf(msg)) ?? [])]) {
      try {
        h(msg);
      } catch (err) {
        console.error(err);
      }
    }
    for (const h of [...(handlers.get("*") ?? [])]) h(msg);
  };
  ws.onclose = (event) => {
    if (socket !== ws) return;
    socket = null;
    setConnected(false);
    if (event.code === SESSION_ENDED) {
      stopped = true;
      for (const cb of endListeners) cb();
    } else if (!stopped) {
      retry = setTimeout(open, 2000);
    }
  };
}

/** Starts the connection (after sign-in). */
export function start() {
  stopped = false;
  open();
}

/** Closes the connection (sign-out); handlers stay registered for the next start(). */
export function stop() {
  stopped = true;
  clearTimeout(retry);
  const ws = socket;
  socket = null;
  ws?.close();
  setConnected(false);
}

/** handler(msg) for each message of `topic` ("*" = every message); returns unsubscribe(). */
export function subscribe(topic, handler) {
  let set = handlers.get(topic);
  if (!set) {
    handlers.set(topic, (set = new Set()));
    if (topic !== "*") send({ op: "subscribe", topics: [topic] });
  }
  set.add(handler);
  return () => {
    set.delete(handler);
    if (set.size === 0 && handlers.get(topic) === set) {
      handlers.delete(topic);
      if (topic !== "*") send({ op: "unsubscribe", topics: [topic] });
    }
  };
}

/** cb(connected: boolean) on every change of the connection. */
export function onStatus(cb) {
  statusListeners.add(cb);
  return () => statusListeners.delete(cb);
}

/** cb() when the server closed the feed because the session ended. */
export function onSessionEnded(cb) {
  endListeners.add(cb);
  return () => endListeners.delete(cb);
}

export function isConnected() {
  return connected;
}
