"""Gas-detector alarm setpoints (可燃气体和有毒气体检测报警) as data, with their sources.

`gas_setpoints(gas, unit)` derives a detector's default limits from GB/T 50493-2019 5.5.2.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# GB/T 50493-2019 5.5.2 (1)(2) (DOMAIN.md §2) [V: S13, S14, S15]: flammable gas, level 1 (一级)
# ≤ 25 %LEL, level 2 (二级) ≤ 50 %LEL. These are maxima: a configured setpoint may be lower.
FLAMMABLE_PCT_LEL = (25.0, 50.0)
# GB/T 50493-2019 5.5.2 (5) (DOMAIN.md §2) [V: S13–S15]: open-path detectors, 1 and 2 LEL·m.
OPEN_PATH_LEL_M = (1.0, 2.0)
# GB/T 50493-2019 5.5.2 (3) (DOMAIN.md §2) [V: S13–S15]: toxic gas, level 1 ≤ 100 % OEL and
# level 2 ≤ 200 % OEL; when no detector has a suitable range, 5 % and 10 % IDLH.
TOXIC_OEL_MULTIPLES = (1.0, 2.0)
TOXIC_IDLH_FRACTIONS = (0.05, 0.10)
# GB/T 50493-2019 5.5.2 (4) (DOMAIN.md §2) [V: S13–S15]: ambient oxygen, low (欠氧) 19.5 %VOL
# and high (过氧) 23.5 %VOL.
OXYGEN_PCT_VOL = (19.5, 23.5)
# Molar volume at 25 ℃ and 101.325 kPa (L/mol) for ppm → mg/m³ (DOMAIN.md §2) [M, physics].
MOLAR_VOLUME_25C_L = 24.45


@dataclass(frozen=True, slots=True)
class Oel:
    """An occupational exposure limit (职业接触限值, mg/m³) and its kind in GBZ 2.1."""

    mg_m3: float
    kind: str  # MAC (最高容许浓度) or PC-TWA
    molar_mass: float  # g/mol, IUPAC atomic weights [M]: for detectors that read ppm
    source: str


_S20 = "DOMAIN.md §2 [V2: S20, vendor table citing GB/T 50493-2019 + GBZ 2.1]"

# DOMAIN.md §2 "Typical OEL-based setpoints"; re-check against GBZ 2.1-2019 before go-live.
OEL_TABLE: dict[str, Oel] = {
    "H2S": Oel(10.0, "MAC", 34.08, _S20),
    "CO": Oel(20.0, "PC-TWA", 28.01, _S20),
    "Cl2": Oel(1.0, "MAC", 70.90, _S20),
    "NH3": Oel(20.0, "PC-TWA", 17.03, _S20),
    "SO2": Oel(5.0, "PC-TWA", 64.07, _S20),
    "NO2": Oel(5.0, "PC-TWA", 46.01, _S20),
    "HCN": Oel(1.0, "MAC", 27.03, _S20),
    "HCl": Oel(7.5, "MAC", 36.46, _S20),
    "HF": Oel(2.0, "MAC", 20.01, _S20),
    "COCl2": Oel(0.5, "MAC", 98.92, _S20),
    "C6H6": Oel(6.0, "PC-TWA", 78.11, _S20),  # 苯
    "C7H8": Oel(50.0, "PC-TWA", 92.14, _S20),  # 甲苯
    "CH3OH": Oel(25.0, "PC-TWA", 32.04, _S20),  # 甲醇
    "C2H3Cl": Oel(10.0, "PC-TWA", 62.50, _S20),  # 氯乙烯
    "C3H3N": Oel(1.0, "PC-TWA", 53.06, _S20),  # 丙烯腈
}

# Other names a configuration may use for the same gases.
GAS_ALIASES: dict[str, str] = {
    "硫化氢": "H2S",
    "一氧化碳": "CO",
    "氯气": "Cl2",
    "氨": "NH3",
    "氨气": "NH3",
    "二氧化硫": "SO2",
    "二氧化氮": "NO2",
    "氰化氢": "HCN",
    "氯化氢": "HCl",
    "氟化氢": "HF",
    "光气": "COCl2",
    "苯": "C6H6",
    "benzene": "C6H6",
    "甲苯": "C7H8",
    "toluene": "C7H8",
    "甲醇": "CH3OH",
    "methanol": "CH3OH",
    "氯乙烯": "C2H3Cl",
    "vinyl chloride": "C2H3Cl",
    "丙烯腈": "C3H3N",
    "acrylonitrile": "C3H3N",
    "氧气": "O2",
    "氧": "O2",
}

Unit = str  # one of UNITS' values
UNITS: dict[str, str] = {
    "%lel": "%LEL",
    "lel%": "%LEL",
    "lel": "%LEL",
    "lel·m": "LEL·m",
    "lel.m": "LEL·m",
    "lelm": "LEL·m",
    "mg/m3": "mg/m3",
    "mg/m³": "mg/m3",
    "ppm": "ppm",
    "%vol": "%VOL",
    "vol%": "%VOL",
}


class GasRuleError(ValueError):
    """No default setpoints can be derived for this gas and unit."""


@dataclass(frozen=True, slots=True)
class GasSetpoints:
    """Default limits of a gas detector; `source` says where each number comes from."""

    h: float | None  # 一级 (or O₂ high, 过氧)
    hh: float | None  # 二级
    l: float | None  # O₂ low (欠氧) # noqa: E741 - the domain's name for the low limit
    unit: str
    source: str
    maximum: tuple[float, float] | None = None  # (h, hh) ceilings the standard allows


def canonical_gas(gas: str) -> str:
    key = gas.strip()
    if key in OEL_TABLE or key == "O2":
        return key
    lowered = key.lower()
    for name in OEL_TABLE:
        if name.lower() == lowered:
            return name
    return GAS_ALIASES.get(lowered, GAS_ALIASES.get(key, key))


def canonical_unit(unit: str) -> str | None:
    return UNITS.get(re.sub(r"\s+", "", unit).lower())


def gas_setpoints(gas: str | None, unit: str, idlh_mg_m3: float | None = None) -> GasSetpoints:
    """GB/T 50493-2019 5.5.2 defaults for a detector of `gas` reading in `unit`.

    %LEL (any flammable gas) → 25 / 50; LEL·m → 1 / 2; O₂ in %VOL → 19.5 / 23.5; toxic gas in
    mg/m³ or ppm → 100 % / 200 % OEL, or 5 % / 10 % IDLH when `idlh_mg_m3` is given.
    """
    u = canonical_unit(unit)
    name = canonical_gas(gas) if gas else None
    clause = "GB/T 50493-2019 5.5.2"
    if u == "%LEL":
        h, hh = FLAMMABLE_PCT_LEL
        return GasSetpoints(h, hh, None, u, f"{clause} (1)(2)", maximum=FLAMMABLE_PCT_LEL)
    if u == "LEL·m":
        h, hh = OPEN_PATH_LEL_M
        return GasSetpoints(h, hh, None, u, f"{clause} (5)", maximum=OPEN_PATH_LEL_M)
    if name == "O2":
        if u != "%VOL":
            raise GasRuleError(f"an oxygen detector reads %VOL, not {unit!r}")
        low, high = OXYGEN_PCT_VOL
        return GasSetpoints(high, None, low, u, f"{clause} (4)")
    if u in ("mg/m3", "ppm"):
        if name is None:
            raise GasRuleError(f"a toxic-gas detector in {unit} needs `gas` to find its OEL")
        to_unit = 1.0
        if idlh_mg_m3 is not None:
            if name in OEL_TABLE and u == "ppm":
                to_unit = MOLAR_VOLUME_25C_L / OEL_TABLE[name].molar_mass
            elif u == "ppm":
                raise GasRuleError(f"gas {gas!r} has no molar mass here to convert IDLH to ppm")
            f1, f2 = TOXIC_IDLH_FRACTIONS
            return GasSetpoints(
                f1 * idlh_mg_m3 * to_unit,
                f2 * idlh_mg_m3 * to_unit,
                None,
                u,
                f"{clause} (3), {f1:.0%} / {f2:.0%} IDLH {idlh_mg_m3} mg/m³",
            )
        oel = OEL_TABLE.get(name)
        if oel is None:
            known = ", ".join(OEL_TABLE)
            raise GasRuleError(
                f"gas {gas!r} is not in the OEL table ({known}); give limits or idlh_mg_m3"
            )
        if u == "ppm":
            to_unit = MOLAR_VOLUME_25C_L / oel.molar_mass
        m1, m2 = TOXIC_OEL_MULTIPLES
        return GasSetpoints(
            m1 * oel.mg_m3 * to_unit,
            m2 * oel.mg_m3 * to_unit,
            None,
            u,
            f"{clause} (3), {m1:.0%} / {m2:.0%} OEL {oel.mg_m3} mg/m³ {oel.kind}, {oel.source}",
        )
    raise GasRuleError(f"no GB/T 50493 default setpoints for gas {gas!r} in unit {unit!r}")
