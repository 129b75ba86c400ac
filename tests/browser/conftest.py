"""Browser fixtures: Debian's Chromium driven by Playwright, the API on one origin, partner
pages on others, and a real counter worker pushing changes.

Nothing is downloaded at test time: Playwright drives the system browser (``apt-get
install chromium``) and axe-core comes from ``npm ci`` in this folder. Where either is
missing the tests skip, except in CI (``CI=true``), where that is a failure.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import suppress
from pathlib import Path

import asyncpg
import pytest
from _pytest.terminal import TerminalReporter
from playwright.async_api import Browser, async_playwright

from counter_worker.worker import CounterWorker
from countersign_core.settings import Settings
from petition_api.app import create_app
from tests.support.http import AiohttpServer, Site, serve_site

BROWSER_DIR = Path(__file__).parent
ARTIFACTS = BROWSER_DIR.parent.parent / "test-artifacts" / "browser"
AXE = BROWSER_DIR / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM = Path(os.environ.get("COUNTERSIGN_CHROMIUM", "/usr/bin/chromium"))
# Without the background-networking flags Chromium keeps dialling Google services,
# which a closed network refuses (and which tests have no business doing anyway).
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require(path: Path, how: str) -> Path:
    if path.exists():
        return path
    message = f"{path} is missing: {how}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def chromium() -> Path:
    return require(CHROMIUM, "apt-get install chromium (or set COUNTERSIGN_CHROMIUM)")


@pytest.fixture(scope="session")
def axe_source() -> str:
    return require(AXE, f"run `npm ci` in {BROWSER_DIR}").read_text(encoding="utf-8")


@pytest.fixture
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def api(aiohttp_server: AiohttpServer, settings: Settings, petition_id: int) -> str:
    """The API on its own origin: ``http://127.0.0.1:<port>``."""
    server = await aiohttp_server(create_app(settings))
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
async def partner(aiohttp_server: AiohttpServer, pool: asyncpg.Pool, petition_id: int) -> Site:
    """A partner's site: another origin, which the petition allows."""
    site = await serve_site(aiohttp_server)
    await pool.execute("UPDATE petitions SET allowed_origins = $1", [site.origin])
    return site


@pytest.fixture
async def stranger(aiohttp_server: AiohttpServer) -> Site:
    """A site on an origin nobody allowed."""
    return await serve_site(aiohttp_server)


@pytest.fixture
async def running_worker(worker: CounterWorker) -> AsyncIterator[CounterWorker]:
    """The counter worker running for real (NOTIFY-driven), as in production."""
    stopping = asyncio.Event()
    task = asyncio.create_task(worker.run(stopping))
    yield worker
    stopping.set()
    with suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=30)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def pytest_terminal_summary(terminalreporter: TerminalReporter) -> None:
    if ARTIFACTS.is_dir() and any(ARTIFACTS.iterdir()):
        terminalreporter.write_line(f"browser screenshots: {ARTIFACTS}")
