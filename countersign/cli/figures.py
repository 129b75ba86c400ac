"""``countersign summary`` and ``countersign delivery``: a petition's figures, as the staff
API gives them (the same domain summary, the same CSV, the same delivery page)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import click

from countersign.cli.common import table, when, with_connection
from countersign_core.runtime import fail
from countersign_domain.export import UTF8_BOM
from countersign_domain.petitions import ManagedPetition, managed_petition
from countersign_domain.summary import Summary, summarise
from petition_api.admin.delivery import delivery_html
from petition_api.admin.routes import summary_csv
from petition_api.signature_log import delivery_log


def _figures(slug: str) -> tuple[ManagedPetition, Summary]:
    async def action(conn: asyncpg.Connection) -> tuple[ManagedPetition, Summary]:
        petition = await managed_petition(conn, slug)
        return petition, await summarise(conn, petition.id)

    return with_connection(action)


@click.command()
@click.argument("slug")
@click.option("--csv", "as_csv", is_flag=True, help="The staff API's CSV: section,key,name,count.")
def summary(slug: str, as_csv: bool) -> None:
    """A petition's figures from Postgres: total, by country, by source (signatures
    without a source as "(none)"), by day (UTC), invalidated and erased."""
    petition, figures = _figures(slug)
    if as_csv:
        # Byte for byte what the API sends (the BOM lets spreadsheets read it as UTF-8).
        click.echo(UTF8_BOM.decode() + summary_csv(figures), nl=False)
        return
    lines = [
        f"{petition.title} ({petition.slug}), {petition.effective_status}, goal {petition.goal:,}",
        "",
        table(
            ["total", "invalidated", "erased", "first signed", "last signed"],
            [
                [
                    f"{figures.total:,}",
                    f"{figures.invalidated:,}",
                    f"{figures.erased:,}",
                    when(figures.first_signed_at),
                    when(figures.last_signed_at),
                ]
            ],
        ),
    ]
    sections: list[tuple[list[str], list[list[str]]]] = [
        (
            ["country", "name", "count"],
            [[c.code, c.name, f"{c.count:,}"] for c in figures.countries],
        ),
        (["source", "count"], [[s.label, f"{s.count:,}"] for s in figures.sources]),
        (["day (UTC)", "count"], [[d.date.isoformat(), f"{d.count:,}"] for d in figures.days]),
    ]
    lines += ["\n" + table(headers, rows) for headers, rows in sections if rows]
    click.echo("\n".join(lines))


@click.command()
@click.argument("slug")
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="FILE.html, or FILE.pdf for a PDF.",
)
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
def delivery(slug: str, out_path: Path, force: bool) -> None:
    """Write the delivery page (the petition, its total, its countries and sources) to a
    file, to print or hand over: HTML, or PDF for a name ending in .pdf."""
    pdf = out_path.suffix.lower() == ".pdf"
    if not pdf and out_path.suffix.lower() not in (".html", ".htm"):
        raise click.BadParameter("name a .html or a .pdf file", param_hint="--out")
    if out_path.exists() and not force:
        fail(f"{out_path} exists: give --force to replace it", 1)

    async def action(conn: asyncpg.Connection) -> str:
        petition = await managed_petition(conn, slug)
        figures = await summarise(conn, petition.id)
        return delivery_html(petition, figures, await delivery_log(conn, petition.id))

    page = with_connection(action)
    content = pdf_of(page) if pdf else page.encode()
    try:
        out_path.write_bytes(content)
    except OSError as exc:
        fail(f"cannot write {out_path}: {exc.strerror}", 1)
    click.echo(f"wrote the delivery page of {slug} to {out_path}", err=True)


def pdf_of(page: str) -> bytes:
    """The page as a PDF, by WeasyPrint (no browser)."""
    # Imported here: WeasyPrint loads Pango, a system library (Debian: libpango-1.0-0),
    # when imported; every other command works without it.
    try:
        from weasyprint import HTML
    except (ImportError, OSError) as exc:
        fail(f"a PDF needs WeasyPrint and Pango ({exc}); write a .html file instead", 1)
    # No base URL, and nothing fetched: the page loads nothing.
    pdf: bytes = HTML(string=page, url_fetcher=_fetch_nothing).write_pdf()
    return pdf


def _fetch_nothing(url: str, *_args: Any, **_kwargs: Any) -> dict[str, Any]:
    raise ValueError("the delivery page loads nothing")
