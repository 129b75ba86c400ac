"""The world map of the dashboard: country shapes from pygal_maps_world's boundaries,
made small enough to inline in every dashboard page.

The package ships one SVG file, a path per land mass grouped by ISO 3166-1 alpha-2 code,
and a circle marking each country too small to see. Read once per process: the curves
become their end points, at half the scale, rounded to whole units, which shrinks the
file about ten times and stays sharp at the width a dashboard shows it.
"""

from __future__ import annotations

import functools
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources

_SVG = "{http://www.w3.org/2000/svg}"
SCALE = 0.5
# Arguments each path command takes, and how many of them are a point's coordinates.
_ARITY = {"m": 2, "l": 2, "c": 6, "h": 1, "v": 1, "z": 0}
_TOKEN = re.compile(r"[A-Za-z]|-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


@dataclass(frozen=True)
class Country:
    code: str  # ISO 3166-1 alpha-2, in capitals
    path: str  # the shapes, as SVG path data in the map's coordinates
    marker: tuple[int, int] | None  # where the circle of a small country goes


@dataclass(frozen=True)
class WorldMap:
    view_box: str
    countries: tuple[Country, ...]


def _points(data: str) -> Iterator[list[tuple[float, float]]]:
    """Each subpath of SVG path data as its points: the end points of its segments.

    Hand-written: six commands, where an SVG library would bring its whole geometry."""
    tokens = _TOKEN.findall(data)
    x = y = 0.0
    subpath: list[tuple[float, float]] = []
    command = ""
    i = 0
    while i < len(tokens):
        if tokens[i].isalpha():
            command = tokens[i]
            i += 1
        lower = command.lower()
        if lower == "z":
            if subpath:
                yield subpath
                x, y = subpath[0]
            subpath = []
            continue
        args = [float(token) for token in tokens[i : i + _ARITY[lower]]]
        i += _ARITY[lower]
        relative = command.islower()
        if lower == "h":
            x = x + args[0] if relative else args[0]
        elif lower == "v":
            y = y + args[0] if relative else args[0]
        else:
            dx, dy = args[-2], args[-1]
            x, y = (x + dx, y + dy) if relative else (dx, dy)
        if lower == "m":
            if subpath:
                yield subpath
            subpath = []
            command = "l" if relative else "L"  # further pairs are line segments
        subpath.append((x, y))
    if subpath:
        yield subpath


def _compact(data: str) -> str:
    """Path data at the map's scale in whole units, relative, without repeated points."""
    parts = []
    for subpath in _points(data):
        points: list[tuple[int, int]] = []
        for px, py in subpath:
            point = (round(px * SCALE), round(py * SCALE))
            if not points or point != points[-1]:
                points.append(point)
        if len(points) < 3:
            continue  # smaller than a unit: the country's circle shows it
        (x0, y0), rest = points[0], points[1:]
        steps = " ".join(
            f"{bx - ax},{by - ay}" for (ax, ay), (bx, by) in zip(points, rest, strict=False)
        )
        parts.append(f"M{x0},{y0}l{steps}z")
    return "".join(parts)


@functools.cache
def world_map() -> WorldMap:
    source = resources.files("pygal_maps_world") / "worldmap.svg"
    # The installed package's own file, not input from anyone.
    root = ET.fromstring(source.read_text(encoding="utf-8"))  # noqa: S314
    left, top, width, height = (float(n) * SCALE for n in root.attrib["viewBox"].split())
    countries = []
    for group in root.iter(f"{_SVG}g"):
        classes = group.attrib.get("class", "").split()
        if "country" not in classes:
            continue
        marker = None
        for circle in group.iter(f"{_SVG}circle"):
            marker = (
                round(float(circle.attrib["cx"]) * SCALE),
                round(float(circle.attrib["cy"]) * SCALE),
            )
        path = "".join(_compact(p.attrib["d"]) for p in group.iter(f"{_SVG}path"))
        countries.append(Country(classes[0].upper(), path, marker))
    view_box = f"{left:.0f} {top:.0f} {width:.0f} {height:.0f}"
    return WorldMap(view_box, tuple(sorted(countries, key=lambda c: c.code)))
