"""The configuration file: the README's example is valid; bad files are refused precisely."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from streams.config import ConfigError, ModbusDevice, OpcUaDevice, load_config, parse_config

ROOT = Path(__file__).resolve().parent.parent

MINIMAL = """\
[[enterprises]]
code = "E1"
name = "甲"
region = "320116"

  [[enterprises.devices]]
  code = "PLC1"
  protocol = "modbus"
  host = "127.0.0.1"

    [[enterprises.devices.points]]
    code = "P1"
    name = "液位"
    table = "holding"
    address = 0
"""


def readme_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```toml\n(.*?)```", text, flags=re.S)
    assert blocks, "README.md has no toml example"
    return max(blocks, key=len)


def test_readme_example_is_a_valid_config() -> None:
    cfg = parse_config(readme_example(), "README.md")
    e = cfg.enterprises[0]
    assert [d.protocol for d in e.devices] == ["modbus", "opcua", "mqtt"]
    plc = e.devices[0]
    assert isinstance(plc, ModbusDevice)
    assert plc.points[0].scale == 0.01
    assert plc.points[1].word_order == "little"
    dcs = e.devices[1]
    assert isinstance(dcs, OpcUaDevice) and dcs.points[0].node == "ns=2;s=E1.TK1.PT"
    assert cfg.database.retention_days == 30
    assert e.cameras[0].points == ["GD-1"]


def _problems(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "plant.toml")
    return str(info.value)


def test_bad_value_names_file_line_path_value_and_expectation() -> None:
    text = MINIMAL.replace("address = 0", "address = 70000")
    message = _problems(text)
    line = text.splitlines().index("    address = 70000") + 1
    assert f"plant.toml:{line}: enterprises[0].devices[0].points[0].address" in message
    assert "less than or equal to 65535" in message
    assert "(got 70000)" in message


def test_unknown_key_is_refused_with_its_line() -> None:
    text = MINIMAL.replace('  host = "127.0.0.1"', '  host = "127.0.0.1"\n  hots = "x"')
    message = _problems(text)
    assert (
        "plant.toml:10: enterprises[0].devices[0].hots: Extra inputs are not permitted" in message
    )


def test_limits_out_of_order_are_refused() -> None:
    text = MINIMAL + "    limits = { hh = 1.0, h = 2.0 }\n"
    assert "limit hh=1.0 must be greater than h=2.0" in _problems(text)


def test_modbus_point_without_address_is_refused() -> None:
    text = MINIMAL.replace("    address = 0\n", "")
    assert "point 'P1': a modbus point needs table and address" in _problems(text)


def test_reference_to_unknown_hazard_source_is_refused() -> None:
    text = MINIMAL.replace('  host = "127.0.0.1"', '  host = "127.0.0.1"\n  hazard_source = "HS9"')
    assert (
        "plant.toml:10: enterprises[0].devices[0].hazard_source: device 'PLC1' names unknown "
        "hazard source 'HS9' (got 'HS9')"
    ) in _problems(text)


def test_duplicate_point_codes_are_refused() -> None:
    text = MINIMAL + (
        '    [[enterprises.devices.points]]\n    code = "P1"\n    name = "x"\n'
        '    table = "holding"\n    address = 2\n'
    )
    # At the second definition's line, without a dump of the whole enterprise.
    assert _problems(text).endswith(
        "plant.toml:17: enterprises[0].devices[0].points[1].code: point code 'P1' is used twice"
        " (got 'P1')"
    )


def test_a_point_code_taken_by_a_devices_link_point_is_refused() -> None:
    text = MINIMAL.replace('code = "P1"', 'code = "PLC1.link"')
    assert _problems(text).endswith(
        "plant.toml:12: enterprises[0].devices[0].points[0].code: point (devices' link and "
        "cameras' health points included) code 'PLC1.link' is used twice (got 'PLC1.link')"
    )


def test_a_devices_link_point_is_at_the_hazard_source_its_points_share() -> None:
    sources = (
        '  [[enterprises.hazard_sources]]\n  code = "HS1"\n  name = "罐区"\n'
        '  [[enterprises.hazard_sources]]\n  code = "HS2"\n  name = "罐区二"\n'
    )
    second = '    [[enterprises.devices.points]]\n    code = "P2"\n    name = "压力"\n'
    second += '    table = "holding"\n    address = 2\n    hazard_source = "{hs}"\n'
    one = MINIMAL.replace("  [[enterprises.devices]]", sources + "  [[enterprises.devices]]")
    one = one.replace("address = 0\n", 'address = 0\n    hazard_source = "HS1"\n')

    def link_source(text: str) -> str | None:
        [(_, _, link)] = list(parse_config(text).link_points())
        assert (link.code, link.kind, link.data_type) == ("PLC1.link", "device_link", "bool")
        return link.hazard_source

    assert link_source(one + second.format(hs="HS1")) == "HS1"
    assert link_source(one + second.format(hs="HS2")) is None  # two sources: none of them
    assert link_source(MINIMAL) is None


def test_overlapping_modbus_registers_are_refused_at_the_second_point() -> None:
    second = (
        '    [[enterprises.devices.points]]\n    code = "P2"\n    name = "压力"\n'
        '    table = "holding"\n    address = {}\n'
    )
    text = MINIMAL + second.format(1)  # P1 is a float32 at 0–1
    line = text.splitlines().index("    address = 1") + 1
    assert _problems(text).endswith(
        f"plant.toml:{line}: enterprises[0].devices[0].points[1].address: point 'P2' "
        "(holding 1–2) overlaps point 'P1' (holding 0–1) (got 1)"
    )
    parse_config(MINIMAL + second.format(2))  # next to it
    parse_config(MINIMAL + second.format(0))  # the same value twice (e.g. two scalings)
    parse_config(MINIMAL + second.format(1).replace('"holding"', '"input"'))  # another table


def test_mqtt_device_needs_broker_settings() -> None:
    text = MINIMAL.replace('protocol = "modbus"\n  host = "127.0.0.1"', 'protocol = "mqtt"')
    text = text.replace('    table = "holding"\n    address = 0\n', "")
    assert "has mqtt devices but there is no [mqtt] table" in _problems(text)


def test_toml_syntax_error_gives_its_line() -> None:
    message = _problems(MINIMAL.replace('name = "液位"', 'name = "液位'))
    assert "TOML syntax error" in message
    assert "plant.toml:13:" in message


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_config(tmp_path / "missing.toml")


def _anjian(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "anjian.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_config_command_accepts_a_good_file(tmp_path: Path) -> None:
    good = tmp_path / "plant.toml"
    good.write_text(readme_example(), encoding="utf-8")
    result = _anjian("check-config", str(good), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "OK — 1 enterprises, 3 devices, 4 points" in result.stdout


def test_bad_config_stops_serve_with_exit_code_2_before_starting(tmp_path: Path) -> None:
    bad = tmp_path / "plant.toml"
    bad.write_text(MINIMAL.replace('protocol = "modbus"', 'protocol = "profibus"'), "utf-8")
    for args in (["check-config", str(bad)], ["serve", "--config", str(bad)]):
        result = _anjian(*args, cwd=tmp_path)
        assert result.returncode == 2
        assert (
            f"{bad}:8: enterprises[0].devices[0].protocol: must be one of 'modbus', 'opcua', "
            "'mqtt' (got 'profibus')" in result.stderr
        )
    assert not (tmp_path / "data").exists()  # serve started nothing


def test_readme_alarm_and_notify_examples_are_valid() -> None:
    import tomllib

    from alarms.notify import NotifySettings
    from alarms.rules import AlarmSettings

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [tomllib.loads(b) for b in re.findall(r"```toml\n(.*?)```", text, flags=re.S)]
    alarms = [b["alarms"] for b in blocks if "alarms" in b]
    notify = [b["notify"] for b in blocks if "notify" in b]
    assert alarms and notify
    for table in alarms:
        settings = AlarmSettings.model_validate(table)
        assert settings.points["E1/GD-101"].deadband_pct == 5
    for table in notify:
        assert NotifySettings.model_validate(table).webhooks[0].url.startswith("https://")


def test_tables_of_other_packages_and_alarm_rules_are_checked_before_starting(
    tmp_path: Path,
) -> None:
    # [alarms], [notify] and [video] belong to other packages and the alarm rules need the
    # points: check-config and serve still refuse them with the file and the line.
    plant = MINIMAL.replace("    address = 0\n", "    address = 0\n    range = [0, 100]\n")
    plant += """
[alarms.defaults]
on_delay_s = -1

[alarms.points."E1/P1"]
hh = 150
high = 3.0

[notify]
webhooks = [{ url = "not a url", secret = "s" }]

[video]
idle_pull_s = "soon"

[security]
tls_certificate = "/nonexistent/cert.pem"
tls_key = "/nonexistent/key.pem"
"""
    bad = tmp_path / "plant.toml"
    bad.write_text(plant, "utf-8")
    for args in (["check-config", str(bad)], ["serve", "--config", str(bad)]):
        result = _anjian(*args, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        err = result.stderr
        assert "Traceback" not in err
        assert f"{bad}:19: alarms.defaults.on_delay_s: " in err
        assert f"{bad}:23: alarms.points.E1/P1.high: Extra inputs are not permitted" in err
        assert f"{bad}:26: notify.webhooks[0].url: " in err
        assert f"{bad}:29: video.idle_pull_s: " in err
        assert f"{bad}:32: security.tls_certificate: cannot load the TLS certificate" in err
    assert not (tmp_path / "data").exists()

    # With valid tables, each point's rule: the override's line for the point it names.
    fixed = plant.replace("on_delay_s = -1", "on_delay_s = 1").replace("high = 3.0\n", "")
    fixed = fixed.split("[notify]")[0]
    bad.write_text(fixed, "utf-8")
    result = _anjian("check-config", str(bad), cwd=tmp_path)
    assert result.returncode == 2
    assert f"{bad}:21: alarms.points.E1/P1: point E1/P1: " in result.stderr


def test_a_device_without_protocol_says_which_are_possible() -> None:
    text = _problems(MINIMAL.replace('  protocol = "modbus"\n', ""))
    assert (
        "plant.toml:6: enterprises[0].devices[0].protocol: is missing: one of modbus, mqtt, opcua"
        in text
    )


@pytest.mark.parametrize("host", ["", "999.1.1.1", "10.0.0", "plc 1", "-plc", "a..b"])
def test_a_device_host_must_be_a_host_name_or_an_ip_address(host: str) -> None:
    text = _problems(MINIMAL.replace('host = "127.0.0.1"', f'host = "{host}"'))
    assert "plant.toml:9: enterprises[0].devices[0].host: must be a host name or an IP" in text


@pytest.mark.parametrize("host", ["10.0.0.5", "plc-1.plant.local", "::1", "PLC101"])
def test_host_names_and_ip_addresses_are_accepted(host: str) -> None:
    parse_config(MINIMAL.replace('host = "127.0.0.1"', f'host = "{host}"'))
