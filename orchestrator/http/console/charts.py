"""A small inline SVG bar chart for the providers page: sessions per provider and currency,
each bar split by status. Pure: rows in, markup (escaped by the template engine's
``Markup`` rules: every label goes through ``escape``) out. No script, no inline style:
the console's Content-Security-Policy forbids both, so colours are SVG attributes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from markupsafe import Markup, escape

from projections.schemas import ProviderTotal

__all__ = ["STATUS_COLOURS", "totals_chart"]

STATUS_COLOURS = {
    "complete": "#2e7d32",
    "open": "#1565c0",
    "processing": "#6a1b9a",
    "expired": "#9e9e9e",
    "failed": "#c62828",
}
_BAR = 18
_GAP = 8
_LABEL = 130
_WIDTH = 560


def totals_chart(totals: Iterable[ProviderTotal]) -> Markup:
    """Horizontal bars, one per (provider, currency), scaled to the largest."""
    bars: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for total in totals:
        bars[(total.provider or "none", total.currency)][total.status] = total.sessions
    if not bars:
        return Markup("<p>No checkouts in this period.</p>")
    largest = max(sum(parts.values()) for parts in bars.values()) or 1
    scale = (_WIDTH - _LABEL - 50) / largest
    height = len(bars) * (_BAR + _GAP) + 30
    shapes: list[str] = []
    for row, ((provider, currency), parts) in enumerate(sorted(bars.items())):
        y = row * (_BAR + _GAP)
        shapes.append(
            f'<text x="0" y="{y + 13}" font-size="12">{escape(provider)} {escape(currency)}</text>'
        )
        x = float(_LABEL)
        for status, colour in STATUS_COLOURS.items():
            count = parts.get(status, 0)
            if count:
                width = count * scale
                shapes.append(
                    f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="{_BAR}" '
                    f'fill="{colour}"><title>{escape(status)}: {count}</title></rect>'
                )
                x += width
        shapes.append(
            f'<text x="{x + 4:.1f}" y="{y + 13}" font-size="12">{sum(parts.values())}</text>'
        )
    legend_y = len(bars) * (_BAR + _GAP) + 16
    for index, (status, colour) in enumerate(STATUS_COLOURS.items()):
        x = _LABEL + index * 85
        shapes.append(f'<rect x="{x}" y="{legend_y - 10}" width="10" height="10" fill="{colour}"/>')
        shapes.append(f'<text x="{x + 14}" y="{legend_y}" font-size="11">{status}</text>')
    body = "".join(shapes)
    # Safe: every text in `body` went through `escape`; the rest are our numbers.
    return Markup(  # noqa: S704
        f'<svg class="chart" role="img" aria-label="sessions per provider and currency" '
        f'width="{_WIDTH}" height="{height}" viewBox="0 0 {_WIDTH} {height}" '
        f'xmlns="http://www.w3.org/2000/svg">{body}</svg>'
    )
