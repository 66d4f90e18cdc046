"""The pure, vectorised alarm evaluator: (rules, condition state, samples or a time) → (new
condition state, the conditions that changed). No I/O and no clock: time is an argument.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from alarms.model import N_CONDITIONS, Condition, ConditionChange
from alarms.rules import NS, RuleArrays
from streams.batch import SampleBatch
from streams.quality import Quality

# Every condition of every point follows one state machine. A *raw* violation is decided from the
# samples (limits with deadband hysteresis, rate of change, quality, range, flat line, forecast) or
# from time (stale); it becomes *active* after it has persisted `on_delay` and clears after it has
# been absent `off_delay` (bad quality's T is its on-delay). A change's timestamp is the moment it
# matured (`since + delay`), so it does not depend on when a later sample or tick discovered it:
# the result is the same whether a series arrives in one batch, in many, or interleaved with ticks.
#
# Samples of one point are applied in order. A batch is grouped with a stable argsort by point;
# samples of equal rank within their point form a *level* of distinct points, and levels are
# applied one after the other, each vectorised across its points.
#
# Memory (EvalState): per point 10 × (bool raw + bool active + int64 since) = 100 B, 10 float64
# and 5 int64 history/aggregate columns = 120 B and a flag: 221 B, so 22 MB for 100,000 points.
# Rate of change and forecast use exponentially weighted running aggregates (O(1) per point, no
# sample ring: a one-hour window at 1 Hz would otherwise cost 3,600 samples per point); the
# flat-line detector keeps the current run's min, max and start.

Bools = npt.NDArray[np.bool_]
Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Index = npt.NDArray[np.intp]

_HH, _H = Condition.HH, Condition.H
_ROC, _BAD, _STALE = Condition.ROC, Condition.BAD_QUALITY, Condition.STALE
_STUCK, _OOR, _FC = Condition.STUCK, Condition.OUT_OF_RANGE, Condition.FORECAST
_GOOD = np.uint8(Quality.GOOD)
_QOOR = np.uint8(Quality.OUT_OF_RANGE)
_MIN_FIT_WEIGHT = 2.0
_CHUNK = 8192  # a line through fewer than about two samples predicts nothing

# Float state columns.
_LAST_V = 0  # latest value, any quality (reported with time-driven changes)
_GOOD_V = 1  # latest good value
_RATE = 2  # exponentially weighted rate of change, per second
_RUN_LO = 3  # flat-line run: min and max of its values
_RUN_HI = 4
_W, _ST, _SV, _STT, _STV = 5, 6, 7, 8, 9  # weighted sums of 1, t, v, t², t·v (t in s, 0 = _GOOD_T)
_N_FLOAT = 10
# Int state columns.
_LAST_T = 0  # latest sample time, any quality (the start time until the first sample)
_GOOD_T = 1
_RUN_T = 2  # flat-line run start
_FC_T = 3  # predicted crossing time of the latest forecast
_FC_HH = 4  # 1 when the latest forecast targets HH, 0 for H
_N_INT = 5


@dataclass(slots=True)
class EvalState:
    """Condition state per point × condition and per-point history, indexed by point id.

    `evaluate` and `tick` take the state over: they update these arrays and return the state;
    keep `state.copy()` to hold on to an earlier one.
    """

    raw: Bools  # (n, C) the violation as the samples show it
    active: Bools  # (n, C) after on/off delays
    since: Ints  # (n, C) when `raw` took its present value
    pending: Bools  # (n,) any(raw != active): a delay is running
    f: Floats  # (n, _N_FLOAT)
    i: Ints  # (n, _N_INT)

    @classmethod
    def initial(cls, rules: RuleArrays, start_ns: int) -> EvalState:
        """Nothing active; every point counts as last heard at `start_ns` (for stale)."""
        n, c = rules.size, N_CONDITIONS
        f = np.full((n, _N_FLOAT), np.nan)
        f[:, _RATE] = 0.0
        f[:, _W:] = 0.0
        i = np.zeros((n, _N_INT), np.int64)
        i[:, _LAST_T] = start_ns
        return cls(
            raw=np.zeros((n, c), np.bool_),
            active=np.zeros((n, c), np.bool_),
            since=np.full((n, c), start_ns, np.int64),
            pending=np.zeros(n, np.bool_),
            f=f,
            i=i,
        )

    def copy(self) -> EvalState:
        return replace(self, **{f.name: getattr(self, f.name).copy() for f in fields(self)})

    def active_conditions(self, point: int) -> list[Condition]:
        return [Condition(int(c)) for c in np.flatnonzero(self.active[point])]


class _Changes:
    """Changes collected as columns while levels are applied."""

    def __init__(self) -> None:
        self.cols: list[tuple[Ints, Ints, Bools, Ints, Floats, Ints, Bools]] = []

    def add(
        self,
        points: npt.NDArray[Any],
        mature: Bools,
        active: Bools,
        ts: Ints,
        value: Floats,
        fc_t: Ints,
        fc_hh: Bools,
    ) -> None:
        rows, conds = np.nonzero(mature)
        if len(rows):
            self.cols.append(
                (
                    points[rows].astype(np.int64),
                    conds.astype(np.int64),
                    active[rows, conds],
                    ts[rows, conds],
                    value[rows],
                    fc_t[rows],
                    fc_hh[rows],
                )
            )

    def result(self) -> list[ConditionChange]:
        if not self.cols:
            return []
        p, c, a, ts, v, fc_t, fc_hh = (np.concatenate(x) for x in zip(*self.cols, strict=True))
        order = np.lexsort((c, p, ts))
        out = []
        for k in order.tolist():
            cond = Condition(int(c[k]))
            active = bool(a[k])
            detail: dict[str, Any] = {}
            if cond is _FC and active:
                detail = {"limit": "HH" if fc_hh[k] else "H", "predicted_ns": int(fc_t[k])}
            out.append(ConditionChange(int(p[k]), cond, active, int(ts[k]), float(v[k]), detail))
        return out


def evaluate(
    rules: RuleArrays, state: EvalState, batch: SampleBatch
) -> tuple[EvalState, list[ConditionChange]]:
    """Apply a batch of samples (per point in time order; older than the point's latest are
    ignored, as are points without a rule)."""
    _check(rules, state)
    point = batch.point
    usable = point < rules.size
    usable &= point >= 0
    if not usable.all():
        batch = batch.take(usable)
        point = batch.point
    known = rules.known[point]
    if not known.all():
        batch = batch.take(known)
        point = batch.point
    changes = _Changes()
    for idx in _chunks(_levels(point), len(point)):
        _apply(
            rules, state, point[idx], batch.ts[idx], batch.value[idx], batch.quality[idx], changes
        )
    return state, changes.result()


def tick(
    rules: RuleArrays, state: EvalState, now_ns: int
) -> tuple[EvalState, list[ConditionChange]]:
    """Let time pass to `now_ns` without samples: stale points, delays that mature."""
    _check(rules, state)
    last_t = state.i[:, _LAST_T]
    due = state.pending | (((now_ns - last_t) > rules.stale_after_ns) & ~state.raw[:, _STALE])
    due &= rules.known
    changes = _Changes()
    p = np.flatnonzero(due)
    if len(p):
        _advance(rules, state, p, np.full(len(p), now_ns, np.int64), changes)
    return state, changes.result()


def _check(rules: RuleArrays, state: EvalState) -> None:
    if len(state.pending) != rules.size:
        raise ValueError(
            f"state has {len(state.pending)} points, rules {rules.size}: rebuild the state"
        )


def _levels(point: npt.NDArray[np.int32]) -> list[slice | Index]:
    """Index arrays, each naming each point at most once, to apply one after the other."""
    n = len(point)
    if n == 0:
        return []
    if n == 1 or bool((point[1:] > point[:-1]).all()) or np.bincount(point).max() == 1:
        return [slice(None)]
    order = np.argsort(point, kind="stable")
    sp = point[order]
    first = np.empty(n, np.bool_)
    first[0] = True
    np.not_equal(sp[1:], sp[:-1], out=first[1:])
    if first.all():
        return [order.astype(np.intp)]
    starts = np.flatnonzero(first)
    rank = np.arange(n) - starts[np.cumsum(first) - 1]
    by_rank = order[np.argsort(rank, kind="stable")]
    return list(np.split(by_rank, np.cumsum(np.bincount(rank))[:-1]))


def _chunks(levels: list[slice | Index], n: int) -> list[slice | Index]:
    """Levels cut into blocks of _CHUNK rows: the temporaries of a block stay in the CPU cache
    (5 × the rows cost 7 × the time past about 20,000 rows on a small cache)."""
    out: list[slice | Index] = []
    for idx in levels:
        if isinstance(idx, slice):
            out += [slice(lo, min(lo + _CHUNK, n)) for lo in range(0, n, _CHUNK)]
        else:
            out += [idx[lo : lo + _CHUNK] for lo in range(0, len(idx), _CHUNK)]
    return out


def _advance(rules: RuleArrays, state: EvalState, p: Index, now: Ints, changes: _Changes) -> None:
    """Bring points `p` (distinct) to time `now` without a new sample."""
    raw = state.raw.take(p, axis=0)
    since = state.since.take(p, axis=0)
    last_t = state.i[:, _LAST_T].take(p)
    after = rules.stale_after_ns.take(p)
    newly = ((now - last_t) > after) & ~raw[:, _STALE]
    raw[:, _STALE] |= newly
    since[:, _STALE] = np.where(newly, last_t + after, since[:, _STALE])
    _mature(rules, state, p, raw, since, now, state.f[:, _LAST_V].take(p), changes)


def _mature(
    rules: RuleArrays,
    state: EvalState,
    p: Index,
    raw: Bools,
    since: Ints,
    now: Ints,
    value: Floats,
    changes: _Changes,
) -> None:
    """Delays that have run out by `now` make `active` follow `raw`; store the rows."""
    active = state.active.take(p, axis=0)
    delay = np.where(raw, rules.on_delay_ns.take(p, axis=0), rules.off_delay_ns.take(p, axis=0))
    ts = since + delay
    mature = (raw != active) & (ts <= now[:, None])
    if mature.any():
        active = np.where(mature, raw, active)
        changes.add(p, mature, active, ts, value, state.i[p, _FC_T], state.i[p, _FC_HH] == 1)
        state.active[p] = active
    state.raw[p] = raw
    state.since[p] = since
    state.pending[p] = (raw != active).any(axis=1)


def _apply(
    rules: RuleArrays,
    state: EvalState,
    point: npt.NDArray[np.int32],
    t: Ints,
    v: Floats,
    q: npt.NDArray[np.uint8],
    changes: _Changes,
) -> None:
    """One sample for each of the distinct points `point`."""
    p: Index = point.astype(np.intp)
    last_t = state.i[:, _LAST_T].take(p)
    fresh = t >= last_t
    if not fresh.all():
        p, t, v, q, last_t = p[fresh], t[fresh], v[fresh], q[fresh], last_t[fresh]
    # Time-driven changes up to this sample first: what a tick at `t` would have found.
    due = state.pending.take(p) | ((t - last_t) > rules.stale_after_ns.take(p))
    if due.any():
        _advance(rules, state, p[due], t[due], changes)

    f = state.f.take(p, axis=0)
    i = state.i.take(p, axis=0)
    raw_old = state.raw.take(p, axis=0)
    raw = raw_old.copy()
    good = (q == _GOOD) & np.isfinite(v)
    if good.all():
        raw[:] = _from_values(rules, p, t, v, f, i, raw)
    else:
        g = np.flatnonzero(good)
        fg, ig = f[g], i[g]
        raw[g] = _from_values(rules, p[g], t[g], v[g], fg, ig, raw[g])
        f[g], i[g] = fg, ig
    raw[:, _BAD] = ~good & (q != _QOOR) & rules.bad_quality.take(p)
    flagged = q == _QOOR
    if flagged.any():
        raw[flagged, _OOR] = ~np.isnan(rules.range_lo[p[flagged]])
    raw[:, _STALE] = False
    f[:, _LAST_V] = v
    i[:, _LAST_T] = t
    state.f[p] = f
    state.i[p] = i

    flip = raw != raw_old
    dirty = flip.any(axis=1) | state.pending.take(p)
    if dirty.any():
        k = np.flatnonzero(dirty)
        pk = p[k]
        since = np.where(flip[k], t[k, None], state.since.take(pk, axis=0))
        _mature(rules, state, pk, raw[k], since, t[k], v[k], changes)


def _from_values(
    rules: RuleArrays,
    p: Index,
    t: Ints,
    v: Floats,
    f: Floats,
    i: Ints,
    raw: Bools,
) -> Bools:
    """Raw value conditions for good samples; updates `raw` and the history rows `f`, `i` in
    place."""
    # Limits with deadband hysteresis: raised above the limit, cleared only below limit − db.
    set_level = rules.set_level.take(p, axis=0)
    clear_level = rules.clear_level.take(p, axis=0)
    neg = -v
    for k, sv in ((0, v), (1, v), (2, neg), (3, neg)):
        raw[:, k] = (raw[:, k] | (sv > set_level[:, k])) & ~(sv < clear_level[:, k])

    prev_v = f[:, _GOOD_V]
    has_prev = ~np.isnan(prev_v)
    dt = np.where(has_prev, (t - i[:, _GOOD_T]) * (1.0 / NS), 0.0)
    moved = dt > 0
    # Rate of change: exponentially weighted mean of the slopes between samples.
    decay = np.exp(-dt / rules.roc_tau_s.take(p))
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = (v - prev_v) / dt
        rate = np.where(moved, decay * f[:, _RATE] + (1.0 - decay) * slope, f[:, _RATE])
    f[:, _RATE] = rate
    raw[:, _ROC] = np.abs(rate) > rules.roc_limit.take(p)

    # Flat line: extend the run while max − min < ε, else restart it from the previous sample
    # (if close enough) or from this one.
    eps = rules.stuck_eps.take(p)
    lo = np.minimum(f[:, _RUN_LO], v)
    hi = np.maximum(f[:, _RUN_HI], v)
    within = (hi - lo) < eps
    near = np.abs(v - prev_v) < eps
    f[:, _RUN_LO] = np.where(within, lo, np.where(near, np.minimum(v, prev_v), v))
    f[:, _RUN_HI] = np.where(within, hi, np.where(near, np.maximum(v, prev_v), v))
    run_t = np.where(within, i[:, _RUN_T], np.where(near, i[:, _GOOD_T], t))
    i[:, _RUN_T] = run_t
    raw[:, _STUCK] = (t - run_t) >= rules.stuck_window_ns.take(p)

    raw[:, _OOR] = (v < rules.range_lo.take(p)) | (v > rules.range_hi.take(p))

    raw[:, _FC] = _forecast(rules, p, t, v, dt, f, i, set_level)

    f[:, _GOOD_V] = v
    i[:, _GOOD_T] = t
    return raw


def _forecast(
    rules: RuleArrays,
    p: Index,
    t: Ints,
    v: Floats,
    dt: Floats,
    f: Floats,
    i: Ints,
    set_level: Floats,
) -> Bools:
    """Exponentially weighted least-squares line through the good samples, time origin moved to
    this sample; raw when it reaches the next of H, HH within the horizon."""
    decay = np.exp(-dt / rules.forecast_tau_s.take(p))
    w, st, sv = f[:, _W], f[:, _ST], f[:, _SV]
    stt = f[:, _STT] - 2.0 * dt * st + dt * dt * w
    stv = f[:, _STV] - dt * sv
    st = st - dt * w
    w = decay * w + 1.0
    st = decay * st
    sv = decay * sv + v
    stt = decay * stt
    stv = decay * stv
    f[:, _W], f[:, _ST], f[:, _SV], f[:, _STT], f[:, _STV] = w, st, sv, stt, stv
    den = w * stt - st * st
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        slope = (w * stv - st * sv) / den
        level = (sv - slope * st) / w
        h, hh = set_level[:, _H], set_level[:, _HH]
        to_hh = ~(level < h)
        target = np.where(to_hh, hh, h)
        eta = (target - level) / slope
    ok = (w >= _MIN_FIT_WEIGHT) & (den > 1e-12 * w * w) & (slope > 0) & (level < target)
    raw: Bools = ok & (eta <= rules.forecast_horizon_s.take(p))
    i[:, _FC_T] = np.where(raw, t + np.where(raw, eta, 0.0) * NS, 0).astype(np.int64)
    i[:, _FC_HH] = to_hh
    return raw
