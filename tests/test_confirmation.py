"""Email confirmation (double opt-in), end to end: the API, a real SMTP server, the mail
sender, the confirmation pages and the counter path."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import time
from email.header import decode_header, make_header
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
from redis.asyncio import Redis

from counter_worker.keys import KeyLayout
from counter_worker.worker import CounterWorker
from countersign_core.settings import Settings
from countersign_core.texts import TextCatalog, TextsError, parse_accept_language
from countersign_domain.confirmation_tokens import ConfirmationRef, ConfirmationTokens
from countersign_domain.petitions import translate_petition
from mail_sender.main import build_sender
from mail_sender.sender import MailSender
from petition_api.app import create_app
from tests.support.counts import assert_converges
from tests.support.factories import signer
from tests.support.http import AiohttpClient, Client
from tests.support.mail import SmtpSink, confirmation_link, html_part, text_part
from tests.support.values import TEST_SECRET

SLUG = "free-the-detainees"
SIGN = f"/v1/petitions/{SLUG}/signatures"
PENDING = {"status": "pending_confirmation"}

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


@pytest.fixture
async def client(
    aiohttp_client: AiohttpClient, settings: Settings, confirming_petition_id: int
) -> Client:
    return await aiohttp_client(create_app(settings))


async def sign(client: Client, **overrides: Any) -> None:
    response = await client.post(SIGN, json=signer(**overrides))
    assert response.status == 202, await response.text()
    assert await response.json() == PENDING


async def jobs(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await pool.fetch("SELECT * FROM email_jobs ORDER BY id")
    return rows


async def is_confirmed(pool: asyncpg.Pool, email: str = "amal@example.org") -> bool:
    confirmed: bool = await pool.fetchval(
        "SELECT confirmed_at IS NOT NULL FROM signatures WHERE email = $1", email
    )
    return confirmed


def path_of(link: str) -> str:
    assert link.startswith("http://countersign.test/confirm/")
    return urlsplit(link).path


async def emailed_link(client: Client, sender: MailSender, sink: SmtpSink) -> str:
    """Sign, let the sender deliver, and return the path of the emailed link."""
    await sign(client)
    await sender.drain()
    return path_of(confirmation_link(sink.received[-1]))


def assert_inert_page(response: Any) -> None:
    headers = response.headers
    assert headers["Content-Type"].startswith("text/html")
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp
    assert "form-action 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "style-src 'sha256-" in csp
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-store"


# -- signing ---------------------------------------------------------------------------------


async def test_a_signature_is_stored_pending_with_its_email_job_and_does_not_count(
    client: Client,
    pool: asyncpg.Pool,
    worker: CounterWorker,
    redis: Redis,
    layout: KeyLayout,
    confirming_petition_id: int,
) -> None:
    await sign(client)
    [row] = await pool.fetch("SELECT * FROM signatures")
    assert row["confirmed_at"] is None
    assert row["counted"] is False
    [job] = await jobs(pool)
    assert (job["signature_id"], job["kind"], job["sequence"]) == (row["id"], "confirmation", 1)
    assert job["language"] == "en"
    assert job["sent_at"] is None
    # The job keeps no copy of the address: it is read from the signature at send time.
    assert "amal" not in json.dumps({k: str(v) for k, v in dict(job).items()})
    await worker.drain()
    assert (await assert_converges(pool, redis, layout, confirming_petition_id)).total == 0


async def test_petitions_without_confirmation_still_count_at_once_and_send_nothing(
    aiohttp_client: AiohttpClient, settings: Settings, petition_id: int, pool: asyncpg.Pool
) -> None:
    client = await aiohttp_client(create_app(settings))
    response = await client.post("/v1/petitions/refer-syria-to-icc/signatures", json=signer())
    assert response.status == 201
    assert await response.json() == {"status": "counted"}
    assert await jobs(pool) == []


async def test_the_answer_is_the_same_for_new_pending_and_confirmed_addresses(
    client: Client, pool: asyncpg.Pool
) -> None:
    async def answer(email: str) -> tuple[int, str]:
        response = await client.post(SIGN, json=signer(email=email))
        return response.status, await response.text()

    new = await answer("new@example.org")
    await pool.execute("UPDATE email_jobs SET sent_at = now()")
    pending = await answer("new@example.org")
    await pool.execute("UPDATE signatures SET confirmed_at = now()")
    confirmed = await answer("new@example.org")
    assert new == pending == confirmed == (202, json.dumps(PENDING))
    # The re-sign while pending queued a second email; the one after confirming did not.
    assert [job["sequence"] for job in await jobs(pool)] == [1, 2]


async def test_the_honeypot_gets_the_same_202_and_nothing_is_stored(
    client: Client, pool: asyncpg.Pool
) -> None:
    response = await client.post(SIGN, json=signer(website="http://spam.example"))
    assert response.status == 202
    assert await response.json() == PENDING
    assert await pool.fetchval("SELECT count(*) FROM signatures") == 0
    assert await jobs(pool) == []


async def test_many_signers_at_once_each_get_one_email(
    client: Client, pool: asyncpg.Pool, sender: MailSender, smtp_sink: SmtpSink
) -> None:
    # Concurrent requests are written by a few batched statements: one row and one
    # email job per address, duplicates within a batch included.
    addresses = [f"signer{i % 40}@example.org" for i in range(60)]
    await asyncio.gather(*(sign(client, email=address) for address in addresses))
    assert await pool.fetchval("SELECT count(*) FROM signatures") == 40
    await sender.drain()
    assert sorted(str(m["To"]) for m in smtp_sink.received) == sorted(set(addresses))


# -- the email and the link -------------------------------------------------------------------


async def test_the_email_arrives_and_only_the_posted_button_confirms_and_counts_once(
    client: Client,
    pool: asyncpg.Pool,
    sender: MailSender,
    smtp_sink: SmtpSink,
    worker: CounterWorker,
    redis: Redis,
    layout: KeyLayout,
    confirming_petition_id: int,
) -> None:
    await sign(client)
    await sender.drain()
    [message] = smtp_sink.received
    [job] = await jobs(pool)
    assert job["sent_at"] is not None
    assert message["To"] == "amal@example.org"
    assert message["From"] == "Petitions <petitions@countersign.test>"
    assert message["Message-ID"] == job["message_id"]
    assert message["Message-ID"].endswith("@countersign.test>")
    assert "Free the detainees" in message["Subject"]
    assert message.get_content_type() == "multipart/alternative"
    assert "Free the detainees" in text_part(message)
    assert "Free the detainees" in html_part(message)
    path = path_of(confirmation_link(message))

    # Opening the link (as a person, or as a mail scanner) shows a button and confirms nothing.
    for _ in range(3):
        page = await client.get(path)
        assert page.status == 200
        assert_inert_page(page)
        html = await page.text()
        assert "Free the detainees" in html
        assert f'<form method="post" action="{path}">' in html
    await client.head(path)
    assert not await is_confirmed(pool)
    await worker.drain()
    assert (await assert_converges(pool, redis, layout, confirming_petition_id)).total == 0

    confirmed = await client.post(path)
    assert confirmed.status == 200
    assert_inert_page(confirmed)
    assert "your signature is confirmed" in await confirmed.text()
    assert await is_confirmed(pool)
    await worker.drain()
    assert (await assert_converges(pool, redis, layout, confirming_petition_id)).total == 1

    # Confirming again (or opening the link again) is harmless and counts nothing more.
    again = await asyncio.gather(client.post(path), client.post(path), client.get(path))
    assert {response.status for response in again} == {200}
    for response in again:
        assert "your signature is confirmed" in await response.text()
    await worker.drain()
    assert (await assert_converges(pool, redis, layout, confirming_petition_id)).total == 1


async def test_concurrent_confirmations_count_once(
    client: Client,
    pool: asyncpg.Pool,
    sender: MailSender,
    smtp_sink: SmtpSink,
    worker: CounterWorker,
    redis: Redis,
    layout: KeyLayout,
    confirming_petition_id: int,
) -> None:
    path = await emailed_link(client, sender, smtp_sink)
    responses = await asyncio.gather(*(client.post(path) for _ in range(20)))
    assert {response.status for response in responses} == {200}
    await worker.drain()
    assert (await assert_converges(pool, redis, layout, confirming_petition_id)).total == 1


async def test_a_tampered_link_gets_a_clear_page_with_a_way_to_a_new_email(
    client: Client, pool: asyncpg.Pool, sender: MailSender, smtp_sink: SmtpSink
) -> None:
    path = await emailed_link(client, sender, smtp_sink)
    token = path.rsplit("/", 1)[1]
    other_key = ConfirmationTokens("another-secret-key-0123456789-abcdefgh", max_age_days=7)
    signed, signature = token.rsplit(".", 1)
    # (The signature's first character: its last one carries 2 bits that decoding drops.)
    other = ("B" if signature[0] == "A" else "A") + signature[1:]
    forged = [
        f"/confirm/{signed}.{other}",  # signature changed
        path[:-12],  # cut short, as by a mail client wrapping the line
        "/confirm/" + token.replace(token.split(".")[0], "WzIsMV0"),  # another signature id
        "/confirm/" + other_key.make(ConfirmationRef(1, 1)),  # signed with another key
        "/confirm/not-a-token",
    ]
    for forgery in forged:
        for method in (client.get, client.post):
            response = await method(forgery)
            assert response.status == 404, forgery
            assert_inert_page(response)
            html = await response.text()
            assert "This link is incomplete" in html
            assert '<form method="post" action="/confirm"' in html
            assert 'name="email"' in html
    assert not await is_confirmed(pool)


async def test_an_expired_link_confirms_nothing_and_offers_a_new_email(
    client: Client, pool: asyncpg.Pool, confirming_petition_id: int
) -> None:
    await sign(client)
    signature_id = await pool.fetchval("SELECT id FROM signatures")
    eight_days_ago = time.time() - 8 * 86_400
    old = ConfirmationTokens(TEST_SECRET, max_age_days=7, clock=lambda: eight_days_ago)
    path = "/confirm/" + old.make(ConfirmationRef(signature_id, confirming_petition_id))
    for method in (client.get, client.post):
        response = await method(path)
        assert response.status == 410
        assert_inert_page(response)
        html = await response.text()
        assert "This link has expired" in html
        assert '<form method="post" action="/confirm"' in html
    assert not await is_confirmed(pool)
    # The same signature with a fresh token is fine: only the age was wrong.
    fresh = ConfirmationTokens(TEST_SECRET, max_age_days=7)
    response = await client.post(
        "/confirm/" + fresh.make(ConfirmationRef(signature_id, confirming_petition_id))
    )
    assert response.status == 200
    assert await is_confirmed(pool)


async def test_a_link_to_a_deleted_signature_or_a_closed_petition(
    client: Client, pool: asyncpg.Pool, sender: MailSender, smtp_sink: SmtpSink
) -> None:
    path = await emailed_link(client, sender, smtp_sink)
    await pool.execute("UPDATE petitions SET status = 'closed'")
    for method in (client.get, client.post):
        response = await method(path)
        assert response.status == 409
        assert "This petition is closed" in await response.text()
    assert not await is_confirmed(pool)
    await pool.execute("DELETE FROM signatures")
    response = await client.post(path)
    assert response.status == 410
    assert "There is nothing to confirm" in await response.text()


async def test_titles_are_escaped_in_pages_and_emails(
    client: Client, pool: asyncpg.Pool, sender: MailSender, smtp_sink: SmtpSink
) -> None:
    title = '<script>alert("x")</script> & "more"'
    await pool.execute("UPDATE petitions SET title = $1", title)
    path = await emailed_link(client, sender, smtp_sink)
    html = await (await client.get(path)).text()
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    message = smtp_sink.received[-1]
    assert "<script>" not in html_part(message)
    assert "&lt;script&gt;" in html_part(message)
    assert title in text_part(message)  # plain text is plain


# -- asking for a new email -------------------------------------------------------------------


async def test_asking_for_a_new_link_answers_the_same_whoever_asks(
    client: Client, pool: asyncpg.Pool, sender: MailSender, smtp_sink: SmtpSink
) -> None:
    form = await client.get("/confirm")
    assert form.status == 200
    assert_inert_page(form)
    await sign(client)  # stays pending
    await sign(client, email="lina@example.org")  # will be confirmed
    await sender.drain()
    assert len(smtp_sink.received) == 2
    await pool.execute("UPDATE signatures SET confirmed_at = now() WHERE email LIKE 'lina%'")

    answers = []
    for email in ("AMAL@example.org", "lina@example.org", "nobody@example.org"):
        response = await client.post("/confirm", data={"email": email})
        assert_inert_page(response)
        answers.append((response.status, await response.text()))
    assert answers[0] == answers[1] == answers[2]
    assert answers[0][0] == 202
    assert "Check your inbox" in answers[0][1]

    await sender.drain()
    assert [str(m["To"]) for m in smtp_sink.received[2:]] == ["amal@example.org"]
    assert await is_confirmed(pool, "amal@example.org") is False


async def test_an_invalid_address_gets_the_form_again_without_echoing_it(client: Client) -> None:
    response = await client.post("/confirm", data={"email": "not-an-address<b>"})
    assert response.status == 422
    html = await response.text()
    assert "This is not a valid email address." in html
    assert "not-an-address" not in html
    assert 'aria-invalid="true"' in html


async def test_emails_per_signature_are_capped_whatever_asks_for_them(
    client: Client, pool: asyncpg.Pool, sender: MailSender, smtp_sink: SmtpSink
) -> None:
    await sign(client)
    await sign(client)  # the first email is still waiting: no second one
    assert len(await jobs(pool)) == 1
    await sender.drain()
    await sign(client)  # 2
    await sender.drain()
    await client.post("/confirm", data={"email": "amal@example.org"})  # 3
    await sender.drain()
    for _ in range(3):  # beyond the limit (3): the same answers, no more email
        await sign(client)
        response = await client.post("/confirm", data={"email": "amal@example.org"})
        assert response.status == 202
        await sender.drain()
    assert len(smtp_sink.received) == 3
    assert [job["sequence"] for job in await jobs(pool)] == [1, 2, 3]
    # Every email's link works.
    links = {path_of(confirmation_link(message)) for message in smtp_sink.received}
    for path in links:
        assert (await client.get(path)).status == 200


async def test_the_cap_holds_when_requests_race(
    client: Client, pool: asyncpg.Pool, sender: MailSender
) -> None:
    await sign(client)
    await sender.drain()
    await asyncio.gather(
        *(sign(client) for _ in range(10)),
        *(client.post("/confirm", data={"email": "amal@example.org"}) for _ in range(10)),
    )
    # One more email queued (the next ones wait for it to go), never two at once.
    assert [job["sequence"] for job in await jobs(pool)] == [1, 2]


# -- languages ---------------------------------------------------------------------------------


async def test_the_email_and_pages_speak_the_signers_language(
    client: Client, pool: asyncpg.Pool, sender: MailSender, smtp_sink: SmtpSink
) -> None:
    headers = {"Accept-Language": "de-CH, fr;q=0.9, en;q=0.5"}
    response = await client.post(SIGN, json=signer(), headers=headers)
    assert response.status == 202
    await sign(client, email="rami@example.org", language="ar-SY")
    await sign(client, email="olga@example.org", language="ru")
    assert [job["language"] for job in await jobs(pool)] == ["fr", "ar", "ru"]
    await sender.drain()
    french, arabic, russian = smtp_sink.received
    assert french["Subject"].startswith("Merci de confirmer votre signature")
    assert french["Content-Language"] == "fr"
    assert 'lang="fr" dir="ltr"' in html_part(french)
    assert 'lang="ar" dir="rtl"' in html_part(arabic)
    assert "يرجى تأكيد توقيعك" in arabic["Subject"]
    assert "Подтвердите" in russian["Subject"]
    page = await client.get(path_of(confirmation_link(arabic)), headers={"Accept-Language": "ar"})
    assert 'lang="ar" dir="rtl"' in await page.text()


# Titles whose subjects Python's own header folding broke: a space between two words
# ended up between two encoded words, where RFC 2047 says a reader ignores it.
TRANSLATED_TITLES = {
    "ru": "Сирия: передайте дело в Международный уголовный суд",
    "fr": "Syrie : saisissez la Cour pénale internationale",
    "ar": "سوريا: أحيلوا الوضع إلى المحكمة الجنائية الدولية الآن",
}


def strictly_decoded(message: EmailMessage, name: str) -> str:
    """A header as RFC 2047 reads it: unfolded, then whitespace between two encoded
    words dropped (what mail clients do), from the raw bytes received."""
    [raw] = [value for key, value in message.raw_items() if key.lower() == name.lower()]
    return str(make_header(decode_header(re.sub(r"\r?\n(?=[ \t])", "", raw))))


async def test_email_subjects_keep_their_spaces_in_every_language(
    client: Client,
    pool: asyncpg.Pool,
    sender: MailSender,
    smtp_sink: SmtpSink,
    confirming_petition_id: int,
) -> None:
    for lang, title in TRANSLATED_TITLES.items():
        await translate_petition(pool, actor="test", slug=SLUG, lang=lang, title=title)
        await sign(client, email=f"{lang}@example.org", language=lang)
    await sender.drain()
    catalog = TextCatalog.load()
    for message, (lang, title) in zip(smtp_sink.received, TRANSLATED_TITLES.items(), strict=True):
        expected = catalog.get(lang)("email_subject", title=title)
        assert strictly_decoded(message, "Subject") == expected
        assert message["Subject"] == expected
        # The email carries the petition's title in the signer's language.
        assert title in text_part(message)
        assert f'<span lang="{lang}"' not in html_part(message)  # its own language: unmarked


async def test_an_untranslated_title_is_marked_with_its_language(
    client: Client, sender: MailSender, smtp_sink: SmtpSink
) -> None:
    await sign(client, language="ar")
    await sender.drain()
    [message] = smtp_sink.received
    assert '<span lang="en" dir="auto">Free the detainees</span>' in html_part(message)


def test_accept_language_is_read_by_preference() -> None:
    header = "de-CH;q=0.8, ru;q=0.9, *;q=0.1, en;q=0, ar-SY"
    assert parse_accept_language(header) == ["ar-SY", "ru", "de-CH", "*"]
    assert parse_accept_language("fr;q=zero, ru") == ["ru"]
    catalog = TextCatalog.load()
    assert catalog.negotiate(None, header) == "ar"
    assert catalog.negotiate("fr-CA", header) == "fr"  # the field wins
    assert catalog.negotiate("xx", "de, *") == "en"  # nothing we have


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("fr.json", "{not json", "JSONDecodeError"),
        ("fr.json", '{"email_subject": 3}', "a JSON object of texts"),
        ("french.json", "{}", "name it after a language code"),
    ],
)
def test_malformed_texts_are_refused_with_one_line(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(TextsError, match=message):
        TextCatalog.load(tmp_path)


async def test_a_malformed_language_field_is_refused(client: Client) -> None:
    response = await client.post(SIGN, json=signer(language="fr_FR<script>"))
    assert response.status == 422
    assert set((await response.json())["error"]["fields"]) == {"language"}


async def test_texts_can_be_overridden_and_languages_added(
    aiohttp_client: AiohttpClient,
    mail_settings: Settings,
    database_url: str,
    pool: asyncpg.Pool,
    confirming_petition_id: int,
    smtp_sink: SmtpSink,
    tmp_path: Path,
) -> None:
    (tmp_path / "fr.json").write_text(
        json.dumps({"email_subject": "Confirmez, s'il vous plaît : {title}"}), encoding="utf-8"
    )
    (tmp_path / "de.json").write_text(
        json.dumps({"email_subject": "Bitte bestätigen: {title}"}), encoding="utf-8"
    )
    settings = dataclasses.replace(mail_settings, texts_dir=tmp_path)
    client = await aiohttp_client(create_app(settings))
    sender = build_sender(settings, database_url, pool, TextCatalog.load(tmp_path))
    await sign(client, language="fr")
    await sign(client, email="jonas@example.org", language="de")
    await sender.drain()
    french, german = smtp_sink.received
    assert french["Subject"] == "Confirmez, s'il vous plaît : Free the detainees"
    assert "Merci d\u2019avoir signé" in text_part(french)  # keys not overridden stay
    assert german["Subject"] == "Bitte bestätigen: Free the detainees"
    assert "Thank you for signing" in text_part(german)  # a new language falls back to English


async def test_the_readme_gives_the_status_of_a_damaged_link(client: Client) -> None:
    status = (await client.get("/confirm/not-a-token")).status
    [row] = [line for line in README.splitlines() if line.startswith("| `GET /confirm/{token}`")]
    assert f"{status} for a damaged link" in row
