"""``countersign dev`` serves a demo partner page on a second port (another origin)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from counter_worker.keys import KeyLayout
from tests.conftest import Servers
from tests.test_cli import COMMAND, SETTING_VARIABLES, _free_port


@dataclass(frozen=True)
class DevRun:
    api: str
    partner_page: str
    banner: str
    mail_dir: Path  # where dev's local SMTP catcher keeps the emails


@pytest.fixture
async def dev(
    tmp_path: Path, database_url: str, servers: Servers, layout: KeyLayout
) -> AsyncIterator[DevRun]:
    """``countersign dev`` running, on free ports, until the test ends."""
    port, demo_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if k not in SETTING_VARIABLES}
    env |= {
        "COUNTERSIGN_PORT": str(port),
        "COUNTERSIGN_DEMO_PORT": str(demo_port),
        "COUNTERSIGN_REDIS_PREFIX": layout.prefix,
    }
    if os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL"):
        env |= {"DATABASE_URL": database_url, "REDIS_URL": servers.redis}
    proc = await asyncio.create_subprocess_exec(
        *COMMAND, "dev", env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert proc.stdout is not None
    banner = ""
    try:
        while "Press Ctrl-C to stop." not in banner:
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=90)
            assert line, f"dev exited early:\n{banner}"
            banner += line.decode()
        found = re.search(r"partner page  (\S+)", banner)
        assert found, banner
        yield DevRun(
            f"http://127.0.0.1:{port}", found.group(1), banner, tmp_path / ".countersign" / "mail"
        )
    finally:
        proc.send_signal(signal.SIGINT)
        output, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert proc.returncode == 0, output.decode()


def fetch(
    url: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(url, headers=headers or {}, method=method)  # noqa: S310
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        return response.status, dict(response.headers), response.read().decode()


async def test_dev_serves_a_partner_page_on_another_origin(dev: DevRun) -> None:
    origin = dev.partner_page.rstrip("/")
    assert origin != dev.api
    assert f"embed         {dev.api}/embed/refer-syria-to-icc" in dev.banner

    status, _, page = await asyncio.to_thread(fetch, dev.partner_page)
    assert status == 200
    assert f'<script src="{dev.api}/widget.js" async></script>' in page
    assert '<div data-countersign-petition="refer-syria-to-icc" data-source="demo-partner">' in page

    # The demo petition lets that origin sign from the browser.
    status, headers, _ = await asyncio.to_thread(
        fetch,
        f"{dev.api}/v1/petitions/refer-syria-to-icc/signatures",
        {"Origin": origin, "Access-Control-Request-Method": "POST"},
        "OPTIONS",
    )
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == origin
