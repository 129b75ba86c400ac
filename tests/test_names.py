"""Names a reader can trust: at least one visible letter, no bidirectional controls that
reorder what is shown, no bytes that were not text; stored in Unicode NFC."""

from __future__ import annotations

import unicodedata

import asyncpg
import pytest

from tests.support.factories import signature_rows, signer
from tests.support.http import SIGN, Client, error_of

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
REST_OF_FORM = "email=amal%40example.org&country=SY"


@pytest.mark.parametrize(
    "name",
    [
        "\u200b\u200b",  # zero-width spaces: nothing to see
        "\ufeff",  # a byte order mark
        "\u3164",  # the Hangul filler, a "letter" that renders as nothing
        "1234",  # no letter at all
        "Ann \u202eevil\u202c",  # shown as "Ann live"
        "Ann \u202dx",  # left-to-right override
        "Ann \u2067evil\u2069",  # right-to-left isolate
        "Ann \u202bx\u202c",  # right-to-left embedding
        "Amal \ufffd",  # text broken before it arrived
    ],
)
async def test_a_name_that_hides_or_lies_is_refused(
    client: Client, pool: asyncpg.Pool, name: str
) -> None:
    error = await error_of(await client.post(SIGN, json=signer(name=name)), 422)
    assert error["code"] == "validation_failed"
    assert set(error["fields"]) == {"name"}
    assert await signature_rows(pool) == []


@pytest.mark.parametrize(
    "encoded_name",
    ["%ff%fe", "Amal%ff", "Am%c3al", "Amal%ed%a0%80"],  # the last: a UTF-8-encoded surrogate
)
async def test_a_form_name_that_is_not_utf8_is_refused_naming_the_field(
    client: Client, pool: asyncpg.Pool, encoded_name: str
) -> None:
    body = f"name={encoded_name}&{REST_OF_FORM}"
    error = await error_of(await client.post(SIGN, data=body, headers=FORM), 422)
    assert error["fields"] == {"name": ["Not valid text: bytes that are not UTF-8."]}
    assert await signature_rows(pool) == []


async def test_raw_bytes_that_are_not_utf8_in_any_form_field_name_it(
    client: Client, pool: asyncpg.Pool
) -> None:
    body = b"name=Amal&email=am\xffal%40example.org&country=SY"
    error = await error_of(await client.post(SIGN, data=body, headers=FORM), 422)
    assert set(error["fields"]) == {"email"}
    assert await signature_rows(pool) == []


@pytest.mark.parametrize(
    "name",
    [
        "Jose\u0301 Garci\u0301a",  # decomposed
        "\u0623\u0645\u0644 \u062d\u062f\u0627\u062f",  # Arabic, right to left
        "\u674e\u5c0f\u9f99",  # Chinese
        "\u0639\u0644\u064a\u200c\u0631\u0636\u0627",  # Persian, with a zero-width non-joiner
        "O'Brien-Smith",
        "X \u00c6 A-12",
    ],
)
async def test_real_names_are_kept_in_nfc(client: Client, pool: asyncpg.Pool, name: str) -> None:
    response = await client.post(SIGN, json=signer(name=name))
    assert response.status == 201, await response.text()
    [row] = await signature_rows(pool)
    assert row["name"] == unicodedata.normalize("NFC", name)


async def test_a_form_name_in_utf8_is_read_as_such(client: Client, pool: asyncpg.Pool) -> None:
    body = f"name=Jos%C3%A9&{REST_OF_FORM}"
    assert (await client.post(SIGN, data=body, headers=FORM)).status == 201
    [row] = await signature_rows(pool)
    assert row["name"] == "Jos\u00e9"
