"""Shared fixtures of the console's browser tests: a demo server, Debian's Chromium, sign-in.

tests/conftest.py loads this module as a plugin, so a test names the fixtures as parameters:

    from tests.console_kit import Console, login, shot

- `console` (module): `anjian serve --demo` in a subprocess on a free port, with its own data
  dir and a fresh database on the test PostgreSQL server. `console.url`, `console.password(user)`,
  `console.totp(user)` (a fresh one-time code for the administrators), `console.api(user)` (a
  signed-in HTTP client: `.call(method, path, body)`), `console.scenario(name, target, **params)`
  (switches the demo plant as the system administrator, the role holding system:control).
  The server is shared by the console tests of one module: a test that starts a scenario ends
  it (`console.scenario("normal")`) and must not expect an empty alarm list.
- `console_browser` (module): Debian's chromium through Playwright's `executable_path`
  (never a downloaded browser build); skipped loudly when chromium is missing.
- `console_page` (function): a fresh browser context (no cookies) and page at 1600×900;
  `console_page.errors` collects script errors and console errors.
- `login(page, user, password=None)`: signs in through the form (with the TOTP step when the
  account needs one) and waits for the signed-in console.
- `shot(page, name, docs=False)`: saves tests/output/screenshots/<name>.png (every run) and returns
  its path; `docs=True` with ANJIAN_UPDATE_SCREENSHOTS=1 also refreshes docs/screenshots/<name>.png.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import http.cookiejar
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pyotp
import pytest
from playwright.sync_api import Browser, Locator, Page, sync_playwright

from tests.conftest import _drop_database, _fresh_database, free_port

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "tests" / "output"
SCREENSHOTS = OUTPUT / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
START_TIMEOUT_S = 120.0
# The server refuses more than 20 sign-in attempts a minute from one address (each form submit
# counts, the TOTP step's too): the kit paces its own, leaving room for the tests' own attempts,
# and waits out a refusal should the tests' attempts still reach the limit. A server counts in
# its own memory, so the kit paces each server apart: a new module's server starts at zero.
SIGN_INS_PER_MINUTE = 12
RATE_LIMIT_WAIT_S = 61.0
_sign_ins: dict[str, deque[float]] = {}  # per server URL
_CONSOLES: list[Console] = []  # the running servers, for login() to find the page's one


def _pace_sign_in(server_url: str) -> None:
    sign_ins = _sign_ins.setdefault(server_url, deque())
    while len(sign_ins) >= SIGN_INS_PER_MINUTE and time.monotonic() - sign_ins[0] < 61:
        time.sleep(61 - (time.monotonic() - sign_ins[0]))
        while sign_ins and time.monotonic() - sign_ins[0] >= 61:
            sign_ins.popleft()
    sign_ins.append(time.monotonic())


def _run(coro: Any) -> Any:
    """Runs a coroutine to completion from synchronous code (no loop may run in this thread)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


class ApiError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


class Api:
    """A signed-in HTTP client of the console's API (cookie session + CSRF header)."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.csrf: str | None = None

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """The parsed JSON answer; raises ApiError for a 4xx/5xx."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.csrf and method != "GET":
            request.add_header("X-CSRF-Token", self.csrf)
        try:
            with self.opener.open(request, timeout=30) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                answer = json.loads(raw)
            except ValueError:
                answer = raw.decode(errors="replace")
            raise ApiError(exc.code, answer) from None


@dataclass
class Console:
    """A running demo server and what its tests need to know about it."""

    url: str
    data_dir: Path
    log: Path
    process: subprocess.Popen[bytes]
    accounts: dict[str, tuple[str, str, str | None]]  # user → (role, password, TOTP secret)
    database: str  # the server's database (e.g. to age a session in an idle-timeout test)
    _last_step: dict[str, int] = field(default_factory=dict)
    _control: Api | None = None

    def password(self, user: str) -> str:
        return self.accounts[user][1]

    def needs_totp(self, user: str) -> bool:
        return self.accounts[user][2] is not None

    def totp(self, user: str) -> str:
        """A one-time code not used before: the server refuses a time step used once already,
        so a second sign-in within 30 s takes the next step's code (valid ±1 step)."""
        secret = self.accounts[user][2]
        if secret is None:
            raise ValueError(f"{user} has no second factor")
        totp = pyotp.TOTP(secret)
        step = max(int(time.time()) // totp.interval, self._last_step.get(user, -1) + 1)
        while step > int(time.time()) // totp.interval + 1:
            time.sleep(1)
        self._last_step[user] = step
        return totp.at(step * totp.interval)

    def api(self, user: str, password: str | None = None) -> Api:
        api = Api(self.url)
        body: dict[str, Any] = {"username": user, "password": password or self.password(user)}
        _pace_sign_in(self.url)  # first: a one-time code taken before a wait of a minute expires
        if self.needs_totp(user):
            body["totp"] = self.totp(user)
        try:
            answer = api.call("POST", "/api/auth/login", body)
        except ApiError as exc:
            if exc.status != 429:
                raise
            time.sleep(RATE_LIMIT_WAIT_S)
            if "totp" in body:
                body["totp"] = self.totp(user)
            answer = api.call("POST", "/api/auth/login", body)
        api.csrf = answer["csrf_token"]
        return api

    def scenario(self, name: str, target: str | None = None, **params: float) -> Any:
        """Switches the demo plant's scenario as the system administrator (system:control)."""
        if self._control is None:
            self._control = self.api("sysadmin")
        body = {"name": name, "target": target, "params": params}
        try:
            return self._control.call("POST", "/api/demo/scenario", body)
        except ApiError as exc:
            if exc.status != 401:
                raise
            self._control = self.api("sysadmin")  # the administrator's session idled out
            return self._control.call("POST", "/api/demo/scenario", body)

    def sql(self, query: str, *args: Any) -> str:
        """Runs one SQL statement on the server's database; returns its status (e.g. UPDATE 1)."""

        async def run() -> str:
            conn = await asyncpg.connect(self.database)
            try:
                return str(await conn.execute(query, *args))
            finally:
                await conn.close()

        return str(_run(run()))

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _read_accounts(file: Path) -> dict[str, tuple[str, str, str | None]]:
    accounts: dict[str, tuple[str, str, str | None]] = {}
    for line in file.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        user, role, password, *rest = line.split()
        secret = re.search(r"secret=([A-Z2-7]+)", rest[0]).group(1) if rest else None  # type: ignore[union-attr]
        accounts[user] = (role, password, secret)
    return accounts


def _anjian() -> list[str]:
    script = Path(sys.executable).parent / "anjian"
    return [str(script)] if script.exists() else [sys.executable, "-m", "anjian.cli"]


# Module scope: one demo server per test module, stopped at its end, so that one module's
# scenarios cannot colour another's enterprises and only one demo plant runs at a time.
@pytest.fixture(scope="module")
def console(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    if not (ROOT / "web" / "static" / "vendor" / "echarts").is_dir():
        pytest.fail(
            "web/static/vendor/ is missing: run `./run test` (or `npm ci && npm run vendor`)"
        )
    database = _run(_fresh_database(server_url))
    data_dir = tmp_path_factory.mktemp("console-demo")
    log = data_dir / "serve.log"
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*_anjian(), "serve", "--demo", "--data-dir", str(data_dir), "--host", "127.0.0.1",
             "--port", str(port), "--database-url", database],
            stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while "anjian console:" not in log.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"anjian serve --demo did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        accounts = _read_accounts(data_dir / "demo-accounts.txt")
        server = Console(f"http://127.0.0.1:{port}/", data_dir, log, process, accounts, database)
        _CONSOLES.append(server)
        yield server
        _CONSOLES.remove(server)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        _run(_drop_database(server_url, database))


# Module scope, not session: Playwright's synchronous API keeps an event loop running in this
# thread while it is open, and the async tests of other modules need the thread's loop free.
@pytest.fixture(scope="module")
def console_browser() -> Iterator[Browser]:
    if CHROMIUM is None:
        pytest.skip(
            "NO CHROMIUM on this machine: the console's browser tests are SKIPPED. `./run test` "
            "installs Debian's chromium when run as root; otherwise `apt-get install chromium`"
        )
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@contextlib.contextmanager
def open_page(browser: Browser, console: Console) -> Iterator[Page]:
    """A page of its own browser context (no cookies) on the console, 1600×900, zh-CN in
    Asia/Shanghai; `page.errors` collects script errors and console errors."""
    context = browser.new_context(
        viewport={"width": 1600, "height": 900}, locale="zh-CN", timezone_id="Asia/Shanghai"
    )
    try:
        page = context.new_page()
        errors: list[str] = []
        page.errors = errors  # type: ignore[attr-defined]
        page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(console.url)
        yield page
    finally:
        context.close()


@pytest.fixture
def console_page(console_browser: Browser, console: Console) -> Iterator[Page]:
    with open_page(console_browser, console) as page:
        yield page


def login(
    page: Page, user: str, password: str | None = None, console: Console | None = None
) -> None:
    """Signs in through the form; answers the TOTP step when the account has a second factor."""
    server = console or _find_console(page)
    if not page.url.startswith(server.url):
        page.goto(server.url)
    form = page.locator("#login")
    form.wait_for(state="visible")
    for attempt in range(2):
        _pace_sign_in(server.url)
        page.fill("#login input[name=username]", user)
        page.fill("#login input[name=password]", password or server.password(user))
        page.click("#login button[type=submit]")
        if server.needs_totp(user) and not _rate_limited(page):
            page.locator("#totp-row").wait_for(state="visible")
            _pace_sign_in(server.url)
            page.fill("#login input[name=totp]", server.totp(user))
            page.click("#login button[type=submit]")
        if attempt == 0 and _rate_limited(page):
            time.sleep(RATE_LIMIT_WAIT_S)  # the tests' own attempts reached the server's limit
            continue
        break
    page.wait_for_selector("body.signed-in", timeout=15_000)


def _rate_limited(page: Page) -> bool:
    """Whether the sign-in form shows the server's refusal for too many attempts."""
    page.wait_for_function(
        "() => document.body.classList.contains('signed-in')"
        " || !document.querySelector('#totp-row').hidden"
        " || document.querySelector('#login-error').textContent !== ''",
        timeout=15_000,
    )
    text = page.locator("#login-error").text_content() or ""
    return "频繁" in text or "Too many" in text


def _find_console(page: Page) -> Console:
    for c in _CONSOLES:
        if page.url.startswith(c.url):
            return c
    if len(_CONSOLES) == 1:
        return _CONSOLES[0]
    raise RuntimeError("login(): pass console= (the page is not on a known console server)")


def shot(page: Page, name: str, docs: bool = False) -> Path:
    """Saves a screenshot under tests/output/screenshots/ (every run) and returns its path.
    With `docs=True` and ANJIAN_UPDATE_SCREENSHOTS=1 it also replaces docs/screenshots/<name>.png
    (the README's pictures)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    if docs and os.environ.get("ANJIAN_UPDATE_SCREENSHOTS") == "1":
        (ROOT / "docs" / "screenshots").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, ROOT / "docs" / "screenshots" / f"{name}.png")
    return path


_TEXT_LINES = """(node) => {
  const range = document.createRange();
  range.selectNodeContents(node);
  return new Set([...range.getClientRects()].map((r) => Math.round(r.top))).size;
}"""


def text_lines(element: Locator) -> int:
    """How many lines the element's text takes on the screen."""
    return int(element.evaluate(_TEXT_LINES))
