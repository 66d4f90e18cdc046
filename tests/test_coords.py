"""WGS-84 ⇄ GCJ-02 against the published test vectors, and the configuration's `coords` flag."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gis.coords import bearing_distance, gcj02_to_wgs84, wgs84_to_gcj02
from streams.config import parse_config

# The test vectors of the eviltransform reference implementations (googollee/eviltransform,
# go/transform_test.go and its ports): (WGS-84 lon, lat) → (GCJ-02 lon, lat).
PUBLISHED = [
    ((121.5272106, 31.1774276), (121.531541859215, 31.17530398364597)),  # Shanghai
    ((113.912316, 22.543847), (113.9171764808363, 22.540796131694766)),  # Shenzhen
    ((116.377817, 39.911954), (116.38404722455657, 39.91334545536069)),  # Beijing
]


def _metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat = math.radians((a[1] + b[1]) / 2)
    dx = (a[0] - b[0]) * 111_320 * math.cos(lat)
    dy = (a[1] - b[1]) * 110_574
    return math.hypot(dx, dy)


@pytest.mark.parametrize(("wgs", "gcj"), PUBLISHED)
def test_forward_matches_the_published_vectors(
    wgs: tuple[float, float], gcj: tuple[float, float]
) -> None:
    lon, lat = wgs84_to_gcj02(*wgs)
    assert lon == pytest.approx(gcj[0], abs=1e-9)
    assert lat == pytest.approx(gcj[1], abs=1e-9)
    # The offset is what makes GCJ-02 matter: hundreds of metres, not centimetres.
    assert 100 < _metres(wgs, gcj) < 1000


@pytest.mark.parametrize(("wgs", "gcj"), PUBLISHED)
def test_inverse_recovers_wgs84_to_a_millimetre(
    wgs: tuple[float, float], gcj: tuple[float, float]
) -> None:
    back = gcj02_to_wgs84(*gcj)
    assert _metres(back, wgs) < 1e-3


def test_arrays_match_scalars_and_round_trip() -> None:
    rng = np.random.default_rng(7)
    lon = rng.uniform(74, 134, 500)
    lat = rng.uniform(18, 53, 500)
    glon, glat = wgs84_to_gcj02(lon, lat)
    assert glon.shape == lon.shape
    assert glon[17] == wgs84_to_gcj02(float(lon[17]), float(lat[17]))[0]
    wlon, wlat = gcj02_to_wgs84(glon, glat)
    assert np.max(np.abs(wlon - lon)) < 1e-8
    assert np.max(np.abs(wlat - lat)) < 1e-8


def test_outside_china_nothing_moves() -> None:
    for lon, lat in [(-104.9903, 39.7392), (153.0251, -27.4698), (2.3522, 48.8566)]:
        assert wgs84_to_gcj02(lon, lat) == (lon, lat)
        assert gcj02_to_wgs84(lon, lat) == (lon, lat)


CONFIG = """
{flag}
[[regions]]
code = "320116"
province = "江苏省"
city = "南京市"

[[enterprises]]
code = "E1"
name = "示例"
region = "320116"
lon = {lon}
lat = {lat}

  [[enterprises.hazard_sources]]
  code = "HS1"
  name = "罐区"
  lon = {lon}
  lat = {lat}

  [[enterprises.cameras]]
  code = "C1"
  name = "罐区摄像机"
  url = "rtsp://127.0.0.1/c1"
  lon = {lon}
  lat = {lat}
"""


def test_config_converts_gcj02_positions_to_wgs84_once_on_load() -> None:
    wgs = PUBLISHED[0][0]
    gcj = PUBLISHED[0][1]
    plain = parse_config(CONFIG.format(flag="", lon=wgs[0], lat=wgs[1]))
    assert (plain.enterprises[0].lon, plain.enterprises[0].lat) == wgs
    cfg = parse_config(CONFIG.format(flag='coords = "gcj02"', lon=gcj[0], lat=gcj[1]))
    e = cfg.enterprises[0]
    for where in (e, e.hazard_sources[0], e.cameras[0]):
        assert where.lon is not None and where.lat is not None
        assert _metres((where.lon, where.lat), wgs) < 1e-3
    assert cfg.coords == "wgs84"  # what the loaded model holds now


def test_config_refuses_an_unknown_datum() -> None:
    with pytest.raises(Exception, match="coords"):
        parse_config(CONFIG.format(flag='coords = "bd09"', lon=118.8, lat=32.3))


def test_bearing_and_distance_from_a_hazard_source_to_a_target() -> None:
    # From the demo park: 1 km east and 1 km north (equirectangular over a few km), and the
    # 1° of latitude along a meridian (111.2 km on the mean sphere).
    lon, lat = 118.79, 32.26
    east = bearing_distance(lon, lat, lon + 1000 / (111_320 * math.cos(math.radians(lat))), lat)
    north = bearing_distance(lon, lat, lon, lat + 1000 / 111_320)
    assert east[0] == pytest.approx(90.0, abs=0.01) and east[1] == pytest.approx(1000, rel=5e-3)
    assert north[0] == pytest.approx(0.0, abs=1e-9) and north[1] == pytest.approx(1000, rel=5e-3)
    south_west = bearing_distance(lon, lat, lon - 0.01, lat - 0.01)
    assert 200 < south_west[0] < 250
    assert bearing_distance(0.0, 0.0, 0.0, 1.0)[1] == pytest.approx(111_195, rel=1e-4)
