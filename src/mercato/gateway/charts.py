# SPDX-License-Identifier: AGPL-3.0-only
"""Pictures drawn on the server as SVG: the lineage graph and line charts.

No JavaScript and no chart library: each function returns a small SVG document (text
escaped) that the page inlines, so the pictures show with scripts off and print well.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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


def line_chart_svg(
    series: dict[str, list[tuple[float, float]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    width: int = 560,
    height: int = 240,
) -> Markup:
    """A line chart of one or more named series of (x, y) points, with axes and a legend.

    Args:
        series: Name -> points; points are drawn in x order.
        title: Read by screen readers (aria-label).
        x_label: The x axis caption.
        y_label: The y axis caption.
        width: Pixels.
        height: Pixels.

    Returns:
        The SVG, or a short note when there is nothing to draw.
    """
    points = [p for values in series.values() for p in values]
    if not points:
        return Markup('<p class="muted">Nothing to chart yet.</p>')
    left, right, top, bottom = 56, 16, 16, 44
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(0.0, min(ys)), max(ys)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:
        y1 = y0 + 1
    plot_w, plot_h = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * plot_w

    def sy(y: float) -> float:
        return top + plot_h - (y - y0) / (y1 - y0) * plot_h

    parts = [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'stroke="#9aa4b2"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#9aa4b2"/>',
    ]
    for i in range(5):
        value = y0 + (y1 - y0) * i / 4
        y = sy(value)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#eef0f3"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" class="tick" '
            f'text-anchor="end">{value:.3g}</text>'
        )
    for x in sorted(set(xs)):
        parts.append(
            f'<text x="{sx(x):.1f}" y="{top + plot_h + 16}" class="tick" '
            f'text-anchor="middle">{x:g}</text>'
        )
    for n, (name, values) in enumerate(series.items()):
        color = PALETTE[n % len(PALETTE)]
        ordered = sorted(values)
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in ordered)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for x, y in ordered:
            parts.append(
                f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3.5" fill="{color}">'
                f"<title>{escape(name)}: {y:.4g} at {x:g}</title></circle>"
            )
        parts.append(
            f'<rect x="{left + 8 + n * 130}" y="{height - 14}" width="10" height="10" '
            f'fill="{color}"/><text x="{left + 22 + n * 130}" y="{height - 5}" '
            f'class="tick">{escape(name[:18])}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w}" y="{top + plot_h + 30}" class="tick" '
        f'text-anchor="end">{escape(x_label)}</text>'
        f'<text x="12" y="{top + plot_h / 2}" class="tick" transform="rotate(-90 12 '
        f'{top + plot_h / 2})" text-anchor="middle">{escape(y_label)}</text>'
    )
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="100%" role="img" aria-label="{escape(title)}" class="chart">'
        "<style>.tick{font:11px system-ui,sans-serif;fill:#5b6675}</style>"
        + "".join(parts)
        + "</svg>"
    )
