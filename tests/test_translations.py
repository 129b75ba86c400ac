"""Multilingual petitions: translations through the staff API and the command line, the
language every door chooses, and the next goal once one is reached."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import asyncpg

from countersign_core.migrations import migrate, migrations_dir, pending
from tests.support.factories import SLUG, StaffTokens
from tests.support.http import ADMIN, Client, bearer, error_of
from tests.support.processes import countersign
from tests.support.servers import Servers, throwaway_database
from tests.support.waiting import eventually

ONE = f"{ADMIN}/petitions/{SLUG}"
PUBLIC = f"/v1/petitions/{SLUG}"

FRENCH = {
    "title": "Saisir la Cour pénale internationale",
    "text": "Le texte.",
    "target": "La Russie",
}
ARABIC = {"title": "أحيلوا سوريا إلى المحكمة الجنائية الدولية", "text": "النص", "target": "روسيا"}


async def translate(client: Client, token: str, lang: str, body: dict[str, str]) -> Any:
    return await client.put(f"{ONE}/translations/{lang}", json=body, headers=bearer(token))


async def public(client: Client, query: str = "", **headers: str) -> tuple[dict[str, Any], str]:
    response = await client.get(PUBLIC + query, headers=headers)
    assert response.status == 200, await response.text()
    return await response.json(), response.headers["Content-Language"]


async def public_once(client: Client, title: str, query: str = "", **headers: str) -> Any:
    """The public petition once it reads ``title`` (readers see a change within the
    petition cache's few seconds)."""

    async def changed() -> tuple[dict[str, Any], str] | None:
        found = await public(client, query, **headers)
        return found if found[0]["title"] == title else None

    return await eventually(changed)


async def test_staff_add_translations_and_readers_choose_among_them(
    client: Client, staff: StaffTokens, pool: asyncpg.Pool
) -> None:
    response = await translate(client, staff.admin, "fr", FRENCH)
    assert response.status == 200, await response.text()
    assert (await response.json())["languages"] == ["en", "fr"]
    assert (await translate(client, staff.admin, "ar", ARABIC)).status == 200
    managed = await (await client.get(ONE, headers=bearer(staff.exporter))).json()
    assert managed["default_lang"] == "en"
    assert managed["languages"] == ["en", "ar", "fr"]
    assert managed["translations"]["fr"] == FRENCH

    # ?lang= first, then Accept-Language, then the default language.
    body, language = await public(client, "?lang=fr-CA", **{"Accept-Language": "ar"})
    assert (body["lang"], language, body["title"], body["text"], body["target"]) == (
        "fr",
        "fr",
        *FRENCH.values(),
    )
    body, language = await public(client, **{"Accept-Language": "de, ar;q=0.8, fr;q=0.5"})
    assert (body["lang"], language, body["title"]) == ("ar", "ar", ARABIC["title"])
    body, language = await public(client, "?lang=ru", **{"Accept-Language": "de"})
    assert (body["lang"], language, body["title"]) == ("en", "en", "Refer Syria to the ICC")
    assert body["languages"] == ["en", "ar", "fr"]
    error = await error_of(await client.get(PUBLIC + "?lang=not a tag"), 422)
    assert error["fields"] == {"lang": ["Not a language tag."]}

    # Replacing a translation replaces all three fields; the audit log says which language.
    assert (await translate(client, staff.admin, "fr", {"title": "Autre titre"})).status == 200
    body, _ = await public_once(client, "Autre titre", "?lang=fr")
    assert (body["title"], body["text"], body["target"]) == ("Autre titre", "", "")
    actions = await pool.fetch(
        "SELECT action, details::text FROM audit_log WHERE action = 'petition.translate'"
    )
    assert [json.loads(row["details"]) for row in actions] == [
        {"lang": "fr"},
        {"lang": "ar"},
        {"lang": "fr"},
    ]


async def test_translation_refusals(client: Client, staff: StaffTokens) -> None:
    assert (await translate(client, staff.exporter, "fr", FRENCH)).status == 403
    error = await error_of(await translate(client, staff.admin, "FR", FRENCH), 422)
    assert error["fields"] == {
        "lang": ["Use a language code of 2 or 3 lowercase letters, such as fr or ar."]
    }
    error = await error_of(await translate(client, staff.admin, "fr", {"text": "no title"}), 422)
    assert set(error["fields"]) == {"title"}
    missing = await client.delete(f"{ONE}/translations/fr", headers=bearer(staff.admin))
    assert (await error_of(missing, 404))["code"] == "translation_not_found"
    default = await client.delete(f"{ONE}/translations/en", headers=bearer(staff.admin))
    assert (await error_of(default, 409))["code"] == "default_language_kept"
    await translate(client, staff.admin, "fr", FRENCH)
    removed = await client.delete(f"{ONE}/translations/fr", headers=bearer(staff.admin))
    assert (await removed.json())["languages"] == ["en"]


async def test_the_default_language_text_and_another_default(
    client: Client, staff: StaffTokens
) -> None:
    # Translating into the default language edits the petition's own text.
    await translate(client, staff.admin, "en", {"title": "New title", "text": "T", "target": "R"})
    body, _ = await public(client)
    assert (body["title"], body["languages"]) == ("New title", ["en"])
    await translate(client, staff.admin, "fr", FRENCH)
    # French becomes the default: its translation and the English text swap places.
    response = await client.patch(ONE, json={"default_lang": "fr"}, headers=bearer(staff.admin))
    assert response.status == 200, await response.text()
    managed = await response.json()
    assert (managed["default_lang"], managed["title"]) == ("fr", FRENCH["title"])
    assert managed["translations"] == {"en": {"title": "New title", "text": "T", "target": "R"}}
    body, language = await public_once(client, FRENCH["title"], **{"Accept-Language": "de"})
    assert language == "fr"
    # A default without a translation only relabels the text.
    response = await client.patch(ONE, json={"default_lang": "de"}, headers=bearer(staff.admin))
    assert (await response.json())["languages"] == ["de", "en"]


async def test_staff_set_the_next_goal(client: Client, staff: StaffTokens) -> None:
    response = await client.patch(ONE, json={"goal": 250_000}, headers=bearer(staff.admin))
    assert response.status == 200
    assert (await response.json())["goal"] == 250_000


async def test_the_translate_and_edit_commands(
    worker_env: dict[str, str], pool: asyncpg.Pool, petition_id: int, tmp_path: Path
) -> None:
    def run(*args: str) -> Any:
        return countersign("petition", *args, env=worker_env)

    done = run("translate", SLUG, "--lang", "ru", "--title", "Передайте дело", "--text", "Текст")
    assert (done.returncode, done.stdout) == (0, f"petition {SLUG} is written in: en ru\n")
    file = tmp_path / "ar.json"
    file.write_text(json.dumps(ARABIC, ensure_ascii=False), encoding="utf-8")
    assert run("translate", SLUG, "--lang", "ar", "--file", str(file)).returncode == 0
    rows = await pool.fetch(
        "SELECT lang, title, body, target FROM petition_translations ORDER BY lang"
    )
    assert [tuple(row) for row in rows] == [
        ("ar", *ARABIC.values()),
        ("ru", "Передайте дело", "Текст", ""),
    ]
    bad = run("translate", SLUG, "--lang", "Russian", "--title", "x")
    assert (bad.returncode, bad.stderr) == (
        1,
        "countersign: error: some fields are invalid (validation_failed): lang: Use a "
        "language code of 2 or 3 lowercase letters, such as fr or ar.\n",
    )
    assert run("translate", SLUG, "--lang", "ru", "--remove").returncode == 0
    assert await pool.fetchval("SELECT count(*) FROM petition_translations") == 1
    kept = run("translate", SLUG, "--lang", "en", "--remove")
    assert "(default_language_kept)" in kept.stderr

    edited = run("edit", SLUG, "--goal", "200000")
    assert (edited.returncode, edited.stdout) == (0, f"petition {SLUG} changed: goal\n")
    assert await pool.fetchval("SELECT goal FROM petitions") == 200_000
    assert run("edit", SLUG).returncode == 2  # nothing to change
    # Arabic becomes the default: its translation and the English text swap places.
    swapped = run("edit", SLUG, "--default-lang", "ar")
    assert (swapped.returncode, swapped.stdout) == (0, f"petition {SLUG} changed: default_lang\n")
    assert await pool.fetchval("SELECT title FROM petitions") == ARABIC["title"]
    shown = run("show", SLUG).stdout.splitlines()
    assert "languages     ar en" in shown
    refused = run("edit", SLUG, "--default-lang", "Arabic")
    assert (refused.returncode, refused.stderr) == (
        1,
        "countersign: error: some fields are invalid (validation_failed): default_lang: Use a "
        "language code of 2 or 3 lowercase letters, such as fr or ar.\n",
    )


async def test_a_database_migrated_past_009_without_it_takes_it(
    servers: Servers, tmp_path: Path
) -> None:
    # Migrations apply by name: a database migrated before 009_translations.sql existed
    # (up to 012) finds it pending, and it applies after 012.
    earlier = tmp_path / "sql"
    earlier.mkdir()
    for path in migrations_dir().glob("*.sql"):
        if path.name != "009_translations.sql":
            shutil.copy(path, earlier)
    async with throwaway_database(servers) as url:
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn, earlier)
            await conn.execute("INSERT INTO petitions (slug, title) VALUES ('older', 'Older')")
            assert await pending(conn) == ["009_translations.sql"]
            assert await migrate(conn) == ["009_translations.sql"]
            assert await conn.fetchval("SELECT default_lang FROM petitions") == "en"
        finally:
            await conn.close()
