"""``countersign dev`` as a new operator runs it: real processes, real ports, what it prints."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from counter_worker.keys import KeyLayout
from countersign.dev import DEMO_SLUG, DEMO_TITLE, Child
from tests.support.mail import confirmation_link, parse
from tests.support.processes import (
    COMMAND,
    DevRun,
    countersign,
    dev_environment,
    running_dev,
    spawn_dev,
)
from tests.support.servers import Servers, free_port
from tests.support.waiting import eventually


def _http(
    method: str, url: str, body: dict[str, str] | None = None
) -> tuple[int, dict[str, object]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(  # noqa: S310  (a loopback http URL)
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _page(method: str, url: str) -> tuple[int, str]:
    request = urllib.request.Request(url, method=method)  # noqa: S310  (a loopback http URL)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.fixture
def dev_env(database_url: str, servers: Servers, layout: KeyLayout) -> dict[str, str]:
    """The settings ``dev`` gets: the test's servers when configured, else embedded ones."""
    env = {"COUNTERSIGN_REDIS_PREFIX": layout.prefix}
    if os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL"):
        env |= {"DATABASE_URL": database_url, "REDIS_URL": servers.redis}
    return env


def _start_dev(folder: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``countersign dev`` expected to refuse at once (killed after 30 s otherwise)."""
    folder.mkdir(exist_ok=True)
    return subprocess.run(
        [*COMMAND, "dev"],
        env=dev_environment(env),
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _assert_refused_at_once(
    result: subprocess.CompletedProcess[str], seconds: float, port: int, option: str
) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert seconds < 5
    assert result.stderr == (
        f"countersign: error: port {port} of 127.0.0.1 is in use: stop what uses it, or "
        f"choose another with {option} (another `countersign dev`?)\n"
    )
    assert "countersign is running" not in result.stdout


@pytest.mark.parametrize(
    ("variable", "option"),
    [
        ("COUNTERSIGN_PORT", "--port or COUNTERSIGN_PORT"),
        ("COUNTERSIGN_DEMO_PORT", "--demo-port or COUNTERSIGN_DEMO_PORT"),
    ],
)
def test_a_port_held_by_another_program_is_said_at_once(
    tmp_path: Path, dev_env: dict[str, str], held_port: int, variable: str, option: str
) -> None:
    # Such a port made dev hang, silently, in 5 runs of 11.
    started = time.monotonic()
    env = {**dev_env, "COUNTERSIGN_PORT": str(free_port()), variable: str(held_port)}
    result = _start_dev(tmp_path / "here", env)
    _assert_refused_at_once(result, time.monotonic() - started, held_port, option)
    assert os.listdir(tmp_path / "here") == []  # it created nothing


async def test_a_second_dev_on_the_same_ports_is_refused_and_the_first_goes_on(
    tmp_path: Path, dev_env: dict[str, str], dev: DevRun
) -> None:
    # A second dev printed the banner, answered by the first one's /readyz.
    port = int(dev.api.rpartition(":")[2])
    demo_port = int(dev.partner_page.rstrip("/").rpartition(":")[2])
    for variable, taken, option in (
        ("COUNTERSIGN_PORT", port, "--port or COUNTERSIGN_PORT"),
        ("COUNTERSIGN_DEMO_PORT", demo_port, "--demo-port or COUNTERSIGN_DEMO_PORT"),
    ):
        started = time.monotonic()
        env = {**dev_env, "COUNTERSIGN_PORT": str(free_port()), variable: str(taken)}
        result = await asyncio.to_thread(_start_dev, tmp_path / "second", env)
        _assert_refused_at_once(result, time.monotonic() - started, taken, option)
    assert (await asyncio.to_thread(_http, "GET", f"{dev.api}/readyz"))[0] == 200


async def test_port_0_takes_free_ports_and_says_which(
    tmp_path: Path, dev_env: dict[str, str]
) -> None:
    env = {**dev_env, "COUNTERSIGN_PORT": "0"}  # the demo page's follows
    async with running_dev(tmp_path, env) as dev:
        said = re.search(r"the API got (\d+), the partner page (\d+)", dev.banner)
        assert said, dev.banner
        assert dev.api == f"http://127.0.0.1:{said[1]}"
        assert dev.partner_page == f"http://127.0.0.1:{said[2]}/"
        assert (await asyncio.to_thread(_http, "GET", f"{dev.api}/readyz"))[0] == 200
        assert (await asyncio.to_thread(_page, "GET", dev.partner_page))[0] == 200


def _command_after(text: str, heading: str) -> str:
    """The command printed after ``heading`` (a blank line between): its lines up to one
    that does not end with a backslash."""
    lines = text.split(heading, 1)[1].splitlines()[2:]
    command = []
    for line in lines:
        command.append(line)
        if not line.endswith("\\"):
            return "\n".join(command)
    raise AssertionError(f"no command after {heading!r}")


def _run_pasted(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """A command as a person pastes it into a shell."""
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


async def test_dev_speaks_to_people_and_keeps_its_json_logs_in_files(
    tmp_path: Path, dev_env: dict[str, str], dev: DevRun
) -> None:
    assert not any(line.startswith("{") for line in dev.banner.splitlines())
    assert "  limits        loopback (127.0.0.1, ::1) is exempt" in dev.banner
    logs = dev.data_dir / "logs"
    assert f"  logs          {logs} (JSON lines" in dev.banner
    api_log = [json.loads(line) for line in (logs / "api.log").read_text().splitlines()]
    assert any(entry["message"].startswith("listening on http://") for entry in api_log)
    assert sorted(path.name for path in logs.iterdir()) == [
        "api.log",
        "counter-worker.log",
        "dev.log",
        "mail-sender.log",
        "partner-page.log",
    ]

    # The signing command, pasted as printed, works.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    signed = await asyncio.to_thread(
        _run_pasted, _command_after(dev.banner, "Sign the demo petition"), elsewhere
    )
    assert json.loads(signed.stdout) == {"status": "pending_confirmation"}, signed.stderr

    # Its confirmation link stands out, with the petition it confirms a signature of.
    caught = await dev.read_until("(the email is kept as")
    block = caught[caught.index("==> ") :].splitlines()
    assert block[0] == f'==> confirmation email for "{DEMO_TITLE}" ({DEMO_SLUG})'
    link = block[2].strip()
    assert link.startswith(f"{dev.api}/confirm/")
    email = Path(block[3].strip().removeprefix("(the email is kept as ").removesuffix(")"))
    assert confirmation_link(parse(await asyncio.to_thread(email.read_bytes))) == link
    assert "you@example.org" not in caught

    # Signing again and again from this machine is not held back by the per-address
    # limits (10 a minute by default).
    petition = f"{dev.api}/v1/petitions/{DEMO_SLUG}"
    for n in range(12):
        signer = {"name": "Amal Haddad", "email": f"amal{n}@example.org", "country": "SY"}
        assert (await asyncio.to_thread(_http, "POST", f"{petition}/signatures", signer))[0] == 202
    staff_env = {**dev_env, "COUNTERSIGN_DATA_DIR": str(dev.data_dir)}
    listed = await asyncio.to_thread(
        countersign, "suspects", "list", "--petition", DEMO_SLUG, env=staff_env
    )
    assert listed.stderr == "0 suspect(s) awaiting review\n"

    if "DATABASE_URL" in dev_env:
        # dev cannot know that another terminal has the same variables: it promises nothing.
        assert "Staff commands" not in dev.banner
    else:
        shown = await asyncio.to_thread(
            _run_pasted, _command_after(dev.banner, "Staff commands"), elsewhere
        )
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.startswith(f"slug          {DEMO_SLUG}\n")


async def test_dev_says_which_process_died_and_stops_the_rest(
    tmp_path: Path, dev_env: dict[str, str]
) -> None:
    proc = await spawn_dev(tmp_path, dev_env, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stderr is not None
    try:
        while b"Press Ctrl-C to stop." not in await asyncio.wait_for(proc.stdout.readline(), 90):
            pass
        children = psutil.Process(proc.pid).children()
        [worker] = [c for c in children if "counter_worker" in c.cmdline()]
        worker.send_signal(signal.SIGKILL)
        said = (await asyncio.wait_for(proc.stderr.read(), 60)).decode()
        assert await asyncio.wait_for(proc.wait(), 30) == 1
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    log = tmp_path / ".countersign" / "logs" / "counter-worker.log"
    assert said.startswith(
        f"countersign: error: the counter worker stopped (exit code -9); the end of its log, "
        f"{log}:\n    "
    )
    assert "\n    info: worker " in said
    assert not any(child.is_running() for child in children if child.pid != worker.pid)


async def test_dev_runs_the_pair_and_keeps_data_across_a_restart(
    tmp_path: Path, dev_env: dict[str, str], database_url: str
) -> None:
    env = dict(dev_env)
    if "DATABASE_URL" in env:
        # From a file: dev hands its children the URL it read, and not the file as well.
        (tmp_path / "database_url").write_text(database_url + "\n", encoding="utf-8")
        env["DATABASE_URL_FILE"] = str(tmp_path / "database_url")
        del env["DATABASE_URL"]
    port = free_port()
    env |= {"COUNTERSIGN_PORT": str(port), "COUNTERSIGN_DEMO_PORT": str(free_port())}
    base = f"http://127.0.0.1:{port}/v1/petitions/{DEMO_SLUG}"

    async def total_is(expected: int) -> bool:
        status, body = await asyncio.to_thread(_http, "GET", f"{base}/counts")
        return status == 200 and body["total"] == expected

    async with running_dev(tmp_path, env) as first:
        assert f"live counts   {base}/counts" in first.banner
        assert "emails        caught locally" in first.banner
        status, petition = await asyncio.to_thread(_http, "GET", base)
        assert status == 200
        assert petition["goal"] == 100000
        assert "Russian" in str(petition["target"])
        signer = {"name": "Amal Haddad", "email": "amal@example.org", "country": "SY"}
        signed = await asyncio.to_thread(_http, "POST", f"{base}/signatures", signer)
        assert signed == (202, {"status": "pending_confirmation"})  # the demo asks to confirm
        caught = await first.read_until("(the email is kept as")
        assert "amal" not in caught  # no address in the output
        [link] = re.findall(r"(http://\S+/confirm/\S+)", caught)
        assert link.startswith(f"http://127.0.0.1:{port}/confirm/")
        assert (await asyncio.to_thread(_page, "GET", link))[0] == 200
        status, page = await asyncio.to_thread(_page, "POST", link)
        assert (status, "your signature is confirmed" in page) == (200, True)
        await eventually(lambda: total_is(1))
    # The access log shows the GET and the POST by route, not the token: it confirms a
    # signature, whoever holds it.
    api_log = (tmp_path / ".countersign" / "logs" / "api.log").read_text()
    access = [
        entry
        for entry in map(json.loads, api_log.splitlines())
        if entry.get("logger") == "petition_api.access"
    ]
    confirmations = [
        entry["status"]
        for entry in access
        if entry.get("method") == "POST" and entry.get("route") == "/confirm/{token}"
    ]
    assert confirmations == [200]
    assert link.rsplit("/", 1)[1] not in api_log
    if "DATABASE_URL_FILE" not in env:
        assert (tmp_path / ".countersign" / "postgres").is_dir()

    async with running_dev(tmp_path, env):
        await eventually(lambda: total_is(1))


def test_warnings_in_a_process_log_are_said_in_one_readable_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "counter-worker.log"
    entry = {"level": "WARNING", "logger": "counter_worker", "message": "back end unavailable"}
    log.write_text(json.dumps({**entry, "level": "INFO", "message": "started"}) + "\n")
    child = Child("counter worker", subprocess.Popen(["true"]), log, read_to=0)
    child.proc.wait()
    with log.open("a") as more:
        more.write(json.dumps(entry) + "\n")
        more.write('{"level": "ERROR", "logger": "counter_worker", "mess')  # being written
    child.relay_warnings()
    child.relay_warnings()  # said once
    assert capsys.readouterr().out == (
        "countersign: counter worker: warning: back end unavailable (counter_worker)\n"
    )


def test_dev_with_a_database_out_of_reach_says_so(tmp_path: Path, servers: Servers) -> None:
    port = free_port()
    env = {"DATABASE_URL": f"postgresql://postgres@127.0.0.1:{port}/x", "REDIS_URL": servers.redis}
    result = _start_dev(tmp_path / "here", env)
    assert result.returncode == 1
    assert result.stderr == (
        f"countersign: error: cannot connect to the database at 127.0.0.1:{port}: "
        "connection refused (is it running?)\n"
    )
