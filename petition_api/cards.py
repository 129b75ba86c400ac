"""A petition's share card (``/petitions/{slug}/card.png``, petition_api/petition_page.py):
the 1200x630 image that link previews show, with the title and the current count, in
the reader's language.

Drawn by Pillow, with DejaVu Sans (static/fonts, its licence beside it), which covers
Latin, Cyrillic and Arabic. Right-to-left text is shaped and ordered by Pillow's Raqm
layout where Pillow has it (its wheels do); elsewhere, by arabic-reshaper (the letters'
joined forms) and python-bidi (the visual order). Each (petition, language) is drawn at
most once per ``refresh_seconds``: between two drawings the same image is served, so a
popular petition costs one drawing a minute, whatever its readers.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import arabic_reshaper
from bidi import get_display
from cachetools import LRUCache
from PIL import Image, ImageDraw, ImageFont, features

from countersign_core.texts import Texts
from countersign_domain.petitions import Petition, PetitionText, goal_reached
from petition_api.pages import number

WIDTH, HEIGHT = 1200, 630
MARGIN = 72
INK, ACCENT, MUTED, TRACK = "#1d1d1b", "#0b5cad", "#555555", "#e1e4e7"
FONTS = Path(str(resources.files("petition_api") / "static" / "fonts"))
# Title sizes tried in turn, largest first, until the title fits in its room; past the
# smallest, it is cut with an ellipsis.
TITLE_SIZES = (68, 60, 52, 46)
TITLE_TOP, TITLE_BOTTOM = 120, HEIGHT - 190
LINE_HEIGHT = 1.3
COUNT_SIZES = (40, 34, 28)


def base_direction(text: str) -> str:
    """ "rtl" or "ltr": the direction of the first strong character, as ``dir="auto"``
    decides (the Unicode bidirectional algorithm's rules P2 and P3)."""
    for char in text:
        kind = unicodedata.bidirectional(char)
        if kind == "L":
            return "ltr"
        if kind in ("R", "AL"):
            return "rtl"
    return "ltr"


RAQM = bool(features.check("raqm"))


@cache
def font(size: int, *, bold: bool, raqm: bool) -> ImageFont.FreeTypeFont:
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    engine = ImageFont.Layout.RAQM if raqm else ImageFont.Layout.BASIC
    return ImageFont.truetype(str(FONTS / name), size, layout_engine=engine)


class Writer:
    """Lines of text drawn in their own direction, shaped by Raqm or, without it, by
    arabic-reshaper and python-bidi."""

    def __init__(self, *, raqm: bool = RAQM) -> None:
        self.raqm = raqm

    def font(self, size: int, *, bold: bool = True) -> ImageFont.FreeTypeFont:
        return font(size, bold=bold, raqm=self.raqm)

    def _shaped(self, line: str) -> str:
        return line if self.raqm else get_display(arabic_reshaper.reshape(line))

    def width(self, line: str, face: ImageFont.FreeTypeFont) -> float:
        if self.raqm:
            return face.getlength(line, direction=base_direction(line))
        return face.getlength(self._shaped(line))

    def wrap(self, text: str, face: ImageFont.FreeTypeFont, width: float) -> list[str]:
        """Greedy wrapping on spaces, in reading (logical) order."""
        lines: list[str] = []
        for word in text.split():
            if lines and self.width(f"{lines[-1]} {word}", face) <= width:
                lines[-1] = f"{lines[-1]} {word}"
            else:
                lines.append(word)
        return lines

    def draw(
        self,
        canvas: ImageDraw.ImageDraw,
        y: float,
        line: str,
        face: ImageFont.FreeTypeFont,
        fill: str,
        direction: str,
    ) -> None:
        """One line from the start edge of its direction (the right for Arabic)."""
        x = WIDTH - MARGIN - self.width(line, face) if direction == "rtl" else MARGIN
        if self.raqm:
            canvas.text((x, y), line, font=face, fill=fill, direction=base_direction(line))
        else:
            canvas.text((x, y), self._shaped(line), font=face, fill=fill)


def draw_card(
    title: str, count: str | None, total: int | None, goal: int, site: str, writer: Writer
) -> bytes:
    """The card as PNG bytes."""
    image = Image.new("RGB", (WIDTH, HEIGHT), "#ffffff")
    canvas = ImageDraw.Draw(image)
    canvas.rectangle((0, 0, WIDTH, 16), fill=ACCENT)
    direction = base_direction(title)
    writer.draw(canvas, 52, site, writer.font(30), MUTED, base_direction(site))
    room = WIDTH - 2 * MARGIN
    for size in TITLE_SIZES:
        face = writer.font(size)
        lines = writer.wrap(title, face, room)
        most = int((TITLE_BOTTOM - TITLE_TOP) // (size * LINE_HEIGHT))
        if len(lines) <= most:
            break
    if len(lines) > most:
        lines = [*lines[: most - 1], " ".join(lines[most - 1 :])]
        while writer.width(lines[-1] + "…", face) > room and " " in lines[-1]:
            lines[-1] = lines[-1].rsplit(" ", 1)[0]
        lines[-1] += "…"
    y = float(TITLE_TOP)
    for line in lines:
        writer.draw(canvas, y, line, face, INK, direction)
        y += size * LINE_HEIGHT
    if count is not None and total is not None:
        count_face = next(
            face
            for size in COUNT_SIZES
            if writer.width(count, face := writer.font(size)) <= room or size == COUNT_SIZES[-1]
        )
        writer.draw(canvas, HEIGHT - 170, count, count_face, ACCENT, base_direction(count))
        bar = (MARGIN, HEIGHT - 96, WIDTH - MARGIN, HEIGHT - 72)
        canvas.rounded_rectangle(bar, radius=12, fill=TRACK)
        # At least a dot for a first signature; full past the goal.
        filled = max((bar[2] - bar[0]) * min(total, goal) / goal, 24) if total else 0
        if filled:
            left, right = (
                (bar[2] - filled, bar[2]) if direction == "rtl" else (bar[0], bar[0] + filled)
            )
            canvas.rounded_rectangle((left, bar[1], right, bar[3]), radius=12, fill=ACCENT)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


@dataclass(frozen=True)
class Card:
    png: bytes
    etag: str
    drawn_at: float
    # What was drawn: the same inputs need no new drawing.
    inputs: tuple[object, ...]


class CardRenderer:
    def __init__(
        self,
        *,
        refresh_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        writer: Writer | None = None,
    ) -> None:
        self._refresh = refresh_seconds
        self._clock = clock
        self._writer = writer or Writer()
        self._cards: LRUCache[tuple[int, str], Card] = LRUCache(maxsize=2_000)
        self._locks: LRUCache[tuple[int, str], asyncio.Lock] = LRUCache(maxsize=2_000)

    async def card(
        self,
        petition: Petition,
        text: PetitionText,
        texts: Texts,
        total: int | None,
    ) -> Card:
        """The card of this petition in this language: the one drawn within the last
        ``refresh_seconds``, else drawn again (in a thread: drawing takes a moment) if
        what it shows changed."""
        key = (petition.id, text.lang)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            now = self._clock()
            kept = self._cards.get(key)
            if kept is not None and now - kept.drawn_at < self._refresh:
                return kept
            if total is None and kept is not None:
                return kept  # no count to show just now: the last card is better
            count = None
            goal = petition.shown_goal(total or 0)  # the next goal once this one is reached
            if total is not None:
                reached = goal_reached(total, goal)
                count = texts(
                    "petition_reached" if reached else "petition_count",
                    n=number(texts, total),
                    goal=number(texts, goal),
                )
            inputs = (text.title, count, total, goal, texts("site_name"))
            if kept is not None and kept.inputs == inputs:
                card = Card(kept.png, kept.etag, now, inputs)
            else:
                png = await asyncio.to_thread(draw_card, *inputs, self._writer)
                card = Card(png, hashlib.blake2b(png, digest_size=12).hexdigest(), now, inputs)
            self._cards[key] = card
            return card
