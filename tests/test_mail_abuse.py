"""Nobody can make the service flood an inbox: a suspect's confirmation email waits for
staff, and the mail senders keep under a per-address and a global ceiling. The held-back
emails show in the metrics."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
from prometheus_client import REGISTRY

from countersign_core.settings import Rate, Settings, load_settings
from countersign_core.texts import TextCatalog
from countersign_domain.moderation import invalidate_suspects, release_suspects
from mail_sender.main import build_sender
from mail_sender.sender import MailSender
from petition_api.app import create_app
from tests.support.factories import signer
from tests.support.http import AiohttpClient, Client
from tests.support.mail import SmtpSink, with_mail

SLUG = "free-the-detainees"
SIGN = f"/v1/petitions/{SLUG}/signatures"


SenderWith = Callable[..., MailSender]


@pytest.fixture
def sender_with(mail_settings: Settings, database_url: str, pool: asyncpg.Pool) -> SenderWith:
    """Mail senders with some mail settings changed."""

    def build(**mail: Any) -> MailSender:
        return build_sender(
            with_mail(mail_settings, **mail), database_url, pool, TextCatalog.load()
        )

    return build


def held_back(reason: str) -> float | None:
    return REGISTRY.get_sample_value("countersign_mail_held_back", {"reason": reason})


def recipients(sink: SmtpSink) -> list[str]:
    return [str(message["To"]) for message in sink.received]


async def test_suspects_get_no_email_until_staff_release_them(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    pool: asyncpg.Pool,
    sender: MailSender,
    smtp_sink: SmtpSink,
    confirming_petition_id: int,
) -> None:
    # One client address, three signatures a minute: the rest are suspects.
    limits = dataclasses.replace(settings.limits, allow=(), ip_burst=Rate(3, 60))
    client = await aiohttp_client(create_app(dataclasses.replace(settings, limits=limits)))
    for i in range(12):
        response = await client.post(SIGN, json=signer(email=f"target{i}@example.org"))
        assert response.status == 202
    await sender.drain()
    assert sorted(recipients(smtp_sink)) == [f"target{i}@example.org" for i in range(3)]
    await sender.measure_queue()
    assert held_back("suspect") == 9
    # Signing again does not get them an email either.
    again = await client.post(SIGN, json=signer(email="target5@example.org"))
    assert again.status == 202
    await sender.drain()
    assert len(smtp_sink.received) == 3

    suspects = await pool.fetch(
        "SELECT id, email FROM signatures WHERE suspect_reason IS NOT NULL ORDER BY id"
    )
    released, dropped = suspects[0], suspects[1]
    assert await release_suspects(pool, actor="test", ids=[released["id"]], slug=None) == [
        released["id"]
    ]
    assert await invalidate_suspects(
        pool, actor="test", ids=[dropped["id"]], slug=None, reason="bots"
    ) == [dropped["id"]]
    await sender.drain()
    assert recipients(smtp_sink)[3:] == [released["email"]]
    await sender.measure_queue()
    assert held_back("suspect") == 7


async def test_an_address_gets_no_more_emails_than_its_ceiling(
    client: Client,
    pool: asyncpg.Pool,
    sender_with: SenderWith,
    smtp_sink: SmtpSink,
    confirming_petition_id: int,
) -> None:
    # The victim's address signed on three petitions (by whoever): two emails a day.
    sender = sender_with(address_limit=Rate(2, 86400))
    for slug in ("second", "third"):
        await pool.execute(
            "INSERT INTO petitions (slug, title, status) VALUES ($1, $1, 'open')", slug
        )
    for slug in (SLUG, "second", "third"):
        path = f"/v1/petitions/{slug}/signatures"
        assert (await client.post(path, json=signer(email="Victim@Example.org"))).status == 202
    assert (await client.post(SIGN, json=signer(email="other@example.org"))).status == 202
    await sender.drain()
    assert sorted(recipients(smtp_sink)) == [
        "Victim@Example.org",
        "Victim@Example.org",
        "other@example.org",
    ]
    waiting = await pool.fetchrow(
        """SELECT last_error, next_attempt_at > now() + interval '23 hours' AS tomorrow
           FROM email_jobs WHERE sent_at IS NULL"""
    )
    assert (waiting["last_error"], waiting["tomorrow"]) == ("address_ceiling", True)
    await sender.measure_queue()
    assert held_back("address_ceiling") == 1


async def test_the_senders_keep_under_the_global_ceiling(
    client: Client,
    pool: asyncpg.Pool,
    sender_with: SenderWith,
    smtp_sink: SmtpSink,
    confirming_petition_id: int,
) -> None:
    first, second = (sender_with(global_limit=Rate(2, 3600)) for _ in range(2))
    for i in range(5):
        assert (await client.post(SIGN, json=signer(email=f"s{i}@example.org"))).status == 202
    await first.drain()
    await second.drain()
    assert len(smtp_sink.received) == 2
    await first.measure_queue()
    assert held_back("global_ceiling") == 3
    # The window slides: an hour later there is room again.
    await pool.execute("UPDATE email_jobs SET sent_at = sent_at - interval '61 minutes'")
    await second.drain()
    assert len(smtp_sink.received) == 4
    await second.measure_queue()
    assert held_back("global_ceiling") == 1


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("COUNTERSIGN_MAIL_LIMIT_ADDRESS", "off", None),
        ("COUNTERSIGN_MAIL_LIMIT_ADDRESS", "3/60", Rate(3, 60)),
        ("COUNTERSIGN_MAIL_LIMIT_GLOBAL", "100/1", Rate(100, 1)),
    ],
)
def test_the_ceilings_are_settings(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: Rate | None
) -> None:
    monkeypatch.setenv(name, value)
    mail = load_settings().mail
    found = mail.address_limit if name.endswith("ADDRESS") else mail.global_limit
    assert found == expected
