"""Real processes, as a user starts them: the API, the counter worker and the mail sender,
``countersign`` commands, ``countersign dev``.

Each service process leads its own process group, so that a signal for the group reaches
its children too (``countersign api --workers N`` serves from N children).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiohttp
import psutil

from tests.support.servers import free_port
from tests.support.waiting import eventually

COMMAND = [sys.executable, "-m", "countersign"]
# Settings a test passes explicitly: the caller's own values must not leak in.
SETTING_VARIABLES = (
    "DATABASE_URL",
    "DATABASE_DIRECT_URL",
    "REDIS_URL",
    "COUNTERSIGN_SECRET_KEY",
    "SMTP_URL",
)


def _launch(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log_file:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, *args],
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@dataclass
class ServiceProcess:
    """A real service process (``python ARGS``), for tests and benches that stop, freeze,
    kill and restart it."""

    args: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def check_alive(self) -> None:
        """Fail at once, with the end of its log, if the process has exited."""
        if not self.running:
            tail = "\n".join(self.log().splitlines()[-40:])
            raise AssertionError(
                f"{' '.join(self.args)} exited with code {self.proc.returncode}:\n{tail}"
            )

    def is_stopped(self) -> bool:
        try:
            return bool(psutil.Process(self.pid).status() == psutil.STATUS_STOPPED)
        except psutil.NoSuchProcess:
            return False

    async def wait_stopped(self, timeout: float = 20) -> None:
        """Until the process has stopped itself (SIGSTOP, a test hook)."""

        async def stopped() -> bool:
            self.check_alive()
            return self.is_stopped()

        await eventually(stopped, timeout=timeout)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL the process and whatever it started: no clean-up of any kind."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, grace: float = 20) -> None:
        """SIGTERM, then SIGKILL for whatever is left after ``grace`` seconds (of the group
        too: a child whose parent died)."""
        if self.running:
            self.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=grace)
        self.kill()

    def restart(self) -> None:
        """Start the same command again (after ``kill`` or ``stop``)."""
        self.proc = _launch(self.args, self.env, self.log_path)


@dataclass
class ApiProcess(ServiceProcess):
    """A real ``countersign api`` process (with its per-core children, if any)."""

    url: str

    async def wait_ready(self, timeout: float = 60) -> None:
        async def ready() -> bool:
            self.check_alive()
            try:
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(f"{self.url}/readyz") as response,
                ):
                    return response.status == 200
            except aiohttp.ClientError:
                return False

        await eventually(ready, timeout=timeout, interval=0.1)


def spawn_service(args: list[str], env: dict[str, str], log_path: Path) -> ServiceProcess:
    """``python ARGS``, its output appended to ``log_path``."""
    return ServiceProcess(args, env, log_path, _launch(args, env, log_path))


def spawn_worker(
    env: dict[str, str], log_path: Path, *, module: str = "counter_worker", **overrides: str
) -> ServiceProcess:
    """A real worker process: the counter worker, or another (``module="mail_sender"``)."""
    return spawn_service(["-m", module], {**env, **overrides}, log_path)


def spawn_api(env: dict[str, str], log_path: Path, port: int, *args: str) -> ApiProcess:
    """``countersign api --port PORT ARGS`` (not yet ready: see ``wait_ready``)."""
    command = ["-m", "countersign", "api", "--port", str(port), *args]
    return ApiProcess(
        command, env, log_path, _launch(command, env, log_path), f"http://127.0.0.1:{port}"
    )


class SpawnWorker(Protocol):
    def __call__(self, *, stop_at: str | None = None, **overrides: str) -> ServiceProcess: ...


class SpawnApi(Protocol):
    async def __call__(self, *args: str, **overrides: str) -> ApiProcess: ...


# -- the countersign command ----------------------------------------------------------------


def countersign(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``countersign ARGS`` as a user runs it, with only the settings given in ``env``."""
    clean = {k: v for k, v in os.environ.items() if k not in SETTING_VARIABLES}
    return subprocess.run(
        [*COMMAND, *args],
        env={**clean, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def countersign_on_a_terminal(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> tuple[int, str]:
    """``countersign ARGS`` with its stderr on a terminal (a pseudo-terminal), as a person
    sees progress bars; returns the exit code and what the terminal showed."""
    clean = {k: v for k, v in os.environ.items() if k not in SETTING_VARIABLES}
    terminal, end = pty.openpty()
    proc = subprocess.Popen(
        [*COMMAND, *args],
        env={**clean, **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=end,
    )
    os.close(end)
    shown = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not select.select([terminal], [], [], 1)[0]:
                continue
            try:
                chunk = os.read(terminal, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        return proc.wait(timeout=10), shown.decode(errors="replace")
    finally:
        os.close(terminal)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@dataclass
class DevRun:
    api: str
    partner_page: str
    banner: str
    folder: Path  # where it runs; its data folder is ``.countersign`` there
    proc: asyncio.subprocess.Process

    @property
    def data_dir(self) -> Path:
        return self.folder / ".countersign"

    @property
    def mail_dir(self) -> Path:
        """Where dev's local SMTP catcher keeps the emails."""
        return self.data_dir / "mail"

    async def read_until(self, marker: str, timeout: float = 30) -> str:
        """What dev prints next, up to the line holding ``marker`` (included)."""
        assert self.proc.stdout is not None
        seen = ""
        while True:
            line = (await asyncio.wait_for(self.proc.stdout.readline(), timeout=timeout)).decode()
            assert line, f"dev exited:\n{seen}"
            seen += line
            if marker in line:
                return seen


def dev_environment(env: dict[str, str]) -> dict[str, str]:
    """The environment of ``countersign dev``, with only the settings in ``env``, on free
    ports unless ``env`` names the API's (the demo page's then follows from it)."""
    clean = {k: v for k, v in os.environ.items() if k not in SETTING_VARIABLES}
    ports = {"COUNTERSIGN_PORT": str(free_port()), "COUNTERSIGN_DEMO_PORT": str(free_port())}
    return {**clean, **({} if "COUNTERSIGN_PORT" in env else ports), **env}


async def spawn_dev(
    folder: Path, env: dict[str, str], *, stderr: int = subprocess.STDOUT
) -> asyncio.subprocess.Process:
    """``countersign dev`` in ``folder`` (see ``dev_environment``), its output piped
    (stderr with it, unless told)."""
    return await asyncio.create_subprocess_exec(
        *COMMAND,
        "dev",
        env=dev_environment(env),
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=stderr,
    )


@asynccontextmanager
async def running_dev(folder: Path, env: dict[str, str]) -> AsyncIterator[DevRun]:
    """``countersign dev`` in ``folder``, on free ports (unless ``env`` names them), with
    only the settings in ``env``; stopped with Ctrl-C (SIGINT) at the end, which must
    exit 0."""
    proc = await spawn_dev(folder, env)
    assert proc.stdout is not None
    banner = ""
    try:
        while "Press Ctrl-C to stop." not in banner:
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=90)
            assert line, f"dev exited early:\n{banner}"
            banner += line.decode()
        api, partner_page = (
            re.search(rf"^  {label} +(\S+)", banner, re.MULTILINE)
            for label in ("API", "partner page")
        )
        assert api, banner
        assert partner_page, banner
        yield DevRun(api.group(1), partner_page.group(1), banner, folder, proc)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        output, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert proc.returncode == 0, output.decode()
