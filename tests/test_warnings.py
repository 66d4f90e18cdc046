"""Early warnings 红/橙/黄/蓝: the rules on hand-built inputs, dedupe, and the disposal lifecycle
with an injected clock (pure code: no database, no sleeping)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alarms.model import AlarmClass, Condition, Priority
from alarms.warning_rules import (
    DEFAULT_RULES_PATH,
    WarningLevel,
    WarningRules,
    WarningRulesError,
    load_warning_rules,
    parse_warning_rules,
)
from alarms.warnings import (
    ActiveAlarm,
    Actor,
    AlarmCount,
    Duty,
    EnterpriseInputs,
    GasHazard,
    PointQuality,
    Recipient,
    SourceInputs,
    StepAction,
    TargetAt,
    Warning,
    WarningFinding,
    WarningInputError,
    WarningInputs,
    WarningPermissionError,
    WarningRowError,
    WarningState,
    WarningTransitionError,
    Wind,
    clear,
    close,
    evaluate_warnings,
    from_row,
    issue,
    next_due_ns,
    push,
    reconcile,
    review,
    set_condition,
    sign,
    submit_feedback,
    tick,
    to_row,
)

RULES = load_warning_rules()
S = 1_000_000_000
MIN = 60 * S
NOW = 1_750_000_000 * S  # the injected clock: every time below is relative to it

ENT_USER = Actor("zhang.san", "enterprise", "E1")
OTHER_ENT_USER = Actor("li.si", "enterprise", "E2")
OFFICER = Actor("wang.wu", "duty_officer")
RECIPIENTS = (
    Recipient(Duty.PRINCIPAL, "赵主任", "zhao"),
    Recipient(Duty.TECHNICAL, "钱工", "qian"),
    Recipient(Duty.OPERATIONAL, "孙班长", "sun"),
)


def alarm(
    point: int,
    condition: Condition,
    kind: str = "level",
    minutes_ago: float = 1,
    *,
    gas: GasHazard | None = None,
    feedback: bool = False,
    name: str = "",
) -> ActiveAlarm:
    return ActiveAlarm(
        point=point,
        code=f"P{point}",
        condition=condition,
        alarm_class=AlarmClass.GAS if kind == "gas" else AlarmClass.PROCESS,
        priority=Priority.HIGH,
        kind=kind,
        raised_at_ns=NOW - round(minutes_ago * MIN),
        name=name,
        gas=gas,
        has_feedback=feedback,
    )


def one_source(now: int = NOW, rules: WarningRules = RULES, **source: Any) -> list[WarningFinding]:
    enterprise = {
        k: source.pop(k) for k in ("production_state", "commitment_submitted") if k in source
    }
    inputs = WarningInputs(
        (EnterpriseInputs("E1", "某化工公司", (SourceInputs("HS1", **source),), **enterprise),)
    )
    return evaluate_warnings(inputs, rules, now)


def level_rule(findings: list[WarningFinding]) -> tuple[str, str] | None:
    assert len(findings) <= 1
    return (findings[0].level.value, findings[0].rule) if findings else None


def modified(change: Any) -> WarningRules:
    raw = RULES.model_dump(mode="json")
    change(raw)
    return WarningRules.model_validate(raw)


# ---------------------------------------------------------------------------------------------
# Rules as data


def test_default_rules_cover_every_level_and_each_value_has_a_source_tag() -> None:
    assert {r.level for r in RULES.rules} == set(WarningLevel)
    for r in RULES.rules:
        assert r.source.startswith("[D] DOMAIN.md §4.2"), r.id
    for level, d in RULES.lifecycle.deadlines.items():
        assert "DOMAIN.md §4.2" in d.source, level
    assert [d.sign_s for d in RULES.lifecycle.deadlines.values()] == [900, 1800, 3600, 86400]
    assert [c.code for c in RULES.lifecycle.escalation_chain] == [
        "enterprise",
        "county",
        "city",
        "province",
    ]
    assert {r.zh for r in RULES.lifecycle.reason_codes} == {
        "真实报警",
        "误报",
        "仪表故障",
        "检维修",
        "工艺波动",
    }


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("min_duration_s = 900", "min_duration_s = -5", "greater than or equal to 0"),
        ('kind = "repeated_alarms"', 'kind = "gut_feeling"', "gut_feeling"),
        ('id = "orange.repeated_alarms"', 'id = "red.concurrent_critical"', "used twice"),
        ('work_types = ["hot_work"', 'work_types = ["juggling"', "juggling"),
        ("[lifecycle.deadlines.blue]", "[lifecycle.deadlines.purple]", "purple"),
        ('conditions = ["H", "L"]', 'conditions = ["H", "ROC"]', "ROC"),
        ("min_count = 5", "min_count = 5\nthreshold = 3", "threshold"),
        ('["maintenance", "stopped"]', '["maintenance", "holiday"]', "holiday"),
    ],
)
def test_bad_rules_file_names_the_key_and_the_value(old: str, new: str, message: str) -> None:
    text = DEFAULT_RULES_PATH.read_text(encoding="utf-8")
    assert old in text
    with pytest.raises(WarningRulesError, match=r"rules\.toml") as err:
        parse_warning_rules(text.replace(old, new, 1), "rules.toml")
    assert message in str(err.value)


def test_deadline_missing_for_a_level_is_refused() -> None:
    text = DEFAULT_RULES_PATH.read_text(encoding="utf-8")
    cut = text[: text.index("[lifecycle.deadlines.blue]")]
    with pytest.raises(WarningRulesError, match=r"deadlines missing for level\(s\) \['blue'\]"):
        parse_warning_rules(cut)


def test_unreadable_rules_file_is_a_clear_error(tmp_path: Any) -> None:
    with pytest.raises(WarningRulesError, match="cannot read"):
        load_warning_rules(tmp_path / "absent.toml")


# ---------------------------------------------------------------------------------------------
# 红


def test_red_when_two_indicator_kinds_are_in_hh_ll_at_once() -> None:
    found = one_source(
        alarms=(alarm(1, Condition.HH, "level", 3), alarm(2, Condition.LL, "pressure", 1))
    )
    assert level_rule(found) == ("red", "red.concurrent_critical")
    assert found[0].since_ns == NOW - 1 * MIN  # when the second kind joined
    assert [e.params["point"] for e in found[0].evidence] == ["P1", "P2"]


def test_red_counts_a_level_2_gas_alarm_as_an_indicator_kind() -> None:
    found = one_source(
        alarms=(
            alarm(1, Condition.HH, "temperature"),
            alarm(2, Condition.HH, "gas", gas=GasHazard.FLAMMABLE),
        )
    )
    assert level_rule(found) == ("red", "red.concurrent_critical")


@pytest.mark.parametrize(
    "alarms",
    [
        (alarm(1, Condition.HH, "level"), alarm(2, Condition.HH, "level")),  # same kind twice
        (alarm(1, Condition.HH, "level"), alarm(2, Condition.H, "pressure")),  # one is only H
        (alarm(1, Condition.HH, "gas"), alarm(2, Condition.H, "gas")),  # 二级 + 一级
    ],
)
def test_no_red_on_near_misses_of_concurrent_critical(alarms: tuple[ActiveAlarm, ...]) -> None:
    found = one_source(alarms=alarms)
    assert all(f.level is not WarningLevel.RED for f in found)


def test_critical_alarms_at_two_different_sources_are_not_concurrent() -> None:
    inputs = WarningInputs(
        (
            EnterpriseInputs(
                "E1",
                sources=(
                    SourceInputs("HS1", alarms=(alarm(1, Condition.HH, "level"),)),
                    SourceInputs("HS2", alarms=(alarm(2, Condition.LL, "pressure"),)),
                ),
            ),
        )
    )
    assert evaluate_warnings(inputs, RULES, NOW) == []


def _wind(toward: bool | None) -> dict[str, Any]:
    """A west wind toward the school 1.5 km east (True), an east wind away from it (False), or
    no wind measured (None)."""
    if toward is None:
        return {"winds": (), "targets": (SCHOOL,)}
    return {"winds": (Wind(270.0 if toward else 90.0, 3.0),), "targets": (SCHOOL,)}


def test_red_when_a_toxic_level_2_gas_alarm_meets_wind_toward_a_sensitive_target() -> None:
    toxic = alarm(1, Condition.HH, "gas", gas=GasHazard.TOXIC, name="氯气检测器")
    found = one_source(alarms=(toxic,), **_wind(True))
    assert level_rule(found) == ("red", "red.toxic_gas_toward_target")
    assert found[0].evidence[-1].zh.startswith("风向指向敏感目标 演示镇中心小学")
    assert "氯气检测器(P1) 气体浓度二级报警" in found[0].evidence[0].zh


@pytest.mark.parametrize(
    ("gas_alarm", "wind"),
    [
        (alarm(1, Condition.HH, "gas", gas=GasHazard.TOXIC), False),
        (alarm(1, Condition.HH, "gas", gas=GasHazard.TOXIC), None),
        (alarm(1, Condition.HH, "gas", gas=GasHazard.FLAMMABLE), True),
        (alarm(1, Condition.H, "gas", gas=GasHazard.TOXIC), True),
    ],
)
def test_no_red_for_gas_without_all_of_toxic_level_2_and_wind(
    gas_alarm: ActiveAlarm, wind: bool | None
) -> None:
    found = one_source(alarms=(gas_alarm,), **_wind(wind))
    assert all(f.level is not WarningLevel.RED for f in found)


SCHOOL = TargetAt("演示镇中心小学", bearing_deg=90.0, distance_m=1500.0)  # east of the tanks
HOMES = TargetAt("演示村居民区", bearing_deg=0.0, distance_m=2000.0)  # north


@pytest.mark.parametrize(
    ("wind", "targets", "toward"),
    [
        (Wind(from_deg=270.0, speed_m_s=3.0), (SCHOOL, HOMES), ["演示镇中心小学"]),  # west wind
        (Wind(from_deg=250.0, speed_m_s=3.0), (SCHOOL,), ["演示镇中心小学"]),  # 20° off downwind
        (Wind(from_deg=240.0, speed_m_s=3.0), (SCHOOL,), []),  # 30° off: outside the sector
        (Wind(from_deg=90.0, speed_m_s=3.0), (SCHOOL, HOMES), []),  # away from both
        (Wind(from_deg=180.0, speed_m_s=3.0), (HOMES,), ["演示村居民区"]),  # a south wind
        (Wind(from_deg=90.0, speed_m_s=0.2), (HOMES, SCHOOL), ["演示镇中心小学", "演示村居民区"]),
        (Wind(270.0, 3.0), (TargetAt("远处学校", 90.0, 3500.0),), []),  # beyond the 3 km reach
        (None, (SCHOOL,), []),  # no wind measured: unknown
    ],
)
def test_red_when_the_wind_blows_toward_a_sensitive_target_within_reach(
    wind: Wind | None, targets: tuple[TargetAt, ...], toward: list[str]
) -> None:
    toxic = alarm(1, Condition.HH, "gas", gas=GasHazard.TOXIC, name="氯气检测器")
    found = one_source(alarms=(toxic,), winds=(wind,) if wind else (), targets=targets)
    if not toward:
        assert all(f.level is not WarningLevel.RED for f in found)
        return
    assert level_rule(found) == ("red", "red.toxic_gas_toward_target")
    assert wind is not None
    calm = wind.speed_m_s < 0.5
    code = "calm_target" if calm else "wind_target"
    named = [e.params["target"] for e in found[0].evidence if e.code == code]
    assert named == toward  # nearest first
    first = found[0].evidence[1]
    assert first.zh.startswith("静风（" if calm else f"风向指向敏感目标 {toward[0]}（")
    assert (first.params["wind_from_deg"], first.params["wind_m_s"]) == (
        wind.from_deg,
        wind.speed_m_s,
    )
    if wind == Wind(270.0, 3.0) and targets[0] == SCHOOL:
        assert first.zh == "风向指向敏感目标 演示镇中心小学（1500 米；风自 270°，3.0 米/秒）"


def test_a_target_counts_while_the_wind_blew_toward_it_at_any_look_in_the_window() -> None:
    # The desk's looks at a south wind that turned west for one gust: the gust carried the gas
    # toward the school, and is the wind named. A wind kept away names nothing.
    toxic = alarm(1, Condition.HH, "gas", gas=GasHazard.TOXIC, name="氯气检测器")
    south, west = Wind(180.0, 3.0), Wind(268.0, 4.2)
    found = one_source(alarms=(toxic,), winds=(south, west, south, south), targets=(SCHOOL,))
    (school,) = [e for e in found[0].evidence if e.code == "wind_target"]
    assert school.params == {
        "target": SCHOOL.name, "distance_m": 1500, "wind_from_deg": 268, "wind_m_s": 4.2,
    }  # fmt: skip
    kept_away = one_source(alarms=(toxic,), winds=(south, south), targets=(SCHOOL,))
    assert all(f.level is not WarningLevel.RED for f in kept_away)


def test_red_when_an_alarm_rises_during_hot_work_in_the_same_unit() -> None:
    found = one_source(
        alarms=(alarm(1, Condition.H, "temperature"),), special_work=frozenset({"hot_work"})
    )
    assert level_rule(found) == ("red", "red.alarm_during_special_work")
    assert found[0].evidence[-1].zh == "正在进行：动火作业"
    assert found[0].evidence[-1].params == {"works": ["hot_work"]}


def test_no_red_for_special_work_not_listed_or_without_an_alarm() -> None:
    assert one_source(alarms=(alarm(1, Condition.H),), special_work=frozenset({"lifting"})) == []
    assert one_source(special_work=frozenset({"hot_work"})) == []


# ---------------------------------------------------------------------------------------------
# 橙


def test_orange_when_a_high_high_alarm_lasts_past_t1_without_feedback() -> None:
    found = one_source(alarms=(alarm(1, Condition.HH, minutes_ago=15.01),))
    assert level_rule(found) == ("orange", "orange.critical_unhandled")
    assert found[0].since_ns == NOW - round(15.01 * MIN) + 15 * MIN


@pytest.mark.parametrize(
    "near_miss",
    [alarm(1, Condition.HH, minutes_ago=15), alarm(1, Condition.LL, minutes_ago=40, feedback=True)],
)
def test_no_orange_at_exactly_t1_or_with_disposal_feedback(near_miss: ActiveAlarm) -> None:
    assert one_source(alarms=(near_miss,)) == []


def test_orange_for_repeated_alarms_at_one_point_within_24h() -> None:
    found = one_source(alarm_counts_24h=(AlarmCount(7, "FT-7", 5, "进料流量"),))
    assert level_rule(found) == ("orange", "orange.repeated_alarms")
    assert found[0].evidence[0].zh == "进料流量(FT-7) 24小时内报警5次"
    assert one_source(alarm_counts_24h=(AlarmCount(7, "FT-7", 4),)) == []


# ---------------------------------------------------------------------------------------------
# 黄


def test_yellow_when_a_level_1_gas_alarm_lasts_past_t2() -> None:
    found = one_source(
        alarms=(alarm(1, Condition.H, "gas", minutes_ago=31, gas=GasHazard.FLAMMABLE),)
    )
    assert level_rule(found) == ("yellow", "yellow.warning_persisting")
    assert "一级报警，已持续31分钟" in found[0].evidence[0].zh
    assert "level-1 alarm for 31 min" in found[0].evidence[0].en
    assert one_source(alarms=(alarm(1, Condition.H, "gas", minutes_ago=30),)) == []


def test_yellow_for_a_grade_1_source_in_maintenance_with_special_work() -> None:
    work = frozenset({"lifting"})
    found = one_source(grade=1, production_state="maintenance", special_work=work)
    assert level_rule(found) == ("yellow", "yellow.grade1_state_with_special_work")
    assert [e.zh for e in found[0].evidence] == ["生产状态：检维修", "正在进行：吊装作业"]
    # The source's own state overrides the enterprise's.
    state = SourceInputs("HS1", grade=1, production_state="startup", special_work=work)
    inputs = WarningInputs((EnterpriseInputs("E1", sources=(state,), production_state="normal"),))
    assert level_rule(evaluate_warnings(inputs, RULES, NOW)) == (
        "yellow",
        "yellow.grade1_state_with_special_work",
    )


@pytest.mark.parametrize(
    "source",
    [
        {"grade": 2, "production_state": "maintenance", "special_work": frozenset({"lifting"})},
        {"grade": 1, "production_state": "normal", "special_work": frozenset({"lifting"})},
        {"grade": 1, "production_state": "shutdown", "special_work": frozenset()},
        {"grade": 1, "production_state": "shutdown"},
        {"grade": None, "production_state": "shutdown", "special_work": frozenset({"lifting"})},
    ],
)
def test_no_yellow_state_rule_on_near_misses(source: dict[str, Any]) -> None:
    assert one_source(**source) == []


# ---------------------------------------------------------------------------------------------
# 蓝


def _in_state(state: str | None, ended_min_ago: float | None) -> list[WarningFinding]:
    """Source HS1 in `state`, its planned end that many minutes ago (None: none given)."""
    end = None if ended_min_ago is None else NOW - round(ended_min_ago * MIN)
    source = SourceInputs("HS1", production_state=state, state_planned_end_ns=end)
    return evaluate_warnings(
        WarningInputs((EnterpriseInputs("E1", sources=(source,)),)), RULES, NOW
    )


def test_blue_when_maintenance_lasts_past_its_planned_end_and_the_grace() -> None:
    found = _in_state("maintenance", 45)
    assert level_rule(found) == ("blue", "blue.state_overdue")
    (evidence,) = found[0].evidence
    assert evidence.zh == "检维修已超过计划结束时间45分钟"
    assert evidence.en == "maintenance 45 min past its planned end"
    assert evidence.params == {
        "state": "maintenance",
        "planned_end_ns": NOW - 45 * MIN,
        "overdue_s": 2700,
    }
    assert found[0].since_ns == NOW - 15 * MIN  # once the 30 min of grace were over
    assert level_rule(_in_state("stopped", 31)) == ("blue", "blue.state_overdue")


@pytest.mark.parametrize(
    ("state", "ended_min_ago"),
    [
        ("maintenance", 30),  # within the grace
        ("maintenance", -60),  # the planned end is ahead
        ("maintenance", None),  # no planned end given
        ("startup_shutdown", 120),  # alarms are not suppressed in start-up/shutdown
        ("normal", 120),
        (None, 120),
    ],
)
def test_no_state_overdue_warning_on_near_misses(
    state: str | None, ended_min_ago: float | None
) -> None:
    assert _in_state(state, ended_min_ago) == []


def test_blue_when_data_is_interrupted_longer_than_x() -> None:
    lost = PointQuality(3, "PT-3", "塔顶压力", offline_since_ns=NOW - 45 * MIN)
    found = one_source(quality=(lost,))
    assert level_rule(found) == ("blue", "blue.data_interruption")
    assert found[0].evidence[0].zh == "塔顶压力(PT-3) 数据中断45分钟"
    assert found[0].evidence[0].params == {"point": "PT-3", "name": "塔顶压力", "duration_s": 2700}
    assert one_source(quality=(PointQuality(3, "PT-3", offline_since_ns=NOW - 30 * MIN),)) == []


def test_blue_when_a_camera_is_offline_longer_than_x() -> None:
    found = one_source(cameras_offline={"CAM-1": NOW - 2 * 60 * MIN - 5 * MIN})
    assert level_rule(found) == ("blue", "blue.video_offline")
    assert found[0].evidence[0].zh == "视频 CAM-1 离线2小时5分钟"
    assert found[0].evidence[0].en == "camera CAM-1 offline for 2 h 5 min"
    assert one_source(cameras_offline={"CAM-1": NOW - 29 * MIN}) == []


def test_blue_for_stuck_and_out_of_range_values_as_soon_as_reported() -> None:
    stuck = one_source(quality=(PointQuality(4, "TT-4", stuck_since_ns=NOW),))
    assert level_rule(stuck) == ("blue", "blue.stuck_value")
    oor = one_source(quality=(PointQuality(4, "TT-4", out_of_range_since_ns=NOW - MIN),))
    assert level_rule(oor) == ("blue", "blue.out_of_range")
    assert one_source(quality=(PointQuality(4, "TT-4"),)) == []
    assert one_source(quality=(PointQuality(4, "TT-4", stuck_since_ns=NOW + S),)) == []


def test_blue_for_a_missing_daily_commitment_goes_to_the_enterprise_not_a_source() -> None:
    found = one_source(commitment_submitted=False)
    assert [(f.hazard_source, f.rule) for f in found] == [(None, "blue.missing_commitment")]
    assert one_source(commitment_submitted=None) == []
    assert one_source(commitment_submitted=True) == []


# ---------------------------------------------------------------------------------------------
# Highest level wins, one finding per source


def test_highest_level_wins_and_the_others_are_listed_highest_first() -> None:
    found = one_source(
        alarms=(alarm(1, Condition.HH, minutes_ago=20), alarm(1, Condition.H, minutes_ago=40)),
        quality=(PointQuality(3, "PT-3", offline_since_ns=NOW - 60 * MIN),),
    )
    assert level_rule(found) == ("orange", "orange.critical_unhandled")
    assert [(h.level.value, h.rule) for h in found[0].also] == [
        ("yellow", "yellow.warning_persisting"),
        ("blue", "blue.data_interruption"),
    ]


def test_highest_level_wins_whatever_the_rule_order_in_the_file() -> None:
    reversed_rules = RULES.model_copy(update={"rules": list(reversed(RULES.rules))})
    found = one_source(
        rules=reversed_rules,
        alarms=(alarm(1, Condition.HH, minutes_ago=20),),
        quality=(PointQuality(3, "PT-3", offline_since_ns=NOW - 60 * MIN),),
    )
    assert level_rule(found) == ("orange", "orange.critical_unhandled")


def test_first_rule_in_the_file_names_the_warning_among_equal_levels() -> None:
    found = one_source(
        alarms=(
            alarm(1, Condition.HH, "level"),
            alarm(2, Condition.HH, "gas", gas=GasHazard.TOXIC),
        ),
        special_work=frozenset({"confined_space"}),
        **_wind(True),
    )
    assert found[0].rule == "red.concurrent_critical"
    assert [h.rule for h in found[0].also] == [
        "red.toxic_gas_toward_target",
        "red.alarm_during_special_work",
    ]


def test_each_source_and_enterprise_gets_its_own_finding() -> None:
    inputs = WarningInputs(
        (
            EnterpriseInputs(
                "E1",
                sources=(
                    SourceInputs("HS1", alarms=(alarm(1, Condition.HH, minutes_ago=20),)),
                    SourceInputs("HS2", quality=(PointQuality(2, "P2", stuck_since_ns=NOW),)),
                ),
                commitment_submitted=False,
            ),
            EnterpriseInputs(
                "E2", sources=(SourceInputs(None, alarms=(alarm(5, Condition.L, minutes_ago=31),)),)
            ),
        )
    )
    keys = sorted(f.key for f in evaluate_warnings(inputs, RULES, NOW))
    assert keys == ["E1/-/blue", "E1/HS1/orange", "E1/HS2/blue", "E2/-/yellow"]


def test_disabled_and_grade_limited_rules_do_not_fire() -> None:
    def edit(raw: dict[str, Any]) -> None:
        for r in raw["rules"]:
            if r["id"] == "orange.critical_unhandled":
                r["enabled"] = False
            if r["id"] == "yellow.warning_persisting":
                r["grades"] = [1, 2]

    rules = modified(edit)
    hh = alarm(1, Condition.HH, minutes_ago=40)
    h = alarm(1, Condition.H, minutes_ago=40)
    assert one_source(rules=rules, grade=3, alarms=(hh, h)) == []
    assert level_rule(one_source(rules=rules, grade=2, alarms=(hh, h))) == (
        "yellow",
        "yellow.warning_persisting",
    )


def test_thresholds_are_data() -> None:
    def edit(raw: dict[str, Any]) -> None:
        for r in raw["rules"]:
            if r["id"] == "orange.repeated_alarms":
                r["min_count"] = 2

    rules = modified(edit)
    assert level_rule(one_source(rules=rules, alarm_counts_24h=(AlarmCount(7, "F", 2),))) == (
        "orange",
        "orange.repeated_alarms",
    )


@pytest.mark.parametrize(
    ("enterprise", "message"),
    [
        (EnterpriseInputs("E1", production_state="dancing"), "unknown production state 'dancing'"),
        (
            EnterpriseInputs("E1", sources=(SourceInputs("HS1", special_work=frozenset({"x"})),)),
            r"unknown special work type\(s\) \['x'\]",
        ),
        (
            EnterpriseInputs("E1", sources=(SourceInputs("HS1"), SourceInputs("HS1"))),
            "hazard source 'HS1' appears twice",
        ),
    ],
)
def test_bad_inputs_are_refused_with_the_offending_value(
    enterprise: EnterpriseInputs, message: str
) -> None:
    with pytest.raises(WarningInputError, match=message):
        evaluate_warnings(WarningInputs((enterprise,)), RULES, NOW)


_alarms = st.lists(
    st.builds(
        alarm,
        st.integers(1, 4),
        st.sampled_from([Condition.HH, Condition.H, Condition.L, Condition.LL]),
        st.sampled_from(["level", "pressure", "gas"]),
        st.floats(0, 120),
        gas=st.sampled_from([None, GasHazard.TOXIC, GasHazard.FLAMMABLE]),
        feedback=st.booleans(),
    ),
    max_size=5,
)


@settings(max_examples=150, deadline=None)
@given(
    alarms=_alarms,
    wind=st.sampled_from([None, True, False]),
    work=st.sampled_from([None, frozenset(), frozenset({"hot_work"}), frozenset({"lifting"})]),
    offline=st.sampled_from([None, 10, 40]),
    count=st.integers(0, 7),
)
def test_the_finding_is_the_highest_level_any_single_rule_reaches(
    alarms: list[ActiveAlarm],
    wind: bool | None,
    work: frozenset[str] | None,
    offline: int | None,
    count: int,
) -> None:
    source: dict[str, Any] = {
        "grade": 1,
        "alarms": tuple(alarms),
        **_wind(wind),
        "special_work": work,
        "production_state": "maintenance",
        "alarm_counts_24h": (AlarmCount(1, "P1", count),),
        "quality": (
            PointQuality(
                9, "P9", offline_since_ns=None if offline is None else NOW - offline * MIN
            ),
        ),
    }
    alone = []
    for rule in RULES.rules:
        single = RULES.model_copy(update={"rules": [rule]})
        alone += one_source(rules=single, **dict(source))
    found = one_source(**dict(source))
    if not alone:
        assert found == []
        return
    best = max(f.level.rank for f in alone)
    assert found[0].level.rank == best
    assert sorted(h.rule for h in found[0].also) == sorted(
        f.rule for f in alone if f.rule != found[0].rule
    )


# ---------------------------------------------------------------------------------------------
# Dedupe


def orange_finding(source: str = "HS1") -> WarningFinding:
    inputs = WarningInputs(
        (
            EnterpriseInputs(
                "E1",
                sources=(SourceInputs(source, alarms=(alarm(1, Condition.HH, minutes_ago=20),)),),
            ),
        )
    )
    return evaluate_warnings(inputs, RULES, NOW)[0]


def red_finding() -> WarningFinding:
    found = one_source(
        alarms=(alarm(1, Condition.HH, "level", 20), alarm(2, Condition.LL, "pressure"))
    )
    return found[0]


def test_a_persisting_finding_issues_one_warning() -> None:
    first = reconcile([], [orange_finding()], NOW)
    assert [w.key for w in first.issued] == ["E1/HS1/orange"]
    again = reconcile(first.issued, [orange_finding()], NOW + MIN)
    assert again.issued == [] and again.updated == []


def test_a_rise_in_level_issues_a_new_warning_and_the_lower_one_still_holds() -> None:
    orange = reconcile([], [orange_finding()], NOW).issued[0]
    result = reconcile([orange], [red_finding()], NOW + MIN)
    assert [w.key for w in result.issued] == ["E1/HS1/red"]
    assert result.updated == []  # the orange one's condition still holds (it is covered)


def test_a_drop_in_level_issues_nothing_while_the_higher_warning_is_live() -> None:
    red = reconcile([], [red_finding()], NOW).issued[0]
    dropped = reconcile([red], [orange_finding()], NOW + MIN)
    assert dropped.issued == []
    (ended,) = dropped.updated
    assert not ended.condition_active and ended.steps[-1].action is StepAction.CONDITION_ENDED
    cleared = clear(ended, OFFICER, NOW + 2 * MIN, RULES, "现场核实已降级")
    assert [w.key for w in reconcile([cleared], [orange_finding()], NOW + 3 * MIN).issued] == [
        "E1/HS1/orange"
    ]


def test_condition_end_and_return_are_recorded_on_the_live_warning() -> None:
    w = reconcile([], [orange_finding()], NOW).issued[0]
    (ended,) = reconcile([w], [], NOW + MIN).updated
    (resumed,) = reconcile([ended], [orange_finding()], NOW + 2 * MIN).updated
    assert resumed.condition_active
    assert [s.action for s in resumed.steps] == [
        StepAction.ISSUED,
        StepAction.CONDITION_ENDED,
        StepAction.CONDITION_RESUMED,
    ]
    assert [s.at_ns for s in resumed.steps] == [NOW, NOW + MIN, NOW + 2 * MIN]


def test_a_finding_after_the_warning_was_cleared_issues_a_new_one() -> None:
    w = reconcile([], [orange_finding()], NOW).issued[0]
    gone = clear(w, OFFICER, NOW + MIN, RULES, "误报, 已核实")
    assert len(reconcile([gone], [orange_finding()], NOW + 2 * MIN).issued) == 1


# ---------------------------------------------------------------------------------------------
# Lifecycle


def issued(finding: WarningFinding | None = None, at: int = NOW) -> Warning:
    return issue(finding or orange_finding(), at)


def test_the_whole_disposal_lifecycle_records_who_when_and_what() -> None:
    w = issued()
    w = push(w, RECIPIENTS, NOW + 1 * S, RULES)
    w = sign(w, ENT_USER, NOW + 2 * MIN, RULES, "已收到")
    w = submit_feedback(
        w, ENT_USER, NOW + 10 * MIN, RULES, "process_fluctuation", "降低进料量, 液位已回落"
    )
    w = set_condition(w, False, NOW + 12 * MIN)
    w = clear(w, ENT_USER, NOW + 13 * MIN, RULES, "已恢复正常")
    w = review(w, OFFICER, NOW + 60 * MIN, RULES, "现场核查属实")
    w = close(w, OFFICER, NOW + 61 * MIN, RULES)
    assert w.state is WarningState.CLOSED
    assert w.feedback is not None and w.feedback.reason == "process_fluctuation"
    assert [(s.action.value, s.username, s.role, (s.at_ns - NOW) // S) for s in w.steps] == [
        ("issued", "system", "system", 0),
        ("pushed", "system", "system", 1),
        ("signed", "zhang.san", "enterprise", 120),
        ("feedback", "zhang.san", "enterprise", 600),
        ("condition_ended", "system", "system", 720),
        ("cleared", "zhang.san", "enterprise", 780),
        ("reviewed", "wang.wu", "duty_officer", 3600),
        ("closed", "wang.wu", "duty_officer", 3660),
    ]
    assert w.steps[1].detail["recipients"][1] == {
        "duty": "technical",
        "name": "钱工",
        "username": "qian",
    }
    assert w.steps[3].comment == "降低进料量, 液位已回落"
    assert w.steps[6].comment == "现场核查属实"


def test_push_names_the_missing_responsible_duties() -> None:
    w = push(issued(), RECIPIENTS[:1], NOW, RULES)
    assert w.steps[-1].detail["missing_duties"] == ["operational", "technical"]


def signed() -> Warning:
    return sign(push(issued(), RECIPIENTS, NOW, RULES), ENT_USER, NOW + MIN, RULES)


def fed_back() -> Warning:
    return submit_feedback(signed(), ENT_USER, NOW + 2 * MIN, RULES, "false_alarm", "校验仪表")


@pytest.mark.parametrize(
    ("step", "code", "message"),
    [
        (
            lambda: push(push(issued(), RECIPIENTS, NOW, RULES), RECIPIENTS, NOW, RULES),
            "already_pushed",
            "already pushed",
        ),
        (lambda: push(issued(), (), NOW, RULES), "no_recipients", "包保责任人"),
        (lambda: sign(signed(), ENT_USER, NOW, RULES), "already_signed", "already signed"),
        (
            lambda: submit_feedback(issued(), ENT_USER, NOW, RULES, "false_alarm", "x"),
            "not_signed",
            "before giving feedback",
        ),
        (
            lambda: submit_feedback(signed(), ENT_USER, NOW, RULES, "bad_luck", "x"),
            "unknown_reason",
            r"unknown reason code 'bad_luck'; known: real_alarm \(真实报警\)",
        ),
        (
            lambda: submit_feedback(signed(), ENT_USER, NOW, RULES, "false_alarm", "  "),
            "no_measures",
            "measures",
        ),
        (
            lambda: submit_feedback(fed_back(), ENT_USER, NOW, RULES, "false_alarm", "x"),
            "feedback_given",
            "already given",
        ),
        (lambda: clear(signed(), ENT_USER, NOW, RULES), "no_feedback", "feedback before clearing"),
        (lambda: clear(fed_back(), ENT_USER, NOW, RULES), "condition_active", "condition persists"),
        (
            lambda: clear(fed_back(), OFFICER, NOW, RULES, " "),
            "reason_required",
            "must give a reason",
        ),
        (lambda: review(fed_back(), OFFICER, NOW, RULES), "not_cleared", "only a cleared"),
        (
            lambda: close(clear(fed_back(), OFFICER, NOW, RULES, "r"), OFFICER, NOW, RULES),
            "not_reviewed",
            "review it",
        ),
        (
            lambda: clear(clear(fed_back(), OFFICER, NOW, RULES, "r"), OFFICER, NOW, RULES, "r"),
            "already_cleared",
            "already cleared",
        ),
    ],
)
def test_invalid_transitions_raise_a_typed_error_with_a_clear_message(
    step: Any, code: str, message: str
) -> None:
    with pytest.raises(WarningTransitionError, match=message) as err:
        step()
    assert err.value.code == code
    assert not isinstance(err.value, WarningPermissionError)


@pytest.mark.parametrize(
    "step",
    [
        lambda: sign(issued(), OTHER_ENT_USER, NOW, RULES),
        lambda: sign(issued(), OFFICER, NOW, RULES),
        lambda: submit_feedback(
            signed(), Actor("x", "enterprise", None), NOW, RULES, "false_alarm", "m"
        ),
        lambda: clear(set_condition(fed_back(), False, NOW), OTHER_ENT_USER, NOW, RULES),
        lambda: clear(fed_back(), Actor("e", "expert"), NOW, RULES, "reason"),
        lambda: review(clear(fed_back(), OFFICER, NOW, RULES, "r"), ENT_USER, NOW, RULES),
    ],
)
def test_only_the_enterprise_signs_and_answers_and_only_the_regulator_reviews(step: Any) -> None:
    with pytest.raises(WarningPermissionError, match="cannot") as err:
        step()
    assert err.value.code == "forbidden"


def test_regulator_may_clear_while_the_condition_persists_with_a_reason() -> None:
    w = clear(signed(), OFFICER, NOW + 5 * MIN, RULES, "已现场核查, 误报")
    assert w.state is WarningState.CLEARED
    assert w.steps[-1].comment == "已现场核查, 误报"
    assert w.steps[-1].detail == {"condition_active": True}


# ---------------------------------------------------------------------------------------------
# Deadlines and escalation (injected clock)


def escalations(w: Warning) -> list[tuple[str, str, int]]:
    return [
        (s.action.value, s.detail["to"], (s.detail["due_at_ns"] - NOW) // MIN)
        for s in w.steps
        if s.action in (StepAction.ESCALATED, StepAction.REMINDED)
    ]


def test_an_unsigned_red_warning_escalates_one_level_per_15_minutes() -> None:
    w = push(issued(red_finding()), RECIPIENTS, NOW, RULES)
    assert next_due_ns(w, RULES) == NOW + 15 * MIN
    assert tick(w, NOW + 15 * MIN - 1, RULES) is w
    w = tick(w, NOW + 15 * MIN, RULES)
    assert (w.escalation, w.overdue) == (1, ("sign",))
    assert escalations(w) == [("escalated", "county", 15)]
    assert tick(w, NOW + 29 * MIN, RULES) is w  # nothing more until the next period
    w = tick(w, NOW + 30 * MIN, RULES)
    w = tick(w, NOW + 45 * MIN, RULES)
    w = tick(w, NOW + 60 * MIN, RULES)
    assert escalations(w) == [
        ("escalated", "county", 15),
        ("escalated", "city", 30),
        ("escalated", "province", 45),
        ("reminded", "province", 60),
    ]
    assert w.escalation == 3


def test_a_late_tick_catches_up_every_missed_escalation_at_once() -> None:
    w = tick(issued(red_finding()), NOW + 100 * MIN, RULES)
    assert escalations(w) == [
        ("escalated", "county", 15),
        ("escalated", "city", 30),
        ("escalated", "province", 45),
        ("reminded", "province", 90),
    ]
    assert w.steps[-1].detail["periods"] == 3  # 60, 75 and 90 min
    assert all(s.at_ns == NOW + 100 * MIN for s in w.steps[1:])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 120 * 60), min_size=1, max_size=12))
def test_escalation_depends_only_on_elapsed_time_not_on_tick_times(ticks: list[int]) -> None:
    w = issued(red_finding())
    for t in sorted(ticks):
        w = tick(w, NOW + t * S, RULES)
    periods = max(ticks) // (15 * 60)
    assert w.escalation == min(periods, 3)
    assert w.phase_periods == periods
    assert (w.overdue == ("sign",)) == (periods > 0)


def test_feedback_deadline_runs_from_signing_and_escalation_continues() -> None:
    w = tick(push(issued(), RECIPIENTS, NOW, RULES), NOW + 30 * MIN, RULES)  # orange: 30 min
    assert w.escalation == 1
    w = sign(w, ENT_USER, NOW + 40 * MIN, RULES)
    assert w.steps[-1].detail == {"late": True}
    assert next_due_ns(w, RULES) == NOW + 70 * MIN
    assert tick(w, NOW + 69 * MIN, RULES) is w
    w = tick(w, NOW + 70 * MIN, RULES)
    assert (w.escalation, w.overdue) == (2, ("sign", "feedback"))
    assert escalations(w)[-1] == ("escalated", "city", 70)
    assert w.steps[-1].detail["phase"] == "feedback"
    w = submit_feedback(w, ENT_USER, NOW + 80 * MIN, RULES, "real_alarm", "关闭进料阀")
    assert w.steps[-1].detail == {"reason": "real_alarm", "late": True}
    assert next_due_ns(w, RULES) is None
    assert tick(w, NOW + 1000 * MIN, RULES) is w


def test_a_blue_warning_has_a_day_to_be_signed() -> None:
    blue = one_source(quality=(PointQuality(4, "TT-4", stuck_since_ns=NOW),))[0]
    w = issued(blue)
    assert tick(w, NOW + 24 * 60 * MIN - 1, RULES) is w
    assert tick(w, NOW + 24 * 60 * MIN, RULES).escalation == 1


def test_deadlines_are_data() -> None:
    def edit(raw: dict[str, Any]) -> None:
        raw["lifecycle"]["deadlines"]["orange"]["sign_s"] = 60

    rules = modified(edit)
    assert tick(issued(), NOW + MIN, rules).escalation == 1
    assert tick(issued(), NOW + MIN, RULES).escalation == 0


def test_signing_in_time_stops_the_sign_deadline() -> None:
    w = sign(issued(), ENT_USER, NOW + 5 * MIN, RULES)
    assert w.steps[-1].detail == {"late": False}
    assert tick(w, NOW + 34 * MIN, RULES) is w  # feedback due at 35 min
    assert tick(w, NOW + 35 * MIN, RULES).overdue == ("feedback",)


# ---------------------------------------------------------------------------------------------
# Rows


def full_record() -> Warning:
    w = tick(push(issued(red_finding()), RECIPIENTS, NOW, RULES), NOW + 16 * MIN, RULES)
    w = sign(w, ENT_USER, NOW + 17 * MIN, RULES)
    w = submit_feedback(w, ENT_USER, NOW + 20 * MIN, RULES, "instrument_fault", "更换变送器")
    return replace(set_condition(w, False, NOW + 21 * MIN), id=42)


@pytest.mark.parametrize("make", [issued, signed, fed_back, full_record])
def test_row_round_trip_restores_the_same_warning_through_json(make: Any) -> None:
    w = make()
    row = to_row(w)
    restored = from_row(json.loads(json.dumps(row, ensure_ascii=False)))
    assert restored == w
    # The restored record keeps working: the lifecycle continues from where it was.
    assert next_due_ns(restored, RULES) == next_due_ns(w, RULES)


def test_row_carries_the_columns_the_store_indexes() -> None:
    row = to_row(full_record())
    assert (row["id"], row["key"], row["enterprise"], row["hazard_source"]) == (
        42,
        "E1/HS1/red",
        "E1",
        "HS1",
    )
    assert (row["level"], row["state"], row["issued_at_ns"]) == ("red", "feedback", NOW)


def test_a_broken_row_is_refused_naming_the_field() -> None:
    row = to_row(issued())
    row["state"] = "vanished"
    with pytest.raises(WarningRowError, match="state"):
        from_row(row)
