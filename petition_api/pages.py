"""HTML pages for people: a petition's page, the answers to its form, the home page, the
confirmation link's pages and the error pages, in the reader's language.

Jinja2 templates, autoescaped. Every page goes out with headers that keep it inert: a
Content-Security-Policy that allows its own stylesheet (by hash), its own script (a
versioned file of this site), requests back to this site and forms posting to it, and
nothing from anywhere else; no Referer, since a confirmation token may be in the page's
URL; no framing, so that nobody can trick a visitor into clicking a framed button; no
MIME sniffing. The script only improves pages that work without it.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

from aiohttp import web
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from countersign_core.settings import PrivacyConfig
from countersign_core.texts import DEFAULT_LANGUAGE, TextCatalog, Texts
from countersign_domain.petitions import PrivacyNotice

Page = Literal[
    "confirm", "confirmed", "expired", "damaged", "gone", "closed", "request", "requested"
]
# Pages that offer a form, and which one.
_FORMS: dict[Page, str] = {
    "confirm": "confirm",
    "expired": "request",
    "damaged": "request",
    "request": "request",
}
# Pages whose answer depends on who asks (a form echoed back, a confirmation link's
# state) are never stored; the others may be reused after a check.
PRIVATE = "no-store"
PUBLIC = "no-cache"


@dataclass(frozen=True)
class PageScript:
    """The pages' script, served at ``/assets/page-<version>.js``."""

    body: bytes
    version: str

    @classmethod
    def load(cls) -> PageScript:
        body = (resources.files("petition_api") / "static" / "page.js").read_bytes()
        return cls(body, hashlib.sha256(body).hexdigest()[:16])

    @property
    def url(self) -> str:
        return f"/assets/page-{self.version}.js"


class Pages:
    def __init__(self, catalog: TextCatalog, privacy: PrivacyConfig) -> None:
        self.catalog = catalog
        self.script = PageScript.load()
        # The deployment's notice: pages about no petition in particular show it.
        self.privacy = PrivacyNotice.of(privacy)
        self._env = Environment(
            loader=PackageLoader("petition_api", "templates"),
            autoescape=select_autoescape(("html",)),
            undefined=StrictUndefined,
            trim_blocks=True,
        )
        css = (resources.files("petition_api") / "templates" / "page.css").read_text("utf-8")
        # Our own file, inserted as it is (escaping could change it): it is what is hashed.
        self._style = Markup(css)  # noqa: S704
        style_hash = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
        self.policy = (
            f"default-src 'none'; style-src 'sha256-{style_hash}'; script-src 'self'; "
            "connect-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; "
            "frame-ancestors 'none'"
        )
        self.headers = {
            "Content-Security-Policy": self.policy,
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",
        }

    def texts_for(
        self, request: web.Request, explicit: str | None = None, fallback: str = DEFAULT_LANGUAGE
    ) -> Texts:
        """The interface's texts for a reader: the language asked for explicitly, else
        their browser's first choice we have, else ``fallback`` (a petition's default)."""
        lang = self.catalog.negotiate(explicit, request.headers.get("Accept-Language"), fallback)
        return self.catalog.get(lang)

    def html(
        self,
        template: str,
        texts: Texts,
        *,
        status: int = 200,
        cache: str = PRIVATE,
        headers: Mapping[str, str] | None = None,
        **context: Any,
    ) -> web.Response:
        context.setdefault("languages", [])
        context.setdefault("privacy", self.privacy)
        body = self._env.get_template(template).render(
            t=texts,
            style=self._style,
            script=self.script.url,
            number=lambda n: number(texts, n),
            **context,
        )
        return web.Response(
            text=body,
            status=status,
            content_type="text/html",
            headers={**self.headers, "Cache-Control": cache, **(headers or {})},
        )

    def render(
        self,
        request: web.Request,
        page: Page,
        *,
        status: int = 200,
        title: str = "",
        title_lang: str | None = None,
        invalid: bool = False,
        receipt: str | None = None,
        texts: Texts | None = None,
        **context: Any,
    ) -> web.Response:
        """A confirmation page, in ``texts`` or the reader's browser's language, with a
        ``privacy`` notice in the context (the petition's; else the deployment's)."""
        texts = texts or self.texts_for(request)
        marked = texts.foreign(title, title_lang or texts.language)
        context.setdefault("view", None)
        return self.html(
            "page.html",
            texts,
            status=status,
            heading=texts(f"page_{page}_title", title=title),
            text=texts.html(f"page_{page}_text", title=marked),
            form=_FORMS.get(page),
            action=request.path,
            invalid=invalid,
            receipt=receipt,
            **context,
        )

    def error(self, request: web.Request, status: int, code: str) -> web.Response:
        """The HTML answer of an error, for browsers, in the reader's language."""
        texts = self.texts_for(request, request.query.get("lang"))
        if status == 404:
            heading, text = texts("error_not_found_title"), texts("error_not_found_text")
        elif status in (400, 413, 415, 422):
            heading, text = texts("error_title"), texts("error_bad_request_text")
        else:
            heading, text = texts("error_title"), texts("error_text")
        return self.html(
            "error.html",
            texts,
            status=status,
            heading=heading,
            text=text,
            headers={"X-Error-Code": code},
        )


def number(texts: Texts, value: int) -> str:
    """``12345`` as the language groups digits (``12,345``, ``12 345``)."""
    return f"{value:,}".replace(",", texts("number_group"))
