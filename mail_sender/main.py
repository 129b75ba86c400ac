"""The mail sender process: ``countersign mailer`` or ``python -m mail_sender``."""

from __future__ import annotations

import logging

import asyncpg

from countersign_core.connections import create_pg_pool
from countersign_core.metrics import serve_metrics
from countersign_core.runtime import configure_logging, fail, run_or_explain, run_until_signalled
from countersign_core.settings import Settings, SettingsError, load_settings
from countersign_core.texts import TextCatalog, TextsError
from countersign_domain.confirmation_tokens import ConfirmationTokens
from mail_sender.messages import Composer
from mail_sender.sender import MailSender

log = logging.getLogger("mail_sender")


def build_sender(
    settings: Settings, direct_url: str, pool: asyncpg.Pool, catalog: TextCatalog
) -> MailSender:
    """``direct_url``: a connection that is not pooled, for LISTEN."""
    delivery = settings.mail.require()
    link_days = settings.confirmation.link_days
    secret_key = settings.require_secret_key()
    tokens = ConfirmationTokens(secret_key, max_age_days=link_days)
    composer = Composer(
        catalog,
        tokens,
        delivery,
        settings.privacy,
        link_days=link_days,
        console_catalog=TextCatalog.load(settings.texts_dir, part="console"),
        secret_key=secret_key,
        sign_in_minutes=settings.console.link_minutes,
    )
    return MailSender(
        direct_url,
        pool,
        composer,
        delivery,
        settings.mail,
        purge_days=settings.confirmation.pending_purge_days,
        heartbeat_interval=settings.heartbeat_interval,
    )


async def serve(settings: Settings, database_url: str, catalog: TextCatalog) -> None:
    pool = await create_pg_pool(
        database_url,
        max_size=settings.mail.connections + 2,
        application_name="mail_sender",
        transaction_pooler=settings.database.transaction_pooler,
    )
    try:
        sender = build_sender(settings, settings.database.session_url(), pool, catalog)
        async with sender.heartbeat.watching_the_loop():
            if settings.metrics.mail_port:
                serve_metrics(
                    settings.metrics.host, settings.metrics.mail_port, probes=sender.heartbeat
                )
            await run_until_signalled(
                sender.run, grace=settings.mail.shutdown_grace, log=log, in_hand="message"
            )
    finally:
        await pool.close()


def main() -> None:
    try:
        settings = load_settings()
        database_url = settings.database.url
        if not database_url:
            raise SettingsError("DATABASE_URL must be set (or use `countersign dev`)")
        settings.database.session_url()
        settings.mail.require()
        settings.require_secret_key()
        catalog = TextCatalog.load(settings.texts_dir)
    except (SettingsError, TextsError) as exc:
        fail(str(exc))
    configure_logging(settings.log_level)
    run_or_explain(serve(settings, database_url, catalog), database_url)
