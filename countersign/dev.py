"""``countersign dev``: the whole service pair on one machine, in one command.

What it prints is for people: where everything is, commands that can be pasted as they
are, each confirmation link caught, warnings, and why it stopped. The processes' JSON logs
go to files under the data folder (``logs/``).

It binds the API's and the demo page's ports itself, before anything else, and hands the
sockets to the processes that serve them: a port in use is said at once, and no other
server answering on it can be taken for ours.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import asyncpg
import click

from countersign.embedded import EmbeddedServers, EmbeddedStartError, resolve_servers
from countersign_core.connections import backend_trouble
from countersign_core.migrations import MigrationError, migrate
from countersign_core.runtime import bound_socket, configure_logging, run
from countersign_core.settings import Settings
from countersign_domain.audit import cli_actor
from countersign_domain.confirmation_tokens import (
    ConfirmationTokens,
    TokenExpired,
    TokenInvalid,
)
from countersign_domain.errors import PetitionNotFound
from countersign_domain.identity_migration import data_steps
from countersign_domain.petitions import (
    create_petition,
    managed_petition,
    petition_by_id,
    update_petition,
)

if TYPE_CHECKING:
    from aiosmtpd.controller import Controller

DEMO_SLUG = "refer-syria-to-icc"
DEMO_TITLE = "Refer Syria to the International Criminal Court"
DEMO_TARGET = "The Government of the Russian Federation"
DEMO_TEXT = (
    "Hundreds of thousands of people have been killed in Syria, and the crimes committed "
    "against civilians there, by every side, have gone unpunished. The UN Security Council "
    "can refer the situation in Syria to the International Criminal Court, as it did for "
    "Darfur and Libya. A referral has been blocked by veto. We call on the Government of the "
    "Russian Federation to stop blocking it, and on every member of the Security Council to "
    "refer the situation in Syria to the International Criminal Court, so that those "
    "responsible for war crimes and crimes against humanity can be brought to justice."
)
DEMO_GOAL = 100_000

# Signing from this machine, again and again, is what trying it out looks like: the
# per-address limits would soon hold those signatures back as suspects.
LOOPBACK = ("127.0.0.0/8", "::1")
READY_TIMEOUT = 60.0
LOG_TAIL_LINES = 15


class DevStopped(Exception):
    """dev cannot go on; the message says why, in one line."""


def dev_secret_key(data_dir: Path) -> str:
    """A secret key kept in the data folder, so hashes stay stable across restarts."""
    path = data_dir / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def demo_origins(host: str, demo_port: int) -> list[str]:
    """The demo partner page's origin as a browser may spell it."""
    return sorted({f"http://{name}:{demo_port}" for name in (host, "127.0.0.1", "localhost")})


async def seed_demo_petition(conn: asyncpg.Connection, origins: list[str]) -> None:
    """The demo petition, created the first time, and the demo page's origins allowed
    (added to those it has: a port given another day stays allowed)."""
    try:
        petition = await managed_petition(conn, DEMO_SLUG)
    except PetitionNotFound:
        petition = await create_petition(
            conn,
            actor=cli_actor(),
            slug=DEMO_SLUG,
            title=DEMO_TITLE,
            body=DEMO_TEXT,
            target=DEMO_TARGET,
            goal=DEMO_GOAL,
            status="open",
            require_confirmation=True,
        )
    if missing := set(origins) - set(petition.allowed_origins):
        allowed = sorted({*petition.allowed_origins, *missing})
        await update_petition(
            conn, actor=cli_actor(), slug=DEMO_SLUG, changes={"allowed_origins": allowed}
        )


@dataclass
class Prepared:
    database_url: str
    redis_url: str
    embedded: EmbeddedServers | None
    applied: list[str]


async def prepare(settings: Settings, secret_key: str, origins: list[str]) -> Prepared:
    """The servers, migrated, with the demo petition; DevStopped, in words, if not."""
    try:
        database_url, redis_url, embedded = await resolve_servers(
            settings.database.url, settings.redis.url, settings.dev.data_dir
        )
    except EmbeddedStartError as exc:
        raise DevStopped(str(exc)) from None
    try:
        conn = await asyncpg.connect(database_url)
        try:
            applied = await migrate(conn, data_steps=data_steps(secret_key))
            await seed_demo_petition(conn, origins)
        finally:
            await conn.close()
    except MigrationError as exc:
        _stop_embedded(embedded)
        raise DevStopped(str(exc)) from None
    except Exception as exc:
        _stop_embedded(embedded)
        if (trouble := await backend_trouble(exc, database_url, redis_url)) is None:
            raise
        raise DevStopped(trouble) from None
    return Prepared(database_url, redis_url, embedded, applied)


def _stop_embedded(embedded: EmbeddedServers | None) -> None:
    if embedded is not None:
        embedded.stop()


@dataclass
class Child:
    """A process dev started, and how far its log has been read for warnings."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    read_to: int

    def relay_warnings(self) -> None:
        """Say each warning or error the process logged since last time, in one line."""
        with self.log_path.open("rb") as log:
            log.seek(self.read_to)
            complete = log.read().rpartition(b"\n")[0]
        if not complete:
            return
        self.read_to += len(complete) + 1
        for line in complete.decode(errors="replace").splitlines():
            record = _record(line)
            if record and record.get("level") in ("WARNING", "ERROR", "CRITICAL"):
                say(f"{self.name}: {readable(line)}")

    def report_exit(self) -> None:
        say(
            f"error: the {self.name} stopped (exit code {self.proc.returncode}); the end of "
            f"its log, {self.log_path}:",
            err=True,
        )
        lines = self.log_path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        click.echo("\n".join(f"    {readable(line)}" for line in lines), err=True)


def spawn(
    name: str, args: list[str], env: dict[str, str], logs: Path, sock: socket.socket | None = None
) -> Child:
    log_path = logs / f"{name.lower().replace(' ', '-')}.log"
    with log_path.open("ab") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [sys.executable, *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Own sessions: Ctrl-C reaches dev only, which stops them in order.
            start_new_session=True,
            pass_fds=(sock.fileno(),) if sock else (),
        )
        return Child(name, proc, log_path, read_to=log.tell())


def run_dev(settings: Settings, host: str, port: int, demo_port: int) -> int:
    another_dev = "(another `countersign dev`?)"
    api_socket = bound_socket(
        host, port, change=f"choose another with --port or COUNTERSIGN_PORT {another_dev}"
    )
    demo_socket = bound_socket(
        host,
        demo_port,
        change=f"choose another with --demo-port or COUNTERSIGN_DEMO_PORT {another_dev}",
    )
    if 0 in (port, demo_port):
        got = [bound.getsockname()[1] for bound in (api_socket, demo_socket)]
        say(f"port 0 asks for free ports: the API got {got[0]}, the partner page {got[1]}")
    logs = settings.dev.data_dir.absolute() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / "dev.log").open("a", encoding="utf-8") as dev_log:
        configure_logging(settings.log_level, dev_log)
        try:
            return _run(settings, host, api_socket, demo_socket, logs)
        except DevStopped as exc:
            say(f"error: {exc}", err=True)
            return 1


def _run(
    settings: Settings,
    host: str,
    api_socket: socket.socket,
    demo_socket: socket.socket,
    logs: Path,
) -> int:
    data_dir = logs.parent
    if settings.database.url and settings.redis.url:
        say("using the servers of DATABASE_URL and REDIS_URL; applying migrations...")
    else:
        say(f"starting embedded Postgres and Redis in {data_dir}; applying migrations...")
    secret_key = settings.secret_key or dev_secret_key(data_dir)
    port, demo_port = (bound.getsockname()[1] for bound in (api_socket, demo_socket))
    base, demo = (f"http://{_reachable(host)}:{number}" for number in (port, demo_port))
    prepared = run(prepare(settings, secret_key, demo_origins(host, demo_port)))
    if prepared.applied:
        say(f"applied {len(prepared.applied)} migration(s); the demo petition is ready")
    catcher: Controller | None = None
    resolved = {
        "DATABASE_URL": prepared.database_url,
        "REDIS_URL": prepared.redis_url,
        "COUNTERSIGN_SECRET_KEY": secret_key,
        "COUNTERSIGN_HOST": host,
        "COUNTERSIGN_PORT": str(port),
        "COUNTERSIGN_PUBLIC_URL": settings.mail.public_url or base,
        "COUNTERSIGN_MAIL_FROM": settings.mail.mail_from or "Countersign <countersign@localhost>",
        "COUNTERSIGN_RATE_LIMIT_ALLOW": ",".join(
            [*LOOPBACK, *(str(network) for network in settings.limits.allow)]
        ),
    }
    if settings.mail.smtp is None:
        from countersign.mailcatcher import start_mail_catcher

        announcer = LinkAnnouncer(prepared.database_url, secret_key, settings)
        catcher, smtp_port = start_mail_catcher(data_dir / "mail", announcer.announce)
        resolved["SMTP_URL"] = f"smtp://127.0.0.1:{smtp_port}?starttls=false"
    children = start_children(resolved, logs, base, api_socket, demo_socket)
    try:
        status = watch(children, base, demo, data_dir, prepared, catching=catcher is not None)
    finally:
        say("stopping...")
        for child in children:
            _stop(child.proc)
        if catcher is not None:
            catcher.stop()
        _stop_embedded(prepared.embedded)
    if status == 0:
        say("stopped.")
    return status


def start_children(
    resolved: dict[str, str],
    logs: Path,
    base: str,
    api_socket: socket.socket,
    demo_socket: socket.socket,
) -> list[Child]:
    """The API, the mail sender, the worker and the partner page, in the order they stop:
    the API first (no new signatures), the mail sender (it finishes its message), the
    worker last (it finishes its batch), the partner page with them."""
    # What dev resolved replaces the variables it came from, `_FILE` ones included (the
    # children would refuse a variable given both ways).
    env = {
        **{k: v for k, v in os.environ.items() if k.removesuffix("_FILE") not in resolved},
        **resolved,
    }
    api_fd, demo_fd = str(api_socket.fileno()), str(demo_socket.fileno())
    children = [
        spawn("API", ["-m", "countersign", "api", "--listen-fd", api_fd], env, logs, api_socket),
        spawn("mail sender", ["-m", "mail_sender"], env, logs),
        spawn("counter worker", ["-m", "counter_worker"], env, logs),
        # A partner's page on another origin, embedding the widget as partners do.
        spawn(
            "partner page",
            ["-m", "countersign.demo_partner", base, demo_fd, DEMO_SLUG],
            env,
            logs,
            demo_socket,
        ),
    ]
    api_socket.close()  # the children have theirs
    demo_socket.close()
    return children


def watch(
    children: list[Child],
    base: str,
    demo: str,
    data_dir: Path,
    prepared: Prepared,
    *,
    catching: bool,
) -> int:
    """Say when everything is ready, and what the processes warn of, until Ctrl-C (0), a
    process stopping or the API never ready (1)."""
    stop_requested = False

    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    deadline, ready = time.monotonic() + READY_TIMEOUT, False
    while not stop_requested:
        for child in children:
            child.relay_warnings()
        if exited := [child for child in children if child.proc.poll() is not None]:
            exited[0].report_exit()
            return 1
        if not ready and _ready(base) and _ready(demo):
            ready = True
            embedded = prepared.embedded is not None
            print_banner(base, demo, data_dir, embedded, catching=catching)
        elif not ready and time.monotonic() > deadline:
            say(
                f"error: the API did not become ready within {READY_TIMEOUT:.0f}s; "
                f"its log is {children[0].log_path}",
                err=True,
            )
            return 1
        time.sleep(0.2)
    return 0


def _ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/readyz", timeout=1) as response:  # noqa: S310
            return bool(response.status == 200)
    except OSError:
        return False


def _reachable(host: str) -> str:
    """A host to put in links: a wildcard address is reachable on the loopback one."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host  # noqa: S104


def say(line: str, *, err: bool = False) -> None:
    click.echo(f"countersign: {line}", err=err)


def _record(line: str) -> dict[str, object] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def readable(line: str) -> str:
    """A JSON log line as a person reads it; any other line as it is."""
    record = _record(line)
    if record is None or "message" not in record:
        return line
    level = str(record.get("level", "")).lower()
    return f"{level}: {record['message']} ({record.get('logger')})"


def countersign_command() -> list[str]:
    """How to run ``countersign`` from another terminal, as this one was run."""
    script = Path(sys.argv[0]).absolute()
    if script.name == "countersign" and script.is_file():
        on_path = shutil.which("countersign")
        return ["countersign"] if on_path and Path(on_path).absolute() == script else [str(script)]
    return [sys.executable, "-m", "countersign"]


def print_banner(base: str, demo: str, data_dir: Path, embedded: bool, *, catching: bool) -> None:
    petition = f"{base}/v1/petitions/{DEMO_SLUG}"
    rows = [
        ("petition page", f"{base}/petitions/{DEMO_SLUG}  (read, sign and share it)"),
        ("petitions", f"{base}/"),
        ("API", base),
        ("petition JSON", petition),
        ("live counts", f"{petition}/counts"),
        ("partner page", f"{demo}/  (the widget, embedded from another origin)"),
        ("embed", f"{base}/embed/{DEMO_SLUG}"),
        ("data", f"{data_dir}" + (" (embedded Postgres and Redis)" if embedded else "")),
        ("logs", f"{data_dir / 'logs'} (JSON lines, a file per process)"),
    ]
    if catching:
        rows.append(("emails", f"caught locally and kept in {data_dir / 'mail'}"))
    rows.append(("limits", "loopback (127.0.0.1, ::1) is exempt from the per-address limits"))
    sign = shlex.join(["curl", f"{petition}/signatures", "-H", "Content-Type: application/json"])
    body = json.dumps({"name": "Your Name", "email": "you@example.org", "country": "FR"})
    lines = [
        "",
        click.style("countersign is running", bold=True),
        *(f"  {label:<14}{value}" for label, value in rows),
        "",
        "Sign the demo petition from a terminal"
        + (" (its confirmation link is printed below):" if catching else ":"),
        "",
        f"{sign} \\",
        f"  -d {shlex.quote(body)}",
    ]
    if embedded:
        # The assignment unquoted (a quoted one is no assignment), its value quoted.
        show = f"COUNTERSIGN_DATA_DIR={shlex.quote(str(data_dir))} " + shlex.join(
            [*countersign_command(), "petition", "show", DEMO_SLUG]
        )
        lines += ["", "Staff commands work from another terminal, e.g.:", "", show]
    lines += ["", "Press Ctrl-C to stop.", ""]
    click.echo("\n".join(lines))


class LinkAnnouncer:
    """Says each confirmation link caught, with the petition it confirms a signature of."""

    def __init__(self, database_url: str, secret_key: str, settings: Settings) -> None:
        self._database_url = database_url
        days = settings.confirmation.link_days
        self._tokens = ConfirmationTokens(secret_key, max_age_days=days)

    async def announce(self, link: str, email: Path) -> None:
        petition = await self._petition_of(link)
        click.echo(
            "\n".join(
                [
                    "",
                    click.style(f"==> confirmation email for {petition}", bold=True),
                    "    open this link and press the button to confirm the signature:",
                    f"    {link}",
                    f"    (the email is kept as {email})",
                    "",
                ]
            )
        )

    async def _petition_of(self, link: str) -> str:
        try:
            ref = self._tokens.read(link.rpartition("/")[2])
        except (TokenInvalid, TokenExpired):
            return "a petition of another server"
        conn = await asyncpg.connect(self._database_url)
        try:
            petition = await petition_by_id(conn, ref.petition_id)
        finally:
            await conn.close()
        return f'"{petition.title}" ({petition.slug})' if petition else "a deleted petition"


def _stop(child: subprocess.Popen[bytes], grace: float = 15) -> None:
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(grace)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
