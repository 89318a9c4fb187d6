"""Services of the options' quote history: record it at each book sync, bound it, and estimate the
minimum-variance delta's coefficients from it (Hull & White 2017, `risk.delta_models`).

The book sync quotes the held options and the chain strikes around the money of each held expiry
(`brokers.services.smile_quotes_add`); every one of those with a usable two-sided quote becomes one
`OptionQuotePoint`. Consecutive syncs give Hull & White's observations (`risk.selectors.
minimum_variance_observations`), so the platform estimates a, b, c from its own history."""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from brokers.domain import Quote
from risk.book import years_to_expiry
from risk.book_history import CompactionResult
from risk.delta_models import (
    EstimateFailure,
    MinimumVarianceCoefficients,
    estimate_minimum_variance,
    minimum_variance_r_squared,
)
from risk.greeks import implied_vol
from risk.models import OptionQuotePoint
from risk.selectors import minimum_variance_observations

# The interval of the estimate's observations: the bench's warm-up step (bench/hedging_bench.py).
DEFAULT_STEP_MINUTES = 30


def _two_sided(quote: Quote) -> bool:
    return (quote.data_type != "none" and quote.bid is not None and quote.ask is not None
            and math.isfinite(quote.bid) and math.isfinite(quote.ask) and 0.0 < quote.bid <= quote.ask
            and quote.underlying_price is not None and math.isfinite(quote.underlying_price)
            and quote.underlying_price > 0.0)


@transaction.atomic
def option_history_record(*, quotes: Mapping[str, Quote], at: datetime) -> list[OptionQuotePoint]:
    """One row per option in `quotes` with a two-sided quote (bid > 0, ask >= bid), a known future
    price, time left and an implied vol its mid reproduces, at `at` (the sync's valuation time);
    one insert. One-sided, empty or expired quotes are not history: they are skipped."""
    quoted = [q for q in quotes.values() if q.instrument.is_option and _two_sided(q)]
    if not quoted:
        return []
    years = np.array([years_to_expiry(q.instrument, at) for q in quoted])
    mids = np.array([q.mid for q in quoted])
    forwards = np.array([q.underlying_price for q in quoted])
    vols = implied_vol(mids, forwards, np.array([q.instrument.strike for q in quoted]), years,
                       settings.RISK_FREE_RATE, np.array([q.instrument.right == "C" for q in quoted]))
    rows = [
        OptionQuotePoint(at=at, underlying=q.instrument.symbol, option_key=q.instrument.key,
                         expiry=q.instrument.expiry, strike=q.instrument.strike, right=q.instrument.right,
                         years=float(years[i]), forward=float(forwards[i]), mid=float(mids[i]),
                         implied_vol=float(vols[i]))
        for i, q in enumerate(quoted) if years[i] > 0.0 and math.isfinite(vols[i]) and vols[i] > 0.0
    ]
    return OptionQuotePoint.objects.bulk_create(rows)


@transaction.atomic
def option_history_compact(*, now: datetime | None = None) -> CompactionResult:
    """Bound the history: drop the quotes older than OPTION_HISTORY_DAYS, and of those older than
    BOOK_HISTORY_COMPACT_AFTER_HOURS keep only the last sync's of each DEFAULT_STEP_MINUTES step per
    underlying (aligned on the epoch like the estimate's steps, so the default estimate is the same
    before and after; running it again changes nothing)."""
    now = now or timezone.now()
    start = now - timedelta(days=settings.OPTION_HISTORY_DAYS)
    compact_before = now - timedelta(hours=settings.BOOK_HISTORY_COMPACT_AFTER_HOURS)
    expired, _ = OptionQuotePoint.objects.filter(at__lt=start).delete()
    thinned = 0
    if compact_before > start:
        table = OptionQuotePoint._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {table} WHERE at >= %s AND at < %s AND (underlying, at) NOT IN ("
                f"SELECT underlying, max(at) FROM {table} WHERE at >= %s AND at < %s "
                f"GROUP BY underlying, floor(extract(epoch FROM at) / %s))",
                [start, compact_before, start, compact_before, float(DEFAULT_STEP_MINUTES * 60)])
            thinned = cursor.rowcount
    return CompactionResult(thinned=thinned, expired=expired)


@dataclass(frozen=True, slots=True)
class MinimumVarianceEstimate:
    """Hull & White's coefficients for one underlying from the stored history since `since`, or
    why there are none (`reason`). `r_squared`: the share of the sticky-strike hedge's squared
    error the coefficients remove over the same observations (`delta_models.
    minimum_variance_r_squared`)."""

    underlying: str
    since: datetime
    # The regression's observations (the usable ones) when it ran; else those the history gave.
    observations: int
    coefficients: MinimumVarianceCoefficients | None
    r_squared: float | None
    reason: str | None


def minimum_variance_estimate(*, underlying: str, days: int, step_minutes: int = DEFAULT_STEP_MINUTES,
                              now: datetime | None = None) -> MinimumVarianceEstimate:
    """Estimate a, b, c for `underlying` from the quotes stored over the last `days` days, over
    intervals of about `step_minutes` (the last sync of each step: one-minute mid changes are
    mostly the quotes' tick noise, and the observations stay a few per option per hour). Reads
    only: applying them is the agent's parameter update (`estimate_delta_coefficients --apply`)."""
    if days <= 0 or step_minutes <= 0:
        raise ValueError("days and step_minutes must be positive")
    since = (now or timezone.now()) - timedelta(days=days)
    observations = minimum_variance_observations(underlying, since, step_seconds=step_minutes * 60)
    rate = settings.RISK_FREE_RATE
    result = estimate_minimum_variance(observations, rate=rate)
    if isinstance(result, EstimateFailure):
        reason = result.reason
        if not observations:
            reason = (f"no {underlying} option was quoted at two consecutive book syncs in the last {days} days "
                      f"(the history holds the held options and their chain)")
        return MinimumVarianceEstimate(underlying=underlying, since=since, observations=len(observations),
                                       coefficients=None, r_squared=None, reason=reason)
    return MinimumVarianceEstimate(
        underlying=underlying, since=since, observations=result.observations, coefficients=result,
        r_squared=minimum_variance_r_squared(observations, result, rate=rate), reason=None)
