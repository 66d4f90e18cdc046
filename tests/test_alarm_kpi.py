"""Alarm KPIs on hand-built histories, each figure worked out by hand in the comments."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alarms.kpi import KIND_CODES, EventColumns, KpiRules, kpis
from alarms.model import AlarmEvent, AlarmState, Condition, EventKind, Priority

S = 1_000_000_000
H = 3600 * S
T0 = 1_700_000_400 * S
AREAS = {1: "ent-A", 2: "ent-A", 3: "ent-B"}

Row = tuple[float, int, str, int, str]


def _cols(rows: list[Row]) -> EventColumns:
    """rows of (seconds after T0, point, kind, priority, condition)."""
    ts = [T0 + round(r[0] * S) for r in rows]
    return EventColumns.of(
        ts, [r[1] for r in rows], [r[4] for r in rows], [r[3] for r in rows], [r[2] for r in rows]
    )


def _raised(t_s: float, point: int, priority: int = 4, condition: str = "HH") -> Row:
    return (t_s, point, "raised", priority, condition)


def _report(rows: list[Row], start_s: float, end_s: float, **rules: int) -> dict[str, Any]:
    out = kpis(
        _cols(rows), T0 + round(start_s * S), T0 + round(end_s * S), AREAS, KpiRules(**rules)
    )
    json.dumps(out, allow_nan=False)
    return out


def test_rates_count_raised_events_in_the_period_per_area() -> None:
    rows = [
        _raised(-300, 1),  # before the period
        _raised(60, 1),
        _raised(120, 2),
        (720, 1, "reannunciated", 1, "HH"),  # a reminder, not a new alarm
        (730, 1, "acknowledged", 4, "HH"),
        _raised(900, 1),
        _raised(1800, 3),
        _raised(2000, 99),  # no area
        _raised(3600, 1),  # at the end: outside [start, end)
    ]
    out = _report(rows, 0, 3600)
    overall = out["overall"]
    assert overall["annunciated"] == 5
    # 5 alarms over six 10-minute periods; buckets [2, 1, 0, 2, 0, 0].
    assert overall["rate"]["per_10min"] == pytest.approx(
        {"average": 5 / 6, "max": 2, "pct_periods_over_10": 0.0}
    )
    assert overall["per_window"] == [2, 1, 0, 2, 0, 0]
    assert overall["rate"]["per_hour"] == pytest.approx({"average": 5.0, "max": 5})
    # One hour extrapolated to a day: 5 × 24.
    assert overall["rate"]["per_day"] == pytest.approx({"average": 120.0, "max": 5})
    assert set(out["areas"]) == {"ent-A", "ent-B", "(unassigned)"}
    assert out["areas"]["ent-A"]["annunciated"] == 3
    assert out["areas"]["ent-A"]["rate"]["per_10min"]["max"] == 2
    assert out["areas"]["ent-B"]["annunciated"] == 1
    assert out["areas"]["(unassigned)"]["annunciated"] == 1
    assert "RAISED" in out["counting"]


def _burst(n: int, every_s: float = 10, start_s: float = 0, point: int = 1) -> list[Row]:
    return [_raised(start_s + i * every_s, point) for i in range(n)]


def test_flood_starts_above_ten_in_ten_minutes_and_ends_below_five() -> None:
    # 11 alarms at 0, 10, …, 100 s: the 11th (t = 100 s) makes 11 in the window → flood.
    # Alarm i leaves the window at i·10 + 600 s; after 7 have left (t = 660 s) 4 remain → end.
    out = _report(_burst(11), 0, 3600)
    floods = out["overall"]["floods"]
    assert floods["count"] == 1
    (episode,) = floods["episodes"]
    assert episode == {
        "start_ns": T0 + 100 * S,
        "end_ns": T0 + 660 * S,
        "duration_s": 560.0,
        "alarms": 1,
        "peak_10min": 11,
        "ongoing": False,
        "began_before_period": False,
    }
    assert floods["pct_time"] == pytest.approx(100 * 560 / 3600)
    # First 10-minute period holds all 11 of six periods.
    assert out["overall"]["rate"]["per_10min"]["pct_periods_over_10"] == pytest.approx(100 / 6)
    assert out["areas"]["ent-A"]["floods"]["count"] == 1


def test_ten_alarms_in_ten_minutes_is_not_a_flood() -> None:
    out = _report(_burst(10), 0, 3600)
    assert out["overall"]["floods"] == {"count": 0, "pct_time": 0.0, "episodes": []}


def test_flood_holds_while_the_rate_stays_between_the_thresholds() -> None:
    # 11 alarms in 100 s, then one every 100 s keeps 5 or more in the window for a while.
    rows = _burst(11) + _burst(10, every_s=100, start_s=200)
    out = _report(rows, 0, 7200)
    (episode,) = out["overall"]["floods"]["episodes"]
    assert episode["start_ns"] == T0 + 100 * S
    # An alarm counts during [t, t + 600 s). The burst has left by 700 s; from then the tail
    # keeps 6 in the window until 1100 s, the last tail alarm. At 1200 s (600 s after the alarm
    # at 600 s) 5 remain, at 1300 s 4 remain: the flood ends there.
    assert episode["end_ns"] == T0 + 1300 * S
    assert episode["alarms"] == 1 + 10
    # At 500 s the window (−100, 500] holds the 11 of the burst and 200, 300, 400, 500.
    assert episode["peak_10min"] == 15


def test_flood_crossing_the_period_end_is_ongoing_and_clipped() -> None:
    out = _report(_burst(11), 0, 300)
    (episode,) = out["overall"]["floods"]["episodes"]
    assert (episode["start_ns"], episode["end_ns"], episode["ongoing"]) == (
        T0 + 100 * S,
        T0 + 300 * S,
        True,
    )
    assert out["overall"]["floods"]["pct_time"] == pytest.approx(100 * 200 / 300)


def test_flood_carried_in_from_before_the_period_starts_at_the_period_start() -> None:
    out = _report(_burst(11), 200, 3800)
    (episode,) = out["overall"]["floods"]["episodes"]
    assert (episode["start_ns"], episode["end_ns"], episode["began_before_period"]) == (
        T0 + 200 * S,
        T0 + 660 * S,
        True,
    )
    # The alarms before the period are not annunciated in it.
    assert out["overall"]["annunciated"] == 0


def test_chattering_needs_three_activations_of_one_alarm_within_sixty_seconds() -> None:
    rows = [
        *[_raised(t, 1) for t in (0, 20, 50, 100, 110, 115)],  # 3 in 50 s, later 3 in 15 s
        *[_raised(t, 2) for t in (0, 30, 60)],  # 60 s apart first to third: not within
        *[_raised(t, 3) for t in (0, 1, 2, 3)],  # 4 in 3 s
        _raised(0, 2, condition="H"),
        _raised(10, 2, condition="L"),  # three conditions of point 2 are three alarms
    ]
    chattering = _report(rows, 0, 3600)["overall"]["chattering"]
    assert chattering == [
        {"point": 3, "condition": "HH", "area": "ent-B", "activations": 4, "max_in_window": 4},
        {"point": 1, "condition": "HH", "area": "ent-A", "activations": 6, "max_in_window": 3},
    ]


def test_stale_alarms_are_those_standing_more_than_a_day_at_the_period_end() -> None:
    end = 48 * 3600
    rows = [
        _raised(0, 10),  # standing 48 h
        _raised(0, 11),
        (3600, 11, "cleared", 4, "HH"),  # cleared: not standing
        _raised(30 * 3600, 12),  # 18 h: not stale yet
        _raised(0, 13),
        (3600, 13, "shelved", 4, "HH"),
        (7200, 13, "unshelved", 4, "HH"),
        _raised(7200, 13),  # standing again since 2 h → 46 h
        _raised(0, 14),
        (3000, 14, "reannunciated", 4, "HH"),
        (3600, 14, "acknowledged", 4, "HH"),  # acknowledged but still active → 48 h
        _raised(24 * 3600, 15),  # exactly 24 h: not more than a day
        _raised(0, 16),
        (49 * 3600, 16, "cleared", 4, "HH"),  # cleared after the period end: still stale
    ]
    stale = _report(rows, 47 * 3600, end)["overall"]["stale"]
    assert [(r["point"], r["active_h"]) for r in stale] == [
        (10, 48.0),
        (14, 48.0),
        (16, 48.0),
        (13, 46.0),
    ]
    assert stale[0]["area"] == "(unassigned)"


def test_bad_actors_rank_by_count_and_give_their_share() -> None:
    rows = [
        *_burst(5, every_s=100, point=1),
        *_burst(3, every_s=100, point=4),
        *_burst(3, every_s=100, point=2),
        *_burst(2, every_s=100, point=3),
    ]  # 13 alarms
    bad = _report(rows, 0, 3600, top_n=2)["overall"]["bad_actors"]
    # Points 2 and 4 tie at 3; the lower point number comes first.
    assert [(r["point"], r["count"]) for r in bad["top"]] == [(1, 5), (2, 3)]
    assert bad["top"][0]["share_pct"] == pytest.approx(100 * 5 / 13)
    assert bad["share_pct"] == pytest.approx(100 * 8 / 13)
    assert bad["distinct"] == 4  # points 1 to 4, one condition each


def test_priority_distribution_of_annunciated_alarms() -> None:
    rows = [
        _raised(1, 1, priority=1),
        _raised(2, 1, priority=2),
        *[_raised(10 + i, 2, priority=3) for i in range(3)],
        *[_raised(20 + i, 3, priority=4) for i in range(5)],
        (30, 1, "reannunciated", 1, "HH"),
    ]
    prio = _report(rows, 0, 3600)["overall"]["priority"]
    assert prio == {
        "emergency": {"count": 1, "pct": 10.0},
        "high": {"count": 1, "pct": 10.0},
        "medium": {"count": 3, "pct": 30.0},
        "low": {"count": 5, "pct": 50.0},
    }


def test_empty_history_gives_zeros_not_errors() -> None:
    out = _report([], 0, 3600)
    assert out["areas"] == {}
    assert out["overall"]["annunciated"] == 0
    assert out["overall"]["bad_actors"] == {"top": [], "share_pct": 0.0, "distinct": 0}
    assert out["overall"]["priority"]["low"] == {"count": 0, "pct": 0.0}


def test_targets_carry_their_sources_and_marks() -> None:
    targets = _report([], 0, 3600)["targets"]
    per_hour = {t["meaning"]: t["value"] for t in targets if t["metric"] == "per_hour"}
    assert per_hour == {"very likely acceptable": 6, "maximum manageable": 12}
    assert all(t["source"] and t["mark"] in ("V2", "M") for t in targets)


def test_alarm_events_and_columns_give_the_same_report() -> None:
    events = [
        AlarmEvent(
            1,
            Condition.HH,
            EventKind.RAISED,
            AlarmState.NORMAL,
            AlarmState.UNACK,
            T0 + i * S,
            5.0,
            Priority.HIGH,
        )
        for i in range(12)
    ]
    cols = EventColumns.of(
        [e.ts_ns for e in events],
        np.ones(12, dtype=np.int32),
        np.zeros(12, dtype=np.int8),
        np.full(12, 2),
        np.full(12, KIND_CODES[EventKind.RAISED]),
    )
    assert kpis(events, T0, T0 + H, AREAS) == kpis(cols, T0, T0 + H, AREAS)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": ["rasied"]}, "unknown event kind 'rasied'"),
        ({"condition": ["XX"]}, "unknown condition 'XX'"),
        ({"priority": [0]}, "priority must be 1 to 4, got 0"),
        ({"point": [1, 2]}, "one length"),
        ({"kind": [99]}, "unknown event kind code 99"),
    ],
)
def test_bad_columns_are_refused_naming_the_value(change: dict[str, Any], message: str) -> None:
    cols: dict[str, Any] = {
        "ts_ns": [T0],
        "point": [1],
        "condition": ["HH"],
        "priority": [4],
        "kind": ["raised"],
    }
    with pytest.raises(ValueError, match=message):
        EventColumns.of(**(cols | change))


def test_a_period_that_ends_before_it_starts_is_refused() -> None:
    with pytest.raises(ValueError, match="must end after it starts"):
        kpis([], T0, T0, AREAS)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 7200), st.integers(1, 4), st.sampled_from(["raised", "cleared"])),
        max_size=80,
    ),
    st.randoms(use_true_random=False),
)
def test_report_does_not_depend_on_the_order_of_the_events(
    rows: list[tuple[int, int, str]], rnd: Any
) -> None:
    full = [(float(t), p, k, 1 + p % 4, "HH") for t, p, k in rows]
    shuffled = list(full)
    rnd.shuffle(shuffled)
    assert _report(full, 600, 6600) == _report(shuffled, 600, 6600)
