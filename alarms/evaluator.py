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
# applied one after the other, each vectorised across its points. A level that names every point
# of a range of ids (a whole scan of the plant) is applied in place on that range of the state
# arrays: its samples are put in point order once, and no state column is gathered or
# scattered back. Other levels gather the rows they touch.
#
# The state is column-major (one contiguous row per condition or history column) so the in-place
# path streams through memory; only the few points whose conditions flipped or have a delay
# running reach the on/off-delay step, which gathers their rows.
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
Rows = slice | Index  # state columns: a range of point ids applied in place, or gathered ids

_HH, _H = Condition.HH, Condition.H
_ROC, _BAD, _STALE = Condition.ROC, Condition.BAD_QUALITY, Condition.STALE
_STUCK, _OOR, _FC = Condition.STUCK, Condition.OUT_OF_RANGE, Condition.FORECAST
_GOOD = np.uint8(Quality.GOOD)
_QOOR = np.uint8(Quality.OUT_OF_RANGE)
_MIN_FIT_WEIGHT = 2.0  # a line through fewer than about two samples predicts nothing
# Rows per block: the temporaries of a block stay in the CPU cache (5 × the rows cost 7 × the
# time past about 20,000 rows on a small cache).
_CHUNK = 16384
_IN_PLACE_MIN = 1024  # below this a level gathers its rows: putting it in order costs more
_SIGN = np.array([1.0, 1.0, -1.0, -1.0])[:, None]  # HH, H, L, LL as in RuleArrays.set_level

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
    """Condition state per condition × point and per-point history, column-major.

    `raw` and `active` are point × condition views of the stored condition × point arrays
    (`state.active[point, condition]` reads and writes). `evaluate` and `tick` take the state
    over: they update these arrays and return the state; keep `state.copy()` to hold on to an
    earlier one.
    """

    raw_by_condition: Bools  # (C, n) the violation as the samples show it
    active_by_condition: Bools  # (C, n) after on/off delays
    since: Ints  # (C, n) when `raw` took its present value
    pending: Bools  # (n,) any(raw != active): a delay is running
    f: Floats  # (_N_FLOAT, n)
    i: Ints  # (_N_INT, n)

    @property
    def raw(self) -> Bools:
        """(n, C) view."""
        return self.raw_by_condition.T

    @property
    def active(self) -> Bools:
        """(n, C) view."""
        return self.active_by_condition.T

    @classmethod
    def initial(cls, rules: RuleArrays, start_ns: int) -> EvalState:
        """Nothing active; every point counts as last heard at `start_ns` (for stale)."""
        n, c = rules.size, N_CONDITIONS
        f = np.full((_N_FLOAT, n), np.nan)
        f[_RATE] = 0.0
        f[_W:] = 0.0
        i = np.zeros((_N_INT, n), np.int64)
        i[_LAST_T] = start_ns
        return cls(
            raw_by_condition=np.zeros((c, n), np.bool_),
            active_by_condition=np.zeros((c, n), np.bool_),
            since=np.full((c, n), start_ns, np.int64),
            pending=np.zeros(n, np.bool_),
            f=f,
            i=i,
        )

    def copy(self) -> EvalState:
        return replace(self, **{f.name: getattr(self, f.name).copy() for f in fields(self)})

    def active_conditions(self, point: int) -> list[Condition]:
        return [Condition(int(c)) for c in np.flatnonzero(self.active_by_condition[:, point])]


class _Levels:
    """The sign-normalised limits of RuleArrays, condition-major (4, n) for the in-place path.
    The last rules seen are kept (with a reference, so their id cannot be reused)."""

    last: tuple[RuleArrays, Floats, Floats] | None = None

    @classmethod
    def of(cls, rules: RuleArrays) -> tuple[Floats, Floats]:
        if cls.last is None or cls.last[0] is not rules:
            cls.last = (
                rules,
                np.ascontiguousarray(rules.set_level.T),
                np.ascontiguousarray(rules.clear_level.T),
            )
        return cls.last[1], cls.last[2]


class _Changes:
    """Changes collected as columns while levels are applied."""

    def __init__(self) -> None:
        self.cols: list[tuple[Ints, Ints, Bools, Ints, Floats, Ints, Bools]] = []

    def add(
        self,
        points: Index,
        mature: Bools,
        active: Bools,
        ts: Ints,
        value: Floats,
        fc_t: Ints,
        fc_hh: Bools,
    ) -> None:
        """`mature`, `active`, `ts` are condition × row; the rest per row."""
        conds, rows = np.nonzero(mature)
        if len(rows):
            self.cols.append(
                (
                    points[rows].astype(np.int64),
                    conds.astype(np.int64),
                    active[conds, rows],
                    ts[conds, rows],
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
    n = len(point)
    if n >= _IN_PLACE_MIN:
        lo = int(point.min())
        if int(point.max()) - lo + 1 == n:
            at = point.astype(np.intp)
            at -= lo
            pos = np.full(n, -1, np.intp)
            pos[at] = np.arange(n)
            if pos.min() >= 0:
                # Every point of [lo, lo + n) once: take the samples in point order.
                t, v, q = batch.ts.take(pos), batch.value.take(pos), batch.quality.take(pos)
                _apply(rules, state, slice(lo, lo + n), t, v, q, changes)
                return state, changes.result()
    for idx in _levels(point):
        p: Index = point[idx].astype(np.intp)
        _apply(rules, state, p, batch.ts[idx], batch.value[idx], batch.quality[idx], changes)
    return state, changes.result()


def tick(
    rules: RuleArrays, state: EvalState, now_ns: int
) -> tuple[EvalState, list[ConditionChange]]:
    """Let time pass to `now_ns` without samples: stale points, delays that mature."""
    _check(rules, state)
    due = np.subtract(now_ns, state.i[_LAST_T])
    due = np.greater(due, rules.stale_after_ns)
    due = np.greater(due, state.raw_by_condition[_STALE], out=due)  # and not already stale
    due |= state.pending
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


def _ids(rows: Rows, k: Index) -> Index:
    """Point ids of the rows `k` of a block."""
    if isinstance(rows, slice):
        start: int = rows.start
        return k + start
    return rows[k]


def _advance(rules: RuleArrays, state: EvalState, p: Index, now: Ints, changes: _Changes) -> None:
    """Bring points `p` (distinct) to time `now` without a new sample."""
    raw = state.raw_by_condition[:, p]
    since = state.since[:, p]
    last_t = state.i[_LAST_T, p]
    after = rules.stale_after_ns[p]
    newly = ((now - last_t) > after) & ~raw[_STALE]
    raw[_STALE] |= newly
    since[_STALE] = np.where(newly, last_t + after, since[_STALE])
    _mature(rules, state, p, raw, since, now, state.f[_LAST_V, p], changes)


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
    """Delays that have run out by `now` make `active` follow `raw`; store the rows (condition ×
    row arrays `raw`, `since`)."""
    active = state.active_by_condition[:, p]
    delay = np.where(raw, rules.on_delay_ns[p].T, rules.off_delay_ns[p].T)
    ts = since + delay
    mature = (raw != active) & (ts <= now)
    if mature.any():
        active = np.where(mature, raw, active)
        i = state.i
        changes.add(p, mature, active, ts, value, i[_FC_T, p], i[_FC_HH, p] == 1)
        state.active_by_condition[:, p] = active
    state.raw_by_condition[:, p] = raw
    state.since[:, p] = since
    state.pending[p] = (raw != active).any(axis=0)


def _apply(
    rules: RuleArrays,
    state: EvalState,
    rows: Rows,
    t: Ints,
    v: Floats,
    q: npt.NDArray[np.uint8],
    changes: _Changes,
) -> None:
    """One sample for each of the distinct points `rows`, in blocks of _CHUNK rows; the delays
    of the whole level are handled at once."""
    last_t = state.i[_LAST_T, rows]
    fresh = t >= last_t
    if not fresh.all():
        k = np.flatnonzero(fresh)
        rows, t, v, q, last_t = _ids(rows, k), t[k], v[k], q[k], last_t[k]
    # Time-driven changes up to this sample first: what a tick at `t` would have found.
    due = (t - last_t) > rules.stale_after_ns[rows]
    due |= state.pending[rows]
    if due.any():
        k = np.flatnonzero(due)
        _advance(rules, state, _ids(rows, k), t[k], changes)

    dirty: list[tuple[Index, Bools, Bools, Ints, Floats]] = []
    for a in range(0, len(t), _CHUNK):
        b = min(a + _CHUNK, len(t))
        block = slice(rows.start + a, rows.start + b) if isinstance(rows, slice) else rows[a:b]
        tb, vb = t[a:b], v[a:b]
        raw, flip = _sample(rules, state, block, tb, vb, q[a:b])
        k = np.flatnonzero(flip.any(axis=0) | state.pending[block])
        if len(k):
            dirty.append((_ids(block, k), raw[:, k], flip[:, k], tb[k], vb[k]))
    if dirty:
        pk, raw, flip, tk, vk = (np.concatenate(x, axis=-1) for x in zip(*dirty, strict=True))
        since = np.where(flip, tk, state.since[:, pk])
        _mature(rules, state, pk, raw, since, tk, vk, changes)


def _sample(
    rules: RuleArrays,
    state: EvalState,
    rows: Rows,
    t: Ints,
    v: Floats,
    q: npt.NDArray[np.uint8],
) -> tuple[Bools, Bools]:
    """The new raw conditions of `rows` and where they flipped; stores the history. A slice of
    rows is updated in place through views of the state columns; gathered rows are written
    back."""
    f = state.f[:, rows]
    i = state.i[:, rows]
    raw_old = state.raw_by_condition[:, rows]
    raw = raw_old.copy()
    good = q == _GOOD
    good &= np.isfinite(v)
    bad = np.flatnonzero(~good)
    if len(bad) == len(v):
        pass
    elif len(bad):
        # Rare: evaluate every row, then put the history of the others back.
        keep_f, keep_i = f[:, bad], i[:, bad]
        with np.errstate(all="ignore"):
            _from_values(rules, rows, t, v, f, i, raw)
        f[:, bad], i[:, bad], raw[:, bad] = keep_f, keep_i, raw_old[:, bad]
    else:
        _from_values(rules, rows, t, v, f, i, raw)
    raw[_BAD] = ~good & (q != _QOOR) & rules.bad_quality[rows]
    flagged = np.flatnonzero(q == _QOOR)
    if len(flagged):
        raw[_OOR, flagged] = ~np.isnan(rules.range_lo[_ids(rows, flagged)])
    raw[_STALE] = False
    f[_LAST_V] = v
    i[_LAST_T] = t
    if not isinstance(rows, slice):
        state.f[:, rows] = f
        state.i[:, rows] = i
    return raw, raw != raw_old


def _from_values(
    rules: RuleArrays,
    rows: Rows,
    t: Ints,
    v: Floats,
    f: Floats,
    i: Ints,
    raw: Bools,
) -> None:
    """Raw value conditions for good samples; updates `raw` and the history columns `f`, `i` in
    place."""
    # Limits with deadband hysteresis: raised above the limit, cleared only below limit − db.
    set_levels, clear_levels = _Levels.of(rules)
    set_level = set_levels[:, rows]
    sv = v * _SIGN
    lim = raw[:4]
    lim |= sv > set_level
    np.greater(lim, sv < clear_levels[:, rows], out=lim)  # and not below the clear level

    prev_v = f[_GOOD_V]
    dt = np.multiply(t - i[_GOOD_T], 1.0 / NS)
    first = np.isnan(prev_v)
    if first.any():
        dt[first] = 0.0
    moved = dt > 0
    # Rate of change: exponentially weighted mean of the slopes between samples.
    decay = np.exp(-dt / rules.roc_tau_s[rows])
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.subtract(v, prev_v)
        slope /= dt
        slope *= 1.0 - decay
        rate = decay * f[_RATE]
        rate += slope
    if moved.all():
        f[_RATE] = rate
    else:
        np.copyto(f[_RATE], rate, where=moved)
    raw[_ROC] = np.abs(rate) > rules.roc_limit[rows]

    # Flat line: extend the run while max − min < ε, else restart it from the previous sample
    # (if close enough) or from this one.
    eps = rules.stuck_eps[rows]
    lo = np.minimum(f[_RUN_LO], v)
    hi = np.maximum(f[_RUN_HI], v)
    within = (hi - lo) < eps
    near = np.abs(v - prev_v) < eps
    f[_RUN_LO] = np.where(within, lo, np.where(near, np.minimum(v, prev_v), v))
    f[_RUN_HI] = np.where(within, hi, np.where(near, np.maximum(v, prev_v), v))
    run_t = np.where(within, i[_RUN_T], np.where(near, i[_GOOD_T], t))
    i[_RUN_T] = run_t
    raw[_STUCK] = (t - run_t) >= rules.stuck_window_ns[rows]

    raw[_OOR] = (v < rules.range_lo[rows]) | (v > rules.range_hi[rows])

    raw[_FC] = _forecast(rules, rows, t, v, dt, f, i, set_level)

    f[_GOOD_V] = v
    i[_GOOD_T] = t


def _forecast(
    rules: RuleArrays,
    rows: Rows,
    t: Ints,
    v: Floats,
    dt: Floats,
    f: Floats,
    i: Ints,
    set_level: Floats,
) -> Bools:
    """Exponentially weighted least-squares line through the good samples, time origin moved to
    this sample; raw when it reaches the next of H, HH within the horizon."""
    decay = np.exp(-dt / rules.forecast_tau_s[rows])
    w, st, sv = f[_W], f[_ST], f[_SV]
    stt = f[_STT] - 2.0 * dt * st + dt * dt * w
    stv = f[_STV] - dt * sv
    st = st - dt * w
    w = decay * w + 1.0
    st = decay * st
    sv = decay * sv + v
    stt = decay * stt
    stv = decay * stv
    f[_W], f[_ST], f[_SV], f[_STT], f[_STV] = w, st, sv, stt, stv
    den = w * stt - st * st
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        slope = (w * stv - st * sv) / den
        level = (sv - slope * st) / w
        h, hh = set_level[_H], set_level[_HH]
        to_hh = ~(level < h)
        target = np.where(to_hh, hh, h)
        eta = (target - level) / slope
    ok = (w >= _MIN_FIT_WEIGHT) & (den > 1e-12 * w * w) & (slope > 0) & (level < target)
    raw: Bools = ok & (eta <= rules.forecast_horizon_s[rows])
    i[_FC_T] = 0
    k = np.flatnonzero(raw)
    if len(k):
        i[_FC_T, k] = (t[k] + eta[k] * NS).astype(np.int64)
    i[_FC_HH] = to_hh
    return raw
