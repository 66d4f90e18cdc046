"""The console page served by the spine (a real Modbus device) in Debian's Chromium.

The console's own browser tests run against the demo (tests/test_console_board.py); this one
checks the page against a minimal plant: it is CSP-clean (no inline script), refuses a wrong
password with a message, measures the device → console latency in its status bar, shows an
alarm caused by a register written at the device, and forgets everything at sign-out.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, async_playwright, expect
from pymodbus.client import AsyncModbusTcpClient

from tests.conftest import DUTY
from tests.console_kit import CHROMIUM_ARGS
from tests.test_spine import Spine, spine  # noqa: F401 - the fixture is shared

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if CHROMIUM is None:
        pytest.skip(
            "no chromium on this machine: `./run test` installs Debian's chromium when run as "
            "root; otherwise `apt-get install chromium` to run the browser tests"
        )
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        await b.close()


async def test_console_signs_in_measures_latency_and_shows_a_device_alarm(
    spine: Spine,  # noqa: F811
    browser: Browser,
) -> None:
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    response = await page.goto(str(spine.client.make_url("/")))
    assert response is not None
    assert "script-src 'self'" in response.headers["content-security-policy"]
    # Every script is a file (the CSP allows no inline script).
    assert await page.locator("script:not([src])").count() == 0

    # Nothing is shown before signing in; a wrong password is refused with a message.
    await expect(page.locator("#login")).to_be_visible()
    await expect(page.locator("#statusbar")).to_be_hidden()
    await page.fill("input[name=username]", DUTY[0])
    await page.fill("input[name=password]", "wrong-Password1")
    await page.click("#login button[type=submit]")
    await expect(page.locator("#login-error")).to_have_text("用户名或密码错误")
    await page.fill("input[name=password]", DUTY[1])
    await page.click("#login button[type=submit]")
    await expect(page.locator("#alarm-table")).to_be_visible()
    await expect(page.locator("#status-collectors")).to_have_text("在线 1 · 离线 0")
    # The device is polled every 0.1 s: the measured latency appears in the status bar.
    await expect(page.locator("#status-latency")).to_have_text(re.compile(r"^\d+ ms"))

    # A level beyond the instrument's range (0–20 m), written at the device, is an alarm.
    async with AsyncModbusTcpClient("127.0.0.1", port=spine.device.port) as plc:
        assert not (await plc.write_register(0, 2500, device_id=1)).isError()
    found = page.locator("#alarm-table tbody tr", has_text="TK1.LT").filter(has_text="超量程")
    await expect(found).to_have_count(1, timeout=15_000)
    row = page.locator(f"tr[data-alarm='{await found.get_attribute('data-alarm')}']")
    # 25 % of the span above the range: past NAMUR NE 43's 21 mA, a failure signal.
    await expect(row.locator("td.value")).to_have_text("25 m 信号故障")

    await page.locator("#lang").click()
    await expect(row.locator("td.condition")).to_have_text("out of range")
    await expect(row.locator("td.value")).to_have_text("25 m signal fault")
    await expect(page.locator("#nav a.active")).to_have_text("Alarms")

    await page.locator("#logout").click()
    await expect(page.locator("#login")).to_be_visible()
    await expect(page.locator("#alarm-table")).to_have_count(0)
    await expect(page.locator("#login-error")).to_have_text("Signed out")
    # The browser reports the refused login (401) and /api/auth/me after sign-out as console
    # errors of failed loads; anything else would be a script error.
    assert [e for e in errors if "401" not in e] == []
