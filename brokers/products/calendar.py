"""The lives of a product's contracts: when futures and options stop trading, and when a desk rolls.

Dates follow CME's termination-of-trading rules (`FutureLastTradeRule`, `OptionExpiryRule` in
`model.py`; the rule of each product and its source are in `table.py`). They count exchange
business days: weekdays that are not US exchange holidays (New Year's Day, Martin Luther King Jr.
Day, Presidents' Day, Good Friday, Memorial Day, Juneteenth, Independence Day, Labor Day,
Thanksgiving, Christmas), the regular holidays of pandas_market_calendars' NYSE calendar, which CME
observes for settlement.

A contract month is named by (year, month): the March 2027 future is (2027, 3) whichever day it
stops trading (crude oil's stops in February). Options of a futures month exercise into that
month's future; with `serial_options`, the months between two futures months have options too,
exercising into the next future (January and February ES options into March).

The time of day: the future's `future_last_trade_time`; options in a futures month stop at
`quarterly_option_last_trade_time`, serial ones at `serial_option_last_trade_time` (E-minis:
08:30 CT for the quarterly options, settled to the Special Opening Quotation, 15:00 CT for the
serial ones). For every product whose two times differ the quarterly options expire on the
future's own day, which is how `option_last_trade` tells them apart from dates alone.

Pure: no Django, no I/O beyond reading the holiday rules once.
"""
from __future__ import annotations

import functools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from brokers.domain import ExerciseStyle
from brokers.products.model import Product

DEFAULT_EXPIRY_TIME_UTC = time(21, 0)
_HOLIDAY_YEARS = (1990, 2100)

Month = tuple[int, int]  # (year, month)


@functools.cache
def _holidays() -> frozenset[date]:
    import pandas_market_calendars as mcal  # heavy: only when a date is first asked for

    rules = mcal.get_calendar("NYSE").regular_holidays
    first, last = _HOLIDAY_YEARS
    return frozenset(day.date() for day in rules.holidays(start=f"{first}-01-01", end=f"{last}-12-31"))


def is_business_day(day: date) -> bool:
    return day.weekday() < 5 and day not in _holidays()


def business_days_before(day: date, count: int) -> date:
    """The business day `count` business days before `day` (`day` itself not counted)."""
    while count > 0:
        day -= timedelta(days=1)
        if is_business_day(day):
            count -= 1
    return day


def business_day_on_or_before(day: date) -> date:
    return day if is_business_day(day) else business_days_before(day, 1)


def _add_months(month: Month, count: int) -> Month:
    index = month[0] * 12 + month[1] - 1 + count
    return index // 12, index % 12 + 1


def _last_day(month: Month) -> date:
    year, number = _add_months(month, 1)
    return date(year, number, 1) - timedelta(days=1)


def last_business_day(month: Month) -> date:
    return business_day_on_or_before(_last_day(month))


def nth_weekday(month: Month, weekday: int, n: int) -> date:
    """The n-th given weekday (0 = Monday) of the month."""
    first = date(month[0], month[1], 1)
    return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))


def third_friday(year: int, month: int) -> date:
    return nth_weekday((year, month), 4, 3)


def _nth_business_day(month: Month, n: int) -> date:
    day = date(month[0], month[1], 1) - timedelta(days=1)
    while n > 0:
        day += timedelta(days=1)
        if is_business_day(day):
            n -= 1
    return day


# ---------------------------------------------------------------------------------------------
# Futures


@functools.lru_cache(maxsize=8192)
def future_expiry(product: Product, year: int, month: int) -> date:
    """The last trading day of the product's future of contract month (year, month)."""
    rule = product.future_last_trade_rule
    m = (year, month)
    if rule == "third_friday":
        return business_day_on_or_before(third_friday(year, month))
    if rule == "crude":
        prior = _add_months(m, -1)
        the_25th = date(prior[0], prior[1], 25)
        return business_days_before(the_25th, 3 if is_business_day(the_25th) else 4)
    if rule == "natural_gas":
        return business_days_before(date(year, month, 1), 3)
    if rule == "third_last_business_day":
        return business_days_before(last_business_day(m), 2)
    if rule == "seventh_before_last_business_day":
        return business_days_before(last_business_day(m), 7)
    if rule == "last_business_day":
        return last_business_day(m)
    if rule == "before_fifteenth":
        return business_days_before(date(year, month, 15), 1)
    if rule == "fx":
        return business_days_before(nth_weekday(m, 2, 3), 2)
    if rule == "tenth_business_day":
        return _nth_business_day(m, 10)
    raise ValueError(f"unknown last-trade rule {rule!r}")


def future_contract_month(product: Product, expiry: date) -> Month | None:
    """The contract month whose future stops trading on `expiry`, None when none does."""
    for ahead in range(0, 3):  # futures stop in their month or up to a month before it
        month = _add_months((expiry.year, expiry.month), ahead)
        if month[1] in product.futures_months and future_expiry(product, *month) == expiry:
            return month
    return None


def future_months_from(product: Product, start: Month, count: int) -> list[Month]:
    """The next `count` contract months of the product's cycle, from `start` on."""
    months, month = [], start
    while len(months) < count:
        if month[1] in product.futures_months:
            months.append(month)
        month = _add_months(month, 1)
    return months


def first_notice_day(product: Product, month: Month) -> date:
    """CME's first notice day of a physically delivered future: the last business day of the month
    before the contract month (metals, Treasuries, grains)."""
    return last_business_day(_add_months(month, -1))


# ---------------------------------------------------------------------------------------------
# Options


def option_months(product: Product, future_month: Month) -> list[Month]:
    """The option months exercising into the future of `future_month`, earliest first: the serial
    months since the previous futures month (with `serial_options`), then the futures month."""
    months = [future_month]
    if product.serial_options:
        month = _add_months(future_month, -1)
        while month[1] not in product.futures_months:
            months.insert(0, month)
            month = _add_months(month, -1)
    return months


def underlying_month(product: Product, option_month: Month) -> Month | None:
    """The futures month an option month exercises into (None: no options that month)."""
    month = option_month
    while month[1] not in product.futures_months:
        if not product.serial_options:
            return None
        month = _add_months(month, 1)
    return month


@functools.lru_cache(maxsize=8192)
def option_expiry(product: Product, option_month: Month) -> date:
    """The last trading day of the product's options of `option_month`."""
    rule = product.option_expiry_rule
    future_month = underlying_month(product, option_month)
    if future_month is None:
        raise ValueError(f"{product.symbol} lists no options in {option_month[0]}-{option_month[1]:02d}")
    if rule == "third_friday":
        return business_day_on_or_before(third_friday(*option_month))
    if rule == "crude":
        return business_days_before(future_expiry(product, *future_month), 3)
    if rule == "natural_gas":
        return business_days_before(future_expiry(product, *future_month), 1)
    if rule == "metals":
        prior = _add_months(option_month, -1)
        day = business_days_before(last_business_day(prior), 3)  # the 4th last business day
        if day.weekday() == 4 or not is_business_day(day + timedelta(days=1)):
            day = business_days_before(day, 1)
        return day
    if rule == "cbot_friday":
        cutoff = business_days_before(last_business_day(_add_months(option_month, -1)), 2)
        friday = cutoff - timedelta(days=(cutoff.weekday() - 4) % 7)
        return business_day_on_or_before(friday)
    if rule == "fx":
        third_wednesday = nth_weekday(option_month, 2, 3)
        return business_day_on_or_before(third_wednesday - timedelta(days=12))
    if rule == "first_friday":
        return business_day_on_or_before(nth_weekday(option_month, 4, 1))
    if rule == "with_future":
        return future_expiry(product, *future_month)
    raise ValueError(f"unknown option expiry rule {rule!r}")


def option_expiries(product: Product, future_month: Month) -> list[date]:
    """The last trading days of the options exercising into the future of `future_month`."""
    return [option_expiry(product, month) for month in option_months(product, future_month)]


def option_month_of(product: Product, expiry: date, future_month: Month) -> Month | None:
    """Which option month on the future of `future_month` stops trading on `expiry` (None: none)."""
    return next((month for month in option_months(product, future_month)
                 if option_expiry(product, month) == expiry), None)


def option_future_month(product: Product, expiry: date) -> Month | None:
    """The futures month of the options that stop trading on `expiry`, None when none do."""
    for ahead in range(0, 5):  # an option stops in its month or a month before; serials reach ahead
        month = _add_months((expiry.year, expiry.month), ahead)
        if month[1] in product.futures_months and option_month_of(product, expiry, month) is not None:
            return month
    return None


@functools.lru_cache(maxsize=65536)
def option_is_serial(product: Product, expiry: date, underlying_expiry: date | None) -> bool:
    """Whether an option is of a serial month (not of its future's own month)."""
    if underlying_expiry is None or underlying_expiry == expiry:
        return False
    future_month = future_contract_month(product, underlying_expiry)
    if future_month is None:
        return product.serial_option_last_trade_time is not None
    option_month = option_month_of(product, expiry, future_month)
    return option_month is not None and option_month != future_month


def option_exercise_style(product: Product, expiry: date, underlying_expiry: date | None) -> ExerciseStyle:
    serial = option_is_serial(product, expiry, underlying_expiry)
    return (product.serial_exercise_style or product.exercise_style) if serial else product.exercise_style


def option_trading_class(product: Product, expiry: date, underlying_expiry: date | None) -> str:
    serial = option_is_serial(product, expiry, underlying_expiry)
    return (product.serial_option_trading_class or product.option_trading_class) if serial \
        else product.option_trading_class


# ---------------------------------------------------------------------------------------------
# Moments


def _at(product: Product, day: date, moment: time) -> datetime:
    return datetime.combine(day, moment, ZoneInfo(product.zone)).astimezone(UTC)


@functools.lru_cache(maxsize=8192)
def future_last_trade(product: Product, expiry: date) -> datetime:
    """When trading in the future expiring on `expiry` ends (UTC)."""
    return _at(product, expiry, product.future_last_trade_time)


@functools.lru_cache(maxsize=65536)
def option_last_trade(product: Product, expiry: date, underlying_expiry: date | None) -> datetime:
    """When trading in an option expiring on `expiry` ends (UTC): the quarterly time for options
    of a futures month, the serial time for the others."""
    serial = option_is_serial(product, expiry, underlying_expiry)
    return _at(product, expiry, product.serial_time() if serial else product.quarterly_option_last_trade_time)


# ---------------------------------------------------------------------------------------------
# Rolling and costs


def roll_date(product: Product, future_expiry: date) -> date:
    """The first day on which a desk hedges with the next future instead of this one.

    - equity indices: the Thursday eight days before a Friday expiry (the day volume moves);
    - `business_days_before`: that many business days before the last trading day (cash-settled or
      expiring before delivery: crude oil, natural gas, currencies, lean hogs, live cattle);
    - `before_first_notice`: that many business days before the first notice day, so that a long
      never meets a delivery notice (metals, Treasuries, grains). A date that is no contract of
      the product falls back to counting from the last trading day.
    """
    if product.roll_rule == "equity_index":
        return future_expiry - timedelta(days=8)
    if product.roll_rule == "before_first_notice":
        month = future_contract_month(product, future_expiry)
        if month is not None:
            return business_days_before(first_notice_day(product, month), product.roll_business_days)
    return business_days_before(future_expiry, product.roll_business_days)


def hedge_cost_per_contract(product: Product) -> float:
    """The one-way cost of trading one future of `product`, USD: half its typical spread in ticks
    x the tick's value + commission (ES: 0.5 x 0.25 x 50 + 2.25 = 8.50, as the simulated market
    charges, one tick wide and 2.25 a contract)."""
    half_spread = 0.5 * product.future_spread_ticks * product.future_tick * product.multiplier
    return half_spread + product.commission_per_contract
