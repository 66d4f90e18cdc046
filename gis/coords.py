"""WGS-84 ⇄ GCJ-02: the datum of GPS and of this system ⇄ the one of Chinese web maps.

anjian keeps every position in WGS-84. Positions copied from a Chinese map service (AMap/高德,
Tencent, Google China) are in GCJ-02 (国测局坐标, the obfuscated datum those services must use)
and are off by a few hundred metres; a configuration says `coords = "gcj02"` and they are
converted once, on load. Outside mainland China GCJ-02 equals WGS-84.

The forward transform is the public reconstruction everybody uses (Krasovsky 1940 ellipsoid
constants; the same as the `eviltransform` reference implementations, whose test vectors
tests/test_coords.py checks). The inverse has no closed form: it is found by fixed-point
iteration to well under a millimetre. Both take scalars or numpy arrays.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import numpy.typing as npt

_A = 6378245.0  # semi-major axis of the Krasovsky 1940 ellipsoid (m)
_EE = 0.00669342162296594323  # its eccentricity squared
# The rectangle the reference implementations treat as "China": outside it nothing is shifted.
_LON_RANGE = (72.004, 137.8347)
_LAT_RANGE = (0.8293, 55.8271)
_INVERSE_TOLERANCE_DEG = 1e-10  # ~0.01 mm
_INVERSE_MAX_STEPS = 30

F = TypeVar("F", float, npt.NDArray[np.float64])


def _in_china(lon: npt.NDArray[np.float64], lat: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    """Where GCJ-02 shifts a position (the reference implementations' rectangle)."""
    return (
        (lon >= _LON_RANGE[0]) & (lon <= _LON_RANGE[1])
        & (lat >= _LAT_RANGE[0]) & (lat <= _LAT_RANGE[1])
    )  # fmt: skip


def _delta(
    lon: npt.NDArray[np.float64], lat: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The GCJ-02 offset (degrees of longitude, latitude) at a WGS-84 position."""
    x, y = lon - 105.0, lat - 35.0
    root = np.sqrt(np.abs(x))
    dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * root
    dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * root
    wave = (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    dlat += wave + (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2.0 / 3.0
    dlat += (160.0 * np.sin(y / 12.0 * np.pi) + 320.0 * np.sin(y * np.pi / 30.0)) * 2.0 / 3.0
    dlon += wave + (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2.0 / 3.0
    dlon += (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2.0 / 3.0
    rad = np.radians(lat)
    magic = 1.0 - _EE * np.sin(rad) ** 2
    sqrt_magic = np.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1.0 - _EE)) / (magic * sqrt_magic) * np.pi)
    dlon = (dlon * 180.0) / (_A / sqrt_magic * np.cos(rad) * np.pi)
    inside = _in_china(lon, lat)
    return np.where(inside, dlon, 0.0), np.where(inside, dlat, 0.0)


def _out(lon: npt.NDArray[np.float64], lat: npt.NDArray[np.float64], scalar: bool) -> tuple[F, F]:
    if scalar:
        return float(lon), float(lat)  # type: ignore[return-value]
    return lon, lat  # type: ignore[return-value]


def wgs84_to_gcj02(lon: F, lat: F) -> tuple[F, F]:
    """(lon, lat) in WGS-84 → (lon, lat) in GCJ-02."""
    scalar = np.ndim(lon) == 0 and np.ndim(lat) == 0
    x, y = np.asarray(lon, np.float64), np.asarray(lat, np.float64)
    dlon, dlat = _delta(x, y)
    return _out(x + dlon, y + dlat, scalar)


def gcj02_to_wgs84(lon: F, lat: F) -> tuple[F, F]:
    """(lon, lat) in GCJ-02 → (lon, lat) in WGS-84 (iterated to < 1e-10°)."""
    scalar = np.ndim(lon) == 0 and np.ndim(lat) == 0
    gx, gy = np.asarray(lon, np.float64), np.asarray(lat, np.float64)
    x, y = gx.copy(), gy.copy()
    for _ in range(_INVERSE_MAX_STEPS):
        dlon, dlat = _delta(x, y)
        ex, ey = (x + dlon) - gx, (y + dlat) - gy
        x, y = x - ex, y - ey
        if max(float(np.max(np.abs(ex))), float(np.max(np.abs(ey)))) < _INVERSE_TOLERANCE_DEG:
            break
    return _out(x, y, scalar)


__all__ = ["gcj02_to_wgs84", "wgs84_to_gcj02"]


_EARTH_RADIUS_M = 6_371_008.8  # mean radius (IUGG)


def bearing_distance(lon1: float, lat1: float, lon2: float, lat2: float) -> tuple[float, float]:
    """From the first WGS-84 position to the second: the initial bearing in degrees clockwise
    from north, and the great-circle distance in metres (haversine; within 0.5 % of the
    ellipsoid, ample for the few kilometres around a plant)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dl = np.radians(lon2 - lon1)
    h = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    distance = 2 * _EARTH_RADIUS_M * np.arcsin(np.sqrt(h))
    y = np.sin(dl) * np.cos(p2)
    x = np.cos(p1) * np.sin(p2) - np.sin(p1) * np.cos(p2) * np.cos(dl)
    bearing = np.degrees(np.arctan2(y, x)) % 360.0
    return float(bearing), float(distance)
