"""Early warnings (预警) 红/橙/黄/蓝: the pure rule evaluation and the pure disposal lifecycle.

Pure: inputs and `now_ns` in, findings and Warning records out; the engine stores them
(`to_row`/`from_row`) and pushes them. Rules and deadlines are data (alarms.warning_rules).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from pydantic import TypeAdapter, ValidationError

from alarms.model import AlarmClass, Condition, Priority
from alarms.warning_rules import (
    AlarmDuringSpecialWorkRule,
    ConcurrentCriticalRule,
    DataQualityRule,
    MissingCommitmentRule,
    PersistingAlarmRule,
    RepeatedAlarmsRule,
    Rule,
    StateOverdueRule,
    StateWithSpecialWorkRule,
    ToxicGasTowardTargetRule,
    WarningLevel,
    WarningRules,
)

_NS = 1_000_000_000

# ---------------------------------------------------------------------------------------------
# Inputs


class GasHazard(StrEnum):
    TOXIC = "toxic"
    FLAMMABLE = "flammable"


@dataclass(frozen=True, slots=True)
class ActiveAlarm:
    """One active alarm at a point of the source, as the alarm engine knows it."""

    point: int
    code: str  # the point's tag, shown to the duty officer
    condition: Condition
    alarm_class: AlarmClass
    priority: Priority
    kind: str  # indicator kind: level, pressure, temperature, flow, gas…
    raised_at_ns: int
    name: str = ""
    gas: GasHazard | None = None
    acknowledged: bool = False
    has_feedback: bool = False  # the enterprise has given disposal feedback on it


@dataclass(frozen=True, slots=True)
class AlarmCount:
    """How many alarms one point raised in the counting window (24 h)."""

    point: int
    code: str
    count: int
    name: str = ""


@dataclass(frozen=True, slots=True)
class PointQuality:
    """Data-quality problems of one point: each `*_since_ns` is None while the problem is absent."""

    point: int
    code: str
    name: str = ""
    offline_since_ns: int | None = None  # no data (interruption, COMM_FAIL)
    stuck_since_ns: int | None = None
    out_of_range_since_ns: int | None = None


@dataclass(frozen=True, slots=True)
class SourceInputs:
    """Everything known about one hazard source (重大危险源); `code` None: the enterprise's
    points that belong to no source."""

    code: str | None
    name: str = ""
    grade: int | None = None  # GB 18218 一级..四级
    alarms: tuple[ActiveAlarm, ...] = ()
    alarm_counts_24h: tuple[AlarmCount, ...] = ()
    quality: tuple[PointQuality, ...] = ()
    cameras_offline: Mapping[str, int] = field(default_factory=dict)  # camera → offline since
    special_work: frozenset[str] | None = None  # on-going 特殊作业 codes; None: not reported
    # The permit numbers (作业证编号) of each on-going work type, named in the evidence.
    special_work_permits: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    production_state: str | None = None  # None: the enterprise's
    # The planned end of the source's operating state (ns), when one was given.
    state_planned_end_ns: int | None = None
    # The wind at the enterprise as seen within the rule's window, oldest first (none: not
    # measured), and its sensitive targets as seen from this source.
    winds: tuple[Wind, ...] = ()
    targets: tuple[TargetAt, ...] = ()


@dataclass(frozen=True, slots=True)
class Wind:
    from_deg: float  # where it blows from, clockwise from north (meteorological)
    speed_m_s: float


@dataclass(frozen=True, slots=True)
class TargetAt:
    """A sensitive target as seen from a hazard source."""

    name: str
    bearing_deg: float  # clockwise from north
    distance_m: float


def targets_downwind(
    rule: ToxicGasTowardTargetRule, src: SourceInputs
) -> list[tuple[TargetAt, Wind]]:
    """The source's targets within reach that the wind blew toward at some look in the window,
    each with the latest such wind, nearest first (none when the wind is unknown). A wind below
    `calm_m_s` has no direction: it counts toward every target within reach."""
    out = []
    for t in src.targets:
        toward = [w for w in src.winds if blows_toward(rule, w, t)]
        if toward:
            out.append((t, toward[-1]))
    return sorted(out, key=lambda tw: tw[0].distance_m)


def blows_toward(rule: ToxicGasTowardTargetRule, wind: Wind, target: TargetAt) -> bool:
    """Whether `wind` carries a release toward `target` as `rule` sees it: the target within
    reach and within the sector of downwind, or any target within reach in calm air."""
    if target.distance_m > rule.reach_m:
        return False
    return wind.speed_m_s < rule.calm_m_s or _off(wind, target) <= rule.half_sector_deg


def _off(wind: Wind, target: TargetAt) -> float:
    """How far (degrees) the target lies from straight downwind."""
    downwind = (wind.from_deg + 180.0) % 360.0
    return abs((target.bearing_deg - downwind + 180.0) % 360.0 - 180.0)


@dataclass(frozen=True, slots=True)
class EnterpriseInputs:
    code: str
    name: str = ""
    sources: tuple[SourceInputs, ...] = ()
    production_state: str | None = None  # from the daily 安全承诺; None: not reported
    commitment_submitted: bool | None = None  # None: not tracked


@dataclass(frozen=True, slots=True)
class WarningInputs:
    enterprises: tuple[EnterpriseInputs, ...]


class WarningInputError(ValueError):
    """Inputs that name codes the rules do not know, or an enterprise or source twice."""


# ---------------------------------------------------------------------------------------------
# Findings


@dataclass(frozen=True, slots=True)
class Evidence:
    """One fact behind a finding: `code` and `params` for the console to translate, and the
    same sentence rendered in Chinese (`zh`) and English (`en`)."""

    code: str
    params: dict[str, Any]  # JSON values
    zh: str
    en: str


@dataclass(frozen=True, slots=True)
class RuleHit:
    rule: str
    level: WarningLevel
    since_ns: int  # when the rule became satisfied
    title_zh: str
    title_en: str
    evidence: tuple[Evidence, ...]


@dataclass(frozen=True, slots=True)
class WarningFinding:
    """The highest-level rule that fired for one (enterprise, hazard source), and the others."""

    enterprise: str
    hazard_source: str | None
    level: WarningLevel
    rule: str
    since_ns: int
    title_zh: str
    title_en: str
    evidence: tuple[Evidence, ...]
    also: tuple[RuleHit, ...] = ()  # the other rules that fired here, highest first

    @property
    def key(self) -> str:
        return dedupe_key(self.enterprise, self.hazard_source, self.level)


def dedupe_key(enterprise: str, hazard_source: str | None, level: WarningLevel) -> str:
    """One live warning per key: a finding that persists does not issue a new warning."""
    return f"{enterprise}/{hazard_source or '-'}/{level.value}"


def evaluate_warnings(
    inputs: WarningInputs, rules: WarningRules, now_ns: int
) -> list[WarningFinding]:
    """Every enabled rule over every source; one finding per source where any rule fired."""
    findings: list[WarningFinding] = []
    order = {r.id: i for i, r in enumerate(rules.rules)}
    seen_enterprises: set[str] = set()
    for ent in inputs.enterprises:
        if ent.code in seen_enterprises:
            raise WarningInputError(f"enterprise {ent.code!r} appears twice in the inputs")
        seen_enterprises.add(ent.code)
        _check_state(rules, ent.code, None, ent.production_state)
        hits: dict[str | None, list[RuleHit]] = {}
        for src in ent.sources:
            if src.code in hits:
                raise WarningInputError(
                    f"enterprise {ent.code!r}: hazard source {src.code!r} appears twice"
                )
            _check_state(rules, ent.code, src.code, src.production_state)
            unknown = sorted((src.special_work or frozenset()) - _codes(rules.special_work_types))
            if unknown:
                raise WarningInputError(
                    f"enterprise {ent.code!r}, hazard source {src.code!r}: unknown special "
                    f"work type(s) {unknown}; known: {sorted(_codes(rules.special_work_types))}"
                )
            hits[src.code] = [
                h
                for r in rules.rules
                if r.enabled and (not r.grades or src.grade in r.grades)
                for h in _source_rule(r, rules, ent, src, now_ns)
            ]
        for r in rules.rules:
            if (
                r.enabled
                and isinstance(r, MissingCommitmentRule)
                and ent.commitment_submitted is False
            ):
                hits.setdefault(None, []).append(
                    _hit(r, now_ns, [_evidence("commitment_missing", {})])
                )
        for source_code, source_hits in hits.items():
            if not source_hits:
                continue
            ranked = sorted(source_hits, key=lambda h: (-h.level.rank, order[h.rule]))
            top = ranked[0]
            findings.append(
                WarningFinding(
                    ent.code,
                    source_code,
                    top.level,
                    top.rule,
                    top.since_ns,
                    top.title_zh,
                    top.title_en,
                    top.evidence,
                    tuple(ranked[1:]),
                )
            )
    return findings


def _codes(named: Iterable[Any]) -> set[str]:
    return {n.code for n in named}


def _check_state(rules: WarningRules, ent: str, src: str | None, state: str | None) -> None:
    known = _codes(rules.production_states)
    if state is not None and state not in known:
        where = f"enterprise {ent!r}" + ("" if src is None else f", hazard source {src!r}")
        raise WarningInputError(
            f"{where}: unknown production state {state!r}; known: {sorted(known)}"
        )


def _hit(rule: Rule, since_ns: int, evidence: Sequence[Evidence]) -> RuleHit:
    return RuleHit(rule.id, rule.level, since_ns, rule.title_zh, rule.title_en, tuple(evidence))


def _lasted(since_ns: int, now_ns: int, min_s: float) -> bool:
    """'Lasting longer than T'; T = 0 means 'present now'."""
    elapsed = now_ns - since_ns
    return elapsed > min_s * _NS if min_s > 0 else elapsed >= 0


def _source_rule(
    rule: Rule, rules: WarningRules, ent: EnterpriseInputs, src: SourceInputs, now_ns: int
) -> list[RuleHit]:
    if isinstance(rule, RepeatedAlarmsRule):
        counts = [c for c in src.alarm_counts_24h if c.count >= rule.min_count]
        return [_hit(rule, now_ns, [_count_evidence(c) for c in counts])] if counts else []
    if isinstance(rule, StateWithSpecialWorkRule):
        state = src.production_state or ent.production_state
        works = sorted(src.special_work or ())
        if rule.work_types:
            works = [w for w in works if w in rule.work_types]
        if state in rule.production_states and works:
            return [
                _hit(
                    rule,
                    now_ns,
                    [_state_evidence(rules, state), _work_evidence(rules, works, src)],
                )
            ]
        return []
    if isinstance(rule, StateOverdueRule):
        state, end = src.production_state, src.state_planned_end_ns
        if state not in rule.production_states or end is None:
            return []
        if not _lasted(end, now_ns, rule.min_duration_s):
            return []
        since = end + round(rule.min_duration_s * _NS)
        return [_hit(rule, since, [_overdue_evidence(rules, state, end, now_ns)])]
    if isinstance(rule, DataQualityRule):
        return _quality_rule(rule, src, now_ns)
    if isinstance(rule, MissingCommitmentRule):
        return []  # enterprise-wide: evaluated once per enterprise
    matching = [
        a
        for a in src.alarms
        if a.condition in rule.condition_set
        and a.alarm_class in rule.classes
        and a.raised_at_ns <= now_ns
    ]
    if not matching:
        return []
    if isinstance(rule, PersistingAlarmRule):
        lasting = [
            a
            for a in matching
            if _lasted(a.raised_at_ns, now_ns, rule.min_duration_s)
            and not (rule.without_feedback and a.has_feedback)
        ]
        if not lasting:
            return []
        since = min(a.raised_at_ns for a in lasting) + round(rule.min_duration_s * _NS)
        return [_hit(rule, since, [_alarm_evidence(a, now_ns) for a in lasting])]
    if isinstance(rule, ConcurrentCriticalRule):
        first_by_kind: dict[str, int] = {}
        for a in matching:
            first_by_kind[a.kind] = min(first_by_kind.get(a.kind, a.raised_at_ns), a.raised_at_ns)
        if len(first_by_kind) < rule.min_indicator_kinds:
            return []
        # Satisfied when the N-th indicator kind joined.
        since = sorted(first_by_kind.values())[rule.min_indicator_kinds - 1]
        return [_hit(rule, since, [_alarm_evidence(a, now_ns) for a in matching])]
    since = min(a.raised_at_ns for a in matching)
    if isinstance(rule, ToxicGasTowardTargetRule):
        toxic = [a for a in matching if a.gas is GasHazard.TOXIC]
        if not toxic:
            return []
        toward = _target_evidence(rule, src)
        if not toward:
            return []
        evidence = [*(_alarm_evidence(a, now_ns) for a in toxic), *toward]
        return [_hit(rule, min(a.raised_at_ns for a in toxic), evidence)]
    if isinstance(rule, AlarmDuringSpecialWorkRule):
        works = sorted(w for w in (src.special_work or ()) if w in rule.work_types)
        if not works:
            return []
        evidence = [_alarm_evidence(a, now_ns) for a in matching]
        return [_hit(rule, since, [*evidence, _work_evidence(rules, works, src)])]
    raise AssertionError(f"unhandled rule kind {rule.kind!r}")


def _quality_rule(rule: DataQualityRule, src: SourceInputs, now_ns: int) -> list[RuleHit]:
    found: list[tuple[int, Evidence]] = []
    if rule.kind == "video_offline":
        for camera, since in sorted(src.cameras_offline.items()):
            if _lasted(since, now_ns, rule.min_duration_s):
                found.append(
                    (since, _evidence("video_offline", *_point(camera, "", now_ns - since)))
                )
    else:
        attr = {
            "data_interruption": "offline_since_ns",
            "stuck_value": "stuck_since_ns",
            "out_of_range": "out_of_range_since_ns",
        }[rule.kind]
        for q in src.quality:
            since_q: int | None = getattr(q, attr)
            if since_q is not None and _lasted(since_q, now_ns, rule.min_duration_s):
                found.append(
                    (since_q, _evidence(rule.kind, *_point(q.code, q.name, now_ns - since_q)))
                )
    if not found:
        return []
    since = min(s for s, _ in found) + round(rule.min_duration_s * _NS)
    return [_hit(rule, since, [e for _, e in found])]


# ---------------------------------------------------------------------------------------------
# Evidence in words a duty officer understands

_KIND_NAMES: dict[str, tuple[str, str]] = {
    "level": ("液位", "level"),
    "pressure": ("压力", "pressure"),
    "temperature": ("温度", "temperature"),
    "flow": ("流量", "flow"),
    "gas": ("气体浓度", "gas concentration"),
    "composition": ("组份", "composition"),
}
_CONDITION_NAMES: dict[tuple[Condition, bool], tuple[str, str]] = {
    (Condition.HH, False): ("高高报警", "high-high alarm"),
    (Condition.H, False): ("高报警", "high alarm"),
    (Condition.L, False): ("低报警", "low alarm"),
    (Condition.LL, False): ("低低报警", "low-low alarm"),
    (Condition.HH, True): ("二级报警", "level-2 alarm"),
    (Condition.H, True): ("一级报警", "level-1 alarm"),
    (Condition.L, True): ("低报警", "low alarm"),
    (Condition.LL, True): ("低低报警", "low-low alarm"),
}
_TEMPLATES: dict[str, tuple[str, str]] = {
    "alarm": (
        "{label} {kind_zh}{condition_zh}，已持续{duration_zh}{ack_zh}{feedback_zh}",
        "{label} {kind_en} {condition_en} for {duration_en}{ack_en}{feedback_en}",
    ),
    "alarm_count": ("{label} 24小时内报警{count}次", "{label} raised {count} alarms in 24 h"),
    "data_interruption": ("{label} 数据中断{duration_zh}", "{label} no data for {duration_en}"),
    "stuck_value": ("{label} 数值恒定{duration_zh}", "{label} value stuck for {duration_en}"),
    "out_of_range": (
        "{label} 超出量程{duration_zh}",
        "{label} outside the instrument range for {duration_en}",
    ),
    "video_offline": ("视频 {label} 离线{duration_zh}", "camera {label} offline for {duration_en}"),
    "wind_target": (
        "风向指向敏感目标 {target}（{distance_m} 米；风自 {wind_from_deg}°，{wind_m_s} 米/秒）",
        "wind blowing toward {target} ({distance_m} m away; wind from {wind_from_deg}° at "
        "{wind_m_s} m/s)",
    ),
    "calm_target": (
        "静风（{wind_m_s} 米/秒），敏感目标 {target} 在 {distance_m} 米处",
        "calm air ({wind_m_s} m/s) with {target} {distance_m} m away",
    ),
    "special_work": ("正在进行：{works_zh}", "on-going: {works_en}"),
    "production_state": ("生产状态：{state_zh}", "production state: {state_en}"),
    "state_overdue": (
        "{state_zh}已超过计划结束时间{duration_zh}",
        "{state_en} {duration_en} past its planned end",
    ),
    "commitment_missing": ("未提交今日安全承诺", "today's safety commitment not submitted"),
}


def _evidence(code: str, params: dict[str, Any], words: dict[str, str] | None = None) -> Evidence:
    """`params` go to the console; `words` are template-only renderings (names, durations)."""
    zh, en = _TEMPLATES[code]
    values = {**params, **(words or {})}
    return Evidence(code, params, zh.format(**values), en.format(**values))


def _target_evidence(rule: ToxicGasTowardTargetRule, src: SourceInputs) -> list[Evidence]:
    """The targets the wind blew toward, each with that wind (in calm air: every one within
    reach)."""
    return [
        _evidence(
            "calm_target" if w.speed_m_s < rule.calm_m_s else "wind_target",
            {
                "target": t.name,
                "distance_m": round(t.distance_m),
                "wind_from_deg": round(w.from_deg) % 360,
                "wind_m_s": round(w.speed_m_s, 1),
            },
        )
        for t, w in targets_downwind(rule, src)
    ]


def _point(code: str, name: str, elapsed_ns: int) -> tuple[dict[str, Any], dict[str, str]]:
    minutes = max(elapsed_ns, 0) // (60 * _NS)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    parts = [
        (n, zh, en)
        for n, zh, en in ((days, "天", "d"), (hours, "小时", "h"), (mins, "分钟", "min"))
        if n
    ]
    params: dict[str, Any] = {"point": code, "name": name, "duration_s": max(elapsed_ns, 0) // _NS}
    words = {
        "label": f"{name}({code})" if name else code,
        "duration_zh": "".join(f"{n}{zh}" for n, zh, _ in parts) or "不足1分钟",
        "duration_en": " ".join(f"{n} {en}" for n, _, en in parts) or "under 1 min",
    }
    return params, words


def _overdue_evidence(rules: WarningRules, state: str, end_ns: int, now_ns: int) -> Evidence:
    named = next(s for s in rules.production_states if s.code == state)
    params, words = _point("", "", now_ns - end_ns)
    return _evidence(
        "state_overdue",
        {"state": state, "planned_end_ns": end_ns, "overdue_s": params["duration_s"]},
        {**words, "state_zh": named.zh, "state_en": named.en},
    )


def _alarm_evidence(a: ActiveAlarm, now_ns: int) -> Evidence:
    is_gas = a.alarm_class is AlarmClass.GAS or a.kind == "gas"
    cond_zh, cond_en = _CONDITION_NAMES[(a.condition, is_gas)]
    kind_zh, kind_en = _KIND_NAMES.get(a.kind, (a.kind, a.kind))
    params, words = _point(a.code, a.name, now_ns - a.raised_at_ns)
    params.update(
        condition=a.condition.name,
        kind=a.kind,
        priority=int(a.priority),
        gas=None if a.gas is None else a.gas.value,
        acknowledged=a.acknowledged,
        feedback=a.has_feedback,
    )
    words.update(
        kind_zh=kind_zh,
        kind_en=kind_en,
        condition_zh=cond_zh,
        condition_en=cond_en,
        ack_zh="" if a.acknowledged else "，未确认",
        ack_en="" if a.acknowledged else ", not acknowledged",
        feedback_zh="" if a.has_feedback else "，无处置反馈",
        feedback_en="" if a.has_feedback else ", no disposal feedback",
    )
    return _evidence("alarm", params, words)


def _count_evidence(c: AlarmCount) -> Evidence:
    params, words = _point(c.code, c.name, 0)
    del params["duration_s"]
    return _evidence("alarm_count", {**params, "count": c.count}, words)


def _work_evidence(rules: WarningRules, works: Sequence[str], src: SourceInputs) -> Evidence:
    names = {w.code: w for w in rules.special_work_types}
    permits = {
        w: list(src.special_work_permits[w]) for w in works if src.special_work_permits.get(w)
    }

    def named(w: str, zh: bool) -> str:
        name = names[w].zh if zh else names[w].en
        if w not in permits:
            return name
        if zh:
            return f"{name}（作业证 {'、'.join(permits[w])}）"
        return f"{name} (permit {', '.join(permits[w])})"

    params: dict[str, Any] = {"works": list(works)}
    if permits:
        params["permits"] = permits
    return _evidence(
        "special_work",
        params,
        {
            "works_zh": "、".join(named(w, True) for w in works),
            "works_en": ", ".join(named(w, False) for w in works),
        },
    )


def _state_evidence(rules: WarningRules, state: str) -> Evidence:
    named = next(s for s in rules.production_states if s.code == state)
    return _evidence(
        "production_state", {"state": state}, {"state_zh": named.zh, "state_en": named.en}
    )


# ---------------------------------------------------------------------------------------------
# The disposal lifecycle


class WarningState(StrEnum):
    ISSUED = "issued"
    PUSHED = "pushed"  # to the source's 包保责任人
    SIGNED = "signed"  # 签收 by an enterprise user
    FEEDBACK = "feedback"  # 核实/处置: reason code and measures given
    CLEARED = "cleared"  # 消警
    REVIEWED = "reviewed"  # 审核/现场核查 by the regulator
    CLOSED = "closed"


LIVE_STATES = frozenset(
    {WarningState.ISSUED, WarningState.PUSHED, WarningState.SIGNED, WarningState.FEEDBACK}
)


class StepAction(StrEnum):
    ISSUED = "issued"
    PUSHED = "pushed"
    SIGNED = "signed"
    FEEDBACK = "feedback"
    CLEARED = "cleared"
    REVIEWED = "reviewed"
    CLOSED = "closed"
    CONDITION_ENDED = "condition_ended"
    CONDITION_RESUMED = "condition_resumed"
    ESCALATED = "escalated"  # overdue: pushed to the next regulator level
    REMINDED = "reminded"  # overdue again with the top of the chain already reached


class Duty(StrEnum):
    """The three 包保责任人 of a hazard source."""

    PRINCIPAL = "principal"  # 主要负责人
    TECHNICAL = "technical"  # 技术负责人
    OPERATIONAL = "operational"  # 操作负责人


@dataclass(frozen=True, slots=True)
class Recipient:
    duty: Duty
    name: str
    username: str | None = None
    phone: str | None = None


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: an account's username and role (web.security.Role values) and, for
    enterprise users, their enterprise."""

    username: str
    role: str
    enterprise: str | None = None


SYSTEM = Actor("system", "system")


@dataclass(frozen=True, slots=True)
class Step:
    """One recorded step: who (username, role), when and what."""

    action: StepAction
    at_ns: int
    username: str
    role: str
    comment: str = ""
    detail: dict[str, Any] = field(default_factory=dict)  # JSON values


@dataclass(frozen=True, slots=True)
class Feedback:
    reason: str  # a reason code of the rules (真实报警, 误报, 仪表故障, 检维修, 工艺波动)
    measures: str


@dataclass(frozen=True, slots=True)
class Warning:
    """One early warning (预警) and its disposal record. `id` is None until stored."""

    id: int | None
    key: str
    enterprise: str
    hazard_source: str | None
    level: WarningLevel
    rule: str
    title_zh: str
    title_en: str
    evidence: tuple[Evidence, ...]
    issued_at_ns: int
    state: WarningState = WarningState.ISSUED
    condition_active: bool = True
    escalation: int = 0  # index into the rules' escalation chain; 0 = the enterprise
    phase_periods: int = 0  # deadline periods already handled in the current phase
    overdue: tuple[str, ...] = ()  # phases that went overdue: "sign", "feedback"
    recipients: tuple[Recipient, ...] = ()
    signed_at_ns: int | None = None
    feedback: Feedback | None = None
    steps: tuple[Step, ...] = ()

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES


class WarningTransitionError(Exception):
    """A step the warning's state does not allow; `code` names the case for the API."""

    def __init__(self, warning: Warning, code: str, message: str) -> None:
        self.warning_id = warning.id
        self.code = code
        ident = f"warning {warning.id}" if warning.id is not None else f"warning {warning.key}"
        super().__init__(f"{ident} ({warning.state.value}): {message}")


class WarningInputRefused(WarningTransitionError):
    """The step was asked for with bad input (a blank reason, an unknown reason code), whatever
    the warning's state: the API answers 400, not 409."""


class WarningPermissionError(WarningTransitionError):
    """The actor may not take this step on this warning (wrong role or enterprise)."""


class WarningRowError(ValueError):
    """A stored row that is not a valid warning record."""


def issue(finding: WarningFinding, now_ns: int) -> Warning:
    return Warning(
        id=None,
        key=finding.key,
        enterprise=finding.enterprise,
        hazard_source=finding.hazard_source,
        level=finding.level,
        rule=finding.rule,
        title_zh=finding.title_zh,
        title_en=finding.title_en,
        evidence=finding.evidence,
        issued_at_ns=now_ns,
        steps=(_step(StepAction.ISSUED, now_ns, SYSTEM, detail={"since_ns": finding.since_ns}),),
    )


def push(
    warning: Warning, recipients: Sequence[Recipient], now_ns: int, rules: WarningRules
) -> Warning:
    """Pushed to the hazard source's 包保责任人 (the recipients are data on the source)."""
    if warning.state is not WarningState.ISSUED:
        raise WarningTransitionError(warning, "already_pushed", "it was already pushed")
    if not recipients:
        raise WarningTransitionError(
            warning, "no_recipients", "no responsible person (包保责任人) to push it to"
        )
    missing = sorted({d.value for d in Duty} - {r.duty.value for r in recipients})
    detail = {
        "recipients": [
            {"duty": r.duty.value, "name": r.name, "username": r.username} for r in recipients
        ],
        "missing_duties": missing,
        "to": rules.lifecycle.escalation_chain[0].code,
    }
    return _advance(
        warning,
        WarningState.PUSHED,
        now_ns,
        SYSTEM,
        StepAction.PUSHED,
        "",
        detail,
        recipients=tuple(recipients),
    )


def sign(
    warning: Warning, actor: Actor, now_ns: int, rules: WarningRules, comment: str = ""
) -> Warning:
    """签收 by a user of the warning's enterprise."""
    _require_enterprise_user(warning, actor, rules, "sign")
    if warning.state not in (WarningState.ISSUED, WarningState.PUSHED):
        raise WarningTransitionError(warning, "already_signed", "it is already signed")
    detail = {"late": "sign" in warning.overdue}
    return _advance(
        warning,
        WarningState.SIGNED,
        now_ns,
        actor,
        StepAction.SIGNED,
        comment,
        detail,
        signed_at_ns=now_ns,
        phase_periods=0,
    )


def submit_feedback(
    warning: Warning, actor: Actor, now_ns: int, rules: WarningRules, reason: str, measures: str
) -> Warning:
    """核实/处置: the reason code and the measures taken."""
    _require_enterprise_user(warning, actor, rules, "give feedback on")
    if warning.state in (WarningState.ISSUED, WarningState.PUSHED):
        raise WarningTransitionError(warning, "not_signed", "sign it (签收) before giving feedback")
    if warning.state is not WarningState.SIGNED:
        raise WarningTransitionError(warning, "feedback_given", "feedback was already given")
    if rules.lifecycle.reason(reason) is None:
        known = ", ".join(f"{r.code} ({r.zh})" for r in rules.lifecycle.reason_codes)
        raise WarningInputRefused(
            warning, "unknown_reason", f"unknown reason code {reason!r}; known: {known}"
        )
    if not measures.strip():
        raise WarningInputRefused(warning, "no_measures", "say which measures were taken")
    detail = {"reason": reason, "late": "feedback" in warning.overdue}
    return _advance(
        warning,
        WarningState.FEEDBACK,
        now_ns,
        actor,
        StepAction.FEEDBACK,
        measures,
        detail,
        feedback=Feedback(reason, measures),
    )


def clear(
    warning: Warning, actor: Actor, now_ns: int, rules: WarningRules, reason: str = ""
) -> Warning:
    """消警: by the enterprise after feedback once the condition has ended, or by the regulator
    at any time with a reason."""
    if not warning.live:
        raise WarningTransitionError(warning, "already_cleared", "it is already cleared")
    if actor.role in rules.lifecycle.regulator_roles:
        if not reason.strip():
            raise WarningInputRefused(
                warning, "reason_required", "a regulator clearing a warning must give a reason"
            )
    else:
        _require_enterprise_user(warning, actor, rules, "clear")
        if warning.state is not WarningState.FEEDBACK:
            raise WarningTransitionError(
                warning, "no_feedback", "give disposal feedback before clearing it"
            )
        if warning.condition_active:
            raise WarningTransitionError(
                warning,
                "condition_active",
                "the triggering condition persists; it can be cleared once it has ended",
            )
    detail = {"condition_active": warning.condition_active}
    return _advance(
        warning, WarningState.CLEARED, now_ns, actor, StepAction.CLEARED, reason, detail
    )


def review(
    warning: Warning, actor: Actor, now_ns: int, rules: WarningRules, comment: str = ""
) -> Warning:
    """审核/现场核查 by the regulator after clearing."""
    _require_regulator(warning, actor, rules, "review")
    if warning.state is not WarningState.CLEARED:
        raise WarningTransitionError(warning, "not_cleared", "only a cleared warning is reviewed")
    return _advance(warning, WarningState.REVIEWED, now_ns, actor, StepAction.REVIEWED, comment, {})


def close(
    warning: Warning, actor: Actor, now_ns: int, rules: WarningRules, comment: str = ""
) -> Warning:
    _require_regulator(warning, actor, rules, "close")
    if warning.state is not WarningState.REVIEWED:
        raise WarningTransitionError(warning, "not_reviewed", "review it before closing it")
    return _advance(warning, WarningState.CLOSED, now_ns, actor, StepAction.CLOSED, comment, {})


def set_condition(warning: Warning, active: bool, now_ns: int) -> Warning:
    """Whether the triggering condition still holds (a step is recorded when it changes)."""
    if active == warning.condition_active or not warning.live:
        return warning
    action = StepAction.CONDITION_RESUMED if active else StepAction.CONDITION_ENDED
    return replace(
        warning,
        condition_active=active,
        steps=(*warning.steps, _step(action, now_ns, SYSTEM)),
    )


def next_due_ns(warning: Warning, rules: WarningRules) -> int | None:
    """When `tick` next has something to do (None: no deadline runs)."""
    phase = _phase(warning, rules)
    if phase is None:
        return None
    _, start, period = phase
    return start + (warning.phase_periods + 1) * period


def tick(warning: Warning, now_ns: int, rules: WarningRules) -> Warning:
    """Mark overdue and escalate one regulator level per elapsed deadline period (sign from
    issue, feedback from signing); at the top of the chain a reminder step instead. The steps
    appended are what the caller notifies."""
    phase = _phase(warning, rules)
    if phase is None:
        return warning
    name, start, period = phase
    due_periods = (now_ns - start) // period
    new = due_periods - warning.phase_periods
    if new <= 0:
        return warning
    chain = rules.lifecycle.escalation_chain
    steps = list(warning.steps)
    escalation = warning.escalation
    for i in range(warning.phase_periods + 1, due_periods + 1):
        due_at = start + i * period
        if escalation + 1 < len(chain):
            escalation += 1
            to = chain[escalation]
            detail = {"phase": name, "due_at_ns": due_at, "to": to.code, "to_zh": to.zh}
            steps.append(_step(StepAction.ESCALATED, now_ns, SYSTEM, detail=detail))
        else:
            # Top of the chain: one reminder covers every period missed since the last tick.
            detail = {
                "phase": name,
                "due_at_ns": start + due_periods * period,
                "to": chain[escalation].code,
                "to_zh": chain[escalation].zh,
                "periods": due_periods - i + 1,
            }
            steps.append(_step(StepAction.REMINDED, now_ns, SYSTEM, detail=detail))
            break
    overdue = warning.overdue if name in warning.overdue else (*warning.overdue, name)
    return replace(
        warning,
        escalation=escalation,
        phase_periods=due_periods,
        overdue=overdue,
        steps=tuple(steps),
    )


@dataclass(frozen=True, slots=True)
class Reconciliation:
    issued: list[Warning]  # new warnings to store and push
    updated: list[Warning]  # live warnings whose condition started or stopped holding


def reconcile(
    warnings: Sequence[Warning], findings: Sequence[WarningFinding], now_ns: int
) -> Reconciliation:
    """Findings against the live warnings. A live warning's condition holds while its source
    has a finding at its level or higher; a finding issues a new warning only when no live
    warning of its source is at its level or higher (so a persisting finding issues nothing)."""
    top: dict[tuple[str, str | None], int] = {}
    for f in findings:
        where = (f.enterprise, f.hazard_source)
        top[where] = max(top.get(where, 0), f.level.rank)
    live = [w for w in warnings if w.live]
    updated = []
    for w in live:
        holds = top.get((w.enterprise, w.hazard_source), 0) >= w.level.rank
        changed = set_condition(w, holds, now_ns)
        if changed is not w:
            updated.append(changed)
    covered: dict[tuple[str, str | None], int] = {}
    for w in live:
        where = (w.enterprise, w.hazard_source)
        covered[where] = max(covered.get(where, 0), w.level.rank)
    issued = [
        issue(f, now_ns)
        for f in findings
        if covered.get((f.enterprise, f.hazard_source), 0) < f.level.rank
    ]
    return Reconciliation(issued, updated)


_ROW = TypeAdapter(Warning)
_FINDING = TypeAdapter(WarningFinding)


def finding_row(finding: WarningFinding) -> dict[str, Any]:
    """A JSON-ready dict of a finding, its evidence and the other rules that fired."""
    row: dict[str, Any] = _FINDING.dump_python(finding, mode="json")
    return row


def to_row(warning: Warning) -> dict[str, Any]:
    """A JSON-ready dict of the whole record (enums as their values, tuples as lists)."""
    row: dict[str, Any] = _ROW.dump_python(warning, mode="json")
    return row


def from_row(row: Mapping[str, Any]) -> Warning:
    try:
        return _ROW.validate_python(dict(row))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<top>'}: {e['msg']}" for e in exc.errors()
        )
        raise WarningRowError(f"not a valid warning record: {problems}") from exc


def _phase(warning: Warning, rules: WarningRules) -> tuple[str, int, int] | None:
    deadline = rules.lifecycle.deadlines[warning.level]
    if warning.state in (WarningState.ISSUED, WarningState.PUSHED):
        return "sign", warning.issued_at_ns, round(deadline.sign_s * _NS)
    if warning.state is WarningState.SIGNED and warning.signed_at_ns is not None:
        return "feedback", warning.signed_at_ns, round(deadline.feedback_s * _NS)
    return None


def _step(
    action: StepAction,
    now_ns: int,
    actor: Actor,
    comment: str = "",
    detail: dict[str, Any] | None = None,
) -> Step:
    return Step(action, now_ns, actor.username, actor.role, comment, detail or {})


def _advance(
    warning: Warning,
    state: WarningState,
    now_ns: int,
    actor: Actor,
    action: StepAction,
    comment: str,
    detail: dict[str, Any],
    **changes: Any,
) -> Warning:
    step = _step(action, now_ns, actor, comment, detail)
    return replace(warning, state=state, steps=(*warning.steps, step), **changes)


def _require_enterprise_user(
    warning: Warning, actor: Actor, rules: WarningRules, what: str
) -> None:
    if actor.role != rules.lifecycle.enterprise_role or actor.enterprise != warning.enterprise:
        raise WarningPermissionError(
            warning,
            "forbidden",
            f"user {actor.username!r} (role {actor.role!r}, enterprise {actor.enterprise!r}) "
            f"cannot {what} it: only users of enterprise {warning.enterprise!r} can",
        )


def _require_regulator(warning: Warning, actor: Actor, rules: WarningRules, what: str) -> None:
    if actor.role not in rules.lifecycle.regulator_roles:
        raise WarningPermissionError(
            warning,
            "forbidden",
            f"user {actor.username!r} (role {actor.role!r}) cannot {what} it: only the "
            f"regulator ({', '.join(rules.lifecycle.regulator_roles)}) can",
        )
