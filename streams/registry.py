"""The registry: the configured tree (regions, enterprises, hazard sources, devices, points,
cameras) kept in the database under stable ids, and the point index built from it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import numpy as np
import numpy.typing as npt

from streams.config import Config, Limits, redact_url

log = logging.getLogger("anjian.registry")

# pg_advisory_xact_lock key: "anjian" in ASCII, then the registry's number.
_LOCK_REGISTRY = 0x616E6A69616E0004


@dataclass(frozen=True, slots=True)
class PointInfo:
    """What the rest of the system needs to know about a monitoring point (监测点)."""

    id: int
    enterprise: str
    device: str
    code: str
    name: str
    unit: str
    kind: str
    gas: str | None
    hazard_source: str | None
    range: tuple[float, float] | None
    limits: Limits


class PointIndex:
    """Point ids by (enterprise code, point code), and point info by id, for configured points."""

    def __init__(self, points: Iterable[PointInfo]) -> None:
        self._by_id = {p.id: p for p in points}
        self._by_code = {(p.enterprise, p.code): p.id for p in self._by_id.values()}

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[PointInfo]:
        return iter(self._by_id.values())

    def __contains__(self, point_id: object) -> bool:
        return point_id in self._by_id

    def id(self, enterprise: str, point: str) -> int:
        try:
            return self._by_code[(enterprise, point)]
        except KeyError:
            raise KeyError(f"no point {point!r} in enterprise {enterprise!r}") from None

    def info(self, point_id: int) -> PointInfo:
        try:
            return self._by_id[point_id]
        except KeyError:
            raise KeyError(f"no configured point with id {point_id}") from None

    def for_enterprise(self, enterprise: str) -> dict[str, int]:
        """Point code → id for one enterprise (what a DeviceCollector takes)."""
        return {code: i for (e, code), i in self._by_code.items() if e == enterprise}

    @property
    def ids(self) -> npt.NDArray[np.int32]:
        return np.array(sorted(self._by_id), np.int32)


@dataclass(frozen=True, slots=True)
class _Column:
    name: str
    array_type: str  # the type of the array parameter, e.g. "text[]"
    values: Sequence[Any]
    cast: str = ""  # applied to the unnested element, e.g. "::jsonb"


async def _sync_rows(
    conn: asyncpg.Connection,
    table: str,
    key: Sequence[str],
    columns: Sequence[_Column],
    *,
    on_change: str = "",
    ids: bool = True,
) -> dict[tuple[Any, ...], int]:
    """Update changed rows and insert new ones by `key`; return the ids by key.

    Inserting only rows that are really new keeps the serial ids dense: an INSERT ... ON
    CONFLICT would burn a sequence value for every configured row on every start.
    """
    names = [c.name for c in columns]
    unnest = (
        "unnest("
        + ", ".join(f"${i}::{c.array_type}" for i, c in enumerate(columns, start=1))
        + f") AS u({', '.join(names)})"
    )
    value = {c.name: f"u.{c.name}{c.cast}" for c in columns}
    match = " AND ".join(f"t.{k} = u.{k}" for k in key)
    rest = [n for n in names if n not in key]
    args = [list(c.values) for c in columns]
    if rest:
        sets = ", ".join([f"{n} = {value[n]}" for n in rest] + ([on_change] if on_change else []))
        changed = (
            f"({', '.join(f't.{n}' for n in rest)}) IS DISTINCT FROM "
            f"({', '.join(value[n] for n in rest)})"
        )
        await conn.execute(
            f"UPDATE {table} AS t SET {sets} FROM {unnest} WHERE {match} AND {changed}", *args
        )
    await conn.execute(
        f"INSERT INTO {table} ({', '.join(names)}) "
        f"SELECT {', '.join(value[n] for n in names)} FROM {unnest} "
        f"WHERE NOT EXISTS (SELECT 1 FROM {table} AS t WHERE {match})",
        *args,
    )
    if not ids:
        return {}
    keys = [c for c in columns if c.name in key]
    rows = await conn.fetch(
        f"SELECT t.id, {', '.join(f't.{k}' for k in key)} FROM {table} AS t JOIN "
        "unnest("
        + ", ".join(f"${i}::{c.array_type}" for i, c in enumerate(keys, start=1))
        + f") AS u({', '.join(c.name for c in keys)}) ON {match}",
        *[list(c.values) for c in keys],
    )
    return {tuple(r[k] for k in key): r["id"] for r in rows}


async def sync_config(pool: asyncpg.Pool, cfg: Config) -> PointIndex:
    """Write the configured tree into the registry; ids stay stable across restarts and edits.

    Points that left the configuration are retired, not deleted, so their history stays.
    """
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_REGISTRY)
        regions = cfg.regions
        await _sync_rows(
            conn,
            "regions",
            ["code"],
            [
                _Column("code", "text[]", [r.code for r in regions]),
                _Column("province", "text[]", [r.province for r in regions]),
                _Column("city", "text[]", [r.city for r in regions]),
            ],
            ids=False,
        )
        ents = cfg.enterprises
        enterprise_ids = {
            code: i
            for (code,), i in (
                await _sync_rows(
                    conn,
                    "enterprises",
                    ["code"],
                    [
                        _Column("code", "text[]", [e.code for e in ents]),
                        _Column("name", "text[]", [e.name for e in ents]),
                        _Column("region", "text[]", [e.region for e in ents]),
                        _Column("industry", "text[]", [e.industry for e in ents]),
                        _Column("address", "text[]", [e.address for e in ents]),
                        _Column("lon", "float8[]", [e.lon for e in ents]),
                        _Column("lat", "float8[]", [e.lat for e in ents]),
                    ],
                    on_change="updated_at = now()",
                )
            ).items()
        }

        sources = [(e, h) for e in ents for h in e.hazard_sources]
        source_ids = await _sync_rows(
            conn,
            "hazard_sources",
            ["enterprise_id", "code"],
            [
                _Column("enterprise_id", "int4[]", [enterprise_ids[e.code] for e, _ in sources]),
                _Column("code", "text[]", [h.code for _, h in sources]),
                _Column("name", "text[]", [h.name for _, h in sources]),
                _Column("unit_type", "text[]", [h.unit_type for _, h in sources]),
                _Column("grade", "int2[]", [h.grade for _, h in sources]),
                _Column("lon", "float8[]", [h.lon for _, h in sources]),
                _Column("lat", "float8[]", [h.lat for _, h in sources]),
            ],
        )

        def source_id(enterprise: str, code: str | None) -> int | None:
            return None if code is None else source_ids[(enterprise_ids[enterprise], code)]

        # A camera's health points hang off a device of the camera's code (protocol video).
        devices = [(e, d) for e in ents for d in [*e.devices, *(c.device() for c in e.cameras)]]
        device_ids = await _sync_rows(
            conn,
            "devices",
            ["enterprise_id", "code"],
            [
                _Column("enterprise_id", "int4[]", [enterprise_ids[e.code] for e, _ in devices]),
                _Column("code", "text[]", [d.code for _, d in devices]),
                _Column("name", "text[]", [d.name for _, d in devices]),
                _Column("protocol", "text[]", [d.protocol for _, d in devices]),
                _Column(
                    "hazard_source_id",
                    "int4[]",
                    [source_id(e.code, d.hazard_source) for e, d in devices],
                ),
                _Column("period_s", "float8[]", [d.period_s for _, d in devices]),
            ],
        )

        points = [*cfg.points(), *cfg.link_points(), *cfg.camera_points()]
        point_sources = [p.hazard_source or d.hazard_source for _, d, p in points]
        point_ids = await _sync_rows(
            conn,
            "points",
            ["enterprise_id", "code"],
            [
                _Column("enterprise_id", "int4[]", [enterprise_ids[e.code] for e, _, _ in points]),
                _Column(
                    "device_id",
                    "int4[]",
                    [device_ids[(enterprise_ids[e.code], d.code)] for e, d, _ in points],
                ),
                _Column(
                    "hazard_source_id",
                    "int4[]",
                    [
                        source_id(e.code, hs)
                        for (e, _, _), hs in zip(points, point_sources, strict=True)
                    ],
                ),
                _Column("code", "text[]", [p.code for _, _, p in points]),
                _Column("name", "text[]", [p.name for _, _, p in points]),
                _Column("unit", "text[]", [p.unit for _, _, p in points]),
                _Column("kind", "text[]", [p.kind for _, _, p in points]),
                _Column("gas", "text[]", [p.gas for _, _, p in points]),
                _Column(
                    "range_lo",
                    "float8[]",
                    [None if p.range is None else p.range[0] for _, _, p in points],
                ),
                _Column(
                    "range_hi",
                    "float8[]",
                    [None if p.range is None else p.range[1] for _, _, p in points],
                ),
                _Column(
                    "limits",
                    "text[]",
                    [p.limits.model_dump_json(exclude_none=True) for _, _, p in points],
                    "::jsonb",
                ),
                _Column("retired", "bool[]", [False] * len(points)),
            ],
        )
        retired = await conn.fetch(
            "UPDATE points p SET retired = true FROM enterprises e"
            " WHERE e.id = p.enterprise_id AND NOT p.retired AND NOT (p.id = ANY ($1::int4[]))"
            " RETURNING e.code || '/' || p.code AS tag",
            list(point_ids.values()),
        )
        if retired:
            # Said loudly: a truncated or wrong configuration file retires the points it lacks.
            tags = sorted(r["tag"] for r in retired)
            log.warning(
                "%d point(s) left the configuration and are retired (their history stays; "
                "they come back with their ids when configured again): %s",
                len(tags),
                ", ".join(tags[:20]) + (" …" if len(tags) > 20 else ""),
            )

        cameras = [(e, c) for e in ents for c in e.cameras]
        await _sync_rows(
            conn,
            "cameras",
            ["enterprise_id", "code"],
            [
                _Column("enterprise_id", "int4[]", [enterprise_ids[e.code] for e, _ in cameras]),
                _Column("code", "text[]", [c.code for _, c in cameras]),
                _Column("name", "text[]", [c.name for _, c in cameras]),
                # The database is no place for a camera's credentials: only the video workers
                # use the URL, and they take it from the configuration.
                _Column("url", "text[]", [redact_url(c.url) for _, c in cameras]),
                _Column(
                    "hazard_source_id",
                    "int4[]",
                    [source_id(e.code, c.hazard_source) for e, c in cameras],
                ),
                # A 2-D array would flatten under unnest: pass each list as an array literal.
                _Column(
                    "points",
                    "text[]",
                    [
                        "{"
                        + ",".join(str(point_ids[(enterprise_ids[e.code], p)]) for p in c.points)
                        + "}"
                        for e, c in cameras
                    ],
                    "::int4[]",
                ),
                _Column("lon", "float8[]", [c.lon for _, c in cameras]),
                _Column("lat", "float8[]", [c.lat for _, c in cameras]),
                _Column("transport", "text[]", [c.transport for _, c in cameras]),
                _Column("position", "text[]", [c.position for _, c in cameras]),
            ],
        )

    return PointIndex(
        PointInfo(
            id=point_ids[(enterprise_ids[e.code], p.code)],
            enterprise=e.code,
            device=d.code,
            code=p.code,
            name=p.name,
            unit=p.unit,
            kind=p.kind,
            gas=p.gas,
            hazard_source=hs,
            range=p.range,
            limits=p.limits,
        )
        for (e, d, p), hs in zip(points, point_sources, strict=True)
    )


async def list_enterprises(
    pool: asyncpg.Pool, enterprise: str | None = None
) -> list[dict[str, Any]]:
    """Enterprises (all, or the one given) with their region and live tree's size, JSON-ready."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            """
            SELECT e.code, e.name, e.region, r.province, r.city, e.industry, e.address,
                   e.lon, e.lat,
                   (SELECT count(*) FROM hazard_sources h WHERE h.enterprise_id = e.id)
                       AS hazard_sources,
                   (SELECT count(DISTINCT p.device_id) FROM points p
                    WHERE p.enterprise_id = e.id AND NOT p.retired) AS devices,
                   (SELECT count(*) FROM points p
                    WHERE p.enterprise_id = e.id AND NOT p.retired) AS points
            FROM enterprises e LEFT JOIN regions r ON r.code = e.region
            WHERE $1::text IS NULL OR e.code = $1
            ORDER BY e.code
            """,
            enterprise,
        )
    return [dict(r) for r in rows]


async def list_points(pool: asyncpg.Pool, enterprise: str | None = None) -> list[dict[str, Any]]:
    """Live (not retired) points, of one enterprise or all, JSON-ready: by enterprise, then by
    code as bytes (GD-101 … GD-108, TK101.LT, TK101.PT …; a locale's collation would skip the
    punctuation). Ids are no order for a reader: new points take theirs in whatever order the
    database inserts them."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            """
            SELECT p.id, e.code AS enterprise, d.code AS device, d.protocol,
                   h.code AS hazard_source, h.name AS hazard_source_name,
                   p.code, p.name, p.unit, p.kind, p.gas, p.range_lo, p.range_hi,
                   p.limits::text AS limits
            FROM points p
            JOIN enterprises e ON e.id = p.enterprise_id
            JOIN devices d ON d.id = p.device_id
            LEFT JOIN hazard_sources h ON h.id = p.hazard_source_id
            WHERE NOT p.retired AND ($1::text IS NULL OR e.code = $1)
            ORDER BY e.code, p.code COLLATE "C"
            """,
            enterprise,
        )
    out = []
    for r in rows:
        row = dict(r)
        lo, hi = row.pop("range_lo"), row.pop("range_hi")
        row["range"] = None if lo is None else [lo, hi]
        row["limits"] = json.loads(row["limits"])
        out.append(row)
    return out
