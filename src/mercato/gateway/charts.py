# SPDX-License-Identifier: AGPL-3.0-only
"""Pictures drawn on the server as SVG: the lineage graph and line charts.

No JavaScript and no chart library: each function returns a small SVG document (text
escaped) that the page inlines, so the pictures show with scripts off and print well.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

from markupsafe import Markup

PALETTE = ("#2456d6", "#0f8a5f", "#c2410c", "#7c3aed", "#be185d")


@dataclass(frozen=True)
class Node:
    """A box in the lineage graph."""

    model_id: int
    label: str
    note: str = ""  # e.g. "15% royalty"


def _box(x: float, y: float, node: Node, current: bool) -> str:
    fill = "#eef3ff" if current else "#ffffff"
    stroke = "#2456d6" if current else "#9aa4b2"
    label = escape(node.label[:22])
    note = f'<text x="{x + 80}" y="{y + 40}" class="note">{escape(node.note)}</text>'
    return (
        f'<a href="/models/{node.model_id}"><rect x="{x}" y="{y}" width="160" height="50" '
        f'rx="8" fill="{fill}" stroke="{stroke}" stroke-width="{2 if current else 1}"/>'
        f'<text x="{x + 80}" y="{y + 22}" class="label">#{node.model_id} {label}</text>'
        f"{note if node.note else ''}</a>"
    )


def lineage_svg(current: Node, parents: Sequence[Node], children: Sequence[Node]) -> Markup:
    """Parents above, the model in the middle, children below, with arrows downwards."""
    rows = [list(parents), [current], list(children)]
    widest = max(len(r) for r in rows)
    width = max(widest * 180 + 20, 200)
    parts: list[str] = []
    positions: dict[int, tuple[float, float]] = {}
    y = 10.0
    for row in rows:
        if not row:
            continue
        start = (width - len(row) * 180 + 20) / 2
        for i, node in enumerate(row):
            positions[id(node)] = (start + i * 180, y)
        y += 90
    height = y - 30
    cx, cy = positions[id(current)]
    for parent in parents:
        px, py = positions[id(parent)]
        parts.append(
            f'<line x1="{px + 80}" y1="{py + 50}" x2="{cx + 80}" y2="{cy}" '
            'stroke="#9aa4b2" marker-end="url(#arrow)"/>'
        )
    for child in children:
        kx, ky = positions[id(child)]
        parts.append(
            f'<line x1="{cx + 80}" y1="{cy + 50}" x2="{kx + 80}" y2="{ky}" '
            'stroke="#9aa4b2" marker-end="url(#arrow)"/>'
        )
    for row in rows:
        for node in row:
            x, ny = positions[id(node)]
            parts.append(_box(x, ny, node, node is current))
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="Lineage of model '
        f'{current.model_id}" class="lineage"><defs><marker id="arrow" viewBox="0 0 10 10" '
        'refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto">'
        '<path d="M0,0 L10,5 L0,10 z" fill="#9aa4b2"/></marker></defs>'
        "<style>.label{font:600 13px system-ui,sans-serif;text-anchor:middle;fill:#1b2330}"
        ".note{font:12px system-ui,sans-serif;text-anchor:middle;fill:#5b6675}</style>"
        + "".join(parts)
        + "</svg>"
    )


def nice_step(span: float, count: int = 5) -> float:
    """A round tick step (1, 2, 2.5 or 5 times a power of ten) giving about `count` ticks."""
    if span <= 0:
        return 1.0
    raw = span / count
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * power:
            return factor * power
    return 10 * power


def nice_range(low: float, high: float, count: int = 5) -> tuple[float, float, float]:
    """Round axis bounds around [low, high] and the step between ticks.

    The axis spans the data, not zero to the maximum, so accuracies between 0.95 and
    0.99 use the chart's height instead of its top twentieth; a flat or nearly flat
    series gets room on both sides.
    """
    # At least a tenth of the values' size: 0.67 and 0.70 are close, not far apart.
    least = max(abs(low), abs(high)) * 0.1 or 1.0
    if high - low < least:
        middle = (high + low) / 2
        low, high = middle - least / 2, middle + least / 2
    step = nice_step(high - low, count)
    return math.floor(low / step) * step, math.ceil(high / step) * step, step


def _time_ticks(start: float, end: float) -> tuple[list[float], str]:
    """Round instants between two Unix times, and the strftime format to label them."""
    span = max(end - start, 1.0)
    steps = (
        (60, "%H:%M"),
        (300, "%H:%M"),
        (900, "%H:%M"),
        (3_600, "%H:%M"),
        (6 * 3_600, "%d %b %H:%M"),
        (86_400, "%d %b"),
        (7 * 86_400, "%d %b"),
        (30 * 86_400, "%b %Y"),
    )
    step, fmt = next(((st, f) for st, f in steps if span / st <= 6), steps[-1])
    first = math.ceil(start / step) * step
    ticks = [float(t) for t in range(int(first), int(end) + 1, int(step))]
    return ticks or [start], fmt


def line_chart_svg(
    series: dict[str, list[tuple[float, float]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    time_axis: bool = False,
    step_lines: bool = False,
    y_from_zero: bool = False,
    y_bounds: tuple[float, float] | None = None,
    width: int = 560,
    height: int = 260,
) -> Markup:
    """A line chart of named series of (x, y) points, with round ticks and a legend.

    Args:
        series: Name -> points; points are drawn in x order.
        title: Read by screen readers (aria-label) and shown as the chart's caption.
        x_label: The x axis caption.
        y_label: The y axis caption.
        time_axis: x values are Unix times: ticks fall on round minutes, hours or days
            and read as UTC dates.
        step_lines: Draw each series as steps (a running total changes at its points).
        y_from_zero: Start the y axis at 0 (amounts); otherwise the axis spans the data
            with round bounds (scores), so close values stay apart.
        y_bounds: Values the y axis never goes beyond (0 and 1 for scores that are
            fractions: no 1.02 on an accuracy axis).
        width: Pixels of the drawing (it scales to its box).
        height: Pixels.

    Returns:
        The SVG, or a short note when there is nothing to draw.
    """
    points = [p for values in series.values() for p in values]
    if not points:
        return Markup('<p class="muted">Nothing to chart yet.</p>')
    columns = max(1, (width - 60) // 190)  # legend entries side by side, ~190 units each
    rows = math.ceil(len(series) / columns)
    left, right, top, bottom = 60, 20, 12, 48 + 18 * rows
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    y_low = min(0.0, min(ys)) if y_from_zero else min(ys)
    y0, y1, y_step = nice_range(y_low, max(ys))
    if y_bounds is not None:
        y0, y1 = max(y0, y_bounds[0]), min(y1, y_bounds[1])
    x0, x1 = min(xs), max(xs)
    if time_axis:
        if x1 - x0 < 3_600:  # at least an hour, so a fresh sale is not the whole width
            x0 = x1 - 3_600
        x_ticks, fmt = _time_ticks(x0, x1)
    else:
        if all(float(x).is_integer() for x in xs):
            # Versions and the like: ticks only on whole numbers that exist, half a
            # step of room on each side so the end points are not on the frame.
            step = max(1, math.ceil(nice_step(x1 - x0)))
            x_ticks = [float(v) for v in range(int(x0), int(x1) + 1, step)]
            x0, x1 = x0 - 0.5, x1 + 0.5
        else:
            x0, x1, x_step = nice_range(x0, x1)
            x_ticks = [x0 + i * x_step for i in range(round((x1 - x0) / x_step) + 1)]
    plot_w, plot_h = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * plot_w

    def sy(y: float) -> float:
        return top + plot_h - (y - y0) / (y1 - y0) * plot_h

    def number(value: float) -> str:
        return f"{value:.10g}"

    parts = []
    count = round((y1 - y0) / y_step)
    for i in range(count + 1):
        value = y0 + i * y_step
        y = sy(value)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#eef0f3"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" class="tick" '
            f'text-anchor="end">{number(round(value, 10))}</text>'
        )
    for x in x_ticks:
        label = datetime.fromtimestamp(x, UTC).strftime(fmt) if time_axis else number(round(x, 10))
        parts.append(
            f'<line x1="{sx(x):.1f}" y1="{top + plot_h}" x2="{sx(x):.1f}" y2="{top + plot_h + 4}" '
            f'stroke="#9aa4b2"/><text x="{sx(x):.1f}" y="{top + plot_h + 16}" class="tick" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
    parts.append(
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'stroke="#9aa4b2"/>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#9aa4b2"/>'
    )
    for n, (name, values) in enumerate(series.items()):
        color = PALETTE[n % len(PALETTE)]
        ordered = sorted(values)
        coords: list[tuple[float, float]] = []
        for x, y in ordered:
            if step_lines and coords:
                coords.append((sx(x), coords[-1][1]))
            coords.append((sx(x), sy(y)))
        path = " ".join(f"{cx:.1f},{cy:.1f}" for cx, cy in coords)
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2" '
            f'class="series" data-series="{escape(name)}"/>'
        )
        for x, y in ordered:
            where = (
                datetime.fromtimestamp(x, UTC).strftime("%d %b %Y %H:%M UTC")
                if time_axis
                else f"{x:g}"
            )
            parts.append(
                f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3.5" fill="{color}">'
                f"<title>{escape(name)}: {y:.4g} at {escape(where)}</title></circle>"
            )
        lx = left + (n % columns) * 190
        ly = height - 18 * (rows - n // columns) + 4
        parts.append(
            f'<g class="legend-item"><rect x="{lx}" y="{ly - 9}" width="10" height="10" '
            f'fill="{color}"/><text x="{lx + 14}" y="{ly}" class="tick">'
            f"{escape(name[:24])}</text></g>"
        )
    parts.append(
        f'<text x="{left + plot_w}" y="{top + plot_h + 32}" class="tick axis" '
        f'text-anchor="end">{escape(x_label)}</text>'
        f'<text x="12" y="{top + plot_h / 2}" class="tick axis" transform="rotate(-90 12 '
        f'{top + plot_h / 2})" text-anchor="middle">{escape(y_label)}</text>'
    )
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="100%" role="img" aria-label="{escape(title)}" class="chart">'
        f"<title>{escape(title)}</title>"
        "<style>.tick{font:12px system-ui,sans-serif;fill:#5b6675}.axis{font-weight:600}</style>"
        + "".join(parts)
        + "</svg>"
    )
