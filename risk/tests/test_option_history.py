"""The options' quote history: written at every book sync (two-sided quotes only), bounded by the
history compaction, and the minimum-variance delta's coefficients estimated from it."""
from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
import time_machine
from django.conf import settings
from django.test import override_settings
from django_tenants.utils import tenant_context

from agents.tests.books import buy_calls
from brokers.domain import Instrument, Quote
from risk import selectors
from risk.book import years_to_expiry
from risk.delta_models import (
    HedgeObservation,
    MinimumVarianceCoefficients,
    OptionSnapshot,
    estimate_minimum_variance,
    minimum_variance_r_squared,
    observations_from_snapshots,
)
from risk.greeks import black76, implied_vol
from risk.models import OptionQuotePoint
from risk.option_history import minimum_variance_estimate, option_history_compact, option_history_record
from risk.tasks import book_history_compact_task
from risk.tests.history import syncs_over_time

T0 = datetime(2027, 2, 10, 15, 0, tzinfo=UTC)
STEP = timedelta(minutes=30)


def _two_sided_options(quotes) -> dict[str, Quote]:
    return {key: q for key, q in quotes.items() if q.instrument.is_option and q.bid and q.ask
            and 0 < q.bid <= q.ask and q.underlying_price}


def _direct_observations(snapshots) -> list[HedgeObservation]:
    """Hull & White's observations built straight from the syncs' quotes, as the bench builds them
    from the simulator's paths: Black-76 at each first quote's implied vol, changes to the next."""
    rate = settings.RISK_FREE_RATE
    observations = []
    for first, second in zip(snapshots, snapshots[1:], strict=False):
        now = first.valuation.as_of
        later = _two_sided_options(second.quotes)
        for key, q in _two_sided_options(first.quotes).items():
            if key not in later:
                continue
            option, call = q.instrument, q.instrument.right == "C"
            years = years_to_expiry(option, now)
            vol = float(implied_vol(q.mid, q.underlying_price, option.strike, years, rate, call))
            model = black76(q.underlying_price, option.strike, years, rate, vol, call)
            observations.append(HedgeObservation(
                delta=float(model.delta), vega=float(model.vega), forward=q.underlying_price, strike=option.strike,
                years=years, is_call=call, price_change=later[key].mid - q.mid,
                forward_change=later[key].underlying_price - q.underlying_price))
    return observations


@pytest.fixture
def synced(alpha):
    """Two long calls, then eight book syncs half an hour apart on the simulated market."""
    with time_machine.travel(T0, tick=False) as clock:
        buy_calls(alpha, 2, client_order_id="option-history-seed")
        with tenant_context(alpha.client):
            OptionQuotePoint.objects.all().delete()  # the order's own syncs wrote some
        snapshots = syncs_over_time(alpha, clock, count=8, step=STEP)
        yield alpha, clock, snapshots


def test_each_sync_stores_the_two_sided_option_quotes_it_valued(synced):
    alpha, _, snapshots = synced
    with tenant_context(alpha.client):
        rows = list(OptionQuotePoint.objects.all())
    times = sorted({row.at for row in rows})
    assert times == [s.valuation.as_of for s in snapshots]
    assert times[1] - times[0] == STEP
    held = {leg.risk.instrument.key for leg in snapshots[0].valuation.legs}
    for snapshot in snapshots:
        stored = {row.option_key: row for row in rows if row.at == snapshot.valuation.as_of}
        quoted = _two_sided_options(snapshot.quotes)
        assert set(stored) == set(quoted) and held <= set(stored)
        assert len(stored) > 5  # the held call and the chain around it (the smile's strikes)
        for key, row in stored.items():
            quote = quoted[key]
            assert (row.underlying, row.strike, row.right, row.expiry) == (
                "ES", quote.instrument.strike, quote.instrument.right, quote.instrument.expiry)
            assert row.mid == pytest.approx(quote.mid) and row.forward == quote.underlying_price
            price = black76(row.forward, row.strike, row.years, settings.RISK_FREE_RATE, row.implied_vol,
                            row.right == "C").price
            assert float(price) == pytest.approx(row.mid, rel=1e-6)  # the vol its mid implies


def _option(strike: float, right: str = "C") -> Instrument:
    return Instrument(symbol="ES", sec_type="FOP", expiry=date(2027, 3, 19), exchange="CME", multiplier=50.0,
                      strike=strike, right=right, exercise_style="american", underlying_expiry=date(2027, 3, 19))


def _quote(option: Instrument, bid, ask, *, data_type="live", forward=6000.0) -> Quote:
    return Quote(option, bid=bid, ask=ask, last=None, bid_size=5, ask_size=5, time=T0, underlying_price=forward,
                 data_type=data_type)


def test_only_usable_two_sided_quotes_are_stored(alpha):
    future = _option(6000).underlying_future()
    quotes = [
        _quote(_option(6000), 120.0, 121.0),  # the one usable quote
        _quote(_option(6050), None, 95.0),  # no bid
        _quote(_option(6100), 70.0, None),  # no ask
        _quote(_option(6150), 0.0, 0.25),  # a zero bid
        _quote(_option(6200), 40.0, 39.0),  # crossed
        _quote(_option(6250), 30.0, 31.0, data_type="none"),  # no market data
        _quote(_option(6300), 20.0, 21.0, forward=None),  # the future's price unknown
        _quote(_option(5000, "P"), 0.5, 1.0),  # a far out-of-the-money put
        _quote(_option(7000, "P"), 0.5, 1.0),  # under the put's intrinsic value: no implied vol
        Quote(future, bid=5999.75, ask=6000.25, last=None, bid_size=5, ask_size=5, time=T0),  # not an option
    ]
    with tenant_context(alpha.client):
        rows = option_history_record(quotes={q.instrument.key: q for q in quotes}, at=T0)
        stored = set(OptionQuotePoint.objects.values_list("option_key", flat=True))
    assert stored == {row.option_key for row in rows} == {_option(6000).key, _option(5000, "P").key}


@override_settings(OPTION_HISTORY_DAYS=30)
def test_the_history_compaction_drops_quotes_older_than_the_retention(alpha):
    now = datetime.now(UTC)
    quote = _quote(_option(6000), 120.0, 121.0)
    with tenant_context(alpha.client):
        option_history_record(quotes={"old": quote}, at=now - timedelta(days=31))
        option_history_record(quotes={"recent": quote}, at=now - timedelta(days=29))
        result = book_history_compact_task.apply(args=["alpha"]).get()
        remaining = list(OptionQuotePoint.objects.values_list("at", flat=True))
        again = option_history_compact()
    assert result["option_quotes_expired"] == 1 and result["option_quotes_thinned"] == 0
    assert remaining == [now - timedelta(days=29)]
    assert (again.expired, again.thinned) == (0, 0)  # nothing left to drop


def test_the_estimate_from_the_stored_history_is_the_estimate_from_the_quotes(synced):
    alpha, _, snapshots = synced
    direct = _direct_observations(snapshots)
    expected = estimate_minimum_variance(direct, rate=settings.RISK_FREE_RATE)
    assert isinstance(expected, MinimumVarianceCoefficients), expected
    with tenant_context(alpha.client):
        stored = selectors.minimum_variance_observations("ES", T0 - timedelta(days=1))
        estimate = minimum_variance_estimate(underlying="ES", days=1)
        other = minimum_variance_estimate(underlying="NQ", days=1)
    assert len(stored) == len(direct) == expected.observations == estimate.observations
    assert sorted((o.strike, o.price_change, o.forward_change) for o in stored) == sorted(
        (o.strike, o.price_change, o.forward_change) for o in direct)  # PostgreSQL keeps the floats exactly
    co = estimate.coefficients
    assert estimate.reason is None
    assert (co.a, co.b, co.c) == pytest.approx((expected.a, expected.b, expected.c), rel=1e-6, abs=1e-9)
    assert estimate.r_squared == pytest.approx(
        minimum_variance_r_squared(direct, expected, rate=settings.RISK_FREE_RATE), rel=1e-6)
    assert estimate.r_squared <= 1.0
    assert other.coefficients is None and "no NQ option was quoted" in other.reason


def test_too_little_history_gives_the_reason(alpha):
    with time_machine.travel(T0, tick=False) as clock:
        buy_calls(alpha, 1, client_order_id="option-history-short")
        with tenant_context(alpha.client):
            OptionQuotePoint.objects.all().delete()
            nothing = minimum_variance_estimate(underlying="ES", days=20)
        syncs_over_time(alpha, clock, count=2, step=STEP)  # one interval: a dozen observations
        with tenant_context(alpha.client):
            few = minimum_variance_estimate(underlying="ES", days=20)
    assert nothing.coefficients is None and nothing.observations == 0
    assert "no ES option was quoted at two consecutive book syncs in the last 20 days" in nothing.reason
    assert few.coefficients is None and few.r_squared is None
    assert 0 < few.observations < 30 and f"{few.observations} usable observations; at least 30" in few.reason


def _snapshot(at, key, mid, forward, strike=6000.0):
    return OptionSnapshot(at=at, key=key, strike=strike, years=0.1, is_call=True, forward=forward, mid=mid,
                          implied_vol=0.2)


def test_observations_pair_an_option_only_across_consecutive_syncs():
    t1, t2, t3 = T0, T0 + STEP, T0 + 2 * STEP
    snapshots = [_snapshot(t1, "A", 100.0, 6000.0), _snapshot(t1, "B", 50.0, 6000.0, 6100.0),
                 _snapshot(t2, "A", 103.0, 6005.0),  # B not quoted at t2
                 _snapshot(t3, "A", 101.0, 6002.0), _snapshot(t3, "B", 49.0, 6002.0, 6100.0)]
    observations = observations_from_snapshots(snapshots, rate=0.04)
    assert [(o.strike, o.price_change, o.forward_change) for o in observations] == [
        (6000.0, 3.0, 5.0), (6000.0, -2.0, -3.0)]  # B's t1 -> t3 is not an observation
    model = black76(6000.0, 6000.0, 0.1, 0.04, 0.2, True)
    assert observations[0].delta == pytest.approx(float(model.delta))
    assert observations[0].vega == pytest.approx(float(model.vega))


def test_r_squared_is_the_share_of_the_sticky_strike_error_removed():
    rng = np.random.default_rng(7)
    truth = MinimumVarianceCoefficients(a=-0.2, b=0.5, c=-0.4, observations=0)
    observations = []
    for _ in range(200):
        strike, change = float(rng.uniform(5500, 6500)), float(rng.normal(0, 20))
        model = black76(6000.0, strike, 0.2, 0.04, 0.2, True)
        dc = float(model.delta)
        shift = 100 * float(model.vega) / (6000.0 * math.sqrt(0.2)) * (truth.a + truth.b * dc + truth.c * dc * dc)
        observations.append(HedgeObservation(
            delta=dc, vega=float(model.vega), forward=6000.0, strike=strike, years=0.2, is_call=True,
            price_change=(dc + shift) * change, forward_change=change))
    fitted = estimate_minimum_variance(observations, rate=0.04)
    assert (fitted.a, fitted.b, fitted.c) == pytest.approx((truth.a, truth.b, truth.c), abs=1e-9)
    assert minimum_variance_r_squared(observations, fitted, rate=0.04) == pytest.approx(1.0)
    assert minimum_variance_r_squared(observations, MinimumVarianceCoefficients(0, 0, 0, 0), rate=0.04) == 0.0


def test_a_sync_stores_its_quotes_in_one_insert(synced, django_assert_max_num_queries):
    alpha, _, snapshots = synced
    last = snapshots[-1]
    with tenant_context(alpha.client):
        with django_assert_max_num_queries(5) as queries:
            rows = option_history_record(quotes=last.quotes, at=last.valuation.as_of + STEP)
    inserts = [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("INSERT")]
    assert len(rows) > 5 and len(inserts) == 1


def test_the_estimate_counts_the_last_sync_of_each_step(alpha):
    """Syncs every 10 minutes, observations over 30: the last sync of each half hour (15:20, 15:50,
    16:20, 16:30) is paired with the next such one."""
    with time_machine.travel(T0, tick=False) as clock:
        buy_calls(alpha, 2, client_order_id="option-history-steps")
        with tenant_context(alpha.client):
            OptionQuotePoint.objects.all().delete()
        snapshots = syncs_over_time(alpha, clock, count=9, step=timedelta(minutes=10))
        with tenant_context(alpha.client):
            every = selectors.minimum_variance_observations("ES", T0)
            stepped = selectors.minimum_variance_observations("ES", T0, step_seconds=1800)
            estimate = minimum_variance_estimate(underlying="ES", days=1, step_minutes=30)
    kept = [snapshots[i] for i in (1, 4, 7, 8)]
    assert [s.valuation.as_of.strftime("%H:%M") for s in kept] == ["15:20", "15:50", "16:20", "16:30"]

    def changes(observations):
        return sorted((o.strike, o.is_call, o.price_change, o.forward_change) for o in observations)

    assert changes(stepped) == changes(_direct_observations(kept))
    assert changes(every) == changes(_direct_observations(snapshots)) and len(every) > len(stepped)
    assert estimate.observations == len(stepped)  # the service estimates over the steps


@override_settings(OPTION_HISTORY_DAYS=30, BOOK_HISTORY_COMPACT_AFTER_HOURS=24)
def test_the_compaction_thins_old_history_to_the_estimates_steps_and_keeps_its_estimate(alpha):
    """Syncs every 10 minutes; two days later the compaction keeps the last sync of each half hour
    (whole syncs: every option quoted then), and the 30-minute estimate is unchanged."""
    with time_machine.travel(T0, tick=False) as clock:
        buy_calls(alpha, 2, client_order_id="option-history-thin")
        with tenant_context(alpha.client):
            OptionQuotePoint.objects.all().delete()
        snapshots = syncs_over_time(alpha, clock, count=15, step=timedelta(minutes=10))
    later = T0 + timedelta(days=2)
    with tenant_context(alpha.client):
        before = minimum_variance_estimate(underlying="ES", days=3, now=later)
        counts = {s.valuation.as_of: OptionQuotePoint.objects.filter(at=s.valuation.as_of).count() for s in snapshots}
        result = option_history_compact(now=later)
        times = sorted(set(OptionQuotePoint.objects.values_list("at", flat=True)))
        kept = {t: OptionQuotePoint.objects.filter(at=t).count() for t in times}
        after = minimum_variance_estimate(underlying="ES", days=3, now=later)
        again = option_history_compact(now=later)
    assert [t.strftime("%H:%M") for t in times] == ["15:20", "15:50", "16:20", "16:50", "17:20", "17:30"]
    assert result.thinned == sum(n for at, n in counts.items() if at not in times) and result.expired == 0
    assert kept == {t: counts[t] for t in times}  # whole syncs kept
    assert before.coefficients is not None and after.coefficients == before.coefficients
    assert (after.observations, after.r_squared) == (before.observations, before.r_squared)
    assert (again.thinned, again.expired) == (0, 0)
