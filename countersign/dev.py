"""``countersign dev``: the whole service pair on one machine, in one command."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import asyncpg

from countersign.embedded import EmbeddedServers, resolve_servers
from countersign_core.migrations import migrate
from countersign_core.runtime import run
from countersign_core.settings import Settings
from countersign_domain.audit import cli_actor
from countersign_domain.errors import PetitionNotFound
from countersign_domain.identity_migration import data_steps
from countersign_domain.petitions import create_petition, managed_petition, update_petition

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


async def prepare(
    settings: Settings, host: str, demo_port: int
) -> tuple[str, str, EmbeddedServers | None]:
    database_url, redis_url, embedded = await resolve_servers(
        settings.database.url, settings.redis.url, settings.dev.data_dir
    )
    conn = await asyncpg.connect(database_url)
    try:
        secret_key = settings.secret_key or dev_secret_key(settings.dev.data_dir)
        await migrate(conn, data_steps=data_steps(secret_key))
        await seed_demo_petition(conn, demo_origins(host, demo_port))
    finally:
        await conn.close()
    return database_url, redis_url, embedded


def run_dev(settings: Settings, host: str, port: int, demo_port: int) -> int:
    settings.dev.data_dir.mkdir(parents=True, exist_ok=True)
    print("countersign: starting servers and applying migrations...", flush=True)
    database_url, redis_url, embedded = run(prepare(settings, host, demo_port))
    mail_dir, smtp_url = settings.dev.data_dir / "mail", None
    catcher: Controller | None = None
    if settings.mail.smtp is None:
        from countersign.mailcatcher import start_mail_catcher

        catcher, smtp_port = start_mail_catcher(mail_dir, lambda line: print(line, flush=True))
        smtp_url = f"smtp://127.0.0.1:{smtp_port}?starttls=false"
    base = f"http://{_reachable(host)}:{port}"
    resolved = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "COUNTERSIGN_SECRET_KEY": settings.secret_key or dev_secret_key(settings.dev.data_dir),
        "COUNTERSIGN_HOST": host,
        "COUNTERSIGN_PORT": str(port),
        "COUNTERSIGN_PUBLIC_URL": settings.mail.public_url or base,
        "COUNTERSIGN_MAIL_FROM": settings.mail.mail_from or "Countersign <countersign@localhost>",
        **({"SMTP_URL": smtp_url} if smtp_url else {}),
    }
    # What dev resolved replaces the variables it came from, `_FILE` ones included (the
    # children would refuse a variable given both ways).
    env = {
        **{k: v for k, v in os.environ.items() if k.removesuffix("_FILE") not in resolved},
        **resolved,
    }
    # Own sessions: Ctrl-C reaches this process only, which then stops the API first
    # (no new signatures), the mail sender (it finishes its message) and the worker last
    # (it finishes its batch); the partner page goes with them.
    children = [
        subprocess.Popen([sys.executable, "-m", module], env=env, start_new_session=True)
        for module in ("petition_api", "mail_sender", "counter_worker")
    ]
    # A partner's page on another origin, embedding the widget as partners do.
    children.append(
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "countersign.demo_partner",
                base,
                host,
                str(demo_port),
                DEMO_SLUG,
            ],
            env=env,
            start_new_session=True,
        )
    )
    stop_requested = False

    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        demo = f"http://{_reachable(host)}:{demo_port}"
        if all(_wait_ready(url, children, lambda: stop_requested) for url in (base, demo)):
            _print_banner(
                base,
                demo,
                settings.dev.data_dir if embedded else None,
                mail_dir if catcher else None,
            )
        while not stop_requested and all(child.poll() is None for child in children):
            time.sleep(0.2)
    finally:
        print("countersign: stopping...", flush=True)
        for child in children:
            _stop(child)
        if catcher is not None:
            catcher.stop()
        if embedded is not None:
            embedded.stop()
    if stop_requested:
        print("countersign: stopped.", flush=True)
        return 0
    print("countersign: a process exited unexpectedly; see the log above.", file=sys.stderr)
    return 1


def _wait_ready(
    base: str, children: list[subprocess.Popen[bytes]], stopping: object, timeout: float = 60
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(stopping) and stopping():
            return False
        if any(child.poll() is not None for child in children):
            return False
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=1) as response:  # noqa: S310
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def _reachable(host: str) -> str:
    """A host to put in links: a wildcard address is reachable on the loopback one."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host  # noqa: S104


def _print_banner(base: str, demo: str, data_dir: Path | None, mail_dir: Path | None) -> None:
    petition = f"{base}/v1/petitions/{DEMO_SLUG}"
    lines = [
        "",
        "countersign is running",
        f"  petition page {base}/petitions/{DEMO_SLUG}  (read, sign and share it)",
        f"  petitions     {base}/",
        f"  API           {base}",
        f"  petition JSON {petition}",
        f"  live counts   {petition}/counts",
        f"  partner page  {demo}/  (the widget, embedded from another origin)",
        f"  embed         {base}/embed/{DEMO_SLUG}",
        f"  sign          curl {petition}/signatures -H 'Content-Type: application/json'",
        """                  -d '{"name": "Your Name", "email": "you@example.org",""",
        """                       "country": "FR"}'""",
    ]
    if data_dir is not None:
        lines.append(f"  data          {data_dir.resolve()} (embedded Postgres and Redis)")
    if mail_dir is not None:
        lines += [
            f"  emails        caught locally and kept in {mail_dir.resolve()}",
            "                the confirmation links they carry are printed below",
        ]
    lines += ["Press Ctrl-C to stop.", ""]
    print("\n".join(lines), flush=True)


def _stop(child: subprocess.Popen[bytes], grace: float = 15) -> None:
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(grace)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
