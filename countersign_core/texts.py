"""What signers read in their language: the confirmation email and pages.

The built-in texts are ``countersign_core/texts/<language>.json`` (the staff console's in
``countersign_core/texts/console/``). A deployment changes any
of them, or adds a language, with files of the same name in ``COUNTERSIGN_TEXTS_DIR``:
their keys replace the built-in ones; a key missing in a language falls back to English.
``{title}`` and ``{days}`` in a text are replaced by the petition's title and the number
of days a link works; a file's ``"direction": "rtl"`` lays the language out right to left.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from markupsafe import Markup, escape

DEFAULT_LANGUAGE = "en"
_LANGUAGE_FILE = re.compile(r"^[a-z]{2,3}\.json$")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_PRIMARY_TAG = re.compile(r"^[A-Za-z]{2,3}(?=$|-)")


class TextsError(Exception):
    """A texts file is unreadable or malformed; the message names it."""


@dataclass(frozen=True)
class Texts:
    language: str
    direction: str
    strings: Mapping[str, str]

    def __call__(self, key: str, **values: object) -> str:
        """The text for ``key`` with its ``{placeholders}`` filled in."""
        return _PLACEHOLDER.sub(
            lambda match: str(values.get(match[1], match[0])), self.strings[key]
        )

    def html(self, key: str, **values: object) -> Markup:
        """The same, escaped for HTML; values that are ``Markup`` go in as they are."""
        return Markup(  # noqa: S704 - every part is escaped here
            _PLACEHOLDER.sub(
                lambda match: escape(values.get(match[1], match[0])), escape(self.strings[key])
            )
        )

    def foreign(self, text: str, lang: str) -> Markup:
        """``text``, written in ``lang``: escaped, and marked with its own language and
        ``dir="auto"`` when that is not this language, so that a browser or a mail client
        lays out mixed scripts (Arabic in an English sentence) correctly."""
        if lang == self.language:
            return escape(text)
        return Markup('<span lang="{}" dir="auto">{}</span>').format(lang, text)


class TextCatalog:
    def __init__(self, languages: Mapping[str, Texts]) -> None:
        self._languages = dict(languages)

    @classmethod
    def load(cls, override_dir: Path | None = None, *, part: str | None = None) -> TextCatalog:
        """The texts of signers (``part`` None) or of another audience: ``console``, the
        staff console's, read from a ``console/`` subfolder of each of the two folders
        (optional in the override folder)."""
        builtin = Path(str(resources.files("countersign_core") / "texts"))
        raw = _read_folder(builtin / part if part else builtin)
        if override_dir is not None and part:
            override_dir = override_dir / part if (override_dir / part).is_dir() else None
        if override_dir is not None:
            for language, strings in _read_folder(override_dir).items():
                raw[language] = {**raw.get(language, {}), **strings}
        default = raw[DEFAULT_LANGUAGE]
        return cls(
            {
                language: Texts(
                    language,
                    "rtl" if strings.get("direction") == "rtl" else "ltr",
                    {**default, **strings},
                )
                for language, strings in raw.items()
            }
        )

    @property
    def languages(self) -> frozenset[str]:
        return frozenset(self._languages)

    def get(self, language: str) -> Texts:
        return self._languages.get(language) or self._languages[DEFAULT_LANGUAGE]

    def negotiate(
        self,
        requested: str | None,
        accept_language: str | None,
        fallback: str = DEFAULT_LANGUAGE,
    ) -> str:
        """The language to use: the one asked for if we have it, else the reader's
        browser's first choice that we have (``Accept-Language``), else ``fallback`` if
        we have it (a petition's default language), else English."""
        return negotiate(
            [requested, *parse_accept_language(accept_language)],
            self._languages,
            fallback if fallback in self._languages else DEFAULT_LANGUAGE,
        )


def negotiate(candidates: Iterable[str | None], available: Collection[str], default: str) -> str:
    """The primary language of the first candidate tag (``fr`` of ``fr-CA``) that is
    available, else ``default``."""
    for tag in candidates:
        match = _PRIMARY_TAG.match(tag or "")
        if match and match[0].lower() in available:
            return match[0].lower()
    return default


def parse_accept_language(header: str | None) -> list[str]:
    """Language tags of an ``Accept-Language`` header, most wanted first.

    Hand-written: a dozen lines, where Babel would bring a large dependency for them.
    """
    weighted: list[tuple[float, int, str]] = []
    for position, item in enumerate((header or "").split(",")[:20]):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        if tag and quality > 0:
            weighted.append((-quality, position, tag.strip()))
    return [tag for _, _, tag in sorted(weighted)]


def _read_folder(folder: Path) -> dict[str, dict[str, str]]:
    if not folder.is_dir():
        raise TextsError(f"{folder}: no such folder")
    texts: dict[str, dict[str, str]] = {}
    for path in sorted(folder.glob("*.json")):
        if not _LANGUAGE_FILE.match(path.name):
            raise TextsError(f"{path}: name it after a language code, e.g. fr.json")
        try:
            strings = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise TextsError(f"{path}: {type(exc).__name__}") from None
        if not isinstance(strings, dict) or not all(
            isinstance(key, str) and isinstance(value, str) for key, value in strings.items()
        ):
            raise TextsError(f"{path}: must be a JSON object of texts")
        texts[path.stem] = strings
    return texts
