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
