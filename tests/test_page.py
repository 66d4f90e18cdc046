"""The live page in a real browser (Debian's Chromium driven by Playwright)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, async_playwright, expect
from pymodbus.client import AsyncModbusTcpClient

from tests.conftest import DUTY
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
        b = await pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield b
        await b.close()


async def test_page_lists_enterprises_and_updates_live_values(
    spine: Spine,  # noqa: F811
    browser: Browser,
) -> None:
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    await page.goto(str(spine.client.make_url("/")))

    # Nothing is shown before signing in; a wrong password is refused with a message.
    await expect(page.locator("#login")).to_be_visible()
    await page.fill("input[name=username]", DUTY[0])
    await page.fill("input[name=password]", "wrong-Password1")
    await page.click("#login button[type=submit]")
    await expect(page.locator("#login-error")).to_have_text("用户名或密码错误")
    await page.fill("input[name=password]", DUTY[1])
    await page.click("#login button[type=submit]")

    section = page.locator("section[data-enterprise=E9]")
    await expect(section.locator("h2")).to_have_text("测试化工有限公司 (E9)")
    level_id = spine.run.points.id("E9", "TK1.LT")
    level = page.locator(f"tr[data-point='{level_id}'] td.value")
    await expect(level).to_have_text("5.00")
    await expect(page.locator(f"tr[data-point='{level_id}'] td.quality")).to_have_text("正常")

    # A register written at the device shows on the open page without a reload.
    async with AsyncModbusTcpClient("127.0.0.1", port=spine.device.port) as plc:
        assert not (await plc.write_register(0, 777, device_id=1)).isError()
    await expect(level).to_have_text("7.77")

    await page.locator("#lang").click()
    await expect(page.locator("h1")).to_have_text("anjian · Major hazard live monitoring")
    await expect(page.locator(f"tr[data-point='{level_id}'] td.quality")).to_have_text("good")

    await page.locator("#logout").click()
    await expect(page.locator("#login")).to_be_visible()
    await expect(page.locator("section[data-enterprise=E9]")).to_have_count(0)
    # The browser reports the refused login (401) and /api/auth/me after sign-out as console
    # errors of failed loads; anything else would be a script error.
    assert [e for e in errors if "401" not in e] == []
