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


# ---------------------------------------------------------------------------------------------
# The book's history: net delta with its band, limits and fills, and P&L below on the same time axis


@dataclass(frozen=True, slots=True)
class BandSpan:
    """The agent's band from `start` on (until the next span): target ± half_width."""

    start: datetime
    target: float
    half_width: float


@dataclass(frozen=True, slots=True)
class FillMark:
    at: datetime
    side: str  # "BUY" / "SELL"
    quantity: int
    label: str


@dataclass(frozen=True, slots=True)
class TimePanel:
    """One panel's geometry; x is shared by every panel of a HistoryChart."""

    height: int
    top: float
    bottom: float
    lines: list[dict]  # {"css", "points"}: one per unbroken run of known values
    band: str  # polygon points ("" when no band is known)
    hlines: list[dict]  # {"css", "y", "label"}
    markers: list[dict]  # {"x", "y", "path", "css", "label"}
    y_ticks: list[dict]  # {"y", "label"}
    off_scale: list[str]  # limits too far from the data to draw, said in words


@dataclass(frozen=True, slots=True)
class HistoryChart:
    width: int
    left: int
    right: int
    x_ticks: list[dict]  # {"x", "label"}
    delta: TimePanel
    pnl: TimePanel


_TICK_STEPS = (300, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
HISTORY_LEFT, HISTORY_RIGHT = 64, 12


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _runs(xs: list[float], ys: list[float | None], sy) -> list[str]:
    """Polyline point lists, broken where a value is unknown (never drawn as zero)."""
    runs, current = [], []
    for x, y in zip(xs, ys, strict=True):
        if y is None:
            if current:
                runs.append(current)
            current = []
            continue
        current.append(f"{x:.1f},{sy(y):.1f}")
    if current:
        runs.append(current)
    # A lone point is drawn as a zero-length segment (round caps make it a dot).
    return [" ".join(run if len(run) > 1 else run * 2) for run in runs]


def _scale(values: list[float], limits: list[float], top: float, bottom: float):
    """(sy, low, high, drawn limits): the range covers the data (and zero); a limit is drawn when
    it is within 2.5 times the data's extent, else said in words."""
    low, high = min([*values, 0.0]), max([*values, 0.0])
    extent = max(abs(low), abs(high), 1.0)
    drawn = [limit for limit in limits if abs(limit) <= 2.5 * extent]
    low, high = min([low, *drawn]), max([high, *drawn])
    if high - low < 1e-9:
        low, high = low - 1.0, high + 1.0
    pad = (high - low) * 0.06
    low, high = low - pad, high + pad

    def sy(y: float) -> float:
        return top + (high - y) / (high - low) * (bottom - top)

    return sy, low, high, drawn


def history_chart(*, start: datetime, end: datetime, times: list[datetime], delta: list[float | None],
                  pnl: list[float | None], bands: list[BandSpan], max_net_delta: float | None,
                  max_daily_loss: float | None, fills: list[FillMark], width: int = 800) -> HistoryChart:
    """Net delta (with the band as a shaded area, the ±limit lines, the fills as triangles: up for
    a buy, down for a sell) over today's P&L (with the daily-loss limit), on one time axis."""
    span = max((end - start).total_seconds(), 1.0)
    plot_width = width - HISTORY_LEFT - HISTORY_RIGHT

    def sx(moment: datetime) -> float:
        seconds = min(max((moment - start).total_seconds(), 0.0), span)
        return HISTORY_LEFT + seconds / span * plot_width

    xs = [sx(t) for t in times]
    delta = [_finite(v) for v in delta]
    pnl = [_finite(v) for v in pnl]

    # Net delta panel
    top, bottom = 10.0, 190.0
    band_values = [v for b in bands for v in (b.target - b.half_width, b.target + b.half_width)]
    limits = [max_net_delta, -max_net_delta] if max_net_delta else []
    sy, low, high, drawn = _scale([v for v in delta if v is not None] + band_values, limits, top, bottom)
    band_points = ""
    if bands:
        upper, lower = [], []
        for index, span_ in enumerate(bands):
            x0 = sx(max(span_.start, start))
            x1 = sx(bands[index + 1].start) if index + 1 < len(bands) else sx(end)
            upper += [(x0, span_.target + span_.half_width), (x1, span_.target + span_.half_width)]
            lower += [(x0, span_.target - span_.half_width), (x1, span_.target - span_.half_width)]
        band_points = " ".join(f"{x:.1f},{sy(y):.1f}" for x, y in [*upper, *reversed(lower)])
    hlines = [{"css": "limit", "y": round(sy(limit), 1), "label": f"limit {limit:+,.0f}"} for limit in drawn]
    hlines.append({"css": "zero", "y": round(sy(0.0), 1), "label": ""})
    markers = []
    for fill in fills:
        x = sx(fill.at)
        if fill.side == "BUY":
            y = bottom - 2
            path = f"M{x:.1f},{y - 9:.1f} L{x - 6:.1f},{y:.1f} L{x + 6:.1f},{y:.1f} Z"
        else:
            y = top + 2
            path = f"M{x:.1f},{y + 9:.1f} L{x - 6:.1f},{y:.1f} L{x + 6:.1f},{y:.1f} Z"
        markers.append({"x": round(x, 1), "path": path, "css": fill.side.lower(), "label": fill.label})
    off = [f"net delta limit ±{max_net_delta:,.0f} contracts (off the scale)"] if limits and not drawn else []
    delta_panel = TimePanel(
        height=200, top=top, bottom=bottom, lines=[{"css": "delta", "points": p} for p in _runs(xs, delta, sy)],
        band=band_points, hlines=hlines, markers=markers,
        y_ticks=[{"y": round(sy(v), 1), "label": f"{v:+,.1f}"} for v in (low, (low + high) / 2, high)],
        off_scale=off,
    )

    # P&L panel
    top, bottom = 8.0, 112.0
    loss = [-abs(max_daily_loss)] if max_daily_loss else []
    sy, low, high, drawn = _scale([v for v in pnl if v is not None], loss, top, bottom)
    hlines = [{"css": "limit", "y": round(sy(v), 1), "label": f"daily loss limit {v:+,.0f}"} for v in drawn]
    hlines.append({"css": "zero", "y": round(sy(0.0), 1), "label": ""})
    pnl_panel = TimePanel(
        height=136, top=top, bottom=bottom, lines=[{"css": "pnl", "points": p} for p in _runs(xs, pnl, sy)],
        band="", hlines=hlines, markers=[],
        y_ticks=[{"y": round(sy(v), 1), "label": f"{v:+,.0f}"} for v in (low, (low + high) / 2, high)],
        off_scale=[f"daily loss limit {loss[0]:+,.0f} USD (off the scale)"] if loss and not drawn else [],
    )

    step = next((s for s in _TICK_STEPS if span / s <= 6), _TICK_STEPS[-1])
    first = math.ceil(start.timestamp() / step) * step
    x_ticks = []
    for stamp in range(int(first), int(end.timestamp()) + 1, step):
        moment = datetime.fromtimestamp(stamp, tz=start.tzinfo)
        x = sx(moment)
        anchor = "end" if x > width - HISTORY_RIGHT - 20 else "start" if x < HISTORY_LEFT + 20 else "middle"
        x_ticks.append({"x": round(x, 1), "label": moment.strftime("%H:%M"), "anchor": anchor})
    return HistoryChart(width=width, left=HISTORY_LEFT, right=HISTORY_RIGHT, x_ticks=x_ticks, delta=delta_panel,
                        pnl=pnl_panel)
