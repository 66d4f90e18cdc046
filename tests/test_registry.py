"""The registry in a real database: stable ids across syncs, retirement, the web's listings."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import pytest

from streams.config import Config, parse_config
from streams.registry import list_enterprises, list_points, sync_config
from streams.store import Store

PLANT = """
[[regions]]
code = "370600"
province = "山东省"
city = "烟台市"

[[enterprises]]
code = "E001"
name = "万华化学(烟台)"
region = "370600"
industry = "危险化学品"
lon = 121.1
lat = 37.6

[[enterprises.hazard_sources]]
code = "HS1"
name = "液氨储罐区"
grade = 2

[[enterprises.devices]]
code = "PLC1"
protocol = "modbus"
host = "127.0.0.1"
hazard_source = "HS1"

[[enterprises.devices.points]]
code = "TK1.LT"
name = "1号罐液位"
unit = "m"
kind = "level"
table = "holding"
address = 0
range = [0, 20]
limits = { hh = 18, h = 16 }

[[enterprises.devices.points]]
code = "GD1"
name = "氨气探测器1"
unit = "ppm"
kind = "gas"
gas = "NH3"
table = "holding"
address = 2

[[enterprises.devices.points]]
code = "TK1.PT"
name = "1号罐压力"
unit = "MPa"
table = "holding"
address = 4

[[enterprises.cameras]]
code = "CAM1"
name = "罐区全景"
url = "rtsp://127.0.0.1/cam1"
points = ["TK1.LT", "GD1"]

[[enterprises]]
code = "E002"
name = "烟花厂"
region = "370600"

[[enterprises.devices]]
code = "PLC1"
protocol = "modbus"
host = "127.0.0.2"

[[enterprises.devices.points]]
code = "TK1.LT"
name = "同名不同厂"
table = "input"
address = 0
"""


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    s = await Store.open(database_url)
    yield s
    await s.close()


def _without(text: str, block_start: str) -> str:
    """The config text with the [[...points]] block that starts with `block_start` removed."""
    head, _, tail = text.partition(block_start)
    head = head.rsplit("[[enterprises.devices.points]]", 1)[0]
    return head + tail[tail.index("\n[[") :]


async def test_ids_stay_the_same_across_syncs_and_new_points_get_the_next_id(
    store: Store,
) -> None:
    first = await sync_config(store.pool, parse_config(PLANT))
    again = await sync_config(store.pool, parse_config(PLANT))
    assert {(p.enterprise, p.code): p.id for p in first} == {
        (p.enterprise, p.code): p.id for p in again
    }
    # 4 device points, the 2 devices' link points, then the camera's 5 health points (online,
    # fps, bitrate, …).
    assert len(first) == 4 + 2 + 5
    assert sorted(first.ids.tolist()) == list(range(1, 12))
    link = first.info(first.id("E001", "PLC1.link"))
    assert (link.device, link.kind, link.hazard_source) == ("PLC1", "device_link", "HS1")
    # The same point code in two enterprises is two points.
    assert first.id("E001", "TK1.LT") != first.id("E002", "TK1.LT")

    grown = PLANT.replace(
        'code = "GD1"',
        'code = "GD2"\nname = "氨气探测器2"\ntable = "coil"\n'
        'data_type = "bool"\naddress = 9\n\n[[enterprises.devices.points]]\ncode = "GD1"',
    )
    third = await sync_config(store.pool, parse_config(grown))
    assert third.id("E001", "GD2") == 12  # re-syncs did not burn sequence numbers
    assert third.id("E001", "GD1") == first.id("E001", "GD1")


async def test_point_info_carries_what_collectors_and_alarms_need(store: Store) -> None:
    index = await sync_config(store.pool, parse_config(PLANT))
    level = index.info(index.id("E001", "TK1.LT"))
    assert (level.enterprise, level.device, level.name, level.unit, level.kind) == (
        "E001",
        "PLC1",
        "1号罐液位",
        "m",
        "level",
    )
    assert level.range == (0.0, 20.0)
    assert (level.limits.hh, level.limits.h, level.limits.l) == (18.0, 16.0, None)
    assert level.hazard_source == "HS1"  # inherited from the device
    assert index.info(index.id("E001", "GD1")).gas == "NH3"
    assert index.for_enterprise("E002") == {
        "TK1.LT": index.id("E002", "TK1.LT"),
        "PLC1.link": index.id("E002", "PLC1.link"),
    }
    with pytest.raises(KeyError, match="no point 'NOPE' in enterprise 'E001'"):
        index.id("E001", "NOPE")
    with pytest.raises(KeyError, match="no configured point with id 999"):
        index.info(999)


async def test_points_leaving_the_config_are_retired_and_come_back_with_their_id(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    index = await sync_config(store.pool, parse_config(PLANT))
    pressure = index.id("E001", "TK1.PT")
    async with store.pool.acquire() as conn:
        await conn.execute("INSERT INTO latest_values VALUES ($1, now(), 0.4, 0)", pressure)

    shrunk = _without(PLANT, 'code = "TK1.PT"')
    assert "TK1.PT" not in shrunk
    with caplog.at_level(logging.WARNING, "anjian.registry"):
        smaller = await sync_config(store.pool, parse_config(shrunk))
    assert "1 point(s) left the configuration and are retired" in caplog.text
    assert caplog.text.rstrip().endswith("E001/TK1.PT")
    assert pressure not in smaller
    async with store.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT code, retired FROM points WHERE id = $1", pressure)
        assert await conn.fetchval("SELECT count(*) FROM latest_values") == 1
    assert (row["code"], row["retired"]) == ("TK1.PT", True)
    assert "TK1.PT" not in [p["code"] for p in await list_points(store.pool, "E001")]

    back = await sync_config(store.pool, parse_config(PLANT))
    assert back.id("E001", "TK1.PT") == pressure
    assert "TK1.PT" in [p["code"] for p in await list_points(store.pool, "E001")]


async def test_edited_attributes_are_updated_in_place(store: Store) -> None:
    index = await sync_config(store.pool, parse_config(PLANT))
    edited = PLANT.replace('name = "1号罐液位"', 'name = "1#储罐液位"').replace(
        "limits = { hh = 18, h = 16 }", "limits = { hh = 19 }"
    )
    again = await sync_config(store.pool, parse_config(edited))
    level = again.id("E001", "TK1.LT")
    assert level == index.id("E001", "TK1.LT")
    [row] = [p for p in await list_points(store.pool, "E001") if p["id"] == level]
    assert row["name"] == "1#储罐液位"
    assert row["limits"] == {"hh": 19.0}


async def test_enterprise_listing_joins_the_region_and_counts_the_live_tree(
    store: Store,
) -> None:
    await sync_config(store.pool, parse_config(PLANT))
    await sync_config(store.pool, parse_config(_without(PLANT, 'code = "TK1.PT"')))
    enterprises = await list_enterprises(store.pool)
    json.dumps(enterprises)  # JSON-ready
    assert [e["code"] for e in enterprises] == ["E001", "E002"]
    e001 = enterprises[0]
    assert (e001["province"], e001["city"], e001["industry"]) == ("山东省", "烟台市", "危险化学品")
    assert (e001["lon"], e001["lat"]) == (121.1, 37.6)
    # The camera counts as a device with its 5 health points; the PLC has its link point.
    assert (e001["hazard_sources"], e001["devices"], e001["points"]) == (1, 2, 2 + 1 + 5)


async def test_point_listing_is_json_ready_and_filters_by_enterprise(store: Store) -> None:
    index = await sync_config(store.pool, parse_config(PLANT))
    everything = await list_points(store.pool)
    assert json.loads(json.dumps(everything)) == everything
    assert len(everything) == 4 + 2 + 5  # with the link and the camera's health points
    # By enterprise, then by code (a duty officer reads GD1 before TK1.LT), not by id.
    listed = [(p["enterprise"], p["code"]) for p in everything]
    assert listed == sorted(listed, key=lambda ec: (ec[0], ec[1].encode()))
    assert listed[:2] == [("E001", "CAM1.bitrate"), ("E001", "CAM1.fps")], listed
    [level] = [p for p in everything if p["id"] == index.id("E001", "TK1.LT")]
    assert level == {
        "id": index.id("E001", "TK1.LT"),
        "enterprise": "E001",
        "device": "PLC1",
        "protocol": "modbus",
        "hazard_source": "HS1",
        "hazard_source_name": "液氨储罐区",
        "code": "TK1.LT",
        "name": "1号罐液位",
        "unit": "m",
        "kind": "level",
        "gas": None,
        "range": [0.0, 20.0],
        "limits": {"hh": 18.0, "h": 16.0},
    }
    assert [p["code"] for p in await list_points(store.pool, "E002")] == ["PLC1.link", "TK1.LT"]
    assert await list_points(store.pool, "E404") == []


async def test_cameras_reference_their_points_by_id(store: Store) -> None:
    index = await sync_config(store.pool, parse_config(PLANT))
    async with store.pool.acquire() as conn:
        points = await conn.fetchval("SELECT points FROM cameras WHERE code = 'CAM1'")
    assert points == [index.id("E001", "TK1.LT"), index.id("E001", "GD1")]


async def test_camera_credentials_are_not_stored(store: Store) -> None:
    secret = "rtsp://admin:Cam%402026@10.1.2.3:554/cam/realmonitor?channel=1&password=Cam2026"
    await sync_config(store.pool, parse_config(PLANT.replace("rtsp://127.0.0.1/cam1", secret)))
    async with store.pool.acquire() as conn:
        url = await conn.fetchval("SELECT url FROM cameras WHERE code = 'CAM1'")
    assert url == "rtsp://10.1.2.3:554/cam/realmonitor?channel=1&password=***"
    # A camera stored with its credentials before this change loses them at the next start.
    async with store.pool.acquire() as conn:
        await conn.execute("UPDATE cameras SET url = $1 WHERE code = 'CAM1'", secret)
    await sync_config(store.pool, parse_config(PLANT.replace("rtsp://127.0.0.1/cam1", secret)))
    async with store.pool.acquire() as conn:
        assert "Cam2026" not in await conn.fetchval("SELECT url FROM cameras WHERE code = 'CAM1'")


async def test_an_empty_config_retires_every_point(store: Store) -> None:
    await sync_config(store.pool, parse_config(PLANT))
    index = await sync_config(store.pool, Config())
    assert len(index) == 0
    assert await list_points(store.pool) == []
