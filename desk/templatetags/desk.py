"""Template filters of the desk (formatting only: the numbers come from presenters and selectors)."""
from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def duration(seconds) -> str:
    """`4 min 39 s`, as desk.js counts it down (the page reads the same before its script runs)."""
    try:
        total = max(int(seconds), 0)
    except (TypeError, ValueError):
        return "—"
    minutes, rest = divmod(total, 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


DELTA_MODEL_LABELS = {"sticky_strike": "sticky-strike", "sticky_moneyness": "sticky-moneyness",
                      "minimum_variance": "minimum-variance"}


@register.filter
def delta_model(name) -> str:
    """A delta model's name as a trader reads it: `sticky_moneyness` -> "sticky-moneyness"."""
    return DELTA_MODEL_LABELS.get(name, str(name).replace("_", "-"))
