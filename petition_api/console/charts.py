"""The dashboard's charts as numbers for the templates to draw as inline SVG.

Hand-drawn SVG (a few rectangles per chart) rather than a chart library: the console's
policy allows no inline script or style, which chart libraries' SVG output carries.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Shades of the world map, from a country with one signature to the one with the most.
MAP_LEVELS = 5
COLUMN_HEIGHT = 100


@dataclass(frozen=True)
class Progress:
    total: int
    goal: int
    percent: float  # of the goal, uncapped
    width: float  # of the bar, at most 100


@dataclass(frozen=True)
class Column:
    x: int
    height: float
    label: str
    count: int
    tick: bool  # whether the axis names this column


@dataclass(frozen=True)
class Columns:
    columns: list[Column]
    width: int  # of the view box
    highest: int


@dataclass(frozen=True)
class MapCountry:
    name: str
    count: int
    level: int  # 1..MAP_LEVELS


def progress(total: int, goal: int) -> Progress:
    percent = 100 * total / goal if goal > 0 else 0.0
    return Progress(total, goal, percent, min(percent, 100.0))


def columns(values: Sequence[tuple[str, int]], *, every: int) -> Columns:
    """One column per value, 10 units apart, scaled to the highest; every ``every``-th
    is named on the axis."""
    highest = max((count for _, count in values), default=0)
    return Columns(
        [
            Column(
                x=10 * index,
                height=COLUMN_HEIGHT * count / highest if highest else 0.0,
                label=label,
                count=count,
                tick=index % every == 0,
            )
            for index, (label, count) in enumerate(values)
        ],
        width=10 * max(len(values), 1),
        highest=highest,
    )


def map_levels(counts: Mapping[str, tuple[str, int]]) -> dict[str, MapCountry]:
    """Each country's shade: on a log scale, so that the first signatures from a country
    show beside a country with thousands."""
    highest = max((count for _, count in counts.values()), default=0)
    scale = math.log1p(highest) or 1.0
    return {
        code: MapCountry(name, count, max(1, math.ceil(MAP_LEVELS * math.log1p(count) / scale)))
        for code, (name, count) in counts.items()
        if count > 0
    }
