"""Alarm rules over the API through the real app and PostgreSQL: validated like the config,
allowed to the shift leader, audited, in force at once without disturbing other points, kept
across a restart, and reverted to the configuration file's rule."""

from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path

import numpy as np

from alarms.engine import AlarmEngine
from alarms.model import AlarmClass, AlarmState, Condition
from alarms.rules import LIMIT_CONDITIONS, PointRule, RuleArrays, RuleOverride
from streams import SampleBatch
from tests.test_design_suppression import _app, _until


async def test_rule_put_validated_audited_live_and_kept_across_restart(
    database_url: str, tmp_path: Path
) -> None:
    app = await _app(database_url, tmp_path)
    run = app.run
    gd1, gd2 = run.points.id("E9", "GD-1"), run.points.id("E9", "GD-2")
    engine = run.alarms

    def state(point: int, condition: Condition) -> AlarmState | None:
        a = engine.alarms.get((point, condition))
        return None if a is None else a.state

    async def reading(values: dict[int, float]) -> None:
        await run.hub.publish(SampleBatch.of(engine.clock(), list(values), list(values.values())))

    path = f"/api/alarms/rules/{gd1}"
    try:
        await reading({gd1: 25.0, gd2: 45.0})  # GD-1 above H 20; GD-2 above HH 40
        await _until(lambda: state(gd1, Condition.H) is AlarmState.UNACK)
        await _until(lambda: state(gd2, Condition.HH) is AlarmState.UNACK)
        events_before = await run.store.pool.fetchval("SELECT count(*) FROM alarm_events")

        # Refused: the console operator and the enterprise may not; bad rules are 400s that say
        # what is wrong, exactly as the configuration file's checks do.
        status, body = await app.call("duty", "PUT", path, json={"h": 30})
        assert status == 403 and body["code"] == "forbidden"
        status, body = await app.call("enterprise", "PUT", path, json={"h": 30})
        assert status == 403
        status, body = await app.call("shift", "PUT", path, json={"h": 50, "hh": 40})
        assert status == 400
        assert body["error"] == "point E9/GD-1: H 50 must be below HH 40"
        status, body = await app.call("shift", "PUT", path, json={"hx": 1})
        assert status == 400 and body["field"] == "hx"
        # Strict types: a string is no number and true is no delay (a typo must not pass).
        status, body = await app.call("shift", "PUT", path, json={"h": "30"})
        assert status == 400 and body["field"] == "h", body
        status, body = await app.call("shift", "PUT", path, json={"on_delay_s": True})
        assert status == 400 and body["field"] == "on_delay_s", body
        status, body = await app.call(
            "shift", "PUT", path, json={"h": 30, "hh": 50, "deadband": 25}
        )
        assert status == 400
        assert body["problems"] == [
            "point E9/GD-1: deadband 25 of HH 50 is larger than the gap 20 to H 30"
        ]
        status, body = await app.call("shift", "PUT", "/api/alarms/rules/99999", json={})
        assert status == 404
        # A device's link point has a rule derived from its points': not set over the API.
        link = run.points.id("E9", "D1.link")
        status, body = await app.call("shift", "PUT", f"/api/alarms/rules/{link}", json={})
        assert status == 400, body
        assert body["error"] == (
            "the alarm rule of E9/D1.link follows from other rules (a device's link point, a "
            "camera's health point): it is not set over the API"
        )

        status, body = await app.call("shift", "PUT", path, json={"h": 30, "hh": 50, "deadband": 2})
        assert status == 200, body
        assert (body["h"], body["hh"], body["deadband"], body["source"], body["set_by"]) == (
            30.0, 50.0, 2.0, "api", "shift",
        )  # fmt: skip
        assert list(engine.rules.limit[gd1][:2]) == [50.0, 30.0]
        # The alarm's detail (and the board) gives the limits in force, not the file's.
        status, alarm = await app.call(
            "duty", "GET", f"/api/alarms/{engine.ids[(gd1, Condition.H)]}"
        )
        assert alarm["limits"] == {"hh": 50.0, "h": 30.0, "l": None, "ll": None}
        status, board = await app.call("duty", "GET", "/api/alarms")
        assert {a["code"]: a["limits"]["h"] for a in board["alarms"]}["GD-1"] == 30.0
        status, listed = await app.call("duty", "GET", "/api/points?enterprise=E9")
        by_code = {p["code"]: p["limits"] for p in listed}
        assert by_code["GD-1"] == {"hh": 50.0, "h": 30.0} and by_code["GD-2"] == {"hh": 40, "h": 20}
        # Condition state is kept: H stays until a sample below the new clear level (28).
        assert state(gd1, Condition.H) is AlarmState.UNACK
        assert state(gd2, Condition.HH) is AlarmState.UNACK
        await reading({gd1: 28.5})
        await _until(lambda: bool(engine.eval.raw_of(gd1, Condition.H)) is True)
        assert state(gd1, Condition.H) is AlarmState.UNACK  # inside the new deadband
        await reading({gd1: 27.0})
        await _until(lambda: state(gd1, Condition.H) is AlarmState.RTN_UNACK)
        # The other point's limit alarms saw nothing: no event since the change. (Its quality
        # may: the config's device is unreachable, and its communication-loss samples come when
        # the collector's backoff lets them.)
        assert (
            await run.store.pool.fetchval(
                "SELECT count(*) FROM alarm_events"
                " WHERE point = $1 AND id > $2 AND condition = ANY($3::smallint[])",
                gd2, events_before, [int(c) for c in LIMIT_CONDITIONS],
            )
        ) == 0  # fmt: skip
        assert state(gd2, Condition.HH) is AlarmState.UNACK

        # A rule that drops a condition clears it at once, saying why.
        await reading({gd1: 35.0})
        await _until(lambda: state(gd1, Condition.H) is AlarmState.UNACK)
        status, body = await app.call("shift", "PUT", path, json={"h": None, "hh": 50})
        assert status == 200 and body["h"] is None
        assert state(gd1, Condition.H) is AlarmState.RTN_UNACK
        detail = await run.store.pool.fetchval(
            "SELECT detail->>'rule' FROM alarm_events WHERE point = $1 AND condition = $2"
            " ORDER BY id DESC LIMIT 1",
            gd1, int(Condition.H),
        )  # fmt: skip
        assert detail == "rule changed by shift"

        listed = await (await app.http["duty"].get("/api/alarms/rules")).json()
        by_code = {r["code"]: r for r in listed["rules"]}
        assert by_code["GD-1"]["source"] == "api" and by_code["GD-2"]["source"] == "config"
        audit = await run.store.pool.fetch(
            "SELECT username, result FROM audit_log WHERE action = 'PUT /api/alarms/rules/{point}'"
            " ORDER BY seq"
        )
        assert [tuple(r) for r in audit] == [
            ("duty", "refused 403"), ("enterprise", "refused 403"), ("shift", "refused 400"),
            ("shift", "refused 400"), ("shift", "refused 400"), ("shift", "refused 400"),
            ("shift", "refused 400"), ("shift", "refused 404"), ("shift", "refused 400"),
            ("shift", "ok"), ("shift", "ok"),
        ]  # fmt: skip
    finally:
        await app.close()

    # Restart: the database's rule is in force, not the file's; DELETE reverts to the file's.
    app = await _app(database_url, tmp_path)
    try:
        engine = app.run.alarms
        hh, h = engine.rules.limit[gd1][:2]
        assert hh == 50.0 and math.isnan(h)
        status, body = await app.call("shift", "DELETE", path)
        assert status == 200
        assert (body["h"], body["hh"], body["source"], body["set_by"]) == (
            20.0, 40.0, "config", None,
        )  # fmt: skip
        assert list(engine.rules.limit[gd1][:2]) == [40.0, 20.0]
        assert await app.run.store.pool.fetchval("SELECT count(*) FROM alarm_rules") == 0
    finally:
        await app.close()


def test_rebuilding_one_row_equals_building_all_rows() -> None:
    rules = [
        PointRule(point=0, hh=10, h=8, deadband=0.5, on_delay_s=2),
        PointRule(point=1, alarm_class=AlarmClass.GAS, h=20, hh=40, range=(0, 60)),
        PointRule(point=2, l=1, ll=0.5, roc={"limit_per_s": 0.1}, stuck={"epsilon": 0.01}),
    ]
    changed = PointRule(point=1, h=25, forecast={"window_s": 60}, priority={"h": 1})
    before = RuleArrays.build(rules)
    after = before.with_rules([changed])
    expected = RuleArrays.build([rules[0], changed, rules[2]])
    for f in fields(RuleArrays):
        np.testing.assert_array_equal(getattr(after, f.name), getattr(expected, f.name), f.name)
    assert before.limit[1][1] == 20  # the original is untouched
    assert list(after.enabled(1)) == [c in (Condition.H, Condition.FORECAST) for c in Condition]
    assert RuleOverride.model_validate({"h": None}).model_fields_set == {"h"}


async def test_a_device_link_follows_its_points_bad_quality_time_set_over_the_api(
    database_url: str, tmp_path: Path
) -> None:
    """D2's link alarm comes after the shortest bad-quality T of D2's points (one: GD-2): a T
    set over the API moves it at once and after a restart; no T left, no link alarm."""
    app = await _app(database_url, tmp_path)
    gd2, link = app.run.points.id("E9", "GD-2"), app.run.points.id("E9", "D2.link")
    bad = Condition.BAD_QUALITY

    def link_after_s(engine: AlarmEngine) -> float | None:
        rules = engine.rules
        return float(rules.on_delay_ns[link, bad]) / 1e9 if rules.bad_quality[link] else None

    path = f"/api/alarms/rules/{gd2}"
    try:
        assert link_after_s(app.run.alarms) == 0.0  # the file's default T
        status, body = await app.call("shift", "PUT", path, json={"bad_quality": {"after_s": 12}})
        assert status == 200, body
        assert link_after_s(app.run.alarms) == 12.0
        listed = await (await app.http["duty"].get("/api/alarms/rules")).json()
        by_code = {r["code"]: r for r in listed["rules"]}
        assert by_code["D2.link"]["bad_quality"] == {"after_s": 12.0}
    finally:
        await app.close()

    app = await _app(database_url, tmp_path)  # the stored T is in force for the link too
    try:
        assert link_after_s(app.run.alarms) == 12.0
        status, body = await app.call("shift", "PUT", path, json={"bad_quality": None})
        assert status == 200, body
        assert link_after_s(app.run.alarms) is None
        status, body = await app.call("shift", "DELETE", path)
        assert status == 200
        assert link_after_s(app.run.alarms) == 0.0
        # D1's link never moved.
        d1 = app.run.points.id("E9", "D1.link")
        assert app.run.alarms.rules.bad_quality[d1]
        assert app.run.alarms.rules.on_delay_ns[d1, bad] == 0
    finally:
        await app.close()
