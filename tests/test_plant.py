"""The simulated plant's physics, scenarios and the demo configuration it matches."""

from __future__ import annotations

import contextlib
import math
import socket
from pathlib import Path

import numpy as np
import pytest

from collectors.sim.demo import (
    DEMO_LAYOUT,
    FLAMMABLE_SETPOINTS_PCT_LEL,
    TOXIC_SETPOINTS_MG_M3,
    demo_config_toml,
    hazard_grade,
)
from collectors.sim.plant import SUBSTANCES, Plant, vapour_pressure_mpa_gauge
from collectors.sim.ports import free_port_block
from streams.config import Config, ModbusDevice, MqttSettings, parse_config

T0 = 1_750_000_000.0  # 2025-06-15 23:06:40 +08:00
DAY = 86_400.0


def _config(mqtt: MqttSettings | None = None) -> Config:
    return parse_config(
        demo_config_toml(
            modbus_port=15020, opcua_endpoint="opc.tcp://127.0.0.1:4840/anjian/", mqtt=mqtt
        )
    )


def _series(plant: Plant, codes: list[str], times: np.ndarray) -> dict[str, np.ndarray]:
    out: dict[str, list[float]] = {c: [] for c in codes}
    for t in times:
        plant.step(float(t))
        for c in codes:
            out[c].append(plant.value(c))
    return {c: np.array(v) for c, v in out.items()}


def _points(quantity: str) -> list[str]:
    return [p.code for d in DEMO_LAYOUT.devices for p in d.points if p.quantity == quantity]


def _local_hour(t: float) -> float:
    return ((t + 8 * 3600) % DAY) / 3600


def test_levels_cycle_within_the_tank_over_a_day() -> None:
    plant = Plant(DEMO_LAYOUT, seed=3)
    times = np.arange(T0, T0 + 2 * DAY, 300.0)
    levels = _series(plant, _points("level"), times)
    tanks = {t.code: t for t in DEMO_LAYOUT.tanks}
    for code, v in levels.items():
        tank = tanks[code.split(".")[0]]
        lo, hi = tank.fill_m
        assert v.min() >= 0 and v.max() <= tank.height_m, code
        # Two days cover at least one full fill and empty of every tank (cycles ≤ 48 h).
        assert v.min() < lo + 0.1 * (hi - lo), code
        assert v.max() > hi - 0.1 * (hi - lo), code


def test_tank_temperature_follows_the_daily_swing_late_and_damped() -> None:
    plant = Plant(DEMO_LAYOUT, seed=1)
    times = np.arange(T0, T0 + DAY, 600.0)
    air = "WS101.TA"
    tanks = _points("temperature")
    s = _series(plant, [air, *tanks], times)
    air_peak = _local_hour(times[np.argmax(s[air])])
    assert 13.5 <= air_peak <= 16.5
    air_swing = s[air].max() - s[air].min()
    for code in tanks:
        v = s[code]
        peak = _local_hour(times[np.argmax(v)])
        assert air_peak < peak < air_peak + 6, code  # lagged behind the air
        assert 0.1 * air_swing < v.max() - v.min() < air_swing, code  # damped, still swinging


def test_liquefied_gas_pressure_rises_with_temperature() -> None:
    plant = Plant(DEMO_LAYOUT, seed=1)
    times = np.arange(T0, T0 + DAY, 600.0)
    pressures = _points("pressure")
    assert {p.split(".")[0] for p in pressures} == {
        t.code for t in DEMO_LAYOUT.tanks if t.substance in ("Cl2", "NH3", "LPG")
    }
    s = _series(plant, [*pressures, *(p.replace(".PT", ".TT") for p in pressures)], times)
    for code in pressures:
        r = np.corrcoef(s[code], s[code.replace(".PT", ".TT")])[0, 1]
        assert r > 0.9, (code, r)


@pytest.mark.parametrize(
    ("gas", "t_c", "kpa_abs"),
    # Published saturation pressures (NIST WebBook / Euro Chlor), not the model's anchors.
    [("NH3", 40.0, 1555.0), ("NH3", 0.0, 429.0), ("Cl2", 40.0, 1150.0), ("LPG", 40.0, 1369.0)],
)
def test_vapour_pressure_matches_published_values(gas: str, t_c: float, kpa_abs: float) -> None:
    mpa_gauge = vapour_pressure_mpa_gauge(SUBSTANCES[gas], np.array([t_c]))[0]
    assert mpa_gauge * 1000 + 101.325 == pytest.approx(kpa_abs, rel=0.05)


def test_noise_is_seeded() -> None:
    a, b, c = Plant(DEMO_LAYOUT, seed=7), Plant(DEMO_LAYOUT, seed=7), Plant(DEMO_LAYOUT, seed=8)
    for t in (T0, T0 + 1, T0 + 2):
        for p in (a, b, c):
            p.step(t)
    assert a.values("PLC101") == b.values("PLC101")
    assert a.values("PLC101") != c.values("PLC101")
    # The noise is there: the same physics read twice a millisecond apart differs.
    before = a.values("PLC101")["TK101.TT"]
    a.step(T0 + 2.001)
    assert a.values("PLC101")["TK101.TT"] != before


def test_gas_detectors_read_near_zero_in_normal_operation() -> None:
    plant = Plant(DEMO_LAYOUT, seed=1)
    gas = _points("gas")
    s = _series(plant, gas, np.arange(T0, T0 + DAY, 900.0))
    ranges = {p.code: p.range for d in DEMO_LAYOUT.devices for p in d.points}
    for code, v in s.items():
        assert v.min() >= 0
        assert v.max() < 0.02 * ranges[code][1], code


def _wind_from(src: tuple[float, float], to: tuple[float, float]) -> float:
    """The wind direction (from) that carries a release at `src` straight to `to`."""
    return math.degrees(math.atan2(src[0] - to[0], src[1] - to[1])) % 360


def _level1(config: Config) -> dict[str, float]:
    out = {p.code: p.limits.h for _, _, p in config.points() if p.kind == "gas"}
    return {code: h for code, h in out.items() if h is not None}


@pytest.mark.parametrize(
    ("tank", "detector", "rate_g_s"),
    [("TK101", "GD-104", 1.0), ("TK101", "GD-102", 1.0), ("TK202", "GD-203", 1000.0)],
)
def test_leak_raises_downwind_detectors_and_leaves_upwind_ones_at_zero(
    tank: str, detector: str, rate_g_s: float
) -> None:
    level1 = _level1(_config())
    tanks = {t.code: t for t in DEMO_LAYOUT.tanks}
    dets = {d.code: d for d in DEMO_LAYOUT.detectors}
    src, det = tanks[tank], dets[detector]
    wind = _wind_from((src.x, src.y), (det.x, det.y))
    plant = Plant(DEMO_LAYOUT, seed=1, start_s=T0)
    plant.set_scenario("wind", direction_deg=wind, speed_m_s=3.0)
    plant.set_scenario("leak", tank, rate_g_s=rate_g_s)
    plant.step(T0 + 10)
    assert plant.value(detector) > level1[detector]
    down = (-math.sin(math.radians(wind)), -math.cos(math.radians(wind)))
    upwind = [
        d.code
        for d in DEMO_LAYOUT.detectors
        if (d.x - src.x) * down[0] + (d.y - src.y) * down[1] < 0
    ]
    assert upwind
    for code in upwind:
        assert plant.value(code) < 0.05 * level1[code], code


def test_changing_the_wind_moves_the_plume_to_other_detectors() -> None:
    level1 = _level1(_config())
    plant = Plant(DEMO_LAYOUT, seed=1, start_s=T0)
    plant.set_scenario("leak", "TK101", rate_g_s=1.0)
    plant.set_scenario("wind", direction_deg=90.0, speed_m_s=3.0)  # from the east: blows west
    plant.step(T0 + 1)
    assert plant.value("GD-104") > level1["GD-104"]
    assert plant.value("GD-102") < 0.05 * level1["GD-102"]
    plant.set_scenario("wind", direction_deg=270.0, speed_m_s=3.0)  # from the west
    plant.step(T0 + 2)
    assert plant.value("GD-102") > level1["GD-102"]
    assert plant.value("GD-104") < 0.05 * level1["GD-104"]
    assert plant.values("PLC101")["WS101.WD"] == pytest.approx(270.0, abs=5)


def test_a_toxic_detector_ignores_other_gases_and_a_lel_detector_sees_any_flammable() -> None:
    level1 = _level1(_config())
    dets = {d.code: d for d in DEMO_LAYOUT.detectors}
    tk303 = next(t for t in DEMO_LAYOUT.tanks if t.code == "TK303")
    assert (tk303.substance, dets["GD-301"].gas, dets["GT-301"].gas) == (
        "gasoline",
        "CH3OH",
        "CH3OH",
    )
    plant = Plant(DEMO_LAYOUT, seed=1, start_s=T0)
    plant.set_scenario("leak", "TK303", rate_g_s=1000.0)
    for i, (detector, sees) in enumerate((("GD-301", True), ("GT-301", False)), start=1):
        d = dets[detector]
        plant.set_scenario("wind", direction_deg=_wind_from((tk303.x, tk303.y), (d.x, d.y)))
        plant.step(T0 + i)
        assert (plant.value(detector) > level1[detector]) is sees
        if not sees:
            assert plant.value(detector) < 0.05 * level1[detector]


def test_level1_setpoints_in_the_config_are_the_gb50493_values() -> None:
    config = _config()
    gases = {p.code: p for _, _, p in config.points() if p.kind == "gas"}
    assert len(gases) == len(DEMO_LAYOUT.detectors)
    for d in DEMO_LAYOUT.detectors:
        limits = gases[d.code].limits
        if d.unit == "%LEL":
            assert (limits.h, limits.hh) == FLAMMABLE_SETPOINTS_PCT_LEL
            assert gases[d.code].range == (0.0, 100.0)
        else:
            s = TOXIC_SETPOINTS_MG_M3[d.gas]
            assert (limits.h, limits.hh) == (s.oel, 2 * s.oel)
            assert gases[d.code].range == (0.0, 3 * s.oel)


def test_stuck_point_freezes_and_normal_releases_it() -> None:
    plant = Plant(DEMO_LAYOUT, seed=1, start_s=T0)
    frozen = plant.value("TK101.LT")
    plant.set_scenario("stuck", "TK101.LT")
    for t in (T0 + 600, T0 + 3600, T0 + 7200):
        plant.step(t)
        assert plant.value("TK101.LT") == frozen
    assert [str(s) for s in plant.scenarios] == [f"stuck TK101.LT (value={frozen:g})"]
    plant.set_scenario("normal")
    plant.step(T0 + 7201)
    assert plant.value("TK101.LT") != frozen
    assert plant.scenarios == []


def test_out_of_range_reads_outside_the_instrument_range() -> None:
    plant = Plant(DEMO_LAYOUT, seed=1, start_s=T0)
    plant.set_scenario("out_of_range", "TK101.PT")  # a broken loop: 0 mA
    plant.set_scenario("out_of_range", "GD-201", current_ma=22.0)  # saturated high
    plant.step(T0 + 1)
    assert plant.value("TK101.PT") == pytest.approx(0.0 - 0.25 * 2.5)
    assert plant.value("GD-201") == pytest.approx(100.0 + 2 / 16 * 100.0)
    with pytest.raises(ValueError, match="inside 4–20 mA"):
        plant.set_scenario("out_of_range", "TK101.PT", current_ma=12.0)


def test_scenario_errors_name_the_bad_value() -> None:
    plant = Plant(DEMO_LAYOUT, seed=1, start_s=T0)
    with pytest.raises(ValueError, match="unknown scenario 'flood'"):
        plant.set_scenario("flood")
    with pytest.raises(ValueError, match="unknown tank 'TK999'"):
        plant.set_scenario("leak", "TK999", rate_g_s=1.0)
    with pytest.raises(ValueError, match="needs rate_g_s"):
        plant.set_scenario("leak", "TK101")
    with pytest.raises(ValueError, match="unknown device 'PLC999'"):
        plant.set_scenario("comm_loss", "PLC999")
    with pytest.raises(ValueError, match="time goes backwards"):
        plant.step(T0 - 1)
    plant.set_scenario("comm_loss", "GDS101")
    assert plant.comm_lost("GDS101") and not plant.comm_lost("PLC101")


def test_values_before_the_first_step_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="step"):
        Plant(DEMO_LAYOUT).values("PLC101")


@pytest.mark.parametrize("mqtt", [None, MqttSettings(topic_prefix="test/demo")])
def test_demo_config_parses_and_every_point_has_a_plant_value(mqtt: MqttSettings | None) -> None:
    config = _config(mqtt)
    plant = Plant(DEMO_LAYOUT, seed=1, start_s=T0)
    protocols = {d.code: d.protocol for e in config.enterprises for d in e.devices}
    assert protocols == {
        "PLC101": "modbus",
        "GDS101": "modbus",
        "DCS201": "opcua",
        "GW301": "modbus" if mqtt is None else "mqtt",
    }
    for e in config.enterprises:
        for d in e.devices:
            values = plant.values(d.code)
            assert set(values) == {p.code for p in d.points}
            assert all(math.isfinite(v) for v in values.values())
    modbus = [(d, p) for _, d, p in config.points() if isinstance(d, ModbusDevice)]
    assert {"float32", "int16", "uint16", "int32", "bool"} <= {p.data_type for _, p in modbus}
    assert "little" in {p.word_order or d.word_order for d, p in modbus}


def test_hazard_grades_follow_gb18218() -> None:
    config = _config()
    grades = {h.code: h.grade for e in config.enterprises for h in e.hazard_sources}
    assert grades == {"HS101": 1, "HS102": 3, "HS201": 3, "HS301": 3, "HS302": 2}
    # Liquid chlorine: Q = 5 t, β = 4; 60 people exposed → α = 1.5, so R = 1.2·q.
    assert hazard_grade({"Cl2": 4.0}, 60) is None  # q < Q: not a major hazard source
    assert hazard_grade({"Cl2": 8.0}, 60) == 4  # R = 9.6
    assert hazard_grade({"Cl2": 10.0}, 60) == 3  # R = 12
    assert hazard_grade({"Cl2": 50.0}, 60) == 2  # R = 60
    assert hazard_grade({"Cl2": 100.0}, 60) == 1  # R = 120
    assert hazard_grade({"Cl2": 100.0}, 0) == 3  # nobody exposed: α = 0.5, R = 40


def test_free_ports_are_chosen_outside_the_ephemeral_range() -> None:
    """An outgoing connection takes its port from the ephemeral range: a server's port chosen
    there could be taken before the server binds it (a simulated OPC-UA server once failed so
    with `address already in use` in a full test run)."""
    lo, hi = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    for _ in range(20):
        base = free_port_block("127.0.0.1", 3)
        assert not lo <= base <= hi and not lo <= base + 2 <= hi, (base, lo, hi)
        with contextlib.ExitStack() as stack:
            for port in range(base, base + 3):
                stack.enter_context(socket.socket()).bind(("127.0.0.1", port))
