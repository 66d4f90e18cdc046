"""Alarm-system performance KPIs (ISA-18.2 / EEMUA 191) from an alarm-event history: pure numpy.

Annunciated alarms are the RAISED events only; REANNUNCIATED reminders are not new alarms.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from alarms.model import AlarmEvent, Condition, EventKind, Priority

_NS = 1_000_000_000
KIND_CODES: dict[EventKind, int] = {k: i for i, k in enumerate(EventKind)}
UNASSIGNED_AREA = "(unassigned)"

_RAISED = KIND_CODES[EventKind.RAISED]
# What takes an active alarm off the operator's list of standing alarms.
_STANDING_ENDS = [
    KIND_CODES[k]
    for k in (
        EventKind.CLEARED,
        EventKind.SHELVED,
        EventKind.SUPPRESSED,
        EventKind.REMOVED,
        EventKind.RESET,
    )
]

_SRC_ISA = "ANSI/ISA-18.2-2016 §16.5 (IEC 62682) recommended alarm performance metrics"
_SRC_ISA_V2 = f"{_SRC_ISA}, as quoted at https://pypi.org/project/alarmkpi/"
_SRC_EXIDA = (
    f"{_SRC_ISA}, as quoted at "
    "https://www.exida.com/Blog/which-measure-rationalized-or-annunciated-is-more-important"
)


@dataclass(frozen=True, slots=True)
class Target:
    """One published benchmark. mark: V2 = seen quoted by a secondary source; M = not verified."""

    metric: str
    value: float
    unit: str
    meaning: str
    source: str
    mark: str


TARGETS: tuple[Target, ...] = (
    Target("per_day", 150, "alarms/day", "very likely acceptable", _SRC_ISA_V2, "V2"),
    Target("per_day", 300, "alarms/day", "maximum manageable", _SRC_ISA_V2, "V2"),
    Target("per_hour", 6, "alarms/h", "very likely acceptable", _SRC_ISA_V2, "V2"),
    Target("per_hour", 12, "alarms/h", "maximum manageable", _SRC_ISA_V2, "V2"),
    Target("per_10min", 1, "alarms/10 min", "very likely acceptable", _SRC_ISA_V2, "V2"),
    Target("per_10min", 2, "alarms/10 min", "maximum manageable", _SRC_ISA_V2, "V2"),
    Target(
        "per_10min",
        1,
        "alarms/10 min",
        "long-term average in steady operation, very likely acceptable",
        "EEMUA 191 (3rd ed.) Table 'average alarm rate'",
        "M",
    ),
    Target("max_10min", 10, "alarms/10 min", "at most, outside floods", _SRC_ISA_V2, "V2"),
    Target("pct_10min_over_10", 1, "%", "about at most", _SRC_ISA_V2, "V2"),
    Target("pct_time_in_flood", 1, "%", "about at most", _SRC_ISA_V2, "V2"),
    Target("top10_share_pct", 5, "%", "about 1 % to 5 % at most", _SRC_ISA_V2, "V2"),
    Target("chattering", 0, "alarms", "none; act on each", _SRC_ISA_V2, "V2"),
    Target("stale", 5, "alarms", "fewer than this present on any day", _SRC_ISA, "M"),
    Target("priority_pct.low", 80, "%", "about", _SRC_EXIDA, "V2"),
    Target("priority_pct.medium", 15, "%", "about", _SRC_EXIDA, "V2"),
    Target("priority_pct.high", 5, "%", "about", _SRC_EXIDA, "V2"),
    Target(
        "priority_pct.emergency", 1, "%", "less than, when a fourth priority is used", _SRC_ISA, "M"
    ),
)


@dataclass(frozen=True, slots=True)
class KpiRules:
    """The definitions behind the figures, as data.

    Flood start/end: ISA-18.2 (start above 10 alarms in 10 min, end below 5) [V2, alarmkpi].
    Chattering (≥ 3 activations in 60 s) and stale (active > 24 h): common practice quoted
    with ISA-TR18.2.5 [M].
    """

    window_s: int = 600
    flood_start_above: int = 10
    flood_end_below: int = 5
    chatter_count: int = 3
    chatter_window_s: int = 60
    stale_after_s: int = 24 * 3600
    top_n: int = 10


DEFAULT_RULES = KpiRules()


@dataclass(frozen=True, slots=True)
class EventColumns:
    """The event history as columns, e.g. straight from a `SELECT` on the alarm events."""

    ts_ns: npt.NDArray[np.int64]
    point: npt.NDArray[np.int64]
    condition: npt.NDArray[np.int64]
    priority: npt.NDArray[np.int64]
    kind: npt.NDArray[np.int64]  # KIND_CODES

    @classmethod
    def of(
        cls,
        ts_ns: npt.ArrayLike,
        point: npt.ArrayLike,
        condition: npt.ArrayLike,
        priority: npt.ArrayLike,
        kind: npt.ArrayLike,
    ) -> EventColumns:
        """`condition` as ints or names ("HH"), `kind` as codes or names ("raised")."""
        cols = {
            "ts_ns": np.asarray(ts_ns, dtype=np.int64),
            "point": np.asarray(point, dtype=np.int64),
            "condition": _codes(condition, [c.name for c in Condition], "condition"),
            "priority": np.asarray(priority, dtype=np.int64),
            "kind": _codes(kind, [str(k) for k in EventKind], "event kind"),
        }
        sizes = {name: a.shape for name, a in cols.items()}
        if len(set(sizes.values())) != 1 or cols["ts_ns"].ndim != 1:
            raise ValueError(f"event columns must be 1-D and of one length, got {sizes}")
        bad = cols["priority"][(cols["priority"] < 1) | (cols["priority"] > len(Priority))]
        if bad.size:
            raise ValueError(f"priority must be 1 to {len(Priority)}, got {bad[0]}")
        bad = cols["condition"][(cols["condition"] < 0) | (cols["condition"] >= len(Condition))]
        if bad.size:
            raise ValueError(f"unknown condition code {bad[0]}")
        return cls(**cols)

    @classmethod
    def from_events(cls, events: Iterable[AlarmEvent]) -> EventColumns:
        rows = [
            (e.ts_ns, e.point, int(e.condition), int(e.priority), KIND_CODES[e.kind])
            for e in events
        ]
        cols = np.array(rows, dtype=np.int64).reshape(-1, 5).T
        return cls.of(*cols)


def _codes(values: npt.ArrayLike, names: list[str], what: str) -> npt.NDArray[np.int64]:
    arr = np.asarray(values)
    if arr.dtype.kind in "iu":
        codes = arr.astype(np.int64)
        if what == "event kind" and codes.size and (codes.min() < 0 or codes.max() >= len(names)):
            raise ValueError(f"unknown {what} code {codes[(codes < 0) | (codes >= len(names))][0]}")
        return codes
    text = arr.astype(str)
    order = np.argsort(names)
    sorted_names = np.asarray(names)[order]
    pos = np.clip(np.searchsorted(sorted_names, text), 0, len(names) - 1)
    unknown = sorted_names[pos] != text
    if unknown.any():
        raise ValueError(f"unknown {what} {str(text[unknown][0])!r}; known: {', '.join(names)}")
    return order[pos].astype(np.int64)


def kpis(
    events: EventColumns | Iterable[AlarmEvent],
    start_ns: int,
    end_ns: int,
    area_of: Mapping[int, str],
    rules: KpiRules = DEFAULT_RULES,
) -> dict[str, Any]:
    """The KPI report for [start_ns, end_ns), overall and per console area, JSON-ready.

    Events before `start_ns` matter twice: the last 10 minutes before it carry a flood into the
    period, and stale alarms need each alarm's RAISED event however old; feed the history
    accordingly (events at or after `end_ns` are ignored). Points missing from `area_of` go
    to the area "(unassigned)".
    """
    if end_ns <= start_ns:
        raise ValueError(f"the period must end after it starts: {start_ns} .. {end_ns}")
    cols = events if isinstance(events, EventColumns) else EventColumns.from_events(events)
    keep = cols.ts_ns < end_ns
    ev = EventColumns(*(getattr(cols, f.name)[keep] for f in fields(EventColumns)))
    uniq, inverse = np.unique(ev.point, return_inverse=True)
    area_names = sorted({area_of.get(int(p), UNASSIGNED_AREA) for p in uniq})
    area_idx = np.array(
        [area_names.index(area_of.get(int(p), UNASSIGNED_AREA)) for p in uniq], dtype=np.int64
    )[inverse]
    label = np.asarray(area_names, dtype=object)[area_idx] if area_names else np.array([], object)
    period = _Period(start_ns, end_ns, rules)
    everything = np.ones(ev.ts_ns.shape, dtype=bool)
    return {
        "period": {
            "start_ns": start_ns,
            "end_ns": end_ns,
            "hours": (end_ns - start_ns) / (3600 * _NS),
        },
        "counting": "annunciated alarms are RAISED events; re-annunciations are not counted",
        "rules": asdict(rules),
        "targets": [asdict(t) for t in TARGETS],
        "overall": _metrics(ev, label, everything, period),
        "areas": {
            name: _metrics(ev, label, area_idx == i, period) for i, name in enumerate(area_names)
        },
    }


@dataclass(frozen=True, slots=True)
class _Period:
    start_ns: int
    end_ns: int
    rules: KpiRules


def _metrics(
    ev: EventColumns, label: npt.NDArray[Any], mask: npt.NDArray[np.bool_], p: _Period
) -> dict[str, Any]:
    raised = mask & (ev.kind == _RAISED)
    in_period = raised & (ev.ts_ns >= p.start_ns)
    ts = ev.ts_ns[in_period]
    key = ev.point[in_period] * len(Condition) + ev.condition[in_period]
    total = int(ts.size)
    lookback = raised & (ev.ts_ns >= p.start_ns - p.rules.window_s * _NS)
    rate, per_window = _rates(ts, p)
    return {
        "annunciated": total,
        "rate": rate,
        # Alarms raised in each consecutive window (10 min) of the period, for a rate chart.
        "per_window": per_window,
        "floods": _floods(np.sort(ev.ts_ns[lookback]), p),
        "chattering": _chattering(ts, key, label[in_period], p.rules),
        "stale": _stale(ev, label, mask, p),
        "bad_actors": _bad_actors(key, label[in_period], total, p.rules.top_n),
        "priority": _priorities(ev.priority[in_period], total),
    }


def _rates(ts: npt.NDArray[np.int64], p: _Period) -> tuple[dict[str, Any], list[int]]:
    """Average and maximum per 10 min, hour and day; and the count in each 10-minute window."""
    span = p.end_ns - p.start_ns
    out: dict[str, Any] = {}
    per_window: list[int] = []
    for name, width_s in (("per_10min", p.rules.window_s), ("per_hour", 3600), ("per_day", 86400)):
        width = width_s * _NS
        n_buckets = -(-span // width)
        counts = np.bincount((ts - p.start_ns) // width, minlength=n_buckets)
        out[name] = {"average": ts.size * width / span, "max": int(counts.max())}
        if name == "per_10min":
            over = np.count_nonzero(counts > p.rules.flood_start_above)
            out[name]["pct_periods_over_10"] = 100.0 * over / n_buckets
            per_window = counts.tolist()
    return out, per_window


def _floods(ts: npt.NDArray[np.int64], p: _Period) -> dict[str, Any]:
    """Episodes over a sliding window: an alarm counts during [ts, ts + window)."""
    none: dict[str, Any] = {"count": 0, "pct_time": 0.0, "episodes": []}
    if ts.size == 0:
        return none
    width = p.rules.window_s * _NS
    times = np.concatenate([ts, ts + width])
    deltas = np.concatenate([np.ones_like(ts), -np.ones_like(ts)])
    order = np.argsort(times, kind="stable")
    times, counts = times[order], np.cumsum(deltas[order])
    # The count holds from a change time until the next one; several changes at one instant
    # collapse to the last.
    last = np.append(times[1:] != times[:-1], True)
    times, counts = times[last], counts[last]
    mark = np.where(
        counts > p.rules.flood_start_above, 1, np.where(counts < p.rules.flood_end_below, -1, 0)
    )
    seen = np.maximum.accumulate(np.where(mark != 0, np.arange(mark.size), -1))
    flooding = (seen >= 0) & (mark[np.maximum(seen, 0)] == 1)
    edges = np.diff(np.concatenate([[0], flooding.astype(np.int8)]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    episodes = []
    in_flood_ns = 0
    # The last change returns the count to 0, so every episode has an end.
    for s, e in zip(starts, ends, strict=True):
        t0, t1 = int(times[s]), int(times[e])
        if t1 <= p.start_ns or t0 >= p.end_ns:
            continue
        c0, c1 = max(t0, p.start_ns), min(t1, p.end_ns)
        in_flood_ns += c1 - c0
        episodes.append(
            {
                "start_ns": c0,
                "end_ns": c1,
                "duration_s": (c1 - c0) / _NS,
                "alarms": int(np.count_nonzero((ts >= c0) & (ts < c1))),
                "peak_10min": int(counts[s:e].max()),
                "ongoing": t1 > p.end_ns,
                "began_before_period": t0 < p.start_ns,
            }
        )
    if not episodes:
        return none
    return {
        "count": len(episodes),
        "pct_time": 100.0 * in_flood_ns / (p.end_ns - p.start_ns),
        "episodes": episodes,
    }


def _split_key(key: int) -> dict[str, Any]:
    point, condition = divmod(key, len(Condition))
    return {"point": point, "condition": Condition(condition).name}


def _chattering(
    ts: npt.NDArray[np.int64],
    key: npt.NDArray[np.int64],
    label: npt.NDArray[Any],
    rules: KpiRules,
) -> list[dict[str, Any]]:
    order = np.lexsort((ts, key))
    ts, key, label = ts[order], key[order], label[order]
    width = rules.chatter_window_s * _NS
    best: dict[int, int] = {}
    k = rules.chatter_count
    # Grow k while some alarm still has k activations inside one window; each pass is vectorised.
    while k <= ts.size:
        hit = (key[k - 1 :] == key[: ts.size - k + 1]) & (
            ts[k - 1 :] - ts[: ts.size - k + 1] < width
        )
        if not hit.any():
            break
        best.update(dict.fromkeys(key[: ts.size - k + 1][hit].tolist(), k))
        k += 1
    keys, first, totals = np.unique(key, return_index=True, return_counts=True)
    at = np.searchsorted(keys, list(best))
    rows = [
        {
            **_split_key(int(keys[i])),
            "area": str(label[first[i]]),
            "activations": int(totals[i]),
            "max_in_window": n,
        }
        for i, n in zip(at.tolist(), best.values(), strict=True)
    ]
    rows.sort(key=lambda r: (-r["max_in_window"], -r["activations"], r["point"], r["condition"]))
    return rows


def _stale(
    ev: EventColumns, label: npt.NDArray[Any], mask: npt.NDArray[np.bool_], p: _Period
) -> list[dict[str, Any]]:
    """Alarms standing at the period end for longer than the rule, since their first RAISED."""
    key = ev.point * len(Condition) + ev.condition
    keys, first, inv = np.unique(key[mask], return_index=True, return_inverse=True)
    if keys.size == 0:
        return []
    ts, kind = ev.ts_ns[mask], ev.kind[mask]
    last_end = np.full(keys.size, np.iinfo(np.int64).min)
    is_end = np.isin(kind, _STANDING_ENDS)
    np.maximum.at(last_end, inv[is_end], ts[is_end])
    since = np.full(keys.size, np.iinfo(np.int64).max)
    standing = (kind == _RAISED) & (ts > last_end[inv])
    np.minimum.at(since, inv[standing], ts[standing])
    stale = np.flatnonzero(p.end_ns - since > p.rules.stale_after_s * _NS)
    labels = label[mask]
    rows = [
        {
            **_split_key(int(keys[i])),
            "area": str(labels[first[i]]),
            "active_since_ns": int(since[i]),
            "active_h": (p.end_ns - int(since[i])) / (3600 * _NS),
        }
        for i in stale
    ]
    rows.sort(key=lambda r: (r["active_since_ns"], r["point"], r["condition"]))
    return rows


def _bad_actors(
    key: npt.NDArray[np.int64], label: npt.NDArray[Any], total: int, top_n: int
) -> dict[str, Any]:
    keys, first, counts = np.unique(key, return_index=True, return_counts=True)
    order = np.lexsort((keys, -counts))[:top_n]
    top = [
        {
            **_split_key(int(keys[i])),
            "area": str(label[first[i]]),
            "count": int(counts[i]),
            "share_pct": 100.0 * int(counts[i]) / total,
        }
        for i in order
    ]
    share = 100.0 * int(counts[order].sum()) / total if total else 0.0
    # With no more than top_n distinct alarms the top ones are the whole load: their share is
    # 100 % by definition and says nothing (the console does not judge it then).
    return {"top": top, "share_pct": share, "distinct": len(keys)}


def _priorities(priority: npt.NDArray[np.int64], total: int) -> dict[str, Any]:
    counts = np.bincount(priority, minlength=len(Priority) + 1)
    return {
        p.name.lower(): {
            "count": int(counts[p]),
            "pct": 100.0 * int(counts[p]) / total if total else 0.0,
        }
        for p in Priority
    }
