"""The widget's files, read once when the app starts: the script, its loader, the
iframe page; and the partner demo page, built from the same snippet partners paste."""

from __future__ import annotations

import hashlib
import html
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from string import Template

STATIC = Path(__file__).parent / "static"


@dataclass(frozen=True)
class WidgetAssets:
    script: bytes
    version: str
    loader: bytes
    embed_page: Template

    @classmethod
    def load(cls) -> WidgetAssets:
        script = (STATIC / "widget.js").read_bytes()
        version = hashlib.sha256(script).hexdigest()[:16]
        loader = Template((STATIC / "loader.js").read_text(encoding="utf-8"))
        return cls(
            script=script,
            version=version,
            loader=loader.substitute(version=version).encode(),
            embed_page=Template((STATIC / "embed.html").read_text(encoding="utf-8")),
        )


def partner_page(api: str, widgets: Iterable[tuple[str, str | None]]) -> str:
    """A page embedding the widget exactly as a partner would: one ``div`` per (petition
    slug, source code or None) and the ``<script>`` snippet, loaded from ``api``. The page
    also shows that very snippet, as text to copy."""
    snippet = partner_snippet(api, widgets)
    template = Template((STATIC / "partner-demo.html").read_text(encoding="utf-8"))
    return template.substitute(snippet=snippet, shown=html.escape(snippet))


def partner_snippet(api: str, widgets: Iterable[tuple[str, str | None]]) -> str:
    """What a partner pastes: the widgets' ``div`` elements and the script that fills them."""
    divs = [widget_div(slug, source=source) for slug, source in widgets]
    script = f'<script src="{html.escape(api.rstrip("/"))}/widget.js" async></script>'
    return "\n".join([*divs, script])


def widget_div(slug: str, *, source: str | None = None, lang: str | None = None) -> str:
    attributes = f' data-countersign-petition="{html.escape(slug)}"'
    if source is not None:
        attributes += f' data-source="{html.escape(source)}"'
    if lang is not None:
        attributes += f' data-lang="{html.escape(lang)}"'
    return f"<div{attributes}></div>"
