"""The demo plant: three enterprises of a chemical park, their instruments and regulatory limits.

`DEMO_LAYOUT` is what the simulator's physics runs; `demo_config_toml` is the matching anjian
configuration (the same point codes), with alarm limits and grades taken from the tables below.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from collectors.sim.plant import (
    UNITS,
    Detector,
    DeviceSpec,
    PlantLayout,
    PointSpec,
    Quantity,
    Tank,
    WeatherStation,
)
from streams.config import REGISTER_COUNT, MqttSettings

# ---------------------------------------------------------------------------------------------
# Regulatory data. Each value is tagged with its source as in DOMAIN.md.

# GB/T 50493-2019 5.5.2 (DOMAIN.md §2) [V: S13, S14, S15]: flammable gas alarm setpoints,
# level 1 (一级, the point's `h`) ≤ 25 %LEL, level 2 (二级, `hh`) ≤ 50 %LEL.
FLAMMABLE_SETPOINTS_PCT_LEL = (25.0, 50.0)
# GB/T 50493-2019 5.5.1 (DOMAIN.md §2) [M]: flammable detectors measure 0–100 %LEL, toxic
# detectors 0–300 % OEL.
FLAMMABLE_RANGE_PCT_LEL = (0.0, 100.0)
TOXIC_RANGE_OEL_MULTIPLE = 3.0


@dataclass(frozen=True, slots=True)
class ToxicSetpoints:
    """Toxic-gas alarm setpoints (mg/m³): level 1 ≤ 100 % OEL, level 2 ≤ 200 % OEL."""

    oel: float
    oel_kind: str  # MAC or PC-TWA (GBZ 2.1)
    level1: float
    level2: float


# DOMAIN.md §2 "Typical OEL-based setpoints" [V2: S20, a vendor table citing GB/T 50493-2019 and
# GBZ 2.1]; re-check against GBZ 2.1-2019 before go-live.
TOXIC_SETPOINTS_MG_M3: dict[str, ToxicSetpoints] = {
    "Cl2": ToxicSetpoints(1.0, "MAC", 1.0, 2.0),
    "NH3": ToxicSetpoints(20.0, "PC-TWA", 20.0, 40.0),
    "CH3OH": ToxicSetpoints(25.0, "PC-TWA", 25.0, 50.0),
}

# GB 18218-2018 (DOMAIN.md §1). Critical quantities Q (t), Table 1 [V2: S4].
CRITICAL_QUANTITY_T: dict[str, float] = {
    "Cl2": 5.0,
    "NH3": 10.0,
    "LPG": 50.0,
    "CH3OH": 500.0,
    "gasoline": 200.0,
}
# Correction factors β: Table 3 for the named toxic gases [V: S2, S3]; Table 4 by hazard class
# for the others [V2: S4, S6]: LPG W2 (易燃气体); methanol W5.3 and gasoline W5.1 (易燃液体)
# are this demo's classification [M].
CORRECTION_BETA: dict[str, float] = {
    "Cl2": 4.0,
    "NH3": 2.0,
    "LPG": 1.5,
    "CH3OH": 1.0,
    "gasoline": 1.5,
}
# Table 5 [V: S2, S3]: α by people exposed within 500 m outside the plant boundary, as
# (at least this many people, α), largest first.
ALPHA_BY_EXPOSED: tuple[tuple[int, float], ...] = (
    (100, 2.0),
    (50, 1.5),
    (30, 1.2),
    (1, 1.0),
    (0, 0.5),
)
# Table 6 [V: S2, S3]: grade by R, as (R at least, grade), most severe first; below: 四级.
GRADE_BY_R: tuple[tuple[float, int], ...] = ((100.0, 1), (50.0, 2), (10.0, 3))


def hazard_grade(inventory_t: Mapping[str, float], exposed: int) -> int | None:
    """GB 18218-2018 grade (1 = 一级 … 4 = 四级), or None if the unit is not a major hazard."""
    if sum(q / CRITICAL_QUANTITY_T[s] for s, q in inventory_t.items()) < 1:
        return None
    alpha = next(a for n, a in ALPHA_BY_EXPOSED if exposed >= n)
    r = alpha * sum(CORRECTION_BETA[s] * q / CRITICAL_QUANTITY_T[s] for s, q in inventory_t.items())
    return next((g for limit, g in GRADE_BY_R if r >= limit), 4)


# Process limits for this demo's tanks [D]: AQ 3035-2010 asks for high/low and high-high/low-low
# level alarms and pressure and temperature monitoring (DOMAIN.md §3); the values come from each
# tank's design and operating procedure. Levels are fractions of the gauge span.
LEVEL_LIMITS_OF_SPAN: dict[str, float] = {"hh": 0.90, "h": 0.85, "l": 0.15, "ll": 0.10}
PRESSURE_LIMITS_MPA: dict[str, dict[str, float]] = {
    "Cl2": {"hh": 1.2, "h": 1.0},
    "NH3": {"hh": 1.6, "h": 1.4},
    "LPG": {"hh": 1.6, "h": 1.4},
}
TEMPERATURE_LIMITS_C: dict[str, float] = {"hh": 45.0, "h": 40.0}

# ---------------------------------------------------------------------------------------------
# The park: 南京江北新材料科技园 area, 六合区 (GB/T 2260: 320116). Plant coordinates are metres
# east and north of this origin.

PARK_ORIGIN = (118.7900, 32.2600)  # lon, lat (WGS-84)
REGION = {"code": "320116", "province": "江苏省", "city": "南京市"}


def lon_lat(x: float, y: float) -> tuple[float, float]:
    """WGS-84 position of a plant coordinate (equirectangular: metres-accurate over a park)."""
    lon0, lat0 = PARK_ORIGIN
    m_per_deg = 111_320.0
    return (
        round(lon0 + x / (m_per_deg * math.cos(math.radians(lat0))), 6),
        round(lat0 + y / m_per_deg, 6),
    )


@dataclass(frozen=True, slots=True)
class _Source:
    code: str
    name: str
    inventory_t: Mapping[str, float]  # design maximum quantity (设计最大量) per substance [D]
    exposed: int  # people within 500 m outside the boundary [D]


@dataclass(frozen=True, slots=True)
class _Enterprise:
    code: str
    name: str
    industry: str
    address: str
    sources: tuple[_Source, ...]
    # Its hazard sources' three 包保责任人: duty, name, anjian account (E1's principal is the
    # demo's enterprise user, who sees and answers E1's warnings).
    responsible: tuple[tuple[str, str, str | None], ...]
    # Sensitive targets around it (周边环境敏感目标): name, kind, plant coordinates (m).
    targets: tuple[tuple[str, str, float, float], ...] = ()


ENTERPRISES = (
    _Enterprise(
        "E1",
        "南京演示氯碱化工有限公司",
        "氯碱化工",
        "南京市六合区演示路1号",
        (
            _Source("HS101", "液氯储罐区", {"Cl2": 125.0}, 60),
            _Source("HS102", "液氨储罐区", {"NH3": 62.0}, 60),
        ),
        (
            ("principal", "王建国", "enterprise"),
            ("technical", "李明", None),
            ("operational", "张伟", None),
        ),
        # A west wind (`wind direction_deg=270`) blows from the chlorine tanks toward the school.
        (("演示镇中心小学", "school", 1500.0, 0.0), ("演示村居民区", "residential", 0.0, 2000.0)),
    ),
    _Enterprise(
        "E2",
        "南京演示燃气有限公司",
        "燃气储存",
        "南京市六合区演示路8号",
        (_Source("HS201", "液化石油气球罐区", {"LPG": 550.0}, 20),),
        (("principal", "陈志强", None), ("technical", "刘洋", None), ("operational", "杨磊", None)),
    ),
    _Enterprise(
        "E3",
        "南京演示石化储运有限公司",
        "危险化学品储存",
        "南京市六合区演示路16号",
        (
            _Source("HS301", "甲醇储罐区", {"CH3OH": 7110.0}, 40),
            _Source("HS302", "汽油储罐区", {"gasoline": 6660.0}, 40),
        ),
        (("principal", "赵国华", None), ("technical", "黄静", None), ("operational", "周杰", None)),
    ),
)

# Tanks: (tank, Chinese name, hazard source). Liquid chlorine tanks are weighed (称重).
_TANKS: tuple[tuple[Tank, str, str], ...] = (
    (
        Tank("TK101", "Cl2", 0, 0, 2.8, (0.6, 2.2), 24, 0, capacity_kg=70_000),
        "1号液氯储罐",
        "HS101",
    ),
    (
        Tank("TK102", "Cl2", 10, 0, 2.8, (0.6, 2.2), 24, 12, capacity_kg=70_000),
        "2号液氯储罐",
        "HS101",
    ),
    (Tank("TK103", "NH3", 40, 0, 3.0, (0.6, 2.4), 16, 3), "1号液氨储罐", "HS102"),
    (Tank("TK104", "NH3", 50, 0, 3.0, (0.6, 2.4), 16, 11), "2号液氨储罐", "HS102"),
    (Tank("TK201", "LPG", 420, 160, 9.2, (1.8, 7.4), 12, 0, 8, 0.8), "1号液化石油气球罐", "HS201"),
    (Tank("TK202", "LPG", 440, 160, 9.2, (1.8, 7.4), 12, 4, 8, 0.8), "2号液化石油气球罐", "HS201"),
    (Tank("TK203", "LPG", 460, 160, 9.2, (1.8, 7.4), 12, 8, 8, 0.8), "3号液化石油气球罐", "HS201"),
    (Tank("TK301", "CH3OH", -380, -320, 15.8, (3, 12.6), 48, 0, 12), "1号甲醇拱顶罐", "HS301"),
    (Tank("TK302", "CH3OH", -350, -320, 15.8, (3, 12.6), 48, 20, 12), "2号甲醇拱顶罐", "HS301"),
    (Tank("TK303", "gasoline", -380, -350, 15.8, (3, 12.6), 36, 6, 12), "1号汽油内浮顶罐", "HS302"),
    (
        Tank("TK304", "gasoline", -350, -350, 15.8, (3, 12.6), 36, 24, 12),
        "2号汽油内浮顶罐",
        "HS302",
    ),
)

# Detectors (GB/T 50493 ch. 4, DOMAIN.md §2: outdoors, toxic ≤ 4 m and flammable ≤ 10 m from
# the release source; heavy gases 0.3–0.6 m above grade, ammonia above the source):
# (detector, Chinese position, hazard source).
_DETECTORS: tuple[tuple[Detector, str, str], ...] = (
    (Detector("GD-101", "Cl2", "mg/m3", 5, 4, 0.5), "液氯储罐区北侧", "HS101"),
    (Detector("GD-102", "Cl2", "mg/m3", 14, 0, 0.5), "液氯储罐区东侧", "HS101"),
    (Detector("GD-103", "Cl2", "mg/m3", 5, -4, 0.5), "液氯储罐区南侧", "HS101"),
    (Detector("GD-104", "Cl2", "mg/m3", -4, 0, 0.5), "液氯储罐区西侧", "HS101"),
    (Detector("GD-105", "NH3", "mg/m3", 45, 4, 2.5), "液氨储罐区北侧", "HS102"),
    (Detector("GD-106", "NH3", "mg/m3", 54, 0, 2.5), "液氨储罐区东侧", "HS102"),
    (Detector("GD-107", "NH3", "mg/m3", 45, -4, 2.5), "液氨储罐区南侧", "HS102"),
    (Detector("GD-108", "NH3", "mg/m3", 36, 0, 2.5), "液氨储罐区西侧", "HS102"),
    (Detector("GD-201", "LPG", "%LEL", 430, 168, 0.4), "1、2号球罐间北侧", "HS201"),
    (Detector("GD-202", "LPG", "%LEL", 450, 168, 0.4), "2、3号球罐间北侧", "HS201"),
    (Detector("GD-203", "LPG", "%LEL", 430, 152, 0.4), "1、2号球罐间南侧", "HS201"),
    (Detector("GD-204", "LPG", "%LEL", 450, 152, 0.4), "2、3号球罐间南侧", "HS201"),
    (Detector("GD-205", "LPG", "%LEL", 411, 160, 0.4), "球罐区西侧", "HS201"),
    (Detector("GD-206", "LPG", "%LEL", 469, 160, 0.4), "球罐区东侧", "HS201"),
    (Detector("GD-301", "CH3OH", "%LEL", -365, -312, 0.5), "甲醇罐组北侧", "HS301"),
    (Detector("GD-302", "CH3OH", "%LEL", -389, -320, 0.5), "甲醇罐组西侧", "HS301"),
    (Detector("GD-303", "gasoline", "%LEL", -365, -358, 0.5), "汽油罐组南侧", "HS302"),
    (Detector("GD-304", "gasoline", "%LEL", -341, -350, 0.5), "汽油罐组东侧", "HS302"),
    (Detector("GT-301", "CH3OH", "mg/m3", -380, -324, 0.5), "1号甲醇罐南侧", "HS301"),
    (Detector("GT-302", "CH3OH", "mg/m3", -350, -316, 0.5), "2号甲醇罐北侧", "HS301"),
)

WEATHER = WeatherStation("WS101", 25, 30)

_TANK_QUANTITY_NAMES: dict[str, str] = {
    "level": "液位",
    "temperature": "温度",
    "pressure": "压力",
    "mass": "称重",
    "valve": "紧急切断阀状态",
}
_WEATHER_NAMES: dict[str, str] = {
    "wind_speed": "风速",
    "wind_direction": "风向",
    "air_temperature": "环境温度",
}
_SUFFIX: dict[str, str] = {
    "level": "LT",
    "temperature": "TT",
    "pressure": "PT",
    "mass": "WT",
    "valve": "XV",
    "wind_speed": "WS",
    "wind_direction": "WD",
    "air_temperature": "TA",
}
_RANGES: dict[str, tuple[float, float]] = {
    "temperature": (-20.0, 60.0),
    "pressure": (0.0, 2.5),
    "mass": (0.0, 80_000.0),
    "valve": (0.0, 1.0),
    "wind_speed": (0.0, 60.0),
    "wind_direction": (0.0, 360.0),
    "air_temperature": (-40.0, 60.0),
}


def gas_range(detector: Detector) -> tuple[float, float]:
    if detector.unit == "%LEL":
        return FLAMMABLE_RANGE_PCT_LEL
    return (0.0, TOXIC_SETPOINTS_MG_M3[detector.gas].oel * TOXIC_RANGE_OEL_MULTIPLE)


def gas_limits(detector: Detector) -> dict[str, float]:
    """Level 1 → `h`, level 2 → `hh` (GB/T 50493-2019 5.5.2)."""
    if detector.unit == "%LEL":
        level1, level2 = FLAMMABLE_SETPOINTS_PCT_LEL
    else:
        s = TOXIC_SETPOINTS_MG_M3[detector.gas]
        level1, level2 = s.level1, s.level2
    return {"hh": level2, "h": level1}


_TANK = {t.code: t for t, _, _ in _TANKS}
_DETECTOR = {d.code: d for d, _, _ in _DETECTORS}


def _tank_points(codes: Sequence[str], quantities: Sequence[Quantity]) -> list[PointSpec]:
    out = []
    for code in codes:
        tank = _TANK[code]
        for q in quantities:
            if q == "pressure" and tank.substance not in PRESSURE_LIMITS_MPA:
                continue
            if q == "mass" and tank.capacity_kg is None:
                continue
            span = (0.0, tank.height_m) if q == "level" else _RANGES[q]
            out.append(PointSpec(f"{code}.{_SUFFIX[q]}", q, code, span))
    return out


def _gas_points(codes: Sequence[str]) -> list[PointSpec]:
    return [PointSpec(c, "gas", c, gas_range(_DETECTOR[c])) for c in codes]


_WEATHER_POINTS = [
    PointSpec(f"{WEATHER.code}.{_SUFFIX[q]}", q, WEATHER.code, _RANGES[q])
    for q in ("wind_speed", "wind_direction", "air_temperature")
]
_ALL: tuple[Quantity, ...] = ("level", "temperature", "pressure", "mass", "valve")

DEMO_LAYOUT = PlantLayout(
    tanks=tuple(t for t, _, _ in _TANKS),
    detectors=tuple(d for d, _, _ in _DETECTORS),
    weather=WEATHER,
    devices=(
        DeviceSpec(
            "PLC101",
            "E1",
            (*_tank_points(["TK101", "TK102", "TK103", "TK104"], _ALL), *_WEATHER_POINTS),
        ),
        DeviceSpec("GDS101", "E1", tuple(_gas_points([f"GD-10{i}" for i in range(1, 9)]))),
        DeviceSpec(
            "DCS201",
            "E2",
            (
                *_tank_points(["TK201", "TK202", "TK203"], _ALL),
                *_gas_points([f"GD-20{i}" for i in range(1, 7)]),
            ),
        ),
        DeviceSpec(
            "GW301",
            "E3",
            (
                *_tank_points(["TK301", "TK302", "TK303", "TK304"], ("level", "temperature")),
                *_gas_points(["GD-301", "GD-302", "GD-303", "GD-304", "GT-301", "GT-302"]),
            ),
        ),
    ),
)

# ---------------------------------------------------------------------------------------------
# Protocol mapping of each device's points. Modbus: (table, data type, scale, word order) by
# quantity, chosen so that the demo exercises every codec path; addresses follow in order.

_ModbusPlan = Mapping[str, tuple[str, str, float | None, str | None]]
_MODBUS_PLANS: dict[str, _ModbusPlan] = {
    "PLC101": {
        "level": ("holding", "float32", 1.0, None),
        "temperature": ("holding", "int16", 0.1, None),
        "mass": ("holding", "int32", 1.0, None),
        "pressure": ("input", "float32", 1.0, None),
        "wind_speed": ("input", "float32", 1.0, "little"),
        "wind_direction": ("input", "uint16", 0.1, None),
        "air_temperature": ("input", "int16", 0.1, None),
        "valve": ("coil", "bool", 1.0, None),
    },
    # int16 counts with a decimal scale sized to the range (None): a GDS controller's registers.
    "GDS101": {"gas": ("input", "int16", None, None)},
    # The gateway's registers are float32 with the low word first (the device's word_order).
    "GW301": {
        "level": ("holding", "uint16", 0.001, None),
        "temperature": ("holding", "int16", 0.1, None),
        "gas": ("input", "float32", 1.0, None),
    },
}
_MODBUS_DEVICE: dict[str, dict[str, Any]] = {
    "PLC101": {"unit_id": 1, "name": "液氯液氨罐区PLC"},
    "GDS101": {"unit_id": 2, "name": "气体检测报警控制器(GDS)"},
    "GW301": {"unit_id": 1, "name": "罐区数据采集网关", "word_order": "little"},
}
_OPCUA_TYPES: dict[str, str] = {
    "level": "float32",
    "temperature": "float32",
    "pressure": "float64",
    "mass": "float32",
    "valve": "bool",
    "gas": "float32",
}


def modbus_devices(mqtt: bool) -> list[str]:
    """The demo's Modbus devices in port order: each listens on its own port from the base."""
    return ["PLC101", "GDS101"] + ([] if mqtt else ["GW301"])


def _decimal_scale(high: float) -> float:
    """A power of ten giving about 1000–10000 counts over the range, as GDS controllers do."""
    return float(10 ** math.floor(math.log10(high / 1000)))


def _point_table(p: PointSpec) -> dict[str, Any]:
    if p.quantity == "gas":
        det = _DETECTOR[p.subject]
        where = next(n for d, n, _ in _DETECTORS if d.code == det.code)
        kind = "可燃气体" if det.unit == "%LEL" else "有毒气体"
        name = f"{where}{kind}探测器"
        unit: str = det.unit
        source: str | None = next(s for d, _, s in _DETECTORS if d.code == det.code)
        limits: dict[str, float] = gas_limits(det)
        gas: str | None = det.gas
    elif p.subject == WEATHER.code:
        name, unit, source, limits, gas = (
            _WEATHER_NAMES[p.quantity],
            UNITS[p.quantity],
            None,
            {},
            None,
        )
    else:
        tank = _TANK[p.subject]
        tank_name, source = next((n, s) for t, n, s in _TANKS if t.code == tank.code)
        name = tank_name + _TANK_QUANTITY_NAMES[p.quantity]
        unit, gas = UNITS[p.quantity], None
        if p.quantity == "level":
            limits = {k: round(f * tank.height_m, 3) for k, f in LEVEL_LIMITS_OF_SPAN.items()}
        elif p.quantity == "pressure":
            limits = dict(PRESSURE_LIMITS_MPA[tank.substance])
        elif p.quantity == "temperature":
            limits = dict(TEMPERATURE_LIMITS_C)
        else:
            limits = {}
    t: dict[str, Any] = {"code": p.code, "name": name, "unit": unit, "kind": p.quantity}
    if gas is not None:
        t["gas"] = gas
    if source is not None:
        t["hazard_source"] = source
    if p.quantity != "valve":
        t["range"] = list(p.range)
    if limits:
        t["limits"] = limits
    return t


def _device_table(device: DeviceSpec, protocol: str, address: dict[str, Any]) -> dict[str, Any]:
    points = []
    next_address: dict[str, int] = {}
    for p in device.points:
        t = _point_table(p)
        if protocol == "modbus":
            table, data_type, scale, word_order = _MODBUS_PLANS[device.code][p.quantity]
            t["data_type"] = data_type
            t["table"] = table
            t["address"] = next_address.get(table, 0)
            next_address[table] = t["address"] + REGISTER_COUNT[data_type]
            scale = _decimal_scale(p.range[1]) if scale is None else scale
            if scale != 1.0:
                t["scale"] = scale
            if word_order is not None:
                t["word_order"] = word_order
        elif protocol == "opcua":
            t["data_type"] = _OPCUA_TYPES[p.quantity]
            t["node"] = f"ns=2;s={device.code}.{p.code}"
        points.append(t)
    head: dict[str, Any] = {"code": device.code, "protocol": protocol, **address}
    return {**head, "period_s": 1.0, "timeout_s": 1.0, "points": points}


def demo_config_toml(
    *,
    modbus_host: str = "127.0.0.1",
    modbus_port: int,
    opcua_endpoint: str,
    mqtt: MqttSettings | None,
) -> str:
    """The anjian configuration (TOML) of the demo plant served by the simulator.

    Modbus devices listen on consecutive ports from `modbus_port` (see `modbus_devices`); E2's
    DCS201 is the OPC-UA server at `opcua_endpoint`; E3's GW301 publishes over MQTT when `mqtt`
    is given and is a Modbus device otherwise.
    """
    ports = {code: modbus_port + i for i, code in enumerate(modbus_devices(mqtt is not None))}
    enterprises = []
    for e in ENTERPRISES:
        devices = []
        for d in DEMO_LAYOUT.devices:
            if d.enterprise != e.code:
                continue
            if d.code in ports:
                head = {"host": modbus_host, "port": ports[d.code], **_MODBUS_DEVICE[d.code]}
                devices.append(_device_table(d, "modbus", head))
            elif d.code == "DCS201":
                head = {
                    "name": "液化石油气球罐区DCS(OPC-UA)",
                    "endpoint": opcua_endpoint,
                    "publishing_interval_ms": 500.0,
                }
                devices.append(_device_table(d, "opcua", head))
            else:
                head = {"name": "罐区数据采集网关(MQTT)"}
                devices.append(_device_table(d, "mqtt", head))
        sources = []
        for s in e.sources:
            xs = [t.x for t, _, src in _TANKS if src == s.code]
            ys = [t.y for t, _, src in _TANKS if src == s.code]
            lon, lat = lon_lat(sum(xs) / len(xs), sum(ys) / len(ys))
            source: dict[str, Any] = {"code": s.code, "name": s.name, "unit_type": "storage"}
            grade = hazard_grade(s.inventory_t, s.exposed)
            if grade is not None:
                source["grade"] = grade
            source["responsible"] = [
                {"duty": duty, "name": name, **({"username": user} if user else {})}
                for duty, name, user in e.responsible
            ]
            sources.append({**source, "lon": lon, "lat": lat})
        first = sources[0]
        enterprises.append(
            {
                "code": e.code,
                "name": e.name,
                "region": REGION["code"],
                "industry": e.industry,
                "address": e.address,
                "lon": first["lon"],
                "lat": first["lat"],
                "hazard_sources": sources,
                "devices": devices,
                **(
                    {
                        "sensitive_targets": [
                            {
                                "name": n,
                                "kind": k,
                                **dict(zip(("lon", "lat"), lon_lat(x, y), strict=True)),
                            }
                            for n, k, x, y in e.targets
                        ]
                    }
                    if e.targets
                    else {}
                ),
            }
        )
    doc: dict[str, Any] = {"regions": [REGION], "enterprises": enterprises}
    if mqtt is not None:
        doc["mqtt"] = mqtt.model_dump(exclude_none=True)
    header = (
        "# anjian demo plant (generated by collectors.sim.demo): three enterprises of a\n"
        "# chemical park served by the simulator. Gas limits: GB/T 50493-2019 5.5.2;\n"
        "# hazard-source grades: GB 18218-2018 4.3 (see collectors/sim/demo.py for sources).\n"
    )
    return header + _toml(doc)


# ---------------------------------------------------------------------------------------------
# A TOML writer for the shapes above: scalars, lists of scalars, small inline tables, tables and
# arrays of tables.


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_scalar(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{k} = {_scalar(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {v!r} as TOML")


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, Mapping) for x in v)


def _toml(doc: Mapping[str, Any], path: str = "") -> str:
    lines: list[str] = []
    nested: list[tuple[str, Any]] = []
    for k, v in doc.items():
        if _is_table_array(v) or (isinstance(v, Mapping) and k in ("mqtt", "database")):
            nested.append((k, v))
        else:
            lines.append(f"{k} = {_scalar(v)}")
    out = "\n".join(lines) + ("\n" if lines else "")
    for k, v in nested:
        name = f"{path}.{k}" if path else k
        if isinstance(v, Mapping):
            out += f"\n[{name}]\n" + _toml(v, name)
        else:
            for item in v:
                out += f"\n[[{name}]]\n" + _toml(item, name)
    return out
