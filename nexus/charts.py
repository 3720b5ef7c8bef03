"""The geometry of the small bar charts pages draw as SVG (the dashboard's spending, the
operations page's failures): computed here, drawn by templates with no script."""

from __future__ import annotations

from collections.abc import Sequence


def bar_geometry(
    values: Sequence[int], *, width: float, base: float, headroom: float, label_gap: float
) -> list[dict]:
    """One bar per value across `width`, standing on the line y = `base`; the tallest reaches
    `headroom` below the base. Each bar: x, width, y, height, label_x (its centre), value and
    value_y (where its number is written, `label_gap` above it)."""
    top = max(values, default=0) or 1
    slot = width / len(values) if values else width
    bars = []
    for index, value in enumerate(values):
        height = round(value / top * headroom)
        bars.append(
            {
                "x": round(index * slot + slot * 0.15, 1),
                "width": round(slot * 0.7, 1),
                "y": base - height,
                "height": height,
                "label_x": round(index * slot + slot / 2, 1),
                "value": value,
                "value_y": base - height - label_gap,
            }
        )
    return bars
