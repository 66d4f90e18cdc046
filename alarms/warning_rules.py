"""Early-warning (预警) rules as data: the rule table, per-level deadlines, the escalation chain.

Loaded from TOML (alarms/warning_rules.toml holds the DOMAIN.md §4.2 defaults, each with its
source tag); a bad file raises WarningRulesError naming the key path and the offending value.
"""

from __future__ import annotations

import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from alarms.model import AlarmClass, Condition

DEFAULT_RULES_PATH = Path(__file__).with_name("warning_rules.toml")


class WarningLevel(StrEnum):
    """红/橙/黄/蓝 = 重大/较大/一般/较低风险预警 (DOMAIN.md §4.1)."""

    RED = "red"
    ORANGE = "orange"
    YELLOW = "yellow"
    BLUE = "blue"

    @property
    def rank(self) -> int:
        """Higher is more severe: red 4 … blue 1."""
        return _RANK[self]

    @property
    def zh(self) -> str:
        return _LEVEL_ZH[self]


_RANK = {WarningLevel.RED: 4, WarningLevel.ORANGE: 3, WarningLevel.YELLOW: 2, WarningLevel.BLUE: 1}
_LEVEL_ZH = {
    WarningLevel.RED: "红色预警",
    WarningLevel.ORANGE: "橙色预警",
    WarningLevel.YELLOW: "黄色预警",
    WarningLevel.BLUE: "蓝色预警",
}


class WarningRulesError(Exception):
    """A warning-rules file that cannot be used; str() names the file, key path and value."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Source = Annotated[str, Field(min_length=1)]  # the DOMAIN.md tag, e.g. "[D] DOMAIN.md §4.2 …"
Seconds = Annotated[float, Field(ge=0)]
AlarmConditionName = Literal["HH", "H", "L", "LL"]


class _Rule(_Model):
    """Fields every rule has. `grades` limits it to hazard sources of those GB 18218 grades."""

    id: Annotated[str, Field(pattern=r"^[a-z0-9_.-]{1,64}$")]
    level: WarningLevel
    title_zh: str
    title_en: str
    source: Source
    enabled: bool = True
    grades: list[Literal[1, 2, 3, 4]] = []


class _AlarmRule(_Rule):
    conditions: Annotated[list[AlarmConditionName], Field(min_length=1)]
    classes: list[AlarmClass] = [AlarmClass.PROCESS, AlarmClass.GAS]

    @property
    def condition_set(self) -> frozenset[Condition]:
        return frozenset(Condition[c] for c in self.conditions)


class ConcurrentCriticalRule(_AlarmRule):
    """≥ N different indicator kinds (液位, 压力, 温度, 气体…) in the conditions at once."""

    kind: Literal["concurrent_critical"]
    min_indicator_kinds: Annotated[int, Field(ge=1)]


class ToxicGasTowardTargetRule(_AlarmRule):
    """A toxic-gas alarm while the wind blows toward a sensitive target: one within `reach_m`
    of the hazard source and within `half_sector_deg` of downwind at some look within the last
    `wind_window_s` (a meandering plume reaches it, and a turn of the wind ends the finding
    only once the window has passed, not at every gust). Below `calm_m_s` the wind has no
    direction, and every target within reach counts."""

    kind: Literal["toxic_gas_toward_target"]
    reach_m: Annotated[float, Field(gt=0)] = 3000.0
    half_sector_deg: Annotated[float, Field(gt=0, le=180)] = 22.5
    calm_m_s: Annotated[float, Field(ge=0)] = 0.5
    wind_window_s: Annotated[float, Field(gt=0, le=3600)] = 120.0


class AlarmDuringSpecialWorkRule(_AlarmRule):
    """An alarm at a source where one of the special-work types (特殊作业) is on-going."""

    kind: Literal["alarm_during_special_work"]
    work_types: Annotated[list[str], Field(min_length=1)]


class PersistingAlarmRule(_AlarmRule):
    """One alarm lasting longer than `min_duration_s` (optionally: without disposal feedback)."""

    kind: Literal["persisting_alarm"]
    min_duration_s: Seconds
    without_feedback: bool = False


class RepeatedAlarmsRule(_Rule):
    """One point raised at least `min_count` alarms in the counting window (24 h)."""

    kind: Literal["repeated_alarms"]
    min_count: Annotated[int, Field(ge=1)]


class StateWithSpecialWorkRule(_Rule):
    """A source in one of the production states (开停车/检维修) with special work on-going."""

    kind: Literal["state_with_special_work"]
    production_states: Annotated[list[str], Field(min_length=1)]
    work_types: list[str] = []  # empty: any special work


class StateOverdueRule(_Rule):
    """A source still in one of the production states longer than `min_duration_s` past the
    planned end its operating state was given (POST /api/sources/{code}/state): a state
    nobody set back keeps its alarms suppressed by design."""

    kind: Literal["state_overdue"]
    production_states: Annotated[list[str], Field(min_length=1)]
    min_duration_s: Seconds


class DataQualityRule(_Rule):
    """A data-quality problem of a point or camera lasting longer than `min_duration_s`."""

    kind: Literal["data_interruption", "stuck_value", "out_of_range", "video_offline"]
    min_duration_s: Seconds


class MissingCommitmentRule(_Rule):
    """The enterprise's daily safety commitment (每日安全承诺) is missing."""

    kind: Literal["missing_commitment"]
    # Due each local day by this hour (0-23) of `timezone`; missing only once that has passed.
    deadline_hour: Annotated[int, Field(ge=0, le=23)]
    timezone: str

    @model_validator(mode="after")
    def _enterprise_wide(self) -> MissingCommitmentRule:
        if self.grades:
            raise ValueError(f"rule {self.id!r}: the commitment is enterprise-wide, drop `grades`")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"rule {self.id!r}: unknown timezone {self.timezone!r}") from None
        return self


Rule = Annotated[
    ConcurrentCriticalRule
    | ToxicGasTowardTargetRule
    | AlarmDuringSpecialWorkRule
    | PersistingAlarmRule
    | RepeatedAlarmsRule
    | StateWithSpecialWorkRule
    | StateOverdueRule
    | DataQualityRule
    | MissingCommitmentRule,
    Field(discriminator="kind"),
]


class Deadline(_Model):
    """How long the enterprise has to sign (签收, from issue) and to feed back (from signing)."""

    sign_s: Annotated[float, Field(gt=0)]
    feedback_s: Annotated[float, Field(gt=0)]
    source: Source


class Named(_Model):
    """A code with its Chinese and English names (reason codes, regulator levels, work types)."""

    code: Annotated[str, Field(pattern=r"^[a-z0-9_]{1,32}$")]
    zh: str
    en: str


class ReasonCode(Named):
    source: Source


class Lifecycle(_Model):
    """Who may do what, and where overdue warnings go."""

    enterprise_role: str
    regulator_roles: Annotated[list[str], Field(min_length=1)]
    # 企业 → 县/园区 → 市 → 省: index 0 is the enterprise itself.
    escalation_chain: Annotated[list[Named], Field(min_length=1)]
    escalation_source: Source
    deadlines: dict[WarningLevel, Deadline]
    reason_codes: Annotated[list[ReasonCode], Field(min_length=1)]

    @model_validator(mode="after")
    def _complete(self) -> Lifecycle:
        missing = [lv.value for lv in WarningLevel if lv not in self.deadlines]
        if missing:
            raise ValueError(f"deadlines missing for level(s) {missing}")
        for what, codes in (
            ("escalation level", [n.code for n in self.escalation_chain]),
            ("reason code", [r.code for r in self.reason_codes]),
        ):
            dup = sorted({c for c in codes if codes.count(c) > 1})
            if dup:
                raise ValueError(f"{what} {dup} listed twice")
        if self.enterprise_role in self.regulator_roles:
            raise ValueError(
                f"role {self.enterprise_role!r} cannot be both enterprise and regulator"
            )
        return self

    def reason(self, code: str) -> ReasonCode | None:
        return next((r for r in self.reason_codes if r.code == code), None)


class WarningRules(_Model):
    """The whole rule set: evaluated in order; the highest level per source wins."""

    version: Literal[1]
    rules: list[Rule]
    special_work_types: list[Named]
    production_states: list[Named]
    lifecycle: Lifecycle

    @model_validator(mode="after")
    def _consistent(self) -> WarningRules:
        ids = [r.id for r in self.rules]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"rule id(s) {dup} used twice")
        works = {w.code for w in self.special_work_types}
        states = {s.code for s in self.production_states}
        for r in self.rules:
            used_works = getattr(r, "work_types", [])
            unknown = [w for w in used_works if w not in works]
            if unknown:
                raise ValueError(f"rule {r.id!r}: unknown special work type(s) {unknown}")
            if isinstance(r, StateWithSpecialWorkRule | StateOverdueRule):
                bad = [s for s in r.production_states if s not in states]
                if bad:
                    raise ValueError(f"rule {r.id!r}: unknown production state(s) {bad}")
        return self

    def rule(self, rule_id: str) -> Rule | None:
        return next((r for r in self.rules if r.id == rule_id), None)


def parse_warning_rules(text: str, file: Path | str = "<warning rules>") -> WarningRules:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise WarningRulesError(f"{file}: TOML syntax error: {exc}") from exc
    try:
        return WarningRules.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{file}: invalid warning rules ({exc.error_count()} problem(s))"]
        for e in exc.errors():
            where = ".".join(str(p) for p in e["loc"]) or "<top>"
            lines.append(f"  {where}: {e['msg']} (got {e.get('input')!r})")
        raise WarningRulesError("\n".join(lines)) from exc


def load_warning_rules(file: Path | str = DEFAULT_RULES_PATH) -> WarningRules:
    path = Path(file)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WarningRulesError(f"{path}: cannot read the warning rules: {exc}") from exc
    return parse_warning_rules(text, path)
