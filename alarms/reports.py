"""What enterprises report for the early-warning model (DOMAIN.md §4.2 (d)): special-work permits
(特殊作业, GB 30871) on their hazard sources and the daily safety commitment (安全承诺).

Stored in PostgreSQL and cached in memory: the routes change them through `Reports`, which keeps
its cache in step as it writes, and the warning desk reads only the cache on each evaluation.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import asyncpg  # type: ignore[import-untyped]

from alarms.rules import SourceState
from alarms.warning_rules import (
    MissingCommitmentRule,
    WarningLevel,
    WarningRules,
    WarningRulesError,
)

_NS = 1_000_000_000

# The warning rules' production state (warning_rules.toml `production_states`) of each operating
# state a hazard source is set to over POST /api/sources/{code}/state.
PRODUCTION_STATE: Mapping[SourceState, str] = {
    SourceState.RUNNING: "normal",
    SourceState.STARTUP_SHUTDOWN: "startup_shutdown",
    SourceState.MAINTENANCE: "maintenance",
    SourceState.STOPPED: "stopped",
}


class OperatingStatus(Protocol):
    """A hazard source's operating state as web.sources keeps it."""

    @property
    def state(self) -> SourceState: ...

    @property
    def planned_end(self) -> datetime | None: ...


class ReportError(Exception):
    """A report that cannot be accepted; str() says why, with the offending value."""


class ReportInvalid(ReportError):
    """The report contradicts the configuration or the rules (unknown source, type, day…)."""


class ReportNotFound(ReportError):
    """No such report, or one of another enterprise (the same to the caller)."""


class ReportConflict(ReportError):
    """The report conflicts with what is stored (a permit number reused, a work ended twice)."""


@dataclass(frozen=True, slots=True)
class SpecialWork:
    """One work permit (作业证) on a hazard source: on-going from its start until ended, even
    past its planned end (an overrun is shown, not assumed finished)."""

    id: int
    enterprise: str
    hazard_source: str
    work_type: str  # a code of warning_rules.toml `special_work_types`
    permit_no: str
    started_at: datetime
    planned_end: datetime
    location: str
    supervisor: str  # 监护人
    reported_by: str
    reported_at: datetime
    ended_at: datetime | None = None
    ended_by: str | None = None
    end_note: str = ""

    def ongoing(self, now: datetime) -> bool:
        return self.ended_at is None and self.started_at <= now

    def view(self, now: datetime) -> dict[str, Any]:
        row: dict[str, Any] = {
            k: v.isoformat(timespec="seconds") if isinstance(v, datetime) else v
            for k, v in asdict(self).items()
        }
        row["ongoing"] = self.ongoing(now)
        row["overrun"] = self.ended_at is None and self.planned_end < now
        return row


@dataclass(frozen=True, slots=True)
class Commitment:
    """One submission of an enterprise's daily commitment (安全风险研判与承诺公告), signed by its
    main responsible person (主要负责人); the highest revision of a day is the one in force."""

    enterprise: str
    day: date  # the local day it commits to
    revision: int  # 1 for the first submission of the day, +1 for each resubmission
    risk_level: str  # the day's risk judgement: red/orange/yellow/blue = 重大/较大/一般/较低
    production_state: str  # a code of warning_rules.toml `production_states`
    units_running: int
    units_stopped: int
    units_maintenance: int
    special_work: dict[str, int]  # work type → number of permits planned for the day
    hot_work_grade1: int  # 一级动火
    hot_work_special: int  # 特级动火
    sources_safe: dict[str, bool]  # hazard source → in a safe state
    note: str
    signed_by: str
    submitted_by: str
    submitted_at: datetime

    def view(self) -> dict[str, Any]:
        row = asdict(self)
        row["date"] = row.pop("day").isoformat()
        row["submitted_at"] = self.submitted_at.isoformat(timespec="seconds")
        return row


_COMMITMENT_COLUMNS = [f.name for f in fields(Commitment)]
_JSON_COLUMNS = ("special_work", "sources_safe")


def _commitment(row: Mapping[str, Any]) -> Commitment:
    values = dict(row)
    for c in _JSON_COLUMNS:
        values[c] = json.loads(values[c])
    return Commitment(**{c: values[c] for c in _COMMITMENT_COLUMNS})


def _special_work(row: Mapping[str, Any]) -> SpecialWork:
    return SpecialWork(**dict(row))


def commitment_rule(rules: WarningRules) -> MissingCommitmentRule | None:
    return next((r for r in rules.rules if isinstance(r, MissingCommitmentRule)), None)


def local_day(now_ns: int, zone: ZoneInfo) -> date:
    return datetime.fromtimestamp(now_ns / _NS, zone).date()


def commitment_deadline(day: date, rule: MissingCommitmentRule) -> datetime:
    """When the commitment of `day` becomes missing: its deadline hour, local time."""
    return datetime(
        day.year, day.month, day.day, rule.deadline_hour, tzinfo=ZoneInfo(rule.timezone)
    )


def commitment_submitted(
    day_has_commitment: bool, now_ns: int, rule: MissingCommitmentRule | None
) -> bool | None:
    """The warning rules' input: True once submitted today, False when the deadline has passed
    without it, None before the deadline (not yet due) or without a commitment rule."""
    if day_has_commitment:
        return True
    if rule is None:
        return None
    day = local_day(now_ns, ZoneInfo(rule.timezone))
    return False if now_ns >= commitment_deadline(day, rule).timestamp() * _NS else None


class Reports:
    """The store and in-memory cache of special work and commitments of the configured
    enterprises (`sources`: enterprise → its hazard source codes)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        rules: WarningRules,
        sources: Mapping[str, Iterable[str]],
        *,
        operating_states: Mapping[tuple[str, str], OperatingStatus] | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        """`operating_states`: (enterprise, source) → its operating state, kept current by
        whoever sets them (absent: never set)."""
        self.pool = pool
        self.sources = {e: frozenset(s) for e, s in sources.items() if s}
        self.clock = clock
        self.commitment_rule = commitment_rule(rules)
        tz = self.commitment_rule.timezone if self.commitment_rule else "UTC"
        self.zone = ZoneInfo(tz)
        self._work_types = [w.code for w in rules.special_work_types]
        self._states = [s.code for s in rules.production_states]
        unknown = sorted(set(PRODUCTION_STATE.values()) - set(self._states))
        if unknown:
            raise WarningRulesError(
                f"the warning rules' production_states lack {unknown}, the hazard sources' "
                "operating states"
            )
        self.operating_states = {} if operating_states is None else operating_states
        self._works: dict[int, SpecialWork] = {}  # not ended
        self._commitments: dict[tuple[str, date], Commitment] = {}  # in force, recent days

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock() / _NS, UTC)

    def today(self) -> date:
        return local_day(self.clock(), self.zone)

    def deadline(self, day: date) -> datetime | None:
        rule = self.commitment_rule
        return None if rule is None else commitment_deadline(day, rule)

    async def load(self) -> tuple[int, int]:
        """Fill the cache at start-up: works not ended, and yesterday's and today's commitments."""
        works = await self.pool.fetch("SELECT * FROM special_work WHERE ended_at IS NULL")
        rows = await self.pool.fetch(
            "SELECT DISTINCT ON (enterprise, day) * FROM safety_commitments WHERE day >= $1"
            " ORDER BY enterprise, day, revision DESC",
            self.today() - timedelta(days=1),
        )
        self._works = {r["id"]: _special_work(r) for r in works}
        self._commitments = {(r["enterprise"], r["day"]): _commitment(r) for r in rows}
        return len(works), len(rows)

    # -- what the warning desk reads ----------------------------------------------------------

    def special_work_at(self, now_ns: int) -> dict[tuple[str, str], dict[str, tuple[str, ...]]]:
        """(enterprise, hazard source) → on-going work type → its permit numbers."""
        now = datetime.fromtimestamp(now_ns / _NS, UTC)
        found: dict[tuple[str, str], dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        for w in self._works.values():
            if w.ongoing(now):
                found[(w.enterprise, w.hazard_source)][w.work_type].append(w.permit_no)
        return {k: {t: tuple(sorted(p)) for t, p in v.items()} for k, v in found.items()}

    def commitment_inputs(self, enterprise: str, now_ns: int) -> tuple[bool | None, str | None]:
        """The rules' `commitment_submitted` and the production state committed to today; both
        None for an enterprise without hazard sources (no commitment is asked of it)."""
        if enterprise not in self.sources:
            return None, None
        c = self._commitments.get((enterprise, local_day(now_ns, self.zone)))
        submitted = commitment_submitted(c is not None, now_ns, self.commitment_rule)
        return submitted, None if c is None else c.production_state

    def source_state(self, enterprise: str, source: str) -> str | None:
        """The production state of one hazard source from its operating state; None when never
        set (the rules then use the state the enterprise committed to)."""
        status = self.operating_states.get((enterprise, source))
        return None if status is None else PRODUCTION_STATE[status.state]

    def source_planned_end(self, enterprise: str, source: str) -> int | None:
        """When the hazard source's operating state is planned to end (ns), if it was given
        one."""
        status = self.operating_states.get((enterprise, source))
        end = None if status is None else status.planned_end
        return None if end is None else round(end.timestamp() * _NS)

    # -- special work -------------------------------------------------------------------------

    async def report_work(
        self,
        enterprise: str,
        by: str,
        *,
        hazard_source: str,
        work_type: str,
        permit_no: str,
        started_at: datetime,
        planned_end: datetime,
        location: str,
        supervisor: str,
    ) -> SpecialWork:
        self._check_source(enterprise, hazard_source)
        if work_type not in self._work_types:
            raise ReportInvalid(
                f"type: unknown special work type {work_type!r}; known: {self._work_types}"
            )
        if planned_end <= started_at:
            raise ReportInvalid(
                f"planned_end: {planned_end.isoformat()} is not after started_at "
                f"{started_at.isoformat()}"
            )
        try:
            row = await self.pool.fetchrow(
                "INSERT INTO special_work (enterprise, hazard_source, work_type, permit_no,"
                " started_at, planned_end, location, supervisor, reported_by, reported_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *",
                enterprise, hazard_source, work_type, permit_no, started_at, planned_end,
                location, supervisor, by, self.now(),
            )  # fmt: skip
        except asyncpg.UniqueViolationError:
            raise ReportConflict(
                f"permit_no: enterprise {enterprise!r} already reported permit {permit_no!r}"
            ) from None
        work = _special_work(row)
        self._works[work.id] = work
        return work

    async def end_work(self, work_id: int, enterprise: str, by: str, note: str) -> SpecialWork:
        row = await self.pool.fetchrow(
            # A work ended before its reported start ends at its start (never a negative span).
            "UPDATE special_work SET ended_at = greatest($3, started_at), ended_by = $4,"
            " end_note = $5 WHERE id = $1 AND enterprise = $2 AND ended_at IS NULL RETURNING *",
            work_id, enterprise, self.now(), by, note,
        )  # fmt: skip
        if row is None:
            old = await self.pool.fetchrow(
                "SELECT * FROM special_work WHERE id = $1 AND enterprise = $2", work_id, enterprise
            )
            if old is None:
                raise ReportNotFound(f"no special work {work_id}")
            ended = _special_work(old)
            assert ended.ended_at is not None
            raise ReportConflict(
                f"special work {work_id} (permit {ended.permit_no!r}) already ended at "
                f"{ended.ended_at.isoformat(timespec='seconds')} by {ended.ended_by}"
            )
        self._works.pop(work_id, None)
        return _special_work(row)

    async def works(
        self, enterprise: str | None, source: str | None, active: bool | None, limit: int = 1000
    ) -> list[SpecialWork]:
        """Reported works, latest start first; `active`: on-going now (True) or not (False)."""
        rows = await self.pool.fetch(
            "SELECT * FROM special_work WHERE ($1::text IS NULL OR enterprise = $1)"
            " AND ($2::text IS NULL OR hazard_source = $2)"
            " AND ($3::boolean IS NULL OR"
            "      (ended_at IS NULL AND started_at <= $4) = $3)"
            " ORDER BY started_at DESC, id DESC LIMIT $5",
            enterprise, source, active, self.now(), limit,
        )  # fmt: skip
        return [_special_work(r) for r in rows]

    # -- daily commitments ----------------------------------------------------------------------

    async def submit_commitment(
        self,
        enterprise: str,
        by: str,
        *,
        day: date,
        risk_level: WarningLevel,
        production_state: str,
        units_running: int,
        units_stopped: int,
        units_maintenance: int,
        special_work: Mapping[str, int],
        hot_work_grade1: int,
        hot_work_special: int,
        sources_safe: Mapping[str, bool],
        note: str,
        signed_by: str,
    ) -> Commitment:
        """Store today's commitment; a resubmission the same day is the next revision and
        replaces it in force (the earlier ones are kept)."""
        today = self.today()
        if day != today:
            raise ReportInvalid(
                f"date: a commitment is submitted for the current day ({today.isoformat()}, "
                f"{self.zone.key}), not {day.isoformat()}"
            )
        if production_state not in self._states:
            raise ReportInvalid(
                f"production_state: unknown state {production_state!r}; known: {self._states}"
            )
        unknown = sorted(set(special_work) - set(self._work_types))
        if unknown:
            raise ReportInvalid(
                f"special_work: unknown special work type(s) {unknown}; known: {self._work_types}"
            )
        own = self._check_enterprise(enterprise)
        missing, foreign = sorted(own - set(sources_safe)), sorted(set(sources_safe) - own)
        if missing or foreign:
            raise ReportInvalid(
                f"sources_safe: name each hazard source of enterprise {enterprise!r} "
                f"({sorted(own)}) once; missing {missing}, unknown {foreign}"
            )
        counts = {t: special_work.get(t, 0) for t in self._work_types}
        async with self.pool.acquire() as conn, conn.transaction():
            # One submitter at a time per enterprise and day: revisions never collide.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"{enterprise}/{day}")
            row = await conn.fetchrow(
                "INSERT INTO safety_commitments (enterprise, day, revision, risk_level,"
                " production_state, units_running, units_stopped, units_maintenance,"
                " special_work, hot_work_grade1, hot_work_special, sources_safe, note,"
                " signed_by, submitted_by, submitted_at)"
                " SELECT $1, $2, coalesce(max(revision), 0) + 1, $3, $4, $5, $6, $7, $8::jsonb,"
                " $9, $10, $11::jsonb, $12, $13, $14, $15"
                " FROM safety_commitments WHERE enterprise = $1 AND day = $2 RETURNING *",
                enterprise, day, risk_level.value, production_state, units_running,
                units_stopped, units_maintenance, json.dumps(counts), hot_work_grade1,
                hot_work_special, json.dumps(dict(sources_safe)), note, signed_by, by,
                self.now(),
            )  # fmt: skip
        commitment = _commitment(row)
        self._commitments[(enterprise, day)] = commitment
        for key in [k for k in self._commitments if k[1] < today - timedelta(days=1)]:
            del self._commitments[key]
        return commitment

    async def commitments(self, day: date, enterprise: str | None) -> list[list[Commitment]]:
        """Every submission of the day per enterprise, the one in force (latest) first."""
        rows = await self.pool.fetch(
            "SELECT * FROM safety_commitments WHERE day = $1"
            " AND ($2::text IS NULL OR enterprise = $2) ORDER BY enterprise, revision DESC",
            day, enterprise,
        )  # fmt: skip
        by_enterprise: dict[str, list[Commitment]] = {}
        for r in rows:
            by_enterprise.setdefault(r["enterprise"], []).append(_commitment(r))
        return list(by_enterprise.values())

    # -- checks -----------------------------------------------------------------------------

    def _check_enterprise(self, enterprise: str) -> frozenset[str]:
        own = self.sources.get(enterprise)
        if not own:
            raise ReportInvalid(f"enterprise {enterprise!r} has no hazard source configured")
        return own

    def _check_source(self, enterprise: str, source: str) -> None:
        own = self._check_enterprise(enterprise)
        if source not in own:
            raise ReportInvalid(
                f"source: {source!r} is not a hazard source of enterprise {enterprise!r}; "
                f"known: {sorted(own)}"
            )
