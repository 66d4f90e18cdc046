"""The pure, vectorised alarm evaluator: (rules, condition state, samples or a time) → (new
condition state, the conditions that changed). No I/O and no clock: time is an argument.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from alarms.model import N_CONDITIONS, Condition, ConditionChange
from alarms.rules import NEVER_NS, NS, RuleArrays
from streams.batch import SampleBatch
from streams.quality import DOUBTFUL, Quality

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
# path streams through memory; only the few (condition, point) pairs that flipped or have a delay
# running reach the on/off-delay step, which reads and writes just those. The rule kinds with
# history (rate of change, flat line, forecast) are computed only for blocks where some point has
# them and kept only for the points that have them: most points of a plant have limits and
# quality checks only.
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

_HH, _H, _L, _LL = Condition.HH, Condition.H, Condition.L, Condition.LL
_ROC, _BAD, _STALE = Condition.ROC, Condition.BAD_QUALITY, Condition.STALE
_STUCK, _OOR, _FC = Condition.STUCK, Condition.OUT_OF_RANGE, Condition.FORECAST
_GOOD = np.uint8(Quality.GOOD)
_QOOR = np.uint8(Quality.OUT_OF_RANGE)
_DOUBTFUL = np.array(sorted(DOUBTFUL), np.uint8)
_MIN_FIT_WEIGHT = 2.0  # a line through fewer than about two samples predicts nothing
# Rows per block: the temporaries of a block stay in the CPU cache (5 × the rows cost 7 × the
# time past about 20,000 rows on a small cache).
_CHUNK = 16384
_IN_PLACE_MIN = 1024  # below this a level gathers its rows: putting it in order costs more

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
_FC_T = 3  # predicted crossing time of the latest forecast that was raw
_FC_HH = 4  # 1 when that forecast targets HH, 0 for H
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


def restart_history(state: EvalState, point: int, gained: Bools) -> None:
    """Start afresh the history of the rule kinds a point's rule has just gained (`gained`: per
    condition). History is not kept for a kind while no rule of its block has it, so it may be
    old: the rate starts from 0, the flat line and the forecast fit from the next sample."""
    if gained[_ROC]:
        state.f[_RATE, point] = 0.0
    if gained[_STUCK]:
        state.f[_RUN_LO : _RUN_HI + 1, point] = np.nan
    if gained[_FC]:
        state.f[_W:, point] = 0.0


class _Columns:
    """RuleArrays in the evaluator's layout: limits condition-major ((2, n) each), like the
    state, and which points have each optional rule kind (see _Kinds). The last rules seen are
    kept (with a reference, so their id cannot be reused)."""

    last: tuple[RuleArrays, _Columns] | None = None

    def __init__(self, rules: RuleArrays) -> None:
        self.set_level = np.ascontiguousarray(rules.set_level.T)
        # Unsigned: raise above hi_set, clear below hi_clear; raise below lo_set, clear above.
        self.hi_set = self.set_level[:2]
        self.hi_clear = np.ascontiguousarray(rules.clear_level[:, :2].T)
        self.lo_set = np.ascontiguousarray(-rules.set_level[:, 2:].T)
        self.lo_clear = np.ascontiguousarray(-rules.clear_level[:, 2:].T)
        self.roc_k = -1.0 / rules.roc_tau_s  # decay = exp(k·dt)
        self.forecast_k = -1.0 / rules.forecast_tau_s
        self.roc = ~np.isnan(rules.roc_limit)
        self.stuck = rules.stuck_window_ns < NEVER_NS
        self.range = ~(np.isnan(rules.range_lo) & np.isnan(rules.range_hi))
        self.forecast = ~np.isnan(rules.forecast_horizon_s)
        self._kinds: dict[tuple[int, int], _Kinds] = {}

    def kinds(self, rows: Rows) -> _Kinds:
        """The rule kinds of a block; those of a block of a whole scan (a range of ids) are
        kept."""
        if not isinstance(rows, slice):
            return _Kinds(self, rows)
        key = (rows.start, rows.stop)
        kinds = self._kinds.get(key)
        if kinds is None:
            kinds = self._kinds[key] = _Kinds(self, rows)
        return kinds

    @classmethod
    def of(cls, rules: RuleArrays) -> _Columns:
        if cls.last is None or cls.last[0] is not rules:
            cls.last = (rules, cls(rules))
        return cls.last[1]


class _Changes:
    """Changes collected as columns while levels are applied."""

    def __init__(self) -> None:
        self.cols: list[tuple[Ints, Ints, Bools, Ints, Floats, Ints, Bools]] = []

    def add(
        self,
        points: Index,
        conds: Index,
        active: Bools,
        ts: Ints,
        value: Floats,
        fc_t: Ints,
        fc_hh: Bools,
    ) -> None:
        """One change per element: a point, its condition, the new `active` and its time."""
        if len(points):
            self.cols.append(
                (points.astype(np.int64), conds.astype(np.int64), active, ts, value, fc_t, fc_hh)
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
    changes = _Changes()
    scan = _Scan.repeated(rules, batch.point)
    if scan is None:
        batch = _usable(rules, batch)
        scan = _Scan.of(rules, batch.point)
    if scan is not None:
        # Every point of a range of ids once: take the samples in point order.
        rows, pos = scan
        t, v, q = batch.ts.take(pos), batch.value.take(pos), batch.quality.take(pos)
        _apply(rules, state, rows, t, v, q, changes)
        return state, changes.result()
    point = batch.point
    for idx in _levels(point):
        p: Index = point[idx].astype(np.intp)
        _apply(rules, state, p, batch.ts[idx], batch.value[idx], batch.quality[idx], changes)
    return state, changes.result()


def _usable(rules: RuleArrays, batch: SampleBatch) -> SampleBatch:
    """The samples of points that have a rule."""
    point = batch.point
    usable = point < rules.size
    usable &= point >= 0
    if not usable.all():
        batch = batch.take(usable)
        point = batch.point
    known = rules.known[point]
    if not known.all():
        batch = batch.take(known)
    return batch


class _Scan:
    """A batch that names every point of a range of ids once, all with a rule (a whole scan of
    the plant), is applied in place. The order that puts its samples in point order is kept for
    the next batch with the same points in the same order (the collectors' next poll), which
    then skips the checks."""

    last: tuple[RuleArrays, npt.NDArray[np.int32], slice, Index] | None = None

    @classmethod
    def repeated(
        cls, rules: RuleArrays, point: npt.NDArray[np.int32]
    ) -> tuple[slice, Index] | None:
        last = cls.last
        if last is not None and last[0] is rules and np.array_equal(last[1], point):
            return last[2], last[3]
        return None

    @classmethod
    def of(cls, rules: RuleArrays, point: npt.NDArray[np.int32]) -> tuple[slice, Index] | None:
        """For the points of a usable batch."""
        n = len(point)
        if n < _IN_PLACE_MIN:
            return None
        lo = int(point.min())
        if int(point.max()) - lo + 1 != n:
            return None
        at = point.astype(np.intp)
        at -= lo
        pos = np.full(n, -1, np.intp)
        pos[at] = np.arange(n)
        if pos.min() < 0:
            return None
        cls.last = (rules, point.copy(), slice(lo, lo + n), pos)
        return cls.last[2], pos


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
    """Index arrays, each naming each point at most once, to apply one after the other. Each
    names its points in id order, so the state rows they gather lie in memory order."""
    n = len(point)
    if n == 0:
        return []
    if n == 1 or bool((point[1:] > point[:-1]).all()):
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


def _rows(columns: npt.NDArray[Any], rows: Rows) -> npt.NDArray[Any]:
    """The rows' part of condition- or column-major arrays: a view of a range of ids (written
    through), a copy of gathered ids (`take` gathers these faster than fancy indexing)."""
    if isinstance(rows, slice):
        return columns[:, rows]
    return columns.take(rows, axis=1)


def _advance(rules: RuleArrays, state: EvalState, p: Index, now: Ints, changes: _Changes) -> None:
    """Bring points `p` (distinct) to time `now` without a new sample. A point whose latest
    sample reported a failure its bad-quality rule covers (COMM_FAIL: a collector retrying a
    dead device with backoff publishes less often than the stale period) has news, bad news:
    it raises the bad-quality alarm and not a second, stale alarm for the same cause."""
    last_t = state.i[_LAST_T, p]
    after = rules.stale_after_ns[p]
    raw = state.raw_by_condition
    newly = np.flatnonzero(((now - last_t) > after) & ~(raw[_STALE, p] | raw[_BAD, p]))
    if len(newly):
        k = p[newly]
        state.raw_by_condition[_STALE, k] = True
        state.since[_STALE, k] = last_t[newly] + after[newly]
    _mature(rules, state, p, now, state.f[_LAST_V, p], changes)


def _mature(
    rules: RuleArrays, state: EvalState, p: Index, now: Ints, value: Floats, changes: _Changes
) -> None:
    """Delays of points `p` (distinct; their raw and since stored) that have run out by `now`
    make `active` follow `raw`. Only the few (condition, point) pairs where they differ are
    gathered: one random read each from the point-major delay columns."""
    raw = _rows(state.raw_by_condition, p)
    c, r = np.nonzero(raw != _rows(state.active_by_condition, p))
    pts = p[r]
    to = raw[c, r]
    delay = np.where(to, rules.on_delay_ns[pts, c], rules.off_delay_ns[pts, c])
    ts = state.since[c, pts]
    ts += delay
    mature = ts <= now[r]
    state.pending[p] = False
    if not mature.all():
        state.pending[pts[~mature]] = True
        k = np.flatnonzero(mature)
        pts, c, r, to, ts = pts[k], c[k], r[k], to[k], ts[k]
    if len(pts):
        state.active_by_condition[c, pts] = to
        i = state.i
        changes.add(pts, c, to, ts, value[r], i[_FC_T, pts], i[_FC_HH, pts] == 1)


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
    gap = t - state.i[_LAST_T, rows]
    fresh = gap >= 0
    if not fresh.all():
        k = np.flatnonzero(fresh)
        rows, t, v, q, gap = _ids(rows, k), t[k], v[k], q[k], gap[k]
    # Time-driven changes up to this sample first: what a tick at `t` would have found.
    due = gap > rules.stale_after_ns[rows]
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
        c, r = np.nonzero(flip)
        state.raw_by_condition[c, pk[r]] = raw[c, r]
        state.since[c, pk[r]] = tk[r]
        _mature(rules, state, pk, tk, vk, changes)


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
    f = _rows(state.f, rows)
    i = _rows(state.i, rows)
    raw_old = _rows(state.raw_by_condition, rows)
    raw = raw_old.copy()
    good = q == _GOOD
    finite = np.isfinite(v)
    good &= finite
    bad = np.flatnonzero(~good)
    # A doubtful reading (streams.quality.DOUBTFUL: uncertain, or beyond the instrument range
    # as a saturated gas detector in a large leak) still counts against the limits, fail-safe:
    # it raises the limits it is past and clears none. Beyond the range only a measurement
    # counts, not a failure signal (rules.SIGNAL_FAILURE_PCT: a broken loop at 0 mA).
    qb = q[bad]
    doubtful = bad[np.isin(qb, _DOUBTFUL) & finite[bad]]
    if len(doubtful):
        at, vd = _ids(rows, doubtful), v[doubtful]
        measured = (q[doubtful] != _QOOR) | (
            (vd >= rules.reading_lo[at]) & (vd <= rules.reading_hi[at])
        )
        doubtful = doubtful[measured]
    if len(bad) < len(v) or len(doubtful):
        # Every row is evaluated; the rows with a bad sample (rare) then get their history and
        # raw conditions back.
        kinds = _Columns.of(rules).kinds(rows)
        kept = kinds.keep(f, i, good, bad)
        with np.errstate(all="ignore"):
            _from_values(rules, kinds, rows, t, v, f, i, raw)
        for f_cols, r, fk, i_cols, ik in kept:
            f[f_cols, r], i[i_cols, r] = fk, ik
        if len(bad):
            past = raw[_HH : _LL + 1, doubtful]
            raw[:, bad] = raw_old[:, bad]
            raw[_HH : _LL + 1, doubtful] |= past
    raw[_BAD] = False
    raw[_STALE] = False
    if len(bad):
        raw[_BAD, bad] = (qb != _QOOR) & rules.bad_quality[_ids(rows, bad)]
        flagged = bad[qb == _QOOR]
        if len(flagged):
            raw[_OOR, flagged] = ~np.isnan(rules.range_lo[_ids(rows, flagged)])
    f[_LAST_V] = v
    i[_LAST_T] = t
    if not isinstance(rows, slice):
        state.f[:, rows] = f
        state.i[:, rows] = i
    return raw, raw != raw_old


class _Kinds:
    """Which optional rule kinds the rows of a block have. A kind no row has is skipped; a kind
    some rows lack is evaluated for every row and the history columns of the others are put
    back, so a point keeps history only for the kinds of its rule whatever its block holds.
    Kept per block of a whole scan (`_Columns.kinds`)."""

    # Each kind's float and int history columns: contiguous ranges of the state.
    _COLUMNS = (
        ("roc", slice(_RATE, _RATE + 1), slice(0, 0)),
        ("stuck", slice(_RUN_LO, _RUN_HI + 1), slice(_RUN_T, _RUN_T + 1)),
        ("forecast", slice(_W, _STV + 1), slice(_FC_T, _FC_HH + 1)),
    )

    def __init__(self, cols: _Columns, rows: Rows) -> None:
        self.range = bool(cols.range[rows].any())
        self.roc = self.stuck = self.forecast = False
        # (the points among rows that lack the kind, its float and int history columns)
        self.lacking: list[tuple[Bools, slice, slice]] = []
        for kind, f_cols, i_cols in self._COLUMNS:
            has: Bools = getattr(cols, kind)[rows]
            if has.any():
                setattr(self, kind, True)
                if not has.all():
                    self.lacking.append((~has, f_cols, i_cols))

    def keep(
        self, f: Floats, i: Ints, good: Bools, bad: Index
    ) -> list[tuple[slice, Index, Floats, slice, Ints]]:
        """The history that rows with a bad sample (all of it) or without a kind (that kind's)
        must keep."""
        out = []
        if len(bad):
            every = slice(None)
            out.append((every, bad, f[:, bad], every, i[:, bad]))
        for lacks, f_cols, i_cols in self.lacking:
            r = np.flatnonzero(lacks & good)
            if len(r):
                out.append((f_cols, r, f[f_cols, r], i_cols, i[i_cols, r]))
        return out


def _from_values(
    rules: RuleArrays,
    kinds: _Kinds,
    rows: Rows,
    t: Ints,
    v: Floats,
    f: Floats,
    i: Ints,
    raw: Bools,
) -> None:
    """Raw value conditions for good samples; updates `raw` and the history columns `f`, `i` in
    place. A rule kind no row of the block has is skipped: its raw stays False and its history
    is not kept (`restart_history` starts it afresh when a rule gains the kind)."""
    cols = _Columns.of(rules)
    # Limits with deadband hysteresis: raised above the limit, cleared only below limit − db.
    hi, lo = raw[_HH : _H + 1], raw[_L : _LL + 1]
    hi |= v > _rows(cols.hi_set, rows)
    np.greater(hi, v < _rows(cols.hi_clear, rows), out=hi)  # and not below the clear level
    lo |= v < _rows(cols.lo_set, rows)
    np.greater(lo, v > _rows(cols.lo_clear, rows), out=lo)

    prev_v = f[_GOOD_V]
    roc, fc = kinds.roc, kinds.forecast
    if roc or fc:
        dt = np.multiply(t - i[_GOOD_T], 1.0 / NS)
        first = np.isnan(prev_v)
        if first.any():
            dt[first] = 0.0
    if roc:
        _rate(rules, rows, v, prev_v, dt, f, raw)
    if kinds.stuck:
        _flat_line(rules, rows, t, v, prev_v, f, i, raw)
    if kinds.range:
        raw[_OOR] = (v < rules.range_lo[rows]) | (v > rules.range_hi[rows])
    if fc:
        raw[_FC] = _forecast(rules, rows, t, v, dt, f, i, _rows(cols.set_level, rows))
    f[_GOOD_V] = v
    i[_GOOD_T] = t


def _rate(
    rules: RuleArrays, rows: Rows, v: Floats, prev_v: Floats, dt: Floats, f: Floats, raw: Bools
) -> None:
    """Rate of change: exponentially weighted mean of the slopes between samples,
    rate ← slope + decay·(rate − slope)."""
    decay = np.multiply(dt, _Columns.of(rules).roc_k[rows])
    np.exp(decay, out=decay)
    moved = dt > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.subtract(v, prev_v)
        slope /= dt
        rate = f[_RATE] - slope
        rate *= decay
        if moved.all():
            rate = np.add(rate, slope, out=f[_RATE])
        else:
            rate += slope
            np.copyto(f[_RATE], rate, where=moved)
    raw[_ROC] = np.abs(rate) > rules.roc_limit[rows]


def _flat_line(
    rules: RuleArrays,
    rows: Rows,
    t: Ints,
    v: Floats,
    prev_v: Floats,
    f: Floats,
    i: Ints,
    raw: Bools,
) -> None:
    """Flat line: extend the run while max − min < ε, else restart it from the previous sample
    (if close enough) or from this one. The run's columns are updated in place."""
    eps = rules.stuck_eps[rows]
    lo, hi, run_t = f[_RUN_LO], f[_RUN_HI], i[_RUN_T]
    np.minimum(lo, v, out=lo)
    np.maximum(hi, v, out=hi)
    restart = np.subtract(hi, lo)
    restart = ~(restart < eps)
    if restart.any():
        near = np.subtract(v, prev_v)
        np.abs(near, out=near)
        near = near < eps
        start = np.where(near, prev_v, v)
        np.minimum(v, start, out=lo, where=restart)
        np.maximum(v, start, out=hi, where=restart)
        np.copyto(run_t, np.where(near, i[_GOOD_T], t), where=restart)
    raw[_STUCK] = (t - run_t) >= rules.stuck_window_ns[rows]


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
    decay = np.multiply(dt, _Columns.of(rules).forecast_k[rows])
    np.exp(decay, out=decay)
    w, st, sv, stt, stv = f[_W], f[_ST], f[_SV], f[_STT], f[_STV]  # updated in place
    # Time origin moved by dt: stt += dt·(dt·w − 2·st), stv −= dt·sv, st −= dt·w.
    dtw = dt * w
    tmp = np.multiply(st, 2.0)
    np.subtract(dtw, tmp, out=tmp)
    tmp *= dt
    stt += tmp
    np.multiply(dt, sv, out=tmp)
    stv -= tmp
    st -= dtw
    # Older samples weigh less by the decay; this one weighs 1.
    w *= decay
    w += 1.0
    st *= decay
    sv *= decay
    sv += v
    stt *= decay
    stv *= decay
    den = w * stt - st * st
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        slope = (w * stv - st * sv) / den
        level = (sv - slope * st) / w
        h, hh = set_level[_H], set_level[_HH]
        to_hh = level >= h
        target = np.where(to_hh, hh, h)
        eta = (target - level) / slope
    ok = (w >= _MIN_FIT_WEIGHT) & (den > 1e-12 * w * w) & (slope > 0) & (level < target)
    raw: Bools = ok & (eta <= rules.forecast_horizon_s[rows])
    # The prediction is reported only while the forecast is raw: kept for those rows alone.
    k = np.flatnonzero(raw)
    if len(k):
        i[_FC_T, k] = (t[k] + eta[k] * NS).astype(np.int64)
        i[_FC_HH, k] = to_hh[k]
    return raw
