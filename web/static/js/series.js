// A series answer (GET /api/points/{id}/series) as chart points, shared by the trend viewer and
// an alarm's trend; no chart library needed, so the alarm page can use it before it loads the
// chart lazily.

/** [[ms, value], ...] to draw, with a null where the line breaks. A polled point: the bucket
 * averages, broken wherever a bucket is missing. A point that reports on change only (the
 * answer's `hold_ms`): each bucket's last value holds until the next (drawn as a step, see
 * `seriesStep`), for at most `hold_ms` (its device's two heartbeats); a longer silence is a
 * gap, as when its server was down. A failure its collector reported (the answer's `failed`)
 * ends the value held: the line breaks there, or with `failedValue` (a device's link: 0, lost)
 * that value holds; until the point is read again (`back`: [ms, value], at its time), so a
 * loss that begins and ends within one bucket is drawn too. While lost, a bucket's own value
 * (its last reading, drawn at its start) waits for that time. */
export function seriesPoints(data, failedValue = null) {
  if (!holds(data)) return averages(data);
  const end = Date.parse(data.end);
  // Readings at their bucket's start, failures and the readings after them at their time.
  const events = data.ts.map((t, i) => [t, data.last[i], false]);
  for (const t of data.failed ?? []) events.push([t, undefined, false]);
  for (const [t, v] of data.back ?? []) events.push([t, v, true]);
  events.sort((a, b) => a[0] - b[0]);
  // A bucket's value reaches the next bucket's even when hold_ms is shorter than a bucket.
  const gap = Math.max(1.5 * data.bucket_ms, data.hold_ms);
  const out = [];
  let held = null; // [since, value]
  let lost = false;
  for (const [t, v, back] of events) {
    const failed = v === undefined;
    if (lost && !failed && !back) continue;
    if (held) {
      const broken = t - held[0] > gap;
      const until = broken ? held[0] + data.hold_ms : t;
      if (broken || (failed && failedValue === null)) out.push([until, held[1]]);
      if (broken) out.push([until, null]);
    }
    lost = failed;
    if (failed && failedValue === null) {
      if (out.length && out[out.length - 1][1] !== null) out.push([t, null]);
      held = null;
    } else {
      held = [t, failed ? failedValue : v];
      out.push(held.slice());
    }
  }
  if (held) out.push([Math.min(end, held[0] + data.hold_ms), held[1]]);
  return out;
}

function averages(data) {
  const gap = 1.5 * data.bucket_ms;
  const out = [];
  for (let i = 0; i < data.ts.length; i++) {
    if (i > 0 && data.ts[i] - data.ts[i - 1] > gap) {
      out.push([data.ts[i - 1] + data.bucket_ms, null]);
    }
    out.push([data.ts[i], data.avg[i]]);
  }
  return out;
}

/** The chart's `step` for a series answer: "end" (a value holds until the next) for a point
 * that reports on change only, else a plain line. */
export function seriesStep(data) {
  return holds(data) ? "end" : false;
}

function holds(data) {
  return data.hold_ms !== null && data.hold_ms !== undefined;
}

/** [[startMs, endMs], ...]: the spans of buckets holding doubtful readings (the answer's
 * `doubtful` counts: uncertain, or beyond the instrument range, as a gas detector saturated in a
 * large leak), adjacent buckets merged, for the chart to mark. */
export function seriesDoubtful(data) {
  const spans = [];
  (data.doubtful ?? []).forEach((n, i) => {
    if (!n) return;
    const start = data.ts[i];
    const last = spans[spans.length - 1];
    if (last && last[1] === start) last[1] = start + data.bucket_ms;
    else spans.push([start, start + data.bucket_ms]);
  });
  return spans;
}
