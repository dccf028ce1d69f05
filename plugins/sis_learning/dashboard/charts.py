"""Inline SVG charts for the district page: no JavaScript, no chart library, no request of its own.

``line_chart`` draws one line per series over the runs (oldest on the left); ``bar_chart``
stacks the changes of each run. Values and labels are escaped; every point carries a
``<title>`` (the browser's tooltip) with the run and the value, so the figures can be read
without hovering guesswork.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 14, 34
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#d62728", "#8c564b")


def _nice_max(value: float) -> float:
    """The smallest 1/2/5 x 10^n at or above ``value`` (an axis top a reader can take in)."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return float(step * magnitude)
    return float(10 * magnitude)


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 10 or value == int(value) else f"{value:,.1f}"


def _frame(title: str, top: float, labels: Sequence[str], plot_width: float) -> list[str]:
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'role="img" aria-label="{escape(title)}" class="chart">',
        f"<title>{escape(title)}</title>",
    ]
    plot_height = HEIGHT - TOP - BOTTOM
    for tick in range(5):
        value = top * tick / 4
        y = TOP + plot_height - plot_height * tick / 4
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_width}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#555">{_number(value)}</text>'
        )
    if labels:
        first, last = labels[0], labels[-1]
        parts.append(f'<text x="{LEFT}" y="{HEIGHT - 8}" font-size="11" fill="#555">{escape(first)}</text>')
        if len(labels) > 1:
            parts.append(
                f'<text x="{LEFT + plot_width}" y="{HEIGHT - 8}" text-anchor="end" font-size="11" '
                f'fill="#555">{escape(last)}</text>'
            )
    return parts


def line_chart(title: str, labels: Sequence[str], series: dict[str, Sequence[float]]) -> str:
    """One line per series; ``labels`` name the points (oldest first)."""
    plot_width = WIDTH - LEFT - RIGHT - 130
    plot_height = HEIGHT - TOP - BOTTOM
    top = _nice_max(max((max(values) for values in series.values() if values), default=0))
    parts = _frame(title, top, labels, plot_width)
    count = len(labels)
    for index, (name, values) in enumerate(series.items()):
        colour = COLOURS[index % len(COLOURS)]

        def point(position: int, value: float) -> tuple[float, float]:
            x = LEFT + (plot_width * position / (count - 1) if count > 1 else plot_width / 2)
            return x, TOP + plot_height - plot_height * value / top

        points = [point(position, value) for position, value in enumerate(values)]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
        for (x, y), label, value in zip(points, labels, values, strict=False):
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}">'
                f"<title>{escape(label)}: {escape(name)} {_number(value)}</title></circle>"
            )
        legend_y = TOP + 14 + 18 * index
        parts.append(f'<rect x="{WIDTH - 120}" y="{legend_y - 9}" width="10" height="10" fill="{colour}"/>')
        last = values[-1] if values else 0
        parts.append(f'<text x="{WIDTH - 105}" y="{legend_y}" font-size="12">{escape(name)} {_number(last)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(title: str, labels: Sequence[str], series: dict[str, Sequence[float]]) -> str:
    """Stacked bars, one per label (run), one colour per series (change kind)."""
    plot_width = WIDTH - LEFT - RIGHT - 130
    plot_height = HEIGHT - TOP - BOTTOM
    count = len(labels)
    totals = [sum(values[position] for values in series.values()) for position in range(count)]
    top = _nice_max(max(totals, default=0))
    parts = _frame(title, top, labels, plot_width)
    slot = plot_width / max(count, 1)
    bar = max(slot * 0.7, 1.0)
    for position, label in enumerate(labels):
        base = TOP + plot_height
        x = LEFT + slot * position + (slot - bar) / 2
        for index, (name, values) in enumerate(series.items()):
            value = values[position]
            if not value:
                continue
            height = plot_height * value / top
            base -= height
            parts.append(
                f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar:.1f}" height="{height:.1f}" '
                f'fill="{COLOURS[index % len(COLOURS)]}"><title>{escape(label)}: {escape(name)} '
                f"{_number(value)}</title></rect>"
            )
    for index, name in enumerate(series):
        legend_y = TOP + 14 + 18 * index
        parts.append(
            f'<rect x="{WIDTH - 120}" y="{legend_y - 9}" width="10" height="10" '
            f'fill="{COLOURS[index % len(COLOURS)]}"/>'
        )
        parts.append(f'<text x="{WIDTH - 105}" y="{legend_y}" font-size="12">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)
