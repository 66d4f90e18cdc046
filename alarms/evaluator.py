"""The pure alarm evaluator: (rules, condition state, a batch of samples or a time) → (new
condition state, the conditions that changed). No I/O and no clock: time is an argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

from alarms.model import N_CONDITIONS, Condition, ConditionChange
from alarms.rules import NEVER_NS, NS, PointRule, RuleArrays
from streams.batch import SampleBatch
from streams.quality import Quality

# Every condition of every point follows one state machine. A *raw* violation is decided from the
# samples (limits with deadband hysteresis, rate of change, quality, range, flat line, forecast) or
# from time (stale); it becomes *active* after it has persisted `on_delay` and clears after it has
# been absent `off_delay` (bad quality's T is its on-delay). A change's timestamp is the moment it
# matured (`since + delay`), so it does not depend on when a later sample or tick discovered it:
# the result is the same whether a series arrives in one batch, in many, or interleaved with ticks.
#
# The work is done by two compiled kernels (numba), one call per batch or tick: `_samples` takes
# a batch's samples one after the other, `_tick` every point. A sample is decided from its
# point's rule row and state in one go, with no temporary array: numpy would need a pass over
# whole arrays for every step of every rule kind. The samples of one point are taken in the
# batch's order, which is their time order. A large batch is taken in point order (a stable
# sort, kept for the next batch with the same points, as a collector's next poll), so that the
# state and rule rows are read in memory order.
#
# State (EvalState): per point the raw conditions as a bit mask (2 B), `active` and `since` per
# condition (10 B + 80 B, point-major: read only when a condition changes), 10 float64 and
# 5 int64 history columns (120 B, column-major: a sample reads and writes the few it needs) and
# a flag: 213 B, so 21 MB for 100,000 points. Rate of change and forecast use exponentially
# weighted running aggregates (O(1) per point, no sample ring: a one-hour window at 1 Hz would
# otherwise cost 3,600 samples per point); the flat-line detector keeps the current run's min,
# max and start. History is kept only for the rule kinds a point's rule has (`restart_history`
# starts a kind afresh when a rule gains it).

Bools = npt.NDArray[np.bool_]
Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Index = npt.NDArray[np.intp]

# Condition numbers as plain ints (the kernels' constants).
_HH, _H, _ROC = int(Condition.HH), int(Condition.H), int(Condition.ROC)
_BAD, _STALE, _STUCK = int(Condition.BAD_QUALITY), int(Condition.STALE), int(Condition.STUCK)
_OOR, _FC = int(Condition.OUT_OF_RANGE), int(Condition.FORECAST)
_C = N_CONDITIONS
_GOOD = int(Quality.GOOD)
_UNCERTAIN = int(Quality.UNCERTAIN)  # streams.quality.DOUBTFUL: UNCERTAIN and OUT_OF_RANGE
_QOOR = int(Quality.OUT_OF_RANGE)
_MIN_FIT_WEIGHT = 2.0  # a line through fewer than about two samples predicts nothing
_SORTED_MIN = 1024  # a batch of fewer samples is taken in its own order: sorting costs more

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
    """Condition state per point × condition (`state.active[point, condition]`; `raw` is a
    bit mask per point, read with `raw_of`), and the points' history columns. `evaluate` and
    `tick` take the state over: they update these arrays and return the state; keep
    `state.copy()` to hold on to an earlier one.
    """

    raw: npt.NDArray[np.uint16]  # (n,) bit c: condition c is violated as the samples show it
    active: Bools  # (n, C) after on/off delays
    since: Ints  # (n, C) when `raw` took its present value
    pending: Bools  # (n,) any(raw != active): a delay is running
    f: Floats  # (_N_FLOAT, n)
    i: Ints  # (_N_INT, n)

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
            raw=np.zeros(n, np.uint16),
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

    def raw_of(self, points: int | Sequence[int] | Index, condition: Condition) -> Bools:
        """Whether each of `points` violates `condition` as its samples show it."""
        return np.asarray(self.raw[points] >> condition & 1, np.bool_)

    def seed(self, point: int, condition: Condition, on: bool) -> None:
        """Make a condition raw and active (a restored alarm's), or neither (a rule that has
        lost it)."""
        bit = np.uint16(1 << condition)
        self.raw[point] = self.raw[point] | bit if on else self.raw[point] & ~bit
        self.active[point, condition] = on


def restart_history(state: EvalState, point: int, gained: Bools) -> None:
    """Start afresh the history of the rule kinds a point's rule has just gained (`gained`: per
    condition). History is not kept for a kind the rule lacks, so it may be old: the rate starts
    from 0, the flat line and the forecast fit from the next sample."""
    if gained[_ROC]:
        state.f[_RATE, point] = 0.0
    if gained[_STUCK]:
        state.f[_RUN_LO : _RUN_HI + 1, point] = np.nan
    if gained[_FC]:
        state.f[_W:, point] = 0.0


def evaluate(
    rules: RuleArrays, state: EvalState, batch: SampleBatch
) -> tuple[EvalState, list[ConditionChange]]:
    """Apply a batch of samples (per point in time order; older than the point's latest are
    ignored, as are points without a rule)."""
    _check(rules, state)
    # A large batch is taken in point order; the kernel is compiled for contiguous columns.
    order = _Order.of(batch.point)
    columns: tuple[npt.NDArray[Any], ...] = (batch.point, batch.ts, batch.value, batch.quality)
    if order is None:
        columns = tuple(np.ascontiguousarray(c) for c in columns)
    else:
        columns = tuple(c.take(order) for c in columns)
    n = len(batch)
    out = _Changes(n)
    k = 0
    while k < n:
        k, out.n = _samples(
            k, *columns, *_rule_columns(rules), *_state_columns(state), *out.columns()
        )
        if k < n:
            out.grow()
    return state, out.result()


def tick(
    rules: RuleArrays, state: EvalState, now_ns: int
) -> tuple[EvalState, list[ConditionChange]]:
    """Let time pass to `now_ns` without samples: stale points, delays that mature."""
    _check(rules, state)
    out = _Changes(64)
    p = 0
    while p < rules.size:
        p, out.n = _tick(
            p, now_ns, _Kinds.of(rules), rules.stale_after_ns, rules.on_delay_ns,
            rules.off_delay_ns, *_state_columns(state), *out.columns(),
        )  # fmt: skip
        if p < rules.size:
            out.grow()
    return state, out.result()


def warm_up() -> None:
    """Compile the kernels, or load them from the cache, on a one-point example: a server
    calls it (in a thread) before the first batch, which would otherwise wait for it (about
    2 s the first time after an install)."""
    rules = RuleArrays.build([PointRule(point=0, hh=1.0)])
    state = EvalState.initial(rules, 0)
    evaluate(rules, state, SampleBatch.of([1], [0], [2.0], Quality.GOOD))
    tick(rules, state, 2)


def _check(rules: RuleArrays, state: EvalState) -> None:
    if len(state.pending) != rules.size:
        raise ValueError(
            f"state has {len(state.pending)} points, rules {rules.size}: rebuild the state"
        )


def _rule_columns(r: RuleArrays) -> tuple[npt.NDArray[Any], ...]:
    """The kernels' rule arguments, in their order."""
    return (
        _Kinds.of(r),
        r.set_level,
        r.clear_level,
        r.on_delay_ns,
        r.off_delay_ns,
        r.roc_limit,
        r.roc_tau_s,
        r.bad_quality,
        r.stale_after_ns,
        r.stuck_eps,
        r.stuck_window_ns,
        r.range_lo,
        r.range_hi,
        r.reading_lo,
        r.reading_hi,
        r.forecast_tau_s,
        r.forecast_horizon_s,
    )


def _state_columns(s: EvalState) -> tuple[npt.NDArray[Any], ...]:
    """The kernels' state arguments, in their order."""
    return (s.raw, s.active, s.since, s.pending, s.f, s.i)


# Bits of a point's rule kinds (_Kinds): a sample reads the columns of the kinds its rule has.
_KNOWN, _K_ROC, _K_STUCK, _K_RANGE, _K_FC = 1, 2, 4, 8, 16


class _Kinds:
    """Per point the bits of the rule kinds it has (0: no rule). Those of the last rules seen
    are kept (with a reference to them, so their id cannot be reused)."""

    last: tuple[RuleArrays, npt.NDArray[np.uint8]] | None = None

    @classmethod
    def of(cls, r: RuleArrays) -> npt.NDArray[np.uint8]:
        if cls.last is None or cls.last[0] is not r:
            kinds = np.where(r.known, _KNOWN, 0).astype(np.uint8)
            kinds[~np.isnan(r.roc_limit)] |= _K_ROC
            kinds[r.stuck_window_ns < NEVER_NS] |= _K_STUCK
            kinds[~(np.isnan(r.range_lo) & np.isnan(r.range_hi))] |= _K_RANGE
            kinds[~np.isnan(r.forecast_horizon_s)] |= _K_FC
            kinds[~r.known] = 0
            cls.last = (r, kinds)
        return cls.last[1]


class _Order:
    """The order a batch's samples are taken in: a large batch in point order (stable, so each
    point's samples keep their time order), the last one kept for the next batch with the same
    points in the same order (the collectors' next poll)."""

    last: tuple[npt.NDArray[np.int32], Index] | None = None

    @classmethod
    def of(cls, point: npt.NDArray[np.int32]) -> Index | None:
        n = len(point)
        if n < _SORTED_MIN or bool((point[1:] >= point[:-1]).all()):
            return None
        last = cls.last
        if last is not None and np.array_equal(last[0], point):
            return last[1]
        order = np.argsort(point, kind="stable").astype(np.intp)
        cls.last = (point.copy(), order)
        return order


class _Changes:
    """The kernels' output columns: one change per row, `n` of them written."""

    def __init__(self, capacity: int) -> None:
        capacity = max(capacity, 4 * _C)
        self.n = 0
        self.p = np.empty(capacity, np.int64)
        self.c = np.empty(capacity, np.int64)
        self.active = np.empty(capacity, np.bool_)
        self.ts = np.empty(capacity, np.int64)
        self.value = np.empty(capacity, np.float64)
        self.fc_t = np.empty(capacity, np.int64)
        self.fc_hh = np.empty(capacity, np.bool_)

    def columns(self) -> tuple[Any, ...]:
        return (self.n, self.p, self.c, self.active, self.ts, self.value, self.fc_t, self.fc_hh)

    def grow(self) -> None:
        """Twice the room, for a kernel that stopped when it ran out (it resumes where it
        stopped)."""
        for name in ("p", "c", "active", "ts", "value", "fc_t", "fc_hh"):
            old = getattr(self, name)
            new = np.empty(2 * len(old), old.dtype)
            new[: self.n] = old[: self.n]
            setattr(self, name, new)

    def result(self) -> list[ConditionChange]:
        n = self.n
        if not n:
            return []
        p, c, ts = self.p[:n], self.c[:n], self.ts[:n]
        out = []
        for k in np.lexsort((c, p, ts)).tolist():
            cond = Condition(int(c[k]))
            active = bool(self.active[k])
            detail: dict[str, Any] = {}
            if cond == _FC and active:
                limit = "HH" if self.fc_hh[k] else "H"
                detail = {"limit": limit, "predicted_ns": int(self.fc_t[k])}
            out.append(
                ConditionChange(int(p[k]), cond, active, int(ts[k]), float(self.value[k]), detail)
            )
        return out


# -- the kernels --------------------------------------------------------------------------------
# Compiled with numpy's error model (a division by zero gives inf or NaN, as in numpy) and cached
# on disk beside the module. The rule columns (`kinds` … `fc_horizon`) and the state columns
# (`raw` … `i`) are passed in the order of _rule_columns and _state_columns (`_tick` takes the
# few rule columns it needs), the output columns (`n` … `o_hh`) in that of _Changes.columns. A
# kernel returns where it stopped and how many changes it wrote: it stops early when the output
# could not hold a further point's changes, and is called again with more room.
# The helpers a sample always goes through take and return scalars: an array passed to a
# compiled function costs two atomic reference counts per call, more than a limit comparison.

_jit = numba.njit(cache=True, error_model="numpy", nogil=True)


@_jit
def _samples(  # type: ignore[no-untyped-def]
    k, point, ts, value, quality,
    kinds, set_level, clear_level, on_delay, off_delay, roc_limit, roc_tau, bad_quality,
    stale_after, stuck_eps, stuck_window, range_lo, range_hi, reading_lo, reading_hi,
    fc_tau, fc_horizon,
    raw, active, since, pending, f, i,
    n, o_p, o_c, o_a, o_ts, o_v, o_t, o_hh,
):  # fmt: skip
    """Samples `k…` of a batch, each in turn."""
    room = len(o_p) - 2 * _C  # a sample makes at most C changes by time and C by its value
    size = len(kinds)
    while k < len(point):
        if n > room:
            return k, n
        p, t, v, q = point[k], ts[k], value[k], quality[k]
        k += 1
        if p < 0 or p >= size:
            continue
        kind = kinds[p]
        if not kind:
            continue
        gap = t - i[_LAST_T, p]
        if gap < 0:
            continue  # older than the point's latest
        # Time-driven changes up to this sample first: what a tick at `t` would have found.
        if gap > stale_after[p] or pending[p]:
            n = _advance(
                p, t, stale_after, on_delay, off_delay,
                raw, active, since, pending, f, i,
                n, o_p, o_c, o_a, o_ts, o_v, o_t, o_hh,
            )  # fmt: skip
        was = np.int64(raw[p])
        now = was & ~(1 << _STALE)  # the raw conditions as this sample decides them
        if q == _GOOD and np.isfinite(v):
            now &= ~(1 << _BAD)
            # Limits with deadband hysteresis: raised past the limit, cleared only back past
            # the limit less its deadband (RuleArrays keeps low limits sign-flipped).
            for c in range(4):
                sv = v if c < 2 else -v
                if sv > set_level[p, c]:
                    now |= 1 << c
                if sv < clear_level[p, c]:
                    now &= ~(1 << c)
            prev_v = f[_GOOD_V, p]
            dt = 0.0 if np.isnan(prev_v) else (t - i[_GOOD_T, p]) * (1.0 / NS)
            if kind & _K_ROC:
                is_, f[_RATE, p] = _rate(v, prev_v, dt, f[_RATE, p], roc_limit[p], roc_tau[p])
                now = _bit(now, _ROC, is_)
            if kind & _K_STUCK:
                is_, f[_RUN_LO, p], f[_RUN_HI, p], i[_RUN_T, p] = _flat_line(
                    t, v, prev_v, f[_RUN_LO, p], f[_RUN_HI, p], i[_RUN_T, p], i[_GOOD_T, p],
                    stuck_eps[p], stuck_window[p],
                )  # fmt: skip
                now = _bit(now, _STUCK, is_)
            if kind & _K_RANGE:
                now = _bit(now, _OOR, v < range_lo[p] or v > range_hi[p])
            if kind & _K_FC:
                fc = _forecast(
                    dt, v, f[_W, p], f[_ST, p], f[_SV, p], f[_STT, p], f[_STV, p],
                    set_level[p, _H], set_level[p, _HH], fc_tau[p], fc_horizon[p],
                )  # fmt: skip
                f[_W, p], f[_ST, p], f[_SV, p], f[_STT, p], f[_STV, p] = fc[:5]
                is_, eta, to_hh = fc[5:]
                now = _bit(now, _FC, is_)
                if is_:  # the predicted time is kept only while it is reported
                    i[_FC_T, p] = np.int64(t + eta * NS)
                    i[_FC_HH, p] = 1 if to_hh else 0
            f[_GOOD_V, p] = v
            i[_GOOD_T, p] = t
        else:
            # A doubtful reading (streams.quality.DOUBTFUL: uncertain, or beyond the instrument
            # range as a saturated gas detector in a large leak) still counts against the
            # limits, fail-safe: it raises the limits it is past and clears none. Beyond the
            # range only a measurement counts, not a failure signal (rules.SIGNAL_FAILURE_PCT:
            # a broken loop at 0 mA).
            if (
                q in (_UNCERTAIN, _QOOR)
                and np.isfinite(v)
                and (q != _QOOR or (reading_lo[p] <= v <= reading_hi[p]))
            ):
                for c in range(4):
                    sv = v if c < 2 else -v
                    if sv > set_level[p, c] and not sv < clear_level[p, c]:
                        now |= 1 << c
            now = _bit(now, _BAD, q != _QOOR and bad_quality[p])
            if q == _QOOR:
                now = _bit(now, _OOR, not np.isnan(range_lo[p]))
        f[_LAST_V, p] = v
        i[_LAST_T, p] = t
        flip = now ^ was
        if flip:
            raw[p] = now
            for c in range(_C):
                if flip >> c & 1:
                    since[p, c] = t
        if flip or pending[p]:
            n = _mature(
                p, t, v, on_delay, off_delay, raw, active, since, pending, i,
                n, o_p, o_c, o_a, o_ts, o_v, o_t, o_hh,
            )  # fmt: skip
    return k, n


@_jit
def _tick(  # type: ignore[no-untyped-def]
    p, now, kinds, stale_after, on_delay, off_delay,
    raw, active, since, pending, f, i,
    n, o_p, o_c, o_a, o_ts, o_v, o_t, o_hh,
):  # fmt: skip
    """Points `p…` brought to time `now`: those gone stale, those with a delay running."""
    room = len(o_p) - _C
    while p < len(kinds):
        if n > room:
            return p, n
        if kinds[p] and (
            (now - i[_LAST_T, p] > stale_after[p] and not raw[p] >> _STALE & 1) or pending[p]
        ):
            n = _advance(
                p, now, stale_after, on_delay, off_delay,
                raw, active, since, pending, f, i,
                n, o_p, o_c, o_a, o_ts, o_v, o_t, o_hh,
            )  # fmt: skip
        p += 1
    return p, n


@_jit
def _advance(  # type: ignore[no-untyped-def]
    p, now, stale_after, on_delay, off_delay, raw, active, since, pending, f, i,
    n, o_p, o_c, o_a, o_ts, o_v, o_t, o_hh,
):  # fmt: skip
    """Point `p` brought to time `now` without a new sample. A point whose latest sample
    reported a failure its bad-quality rule covers (COMM_FAIL: a collector retrying a dead
    device with backoff publishes less often than the stale period) has news, bad news: it
    raises the bad-quality alarm and not a second, stale alarm for the same cause."""
    last_t = i[_LAST_T, p]
    after = stale_after[p]
    if now - last_t > after and not raw[p] & (1 << _STALE | 1 << _BAD):
        raw[p] |= 1 << _STALE
        since[p, _STALE] = last_t + after
    return _mature(
        p, now, f[_LAST_V, p], on_delay, off_delay, raw, active, since, pending, i,
        n, o_p, o_c, o_a, o_ts, o_v, o_t, o_hh,
    )  # fmt: skip


@_jit
def _mature(  # type: ignore[no-untyped-def]
    p, now, v, on_delay, off_delay, raw, active, since, pending, i,
    n, o_p, o_c, o_a, o_ts, o_v, o_t, o_hh,
):  # fmt: skip
    """The delays of point `p` that have run out by `now` make `active` follow `raw`; each
    such change is written with the time it matured and the value `v`."""
    waiting = False
    bits = raw[p]
    for c in range(_C):
        to = bits >> c & 1 == 1
        if to == active[p, c]:
            continue
        at = since[p, c] + (on_delay[p, c] if to else off_delay[p, c])
        if at > now:
            waiting = True
            continue
        active[p, c] = to
        o_p[n], o_c[n], o_a[n], o_ts[n], o_v[n] = p, c, to, at, v
        o_t[n], o_hh[n] = i[_FC_T, p], i[_FC_HH, p] == 1
        n += 1
    pending[p] = waiting
    return n


@_jit
def _bit(bits, c, on):  # type: ignore[no-untyped-def]
    """`bits` with bit `c` set to `on`."""
    return bits | 1 << c if on else bits & ~(1 << c)


@_jit
def _rate(v, prev_v, dt, rate, limit, tau):  # type: ignore[no-untyped-def]
    """Rate of change: exponentially weighted mean of the slopes between samples,
    rate ← slope + decay·(rate − slope); raw when its size exceeds the limit. Returns raw and
    the rate."""
    if not dt > 0:
        return False, rate
    decay = np.exp(dt * (-1.0 / tau))
    slope = (v - prev_v) / dt
    rate = (rate - slope) * decay + slope
    return abs(rate) > limit, rate


@_jit
def _flat_line(t, v, prev_v, lo, hi, run_t, good_t, eps, window):  # type: ignore[no-untyped-def]
    """Flat line: extend the run while max − min < ε, else restart it from the previous sample
    (if close enough) or from this one; raw once the run has lasted the window. Returns raw
    and the run's min, max and start."""
    if np.isnan(lo):  # no run yet
        restart = True
    else:
        lo, hi = min(lo, v), max(hi, v)
        restart = not hi - lo < eps
    if restart:
        near = abs(v - prev_v) < eps
        start = prev_v if near else v
        lo, hi = min(v, start), max(v, start)
        run_t = good_t if near else t
    return t - run_t >= window, lo, hi, run_t


@_jit
def _forecast(dt, v, w, st, sv, stt, stv, h, hh, tau, horizon):  # type: ignore[no-untyped-def]
    """Exponentially weighted least-squares line through the good samples (the weighted sums of
    1, t, v, t², t·v), time origin moved to this sample; raw when it reaches the next of H, HH
    within the horizon. Returns the sums, raw, the time to the crossing (s) and whether HH is
    the target."""
    decay = np.exp(dt * (-1.0 / tau))
    # Time origin moved by dt: stt += dt·(dt·w − 2·st), stv −= dt·sv, st −= dt·w.
    dtw = dt * w
    stt += (dtw - st * 2.0) * dt
    stv -= dt * sv
    st -= dtw
    # Older samples weigh less by the decay; this one weighs 1.
    w = w * decay + 1.0
    st *= decay
    sv = sv * decay + v
    stt *= decay
    stv *= decay
    den = w * stt - st * st
    slope = (w * stv - st * sv) / den
    level = (sv - slope * st) / w
    to_hh = level >= h
    target = hh if to_hh else h
    eta = (target - level) / slope
    ok = w >= _MIN_FIT_WEIGHT and den > 1e-12 * w * w and slope > 0 and level < target
    return w, st, sv, stt, stv, ok and eta <= horizon, eta, to_hh
