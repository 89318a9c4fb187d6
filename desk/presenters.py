"""Numbers into what a trader reads at a glance: usage bars, signed amounts, the risk graph's
geometry. Pure: no Django, no I/O; the templates draw what these return."""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any


@dataclass(frozen=True, slots=True)
class Usage:
    """How much of a limit is used: a bar from 0 to 100 %, a level that names it in words too."""

    label: str
    value: float | None
    limit: float | None
    unit: str

    @property
    def percent(self) -> float | None:
        if self.value is None or not self.limit:
            return None
        return min(abs(self.value) / abs(self.limit) * 100.0, 100.0)

    @property
    def level(self) -> str:
        percent = self.percent
        if percent is None:
            return "unknown"
        return "breach" if percent >= 100.0 else "high" if percent >= 80.0 else "ok"


def number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        result = float(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        return None
    return result if math.isfinite(result) else None


def signed(value: Any, decimals: int = 2) -> str:
    """`+1.25`, `-3.00`, or an em dash for unknown: the sign is always written, never only coloured."""
    number_ = number(value)
    if number_ is None:
        return "—"
    return f"{number_:+,.{decimals}f}"


def age_seconds(moment: datetime | None, now: datetime) -> float | None:
    return None if moment is None else max((now - moment).total_seconds(), 0.0)


@dataclass(frozen=True, slots=True)
class Chart:
    """A line chart's geometry in a fixed viewBox (the SVG scales to its container)."""

    width: int
    height: int
    series: list[dict]  # {"name", "points": "x,y x,y ...", "css"}
    zero_y: float | None
    x_ticks: list[dict]  # {"x", "label"}
    y_ticks: list[dict]  # {"y", "label"}


def line_chart(xs: list[float], series: list[tuple[str, list[float], str]], *, width: int = 640, height: int = 280,
               x_label=lambda x: f"{x:+.0%}", y_label=lambda y: f"{y:+,.0f}") -> Chart:
    """Scale series sharing one x axis into the viewBox, with a zero line and a few ticks."""
    pad_left, pad_right, pad_top, pad_bottom = 64, 12, 12, 28
    values = [v for _, ys, _ in series for v in ys if math.isfinite(v)] or [0.0]
    low, high = min(min(values), 0.0), max(max(values), 0.0)
    if high - low < 1e-9:
        low, high = low - 1.0, high + 1.0
    x_low, x_high = min(xs), max(xs)
    span_x = (x_high - x_low) or 1.0

    def sx(x: float) -> float:
        return pad_left + (x - x_low) / span_x * (width - pad_left - pad_right)

    def sy(y: float) -> float:
        return pad_top + (high - y) / (high - low) * (height - pad_top - pad_bottom)

    drawn = [{"name": name, "css": css,
              "points": " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(xs, ys, strict=True) if math.isfinite(y))}
             for name, ys, css in series]
    x_ticks = [{"x": round(sx(x), 1), "label": x_label(x)} for x in xs[:: max(len(xs) // 4, 1)]]
    y_ticks = [{"y": round(sy(y), 1), "label": y_label(y)} for y in (low, (low + high) / 2, high)]
    return Chart(width=width, height=height, series=drawn, zero_y=round(sy(0.0), 1), x_ticks=x_ticks, y_ticks=y_ticks)
