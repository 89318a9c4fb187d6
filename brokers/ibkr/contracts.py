"""Pure translations between the platform's types and ib_async's contracts, orders and ticks.

Exchange routing: IB expects the listing exchange (`CME`, `CBOT`, `NYMEX`, `COMEX`); the old
`GLOBEX` alias is refused by the credentials serializer and never produced here.

Greek units: IB's model greeks (tick type 13, `tickOptionComputation`) are per one unit of the
option, like ours: delta and gamma per point of the future, vega per one volatility point
(0.01 of sigma) and theta per calendar day, which are exactly the units of `risk.greeks`. They pass
through unchanged. IB sends no rho; under Black-76 the option on a future has rho = -T x price
(per 1.00 of rate), so we derive it per 1 percentage point as -T x price / 100 from IB's own
model price, and leave it NaN when IB gave no price (a missing value must not read as zero risk).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import reduce
from math import gcd

from ib_async import Bag, ComboLeg, Contract, ContractDetails, Future, FuturesOption
from ib_async.objects import OptionComputation
from ib_async.order import Order

from brokers.domain import Greeks, Instrument, OrderLeg, OrderRequest, OrderState
from brokers.products import PRODUCTS

ALLOWED_EXCHANGES = frozenset({"CME", "CBOT", "NYMEX", "COMEX"})
_DAYS_PER_YEAR = 365.0


@dataclass(frozen=True, slots=True)
class ContractSettings:
    """Per-connection routing overrides (from the validated credentials)."""

    exchange_overrides: dict[str, str]
    trading_class: str | None = None  # option trading class of the connection's product
    multiplier: float | None = None  # multiplier of the connection's product
    product: str = ""  # the product the two overrides above apply to

    def knows(self, symbol: str) -> bool:
        """A product of the platform's table, or one this connection routes (an override)."""
        return symbol in PRODUCTS or symbol in self.exchange_overrides

    def exchange_for(self, symbol: str) -> str:
        product = PRODUCTS.get(symbol)
        exchange = self.exchange_overrides.get(symbol) or (product.exchange if product else "")
        if exchange not in ALLOWED_EXCHANGES:
            raise ValueError(f"exchange {exchange!r} for {symbol} is not one of "
                             f"{', '.join(sorted(ALLOWED_EXCHANGES))}")
        return exchange

    def multiplier_for(self, symbol: str) -> float | None:
        """None for a product outside the table with no multiplier configured (IB's applies)."""
        if symbol == self.product and self.multiplier is not None:
            return self.multiplier
        product = PRODUCTS.get(symbol)
        return product.multiplier if product else None

    def option_trading_class_for(self, symbol: str) -> str:
        """The standard option class: configured (resolved at connect), else the table's, else
        the symbol (CME's convention for most equity and rate futures options)."""
        if symbol == self.product and self.trading_class:
            return self.trading_class
        product = PRODUCTS.get(symbol)
        return product.option_trading_class if product else symbol


def ib_value_set(value: float) -> bool:
    """False for IB's "no value": NaN, infinities and UNSET_DOUBLE (1.797e308)."""
    return math.isfinite(value) and abs(value) < 1e300


def ib_expiry(day: date) -> str:
    return f"{day:%Y%m%d}"


def parse_ib_expiry(text: str) -> date:
    """IB's lastTradeDateOrContractMonth (YYYYMMDD, sometimes with a time after it)."""
    return datetime.strptime(text[:8], "%Y%m%d").date()


def format_multiplier(value: float) -> str:
    return f"{value:g}"


def _multiplier_text(value: float | None) -> str:
    return "" if value is None else format_multiplier(value)  # blank matches any at IB


def contract_for(instrument: Instrument, settings: ContractSettings) -> Contract:
    """The IB contract of one future or futures option; conId set when we already know it."""
    con_id = int(instrument.broker_ref) if instrument.broker_ref else 0
    exchange = settings.exchange_for(instrument.symbol)
    multiplier = format_multiplier(instrument.multiplier)
    if instrument.is_option:
        return FuturesOption(
            conId=con_id, symbol=instrument.symbol,
            lastTradeDateOrContractMonth=ib_expiry(instrument.expiry),
            strike=float(instrument.strike or 0.0), right=instrument.right or "",
            exchange=exchange, multiplier=multiplier, currency=instrument.currency,
            tradingClass=instrument.trading_class
            or settings.option_trading_class_for(instrument.symbol))
    return Future(
        conId=con_id, symbol=instrument.symbol,
        lastTradeDateOrContractMonth=ib_expiry(instrument.expiry), exchange=exchange,
        multiplier=multiplier, currency=instrument.currency,
        tradingClass=instrument.trading_class or instrument.symbol)


def lookup_contract(
    *, symbol: str, sec_type: str, expiry: date | None, strike: float | None,
    right: str | None, settings: ContractSettings,
) -> Contract:
    """A possibly partial contract for reqContractDetails (blank fields match everything)."""
    contract = Contract(
        secType=sec_type, symbol=symbol, exchange=settings.exchange_for(symbol),
        currency="USD", multiplier=_multiplier_text(settings.multiplier_for(symbol)),
        lastTradeDateOrContractMonth=ib_expiry(expiry) if expiry else "",
        tradingClass=settings.option_trading_class_for(symbol) if sec_type == "FOP" else symbol)
    if sec_type == "FOP":
        contract.strike = float(strike) if strike is not None else 0.0
        contract.right = right or ""
    return contract


def combo_for(legs: tuple[OrderLeg, ...], con_ids: list[int],
              settings: ContractSettings) -> tuple[Bag, int]:
    """A BAG of the legs with ratios reduced to lowest terms, and the number of combo units."""
    symbols = {leg.instrument.symbol for leg in legs}
    if len(symbols) != 1:
        raise ValueError(f"a combo must be on one product, got {', '.join(sorted(symbols))}")
    (symbol,) = symbols
    exchange = settings.exchange_for(symbol)
    units = reduce(gcd, (leg.quantity for leg in legs))
    bag = Bag(symbol=symbol, exchange=exchange, currency="USD", comboLegs=[
        ComboLeg(conId=con_id, ratio=leg.quantity // units, action=leg.side, exchange=exchange)
        for leg, con_id in zip(legs, con_ids, strict=True)
    ])
    return bag, units


def ib_order_for(request: OrderRequest, quantity: int, action: str) -> Order:
    order = Order(action=action, totalQuantity=quantity, orderType=request.order_type,
                  tif=request.time_in_force, orderRef=request.client_order_id, transmit=True)
    if request.order_type == "LMT":
        order.lmtPrice = float(request.limit_price)  # type: ignore[arg-type]
    return order


def instrument_from_contract(
    contract: Contract, *, underlying_expiry: date | None, real_expiry: str = ""
) -> Instrument:
    product = PRODUCTS.get(contract.symbol)  # None: a product IB lists outside the table
    is_option = contract.secType == "FOP"
    if product is None and not (contract.exchange and contract.multiplier):
        raise ValueError(f"IB gave no exchange or multiplier for {contract.symbol}, a product "
                         f"outside the platform's table")
    return Instrument(
        symbol=contract.symbol,
        sec_type="FOP" if is_option else "FUT",
        expiry=parse_ib_expiry(real_expiry or contract.lastTradeDateOrContractMonth),
        exchange=contract.exchange or product.exchange,  # type: ignore[union-attr]
        multiplier=float(contract.multiplier) if contract.multiplier else product.multiplier,  # type: ignore[union-attr]
        currency=contract.currency or "USD",
        strike=float(contract.strike) if is_option else None,
        right=contract.right[:1] if is_option else None,  # type: ignore[arg-type]
        trading_class=contract.tradingClass,
        # CME Group's options on futures are American unless the table says otherwise
        exercise_style=(product.exercise_style if product else "american") if is_option else None,
        underlying_expiry=underlying_expiry if is_option else None,
        broker_ref=str(contract.conId) if contract.conId else "",
    )


def instrument_from_details(details: ContractDetails, *,
                            underlying_expiry: date | None) -> Instrument:
    assert details.contract is not None
    return instrument_from_contract(details.contract, underlying_expiry=underlying_expiry,
                                    real_expiry=details.realExpirationDate)


def greeks_from_ib(comp: OptionComputation | None, *, expiry: date,
                   at: datetime) -> Greeks | None:
    """IB model greeks in our units (see the module docstring), or None when incomplete."""
    if comp is None or None in (comp.delta, comp.gamma, comp.vega, comp.theta):
        return None
    years = max((expiry - at.date()).days, 0) / _DAYS_PER_YEAR
    rho = -years * comp.optPrice / 100.0 if comp.optPrice is not None else math.nan
    return Greeks(delta=float(comp.delta), gamma=float(comp.gamma), vega=float(comp.vega),
                  theta=float(comp.theta), rho=rho, implied_vol=comp.impliedVol,
                  source="broker", time=at)


_IB_STATES: dict[str, OrderState] = {
    "PendingSubmit": "pending_submit", "ApiPending": "pending_submit",
    "PreSubmitted": "submitted", "Submitted": "submitted", "PendingCancel": "submitted",
    "ValidationError": "submitted", "ApiUpdate": "submitted",
    "Filled": "filled", "Cancelled": "cancelled", "ApiCancelled": "cancelled",
    "Inactive": "rejected",
}
# A Cancelled order whose log carries one of these codes never worked: it was rejected.
REJECTION_CODES = frozenset({103, 110, 200, 201, 203, 321})


def order_state_from_ib(status: str, *, filled: float, total: float,
                        error_codes: frozenset[int]) -> OrderState:
    if total > 0 and filled >= total:
        return "filled"
    state = _IB_STATES.get(status, "unknown")
    if state == "cancelled" and error_codes & REJECTION_CODES and filled == 0:
        return "rejected"
    if state == "submitted" and filled > 0:
        return "partially_filled"
    return state


def utc_now() -> datetime:
    return datetime.now(UTC)
