"""The signature fields' rules (and the petition slug's) as regular expressions: one
pattern per field decides what the API accepts, and the OpenAPI document publishes the
same pattern.

A contract tester (schemathesis, in CI) sends values the document calls valid and
expects them accepted, and values it calls invalid and expects them refused; so the
document must say exactly what the server does. The server strips surrounding
whitespace before validating, so each pattern allows whitespace around the value, and
lengths are counted inside the pattern rather than by minLength/maxLength (which would
count that whitespace too).

Only constructs that Python, Rust (jsonschema-rs) and ECMAScript read alike are used:
explicit character classes with ``\\uXXXX`` escapes, no ``\\s``, ``\\w``, ``\\b``, ``.``
or flags; lookarounds where a rule says "must not contain". ECMAScript patterns without
the ``u`` flag cannot name a character beyond U+FFFF, so the classes stop there: such
characters (emoji, mostly) are not accepted. Lone surrogates, which JSON can carry but
Postgres cannot store, fit no class either.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

import pycountry

COUNTRY_CODES = frozenset(country.alpha_2 for country in pycountry.countries)

# Whitespace as str.strip() sees it (str.isspace); none lies above U+3000, which
# tests/test_openapi.py checks against the running Python's Unicode tables.
WHITESPACE = frozenset(c for c in map(chr, range(0x3001)) if c.isspace())
CONTROL = frozenset(map(chr, [*range(0x20), 0x7F]))
_SURROGATES = range(0xD800, 0xE000)


LAST = 0xFFFF  # the last code point a portable pattern can name


def _escape(code: int) -> str:
    return f"\\u{code:04x}"


def _class(runs: Iterable[tuple[int, int]]) -> str:
    """A character class of these inclusive runs of code points."""
    return (
        "["
        + "".join(
            _escape(first) + (f"-{_escape(last)}" if last > first else "") for first, last in runs
        )
        + "]"
    )


def _runs(codes: set[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for code in sorted(codes):
        if runs and code == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], code)
        else:
            runs.append((code, code))
    return runs


def one_of(chars: Iterable[str]) -> str:
    return _class(_runs(set(map(ord, chars))))


def any_but(excluded: Iterable[str]) -> str:
    """Any character of the Basic Multilingual Plane (surrogates aside) except these."""
    allowed, start = [], 0
    for first, last in _runs({*map(ord, excluded), *_SURROGATES}):
        if first > start:
            allowed.append((start, first - 1))
        start = last + 1
    return _class([*allowed, (start, LAST)])


def _caseless(word: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in word)


WS = one_of(WHITESPACE)


def around(core: str, *, optional: bool = False) -> str:
    """The whole raw value: ``core``, with any whitespace around it (stripped before use)."""
    return f"^{WS}*(?:{core}){'?' if optional else ''}{WS}*$"


# -- name: 1-120 characters with at least one visible letter, no control characters, no
# bidirectional controls that reorder text, not starting like a spreadsheet formula, no
# web address (a scheme, "www.", or a dotted host with a common TLD).
FORMULA_START = "=+-@"
_NOT_WORD = "(?<![A-Za-z0-9_])"
# fmt: off
SPAM_TLDS = (
    "com", "net", "org", "info", "biz", "io", "co", "ru", "xyz", "top", "site", "online",
    "link", "click", "me", "ly",
)
# fmt: on
WEB_ADDRESS = (
    "(?:[A-Za-z][A-Za-z0-9+.\\-]*://"
    f"|{_NOT_WORD}{_caseless('www.')}"
    f"|{_NOT_WORD}[A-Za-z0-9\\-]+\\.(?:{'|'.join(map(_caseless, SPAM_TLDS))})(?![A-Za-z0-9_]))"
)
# Bidirectional embeddings, overrides and isolates (U+202A-202E, U+2066-2069) reorder
# what a reader sees: "Ann \u202eevil" shows as "Ann live". (The marks LRM, RLM and ALM
# only nudge neutral characters, and names in right-to-left scripts may carry them.)
BIDI_CONTROLS = frozenset(map(chr, [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]))
# Letters (Unicode category L*) a reader can see: the Hangul fillers are letters that
# render as nothing.
_INVISIBLE_LETTERS = {0x115F, 0x1160, 0x3164, 0xFFA0}
LETTERS = frozenset(
    chr(code)
    for code in range(LAST + 1)
    if unicodedata.category(chr(code)).startswith("L") and code not in _INVISIBLE_LETTERS
)
# U+FFFD stands for text broken before it arrived (bytes that were not UTF-8).
REPLACEMENT = "\ufffd"
_NOT_IN_NAMES = CONTROL | BIDI_CONTROLS | {REPLACEMENT}
_NAME_FIRST = any_but(WHITESPACE | _NOT_IN_NAMES | set(FORMULA_START))
_NAME_INNER = any_but(_NOT_IN_NAMES)
_NAME_LAST = any_but(WHITESPACE | _NOT_IN_NAMES)
NAME = around(
    f"(?!{_NAME_INNER}*{WEB_ADDRESS})(?={_NAME_INNER}*{one_of(LETTERS)})"
    f"{_NAME_FIRST}(?:{_NAME_INNER}{{0,118}}{_NAME_LAST})?"
)

# -- email: local@domain. The local part is up to 64 characters without a dot at either
# end; the domain up to 186, ending in a dot and a top-level label of letters (or an IDNA
# xn-- label). Letters beyond ASCII are allowed. Bounding the parts bounds the whole
# (under 254) without a lookahead, which test generators draw slowly.
_INTERNATIONAL = any_but({*map(chr, range(0xA0)), *WHITESPACE})[1:-1]
_ATEXT = f"[A-Za-z0-9!#$%&'*+/=?^_`{{|}}~\\-{_INTERNATIONAL}]"
_ATEXT_OR_DOT = f"[A-Za-z0-9!#$%&'*+/=?^_`{{|}}~.\\-{_INTERNATIONAL}]"
_DOMAIN_CHAR = f"[A-Za-z0-9{_INTERNATIONAL}]"
_DOMAIN_INNER = f"[A-Za-z0-9.\\-{_INTERNATIONAL}]"
_TLD = f"(?:[A-Za-z{_INTERNATIONAL}]{{2,63}}|[Xx][Nn]--[A-Za-z0-9\\-]{{1,59}})"
EMAIL = around(
    f"{_ATEXT}(?:{_ATEXT_OR_DOT}{{0,62}}{_ATEXT})?"
    f"@{_DOMAIN_CHAR}(?:{_DOMAIN_INNER}{{0,120}}{_DOMAIN_CHAR})?\\.{_TLD}"
)

# -- country: an ISO 3166-1 alpha-2 code, in any case.
_BY_FIRST_LETTER: dict[str, list[str]] = {}
for _code in sorted(COUNTRY_CODES):
    _BY_FIRST_LETTER.setdefault(_code[0], []).append(_code[1])
COUNTRY = around(
    "|".join(
        f"{_caseless(first)}[{''.join(c + c.lower() for c in seconds)}]"
        for first, seconds in _BY_FIRST_LETTER.items()
    )
)

# -- a petition's slug (its address) and a partner's source code: the API's paths and
# bodies, the command line and the database's CHECK constraints (sql/) say the same.
SLUG = "^[a-z0-9][a-z0-9-]{0,99}$"
SOURCE_CODE = "^[a-z0-9_-]{1,64}$"

POSTAL_CODE = around("[A-Za-z0-9][A-Za-z0-9 \\-]{0,15}", optional=True)
# A partner's source code (the ``source`` of its signatures), without whitespace around.
SOURCE = around(SOURCE_CODE.removeprefix("^").removesuffix("$"), optional=True)
# The honeypot: anything up to 500 characters.
WEBSITE = around(
    f"{any_but(WHITESPACE)}(?:{any_but(())}{{0,498}}{any_but(WHITESPACE)})?", optional=True
)
# -- language: a BCP 47 tag such as "fr" or "ar-SY", for the confirmation email.
LANGUAGE_TAG = "[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8}){0,3}"
LANGUAGE = around(LANGUAGE_TAG, optional=True)
# A language a petition is written in: a primary subtag (sql/009_translations.sql checks
# the same pattern); readers' tags (fr-CA) choose among them by their primary subtag.
PETITION_LANGUAGE = "^[a-z]{2,3}$"
PETITION_LANGUAGE_RULE = "Use a language code of 2 or 3 lowercase letters, such as fr or ar."

# -- a privacy policy's address (sql/008_trust.sql checks the same pattern): visible ASCII
# only, so that Python, Postgres and the OpenAPI schema's ECMAScript regexes agree on it.
POLICY_URL = r"^https?://[!-~]+$"
POLICY_URL_RULE = (
    "Use an http or https address, without spaces, other characters percent-encoded "
    "(up to 2000 characters)."
)

# -- petition slug: the name in its URLs (SLUG above).
SLUG_RULE = "Use 1-100 of a-z, 0-9 and '-', starting with a letter or digit."
