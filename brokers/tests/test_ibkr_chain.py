"""IBKR's option chain is chosen by underlying future, serial months included (issue 14 item 7),
and a book sync lists it at most once per OPTION_CHAIN_CACHE_SECONDS: IBKRBroker through the real
ib_async client against the fake TWS, the listings in the test Redis."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
import redis
from django.conf import settings as django_settings
from django.core.cache import cache
from django.test import override_settings
from django.utils import timezone
from django_tenants.utils import tenant_context

from brokers.contracts import hedge_future_select, option_underlyings
from brokers.ibkr import IBKRBroker
from brokers.ibkr.chain import ChainRow, chain_expiries
from brokers.services import option_chain_cache_key, option_chains_list
from brokers.tests.fake_tws import FakeTWS
from brokers.tests.test_ibkr import config_for
from tradingplatform.testing import ibkr_connect
from tradingplatform.tests.servers import free_port

ES_H7, ES_M7 = 1001, 1002  # March and June 2027 E-mini futures
# expiry -> (future it delivers, trading class): March options expire with their future; April and
# May are serial months on June; EW1 is a weekly class on June that must not be mixed in.
OPTIONS = {
    "20270319": (ES_H7, "ES"), "20270416": (ES_M7, "ES"), "20270521": (ES_M7, "ES"),
    "20270618": (ES_M7, "ES"), "20270409": (ES_M7, "EW1"),
}


def option_ids() -> dict[tuple[str, float, str], int]:
    """The conId of each option the fake lists, by (expiry, strike, right)."""
    strikes = [(expiry, strike, right) for expiry in OPTIONS for strike in (5900.0, 6000.0, 6100.0)
               for right in "CP"]
    return {option: 5001 + i for i, option in enumerate(strikes)}


@pytest.fixture
def fake() -> Iterator[FakeTWS]:
    tws = FakeTWS()
    tws.list_future(con_id=ES_H7, symbol="ES", last_trade_date="20270319", exchange="CME",
                    multiplier=50)
    tws.list_future(con_id=ES_M7, symbol="ES", last_trade_date="20270618", exchange="CME",
                    multiplier=50)
    for (expiry, strike, right), con_id in option_ids().items():
        future, trading_class = OPTIONS[expiry]
        tws.list_option(con_id=con_id, under_con_id=future, last_trade_date=expiry,
                        strike=strike, right=right, trading_class=trading_class)
    tws.start()
    yield tws
    bad = tws.bad_requests
    tws.close()
    assert bad == []


@pytest.fixture
def broker(fake: FakeTWS) -> Iterator[IBKRBroker]:
    ibkr = IBKRBroker(config_for(fake.port, underlying_expiry="202706"))
    ibkr.connect()
    yield ibkr
    ibkr.disconnect()


def test_the_chain_of_a_future_includes_its_serial_months(fake: FakeTWS,
                                                           broker: IBKRBroker) -> None:
    june = broker.underlying()
    chain = broker.option_chain(june)
    assert sorted({o.expiry for o in chain}) == [date(2027, 4, 16), date(2027, 5, 21),
                                                 date(2027, 6, 18)]
    assert {o.trading_class for o in chain} == {"ES"}  # not the weekly EW1
    assert {o.underlying_expiry for o in chain} == {date(2027, 6, 18)}
    assert len(chain) == 3 * 6
    (secdef,) = fake.messages(78)
    assert secdef[2:6] == ["ES", "CME", "FUT", str(ES_M7)]
    # one contract-details request per expiry, never one per option
    fop_lookups = [m for m in fake.messages(9) if m[5] == "FOP"]
    assert sorted(m[6] for m in fop_lookups) == ["20270416", "20270521", "20270618"]


def test_the_agents_window_reaches_serial_options_through_the_later_future(
        broker: IBKRBroker) -> None:
    today = date(2027, 3, 1)  # March options 18 days out: under a 20-60 day window
    futures = broker.listed_futures("ES")
    hedge = hedge_future_select(futures, today=today, chosen_expiry=None).future
    options = [option for future in option_underlyings(futures, hedge=hedge, today=today,
                                                       dte_max=60)
               for option in broker.option_chain(future)]
    in_window = sorted({o.expiry for o in options if 20 <= (o.expiry - today).days <= 60})
    assert in_window == [date(2027, 4, 16)]  # the April serial, on the June future


def test_chain_rows_of_another_exchange_class_or_future_are_left_out() -> None:
    rows = [ChainRow("CME", 7, "ES", "50", ("20270416", "20270618")),
            ChainRow("CME", 7, "EW1", "50", ("20270409",)),
            ChainRow("CBOT", 7, "ES", "50", ("20270521",)),
            ChainRow("CME", 8, "ES", "50", ("20270319",))]
    assert chain_expiries(rows, exchange="CME", trading_class="ES", underlying_con_id=7) == [
        ("ES", "20270416"), ("ES", "20270618")]


# --- A book sync lists the chain at most once per OPTION_CHAIN_CACHE_SECONDS -------------------
# The held April serial call on June is valued on the sticky-moneyness delta (the default model):
# its smile is fitted to the quotes of the strikes around the money of its expiry, chosen from
# the chain. The quotes are asked at every sync; the listing is kept in Redis.

HELD = ("20270416", 6000.0, "C")


@pytest.fixture
def book(fake: FakeTWS) -> dict[tuple[str, float, str], int]:
    """The fake's options by (expiry, strike, right), quoted; one April call held."""
    ids = option_ids()
    for (_, strike, right), con_id in ids.items():
        price = max(1.0, 100.0 + (6000.0 - strike) * (1 if right == "C" else -1))
        fake.set_quote(con_id, bid=price - 0.25, ask=price + 0.25)
        fake.set_greeks(con_id, implied_vol=0.18, delta=0.5, gamma=0.001, vega=5.0, theta=-1.0,
                        option_price=price, underlying_price=6000.0)
    fake.set_quote(ES_M7, bid=5999.75, ask=6000.25)
    fake.set_quote(ES_H7, bid=5989.75, ask=5990.25)
    fake.set_position(ids[HELD], 2, 100.0)
    return ids


def _listings(fake: FakeTWS) -> tuple[int, int]:
    """(reqSecDefOptParams, contract-details requests of a whole expiry) received so far."""
    return len(fake.messages(78)), len([m for m in fake.messages(9) if m[5] == "FOP"])


def _option_quotes(fake: FakeTWS) -> list[str]:
    """The conIds of the options whose market data was asked, in order."""
    return [m[3] for m in fake.messages(1) if m[5] == "FOP"]


def _sync(alpha, broker: IBKRBroker):
    from risk.services import book_sync

    with tenant_context(alpha.client):
        return book_sync(client=alpha.client, broker=broker)


def _smile_strikes(book: dict[tuple[str, float, str], int]) -> set[str]:
    return {str(book[("20270416", 5900.0, "P")]), str(book[("20270416", 6100.0, "C")])}


def test_two_syncs_within_the_ttl_list_the_chain_once_and_quote_it_twice(
        alpha, fake: FakeTWS, book, broker: IBKRBroker, settings) -> None:
    settings.OPTION_CHAIN_CACHE_SECONDS = 120
    first = _sync(alpha, broker)
    assert _listings(fake) == (1, 3)  # the June future's April, May and June expiries
    asked_first = _option_quotes(fake)
    assert _smile_strikes(book) <= set(asked_first)
    with tenant_context(alpha.client):
        key = option_chain_cache_key(broker="ibkr", future=broker.underlying(), day=timezone.now().date())
    ttl = redis.Redis.from_url(settings.REDIS_URL).ttl(cache.make_key(key))
    assert 0 < ttl <= 120

    second = _sync(alpha, broker)
    assert _listings(fake) == (1, 3)  # not listed again
    asked_second = _option_quotes(fake)[len(asked_first):]
    assert sorted(asked_second) == sorted(asked_first)  # every quote asked again
    for snapshot in (first, second):
        assert _smile_strikes(book) <= {q.instrument.broker_ref for q in snapshot.quotes.values()}
        (leg,) = [leg for leg in snapshot.valuation.legs if leg.risk.instrument.is_option]
        assert leg.risk.instrument.broker_ref == str(book[HELD])

    cache.delete(key)  # the TTL ran out
    _sync(alpha, broker)
    assert _listings(fake) == (2, 6)


def test_a_listing_that_failed_is_not_kept_and_is_made_at_the_next_sync(
        alpha, fake: FakeTWS, book, broker: IBKRBroker) -> None:
    fake.fail_option_parameters(1)
    first = _sync(alpha, broker)
    assert _listings(fake) == (1, 0)
    assert not _smile_strikes(book) & set(_option_quotes(fake))  # no chain: no smile quotes
    assert first.valuation.legs  # the book is valued all the same
    _sync(alpha, broker)
    assert _listings(fake) == (2, 3)
    assert _smile_strikes(book) <= set(_option_quotes(fake))
    _sync(alpha, broker)
    assert _listings(fake) == (2, 3)  # the listing that worked is kept


def test_a_listing_is_read_without_the_options_past_their_last_trade(
        alpha, fake: FakeTWS, broker: IBKRBroker) -> None:
    """Within the day of a listing: April's serial options stop at 15:00 CT on the 16th; read after
    that the same (UTC) day, the listing is served without them and nothing is asked of IB."""
    june = broker.underlying()
    with tenant_context(alpha.client):
        listed = option_chains_list(broker=broker, futures=[june], now=datetime(2027, 4, 16, 12, tzinfo=UTC))
        after_april = option_chains_list(broker=broker, futures=[june],
                                         now=datetime(2027, 4, 16, 21, tzinfo=UTC))
    assert _listings(fake) == (1, 3)
    assert {o.expiry for o in listed[june.key]} == {date(2027, 4, 16), date(2027, 5, 21),
                                                    date(2027, 6, 18)}
    assert {o.expiry for o in after_april[june.key]} == {date(2027, 5, 21), date(2027, 6, 18)}
    assert [o for o in listed[june.key] if o.expiry > date(2027, 4, 16)] == after_april[june.key]


def test_a_new_connection_lists_the_chain_again(api, alpha, fake: FakeTWS, book,
                                                broker: IBKRBroker, settings) -> None:
    _sync(alpha, broker)
    _sync(alpha, broker)
    assert _listings(fake)[0] == 1
    settings.USE_MOCK_BROKER = False
    response = ibkr_connect(api, alpha, port=fake.port, client_id=12, underlying_expiry="202706",
                            connect_retries=0)
    assert response.json()["connected"] is True, response.content
    before = _listings(fake)[0]  # checking the settings asked for some
    _sync(alpha, broker)
    assert _listings(fake)[0] == before + 1  # another exchange or option class may be chosen now


def test_with_redis_unreachable_the_sync_lists_at_the_broker_and_values_the_book(
        alpha, fake: FakeTWS, book, broker: IBKRBroker, caplog) -> None:
    unreachable = dict(django_settings.CACHES["default"],
                       LOCATION=f"redis://127.0.0.1:{free_port()}/0")
    with override_settings(CACHES=dict(django_settings.CACHES, default=unreachable)):
        with caplog.at_level(logging.WARNING, logger="brokers.services"):
            snapshots = [_sync(alpha, broker), _sync(alpha, broker)]
    assert _listings(fake) == (2, 6)  # nothing kept: listed at every sync
    for snapshot in snapshots:
        assert _smile_strikes(book) <= {q.instrument.broker_ref for q in snapshot.quotes.values()}
        assert any(leg.risk.instrument.is_option for leg in snapshot.valuation.legs)
    warnings = [r for r in caplog.records if "option chain cache unavailable" in r.getMessage()]
    assert len(warnings) == 2 and not any(r.exc_info for r in warnings)  # one per sync, no traceback
