"""A partner cannot learn whether an address had signed.

The attack: on a petition that requires confirmation, a partner signs a victim's
address (with its key, or through its widget's source code) and watches everything it
can read: the answer, /v1/partner/validations, /v1/partner/counts, /counts. Each must
move alike whether the victim had not signed, had signed pending, or had confirmed.
The partner's figures follow its own submissions, each confirmed by its own email.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from counter_worker.worker import CounterWorker
from countersign_domain.partners import create_partner, grant_petition
from mail_sender.sender import MailSender
from tests.support.factories import signer
from tests.support.http import Client, bearer
from tests.support.mail import SmtpSink, confirmation_link

SLUG = "free-the-detainees"
SIGN = f"/v1/petitions/{SLUG}/signatures"
VICTIM = "victim@example.org"
HISTORIES = ("never", "pending", "confirmed")


@pytest.fixture
async def partner_key(pool: asyncpg.Pool, confirming_petition_id: int) -> str:
    _, key = await create_partner(pool, actor="test", name="Daily", source_code="daily", origins=[])
    await grant_petition(pool, actor="tests", source_code="daily", slug=SLUG)
    return key


async def emailed_paths(sender: MailSender, sink: SmtpSink, address: str) -> list[str]:
    """Deliver what is due; the paths of the links every email to ``address`` carried."""
    await sender.drain()
    return [
        urlsplit(confirmation_link(message)).path
        for message in sink.received
        if message["To"] == address
    ]


async def give_history(history: str, client: Client, sender: MailSender, sink: SmtpSink) -> None:
    """The victim's own past: never signed, signed and left it pending, or confirmed."""
    if history == "never":
        return
    response = await client.post(SIGN, json=signer(email=VICTIM, name="Victim"))
    assert response.status == 202
    if history == "confirmed":
        [path] = await emailed_paths(sender, sink, VICTIM)
        assert (await client.post(path)).status == 200


async def observe(client: Client, key: str, worker: CounterWorker) -> dict[str, Any]:
    """Everything the partner can read about the petition."""
    await worker.drain()
    query = f"?petition={SLUG}"
    validations = await client.get(f"/v1/partner/validations{query}", headers=bearer(key))
    counts = await client.get(f"/v1/partner/counts{query}", headers=bearer(key))
    public = await client.get(f"/v1/petitions/{SLUG}/counts")
    assert validations.status == counts.status == public.status == 200
    return {
        "validations": await validations.json(),
        "partner_total": (await counts.json())["total"],
        "total": (await public.json())["total"],
        "countries": (await public.json())["countries"],
    }


def moved(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What changed, as the partner sees it."""
    return {
        "confirmed": after["validations"]["confirmed"] - before["validations"]["confirmed"],
        "pending": after["validations"]["pending"] - before["validations"]["pending"],
        "partner_total": after["partner_total"] - before["partner_total"],
        "total": after["total"] - before["total"],
    }


@pytest.mark.parametrize("history", HISTORIES)
@pytest.mark.parametrize("door", ["key", "widget"])
async def test_a_partner_submission_looks_the_same_whether_the_address_had_signed(
    client: Client,
    worker: CounterWorker,
    sender: MailSender,
    smtp_sink: SmtpSink,
    partner_key: str,
    history: str,
    door: str,
) -> None:
    await give_history(history, client, sender, smtp_sink)
    before = await observe(client, partner_key, worker)

    if door == "key":
        response = await client.post(SIGN, json=signer(email=VICTIM), headers=bearer(partner_key))
    else:  # anyone can sign with the partner's source code, as its widget does
        response = await client.post(SIGN, json=signer(email=VICTIM, source="daily"))
    assert response.status == 202
    assert await response.json() == {"status": "pending_confirmation"}
    after = await observe(client, partner_key, worker)

    assert moved(before, after) == {"confirmed": 0, "pending": 1, "partner_total": 0, "total": 0}
    assert after["countries"] == before["countries"]
    # The victim is asked, whatever their past, by an email of the partner's submission.
    emails = await emailed_paths(sender, smtp_sink, VICTIM)
    assert len(emails) == {"never": 1, "pending": 2, "confirmed": 2}[history]


@pytest.mark.parametrize("history", HISTORIES)
async def test_only_the_owner_confirming_the_partner_email_credits_the_partner(
    client: Client,
    worker: CounterWorker,
    sender: MailSender,
    smtp_sink: SmtpSink,
    partner_key: str,
    history: str,
) -> None:
    await give_history(history, client, sender, smtp_sink)
    response = await client.post(SIGN, json=signer(email=VICTIM), headers=bearer(partner_key))
    assert response.status == 202
    *_, partner_email = await emailed_paths(sender, smtp_sink, VICTIM)
    before = await observe(client, partner_key, worker)

    # Only the owner can open the link: then the partner's figures move, and the petition
    # counts the signature once (already counted: it does not move).
    page = await client.post(partner_email)
    assert page.status == 200
    after = await observe(client, partner_key, worker)
    assert after["validations"] == {
        "petition": SLUG,
        "source": "daily",
        "confirmed": 1,
        "pending": 0,
    }
    assert after["partner_total"] == 1
    assert after["total"] - before["total"] == (0 if history == "confirmed" else 1)
    # Confirming again changes nothing.
    assert (await client.post(partner_email)).status == 200
    assert await observe(client, partner_key, worker) == after


async def test_the_owner_confirming_their_own_email_does_not_credit_the_partner(
    client: Client,
    worker: CounterWorker,
    sender: MailSender,
    smtp_sink: SmtpSink,
    partner_key: str,
) -> None:
    # The victim signed (pending); the partner submits the address; the victim then
    # confirms their own signature's email: the partner must not see that.
    await give_history("pending", client, sender, smtp_sink)
    [own] = await emailed_paths(sender, smtp_sink, VICTIM)
    assert (
        await client.post(SIGN, json=signer(email=VICTIM), headers=bearer(partner_key))
    ).status == 202
    before = await observe(client, partner_key, worker)
    assert (await client.post(own)).status == 200
    after = await observe(client, partner_key, worker)
    assert after["validations"] == before["validations"]
    assert after["partner_total"] == before["partner_total"] == 0
    assert after["total"] == before["total"] + 1


async def test_the_partner_figures_count_submissions_not_signatures(
    client: Client, pool: asyncpg.Pool, worker: CounterWorker, partner_key: str
) -> None:
    for i in range(3):
        response = await client.post(
            SIGN, json=signer(email=f"p{i}@example.org"), headers=bearer(partner_key)
        )
        assert response.status == 202
    # Submitting one address twice is one submission.
    assert (
        await client.post(SIGN, json=signer(email="p0@example.org"), headers=bearer(partner_key))
    ).status == 202
    assert (await client.post(SIGN, json=signer(email="other@example.org"))).status == 202
    assert (await observe(client, partner_key, worker))["validations"]["pending"] == 3
    submissions = await pool.fetch("SELECT * FROM partner_submissions ORDER BY id")
    assert [row["created_signature"] for row in submissions] == [True, True, True]
