"""The client's risk state and the governor's recorded decisions. In the client's schema."""
from __future__ import annotations

from django.db import models


class RiskStateRecord(models.Model):
    """One row per client: its trading state, why, and the circuit breaker's loss streak."""

    class TradingState(models.TextChoices):
        ACTIVE = "ACTIVE"
        REDUCING = "REDUCING"
        HALTED = "HALTED"

    singleton = models.BooleanField(default=True, unique=True, editable=False)
    trading_state = models.CharField(max_length=10, choices=TradingState.choices, default=TradingState.ACTIVE)
    reason = models.CharField(max_length=200, blank=True)
    state_until = models.DateTimeField(null=True, blank=True)
    loss_streak = models.PositiveIntegerField(default=0)
    # An operator's halt of this one client, apart from the trading state, so that lifting it
    # never clears a tripped circuit breaker (and the reverse).
    operator_halted = models.BooleanField(default=False)
    operator_halt_reason = models.CharField(max_length=500, blank=True)
    operator_halt_by = models.CharField(max_length=150, blank=True)  # who set or lifted it last
    operator_halt_at = models.DateTimeField(null=True, blank=True)  # and when
    # Daily loss baseline: the book's unrealized P&L when the current trading day was first seen,
    # so that today's P&L = realized today + (unrealized now - this baseline).
    trading_day_start = models.DateTimeField(null=True, blank=True)
    day_unrealized_baseline = models.DecimalField(max_digits=16, decimal_places=2, default=0)
    changed_at = models.DateTimeField(auto_now=True)


class RiskDecisionRecord(models.Model):
    """Every governor decision, accepted or not, with all its reasons."""

    client_order_id = models.CharField(max_length=64, db_index=True)
    purpose = models.CharField(max_length=32)  # "order", "approval", ...
    accepted = models.BooleanField()
    codes = models.JSONField(default=list)
    fingerprint = models.CharField(max_length=64, db_index=True)
    decision = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]


class BookHistoryPoint(models.Model):
    """The book's net greeks and P&L at one sync: one row per underlying product, and one for the
    whole book (`underlying` = BOOK). Written by risk.book_history.book_history_record at every book
    sync, thinned and dropped by book_history_compact (settings BOOK_HISTORY_*)."""

    BOOK = ""  # the row of the whole book (every underlying)

    at = models.DateTimeField()
    underlying = models.CharField(max_length=16, blank=True)
    net_delta = models.FloatField(null=True)  # underlying-contract equivalents
    net_gamma = models.FloatField(null=True)
    net_vega = models.FloatField(null=True)
    net_theta = models.FloatField(null=True)
    unrealized_pnl = models.DecimalField(max_digits=16, decimal_places=2, null=True)  # of the open legs, USD
    # The book row only (None per underlying): as the daily-loss rule counts them.
    realized_pnl_today = models.DecimalField(max_digits=16, decimal_places=2, null=True)
    daily_pnl = models.DecimalField(max_digits=16, decimal_places=2, null=True)  # realized + unrealized today
    open_legs = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["underlying", "at"], name="risk_history_underlying_at")]


class OptionQuotePoint(models.Model):
    """One option's two-sided quote at one book sync: the held options and the chain strikes
    quoted with them. Written by risk.option_history.option_history_record at every book sync,
    thinned to a sync per 30 minutes after a day and dropped after OPTION_HISTORY_DAYS by
    option_history_compact (with the book history's compaction); the minimum-variance delta's
    coefficients are estimated from it (risk.option_history.minimum_variance_estimate)."""

    at = models.DateTimeField()  # the sync's valuation time (one per sync: pairs are consecutive syncs)
    underlying = models.CharField(max_length=16)  # product symbol, e.g. "ES"
    option_key = models.CharField(max_length=64)  # brokers.domain.Instrument.key
    expiry = models.DateField()
    strike = models.FloatField()
    right = models.CharField(max_length=1)  # "C" or "P"
    years = models.FloatField()  # to expiry at `at` (ACT/365, risk.book.years_to_expiry)
    forward = models.FloatField()  # the underlying future's price with the quote
    mid = models.FloatField()
    implied_vol = models.FloatField()  # Black-76, of the mid (decimal, 0.2 = 20%)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["underlying", "at"], name="risk_optquote_underlying_at")]
