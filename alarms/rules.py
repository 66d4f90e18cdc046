"""Alarm rules as data: one validated `PointRule` per point, built from the config file.

`RuleArrays` lays the rules out as dense numpy columns indexed by point id for the evaluator.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from alarms.gas import GasRuleError, gas_setpoints
from alarms.model import N_CONDITIONS, AlarmClass, Condition, Priority
from streams.config import Config, Device, PointConfig

LimitName = Literal["hh", "h", "l", "ll"]
LIMITS: tuple[LimitName, ...] = ("hh", "h", "l", "ll")
LIMIT_CONDITIONS = (Condition.HH, Condition.H, Condition.L, Condition.LL)
# Values at or above this many ns mean "never" (still far from int64 overflow when added to a
# timestamp of this century).
NEVER_NS = 1 << 62
NS = 1_000_000_000
MAX_DELAY_S = 86_400.0  # a delay longer than a day is a typo, not a design
CLASSES: tuple[AlarmClass, ...] = tuple(AlarmClass)
# Conditions about the data rather than the process: class `quality` whatever the point's class.
QUALITY_CONDITIONS = (
    Condition.BAD_QUALITY,
    Condition.STALE,
    Condition.STUCK,
    Condition.OUT_OF_RANGE,
)

Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
PerLimit = float | dict[LimitName, float]
# How far beyond its range (% of the span, below and above) a reading still counts: NAMUR NE 43
# [M], a 4–20 mA signal below 3.6 mA or above 21 mA signals a failure (a broken loop, a burnt-out
# sensor), not a measurement. Nearer, it is a measurement at or past the transmitter's
# saturation (3.8 / 20.5 mA): a bound, which raises the limit alarms it is past.
SIGNAL_FAILURE_PCT = (2.5, 6.25)
SpanPct = Annotated[float, Field(ge=0, le=100)]


class RuleError(ValueError):
    """Rules that cannot be used; str() lists every problem, each naming the point and values."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        head = f"invalid alarm rules ({len(problems)} problem(s))"
        super().__init__("\n".join([head, *(f"  {p}" for p in problems)]))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Priorities(_Model):
    """Priority per condition: 1 emergency … 4 low. Defaults: HH/LL 1, H/L 2, the rest 3."""

    hh: Priority = Priority.EMERGENCY
    h: Priority = Priority.HIGH
    l: Priority = Priority.HIGH  # noqa: E741 - the domain's name for the low limit
    ll: Priority = Priority.EMERGENCY
    roc: Priority = Priority.MEDIUM
    quality: Priority = Priority.MEDIUM  # bad quality, stale, stuck, out of range
    forecast: Priority = Priority.MEDIUM


class RateOfChange(_Model):
    """|d value / dt| above `limit_per_s`, averaged over `window_s` (exponential time constant)."""

    limit_per_s: Seconds
    window_s: Seconds = 60.0


class BadQuality(_Model):
    """Any quality other than GOOD and OUT_OF_RANGE (COMM_FAIL, BAD, …) for longer than T."""

    after_s: Annotated[float, Field(ge=0, le=MAX_DELAY_S)] = 30.0


class Stale(_Model):
    """No sample at all for `periods` × `period_s`, and `grace_s` more: the time the point's
    collector may take to report its device lost (`point_rule`). A lost device is one alarm on
    its link, which suppresses its points' COMM_FAIL; stale alarms raised before that report
    would be one per point."""

    period_s: Seconds
    periods: Seconds = 3.0
    grace_s: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0


class Stuck(_Model):
    """A flat line: every good value within `epsilon` of each other for `window_s`."""

    epsilon: Seconds
    window_s: Seconds = 3600.0


class Forecast(_Model):
    """A linear fit over `window_s` (exponential weights) predicts crossing H or HH within
    `horizon_s` — an early warning."""

    window_s: Seconds = 300.0
    horizon_s: Seconds = 600.0


class PointRule(_Model):
    """The alarm rule of one point (报警规则): limits, deadbands, delays, priorities and the
    data-quality and early-warning conditions. None switches a condition off."""

    point: Annotated[int, Field(ge=0, le=2**31 - 1)]
    tag: str = ""  # "ENTERPRISE/POINT", for messages
    alarm_class: AlarmClass = AlarmClass.PROCESS
    hh: float | None = None
    h: float | None = None
    l: float | None = None  # noqa: E741 - the domain's name for the low limit
    ll: float | None = None
    range: tuple[float, float] | None = None  # instrument range (量程)
    # Absolute, or % of the instrument range; one number for all limits or one per limit.
    deadband: PerLimit | None = None
    deadband_pct: PerLimit | None = None
    on_delay_s: float = 0.0
    off_delay_s: float = 0.0
    priority: Priorities = Priorities()
    roc: RateOfChange | None = None
    bad_quality: BadQuality | None = None
    stale: Stale | None = None
    stuck: Stuck | None = None
    out_of_range: bool = True  # effective only with a range
    forecast: Forecast | None = None
    signal_failure_pct: tuple[SpanPct, SpanPct] = SIGNAL_FAILURE_PCT  # with a range

    @property
    def label(self) -> str:
        return self.tag or f"#{self.point}"

    def limit(self, name: LimitName) -> float | None:
        value: float | None = getattr(self, name)
        return value

    def deadband_of(self, name: LimitName) -> float:
        """The absolute deadband of one limit (0 when none is given): a per-limit value before
        one for all limits, each absolute or % of the range."""
        span = self.range[1] - self.range[0] if self.range is not None else math.nan
        for absolute, pct in (
            (_own(self.deadband, name), _own(self.deadband_pct, name)),
            (_all(self.deadband), _all(self.deadband_pct)),
        ):
            if absolute is not None:
                return absolute
            if pct is not None:
                return pct / 100.0 * span
        return 0.0

    def priority_of(self, condition: Condition) -> Priority:
        if condition in LIMIT_CONDITIONS:
            p: Priority = getattr(self.priority, condition.name.lower())
            return p
        if condition is Condition.ROC:
            return self.priority.roc
        if condition is Condition.FORECAST:
            return self.priority.forecast
        return self.priority.quality

    def class_of(self, condition: Condition) -> AlarmClass:
        return AlarmClass.QUALITY if condition in QUALITY_CONDITIONS else self.alarm_class

    @model_validator(mode="after")
    def _check(self) -> PointRule:
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def problems(self) -> list[str]:
        out: list[str] = []
        who = f"point {self.label}"
        present = [(n, v) for n in LIMITS if (v := self.limit(n)) is not None]
        for n, v in present:
            if not math.isfinite(v):
                out.append(f"{who}: {n.upper()} {v} must be a finite number")
        for (hi_n, hi_v), (lo_n, lo_v) in itertools.pairwise(present):
            if not lo_v < hi_v:
                out.append(f"{who}: {lo_n.upper()} {lo_v:g} must be below {hi_n.upper()} {hi_v:g}")
        if self.range is not None:
            lo, hi = self.range
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                out.append(f"{who}: range [{lo:g}, {hi:g}] must be [low, high] with low < high")
            else:
                for n, v in present:
                    if not lo <= v <= hi:
                        out.append(
                            f"{who}: {n.upper()} {v:g} is outside the instrument range "
                            f"[{lo:g}, {hi:g}], so it can never be reached"
                        )
        if _all(self.deadband) is not None and _all(self.deadband_pct) is not None:
            out.append(f"{who}: give deadband or deadband_pct for all limits, not both")
        for name in LIMITS:
            absolute, pct = _own(self.deadband, name), _own(self.deadband_pct, name)
            if absolute is not None and pct is not None:
                out.append(f"{who}: give deadband or deadband_pct for {name.upper()}, not both")
        for what, value in (("deadband", self.deadband), ("deadband_pct", self.deadband_pct)):
            items: list[tuple[str, float | None]] = (
                [(k.upper(), x) for k, x in value.items()]
                if isinstance(value, dict)
                else [("all limits", value)]
            )
            for limit, x in items:
                if x is not None and not (math.isfinite(x) and x >= 0):
                    out.append(f"{who}: {what} {x:g} of {limit} must not be negative")
        if self.deadband_pct is not None and self.range is None:
            out.append(f"{who}: deadband_pct needs the instrument range (range = [low, high])")
        if not out:
            out += self._deadband_gaps(who)
        for what, x in (("on_delay_s", self.on_delay_s), ("off_delay_s", self.off_delay_s)):
            if not (math.isfinite(x) and 0 <= x <= MAX_DELAY_S):
                out.append(f"{who}: {what} {x:g} must be between 0 and {MAX_DELAY_S:g} s")
        if self.forecast is not None and self.h is None and self.hh is None:
            out.append(f"{who}: forecast needs an H or HH limit to predict")
        return out

    def _deadband_gaps(self, who: str) -> list[str]:
        """A limit's deadband must not reach past the next limit on its clearing side."""
        out = []
        for name, towards in _CLEARING_SIDE:
            out += self._gap(who, name, towards)
        return out

    def _gap(self, who: str, name: LimitName, towards: tuple[LimitName, ...]) -> list[str]:
        v = self.limit(name)
        if v is None:
            return []
        db = self.deadband_of(name)
        for other in towards:
            w = self.limit(other)
            if w is not None:
                gap = abs(v - w)
                if db > gap:
                    return [
                        f"{who}: deadband {db:g} of {name.upper()} {v:g} is larger than the "
                        f"gap {gap:g} to {other.upper()} {w:g}"
                    ]
                return []
        return []


# The limits a deadband moves towards, nearest first: HH and H clear downwards, L and LL upwards.
_CLEARING_SIDE: tuple[tuple[LimitName, tuple[LimitName, ...]], ...] = (
    ("hh", ("h", "l", "ll")),
    ("h", ("l", "ll")),
    ("l", ("h", "hh")),
    ("ll", ("l", "h", "hh")),
)


def _own(value: PerLimit | None, name: LimitName) -> float | None:
    return value.get(name) if isinstance(value, dict) else None


def _all(value: PerLimit | None) -> float | None:
    return None if isinstance(value, dict) else value


# ---------------------------------------------------------------------------------------------
# The [alarms] table of the configuration file.


class RuleDefaults(_Model):
    """Settings applied to every point before its own override."""

    deadband_pct: Annotated[float, Field(ge=0, le=100)] | None = None  # for points with a range
    on_delay_s: Annotated[float, Field(ge=0, le=MAX_DELAY_S)] = 0.0
    off_delay_s: Annotated[float, Field(ge=0, le=MAX_DELAY_S)] = 0.0
    bad_quality_after_s: Annotated[float, Field(ge=0, le=MAX_DELAY_S)] | None = 30.0
    # Stale applies to devices that send every period (Modbus, MQTT), not to those that send on
    # change only (`Device.hold_s`: OPC-UA, whose lost session raises COMM_FAIL instead).
    stale_periods: Annotated[float, Field(gt=0)] | None = 3.0
    out_of_range: bool = True
    signal_failure_pct: tuple[SpanPct, SpanPct] = SIGNAL_FAILURE_PCT
    priority: Priorities = Priorities()


class RuleOverride(_Model):
    """One point's settings in [alarms.points."ENTERPRISE/POINT"]; unset keys keep the rest."""

    alarm_class: AlarmClass | None = None
    hh: float | None = None
    h: float | None = None
    l: float | None = None  # noqa: E741 - the domain's name for the low limit
    ll: float | None = None
    deadband: PerLimit | None = None
    deadband_pct: PerLimit | None = None
    on_delay_s: float | None = None
    off_delay_s: float | None = None
    priority: Priorities | None = None
    roc: RateOfChange | None = None
    bad_quality: BadQuality | None = None
    stale_periods: Annotated[float, Field(gt=0)] | None = None
    stuck: Stuck | None = None
    out_of_range: bool | None = None
    forecast: Forecast | None = None
    signal_failure_pct: tuple[SpanPct, SpanPct] | None = None
    idlh_mg_m3: Annotated[float, Field(gt=0)] | None = None  # toxic gas: 5 % / 10 % IDLH


class SourceState(StrEnum):
    """The operating state of a hazard source (重大危险源), set by the centre or the enterprise."""

    RUNNING = "running"  # 运行
    STARTUP_SHUTDOWN = "startup_shutdown"  # 开停车
    MAINTENANCE = "maintenance"  # 检维修
    STOPPED = "stopped"  # 停用


_PROCESS_AND_GAS = [AlarmClass.PROCESS, AlarmClass.GAS]


class SuppressionSettings(_Model):
    """`[alarms.suppression]`: the alarm classes suppressed by design (ISA-18.2 designed
    suppression, state-based alarming) in each operating state of a hazard source and by an
    active first-out leader. Design choices [D], explained in the README:

    - maintenance (检维修) and stopped (停用): the process and gas alarms of the source's points
      say nothing about a unit that is opened up or emptied; quality alarms stay, because the
      detectors must keep working (GB 30871 asks for gas monitoring during the special work of a
      maintenance; 原安监总局令第40号 asks that a 重大危险源's online monitoring stay in service),
      so a dead detector during maintenance still matters.
    - running and start-up/shutdown (开停车): nothing — start-up and shutdown are the riskiest
      phases, not the ones to silence.
    - first-out: the followers' process and gas alarms; a follower's dead sensor is no
      consequence of the leader's trip.
    - device communication lost (`device_comm`): the device's points' quality alarms (bad
      quality, stale, …), while its link point's communication-loss alarm is active. One cause,
      one alarm (EEMUA 191): a lost PLC of 50 points is one alarm, not a flood of 50.
    """

    running: list[AlarmClass] = []
    startup_shutdown: list[AlarmClass] = []
    maintenance: list[AlarmClass] = _PROCESS_AND_GAS
    stopped: list[AlarmClass] = _PROCESS_AND_GAS
    first_out: list[AlarmClass] = _PROCESS_AND_GAS
    device_comm: list[AlarmClass] = [AlarmClass.QUALITY]

    def classes(self, state: SourceState) -> frozenset[AlarmClass]:
        chosen: list[AlarmClass] = getattr(self, state.value)
        return frozenset(chosen)


class AlarmSettings(_Model):
    """The `[alarms]` table: `[alarms.defaults]`, `[alarms.points."E001/GT-101"]` and
    `[alarms.suppression]`."""

    defaults: RuleDefaults = RuleDefaults()
    points: dict[str, RuleOverride] = {}
    suppression: SuppressionSettings = SuppressionSettings()


def alarm_settings(table: Mapping[str, Any]) -> AlarmSettings:
    """Validate an `[alarms]` table; RuleError names each bad key and value."""
    try:
        return AlarmSettings.model_validate(table)
    except ValidationError as exc:
        raise RuleError(
            [
                f"[alarms].{'.'.join(str(x) for x in err['loc'])}: "
                f"{str(err['msg']).removeprefix('Value error, ')} (got {err.get('input')!r})"
                for err in exc.errors(include_url=False)
            ]
        ) from None


def rules_from_config(
    cfg: Config,
    point_ids: Mapping[tuple[str, str], int],
    settings: AlarmSettings | None = None,
) -> list[PointRule]:
    """One rule per configured point that has an id, from its limits, range, kind, gas, unit and
    the device's period; gas detectors without limits get the GB/T 50493 defaults.

    `settings` defaults to the config's `[alarms]` table (`cfg.alarms`, a plain mapping that
    streams/config.py keeps unvalidated, as streams must not import alarms) when it has one.
    Raises RuleError listing every problem.
    """
    if settings is None:
        settings = alarm_settings(getattr(cfg, "alarms", None) or {})
    problems: list[str] = []
    known = {f"{e.code}/{p.code}" for e, _, p in cfg.points()}
    for key in settings.points:
        if key not in known:
            problems.append(f"[alarms.points.{key!r}] names no configured point ENTERPRISE/POINT")
    rules: list[PointRule] = []
    for e, d, p in cfg.points():
        pid = point_ids.get((e.code, p.code))
        if pid is None:
            continue
        tag = f"{e.code}/{p.code}"
        try:
            rules.append(point_rule(tag, pid, d, p, settings.defaults, settings.points.get(tag)))
        except RuleError as exc:
            problems += exc.problems
    if problems:
        raise RuleError(problems)
    return rules + link_rules(cfg, point_ids, rules, settings.defaults)


def link_rules(
    cfg: Config,
    point_ids: Mapping[tuple[str, str], int],
    rules: Iterable[PointRule],
    defaults: RuleDefaults,
) -> list[PointRule]:
    """A device's communication-loss alarm: bad quality (COMM_FAIL) of its link point, after
    the shortest T of its points' bad-quality rules, so that it is raised no later than any of
    theirs (which it then suppresses, `SuppressionSettings.device_comm`). A device none of whose
    points has a bad-quality rule has none either."""
    after = {r.point: r.bad_quality.after_s for r in rules if r.bad_quality is not None}
    out = []
    for e, d, link in cfg.link_points():
        pid = point_ids.get((e.code, link.code))
        members = (point_ids.get((e.code, p.code)) for p in d.points)
        times = [after[m] for m in members if m in after]
        if pid is None or not times:
            continue
        out.append(
            PointRule(
                point=pid,
                tag=f"{e.code}/{link.code}",
                alarm_class=AlarmClass.QUALITY,
                bad_quality=BadQuality(after_s=min(times)),
                priority=Priorities(quality=defaults.priority.quality),
            )
        )
    return out


def point_rule(
    tag: str,
    pid: int,
    device: Device,
    p: PointConfig,
    defaults: RuleDefaults,
    override: RuleOverride | None,
) -> PointRule:
    """The rule of one point from its configuration, the defaults and its override (from the
    config file or set over the API); RuleError lists every problem, e.g. H above HH."""
    try:
        return PointRule.model_validate(_rule_fields(tag, pid, device, p, defaults, override))
    except (GasRuleError, _GasLimitError) as exc:
        raise RuleError([f"point {tag}: {exc}"]) from None
    except ValidationError as exc:
        raise RuleError([_describe(tag, err) for err in exc.errors(include_url=False)]) from None


class _GasLimitError(ValueError):
    pass


def _describe(tag: str, err: Any) -> str:
    msg = str(err["msg"]).removeprefix("Value error, ")
    if msg.startswith(f"point {tag}: "):
        return msg
    where = ".".join(str(x) for x in err["loc"])
    return f"point {tag}: {where}: {msg} (got {err.get('input')!r})"


def _rule_fields(
    tag: str,
    pid: int,
    device: Device,
    p: PointConfig,
    defaults: RuleDefaults,
    override: RuleOverride | None,
) -> dict[str, Any]:
    is_gas = p.gas is not None or p.kind == "gas"
    out: dict[str, Any] = {
        "point": pid,
        "tag": tag,
        "alarm_class": AlarmClass.GAS if is_gas else AlarmClass.PROCESS,
        "range": p.range,
        "on_delay_s": defaults.on_delay_s,
        "off_delay_s": defaults.off_delay_s,
        "priority": defaults.priority,
        "out_of_range": defaults.out_of_range,
        "signal_failure_pct": defaults.signal_failure_pct,
    }
    limits: dict[str, float | None] = {n: getattr(p.limits, n) for n in LIMITS}
    if override is not None:
        limits |= {n: getattr(override, n) for n in LIMITS if n in override.model_fields_set}
    if is_gas and all(v is None for v in limits.values()):
        idlh = override.idlh_mg_m3 if override is not None else None
        sp = gas_setpoints(p.gas, p.unit, idlh)
        limits = {"hh": sp.hh, "h": sp.h, "l": sp.l, "ll": None}
    if is_gas and p.unit:
        _check_gas_ceiling(p, limits)
    out |= limits
    if defaults.deadband_pct is not None and p.range is not None:
        out["deadband_pct"] = defaults.deadband_pct
    if defaults.bad_quality_after_s is not None:
        out["bad_quality"] = BadQuality(after_s=defaults.bad_quality_after_s)
    stale_periods = defaults.stale_periods if device.hold_s is None else None
    if override is not None:
        set_ = override.model_fields_set
        for name in (
            "alarm_class",
            "deadband",
            "deadband_pct",
            "on_delay_s",
            "off_delay_s",
            "priority",
            "roc",
            "bad_quality",
            "stuck",
            "out_of_range",
            "forecast",
            "signal_failure_pct",
        ):
            if name in set_:
                out[name] = getattr(override, name)
        if "deadband" in set_ and "deadband_pct" not in set_:
            out.pop("deadband_pct", None)
        if "stale_periods" in set_:
            stale_periods = override.stale_periods
    if stale_periods is not None:
        # Stale waits for the collector's report of a lost device (COMM_FAIL), and one period
        # more for its way to the engine and the engine's next tick.
        window = stale_periods * device.period_s
        grace = max(0.0, device.loss_report_s - window) + device.period_s
        out["stale"] = Stale(period_s=device.period_s, periods=stale_periods, grace_s=grace)
    return out


def _check_gas_ceiling(p: PointConfig, limits: Mapping[str, float | None]) -> None:
    """GB/T 50493 5.5.2 sets maxima for %LEL and LEL·m setpoints: a higher one is an error."""
    try:
        sp = gas_setpoints(p.gas, p.unit)
    except GasRuleError:
        return
    if sp.maximum is None:
        return
    for name, ceiling, level in (("h", sp.maximum[0], "一级"), ("hh", sp.maximum[1], "二级")):
        v = limits.get(name)
        if v is not None and v > ceiling:
            raise _GasLimitError(
                f"{name.upper()} {v:g} {sp.unit} is above the {level} maximum {ceiling:g} "
                f"{sp.unit} of {sp.source}"
            )


# ---------------------------------------------------------------------------------------------
# Dense columns for the evaluator.


@dataclass(frozen=True, slots=True)
class RuleArrays:
    """The rules as numpy columns indexed by point id (row i = point id i).

    Limits are stored sign-normalised (`s·limit` with s = +1 for HH/H and −1 for L/LL) so that
    one comparison `s·v > set` raises and `s·v < clear` clears all four at once. NaN = off.
    """

    known: npt.NDArray[np.bool_]  # (n,) the point has a rule
    limit: npt.NDArray[np.float64]  # (n, 4) HH, H, L, LL as configured
    deadband: npt.NDArray[np.float64]  # (n, 4) absolute
    set_level: npt.NDArray[np.float64]  # (n, 4) s·limit
    clear_level: npt.NDArray[np.float64]  # (n, 4) s·limit − deadband
    on_delay_ns: npt.NDArray[np.int64]  # (n, C)
    off_delay_ns: npt.NDArray[np.int64]  # (n, C)
    roc_limit: npt.NDArray[np.float64]  # (n,) per second
    roc_tau_s: npt.NDArray[np.float64]  # (n,)
    bad_quality: npt.NDArray[np.bool_]  # (n,) condition enabled (its T is the on-delay)
    stale_after_ns: npt.NDArray[np.int64]  # (n,) NEVER_NS = off
    stuck_eps: npt.NDArray[np.float64]  # (n,)
    stuck_window_ns: npt.NDArray[np.int64]  # (n,) NEVER_NS = off
    range_lo: npt.NDArray[np.float64]  # (n,) NaN = no range check
    range_hi: npt.NDArray[np.float64]
    # (n,) out-of-range readings within [reading_lo, reading_hi] are measurements (bounds);
    # farther out, failure signals. NaN = no range: none is a measurement.
    reading_lo: npt.NDArray[np.float64]
    reading_hi: npt.NDArray[np.float64]
    forecast_tau_s: npt.NDArray[np.float64]  # (n,)
    forecast_horizon_s: npt.NDArray[np.float64]  # (n,) NaN = off
    priority: npt.NDArray[np.uint8]  # (n, C)
    alarm_class: npt.NDArray[np.uint8]  # (n, C) index into CLASSES

    @property
    def size(self) -> int:
        return len(self.known)

    def class_of(self, point: int, condition: Condition) -> AlarmClass:
        return CLASSES[int(self.alarm_class[point, condition])]

    @classmethod
    def build(cls, rules: Iterable[PointRule]) -> RuleArrays:
        rules = list(rules)
        ids = [r.point for r in rules]
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if ids.count(i) > 1})
            raise RuleError([f"point id {i} has more than one rule" for i in dup])
        a = cls._empty(max(ids, default=-1) + 1)
        for r in rules:
            a._fill(r)
        return a

    @classmethod
    def _empty(cls, n: int) -> RuleArrays:
        """n rows without a rule: every condition off."""
        c, nan = N_CONDITIONS, np.nan
        return cls(
            known=np.zeros(n, np.bool_),
            limit=np.full((n, 4), nan),
            deadband=np.zeros((n, 4)),
            set_level=np.full((n, 4), nan),
            clear_level=np.full((n, 4), nan),
            on_delay_ns=np.zeros((n, c), np.int64),
            off_delay_ns=np.zeros((n, c), np.int64),
            roc_limit=np.full(n, nan),
            roc_tau_s=np.ones(n),
            bad_quality=np.zeros(n, np.bool_),
            stale_after_ns=np.full(n, NEVER_NS, np.int64),
            stuck_eps=np.full(n, nan),
            stuck_window_ns=np.full(n, NEVER_NS, np.int64),
            range_lo=np.full(n, nan),
            range_hi=np.full(n, nan),
            reading_lo=np.full(n, nan),
            reading_hi=np.full(n, nan),
            forecast_tau_s=np.ones(n),
            forecast_horizon_s=np.full(n, nan),
            priority=np.full((n, c), Priority.MEDIUM, np.uint8),
            alarm_class=np.zeros((n, c), np.uint8),
        )

    def with_rules(self, rules: Iterable[PointRule]) -> RuleArrays:
        """A copy in which the rows of these points are rebuilt from their rules (the other
        rows are kept as they are)."""
        names = [f.name for f in fields(self)]
        a = RuleArrays(**{f: getattr(self, f).copy() for f in names})
        blank = RuleArrays._empty(1)
        for r in rules:
            if not 0 <= r.point < a.size:
                raise RuleError([f"point id {r.point} has no row (size {a.size})"])
            for f in names:
                getattr(a, f)[r.point] = getattr(blank, f)[0]
            a._fill(r)
        return a

    def enabled(self, point: int) -> npt.NDArray[np.bool_]:
        """(C,) which conditions the point's rule can raise at all."""
        out = np.zeros(N_CONDITIONS, np.bool_)
        out[: len(LIMIT_CONDITIONS)] = ~np.isnan(self.limit[point])
        out[Condition.ROC] = not math.isnan(self.roc_limit[point])
        out[Condition.BAD_QUALITY] = self.bad_quality[point]
        out[Condition.STALE] = self.stale_after_ns[point] < NEVER_NS
        out[Condition.STUCK] = self.stuck_window_ns[point] < NEVER_NS
        out[Condition.OUT_OF_RANGE] = not math.isnan(self.range_lo[point])
        out[Condition.FORECAST] = not math.isnan(self.forecast_horizon_s[point])
        return out

    def _fill(self, r: PointRule) -> None:
        a, i, nan = self, r.point, np.nan
        sign = np.array([1.0, 1.0, -1.0, -1.0])
        delayed = [*LIMIT_CONDITIONS, Condition.ROC, Condition.OUT_OF_RANGE, Condition.FORECAST]
        a.known[i] = True
        lim = np.array([nan if (v := r.limit(n_)) is None else v for n_ in LIMITS])
        db = np.array([r.deadband_of(n_) for n_ in LIMITS])
        a.limit[i] = lim
        a.deadband[i] = db
        a.set_level[i] = sign * lim
        a.clear_level[i] = sign * lim - db
        a.on_delay_ns[i, delayed] = round(r.on_delay_s * NS)
        a.off_delay_ns[i, delayed] = round(r.off_delay_s * NS)
        if r.roc is not None:
            a.roc_limit[i] = r.roc.limit_per_s
            a.roc_tau_s[i] = r.roc.window_s
        if r.bad_quality is not None:
            a.bad_quality[i] = True
            a.on_delay_ns[i, Condition.BAD_QUALITY] = round(r.bad_quality.after_s * NS)
        if r.stale is not None:
            a.stale_after_ns[i] = round(r.stale.periods * r.stale.period_s * NS)
            a.on_delay_ns[i, Condition.STALE] = round(r.stale.grace_s * NS)
        if r.stuck is not None:
            a.stuck_eps[i] = r.stuck.epsilon
            a.stuck_window_ns[i] = round(r.stuck.window_s * NS)
        if r.range is not None and r.out_of_range:
            a.range_lo[i], a.range_hi[i] = r.range
        if r.range is not None:
            lo, hi = r.range
            below, above = r.signal_failure_pct
            a.reading_lo[i] = lo - below / 100 * (hi - lo)
            a.reading_hi[i] = hi + above / 100 * (hi - lo)
        if r.forecast is not None:
            a.forecast_tau_s[i] = r.forecast.window_s
            a.forecast_horizon_s[i] = r.forecast.horizon_s
        for cond in Condition:
            a.priority[i, cond] = r.priority_of(cond)
            a.alarm_class[i, cond] = CLASSES.index(r.class_of(cond))
