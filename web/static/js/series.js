// A series answer (GET /api/points/{id}/series) as chart points, shared by the trend viewer and
// an alarm's trend; no chart library needed, so the alarm page can use it before it loads the
// chart lazily.

/** [[ms, value], ...] to draw, with a null where the line breaks. A polled point: the bucket
 * averages, broken wherever a bucket is missing. A point that reports on change only (the
 * answer's `hold_ms`): each bucket's last value holds until the next (drawn as a step, see
 * `seriesStep`), for at most `hold_ms` (its device's two heartbeats); a longer silence is a
 * gap, as when its server was down. */
export function seriesPoints(data) {
  const held = holds(data);
  const value = held ? data.last : data.avg;
  const gap = Math.max(1.5 * data.bucket_ms, held ? data.hold_ms : 0);
  const out = [];
  const n = data.ts.length;
  for (let i = 0; i < n; i++) {
    if (i > 0 && data.ts[i] - data.ts[i - 1] > gap) {
      const end = data.ts[i - 1] + (held ? data.hold_ms : data.bucket_ms);
      if (held && value[i - 1] !== null) out.push([end, value[i - 1]]);
      out.push([end, null]);
    }
    out.push([data.ts[i], value[i]]);
  }
  if (held && n > 0 && value[n - 1] !== null) {
    out.push([Math.min(Date.parse(data.end), data.ts[n - 1] + data.hold_ms), value[n - 1]]);
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
