"""Check a connection's product settings against TWS's own contract details, at connect.

The credentials name a future (`underlying_instrument`, `underlying_expiry`) and, optionally, its
`exchange_overrides`, option `trading_class` and `multiplier`. A product outside the platform's
table is accepted when IB lists it. Each setting is checked with the contracts TWS lists, and a
wrong one is a field error that says what IB has instead:

- no such future on that exchange: is it expired (asked again with includeExpired), listed on
  another exchange, or not a future at all;
- several futures for a contract month (different multipliers): which, and how to choose;
- a multiplier that is not IB's, or that the platform's table disagrees with;
- an option trading class IB does not list for that future (the classes it lists are named).

What passes is resolved: the future's full expiry date, its multiplier and the option class,
which the connection keeps (and the agent takes as its defaults).
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ib_async import IB, Contract, ContractDetails
from ib_async.wrapper import RequestError

from brokers.ibkr.contracts import ContractSettings, parse_ib_expiry
from brokers.products import PRODUCTS, contract_disagreements

NO_DEFINITION = 200


@dataclass(frozen=True, slots=True)
class ResolvedUnderlying:
    symbol: str
    expiry: str  # YYYYMMDD, the future's last trading day
    exchange: str
    multiplier: float
    trading_class: str  # the standard option class


class SettingsRefused(Exception):
    """The settings do not match what IB lists: field -> messages."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in fields.items()))
        self.fields = fields


async def resolve_underlying(
    ib: IB, permit: Callable[[], Awaitable[None]], *, symbol: str, expiry: str,
    multiplier: float | None, trading_class: str | None, settings: ContractSettings,
) -> ResolvedUnderlying:
    async def details(contract: Contract) -> list[ContractDetails]:
        await permit()
        try:
            return await ib.reqContractDetailsAsync(contract)
        except RequestError as e:
            if e.code == NO_DEFINITION:
                return []
            raise

    try:
        exchange = settings.exchange_for(symbol)
    except ValueError:
        raise SettingsRefused({"exchange_overrides": [
            f"{symbol} is not in the platform's product table: give its listing exchange, e.g. "
            f"{{\"{symbol}\": \"CBOT\"}}."]}) from None
    query = Contract(secType="FUT", symbol=symbol, exchange=exchange, currency="USD",
                     lastTradeDateOrContractMonth=expiry)
    futures = await details(query)
    if not futures:
        raise SettingsRefused(await _why_not_listed(details, query))
    if multiplier is not None:
        futures = [d for d in futures if _multiplier(d) == multiplier] or futures
    if len(futures) > 1:
        found = ", ".join(f"{d.contract.localSymbol} (multiplier {_multiplier(d):g}, expires "
                          f"{d.contract.lastTradeDateOrContractMonth})" for d in futures)
        raise SettingsRefused({"underlying_expiry": [
            f"IB lists {len(futures)} {symbol} futures for {expiry} on {exchange}: {found}. Give "
            f"the multiplier or the full expiry date (YYYYMMDD)."]})
    (future,) = futures
    ib_multiplier = _multiplier(future)
    if multiplier is not None and multiplier != ib_multiplier:
        raise SettingsRefused({"multiplier": [
            f"IB's {symbol} future {future.contract.localSymbol} has multiplier "
            f"{ib_multiplier:g}, not {multiplier:g}."]})
    product = PRODUCTS.get(symbol)
    if product is not None:
        problems = contract_disagreements(product, option=False, multiplier=ib_multiplier)
        if problems:
            raise SettingsRefused({"underlying_instrument": [
                f"IB and the platform's product table disagree ({'; '.join(problems)}): the book "
                f"would be valued wrong. Ask an operator to correct the table."]})

    await permit()
    rows = await ib.reqSecDefOptParamsAsync(symbol, exchange, "FUT", future.contract.conId)
    classes = sorted({r.tradingClass for r in rows if r.exchange == exchange})
    month = future.contract.lastTradeDateOrContractMonth[:6]
    chosen = trading_class or settings.option_trading_class_for(symbol)
    if chosen not in classes:
        listed = (f"IB lists these option classes on it: {', '.join(classes)}" if classes
                  else "IB lists no options on it")
        field = "trading_class" if trading_class or product is None else "underlying_instrument"
        raise SettingsRefused({field: [
            f"No {symbol} option class {chosen!r} on the {month} future "
            f"({future.contract.localSymbol}) at {exchange}; {listed}."]})
    return ResolvedUnderlying(symbol=symbol, expiry=future.contract.lastTradeDateOrContractMonth[:8],
                              exchange=exchange, multiplier=ib_multiplier, trading_class=chosen)


async def _why_not_listed(
    details: Callable[[Contract], Awaitable[list[ContractDetails]]], query: Contract,
) -> dict[str, list[str]]:
    symbol, expiry, exchange = query.symbol, query.lastTradeDateOrContractMonth, query.exchange
    expired = await details(Contract(secType="FUT", symbol=symbol, exchange=exchange,
                                     currency="USD", lastTradeDateOrContractMonth=expiry,
                                     includeExpired=True))
    if expired:
        last = max(parse_ib_expiry(d.contract.lastTradeDateOrContractMonth) for d in expired)
        listed = await details(Contract(secType="FUT", symbol=symbol, exchange=exchange,
                                        currency="USD"))
        months = sorted({d.contract.lastTradeDateOrContractMonth[:6] for d in listed})[:4]
        return {"underlying_expiry": [
            f"The {symbol} {expiry} future expired on {last.isoformat()}."
            + (f" Listed now: {', '.join(months)}." if months else "")]}
    anywhere = await details(Contract(secType="FUT", symbol=symbol, currency="USD"))
    if not anywhere:
        return {"underlying_instrument": [f"IB lists no future {symbol!r} on any exchange."]}
    exchanges = sorted({d.contract.exchange for d in anywhere})
    if exchange not in exchanges:
        return {"exchange_overrides": [
            f"IB lists {symbol} futures on {', '.join(exchanges)}, not {exchange}: set "
            f"exchange_overrides to {{\"{symbol}\": \"{exchanges[0]}\"}}."]}
    months = sorted({d.contract.lastTradeDateOrContractMonth[:6] for d in anywhere
                     if d.contract.exchange == exchange})[:4]
    return {"underlying_expiry": [
        f"IB lists no {symbol} future for {expiry} on {exchange}. Listed: {', '.join(months)}."]}


def _multiplier(details: ContractDetails) -> float:
    return float(details.contract.multiplier or 0)
