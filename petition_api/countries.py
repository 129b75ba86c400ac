"""Countries named in the reader's language, for the pages: the form's list and the top
countries. The names are ISO 3166's, translated by the iso-codes project (the catalogues
pycountry ships): the short common name where it has one ("Syria"), else the official
one. A browser names them itself in the widget (Intl.DisplayNames)."""

from __future__ import annotations

import gettext
import unicodedata
from functools import cache

import pycountry


@cache
def _catalogue(lang: str) -> gettext.NullTranslations:
    return gettext.translation("iso3166-1", pycountry.LOCALES_DIR, languages=[lang], fallback=True)


@cache
def country_name(code: str, lang: str) -> str:
    """The country's name in ``lang`` (English where it has none); the code itself for
    an unknown one."""
    country = pycountry.countries.get(alpha_2=code)
    if country is None:
        return code
    catalogue = _catalogue(lang)
    common = getattr(country, "common_name", None)
    if common is not None and (translated := catalogue.gettext(common)) != common:
        return translated
    return catalogue.gettext(country.name) if lang != "en" or common is None else common


def _sort_key(name: str) -> str:
    # "Égypte" sorts among the E: accents aside, then case aside.
    decomposed = unicodedata.normalize("NFKD", name)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


@cache
def countries_in(lang: str) -> tuple[tuple[str, str], ...]:
    """Every country as (code, name in ``lang``), in the order of the names."""
    named = ((c.alpha_2, country_name(c.alpha_2, lang)) for c in pycountry.countries)
    return tuple(sorted(named, key=lambda pair: _sort_key(pair[1])))
