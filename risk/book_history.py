"""The book's history: one point per underlying and one for the whole book at every book sync
(`book_history_record`, called by `risk.services.book_sync`), bounded by a per-client compaction
(`book_history_compact`, queued for every client by `book_history_compact_schedule`)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from risk import governor
from risk.models import BookHistoryPoint
from risk.selectors import book_history_keep_ids
from tenants.models import Client
from tradingplatform.serialization import finite_or_none as _finite


def _money(value: float | Decimal | None) -> Decimal | None:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return governor.to_money(value)


@transaction.atomic
def book_history_record(*, valuation, realized_today: Decimal | None,
                        unrealized_today: Decimal | None) -> list[BookHistoryPoint]:
    """One history point per underlying of a valued book, and one for the whole book (with today's
    P&L as the daily-loss rule counts it), at the valuation's time. An unknown greek (a leg
    without greeks makes its underlying's net NaN) is stored as unknown, not as zero."""
    at = valuation.as_of
    rows = []
    for entry in valuation.net:
        legs = [leg for leg in valuation.legs if leg.risk.instrument.symbol == entry.symbol]
        pnls = [leg.unrealized_pnl for leg in legs]
        unrealized = None if any(p is None for p in pnls) else sum(pnls)
        rows.append(BookHistoryPoint(
            at=at, underlying=entry.symbol, net_delta=_finite(entry.greeks.delta),
            net_gamma=_finite(entry.greeks.gamma), net_vega=_finite(entry.greeks.vega),
            net_theta=_finite(entry.greeks.theta),
            unrealized_pnl=_money(unrealized), open_legs=len(legs),
        ))
    totals = [_finite(sum(getattr(entry.greeks, name) for entry in valuation.net))
              for name in ("delta", "gamma", "vega", "theta")]
    rows.append(BookHistoryPoint(
        at=at, underlying=BookHistoryPoint.BOOK, net_delta=totals[0], net_gamma=totals[1], net_vega=totals[2],
        net_theta=totals[3], unrealized_pnl=_money(valuation.unrealized_pnl), realized_pnl_today=_money(realized_today),
        daily_pnl=(realized_today + unrealized_today) if realized_today is not None and unrealized_today is not None
        else None,
        open_legs=len(valuation.legs),
    ))
    return BookHistoryPoint.objects.bulk_create(rows)


@dataclass(frozen=True, slots=True)
class CompactionResult:
    """What a compaction of a history (the book's, the option quotes') removed."""

    thinned: int  # rows older than the compaction age that were not the last of their step
    expired: int  # rows older than the retention


@transaction.atomic
def book_history_compact(*, now: datetime | None = None) -> CompactionResult:
    """Bound the history (settings BOOK_HISTORY_*): drop the points older than the retention, and
    keep of those older than the compaction age only the last of each step per underlying (steps
    aligned on the epoch, so running it again changes nothing)."""
    now = now or timezone.now()
    retention_start = now - timedelta(days=settings.BOOK_HISTORY_RETENTION_DAYS)
    compact_before = now - timedelta(hours=settings.BOOK_HISTORY_COMPACT_AFTER_HOURS)
    expired, _ = BookHistoryPoint.objects.filter(at__lt=retention_start).delete()
    thinned = 0
    if compact_before > retention_start:
        keep = book_history_keep_ids(start=retention_start, end=compact_before,
                                     step_seconds=settings.BOOK_HISTORY_COMPACT_STEP_MINUTES * 60)
        thinned, _ = (BookHistoryPoint.objects.filter(at__gte=retention_start, at__lt=compact_before)
                      .exclude(pk__in=keep).delete())
    return CompactionResult(thinned=thinned, expired=expired)


def book_history_compact_schedule() -> list[str]:
    """Queue one compaction per client, each sent from that client's schema; returns their ids."""
    from django_tenants.utils import get_public_schema_name, tenant_context

    from risk.tasks import book_history_compact_task

    queued = []
    for client in Client.objects.exclude(schema_name=get_public_schema_name()).order_by("client_id"):
        with tenant_context(client):
            book_history_compact_task.delay(client.client_id)
        queued.append(client.client_id)
    return queued
