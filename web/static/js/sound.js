// The audible cue for new priority-1 alarms: a two-tone beep generated with WebAudio (no sound
// file). Muting is remembered per browser.
let ctx = null;
let muted = localStorage.getItem("anjian.muted") === "1";
const listeners = new Set();

export function isMuted() {
  return muted;
}

export function setMuted(value) {
  muted = Boolean(value);
  localStorage.setItem("anjian.muted", muted ? "1" : "0");
  for (const cb of listeners) cb(muted);
}

export function onMuted(cb) {
  listeners.add(cb);
  return () => listeners.delete(cb);
}

/** Browsers allow audio only after a gesture: main.js calls this on the first key or click. */
export function unlock() {
  ctx ??= new AudioContext();
  if (ctx.state === "suspended") ctx.resume();
}

/** Beeps (unless muted); returns whether a sound was scheduled. Counted in window.anjianBeeps
 * so the browser tests can see the cue without speakers. */
export function beep() {
  window.anjianBeeps = (window.anjianBeeps ?? 0) + (muted ? 0 : 1);
  if (muted) return false;
  ctx ??= new AudioContext();
  if (ctx.state === "suspended") ctx.resume();
  const now = ctx.currentTime;
  for (const [i, freq] of [880, 660, 880].entries()) {
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.type = "square";
    osc.frequency.value = freq;
    const t0 = now + i * 0.22;
    gain.gain.setValueAtTime(0.0001, t0);
    gain.gain.exponentialRampToValueAtTime(0.2, t0 + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, t0 + 0.18);
    osc.connect(gain).connect(ctx.destination);
    osc.start(t0);
    osc.stop(t0 + 0.2);
  }
  return true;
}
