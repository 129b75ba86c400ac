"""The mail sender process: ``countersign mailer`` or ``python -m mail_sender``."""

from __future__ import annotations

import logging

import asyncpg

from countersign_core.connections import create_pg_pool
from countersign_core.metrics import serve_metrics
from countersign_core.runtime import configure_logging, fail, run, run_until_signalled
from countersign_core.settings import Settings, SettingsError, load_settings
from countersign_core.texts import TextCatalog, TextsError
from countersign_domain.confirmation_tokens import ConfirmationTokens
from mail_sender.messages import Composer, message_domain
from mail_sender.sender import MailSender

log = logging.getLogger("mail_sender")


def build_sender(
    settings: Settings, database_url: str, pool: asyncpg.Pool, catalog: TextCatalog
) -> MailSender:
    smtp, mail_from, public_url = settings.require_mail()
    tokens = ConfirmationTokens(
        settings.require_secret_key(), max_age_days=settings.confirmation_link_days
    )
    composer = Composer(
        catalog,
        tokens,
        public_url=public_url,
        mail_from=mail_from,
        link_days=settings.confirmation_link_days,
    )
    return MailSender(
        database_url,
        pool,
        smtp,
        composer,
        message_domain=message_domain(mail_from),
        connections=settings.mail_connections,
        batch_size=settings.mail_batch_size,
        lease_seconds=settings.mail_lease_seconds,
        retry_base=settings.mail_retry_base,
        max_attempts=settings.mail_max_attempts,
        poll_interval=settings.mail_poll_interval,
        purge_days=settings.pending_purge_days,
        heartbeat_interval=settings.heartbeat_interval,
    )


async def serve(settings: Settings, database_url: str, catalog: TextCatalog) -> None:
    pool = await create_pg_pool(
        database_url, max_size=settings.mail_connections + 2, application_name="mail_sender"
    )
    try:
        sender = build_sender(settings, database_url, pool, catalog)
        async with sender.heartbeat.watching_the_loop():
            if settings.mail_metrics_port:
                serve_metrics(
                    settings.metrics_host, settings.mail_metrics_port, probes=sender.heartbeat
                )
            await run_until_signalled(
                sender.run, grace=settings.worker_shutdown_grace, log=log, in_hand="message"
            )
    finally:
        await pool.close()


def main() -> None:
    try:
        settings = load_settings()
        if not settings.database_url:
            raise SettingsError("DATABASE_URL must be set (or use `countersign dev`)")
        settings.require_mail()
        settings.require_secret_key()
        catalog = TextCatalog.load(settings.texts_dir)
    except (SettingsError, TextsError) as exc:
        fail(str(exc))
    configure_logging(settings.log_level)
    run(serve(settings, settings.database_url, catalog))
