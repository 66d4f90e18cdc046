"""The simulated plant's physics: tank levels, temperatures and pressures, weather, gas detectors.

Pure and clock-free (time is an argument): a `Plant` computes every point of a `PlantLayout` at
time t, with seeded sensor noise and switchable scenarios (leak, stuck, out_of_range, comm_loss).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
Index = npt.NDArray[np.intp]

Quantity = Literal[
    "level",  # m
    "temperature",  # ℃, tank contents
    "pressure",  # MPa gauge, vapour space of a liquefied-gas tank
    "mass",  # kg, weighed tank
    "valve",  # 1 open / 0 closed, emergency shut-off valve (紧急切断阀)
    "gas",  # %LEL or mg/m3, the detector's unit
    "wind_speed",  # m/s at 10 m
    "wind_direction",  # degrees the wind blows FROM, clockwise from north
    "air_temperature",  # ℃
]

# The unit each quantity is computed in (gas points use their detector's unit).
UNITS: dict[str, str] = {
    "level": "m",
    "temperature": "℃",
    "pressure": "MPa",
    "mass": "kg",
    "valve": "",
    "wind_speed": "m/s",
    "wind_direction": "°",
    "air_temperature": "℃",
}

GasUnit = Literal["%LEL", "mg/m3"]


# ---------------------------------------------------------------------------------------------
# Physical data. Approximate values for a simulator [M]; none of them is a regulatory limit.


@dataclass(frozen=True, slots=True)
class Substance:
    """A stored substance: what the plume and the detectors need to know about it."""

    key: str
    name: str  # Chinese name, as in GB 18218 Table 1
    molar_mass: float  # g/mol
    lel_vol_pct: float | None = None  # lower explosive limit, % by volume; None if not flammable
    # Clausius–Clapeyron anchor for liquefied gases: vapour pressure (kPa abs) at t_ref_c, and
    # the enthalpy of vaporisation (J/mol). None for atmospheric-storage liquids.
    vapour_kpa: float | None = None
    vapour_t_ref_c: float = 20.0
    vaporisation_j_mol: float | None = None


# Molar masses: IUPAC atomic weights. LEL: NIOSH Pocket Guide to Chemical Hazards [M] (gasoline
# vapour taken as ~72 g/mol, LEL 1.4 %; LPG taken as propane). Vapour pressures at 20 ℃ and
# enthalpies of vaporisation at the normal boiling point: NIST Chemistry WebBook / Euro Chlor
# [M]; Clausius–Clapeyron with a constant ΔHvap is within ~5 % between −10 and 50 ℃.
SUBSTANCES: dict[str, Substance] = {
    s.key: s
    for s in (
        Substance("Cl2", "氯", 70.90, vapour_kpa=678.0, vaporisation_j_mol=20_410.0),
        Substance("NH3", "氨", 17.03, 15.0, vapour_kpa=857.0, vaporisation_j_mol=23_350.0),
        Substance("LPG", "液化石油气", 44.10, 2.1, vapour_kpa=836.0, vaporisation_j_mol=19_040.0),
        Substance("CH3OH", "甲醇", 32.04, 6.0),
        Substance("gasoline", "汽油", 72.0, 1.4),
    )
}

_GAS_CONSTANT = 8.314  # J/(mol·K)
_ATMOSPHERE_KPA = 101.325
_MOLAR_VOLUME_L = 24.45  # L/mol at 25 ℃, 101.325 kPa (DOMAIN.md §2 unit conversion)

# Briggs rural σy, σz for Pasquill–Gifford class D: a·x·(1 + b·x)^−½ (DOMAIN.md §6.1, [V: S41]).
# Class D is the table's value for overcast day or night [M]; the formulas are fitted for
# 100 m–10 km and are extrapolated to the tens of metres inside a tank farm.
_SIGMA_Y_D = (0.08, 0.0001)
_SIGMA_Z_D = (0.06, 0.0015)
# Wind power-law exponent for class D (DOMAIN.md §6.1, [V: S41]), anemometer height 10 m.
_WIND_EXPONENT_D = 0.142
_ANEMOMETER_M = 10.0
# [D] Initial spread of a release from a valve or flange: a virtual source of about a metre,
# so that detectors a few metres from the source see a plume of plausible width.
_SIGMA_0_M = 1.0

# Transmitter output limits, NAMUR NE 43 [M]: a healthy 4–20 mA measurement stays within
# 3.8–20.5 mA, i.e. the range extended by −1.25 % and +3.125 % of span.
_SATURATION_LOW = -0.0125
_SATURATION_HIGH = 0.03125
# Sensor noise: standard deviation as a fraction of the instrument span [D].
_NOISE_OF_SPAN = 0.002
_LOCAL_UTC_OFFSET_S = 8 * 3600  # China Standard Time: the daily cycle follows local hours


def mg_per_m3_per_pct_lel(substance: Substance) -> float:
    """Concentration (mg/m³) that reads 1 %LEL: ppm × M / 24.45 (DOMAIN.md §2)."""
    if substance.lel_vol_pct is None:
        raise ValueError(f"{substance.key} is not flammable: it has no LEL")
    ppm_at_lel = substance.lel_vol_pct * 10_000
    return ppm_at_lel * substance.molar_mass / _MOLAR_VOLUME_L / 100


def vapour_pressure_mpa_gauge(substance: Substance, t_c: Floats) -> Floats:
    """Saturated vapour pressure (MPa gauge) of a liquefied gas at temperatures t_c (℃)."""
    if substance.vapour_kpa is None or substance.vaporisation_j_mol is None:
        raise ValueError(f"{substance.key} is not a liquefied gas: it has no vapour pressure")
    k = substance.vaporisation_j_mol / _GAS_CONSTANT
    t_ref = substance.vapour_t_ref_c + 273.15
    p_kpa = substance.vapour_kpa * np.exp(-k * (1.0 / (np.asarray(t_c) + 273.15) - 1.0 / t_ref))
    return np.asarray((p_kpa - _ATMOSPHERE_KPA) / 1000.0, np.float64)


def gaussian_plume(
    rate_g_s: float,
    source: tuple[float, float, float],
    x: Floats,
    y: Floats,
    z: Floats,
    wind_from_deg: float,
    wind_speed_m_s: float,
) -> Floats:
    """Ground-reflected Gaussian plume (DOMAIN.md §6.1): g/m³ at receptors (x east, y north, z up).

    Rural class D dispersion, wind at the release height by the power law; zero upwind. A
    screening model: for dense gases (Cl₂, NH₃ flash, LPG) the result is indicative only.
    """
    sx, sy, h = source
    theta = math.radians(wind_from_deg)
    # The wind blows from wind_from_deg toward the opposite bearing.
    ux, uy = -math.sin(theta), -math.cos(theta)
    dx, dy = x - sx, y - sy
    down = dx * ux + dy * uy
    cross = dx * uy - dy * ux
    u = max(wind_speed_m_s, 0.5) * (max(h, 1.0) / _ANEMOMETER_M) ** _WIND_EXPONENT_D
    d = np.maximum(down, 0.0)
    sig_y = np.hypot(_SIGMA_Y_D[0] * d / np.sqrt(1 + _SIGMA_Y_D[1] * d), _SIGMA_0_M)
    sig_z = np.hypot(_SIGMA_Z_D[0] * d / np.sqrt(1 + _SIGMA_Z_D[1] * d), _SIGMA_0_M)
    c = (
        rate_g_s
        / (2 * math.pi * u * sig_y * sig_z)
        * np.exp(-(cross**2) / (2 * sig_y**2))
        * (np.exp(-((z - h) ** 2) / (2 * sig_z**2)) + np.exp(-((z + h) ** 2) / (2 * sig_z**2)))
    )
    return np.asarray(np.where(down > 0, c, 0.0), np.float64)


# ---------------------------------------------------------------------------------------------
# Layout: what the plant is made of. Coordinates are metres in one park frame (x east, y north).


@dataclass(frozen=True, slots=True)
class Tank:
    """A storage tank (储罐) and its filling/emptying cycle."""

    code: str
    substance: str  # key of SUBSTANCES
    x: float
    y: float
    height_m: float  # level-gauge span
    fill_m: tuple[float, float]  # lowest and highest level of the operating cycle
    cycle_h: float  # one fill, hold, empty, hold cycle
    phase_h: float = 0.0
    thermal_lag_h: float = 4.0  # first-order time constant of the contents' temperature
    release_height_m: float = 1.0  # where a leak escapes (a flange or valve)
    capacity_kg: float | None = None  # full-gauge mass, for weighed tanks

    def __post_init__(self) -> None:
        lo, hi = self.fill_m
        if not 0 <= lo < hi <= self.height_m:
            raise ValueError(f"tank {self.code}: fill_m {self.fill_m} must lie in [0, height_m]")
        if self.substance not in SUBSTANCES:
            raise ValueError(f"tank {self.code}: unknown substance {self.substance!r}")


@dataclass(frozen=True, slots=True)
class Detector:
    """A point gas detector (可燃/有毒气体探测器)."""

    code: str
    gas: str  # key of SUBSTANCES: the gas it is calibrated for
    unit: GasUnit
    x: float
    y: float
    z: float  # height above grade (GB/T 50493 ch. 4: heavy gases 0.3–0.6 m)

    def __post_init__(self) -> None:
        if self.gas not in SUBSTANCES:
            raise ValueError(f"detector {self.code}: unknown gas {self.gas!r}")


@dataclass(frozen=True, slots=True)
class WeatherStation:
    """The park's weather mast, and the weather it measures."""

    code: str
    x: float
    y: float
    mean_air_c: float = 20.0
    daily_swing_c: float = 6.0  # amplitude: the day's range is twice this
    warmest_hour: float = 15.0  # local time
    mean_wind_from_deg: float = 135.0
    mean_wind_m_s: float = 2.5


@dataclass(frozen=True, slots=True)
class PointSpec:
    """One measured value: a quantity of a subject (a tank, a detector or the weather station)."""

    code: str
    quantity: Quantity
    subject: str
    range: tuple[float, float]  # instrument range (量程)


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """A field device (PLC, GDS controller, OPC-UA server, gateway) and the points it serves."""

    code: str
    enterprise: str
    points: tuple[PointSpec, ...]


@dataclass(frozen=True, slots=True)
class PlantLayout:
    tanks: tuple[Tank, ...]
    detectors: tuple[Detector, ...]
    weather: WeatherStation
    devices: tuple[DeviceSpec, ...]

    def device(self, code: str) -> DeviceSpec:
        for d in self.devices:
            if d.code == code:
                return d
        raise KeyError(f"unknown device {code!r}; devices: {[d.code for d in self.devices]}")


# ---------------------------------------------------------------------------------------------
# Scenarios


SCENARIOS = ("normal", "leak", "stuck", "out_of_range", "comm_loss", "wind")


@dataclass(frozen=True, slots=True)
class Scenario:
    """An active scenario: `leak` at a tank, `stuck`/`out_of_range` at a point, `comm_loss` of a
    device, or `wind` fixed from a direction at a speed."""

    name: str
    target: str | None
    params: Mapping[str, float] = field(default_factory=dict)
    since_s: float = 0.0  # plant time it started

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v:g}" for k, v in self.params.items())
        where = f" {self.target}" if self.target else ""
        return f"{self.name}{where}" + (f" ({args})" if args else "")


_PARAMS: dict[str, tuple[set[str], set[str]]] = {  # name: (required, allowed)
    "leak": ({"rate_g_s"}, {"rate_g_s"}),
    "stuck": (set(), set()),
    "out_of_range": (set(), {"current_ma"}),
    "comm_loss": (set(), set()),
    "wind": (set(), {"direction_deg", "speed_m_s"}),
}
# A broken 4–20 mA loop reads about 0 mA; NAMUR NE 43 treats < 3.6 mA or > 21 mA as failure [M].
_BROKEN_LOOP_MA = 0.0


def _trapezoid(phase: Floats) -> Floats:
    """Fill (0→1) over 30 % of a cycle, hold 20 %, empty over 30 %, hold 20 % (phase in [0, 1))."""
    return np.asarray(
        np.clip(np.minimum(phase / 0.3, (0.8 - phase) / 0.3), 0.0, 1.0) * (phase < 0.8),
        np.float64,
    )


class Plant:
    """The simulated plant: every point of a layout at the time of the last `step`."""

    def __init__(self, layout: PlantLayout, *, seed: int = 1, start_s: float | None = None) -> None:
        self.layout = layout
        self._rng = np.random.default_rng(seed)
        self._scenarios: dict[tuple[str, str | None], Scenario] = {}
        self._t: float | None = None

        tanks = {t.code: i for i, t in enumerate(layout.tanks)}
        detectors = {d.code: i for i, d in enumerate(layout.detectors)}
        specs = [p for d in layout.devices for p in d.points]
        self._index: dict[str, int] = {}
        for i, p in enumerate(specs):
            if p.code in self._index:
                raise ValueError(f"point code {p.code!r} is used twice in the layout")
            self._index[p.code] = i
            subjects = detectors if p.quantity == "gas" else tanks
            if p.quantity.startswith(("wind", "air")):
                if p.subject != layout.weather.code:
                    raise ValueError(f"point {p.code}: {p.subject!r} is not the weather station")
            elif p.subject not in subjects:
                raise ValueError(f"point {p.code}: unknown {p.quantity} subject {p.subject!r}")
            tank = layout.tanks[tanks[p.subject]] if p.subject in tanks else None
            if p.quantity == "pressure" and tank and SUBSTANCES[tank.substance].vapour_kpa is None:
                raise ValueError(f"point {p.code}: tank {p.subject} holds no liquefied gas")
            if p.quantity == "mass" and tank and tank.capacity_kg is None:
                raise ValueError(f"point {p.code}: tank {p.subject} has no capacity_kg")
        self._tank_index = tanks
        self._device_points = {
            d.code: (d.points, np.array([self._index[p.code] for p in d.points], np.intp))
            for d in layout.devices
        }
        n = len(specs)
        lo = np.array([p.range[0] for p in specs])
        hi = np.array([p.range[1] for p in specs])
        span = hi - lo
        self._lo, self._span = lo, span
        self._floor = lo + _SATURATION_LOW * span
        self._ceiling = hi + _SATURATION_HIGH * span
        self._is_gas = np.array([p.quantity == "gas" for p in specs])
        self._floor[self._is_gas] = lo[self._is_gas]
        self._noise_sd = np.where(
            np.array([p.quantity == "valve" for p in specs]), 0.0, _NOISE_OF_SPAN * span
        )
        self._values = np.zeros(n)

        # Gathers from the per-subject physics arrays into the point array, one per quantity.
        def gather(quantity: str, subjects: Mapping[str, int]) -> tuple[Index, Index]:
            rows = [i for i, p in enumerate(specs) if p.quantity == quantity]
            src = [subjects.get(specs[i].subject, 0) for i in rows]
            return np.array(rows, np.intp), np.array(src, np.intp)

        self._gathers = {
            q: gather(q, detectors if q == "gas" else tanks)
            for q in ("level", "temperature", "pressure", "mass", "valve", "gas")
        }
        self._weather_rows = {
            q: np.array([i for i, p in enumerate(specs) if p.quantity == q], np.intp)
            for q in ("wind_speed", "wind_direction", "air_temperature")
        }

        t = layout.tanks
        self._cycle_s = np.array([k.cycle_h * 3600 for k in t])
        self._phase_s = np.array([k.phase_h * 3600 for k in t])
        self._fill_lo = np.array([k.fill_m[0] for k in t])
        self._fill_hi = np.array([k.fill_m[1] for k in t])
        self._height = np.array([k.height_m for k in t])
        self._lag_s = np.array([k.thermal_lag_h * 3600 for k in t])
        self._capacity = np.array([k.capacity_kg or 0.0 for k in t])
        self._liquefied = [
            (i, SUBSTANCES[k.substance])
            for i, k in enumerate(t)
            if SUBSTANCES[k.substance].vapour_kpa is not None
        ]
        det = layout.detectors
        self._det_x = np.array([d.x for d in det])
        self._det_y = np.array([d.y for d in det])
        self._det_z = np.array([d.z for d in det])
        # Per detector and substance, the reading (in the detector's unit) per mg/m³ of that gas:
        # a toxic detector sees only its own gas, a %LEL detector every flammable gas.
        self._response: dict[str, Floats] = {}
        for key, s in SUBSTANCES.items():
            r = np.zeros(len(det))
            for j, d in enumerate(det):
                if d.unit == "mg/m3" and d.gas == key:
                    r[j] = 1.0
                elif d.unit == "%LEL" and s.lel_vol_pct is not None:
                    r[j] = 1.0 / mg_per_m3_per_pct_lel(s)
            self._response[key] = r

        if start_s is not None:
            self.step(start_s)

    # -- physics ------------------------------------------------------------------------------

    def ambient_c(self, t_s: float) -> float:
        """Air temperature (℃): a daily sinusoid peaking at the station's warmest local hour."""
        w = self.layout.weather
        return w.mean_air_c + w.daily_swing_c * math.cos(self._day_angle(t_s))

    def _day_angle(self, t_s: float) -> float:
        hour = ((t_s + _LOCAL_UTC_OFFSET_S) % 86400) / 3600
        return 2 * math.pi * (hour - self.layout.weather.warmest_hour) / 24

    def tank_temperatures(self, t_s: float) -> Floats:
        """Contents' temperature (℃): steady response of a first-order lag to the daily swing."""
        w = self.layout.weather
        wt = 2 * math.pi / 86400 * self._lag_s
        gain = 1.0 / np.sqrt(1.0 + wt**2)
        return np.asarray(
            w.mean_air_c + w.daily_swing_c * gain * np.cos(self._day_angle(t_s) - np.arctan(wt)),
            np.float64,
        )

    def tank_levels(self, t_s: float) -> Floats:
        phase = ((t_s + self._phase_s) % self._cycle_s) / self._cycle_s
        level = self._fill_lo + (self._fill_hi - self._fill_lo) * _trapezoid(phase)
        return np.asarray(level, np.float64)

    def wind(self, t_s: float) -> tuple[float, float]:
        """(direction the wind blows from in degrees, speed m/s) at 10 m."""
        fixed = self._scenarios.get(("wind", None))
        w = self.layout.weather
        direction = (
            w.mean_wind_from_deg
            + 30 * math.sin(2 * math.pi * t_s / 21_600)
            + 10 * math.sin(2 * math.pi * t_s / 2_820)
        )
        speed = max(
            0.5,
            w.mean_wind_m_s
            + 1.0 * math.sin(2 * math.pi * t_s / 32_400 + 1)
            + 0.3 * math.sin(2 * math.pi * t_s / 780),
        )
        if fixed is not None:
            direction = fixed.params.get("direction_deg", direction)
            speed = fixed.params.get("speed_m_s", speed)
        return direction % 360, speed

    def concentrations(self, t_s: float) -> Floats:
        """Detector readings from the active leaks, in each detector's unit, before noise."""
        out = np.zeros(len(self.layout.detectors))
        direction, speed = self.wind(t_s)
        for s in self._scenarios.values():
            if s.name != "leak" or s.target is None:
                continue
            tank = self.layout.tanks[self._tank_index[s.target]]
            c_g_m3 = gaussian_plume(
                s.params["rate_g_s"],
                (tank.x, tank.y, tank.release_height_m),
                self._det_x,
                self._det_y,
                self._det_z,
                direction,
                speed,
            )
            out += c_g_m3 * 1000.0 * self._response[tank.substance]
        return out

    def step(self, t_s: float) -> None:
        """Advance the plant to time t_s (epoch seconds); time never goes backwards."""
        if self._t is not None and t_s < self._t:
            raise ValueError(f"time goes backwards: step({t_s}) after step({self._t})")
        self._t = t_s
        v = self._values
        levels = self.tank_levels(t_s)
        temps = self.tank_temperatures(t_s)
        pressures = np.zeros(len(self.layout.tanks))
        for i, substance in self._liquefied:
            pressures[i] = vapour_pressure_mpa_gauge(substance, temps[i : i + 1])[0]
        per_tank = {
            "level": levels,
            "temperature": temps,
            "pressure": pressures,
            "mass": levels / self._height * self._capacity,
            "valve": np.ones(len(self.layout.tanks)),
            "gas": self.concentrations(t_s),
        }
        for q, (rows, src) in self._gathers.items():
            v[rows] = per_tank[q][src]
        direction, speed = self.wind(t_s)
        v[self._weather_rows["wind_speed"]] = speed
        v[self._weather_rows["wind_direction"]] = direction
        v[self._weather_rows["air_temperature"]] = self.ambient_c(t_s)

        v += self._rng.standard_normal(len(v)) * self._noise_sd
        wd = self._weather_rows["wind_direction"]
        v[wd] %= 360
        np.clip(v, self._floor, self._ceiling, out=v)
        for s in self._scenarios.values():
            if s.name == "stuck" and s.target is not None:
                v[self._index[s.target]] = s.params["value"]
            elif s.name == "out_of_range" and s.target is not None:
                i = self._index[s.target]
                ma = s.params.get("current_ma", _BROKEN_LOOP_MA)
                v[i] = self._lo[i] + (ma - 4.0) / 16.0 * self._span[i]

    # -- reading ------------------------------------------------------------------------------

    @property
    def time_s(self) -> float | None:
        return self._t

    def values(self, device_code: str) -> dict[str, float]:
        """Engineering values of a device's points by point code, at the last step."""
        if self._t is None:
            raise RuntimeError("the plant has no time yet: call step(t_s) first")
        try:
            points, rows = self._device_points[device_code]
        except KeyError:
            raise KeyError(
                f"unknown device {device_code!r}; devices: {list(self._device_points)}"
            ) from None
        return dict(zip((p.code for p in points), self._values[rows].tolist(), strict=True))

    def value(self, point_code: str) -> float:
        if self._t is None:
            raise RuntimeError("the plant has no time yet: call step(t_s) first")
        return float(self._values[self._point(point_code)])

    # -- scenarios ----------------------------------------------------------------------------

    @property
    def scenarios(self) -> list[Scenario]:
        """The active scenarios, oldest first."""
        return list(self._scenarios.values())

    def comm_lost(self, device_code: str) -> bool:
        return ("comm_loss", device_code) in self._scenarios

    def set_scenario(self, name: str, target: str | None = None, **params: float) -> None:
        """Start a scenario (`normal` ends them all); one of a name and target replaces the last.

        leak: target a tank, rate_g_s (g/s released). stuck: target a point, which freezes at its
        value. out_of_range: target a point, current_ma (default 0, a broken loop). comm_loss:
        target a device. wind: direction_deg and/or speed_m_s held fixed.
        """
        if name == "normal":
            self.clear_scenarios()
            return
        if name not in _PARAMS:
            raise ValueError(f"unknown scenario {name!r}; scenarios: {', '.join(SCENARIOS)}")
        required, allowed = _PARAMS[name]
        if missing := required - params.keys():
            raise ValueError(f"scenario {name!r} needs {', '.join(sorted(missing))}")
        if extra := params.keys() - allowed:
            raise ValueError(f"scenario {name!r} takes no {', '.join(sorted(extra))}")
        recorded = dict(params)
        if name == "leak":
            if target not in self._tank_index:
                raise ValueError(f"leak: unknown tank {target!r}; tanks: {list(self._tank_index)}")
            if not params["rate_g_s"] > 0:
                raise ValueError(f"leak: rate_g_s must be > 0 (got {params['rate_g_s']})")
        elif name in ("stuck", "out_of_range"):
            i = self._point(target)
            if name == "stuck":
                if self._t is None:
                    raise RuntimeError("stuck needs a value to freeze: call step(t_s) first")
                recorded["value"] = float(self._values[i])
            elif 4.0 <= recorded.get("current_ma", _BROKEN_LOOP_MA) <= 20.0:
                raise ValueError(
                    f"out_of_range: current_ma {recorded['current_ma']} is inside 4–20 mA"
                )
        elif name == "comm_loss":
            if target not in self._device_points:
                raise ValueError(
                    f"comm_loss: unknown device {target!r}; devices: {list(self._device_points)}"
                )
        elif name == "wind":
            if target is not None:
                raise ValueError(f"wind takes no target (got {target!r})")
            if "speed_m_s" in params and not params["speed_m_s"] > 0:
                raise ValueError(f"wind: speed_m_s must be > 0 (got {params['speed_m_s']})")
        key = (name, target)
        self._scenarios.pop(key, None)
        self._scenarios[key] = Scenario(name, target, recorded, self._t or 0.0)

    def clear_scenarios(self) -> None:
        self._scenarios.clear()

    def _point(self, code: str | None) -> int:
        try:
            return self._index[code or ""]
        except KeyError:
            raise ValueError(f"unknown point {code!r}") from None
