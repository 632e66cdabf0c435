"""Line charts as inline SVG: no script, no font or file from elsewhere, so a report page
is one self-contained file that any browser (or a headless one in a test) draws alike.

A chart of tens of thousands of bars is thinned to at most `MAX_POINTS` per series,
keeping each slice's lowest and highest point, so a spike or a drawdown's trough
survives the thinning.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

MAX_POINTS: Final = 1500
WIDTH: Final = 960
HEIGHT: Final = 260
_LEFT, _RIGHT, _TOP, _BOTTOM = 72, 16, 14, 28  # margins for the axis labels

Point = tuple[int, float]  # (time in ms, value)


@dataclass(frozen=True, slots=True)
class Markers:
    """Points drawn as triangles: up for buys, down for sells."""

    points: Sequence[Point]
    color: str
    up: bool
    label: str


@dataclass(slots=True)
class Chart:
    title: str
    unit: Callable[[float], str] = lambda v: f"{v:,.2f}"
    lines: list[tuple[str, str, Sequence[Point]]] = field(default_factory=list)  # label, color
    fill: bool = False  # shade below the first line (down to its zero or bottom)
    markers: list[Markers] = field(default_factory=list)

    def line(self, label: str, color: str, points: Sequence[Point]) -> Chart:
        self.lines.append((label, color, thin(points)))
        return self

    def mark(self, markers: Markers) -> Chart:
        self.markers.append(markers)
        return self

    def svg(self) -> str:
        every = [p for _, _, pts in self.lines for p in pts] + [
            p for m in self.markers for p in m.points
        ]
        title = html.escape(self.title)
        if not every:
            return f'<figure><figcaption>{title}</figcaption><p class="empty">no data</p></figure>'
        t0, t1 = min(t for t, _ in every), max(t for t, _ in every)
        v0, v1 = min(v for _, v in every), max(v for _, v in every)
        if v0 == v1:
            v0, v1 = v0 - 1, v1 + 1
        pad = (v1 - v0) * 0.05
        v0, v1 = v0 - pad, v1 + pad
        span_t = (t1 - t0) or 1

        def x(t: int) -> float:
            return _LEFT + (t - t0) / span_t * (WIDTH - _LEFT - _RIGHT)

        def y(v: float) -> float:
            return _TOP + (v1 - v) / (v1 - v0) * (HEIGHT - _TOP - _BOTTOM)

        parts = [
            f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
            f'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{title}">',
            f'<rect x="{_LEFT}" y="{_TOP}" width="{WIDTH - _LEFT - _RIGHT}" '
            f'height="{HEIGHT - _TOP - _BOTTOM}" fill="#fafbfc" stroke="#d0d7de"/>',
        ]
        for i in range(5):  # horizontal grid lines with their values
            value = v0 + (v1 - v0) * i / 4
            gy = y(value)
            parts.append(
                f'<line x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{gy:.1f}" y2="{gy:.1f}" '
                f'stroke="#eaeef2"/><text x="{_LEFT - 6}" y="{gy + 4:.1f}" text-anchor="end" '
                f'class="axis">{html.escape(self.unit(value))}</text>'
            )
        for t, anchor in ((t0, "start"), (t1, "end")):
            parts.append(
                f'<text x="{x(t):.1f}" y="{HEIGHT - 8}" text-anchor="{anchor}" class="axis">'
                f"{_when(t)}</text>"
            )
        for index, (label, color, points) in enumerate(self.lines):
            path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in points)
            if self.fill and index == 0 and points:
                base = y(max(min(0.0, v1), v0))
                area = f"{x(points[0][0]):.1f},{base:.1f} {path} {x(points[-1][0]):.1f},{base:.1f}"
                parts.append(f'<polygon points="{area}" fill="{color}" fill-opacity="0.25"/>')
            parts.append(
                f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.6">'
                f"<title>{html.escape(label)}</title></polyline>"
            )
        for group in self.markers:
            for t, v in group.points:
                cx, cy = x(t), y(v)
                tip = cy + 7 if not group.up else cy - 7
                base = cy - 2 if not group.up else cy + 2
                parts.append(
                    f'<polygon points="{cx:.1f},{tip:.1f} {cx - 5:.1f},{base:.1f} '
                    f'{cx + 5:.1f},{base:.1f}" fill="{group.color}">'
                    f"<title>{html.escape(group.label)} {self.unit(v)} at {_when(t)}</title>"
                    "</polygon>"
                )
        parts.append("</svg>")
        legend = "".join(
            f'<span class="key"><i style="background:{color}"></i>{html.escape(label)}</span>'
            for label, color, _ in self.lines
        ) + "".join(
            f'<span class="key"><i style="background:{m.color}"></i>{html.escape(m.label)}</span>'
            for m in self.markers
        )
        return (
            f"<figure><figcaption>{title}<span class=legend>{legend}</span></figcaption>"
            f"{''.join(parts)}</figure>"
        )


def thin(points: Sequence[Point], limit: int = MAX_POINTS) -> list[Point]:
    """At most ~`limit` points: per slice, its lowest and highest, in time order."""
    if len(points) <= limit:
        return list(points)
    step = len(points) / (limit / 2)
    out: list[Point] = []
    start = 0.0
    while int(start) < len(points):
        chunk = points[int(start) : int(start + step)]
        low = min(chunk, key=lambda p: p[1])
        high = max(chunk, key=lambda p: p[1])
        out.extend(sorted({low, high}))
        start += step
    return out


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")
