"""HTML pages for people (the confirmation link's), beside the JSON API.

Jinja2 templates, autoescaped. Every page goes out with headers that keep it inert: a
Content-Security-Policy that allows nothing but its own stylesheet (by hash) and forms
posting back to this site; no Referer, since a confirmation token is in the page's URL;
no framing, so that nobody can trick a visitor into clicking a framed button; no
caching; no MIME sniffing.
"""

from __future__ import annotations

import base64
import hashlib
from importlib import resources
from typing import Literal

from aiohttp import web
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from countersign_core.settings import PrivacyConfig
from countersign_core.texts import TextCatalog
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


class Pages:
    def __init__(self, catalog: TextCatalog, privacy: PrivacyConfig) -> None:
        self._catalog = catalog
        # The deployment's notice: pages about no petition in particular show it.
        self._privacy = PrivacyNotice.of(privacy)
        self._env = Environment(
            loader=PackageLoader("petition_api", "templates"),
            autoescape=select_autoescape(("html",)),
            undefined=StrictUndefined,
        )
        css = (resources.files("petition_api") / "templates" / "page.css").read_text("utf-8")
        # Our own file, inserted as it is (escaping could change it): it is what is hashed.
        self._style = Markup(css)  # noqa: S704
        style_hash = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
        self.headers = {
            "Content-Security-Policy": (
                f"default-src 'none'; style-src 'sha256-{style_hash}'; form-action 'self'; "
                "base-uri 'none'; frame-ancestors 'none'"
            ),
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",
            "Cache-Control": "no-store",
        }

    def render(
        self,
        request: web.Request,
        page: Page,
        *,
        status: int = 200,
        title: str = "",
        invalid: bool = False,
        receipt: str | None = None,
        privacy: PrivacyNotice | None = None,
    ) -> web.Response:
        """The page in the reader's language (their browser's Accept-Language), with the
        privacy notice (the petition's, else the deployment's)."""
        texts = self._catalog.get(
            self._catalog.negotiate(None, request.headers.get("Accept-Language"))
        )
        body = self._env.get_template("page.html").render(
            t=texts,
            heading=texts(f"page_{page}_title", title=title),
            text=texts(f"page_{page}_text", title=title),
            form=_FORMS.get(page),
            action=request.path,
            invalid=invalid,
            receipt=receipt,
            style=self._style,
            privacy=privacy or self._privacy,
        )
        return web.Response(
            text=body, status=status, content_type="text/html", headers=self.headers
        )
