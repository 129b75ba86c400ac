"""The console's sub-application: its middleware, templates and texts."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path

import jinja2
from aiohttp import web

from countersign_core.texts import TextCatalog
from petition_api import routes
from petition_api.admin.delivery import long_date, number
from petition_api.console.pages import CONSOLE_TEXTS, TEMPLATES, console_middleware
from petition_api.console.signing_in import LINK_TASKS, finish_link_tasks


def create_console_app(texts_dir: Path | None) -> web.Application:
    """``texts_dir``: COUNTERSIGN_TEXTS_DIR, whose ``console/`` folder overrides texts."""
    console = web.Application(middlewares=[console_middleware])
    console[LINK_TASKS] = set[asyncio.Task[None]]()
    console.cleanup_ctx.append(functools.partial(_files, texts_dir=texts_dir))
    console.on_shutdown.append(finish_link_tasks)
    console.add_routes(routes.CONSOLE)
    return console


def when(value: datetime | None) -> str:
    """A moment as staff read it in tables: UTC, to the minute."""
    return value.astimezone().strftime("%Y-%m-%d %H:%M UTC") if value else "-"


async def _files(app: web.Application, *, texts_dir: Path | None) -> AsyncIterator[None]:
    """The console's texts and templates (the delivery page's too), read once."""
    app[CONSOLE_TEXTS] = TextCatalog.load(texts_dir, part="console")
    filters: dict[str, Callable[..., str]] = {
        "number": number,
        "long_date": long_date,
        "when": when,
    }
    environment = jinja2.Environment(
        loader=jinja2.ChoiceLoader(
            [
                jinja2.PackageLoader("petition_api.console", "templates"),
                jinja2.PackageLoader("petition_api.admin", "templates"),
            ]
        ),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        enable_async=False,
    )
    environment.filters.update(filters)
    app[TEMPLATES] = environment
    yield
