"""The pure alarm evaluator: every condition with plain values, and properties (deadband noise
never toggles, on-delay needs persistence, one batch or many give the same result)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alarms.evaluator import EvalState, evaluate, restart_history, tick
from alarms.model import Condition, ConditionChange
from alarms.rules import (
    BadQuality,
    Forecast,
    PointRule,
    RateOfChange,
    RuleArrays,
    Stale,
    Stuck,
)
from streams.batch import SampleBatch
from streams.quality import Quality

S = 1_000_000_000
T0 = 1_700_000_000 * S
C = Condition


class Run:
    """An evaluator session for tests: feed samples and ticks, keep every change."""

    def __init__(self, *rules: PointRule) -> None:
        self.rules = RuleArrays.build(rules)
        self.state = EvalState.initial(self.rules, T0)
        self.changes: list[ConditionChange] = []

    def feed(
        self,
        point: int,
        values: Sequence[float],
        start_s: float = 0.0,
        step_s: float = 1.0,
        quality: int = Quality.GOOD,
    ) -> list[tuple[Condition, bool, float]]:
        ts = [T0 + round((start_s + k * step_s) * S) for k in range(len(values))]
        return self.batch(SampleBatch.of(ts, [point] * len(values), values, quality))

    def batch(self, batch: SampleBatch) -> list[tuple[Condition, bool, float]]:
        self.state, ch = evaluate(self.rules, self.state, batch)
        self.changes += ch
        return [(c.condition, c.active, (c.ts_ns - T0) / S) for c in ch]

    def tick(self, at_s: float) -> list[tuple[Condition, bool, float]]:
        self.state, ch = tick(self.rules, self.state, T0 + round(at_s * S))
        self.changes += ch
        return [(c.condition, c.active, (c.ts_ns - T0) / S) for c in ch]

    def active(self, point: int) -> list[Condition]:
        return self.state.active_conditions(point)


LIMITS = {"hh": 90.0, "h": 80.0, "l": 20.0, "ll": 10.0}


# ---------------------------------------------------------------------------------------------
# Limits, deadband, delays


def test_high_limits_raise_above_and_clear_only_below_the_deadband() -> None:
    r = Run(PointRule(point=1, deadband=2.0, **LIMITS))
    assert r.feed(1, [50, 80]) == []  # equal to the limit is not above it
    assert r.feed(1, [80.5], start_s=2) == [(C.H, True, 2.0)]
    assert r.feed(1, [79, 78], start_s=3) == []  # inside the deadband
    assert r.feed(1, [91], start_s=5) == [(C.HH, True, 5.0)]
    assert r.feed(1, [88.5, 88], start_s=6) == []
    assert r.feed(1, [87.9], start_s=8) == [(C.HH, False, 8.0)]
    assert r.feed(1, [77.9], start_s=9) == [(C.H, False, 9.0)]
    assert r.active(1) == []


def test_low_limits_mirror_the_high_ones() -> None:
    r = Run(PointRule(point=1, deadband=1.0, **LIMITS))
    assert r.feed(1, [19.9]) == [(C.L, True, 0.0)]
    assert r.feed(1, [9, 10.5], start_s=1) == [(C.LL, True, 1.0)]
    assert r.feed(1, [11.1, 20.5, 21.1], start_s=3) == [(C.LL, False, 3.0), (C.L, False, 5.0)]


def test_one_sample_crossing_all_limits_raises_both() -> None:
    r = Run(PointRule(point=1, **LIMITS))
    assert sorted(r.feed(1, [95])) == [(C.HH, True, 0.0), (C.H, True, 0.0)]
    assert sorted(r.feed(1, [5], start_s=1)) == [
        (C.HH, False, 1.0),
        (C.H, False, 1.0),
        (C.L, True, 1.0),
        (C.LL, True, 1.0),
    ]


def test_on_delay_needs_the_violation_to_persist() -> None:
    r = Run(PointRule(point=1, h=80, on_delay_s=5))
    assert r.feed(1, [85, 85, 85, 79, 85, 85, 85, 85, 85]) == []  # broken at 3 s; restarts at 4 s
    assert r.feed(1, [85], start_s=9) == [(C.H, True, 9.0)]


def test_on_delay_matures_at_a_tick_without_new_samples() -> None:
    r = Run(PointRule(point=1, h=80, on_delay_s=5))
    r.feed(1, [85], start_s=1)
    assert r.tick(5.9) == []
    assert r.tick(6.5) == [(C.H, True, 6.0)]  # stamped when the delay ran out


def test_off_delay_keeps_the_alarm_until_normal_persists() -> None:
    r = Run(PointRule(point=1, h=80, off_delay_s=3))
    r.feed(1, [85])
    assert r.feed(1, [70, 70, 85, 70, 70, 70], start_s=1) == []  # normal again from 4 s
    assert r.feed(1, [70], start_s=7) == [(C.H, False, 7.0)]


def test_bad_quality_samples_neither_raise_nor_clear_limits() -> None:
    r = Run(PointRule(point=1, h=80))
    assert r.feed(1, [95, 95], quality=Quality.BAD) == []
    r.feed(1, [85], start_s=2)
    assert r.active(1) == [C.H]
    assert r.feed(1, [10, 10], start_s=3, quality=Quality.UNCERTAIN) == []
    assert r.active(1) == [C.H]
    assert r.feed(1, [math.nan], start_s=5) == []  # a NaN value counts as bad too
    assert r.feed(1, [70], start_s=6) == [(C.H, False, 6.0)]


def test_samples_of_points_without_a_rule_are_ignored() -> None:
    r = Run(PointRule(point=2, h=80))
    assert r.batch(SampleBatch.of(T0, [0, 1, 2, 99, -1], [99, 99, 99, 99, 99])) == [
        (C.H, True, 0.0)
    ]


def test_a_sample_older_than_the_points_latest_is_ignored() -> None:
    r = Run(PointRule(point=1, h=80))
    r.feed(1, [50], start_s=10)
    assert r.feed(1, [95], start_s=5) == []
    assert r.feed(1, [95], start_s=11) == [(C.H, True, 11.0)]


# ---------------------------------------------------------------------------------------------
# Data-quality conditions


def test_bad_quality_for_longer_than_t_raises_and_a_good_sample_clears() -> None:
    r = Run(PointRule(point=1, h=80, bad_quality=BadQuality(after_s=10)))
    assert r.feed(1, [0, 0, 0], step_s=4, quality=Quality.COMM_FAIL) == []  # 0..8 s
    assert r.tick(9.9) == []
    assert r.tick(10) == [(C.BAD_QUALITY, True, 10.0)]
    assert r.feed(1, [50], start_s=12) == [(C.BAD_QUALITY, False, 12.0)]


def test_short_bad_quality_raises_nothing() -> None:
    r = Run(PointRule(point=1, bad_quality=BadQuality(after_s=10)))
    r.feed(1, [0] * 5, quality=Quality.BAD)
    r.feed(1, [1], start_s=5)
    assert r.tick(100) == [] and r.changes == []


def test_stale_raises_after_k_periods_without_samples_and_clears_on_the_next() -> None:
    r = Run(PointRule(point=1, stale=Stale(period_s=2, periods=3)))
    r.feed(1, [1.0], start_s=1)
    assert r.tick(7) == []
    assert r.tick(7.5) == [(C.STALE, True, 7.0)]
    assert r.tick(60) == []
    assert r.feed(1, [1.0], start_s=61) == [(C.STALE, False, 61.0)]


def test_a_point_reporting_comm_fail_is_not_also_stale() -> None:
    """A collector retrying a dead device with backoff sends COMM_FAIL less often than the stale
    period: the bad-quality alarm reports it, not a second (stale) one per point."""
    r = Run(
        PointRule(point=1, bad_quality=BadQuality(after_s=10), stale=Stale(period_s=1)),
        PointRule(point=2, stale=Stale(period_s=1)),  # no bad-quality rule: stale reports it
    )
    r.batch(SampleBatch.of([T0, T0], [1, 2], [5.0, 5.0]))
    r.batch(SampleBatch.of([T0 + S, T0 + S], [1, 2], [math.nan] * 2, Quality.COMM_FAIL))
    assert r.tick(30) == [(C.STALE, True, 4.0), (C.BAD_QUALITY, True, 11.0)]
    assert r.active(1) == [C.BAD_QUALITY]
    assert r.feed(1, [math.nan], start_s=46, quality=Quality.COMM_FAIL) == []
    assert r.tick(60) == []
    assert r.feed(1, [5.0], start_s=61) == [(C.BAD_QUALITY, False, 61.0)]
    assert r.tick(63.5) == []
    assert r.tick(64.5) == [(C.STALE, True, 64.0)]  # silence after good news is stale again


def test_stale_counts_from_the_start_for_a_point_never_heard() -> None:
    r = Run(PointRule(point=1, stale=Stale(period_s=1)), PointRule(point=2, h=5))
    assert r.tick(3.5) == [(C.STALE, True, 3.0)]


def test_a_gap_inside_one_batch_is_reported_as_stale_and_cleared() -> None:
    r = Run(PointRule(point=1, stale=Stale(period_s=1, periods=3)))
    assert r.feed(1, [1, 2, 3], step_s=10) == [
        (C.STALE, True, 3.0),
        (C.STALE, False, 10.0),
        (C.STALE, True, 13.0),
        (C.STALE, False, 20.0),
    ]


def test_stuck_value_raises_after_the_window_and_clears_when_it_moves() -> None:
    r = Run(PointRule(point=1, stuck=Stuck(epsilon=0.01, window_s=10)))
    assert r.feed(1, [5.0, 5.001, 5.0] * 3 + [5.002]) == []  # 0..9 s
    assert r.feed(1, [5.0], start_s=10) == [(C.STUCK, True, 10.0)]
    assert r.feed(1, [5.5], start_s=11) == [(C.STUCK, False, 11.0)]
    assert r.feed(1, [5.5] * 9, start_s=12) == []
    assert r.feed(1, [5.5], start_s=21) == [(C.STUCK, True, 21.0)]  # run from 11 s


def test_bad_quality_samples_do_not_feed_the_flat_line() -> None:
    r = Run(PointRule(point=1, stuck=Stuck(epsilon=0.01, window_s=5)))
    r.feed(1, [1.0])
    r.feed(1, [1.0] * 10, start_s=1, quality=Quality.COMM_FAIL)
    assert r.feed(1, [2.0], start_s=11) == []


def test_value_outside_the_instrument_range_raises_out_of_range() -> None:
    r = Run(
        PointRule(point=1, range=(0, 100)), PointRule(point=2, range=(0, 100), out_of_range=False)
    )
    assert r.feed(1, [100, 100.5]) == [(C.OUT_OF_RANGE, True, 1.0)]
    assert r.feed(1, [-0.1, 0], start_s=2) == [(C.OUT_OF_RANGE, False, 3.0)]
    assert r.feed(1, [50], start_s=4, quality=Quality.OUT_OF_RANGE) == [(C.OUT_OF_RANGE, True, 4.0)]
    assert r.feed(2, [150]) == []


def test_a_value_beyond_the_range_raises_the_limits_it_is_past_and_clears_none() -> None:
    # A toxic-gas detector (0–3 mg/m³, 一级 1, 二级 2) saturates in a large leak: its readings
    # are flagged out of range, and the gas is at least that high. A reading just below the
    # range is at most that low: it may raise L. Neither clears an alarm. Farther out (NAMUR NE
    # 43: below 3.6 mA or above 21 mA, 2.5 % / 6.25 % of the span) it is a failure signal, not
    # a measurement, and raises no limit.
    rule = {"h": 1.0, "hh": 2.0, "l": 0.5, "range": (0, 3), "on_delay_s": 1}
    r = Run(PointRule(point=1, **rule), PointRule(point=2, **rule))
    over = Quality.OUT_OF_RANGE
    assert r.feed(1, [0.8]) == []
    assert r.feed(1, [3.094, 3.094], start_s=1, quality=over) == [
        (C.HH, True, 2.0), (C.H, True, 2.0), (C.OUT_OF_RANGE, True, 2.0),
    ]  # fmt: skip
    assert r.feed(1, [-0.05, math.nan], start_s=3, quality=over) == [(C.L, True, 4.0)]
    assert r.feed(1, [-0.75], start_s=5, quality=over) == []  # a broken loop (0 mA)
    assert r.active(1) == [C.HH, C.H, C.L, C.OUT_OF_RANGE]
    assert r.feed(1, [0.8], start_s=6) == [
        (C.HH, False, 6.0), (C.H, False, 6.0), (C.L, False, 6.0), (C.OUT_OF_RANGE, False, 6.0),
    ]  # fmt: skip
    # Failed high (22 mA): out of range, no limit alarm.
    assert r.feed(2, [0.8]) == []
    assert r.feed(2, [3.375, 3.375], start_s=1, quality=over) == [(C.OUT_OF_RANGE, True, 2.0)]


def test_an_uncertain_reading_raises_limits_it_is_past_and_clears_none() -> None:
    r = Run(PointRule(point=1, h=1.0, hh=2.0, bad_quality=BadQuality(after_s=5)))
    doubtful = Quality.UNCERTAIN
    assert r.feed(1, [2.5], quality=doubtful) == [(C.HH, True, 0.0), (C.H, True, 0.0)]
    assert r.feed(1, [0.2, 0.1], start_s=1, quality=doubtful) == []
    assert r.feed(1, [0.0], start_s=6, quality=doubtful) == [(C.BAD_QUALITY, True, 5.0)]
    assert r.feed(1, [0.2], start_s=7) == [
        (C.HH, False, 7.0), (C.H, False, 7.0), (C.BAD_QUALITY, False, 7.0),
    ]  # fmt: skip


def test_rate_of_change_raises_on_a_fast_ramp_not_on_a_slow_one() -> None:
    r = Run(PointRule(point=1, roc=RateOfChange(limit_per_s=1.0, window_s=5)))
    assert r.feed(1, [50 + 0.5 * k for k in range(60)]) == []
    changes = r.feed(1, [80 + 3.0 * k for k in range(10)], start_s=60)
    assert changes and changes[0][:2] == (C.ROC, True)
    assert 60 < changes[0][2] <= 64
    changes = r.feed(1, [110.0] * 30, start_s=70)
    assert changes and changes[0][:2] == (C.ROC, False)


def test_forecast_predicts_the_crossing_of_h_with_its_time_before_it_happens() -> None:
    r = Run(PointRule(point=1, h=80, hh=90, forecast=Forecast(window_s=20, horizon_s=15)))
    assert r.feed(1, [50.0] * 20) == []
    r.feed(1, [50 + 1.0 * k for k in range(1, 26)], start_s=20)  # 1 /s from 20 s: 80 at 50 s
    raised = [c for c in r.changes if c.condition is C.FORECAST]
    assert [c.active for c in raised] == [True]
    assert (raised[0].ts_ns - T0) / S < 50
    assert raised[0].detail["limit"] == "H"
    assert abs((raised[0].detail["predicted_ns"] - T0) / S - 50) < 8
    assert C.H not in r.active(1)
    r.feed(1, [75 + 1.0 * k for k in range(1, 21)], start_s=45)  # through H and HH
    assert r.active(1) == [C.HH, C.H]
    r.feed(1, [95.0] * 5, start_s=65)
    assert C.FORECAST not in r.active(1)  # above HH there is nothing left to predict


def test_a_flat_or_falling_series_forecasts_nothing() -> None:
    r = Run(PointRule(point=1, h=80, forecast=Forecast(window_s=10, horizon_s=1000)))
    r.feed(1, [79.0] * 30 + [79 - 0.1 * k for k in range(30)])
    assert r.changes == []


def test_tick_reports_only_what_changed() -> None:
    r = Run(*(PointRule(point=i, stale=Stale(period_s=1)) for i in range(1, 6)))
    r.batch(SampleBatch.of(T0, [1, 2, 3, 4, 5], [0.0] * 5))
    r.feed(3, [0.0], start_s=2)
    assert sorted(p.point for p in tick(r.rules, r.state.copy(), T0 + round(4.5 * S))[1]) == [
        1,
        2,
        4,
        5,
    ]


def test_a_kind_a_rule_gains_again_starts_its_history_afresh() -> None:
    # History is kept only while a point's rule has the kind: after stuck was off for 10 s, a
    # flat run from before does not count, the run starts again at the latest sample (12 s).
    flat = PointRule(point=1, stuck=Stuck(epsilon=0.5, window_s=4))
    r = Run(flat)
    assert r.feed(1, [50.0] * 3) == []  # 0..2 s
    r.rules = off = RuleArrays.build([PointRule(point=1)])
    assert r.feed(1, [50.0] * 10, start_s=3) == []  # 3..12 s: no stuck rule
    r.rules = RuleArrays.build([flat])
    restart_history(r.state, 1, r.rules.enabled(1) & ~off.enabled(1))
    assert r.feed(1, [50.0] * 4, start_s=13) == [(C.STUCK, True, 16.0)]


def test_a_repeated_scan_order_follows_the_rules_in_force() -> None:
    # The second scan comes in the first one's order, but point 7 has lost its rule meanwhile:
    # its sample is ignored as when the scan comes in another order.
    n = 1100
    rng = np.random.default_rng(1)
    order = rng.permutation(np.arange(1, n + 1, dtype=np.int32))
    rules = [PointRule(point=i, h=80, stale=Stale(period_s=1, periods=2)) for i in range(1, n + 1)]
    repeated, reordered = Run(*rules), Run(*rules)
    first = SampleBatch(np.full(n, T0, np.int64), order, np.full(n, 50.0), np.zeros(n, np.uint8))
    second = SampleBatch(
        first.ts + S, order.copy(), np.where(order == 8, 95.0, 50.0), np.zeros(n, np.uint8)
    )
    without_7 = RuleArrays.build(r for r in rules if r.point != 7)
    for run, scan in ((repeated, second), (reordered, second.take(rng.permutation(n)))):
        run.batch(first)
        run.rules = without_7
        run.batch(scan)
        assert [(c.point, c.condition, c.active) for c in run.changes] == [(8, C.H, True)]
    for name in ("raw", "active", "since", "pending", "f", "i"):
        np.testing.assert_array_equal(getattr(repeated.state, name), getattr(reordered.state, name))


def test_a_batch_of_strided_columns_gives_what_its_contiguous_copy_gives() -> None:
    """Columns that are views with a stride (every other row of a wider array) are read as
    they are: the compiled pass takes contiguous copies of them."""
    rule = PointRule(point=1, deadband=2.0, **LIMITS)
    plain, strided = Run(rule), Run(rule)
    ts = np.array([T0 + k * S for k in range(5)], np.int64)
    point = np.ones(5, np.int32)
    value = np.array([50.0, 85.0, 95.0, 70.0, 5.0])
    quality = np.zeros(5, np.uint8)
    columns = [np.repeat(c, 2)[::2] for c in (ts, point, value, quality)]
    assert not any(c.flags.c_contiguous for c in columns)
    got = strided.batch(SampleBatch(*columns))
    assert got == plain.batch(SampleBatch(ts, point, value, quality))
    assert got == [
        (C.H, True, 1.0),
        (C.HH, True, 2.0),
        (C.HH, False, 3.0),
        (C.H, False, 3.0),
        (C.L, True, 4.0),
        (C.LL, True, 4.0),
    ]


def test_state_size_must_match_the_rules() -> None:
    rules = RuleArrays.build([PointRule(point=3, h=1)])
    with pytest.raises(ValueError, match="state has 2 points, rules 4"):
        evaluate(
            rules,
            EvalState.initial(RuleArrays.build([PointRule(point=1, h=1)]), 0),
            SampleBatch.empty(),
        )


# ---------------------------------------------------------------------------------------------
# Properties


@settings(max_examples=60, deadline=None)
@given(
    limit=st.floats(-100, 100),
    deadband=st.floats(0.01, 10),
    noise=st.lists(st.floats(0, 1), min_size=1, max_size=40),
    above=st.booleans(),
)
def test_noise_inside_the_deadband_never_toggles(
    limit: float, deadband: float, noise: list[float], above: bool
) -> None:
    r = Run(PointRule(point=1, h=limit, deadband=deadband))
    if above:
        r.feed(1, [limit + 1.0])  # active; stays while value ≥ limit − deadband
        values = [limit - deadband * x for x in noise]
    else:
        values = [limit - deadband * x for x in noise]  # ≤ limit: never raised
    before = list(r.changes)
    r.feed(1, values, start_s=1)
    assert r.changes == before
    assert r.active(1) == ([C.H] if above else [])


@settings(max_examples=60, deadline=None)
@given(
    delay=st.integers(1, 10),
    pattern=st.lists(st.booleans(), min_size=1, max_size=40),
)
def test_on_delay_needs_the_violation_to_persist_for_the_delay(
    delay: int, pattern: list[bool]
) -> None:
    r = Run(PointRule(point=1, h=50, on_delay_s=delay))
    r.feed(1, [60.0 if v else 40.0 for v in pattern])
    raised = [c for c in r.changes if c.active]
    # A value holds until the next sample: a run of violations starting at sample s is active
    # from s + delay if no normal sample came before that.
    expected = None
    start = None
    for k, v in enumerate(pattern):
        if start is not None and k - start >= delay:
            expected = start + delay
            break
        start = (start if start is not None else k) if v else None
    assert [(c.ts_ns - T0) // S for c in raised[:1]] == ([expected] if expected is not None else [])


def _series(draw: st.DrawFn) -> tuple[list[PointRule], SampleBatch]:
    n_points = draw(st.integers(1, 4))
    rules = [
        PointRule(
            point=i,
            hh=90,
            h=80,
            l=20,
            ll=10,
            range=(0, 100),
            deadband=draw(st.sampled_from([0.0, 2.0])),
            on_delay_s=draw(st.sampled_from([0.0, 1.5, 3.0])),
            off_delay_s=draw(st.sampled_from([0.0, 2.0])),
            out_of_range=draw(st.booleans()),
            # Points of one batch differ in their rule kinds: a kind some lack is skipped or
            # evaluated, depending on which points a batch holds.
            roc=draw(st.sampled_from([None, RateOfChange(limit_per_s=5, window_s=3)])),
            bad_quality=BadQuality(after_s=2),
            stale=Stale(period_s=1, periods=2),
            stuck=draw(st.sampled_from([None, Stuck(epsilon=0.5, window_s=4)])),
            forecast=draw(st.sampled_from([None, Forecast(window_s=5, horizon_s=10)])),
        )
        for i in range(1, n_points + 1)
    ]
    n = draw(st.integers(1, 60))
    points = draw(st.lists(st.integers(1, n_points), min_size=n, max_size=n))
    gaps = draw(st.lists(st.sampled_from([0, 1, 1, 1, 2, 5]), min_size=n, max_size=n))
    values = draw(
        st.lists(
            st.one_of(st.floats(-10, 110), st.sampled_from([5.0, 50.0, 85.0, 95.0])),
            min_size=n,
            max_size=n,
        )
    )
    quality = draw(st.lists(st.sampled_from([0, 0, 0, 0, 2, 3, 5]), min_size=n, max_size=n))
    ts = T0 + np.cumsum(gaps).astype(np.int64) * (S // 2)
    return rules, SampleBatch.of(ts, points, values, quality)


series = st.composite(_series)


def _comparable(changes: list[ConditionChange], values: bool = True) -> list[tuple[object, ...]]:
    """Changes in a canonical order, NaN values made equal to each other."""
    return sorted(
        (
            c.ts_ns,
            c.point,
            int(c.condition),
            c.active,
            (None if math.isnan(c.value) else c.value) if values else None,
            tuple(sorted(c.detail.items())),
        )
        for c in changes
    )


@settings(max_examples=80, deadline=None)
@given(data=series(), cuts=st.lists(st.integers(0, 60), max_size=6))
def test_one_batch_or_many_give_the_same_changes_and_state(
    data: tuple[list[PointRule], SampleBatch], cuts: list[int]
) -> None:
    rules, batch = data
    whole = Run(*rules)
    whole.batch(batch)
    split = Run(*rules)
    bounds = sorted({0, len(batch), *(c for c in cuts if c < len(batch))})
    for lo, hi in itertools.pairwise(bounds):
        split.batch(batch.take(np.arange(lo, hi)))

    assert _comparable(whole.changes) == _comparable(split.changes)
    for name in ("raw", "active", "since", "pending", "i"):
        np.testing.assert_array_equal(getattr(whole.state, name), getattr(split.state, name))
    np.testing.assert_array_equal(whole.state.f, split.state.f)


@settings(max_examples=40, deadline=None)
@given(data=series(), tick_every=st.integers(1, 10))
def test_ticks_between_batches_change_nothing_but_discover_earlier(
    data: tuple[list[PointRule], SampleBatch], tick_every: int
) -> None:
    rules, batch = data
    plain = Run(*rules)
    plain.batch(batch)
    ticked = Run(*rules)
    for k in range(len(batch)):
        ticked.batch(batch.take(np.arange(k, k + 1)))
        if k % tick_every == 0:
            ticked.tick((int(batch.ts[k]) - T0) / S)
    end = (int(batch.ts[-1]) - T0) / S
    plain.tick(end)
    ticked.tick(end)
    assert _comparable(plain.changes, values=False) == _comparable(ticked.changes, values=False)
    np.testing.assert_array_equal(plain.state.active, ticked.state.active)


@settings(max_examples=15, deadline=None)
@given(
    n_points=st.integers(1024, 1100),
    scans=st.integers(2, 6),
    seed=st.integers(0, 2**32 - 1),
    cuts=st.lists(st.integers(1, 1099), min_size=1, max_size=4),
    same_order=st.booleans(),
)
def test_a_whole_scan_applied_in_place_equals_the_same_samples_in_small_batches(
    n_points: int, scans: int, seed: int, cuts: list[int], same_order: bool
) -> None:
    # A batch naming every point of a range of ids once takes the in-place path (its order is
    # kept for the next scan in the same order); batches of fewer than 1,024 samples take the
    # gathered one. Both must give the same changes and state. Rule kinds differ by point: the
    # first 512 points have no forecast, so the small batches skip it where the scan does not.
    rng = np.random.default_rng(seed)
    order = rng.permutation(np.arange(1, n_points + 1, dtype=np.int32))
    rules = [
        PointRule(
            point=i,
            hh=90,
            h=80,
            l=20,
            ll=10,
            range=(0, 100),
            deadband=[0.0, 2.0][i % 2],
            on_delay_s=[0.0, 1.5, 3.0][i % 3],
            off_delay_s=[0.0, 2.0][i % 5 % 2],
            out_of_range=i % 7 != 0,
            roc=RateOfChange(limit_per_s=5, window_s=3) if i % 3 else None,
            bad_quality=BadQuality(after_s=2),
            stale=Stale(period_s=1, periods=2),
            stuck=Stuck(epsilon=0.5, window_s=4) if i % 4 else None,
            forecast=Forecast(window_s=5, horizon_s=10) if i > 512 else None,
        )
        for i in range(1, n_points + 1)
    ]
    whole, split = Run(*rules), Run(*rules)
    level = rng.uniform(0, 100, n_points)
    for r in range(scans):
        level += rng.normal(0, 8, n_points)
        ids = order.copy() if same_order else rng.permutation(order)
        ts = T0 + r * S + rng.integers(0, S // 2, n_points)
        quality = rng.choice(np.array([0, 0, 0, 0, 0, 2, 3, 5], np.uint8), n_points)
        scan = SampleBatch(ts, ids, level[ids - 1].copy(), quality)
        whole.batch(scan)
        bounds = sorted({*range(0, n_points, 512), n_points, *(c for c in cuts if c < n_points)})
        for lo, hi in itertools.pairwise(bounds):
            split.batch(scan.take(np.arange(lo, hi)))
        whole.tick(r + 0.75)
        split.tick(r + 0.75)

    assert whole.changes  # the series does raise and clear conditions
    assert _comparable(whole.changes) == _comparable(split.changes)
    for name in ("raw", "active", "since", "pending", "i"):
        np.testing.assert_array_equal(getattr(whole.state, name), getattr(split.state, name))
    np.testing.assert_array_equal(whole.state.f, split.state.f)
