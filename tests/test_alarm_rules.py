"""Alarm rules as data: validation names the point and the values, gas detectors get the
GB/T 50493-2019 setpoints, rules come from the config file and lay out as dense columns."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from alarms.gas import OXYGEN_PCT_VOL, GasRuleError, gas_setpoints
from alarms.model import AlarmClass, Condition, Priority
from alarms.rules import (
    NEVER_NS,
    AlarmSettings,
    BadQuality,
    PointRule,
    RuleArrays,
    RuleError,
    RuleOverride,
    Stale,
    alarm_settings,
    rules_from_config,
)
from streams.config import parse_config


def _error(**kw: object) -> str:
    with pytest.raises(ValidationError) as info:
        PointRule.model_validate({"point": 7, "tag": "E1/LT-1", **kw})
    return str(info.value)


# ---------------------------------------------------------------------------------------------
# Validation


def test_h_above_hh_is_refused_naming_point_and_values() -> None:
    assert "point E1/LT-1: H 60 must be below HH 50" in _error(hh=50, h=60)


def test_ll_above_l_is_refused() -> None:
    assert "LL 30 must be below L 20" in _error(l=20, ll=30)


def test_order_is_checked_across_missing_limits() -> None:
    assert "L 95 must be below HH 90" in _error(hh=90, l=95)


def test_deadband_larger_than_gap_to_next_limit_is_refused() -> None:
    msg = _error(hh=90, h=80, deadband=15)
    assert "deadband 15 of HH 90 is larger than the gap 10 to H 80" in msg


def test_percent_deadband_is_checked_against_the_gap_too() -> None:
    msg = _error(h=60, l=50, range=(0, 100), deadband_pct={"l": 20})
    assert "deadband 20 of L 50 is larger than the gap 10 to H 60" in msg


def test_negative_delays_are_refused() -> None:
    assert "on_delay_s -1 must be between 0 and 86400 s" in _error(h=1, on_delay_s=-1)
    assert "off_delay_s -0.5 must be between 0" in _error(h=1, off_delay_s=-0.5)


def test_negative_deadband_is_refused() -> None:
    assert "deadband -1 of H must not be negative" in _error(h=1, deadband={"h": -1})


def test_percent_deadband_needs_a_range() -> None:
    assert "deadband_pct needs the instrument range" in _error(h=1, deadband_pct=1)


def test_both_absolute_and_percent_deadband_for_one_limit_is_refused() -> None:
    assert "give deadband or deadband_pct for H, not both" in _error(
        h=50, range=(0, 100), deadband={"h": 1}, deadband_pct={"h": 1}
    )
    assert "for all limits, not both" in _error(h=50, range=(0, 100), deadband=1, deadband_pct=1)


def test_limit_outside_the_instrument_range_is_refused() -> None:
    assert "HH 120 is outside the instrument range [0, 100]" in _error(hh=120, range=(0, 100))


def test_forecast_without_a_high_limit_is_refused() -> None:
    assert "forecast needs an H or HH limit" in _error(l=1, forecast={"window_s": 60})


def test_stale_period_must_be_positive() -> None:
    assert "period_s" in _error(stale={"period_s": 0})


@given(st.lists(st.one_of(st.none(), st.floats(-1e6, 1e6)), min_size=4, max_size=4))
def test_rule_accepts_limits_exactly_when_strictly_descending(values: list[float | None]) -> None:
    hh, h, low, ll = values
    present = [v for v in values if v is not None]
    ordered = all(a > b for a, b in itertools.pairwise(present))
    try:
        PointRule(point=1, hh=hh, h=h, l=low, ll=ll)
    except ValidationError as exc:
        assert not ordered
        assert "must be below" in str(exc)
    else:
        assert ordered


def test_deadband_per_limit_and_percent_of_range_resolve_to_absolute() -> None:
    r = PointRule(point=1, hh=90, h=80, l=20, range=(0, 200), deadband_pct=1, deadband={"h": 3})
    assert r.deadband_of("h") == 3
    assert r.deadband_of("hh") == pytest.approx(2.0)
    assert r.deadband_of("ll") == pytest.approx(2.0)


def test_default_priorities_and_classes() -> None:
    r = PointRule(point=1, alarm_class=AlarmClass.GAS, hh=2, h=1)
    assert r.priority_of(Condition.HH) is Priority.EMERGENCY
    assert r.priority_of(Condition.H) is Priority.HIGH
    assert r.priority_of(Condition.L) is Priority.HIGH
    assert r.priority_of(Condition.LL) is Priority.EMERGENCY
    assert r.priority_of(Condition.STALE) is Priority.MEDIUM
    assert r.class_of(Condition.HH) is AlarmClass.GAS
    assert r.class_of(Condition.BAD_QUALITY) is AlarmClass.QUALITY


# ---------------------------------------------------------------------------------------------
# Gas setpoints, GB/T 50493-2019 5.5.2


def test_flammable_percent_lel_defaults_are_25_and_50() -> None:
    sp = gas_setpoints("LPG", "%LEL")
    assert (sp.h, sp.hh, sp.l) == (25.0, 50.0, None)
    assert "5.5.2" in sp.source


def test_toxic_mg_m3_defaults_are_one_and_two_oel() -> None:
    sp = gas_setpoints("Cl2", "mg/m3")
    assert (sp.h, sp.hh) == (1.0, 2.0)
    sp = gas_setpoints("氨气", "mg/m³")
    assert (sp.h, sp.hh) == (20.0, 40.0)
    assert "S20" in sp.source


def test_toxic_ppm_defaults_convert_the_oel_with_the_molar_volume() -> None:
    sp = gas_setpoints("H2S", "ppm")
    assert sp.h == pytest.approx(10.0 * 24.45 / 34.08)
    assert sp.hh == pytest.approx(2 * 10.0 * 24.45 / 34.08)


def test_toxic_defaults_from_idlh_are_5_and_10_percent() -> None:
    sp = gas_setpoints("NH3", "mg/m3", idlh_mg_m3=360.0)
    assert (sp.h, sp.hh) == pytest.approx((18.0, 36.0))


def test_oxygen_defaults_are_19_5_low_and_23_5_high() -> None:
    sp = gas_setpoints("O2", "%VOL")
    assert (sp.l, sp.h, sp.hh) == (OXYGEN_PCT_VOL[0], OXYGEN_PCT_VOL[1], None) == (19.5, 23.5, None)


def test_unknown_toxic_gas_has_no_defaults() -> None:
    with pytest.raises(GasRuleError, match="'XYZ' is not in the OEL table"):
        gas_setpoints("XYZ", "mg/m3")


# ---------------------------------------------------------------------------------------------
# From the config file

CONFIG = """\
[[enterprises]]
code = "E1"
name = "甲"
region = "320116"

  [[enterprises.devices]]
  code = "PLC1"
  protocol = "modbus"
  host = "127.0.0.1"
  period_s = 2.0

    [[enterprises.devices.points]]
    code = "LT-1"
    name = "液位"
    table = "holding"
    address = 0
    range = [0.0, 20.0]
    limits = { hh = 18.0, h = 16.0, l = 2.0 }

    [[enterprises.devices.points]]
    code = "GD-1"
    name = "可燃气体"
    kind = "gas"
    gas = "LPG"
    unit = "%LEL"
    table = "holding"
    address = 2  # float32: two registers each
    range = [0.0, 100.0]

    [[enterprises.devices.points]]
    code = "GT-1"
    name = "氯气"
    kind = "gas"
    gas = "Cl2"
    unit = "mg/m3"
    table = "holding"
    address = 4

  [[enterprises.devices]]
  code = "DCS1"
  protocol = "opcua"
  endpoint = "opc.tcp://127.0.0.1:4840"

    [[enterprises.devices.points]]
    code = "PT-1"
    name = "压力"
    node = "ns=2;s=PT"
    limits = { h = 1.6 }
"""
IDS = {("E1", "LT-1"): 1, ("E1", "GD-1"): 2, ("E1", "GT-1"): 3, ("E1", "PT-1"): 4}


def _by_tag(rules: list[PointRule]) -> dict[str, PointRule]:
    return {r.tag: r for r in rules}


def test_rules_from_config_take_limits_range_gas_defaults_and_device_period() -> None:
    rules = _by_tag(rules_from_config(parse_config(CONFIG), IDS))
    lt = rules["E1/LT-1"]
    assert (lt.point, lt.hh, lt.h, lt.l, lt.ll) == (1, 18.0, 16.0, 2.0, None)
    assert lt.alarm_class is AlarmClass.PROCESS and lt.range == (0.0, 20.0)
    # Stale after 3 periods of 2 s, and a grace of one period: the collector reports a lost
    # device (COMM_FAIL) within a period and its timeout (3 s), well before.
    assert lt.stale == Stale(period_s=2.0, periods=3.0, grace_s=2.0)
    assert lt.bad_quality == BadQuality(after_s=30.0)
    gd = rules["E1/GD-1"]
    assert (gd.h, gd.hh, gd.alarm_class) == (25.0, 50.0, AlarmClass.GAS)
    gt = rules["E1/GT-1"]
    assert (gt.h, gt.hh) == (1.0, 2.0)
    # OPC-UA reports on change only: a steady value is not stale.
    assert rules["E1/PT-1"].stale is None


def test_stale_waits_for_the_collector_to_report_a_lost_device() -> None:
    """The grace covers the time the point's collector may take to report its device lost,
    beyond the stale window, and one period more: a lost device is then one alarm on its link
    (which suppresses its points' COMM_FAIL) before any point is stale."""
    cfg = (
        CONFIG.replace("period_s = 2.0", "period_s = 1.0\n  timeout_s = 5.0")
        + """
  [[enterprises.devices]]
  code = "GW1"
  protocol = "mqtt"
  period_s = 10.0
    [[enterprises.devices.points]]
    code = "FT-1"
    name = "流量"

[alarms.points."E1/FT-1"]
stale_periods = 2.0

[mqtt]
"""
    )
    ids = {**IDS, ("E1", "FT-1"): 5}
    rules = _by_tag(rules_from_config(parse_config(cfg), ids))
    # Polled every 1 s with a 5 s timeout: lost within 6 s, 3 s past the stale window.
    assert rules["E1/LT-1"].stale == Stale(period_s=1.0, periods=3.0, grace_s=4.0)
    # A gateway is lost once quiet for 3 periods (30 s), 10 s past its 2-period window.
    assert rules["E1/FT-1"].stale == Stale(period_s=10.0, periods=2.0, grace_s=20.0)
    arrays = RuleArrays.build(rules.values())
    assert arrays.stale_after_ns[5] == 20 * 10**9
    assert arrays.on_delay_ns[5, Condition.STALE] == 20 * 10**9


def test_points_without_an_id_get_no_rule() -> None:
    rules = rules_from_config(parse_config(CONFIG), {("E1", "LT-1"): 5})
    assert [r.point for r in rules] == [5]


def test_alarm_settings_override_one_point_and_defaults_apply_to_all() -> None:
    settings = AlarmSettings.model_validate(
        {
            "defaults": {"on_delay_s": 3, "deadband_pct": 1, "stale_periods": 5},
            "points": {
                "E1/LT-1": {"h": 15, "off_delay_s": 10, "roc": {"limit_per_s": 0.5}},
                "E1/GT-1": {"idlh_mg_m3": 30},
            },
        }
    )
    rules = _by_tag(rules_from_config(parse_config(CONFIG), IDS, settings))
    lt = rules["E1/LT-1"]
    assert (lt.h, lt.hh, lt.on_delay_s, lt.off_delay_s) == (15, 18.0, 3, 10)
    assert lt.deadband_of("h") == pytest.approx(0.2)
    assert lt.roc is not None and lt.roc.limit_per_s == 0.5
    assert lt.stale == Stale(period_s=2.0, periods=5, grace_s=2.0)
    assert (rules["E1/GT-1"].h, rules["E1/GT-1"].hh) == pytest.approx((1.5, 3.0))
    # no range: the default percent deadband does not apply
    assert rules["E1/GT-1"].deadband_of("h") == 0


def test_the_signal_failure_band_is_a_default_with_a_per_point_override() -> None:
    # NAMUR NE 43 for 4–20 mA loops by default; a digital detector that reports its own bound up
    # to twice its span and never less than zero gets its own band.
    settings = alarm_settings({"points": {"E1/GD-1": {"signal_failure_pct": [0, 100]}}})
    rules = _by_tag(rules_from_config(parse_config(CONFIG), IDS, settings))
    a = RuleArrays.build(rules.values())
    assert (a.reading_lo[1], a.reading_hi[1]) == pytest.approx((-0.5, 21.25))  # LT-1, 0–20
    assert (a.reading_lo[2], a.reading_hi[2]) == (0, 200)  # GD-1, 0–100 %LEL
    with pytest.raises(RuleError) as info:
        alarm_settings({"points": {"E1/GD-1": {"signal_failure_pct": [-1, 5]}}})
    assert "[alarms].points.E1/GD-1.signal_failure_pct.0" in str(info.value)


def test_config_errors_are_collected_and_name_each_point() -> None:
    bad = CONFIG.replace('gas = "Cl2"', 'gas = "XYZ"').replace(
        '"%LEL"', '"%LEL"\n    limits = { h = 30.0 }'
    )
    settings = AlarmSettings(points={"E1/NOPE": RuleOverride(h=1), "E1/LT-1": RuleOverride(h=19)})
    with pytest.raises(RuleError) as info:
        rules_from_config(parse_config(bad), IDS, settings)
    msg = str(info.value)
    assert "E1/NOPE" in msg and "names no configured point" in msg
    assert "point E1/LT-1: H 19 must be below HH 18" in msg
    assert "point E1/GT-1: gas 'XYZ' is not in the OEL table" in msg
    assert "point E1/GD-1: H 30 %LEL is above the 一级 maximum 25 %LEL" in msg
    assert len(info.value.problems) == 4


def test_a_bad_alarms_table_is_refused_naming_key_and_value() -> None:
    with pytest.raises(RuleError) as info:
        alarm_settings(
            {"defaults": {"on_delay_s": "soon"}, "points": {"E1/LT-1": {"hh": 1, "x": 2}}}
        )
    msg = str(info.value)
    assert "[alarms].defaults.on_delay_s" in msg and "'soon'" in msg
    assert "[alarms].points.E1/LT-1.x: Extra inputs are not permitted" in msg


# ---------------------------------------------------------------------------------------------
# Dense columns


def test_rule_arrays_are_dense_by_point_id_with_nan_for_off() -> None:
    a = RuleArrays.build(
        [
            PointRule(point=3, hh=90, h=80, l=20, ll=10, deadband=2, on_delay_s=1.5),
            PointRule(point=1, l=5, stale=Stale(period_s=1), range=(0, 10)),
        ]
    )
    assert a.size == 4
    assert a.known.tolist() == [False, True, False, True]
    np.testing.assert_array_equal(a.limit[3], [90, 80, 20, 10])
    assert all(math.isnan(x) for x in a.limit[2])
    np.testing.assert_array_equal(a.set_level[3], [90, 80, -20, -10])
    np.testing.assert_array_equal(a.clear_level[3], [88, 78, -22, -12])
    assert a.on_delay_ns[3, Condition.H] == 1_500_000_000
    assert a.on_delay_ns[3, Condition.STALE] == 0
    assert a.stale_after_ns[1] == 3_000_000_000 and a.stale_after_ns[3] == NEVER_NS
    assert (a.range_lo[1], a.range_hi[1]) == (0, 10)
    assert a.priority[3, Condition.HH] == 1 and a.priority[3, Condition.H] == 2
    assert a.class_of(3, Condition.STALE) is AlarmClass.QUALITY


def test_two_rules_for_one_point_id_are_refused() -> None:
    with pytest.raises(RuleError, match="point id 2 has more than one rule"):
        RuleArrays.build([PointRule(point=2, h=1), PointRule(point=2, l=0)])
