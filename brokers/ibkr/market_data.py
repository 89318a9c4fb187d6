"""Quotes from TWS within the account's market-data lines, in whatever data type IB can serve.

Lines: every reqMktData holds one of the account's market-data lines (100 for most accounts,
shared by TWS's own windows and every API session) until it is cancelled; one more is refused
with error 101 and no data. So quotes are taken in batches of at most `lines` subscriptions: each
batch is subscribed, read until every ticker is complete (or the wait is over) and cancelled before
the next batch starts. An instrument refused with 101 (lines held elsewhere) goes back in the queue
and the batch size shrinks to what TWS accepted; only when not one line can be had does the call
fail (`max_tickers_reached`, retryable). Every reqMktData and cancelMktData goes through the
connection's pacer like any other message.

Data types: TWS serves live data (type 1) only to an account with the exchange's subscription.
`reqMarketDataType` tells it what to fall back to: 2 frozen (the last live values while the market
is closed; needs the subscription too), 3 delayed (10-20 minutes late, no subscription needed),
4 delayed-frozen. The connection's `market_data_fallback` setting picks one; TWS still serves live
whenever it can. Each quote says which type it is (`Quote.data_type`, from TWS's marketDataType
message). Notice 10167 ("displaying delayed market data") and 10090 ("part of the data is not
subscribed") are not failures. An instrument TWS will not serve at all (354: no subscription and no
delayed fallback asked) gets a quote with no prices and `data_type="none"` rather than failing the
whole call: the book still shows the position, unpriced, and the reason is logged.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from ib_async import IB, Contract, Ticker

from brokers.domain import Instrument, MarketDataType, Quote
from brokers.ibkr.contracts import greeks_from_ib, ib_value_set, utc_now

logger = logging.getLogger(__name__)

MarketDataFallback = Literal["none", "frozen", "delayed", "delayed_frozen"]
# reqMarketDataType's argument for each fallback: TWS serves live when it can, this otherwise.
REQUEST_TYPE: dict[str, int] = {"none": 1, "frozen": 2, "delayed": 3, "delayed_frozen": 4}
DATA_TYPES: dict[int, MarketDataType] = {1: "live", 2: "frozen", 3: "delayed", 4: "delayed_frozen"}
MAX_TICKERS = 101  # "Max number of tickers has been reached"
NOT_SUBSCRIBED = 354  # "Requested market data is not subscribed"
# Notices about one subscription that still delivers data.
NOTICES = frozenset({10167, 10090})


class MarketDataFailure(Exception):
    """An IB error that fails the whole quotes call (code, message, instrument key)."""

    def __init__(self, ib_code: int, ib_message: str, instrument: str) -> None:
        super().__init__(ib_message)
        self.ib_code, self.ib_message, self.instrument = ib_code, ib_message, instrument


@dataclass(frozen=True, slots=True)
class MarketDataSettings:
    lines: int  # most subscriptions held at once
    wait_seconds: float  # how long one batch may take to complete
    fallback: MarketDataFallback


async def quotes_in_batches(
    ib: IB, permit: Callable[[], Awaitable[None]], errors_by_req: dict[int, tuple[int, str]],
    items: list[tuple[Instrument, Contract]], settings: MarketDataSettings,
) -> list[Quote]:
    """Quotes of `items` (instrument, qualified contract), in their order. An instrument listed
    twice is subscribed once (ib_async keeps one ticker per contract: a second subscription would
    hold a line its cancel never releases)."""
    await permit()
    ib.reqMarketDataType(REQUEST_TYPE[settings.fallback])
    first_of: dict[str, int] = {}
    for index, (instrument, _) in enumerate(items):
        first_of.setdefault(instrument.key, index)
    results: dict[int, Quote] = {}
    queue = sorted(set(first_of.values()))
    budget = max(1, settings.lines)
    while queue:
        batch, queue = queue[:budget], queue[budget:]
        refused = await _one_batch(ib, permit, errors_by_req, items, batch, settings, results)
        if refused:
            accepted = len(batch) - len(refused)
            if accepted == 0:
                instrument = items[refused[0]][0]
                raise MarketDataFailure(MAX_TICKERS, "Max number of tickers has been reached: no "
                                        "market-data line is free", instrument.key)
            logger.warning("IBKR refused %d of %d market-data lines (error 101); batches of %d "
                           "from now on", len(refused), len(batch), accepted)
            budget = accepted
            queue = refused + queue
    return [results[first_of[instrument.key]] for instrument, _ in items]


async def _one_batch(
    ib: IB, permit: Callable[[], Awaitable[None]], errors_by_req: dict[int, tuple[int, str]],
    items: list[tuple[Instrument, Contract]], batch: list[int], settings: MarketDataSettings,
    results: dict[int, Quote],
) -> list[int]:
    """Quote one batch into `results`; the indexes TWS refused a line for (101)."""
    tickers: dict[int, tuple[int, Ticker]] = {}  # item index -> (reqId, ticker)
    held: set[int] = set()  # subscriptions TWS has not refused (each must be cancelled)
    try:
        for index in batch:
            instrument, contract = items[index]
            await permit()
            ticker = ib.reqMktData(contract, "106" if instrument.is_option else "")
            tickers[index] = (ib.wrapper.ticker2ReqId["mktData"][ticker], ticker)
            held.add(index)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.wait_seconds

        def settled(index: int) -> bool:
            req_id, ticker = tickers[index]
            error = errors_by_req.get(req_id)
            if error is not None and error[0] in NOTICES:
                errors_by_req.pop(req_id)
                logger.info("IBKR market data notice %d for %s: %s", error[0],
                            items[index][0].key, error[1])
                error = None
            return error is not None or _ticker_ready(ticker, items[index][0].is_option)

        while loop.time() < deadline and not all(settled(i) for i in batch):
            await asyncio.sleep(0.01)
        refused: list[int] = []
        now = utc_now()
        for index in batch:
            req_id, ticker = tickers[index]
            instrument = items[index][0]
            error = errors_by_req.pop(req_id, None)
            if error is not None and error[0] in NOTICES:  # arrived after the ticker was ready
                error = None
            if error is not None:
                held.discard(index)  # refused: nothing to cancel (TWS would answer 300)
            if error is None:
                results[index] = _quote_from_ticker(instrument, ticker, now)
            elif error[0] == MAX_TICKERS:
                refused.append(index)
            elif error[0] == NOT_SUBSCRIBED:
                logger.warning("IBKR serves no market data for %s (354, fallback %r): %s",
                               instrument.key, settings.fallback, error[1])
                results[index] = _unpriced(instrument, now)
            else:
                raise MarketDataFailure(error[0], error[1], instrument.key)
        return refused
    finally:
        for index, (_, ticker) in tickers.items():
            if index in held:
                await permit()
                ib.cancelMktData(ticker.contract)
            else:
                ib.wrapper.endTicker(ticker, "mktData")
            # ib_async keeps a ticker per contract and would hand the next subscription this one,
            # last prices included: a later quote must never start from stale values
            ib.wrapper.tickers.pop(hash(ticker.contract), None)


def _price(value: float) -> float | None:
    return float(value) if ib_value_set(value) and value > 0 else None


def _ticker_ready(ticker: Ticker, is_option: bool) -> bool:
    has_book = _price(ticker.bid) is not None and _price(ticker.ask) is not None
    return has_book and (not is_option or ticker.modelGreeks is not None)


def _unpriced(instrument: Instrument, now: datetime) -> Quote:
    return Quote(instrument=instrument, bid=None, ask=None, last=None, bid_size=0, ask_size=0,
                 time=now, data_type="none")


def _quote_from_ticker(instrument: Instrument, ticker: Ticker, now: datetime) -> Quote:
    model = ticker.modelGreeks
    return Quote(
        instrument=instrument, bid=_price(ticker.bid), ask=_price(ticker.ask),
        last=_price(ticker.last),
        bid_size=int(ticker.bidSize) if ib_value_set(ticker.bidSize) else 0,
        ask_size=int(ticker.askSize) if ib_value_set(ticker.askSize) else 0,
        time=ticker.time or now,
        underlying_price=model.undPrice if model is not None else None,
        greeks=greeks_from_ib(model, expiry=instrument.expiry, at=ticker.time or now)
        if instrument.is_option else None,
        data_type=DATA_TYPES.get(ticker.marketDataType, "live"))
